"""The chain experiment's statistics: pure functions over chains.csv rows (chainexp.py's
CHAIN_COLUMNS). No files, no processes, no plotting: ``chainplots`` draws and
``chainreport`` judges what these compute. Built on ``analysis`` (``per_hop_loss``,
``describe``, ``welch_t``) and scipy.

- Length part: ``length_rows`` picks one series (mode, traffic, layout), with the n = 0
  rows (layout ``direct``) that every layout starts from; ``length_points`` gives mean and
  spread per n; ``loss_fits`` fits t_out = (1 - l)^n * t_in to every series
  (``analysis.per_hop_loss``, plus R^2 of the log-linear fit); ``slope_t`` compares the
  loss of two series (Welch-style t of the log-throughput slopes).
- Firewall part: ``rule_points`` per (mode, traffic, layout, stateful), mean and spread
  per total rule count; ``rule_effect`` compares the fewest rules with the most.
"""

import math

from tenantnet.experiment import analysis
from tenantnet.experiment.analysis import boolean, describe, finite, mode_of, numbers

BPS = "bits_per_second"
LAYOUT_ORDER = ("same", "spread")
FIREWALL_LAYOUT_ORDER = ("single", "spread")


def _ordered(values, order):
    found = list(dict.fromkeys(v for v in values if v is not None))
    return [v for v in order if v in found] + [v for v in found if v not in order]


def usable(row):
    """A row with a throughput above zero (failed runs have none)."""
    v = finite(row.get(BPS))
    return v is not None and v > 0


# -- the length part ------------------------------------------------------------------------
def length_rows(rows, mode, traffic, layout):
    """The length part's usable rows of (*mode*, *traffic*) in *layout*, plus n = 0."""
    return [r for r in rows if r.get("part") == "length" and mode_of(r) == mode
            and r.get("traffic") == traffic and usable(r)
            and (r.get("layout") == layout or finite(r.get("n")) == 0)]


def series_keys(rows):
    """[(mode, traffic, layout)] of the length part, in a stable order (layouts with n > 0)."""
    sel = [r for r in rows if r.get("part") == "length"]
    modes = analysis.modes_in(sel)
    traffics = list(dict.fromkeys(r.get("traffic") for r in sel))
    layouts = _ordered([r.get("layout") for r in sel if finite(r.get("n"))], LAYOUT_ORDER)
    return [(m, t, lay) for m in modes for t in traffics for lay in layouts
            if any(r.get("layout") == lay and mode_of(r) == m and r.get("traffic") == t
                   for r in sel)]


def length_points(rows):
    """[(n, mean, std or 0, count)] of *rows* (one series), sorted by n."""
    by_n = {}
    for r in rows:
        by_n.setdefault(int(finite(r.get("n"))), []).append(r.get(BPS))
    out = []
    for n, vals in sorted(by_n.items()):
        d = describe(vals)
        if d["n"]:
            out.append((n, d["mean"], d["std"] or 0.0, d["n"]))
    return out


def _linregress(rows):
    xs = [finite(r.get("n")) for r in rows]
    ys = [math.log(finite(r.get(BPS))) for r in rows]
    if len(set(xs)) < 2:
        return None
    from scipy import stats
    return stats.linregress(xs, ys)


def loss_fit(rows, confidence=0.95):
    """analysis.per_hop_loss of one series, plus ``r2`` (of log-throughput on n) and the
    throughputs' protocol and streams; None with fewer than two lengths."""
    fit = analysis.per_hop_loss(rows, hops="n", throughput=BPS, confidence=confidence)
    if fit is None:
        return None
    reg = _linregress(rows)
    r2 = None if reg is None or not math.isfinite(reg.rvalue) else reg.rvalue ** 2
    first = rows[0]
    return dict(fit, r2=r2, protocol=first.get("protocol"), streams=finite(first.get("streams")),
                n_max=max(finite(r.get("n")) for r in rows))


def loss_fits(rows, confidence=0.95):
    """[{mode, traffic, layout, **loss_fit}] for every series of the length part."""
    out = []
    for mode, traffic, layout in series_keys(rows):
        sel = length_rows(rows, mode, traffic, layout)
        fit = loss_fit(sel, confidence) if sel else None
        if fit is not None:
            out.append(dict(fit, mode=mode, traffic=traffic, layout=layout))
    return out


def find_fit(fits, mode, traffic, layout):
    return next((f for f in fits if (f["mode"], f["traffic"], f["layout"])
                 == (mode, traffic, layout)), None)


def slope_t(rows_a, rows_b):
    """t of (slope_b - slope_a) / sqrt(se_a^2 + se_b^2) for the log-throughput lines of two
    series: above zero when series *a* loses more per hop than *b*. None when either line
    has fewer than three points (no standard error)."""
    a, b = _linregress(rows_a), _linregress(rows_b)
    if a is None or b is None or len(rows_a) < 3 or len(rows_b) < 3:
        return None
    se = math.hypot(a.stderr, b.stderr)
    diff = b.slope - a.slope
    if se == 0:
        return math.copysign(math.inf, diff) if diff else 0.0
    return diff / se


def headline_traffic(rows):
    """The traffic the seed's ~11% compares with: TCP with the most parallel streams (seed
    000: 8 TCP flows), else any TCP, else the first traffic of the length part."""
    sel = [r for r in rows if r.get("part") == "length"]
    tcp = [r for r in sel if str(r.get("protocol")).lower() == "tcp"]
    pool = tcp or sel
    if not pool:
        return None
    best = max(finite(r.get("streams")) or 1 for r in pool)
    return next(r.get("traffic") for r in pool if (finite(r.get("streams")) or 1) == best)


# -- the firewall part ----------------------------------------------------------------------
def rule_keys(rows):
    """[(mode, traffic, layout, stateful)] of the firewall part, in a stable order."""
    sel = [r for r in rows if r.get("part") == "rules"]
    modes = analysis.modes_in(sel)
    traffics = list(dict.fromkeys(r.get("traffic") for r in sel))
    layouts = _ordered([r.get("layout") for r in sel], FIREWALL_LAYOUT_ORDER)
    states = _ordered([boolean(r.get("stateful")) for r in sel], (False, True))
    return [(m, t, lay, s) for m in modes for t in traffics for lay in layouts
            for s in states if any(_rule_match(r, m, t, lay, s) for r in sel)]


def _rule_match(r, mode, traffic, layout, stateful):
    return (r.get("part") == "rules" and mode_of(r) == mode and r.get("traffic") == traffic
            and r.get("layout") == layout and boolean(r.get("stateful")) is stateful)


def rule_values(rows, mode, traffic, layout, stateful):
    """{rules_total: [throughputs]} of one firewall series."""
    out = {}
    for r in rows:
        if _rule_match(r, mode, traffic, layout, stateful) and usable(r):
            out.setdefault(int(finite(r.get("rules_total"))), []).append(finite(r.get(BPS)))
    return dict(sorted(out.items()))


def rule_points(rows, mode, traffic, layout, stateful):
    """[(rules_total, mean, std or 0, count)] of one firewall series."""
    out = []
    for total, vals in rule_values(rows, mode, traffic, layout, stateful).items():
        d = describe(vals)
        out.append((total, d["mean"], d["std"] or 0.0, d["n"]))
    return out


def rule_effect(rows, mode, traffic, layout, stateful):
    """Fewest against most rules of one series: {low_rules, high_rules, low, high (means),
    change_pct (high vs low), t (Welch, low - high; None without spread)}, or None with
    fewer than two rule counts."""
    vals = rule_values(rows, mode, traffic, layout, stateful)
    if len(vals) < 2:
        return None
    lo, hi = min(vals), max(vals)
    m_lo, m_hi = describe(vals[lo])["mean"], describe(vals[hi])["mean"]
    return {"low_rules": lo, "high_rules": hi, "low": m_lo, "high": m_hi,
            "change_pct": 100 * (m_hi - m_lo) / m_lo,
            "t": analysis.welch_t(vals[lo], vals[hi])}


def layout_gap(rows, mode, traffic, stateful, rules=None):
    """Single firewall against the same rules spread over a chain, at *rules* (default:
    the most rules both layouts have): {rules, single, spread (means), change_pct (spread
    vs single), t (Welch, single - spread)}, or None."""
    single = rule_values(rows, mode, traffic, "single", stateful)
    spread = rule_values(rows, mode, traffic, "spread", stateful)
    common = sorted(set(single) & set(spread))
    if not common:
        return None
    at = rules if rules in common else common[-1]
    s1, s2 = numbers(single[at]), numbers(spread[at])
    m1, m2 = describe(s1)["mean"], describe(s2)["mean"]
    return {"rules": at, "single": m1, "spread": m2, "change_pct": 100 * (m2 - m1) / m1,
            "t": analysis.welch_t(s1, s2)}
