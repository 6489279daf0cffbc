"""The experiment's analysis: pure functions over records (rows as dicts). No files, no
processes, no plotting; ``plots`` draws and ``report`` judges what these functions compute.

Rows are what the results directory holds: typed, or the raw strings of a CSV (``finite``
and ``boolean`` read either). Statistics come from the ``statistics`` module and scipy.

- Reachability (section IV.A). ``records(rows)`` pools the per-instance rows of every
  (mode, instances, networks) into the paper's eight fields, plus a few extra columns::

      mode, instances, networks, total, success, failed, missing, mean_ms, std_ms

  - total: every instance row (instances x repeats); success / failed / missing: rows with
    that status (an echo reply was received / the placement was refused or erred / placed,
    but no echo reply before the timeout);
  - mean_ms and std_ms: mean and *sample* standard deviation (n - 1: the repeats are a
    sample of the possible runs) of reachability_ms over the successful rows; std_ms is 0.0
    when exactly one row succeeded, and both are None when none did;
  - extras: median/min/max, mean of the API part (ready_ms), repeats, and the mean over
    instances that made their network's bridges on their node versus those that found them
    (the paper's first-|cns|-instances effect).

  ``reachability_series``, ``pooled``, ``arrival_order`` and ``overhead_pairs`` read those
  records and rows back for the figures and the claims.
- Bandwidth (section IV.B). ``summarise(rows)``: per mode, TCP per direction and both
  combined, and the UDP metrics the same way; ``measurements`` picks one series.
- Tests. ``welch_t`` (scipy.stats.ttest_ind, unequal variances) on values, and
  ``welch_t_from_stats`` on pooled records.
- Chains. ``per_hop_loss(rows)`` fits t_out = (1 - l)^n * t_in to (hops, throughput) rows
  and gives l with its confidence interval.
"""

import math
import statistics


def _scistats():
    """scipy.stats, imported when a test or fit needs it: the experiment's node-side helpers
    import this package's modules on nodes, which have no scipy."""
    from scipy import stats
    return stats


# -- what the records hold -----------------------------------------------------------------
STATUSES = ("success", "failed", "missing")
RECORD_FIELDS = ("mode", "instances", "networks", "total", "success", "failed", "missing",
                 "mean_ms", "std_ms")
EXTRA_FIELDS = ("median_ms", "min_ms", "max_ms", "mean_ready_ms", "repeats",
                "mean_ms_bridges_created", "mean_ms_bridges_existed")
SUCCESS_WORDS = ("success", "successful", "ok", "reachable")   # older files' spellings

DIRECTIONS = ("probe->vm", "vm->probe")     # the two directions of a bandwidth row
COMBINED = "combined"                       # both directions together
UDP_METRICS = ("bits_per_second", "jitter_ms", "packets", "lost_packets", "lost_percent",
               "out_of_order")

LAB_MODE_ORDER = ("dnb", "cnb")
# same-run references: this host's (emulated labs), then the node VMs' (baseline.py)
BASELINE_MODES = ("veth", "ovs-flat", "vm-transport", "vm-ovs-flat")


# -- cells -----------------------------------------------------------------------------------
def finite(value):
    """A finite float from a number or a raw/typed CSV cell, or None (bools are not numbers)."""
    if value is None or isinstance(value, bool):
        return None
    try:
        v = float(value)
    except (TypeError, ValueError):
        return None
    return v if math.isfinite(v) else None


def numbers(values):
    """The finite floats among *values* (cells that are not numbers are left out)."""
    return [v for v in (finite(x) for x in values) if v is not None]


def boolean(value):
    """True/False from a bool, "true"/"yes"/"1", "false"/"no"/"0", 1 or 0; else None."""
    if isinstance(value, bool):
        return value
    if isinstance(value, str):
        low = value.strip().lower()
        if low in ("true", "yes", "1"):
            return True
        if low in ("false", "no", "0"):
            return False
    if isinstance(value, (int, float)) and value in (0, 1):
        return bool(value)
    return None


def mode_of(row):
    return str(row.get("mode") or "").strip().lower() or "?"


def succeeded(row):
    """A row with a reachability time whose status (if any) says it answered."""
    status = str(row.get("status") or "").strip().lower()
    return (not status or status in SUCCESS_WORDS) and finite(row.get("reachability_ms")) \
        is not None


# -- descriptive statistics ------------------------------------------------------------------
def describe(values):
    """{n, mean, std (sample, None below 2 values), min, max} of the numbers in *values*."""
    vals = numbers(values)
    if not vals:
        return {"n": 0, "mean": None, "std": None, "min": None, "max": None}
    return {"n": len(vals), "mean": statistics.fmean(vals),
            "std": statistics.stdev(vals) if len(vals) > 1 else None,
            "min": min(vals), "max": max(vals)}


def pooled(rows):
    """(mean, sample std, n) of the values behind reachability records with the same key,
    from each record's success count, mean_ms and std_ms."""
    parts = []
    for r in rows:
        m = finite(r.get("mean_ms"))
        if m is None:
            continue
        n = finite(r.get("success", r.get("successful")))
        parts.append((int(n) if n else 1, m, finite(r.get("std_ms")) or 0.0))
    n_tot = sum(n for n, _, _ in parts)
    if not parts:
        return None, None, 0
    mean = sum(n * m for n, m, _ in parts) / n_tot
    if n_tot < 2:
        return mean, 0.0, n_tot
    # within-record sums of squares plus the records' spread around the pooled mean
    ss = sum((n - 1) * s * s + n * (m - mean) ** 2 for n, m, s in parts)
    return mean, math.sqrt(ss / (n_tot - 1)), n_tot


def welch_t(a, b):
    """Welch's t of mean(a) - mean(b) (scipy.stats.ttest_ind with unequal variances), or
    None when either side has fewer than two numbers. No spread on either side: +-inf when
    the means differ, else 0."""
    a, b = numbers(a), numbers(b)
    if len(a) < 2 or len(b) < 2:
        return None
    if statistics.variance(a) == 0 and statistics.variance(b) == 0:
        return _no_spread(statistics.fmean(a), statistics.fmean(b))
    return float(_scistats().ttest_ind(a, b, equal_var=False).statistic)


def welch_t_from_stats(n1, m1, s1, n2, m2, s2):
    """Welch's t of m1 - m2 from (count, mean, sample std) of each side
    (scipy.stats.ttest_ind_from_stats), or None when a side has fewer than two values."""
    if None in (m1, m2, s1, s2) or not n1 or not n2 or n1 < 2 or n2 < 2:
        return None
    if s1 == 0 and s2 == 0:
        return _no_spread(m1, m2)
    return float(_scistats().ttest_ind_from_stats(m1, s1, n1, m2, s2, n2,
                                               equal_var=False).statistic)


def _no_spread(m1, m2):
    return math.copysign(math.inf, m1 - m2) if m1 != m2 else 0.0


# -- reachability ----------------------------------------------------------------------------
def _r(value, digits=3):
    return None if value is None else round(float(value), digits)


def record(rows, mode=None, instances=None, networks=None):
    """One record (module docstring) from the per-instance *rows* of one (mode, instances,
    networks). Raises ValueError for a status that is not one of STATUSES."""
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
    spread = statistics.stdev(times) if len(times) > 1 else (0.0 if times else None)
    return {
        "mode": mode if mode is not None else first.get("mode"),
        "instances": instances if instances is not None else first.get("instances"),
        "networks": networks if networks is not None else first.get("networks"),
        "total": len(rows),
        "success": counts["success"],
        "failed": counts["failed"],
        "missing": counts["missing"],
        "mean_ms": _r(_mean(times)),
        "std_ms": _r(spread),
        "median_ms": _r(statistics.median(times)) if times else None,
        "min_ms": _r(min(times)) if times else None,
        "max_ms": _r(max(times)) if times else None,
        "mean_ready_ms": _r(_mean(ready)),
        "repeats": len({r.get("repeat") for r in rows}) if rows else 0,
        "mean_ms_bridges_created": _r(_mean(created)),
        "mean_ms_bridges_existed": _r(_mean(existed)),
    }


def _mean(values):
    return statistics.fmean(values) if values else None


def records(rows):
    """Records for every (mode, instances, networks) in *rows*, in first-seen order."""
    groups = {}
    for row in rows:
        key = (row.get("mode"), row.get("instances"), row.get("networks"))
        groups.setdefault(key, []).append(row)
    return [record(g, *key) for key, g in groups.items()]


def reachability_series(rows, mode):
    """{networks: [(instances, mean_ms, std_ms, n), ...] sorted by instances} for *mode*,
    from records (repeated records of one point are pooled)."""
    groups = {}
    for r in rows:
        if mode_of(r) != mode:
            continue
        k, n = finite(r.get("networks")), finite(r.get("instances"))
        if k is None or n is None:
            continue
        groups.setdefault(int(k), {}).setdefault(int(n), []).append(r)
    out = {}
    for k, by_n in sorted(groups.items()):
        pts = []
        for n, rs in sorted(by_n.items()):
            m, s, cnt = pooled(rs)
            if m is not None:
                pts.append((n, m, s, cnt))
        if pts:
            out[k] = pts
    return out


def successful_instances(rows):
    """Instance rows that have a reachability time (status success, or no status given)."""
    return [r for r in rows if succeeded(r)]


def arrival_order(rows):
    """[(mode, arrival index (1-based), reachability_ms, bridges_existed, instances,
    networks, repeat)] for the successful instance rows, where the index is the instance's
    position in its batch (mode, instances, networks, repeat): by the rows' ``index`` (the
    request order the spec fixed, the same in every mode), else by request_time, else file
    order."""
    runs = {}
    for pos, r in enumerate(rows):
        key = (mode_of(r), r.get("instances"), r.get("networks"), r.get("repeat"))
        runs.setdefault(key, []).append((pos, r))

    def order(member):
        pos, r = member
        index, requested = finite(r.get("index")), finite(r.get("request_time"))
        if index is not None:
            return (0, index, pos)
        if requested is not None:
            return (1, requested, pos)
        return (2, 0.0, pos)

    out = []
    for key, members in runs.items():
        members.sort(key=order)
        for i, (_, r) in enumerate(members, start=1):
            if succeeded(r):
                out.append((key[0], i, finite(r.get("reachability_ms")),
                            boolean(r.get("bridges_existed")), *key[1:]))
    return out


def overhead_pairs(rows, mode="dnb", reference="cnb"):
    """[(overhead_ms, bridges_existed, arrival index)]: each successful *mode* instance's
    reachability minus that of the *reference* instance at the same arrival position of the
    same sub-experiment (instances, networks, repeat). The spec places both modes' batches
    identically, so the pair differs only in the mode; this removes the queueing effect
    (later requests of a batch wait longer in either mode)."""
    pts = arrival_order(rows)
    ref = {(p[4], p[5], p[6], p[1]): p[2] for p in pts if p[0] == reference}
    return [(p[2] - ref[(p[4], p[5], p[6], p[1])], p[3], p[1]) for p in pts
            if p[0] == mode and (p[4], p[5], p[6], p[1]) in ref]


def modes_in(rows):
    """The modes of *rows*: DNB, CNB, any other lab mode, then the baselines."""
    found = list(dict.fromkeys(mode_of(r) for r in rows))
    order = [m for m in LAB_MODE_ORDER if m in found]
    order += [m for m in found if m not in order and m not in BASELINE_MODES]
    order += [m for m in BASELINE_MODES if m in found]
    return order


# -- bandwidth -------------------------------------------------------------------------------
def measurements(rows, mode, protocol, direction=None, metric="bits_per_second"):
    """The numbers of *metric* in the *mode* rows of *protocol* (and *direction*, if given)."""
    return numbers(r.get(metric) for r in rows
                   if mode_of(r) == mode and str(r.get("protocol")).lower() == protocol
                   and (direction is None or r.get("direction") == direction))


def summarise(rows):
    """Per mode (in order of first appearance)::

        {mode: {"tcp": {"probe->vm": stats, "vm->probe": stats, "combined": stats},
                "udp": {metric: {"probe->vm": stats, "vm->probe": stats,
                                 "combined": stats} for metric in UDP_METRICS}}}

    where stats = describe(...) of bits_per_second (TCP) or the metric (UDP). The mode is
    the row's as written (not lower-cased)."""
    out = {}
    for row in rows:
        out.setdefault(str(row.get("mode")), {"tcp": {}, "udp": {}})
    for mode, summary in out.items():
        mine = [r for r in rows if str(r.get("mode")) == mode]
        for proto, metrics in (("tcp", ("bits_per_second",)), ("udp", UDP_METRICS)):
            sel = [r for r in mine if str(r.get("protocol")).lower() == proto]
            if not sel:
                continue
            for metric in metrics:
                per = {d: describe(r.get(metric) for r in sel if r.get("direction") == d)
                       for d in DIRECTIONS}
                per[COMBINED] = describe(r.get(metric) for r in sel)
                if proto == "tcp":
                    summary["tcp"] = per
                else:
                    summary["udp"][metric] = per
    return out


def summary_rows(summary):
    """summarise() flattened: rows of mode, protocol, metric, direction, n, mean, std."""
    rows = []
    for mode, s in summary.items():
        parts = [("tcp", "bits_per_second", s["tcp"])]
        parts += [("udp", metric, per) for metric, per in s["udp"].items()]
        for proto, metric, per in parts:
            for direction, st in per.items():
                rows.append({"mode": mode, "protocol": proto, "metric": metric,
                             "direction": direction, "n": st["n"], "mean": st["mean"],
                             "std": st["std"]})
    return rows


# -- chains ----------------------------------------------------------------------------------
def per_hop_loss(rows, hops="n", throughput="bits_per_second", confidence=0.95):
    """Fit t_out = (1 - l)^n * t_in to *rows* (each with a hop count under *hops* and a
    throughput under *throughput*; rows missing either are left out).

    log t_out = log t_in + n log(1 - l) is a straight line in n, fitted by least squares
    (scipy.stats.linregress): l = 1 - exp(slope), and its interval comes from the slope's
    Student-t interval at *confidence* (n - 2 degrees of freedom), mapped the same way.

    Returns {"loss", "loss_low", "loss_high", "confidence", "t_in", "points", "hops"} (hops:
    how many distinct hop counts), or None with fewer than two distinct hop counts. The
    interval is None with fewer than three points. A negative l means throughput grew with
    n. Raises ValueError for a throughput that is not above zero (log undefined)."""
    if not 0 < confidence < 1:
        raise ValueError(f"confidence {confidence!r}: expected a number between 0 and 1")
    xs, ys = [], []
    for r in rows:
        n, t = finite(r.get(hops)), finite(r.get(throughput))
        if n is None or t is None:
            continue
        if t <= 0:
            raise ValueError(f"{throughput} {t!r} at {hops}={n:g}: a throughput must be above "
                             "zero to be fitted on a log scale")
        xs.append(n)
        ys.append(math.log(t))
    if len(set(xs)) < 2:
        return None
    scistats = _scistats()
    fit = scistats.linregress(xs, ys)
    out = {"loss": 1 - math.exp(fit.slope), "loss_low": None, "loss_high": None,
           "confidence": confidence, "t_in": math.exp(fit.intercept), "points": len(xs),
           "hops": len(set(xs))}
    if len(xs) > 2:
        # linregress has no error for a flat line (its r is undefined): the line is exact
        stderr = 0.0 if len(set(ys)) == 1 else fit.stderr
        half = scistats.t.ppf((1 + confidence) / 2, len(xs) - 2) * stderr
        # l falls as the slope rises: the slope's upper bound is l's lower one
        out["loss_low"] = 1 - math.exp(fit.slope + half)
        out["loss_high"] = 1 - math.exp(fit.slope - half)
    return out


def chain_throughput(fit, n):
    """The throughput per_hop_loss's *fit* predicts after *n* hops: (1 - l)^n * t_in."""
    return fit["t_in"] * (1 - fit["loss"]) ** n
