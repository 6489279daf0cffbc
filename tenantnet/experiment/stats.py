"""The paper's reachability records (section IV.A): eight fields per sub-experiment.

For every (mode, instances, networks) the per-instance rows of all repeats are pooled into
one record:

    instances, networks, total, success, failed, missing, mean_ms, std_ms

- total: every instance row (instances x repeats);
- success: rows with status "success" (an echo reply was received);
- failed: rows with status "failed" (the placement request was refused or erred);
- missing: rows with status "missing" (placed, but no echo reply before the timeout);
- mean_ms: arithmetic mean of reachability_ms over the successful rows;
- std_ms: the *sample* standard deviation of the same values (divisor n - 1, Bessel's
  correction: the repeats are a sample of the possible runs, not the whole population);
  0.0 when exactly one row succeeded (nothing to spread), None when none did.
  mean_ms is None too when nothing succeeded.

`mode` leads every record so that DNB and CNB records can live in one table. Extra columns
(after the eight) help reading the figures: median/min/max, mean of the API part
(ready_ms), and the mean over instances that found their network's bridges already on their
node versus those that made them (the paper's first-|cns|-instances effect).
"""

import math

STATUSES = ("success", "failed", "missing")
RECORD_FIELDS = ("mode", "instances", "networks", "total", "success", "failed", "missing",
                 "mean_ms", "std_ms")
EXTRA_FIELDS = ("median_ms", "min_ms", "max_ms", "mean_ready_ms", "repeats",
                "mean_ms_bridges_created", "mean_ms_bridges_existed")


def mean(values):
    values = list(values)
    return sum(values) / len(values) if values else None


def sample_std(values):
    """Sample standard deviation (n - 1); 0.0 for one value; None for none."""
    values = list(values)
    n = len(values)
    if n == 0:
        return None
    if n == 1:
        return 0.0
    m = sum(values) / n
    return math.sqrt(sum((v - m) ** 2 for v in values) / (n - 1))


def median(values):
    values = sorted(values)
    n = len(values)
    if not n:
        return None
    mid = n // 2
    return values[mid] if n % 2 else (values[mid - 1] + values[mid]) / 2


def _r(value, digits=3):
    return None if value is None else round(float(value), digits)


def record(rows, mode=None, instances=None, networks=None):
    """One record from the per-instance *rows* of one (mode, instances, networks)."""
    rows = list(rows)
    counts = {s: 0 for s in STATUSES}
    for row in rows:
        status = row.get("status")
        if status not in counts:
            raise ValueError(f"row {row.get('vm')!r}: status {status!r} is not one of "
                             f"{', '.join(STATUSES)}")
        counts[status] += 1
    ok = [r for r in rows if r["status"] == "success"]
    times = [float(r["reachability_ms"]) for r in ok]
    ready = [float(r["ready_ms"]) for r in ok if r.get("ready_ms") is not None]
    created = [float(r["reachability_ms"]) for r in ok if r.get("bridges_existed") is False]
    existed = [float(r["reachability_ms"]) for r in ok if r.get("bridges_existed") is True]
    first = rows[0] if rows else {}
    return {
        "mode": mode if mode is not None else first.get("mode"),
        "instances": instances if instances is not None else first.get("instances"),
        "networks": networks if networks is not None else first.get("networks"),
        "total": len(rows),
        "success": counts["success"],
        "failed": counts["failed"],
        "missing": counts["missing"],
        "mean_ms": _r(mean(times)),
        "std_ms": _r(sample_std(times)),
        "median_ms": _r(median(times)),
        "min_ms": _r(min(times)) if times else None,
        "max_ms": _r(max(times)) if times else None,
        "mean_ready_ms": _r(mean(ready)),
        "repeats": len({r.get("repeat") for r in rows}) if rows else 0,
        "mean_ms_bridges_created": _r(mean(created)),
        "mean_ms_bridges_existed": _r(mean(existed)),
    }


def records(rows):
    """Records for every (mode, instances, networks) in *rows*, in first-seen order."""
    groups = {}
    for row in rows:
        key = (row.get("mode"), row.get("instances"), row.get("networks"))
        groups.setdefault(key, []).append(row)
    return [record(g, *key) for key, g in groups.items()]
