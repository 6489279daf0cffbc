"""The paper's claims about its section IV, each judged from one run's data: a verdict,
what was measured, and the verdict's reason in a few words.

    claims(data) -> [{id, claim, verdict, why, measured}]   (*data*: plots.load's)

Verdicts are "holds", "does not hold" or "not measured". Directional claims hold when the
difference has the claimed sign *and* is beyond noise: Welch's t >= T_MIN (when both sides
have at least two values; otherwise the sign alone decides and the text says so). Claim 2
also needs the size to be near the paper's 8% (DNB lower by TCP_CLAIM_PCT +- TCP_TOLERANCE_PP
percent), claim 3 needs |DNB - CNB| / CNB <= UDP_EQUAL_PCT percent. The statistics are
``analysis``'s; this module judges them. The verdict words and T_MIN are shared with
``chainreport``.
"""

import math
import statistics

from tenantnet.experiment import analysis, plots
from tenantnet.experiment.analysis import boolean, finite, measurements, mode_of

HOLDS, FAILS, NOT_MEASURED = "holds", "does not hold", "not measured"
T_MIN = 2.0
TCP_CLAIM_PCT = 8.0
TCP_TOLERANCE_PP = 4.0
UDP_EQUAL_PCT = 5.0

CLAIMS = {
    "1a": "DNB reachability is slower than CNB (dedicated bridges and tunnels cost start-up "
          "time) [IV.A, Fig. 5]",
    "1b": "In DNB the overhead is concentrated in roughly the first |cns| instances, which "
          "create their network's bridges; later instances reuse them [IV.A]",
    "2": "TCP bandwidth under DNB is about 8% lower than under CNB [IV.B, Fig. 8]",
    "3": "UDP bandwidth is about equal under DNB and CNB (DNB slightly better) [IV.B]",
    "4": "TCP from VM to controller (vm->probe) is faster than from controller to VM "
         "(probe->vm) [IV.B, Fig. 7]",
}


# -- verdicts ----------------------------------------------------------------------------
def _n_mean(values):
    d = analysis.describe(values)
    return d["n"], d["mean"]


def _directional(t, sign_ok):
    """(verdict, note) for a claim that group 1 > group 2, given Welch t and the sign."""
    if not sign_ok:
        return FAILS, "the difference has the opposite sign", "opposite direction"
    if t is None:
        return HOLDS, "sign only: too few values for a noise estimate", "sign only, no spread"
    if t >= T_MIN:
        return HOLDS, f"t = {_fmt_t(t)} >= {T_MIN:g}", "beyond noise"
    return (FAILS, f"the difference is within noise (t = {_fmt_t(t)} < {T_MIN:g})",
            "right direction, but within noise")


def _fmt_t(t):
    return "inf" if math.isinf(t) else f"{t:.2f}"


def _ms(v):
    return "-" if v is None else f"{v:.1f} ms"


def _mbps(v):
    if v is None:
        return "-"
    return f"{v / 1e6:.3f} Mbit/s" if abs(v) < 1e7 else f"{v / 1e6:.1f} Mbit/s"


# -- the claims ----------------------------------------------------------------------------
def claim_1a(data):
    dnb = analysis.reachability_series(data["reachability"], "dnb")
    cnb = analysis.reachability_series(data["reachability"], "cnb")
    if not dnb or not cnb:
        return NOT_MEASURED, "needs reachability records of both DNB and CNB " \
                             f"(DNB: {'yes' if dnb else 'no'}, CNB: {'yes' if cnb else 'no'})"
    d_pts = {(k, p[0]): p for k, pts in dnb.items() for p in pts}
    c_pts = {(k, p[0]): p for k, pts in cnb.items() for p in pts}
    common = sorted(set(d_pts) & set(c_pts))
    if not common:
        return NOT_MEASURED, "DNB and CNB have no (instances, networks) sub-experiment in common"
    slower = sum(1 for key in common if d_pts[key][1] > c_pts[key][1])

    def pool(points):
        rows = [{"success": p[3], "mean_ms": p[1], "std_ms": p[2]} for p in points]
        return analysis.pooled(rows)

    dm, ds, dn = pool([d_pts[k] for k in common])
    cm, cs, cn = pool([c_pts[k] for k in common])
    t = analysis.welch_t_from_stats(dn, dm, ds, cn, cm, cs)
    verdict, note, why = _directional(t, dm > cm)
    measured = (f"over {len(common)} matched sub-experiments: DNB mean {_ms(dm)} (n={dn}) vs "
                f"CNB {_ms(cm)} (n={cn}), DNB/CNB = {dm / cm:.2f}x; DNB slower in {slower} of "
                f"{len(common)}; {note}")
    return verdict, measured, why


def claim_1b(data):
    """Bridge-creating DNB instances (bridges_existed false) against the others.

    With CNB instance rows, the comparison is of the *DNB overhead*: each DNB instance's
    reachability minus the CNB instance at the same arrival position of the same
    sub-experiment (analysis.overhead_pairs), because in either mode later requests of a batch
    wait longer, and bridge creators are by nature the early ones: comparing raw times
    would mix the bridge cost with queueing. Without CNB rows the raw times are compared,
    and the text says that this is not adjusted for arrival order."""
    inst = data["reachability_instances"]
    rows = [r for r in analysis.successful_instances(inst) if mode_of(r) == "dnb"]
    created = [finite(r["reachability_ms"]) for r in rows
               if boolean(r.get("bridges_existed")) is False]
    existed = [finite(r["reachability_ms"]) for r in rows
               if boolean(r.get("bridges_existed")) is True]
    if not created or not existed:
        return NOT_MEASURED, ("needs successful DNB instances both with and without existing "
                              f"bridges (have {len(created)} that created bridges, "
                              f"{len(existed)} that found them)")
    order = [p for p in analysis.arrival_order(inst) if p[0] == "dnb"]
    pos_c = [p[1] for p in order if p[3] is False]
    pos_e = [p[1] for p in order if p[3] is True]
    runs = {(p[4], p[5], p[6]) for p in order}
    context = (f"; mean arrival position {statistics.fmean(pos_c):.1f} (creators) vs "
               f"{statistics.fmean(pos_e):.1f} (others); {len(pos_c) / max(1, len(runs)):.1f} "
               f"bridge-creating instances per sub-experiment over {len(runs)}")
    pairs = analysis.overhead_pairs(inst)
    oc = [o for o, flag, _ in pairs if flag is False]
    oe = [o for o, flag, _ in pairs if flag is True]
    n1, m1 = _n_mean(created)
    n2, m2 = _n_mean(existed)
    raw = (f"raw DNB times: creators {_ms(m1)} (n={n1}), others {_ms(m2)} (n={n2})")
    if oc and oe:
        k1, a1 = _n_mean(oc)
        k2, a2 = _n_mean(oe)
        t = analysis.welch_t(oc, oe)
        verdict, note, why = _directional(t, a1 > a2)
        measured = (f"DNB overhead over CNB at the same arrival position: instances that "
                    f"created their bridges {a1:+.1f} ms (n={k1}), instances that found them "
                    f"{a2:+.1f} ms (n={k2}); {note}; {raw}{context}")
        return verdict, measured, why
    t = analysis.welch_t(created, existed)
    verdict, note, why = _directional(t, m1 > m2)
    measured = (f"no CNB instances to pair with, so NOT adjusted for arrival order (later "
                f"requests wait longer): {raw}, ratio {m1 / m2:.2f}x; {note}{context}")
    return verdict, measured, why + ", unadjusted"


def _dnb_and_cnb(rows, protocol):
    """(DNB values, CNB values, None) of *protocol*'s bandwidth, or the third is the
    not-measured answer when either mode has none."""
    d = measurements(rows, "dnb", protocol)
    c = measurements(rows, "cnb", protocol)
    if d and c:
        return d, c, None
    return d, c, (NOT_MEASURED, f"needs {protocol.upper()} measurements of both DNB and CNB "
                                f"(DNB: {len(d)}, CNB: {len(c)})")


def claim_2(data):
    d, c, missing = _dnb_and_cnb(data["bandwidth_all"], "tcp")
    if missing:
        return missing
    n1, m1 = _n_mean(c)
    n2, m2 = _n_mean(d)
    lower_pct = 100 * (m1 - m2) / m1            # how much lower DNB is, in % of CNB
    t = analysis.welch_t(c, d)                  # CNB - DNB
    lo, hi = TCP_CLAIM_PCT - TCP_TOLERANCE_PP, TCP_CLAIM_PCT + TCP_TOLERANCE_PP
    verdict, note, why = _directional(t, m2 < m1)
    if verdict == HOLDS and not lo <= lower_pct <= hi:
        verdict = FAILS
        note += f"; but the gap is outside the claimed {lo:g}-{hi:g}%"
        why = f"DNB lower, but by {lower_pct:.0f}%, not ~{TCP_CLAIM_PCT:g}%"
    elif verdict == HOLDS:
        why = f"DNB {lower_pct:.1f}% lower"
    gap = f"{lower_pct:.1f}% lower" if lower_pct >= 0 else f"{-lower_pct:.1f}% higher"
    measured = (f"TCP, both directions: DNB {_mbps(m2)} (n={n2}) vs CNB {_mbps(m1)} (n={n1}): "
                f"DNB is {gap} (paper: ~{TCP_CLAIM_PCT:g}% lower, accepted "
                f"{lo:g}-{hi:g}%); {note}")
    return verdict, measured, why


def claim_3(data):
    rows = data["bandwidth_all"]
    d, c, missing = _dnb_and_cnb(rows, "udp")
    if missing:
        return missing
    n1, m1 = _n_mean(d)
    n2, m2 = _n_mean(c)
    diff = 100 * (m1 - m2) / m2
    verdict = HOLDS if abs(diff) <= UDP_EQUAL_PCT else FAILS
    jd = _n_mean(measurements(rows, "dnb", "udp", metric="jitter_ms"))[1]
    jc = _n_mean(measurements(rows, "cnb", "udp", metric="jitter_ms"))[1]
    ld = _n_mean(measurements(rows, "dnb", "udp", metric="lost_percent"))[1]
    lc = _n_mean(measurements(rows, "cnb", "udp", metric="lost_percent"))[1]
    rate = next((r.get("udp_rate") for r in rows if str(r.get("protocol")).lower() == "udp"
                 and r.get("udp_rate")), None)
    measured = (f"UDP{' at ' + str(rate) + 'bit/s offered' if rate else ''}: DNB {_mbps(m1)} "
                f"(n={n1}) vs CNB {_mbps(m2)} (n={n2}): {diff:+.1f}% (accepted within "
                f"+-{UDP_EQUAL_PCT:g}%)")
    if jd is not None and jc is not None:
        measured += f"; jitter {jd:.3f} vs {jc:.3f} ms"
    if ld is not None and lc is not None:
        measured += f"; loss {ld:.2f}% vs {lc:.2f}%"
    offered = [finite(r.get("target_bits_per_second")) or _rate_bps(r.get("udp_rate"))
               for r in rows if str(r.get("protocol")).lower() == "udp"]
    offered = [o for o in offered if o]
    if offered and min(m1, m2) >= 0.99 * max(offered):
        measured += ("; both modes carried the full offered rate, so equal bandwidth is "
                     "expected here (the rate is below either path's capacity)")
    why = f"{diff:+.1f}%, {'within' if verdict == HOLDS else 'outside'} +-{UDP_EQUAL_PCT:g}%"
    return verdict, measured, why


def _rate_bps(rate):
    """iperf3 -b notation (e.g. "1M", "100M", "1.5G") in bit/s, or None."""
    text = str(rate or "").strip().upper()
    if not text:
        return None
    mult = {"K": 1e3, "M": 1e6, "G": 1e9, "T": 1e12}.get(text[-1], 1.0)
    try:
        return float(text.rstrip("KMGT")) * mult
    except ValueError:
        return None


def claim_4(data):
    rows = data["bandwidth_all"]
    parts, verdict, why = [], NOT_MEASURED, None
    for mode in analysis.modes_in(rows):
        up = measurements(rows, mode, "tcp", "vm->probe")
        down = measurements(rows, mode, "tcp", "probe->vm")
        if not up or not down:
            continue
        n1, m1 = _n_mean(up)
        n2, m2 = _n_mean(down)
        t = analysis.welch_t(up, down)
        v, note, w = _directional(t, m1 > m2)
        parts.append(f"{plots.label(mode)}: vm->probe {_mbps(m1)} (n={n1}) vs probe->vm "
                     f"{_mbps(m2)} (n={n2}), {100 * (m1 - m2) / m2:+.1f}%; {note}")
        if mode == "dnb":
            verdict, why = v, w
    if verdict == NOT_MEASURED:
        return NOT_MEASURED, ("needs DNB TCP measurements in both directions"
                              + ("; other modes: " + " | ".join(parts) if parts else ""))
    return verdict, "verdict from DNB (the paper's Fig. 7). " + " | ".join(parts), why


def claims(data):
    """[{id, claim, verdict, why, measured}] for the paper's claims, from *data*
    (plots.load); *why* is the verdict's reason in a few words."""
    out = []
    for cid, func in (("1a", claim_1a), ("1b", claim_1b), ("2", claim_2), ("3", claim_3),
                      ("4", claim_4)):
        try:
            result = func(data)
        except (ZeroDivisionError, TypeError, ValueError) as exc:
            result = (NOT_MEASURED, f"could not be evaluated ({exc})", "could not be evaluated")
        verdict, measured = result[0], result[1]
        why = result[2] if len(result) > 2 and result[2] else (
            "data missing" if verdict == NOT_MEASURED else "")
        out.append({"id": cid, "claim": CLAIMS[cid], "verdict": verdict, "why": why,
                    "measured": measured})
    return out

