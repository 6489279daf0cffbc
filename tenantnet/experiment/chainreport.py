"""report.md of a chain experiment: setup, the fitted loss per hop set beside seed 000's
~11% per namespace hop, throughput per chain length and per firewall rule count, the
figures, and seed 000's claims with verdicts computed from the data.

    write_report(results_dir) -> path of report.md

Inputs: chains.csv and meta.json (spec, machine: ``machine.machine_info()``, collected now
when absent). Figures come from ``chainplots.render`` (called here); every statistic from
``chainanalysis``. Verdicts are ``claims``' words (holds / does not hold / not measured);
a directional claim holds when the sign is as claimed and the difference is beyond noise
(t >= claims.T_MIN; with too few values for a spread, the sign alone decides and the text
says so). The ~11% claim holds when the measured l is within SEED_LOSS +- LOSS_TOLERANCE_PP.
"""

import json
import math
import os

from tenantnet.experiment import chainanalysis as ca
from tenantnet.experiment import chainplots, figures
from tenantnet.experiment.analysis import boolean, mode_of
from tenantnet.experiment.machine import machine_info
from tenantnet.experiment.plots import label
from tenantnet.experiment.claims import FAILS, HOLDS, NOT_MEASURED, T_MIN

SEED_LOSS = 0.11              # seed 000: ~11% per namespace hop (8 TCP flows over veth)
LOSS_TOLERANCE_PP = 5.0       # accepted: 6% .. 16%
SEED_RULES_DROP_PCT = 50.0    # seed 000, Fig. 9: about -50% at 1000 rules (8 UDP flows)

CLAIMS = {
    "c1": "Throughput falls with chain length as (1 - l)^n with l > 0 [seed 000, IV.C, Fig. 7]",
    "c2": f"The loss per namespace hop is about {100 * SEED_LOSS:.0f}% [seed 000, IV.C: 8 TCP "
          "flows over veth]",
    "c3": "A hop that crosses nodes costs more than one on the same node [seed 000, IV.C: "
          "an OvS switch per hop adds its own loss]",
    "c4": f"More iptables rules lower throughput (about -{SEED_RULES_DROP_PCT:.0f}% at 1000 "
          "rules) [seed 000, IV.C.1, Fig. 9]",
    "c5": "The same rules spread over a chain of firewalls are slower than in one firewall "
          "[seed 000, IV.C.1, Fig. 10 vs Fig. 9]",
}


# -- formatting ------------------------------------------------------------------------------
def pct(v, digits=1):
    return "-" if v is None else f"{100 * v:.{digits}f}%"


def mbps(v):
    return "-" if v is None else f"{v / 1e6:.1f}"


def mean_std(mean, std, count):
    """Mbit/s, with the sample std when there is more than one run."""
    return f"{mean / 1e6:.1f}" + (f" +- {std / 1e6:.1f}" if count > 1 else "")


def table(headers, rows):
    out = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    out += ["| " + " | ".join("-" if v is None else str(v) for v in r) + " |" for r in rows]
    return out


def interval(fit):
    if fit.get("loss_low") is None:
        return "- (needs 3 points)"
    return f"[{pct(fit['loss_low'])}, {pct(fit['loss_high'])}]"


def directional(t, sign_ok):
    """(verdict, note) for 'the difference has the claimed sign, beyond noise'."""
    if not sign_ok:
        return FAILS, "the difference has the opposite sign"
    if t is None:
        return HOLDS, "sign only: too few values for a noise estimate"
    if t >= T_MIN:
        return HOLDS, f"t = {'inf' if math.isinf(t) else f'{t:.2f}'} >= {T_MIN:g}"
    return FAILS, f"within noise (t = {t:.2f} < {T_MIN:g})"


# -- the claims -----------------------------------------------------------------------------
def headline(rows):
    """(mode, traffic) the claims are judged on: DNB if measured, and ca.headline_traffic."""
    modes = [mode_of(r) for r in rows]
    mode = "dnb" if "dnb" in modes else (modes[0] if modes else None)
    return mode, ca.headline_traffic([r for r in rows if mode_of(r) == mode])


def claim_c1(rows, fits, mode, traffic):
    fit = ca.find_fit(fits, mode, traffic, "same")
    if fit is None:
        return NOT_MEASURED, "needs the same-node layout at two lengths or more"
    text = (f"{label(mode)}, {traffic}, same node: l = {pct(fit['loss'])}, 95% interval "
            f"{interval(fit)}, over {fit['points']} runs at {fit['hops']} lengths")
    if fit["loss"] <= 0:
        return FAILS, text + "; throughput did not fall with n"
    if fit["loss_low"] is None:
        return HOLDS, text + "; sign only (no interval with two points)"
    if fit["loss_low"] > 0:
        return HOLDS, text + "; the interval excludes 0"
    return FAILS, text + "; the interval includes 0 (within noise)"


def claim_c2(rows, fits, mode, traffic):
    fit = ca.find_fit(fits, mode, traffic, "same")
    if fit is None:
        return NOT_MEASURED, "needs the same-node layout at two lengths or more"
    lo, hi = SEED_LOSS - LOSS_TOLERANCE_PP / 100, SEED_LOSS + LOSS_TOLERANCE_PP / 100
    ok = lo <= fit["loss"] <= hi
    inside = fit["loss_low"] is not None and fit["loss_low"] <= SEED_LOSS <= fit["loss_high"]
    text = (f"{label(mode)}, {traffic}, same node: l = {pct(fit['loss'])} {interval(fit)} "
            f"against seed 000's {pct(SEED_LOSS, 0)} (accepted {pct(lo, 0)}-{pct(hi, 0)}); "
            f"the interval {'contains' if inside else 'does not contain'} "
            f"{pct(SEED_LOSS, 0)}")
    if not ok:
        text += "; measured " + ("more" if fit["loss"] > hi else "less") + " loss per hop"
    return (HOLDS if ok else FAILS), text


def claim_c3(rows, fits, mode, traffic):
    same = ca.find_fit(fits, mode, traffic, "same")
    spread = ca.find_fit(fits, mode, traffic, "spread")
    if same is None or spread is None:
        return NOT_MEASURED, "needs both layouts (same, spread) at two lengths or more"
    t = ca.slope_t(ca.length_rows(rows, mode, traffic, "spread"),
                   ca.length_rows(rows, mode, traffic, "same"))
    verdict, note = directional(t, spread["loss"] > same["loss"])
    return verdict, (f"{label(mode)}, {traffic}: spread over nodes l = {pct(spread['loss'])} "
                     f"{interval(spread)} vs same node l = {pct(same['loss'])} "
                     f"{interval(same)}; {note}")


def firewall_series(rows, mode):
    """(traffic, stateful) the firewall claims are judged on: the first firewall traffic,
    stateless if measured."""
    keys = [k for k in ca.rule_keys(rows) if k[0] == mode]
    if not keys:
        return None, None
    states = [k[3] for k in keys]
    return keys[0][1], (False if False in states else states[0])


def claim_c4(rows, mode):
    traffic, stateful = firewall_series(rows, mode)
    eff = ca.rule_effect(rows, mode, traffic, "single", stateful) if traffic else None
    if eff is None:
        return NOT_MEASURED, "needs one firewall at two rule counts or more"
    verdict, note = directional(eff["t"], eff["high"] < eff["low"])
    return verdict, (f"{label(mode)}, {traffic}, one {'stateful' if stateful else 'stateless'}"
                     f" firewall: {eff['low_rules']} rules {mbps(eff['low'])} Mbit/s, "
                     f"{eff['high_rules']} rules {mbps(eff['high'])} Mbit/s "
                     f"({eff['change_pct']:+.1f}%; seed 000: about "
                     f"-{SEED_RULES_DROP_PCT:.0f}% at 1000); {note}")


def claim_c5(rows, mode):
    traffic, stateful = firewall_series(rows, mode)
    gap = ca.layout_gap(rows, mode, traffic, stateful) if traffic else None
    if gap is None:
        return NOT_MEASURED, "needs the single and spread firewall layouts at one rule count"
    verdict, note = directional(gap["t"], gap["spread"] < gap["single"])
    return verdict, (f"{label(mode)}, {traffic}, {gap['rules']} rules: one firewall "
                     f"{mbps(gap['single'])} Mbit/s, spread over the chain "
                     f"{mbps(gap['spread'])} Mbit/s ({gap['change_pct']:+.1f}%); {note}")


def claims(rows):
    """[{id, claim, verdict, measured}] of seed 000's claims on *rows* (chains.csv)."""
    fits = ca.loss_fits(rows)
    mode, traffic = headline(rows)
    results = {"c1": lambda: claim_c1(rows, fits, mode, traffic),
               "c2": lambda: claim_c2(rows, fits, mode, traffic),
               "c3": lambda: claim_c3(rows, fits, mode, traffic),
               "c4": lambda: claim_c4(rows, mode), "c5": lambda: claim_c5(rows, mode)}
    out = []
    for cid, func in results.items():
        try:
            verdict, measured = func() if mode else (NOT_MEASURED, "no rows")
        except (ValueError, ZeroDivisionError, TypeError) as exc:
            verdict, measured = NOT_MEASURED, f"could not be evaluated ({exc})"
        out.append({"id": cid, "claim": CLAIMS[cid], "verdict": verdict,
                    "measured": measured})
    return out


# -- sections ----------------------------------------------------------------------------
def loss_section(rows, fits):
    L = ["## Loss per hop", "",
         "Fitted t_out = (1 - l)^n * t_in by least squares on log throughput over every run "
         f"(n = 0 included in each layout); 95% interval from the slope's t interval. Seed 000 "
         f"measured about {pct(SEED_LOSS, 0)} per namespace hop (8 TCP flows over veth).", ""]
    if not fits:
        return L + ["No length series with two lengths or more: nothing fitted."]
    L += table(["mode", "layout", "traffic", "runs", "lengths", "t_in (Mbit/s)", "l",
                "95% interval", "R^2", "l - seed 000"],
               [[label(f["mode"]), f["layout"], f["traffic"], f["points"], f["hops"],
                 mbps(f["t_in"]), f"**{pct(f['loss'])}**", interval(f),
                 "-" if f["r2"] is None else f"{f['r2']:.3f}",
                 f"{100 * (f['loss'] - SEED_LOSS):+.1f} pp"] for f in fits])
    return L


def length_section(rows):
    L = ["", "## Throughput per chain length", "",
         "Mean +- sample std in Mbit/s (received); % of n = 0 in the same mode and traffic. "
         "Each hop is a namespace with IP forwarding on one port of the network's "
         "integration bridge; `same`: every function on the VMs' node, `spread`: functions "
         "round robin over the other compute nodes (hops over GRE: n functions cost n + 1 "
         "tunnel crossings when the last one is not on the VMs' node, so the first hop "
         "already pays two).", ""]
    body, direct = [], set()
    for mode, traffic, layout in ca.series_keys(rows):
        pts = ca.length_points(ca.length_rows(rows, mode, traffic, layout))
        base = next((p[1] for p in pts if p[0] == 0), None)
        for n, mean, std, count in pts:
            if n == 0:                  # n = 0 is every layout's: shown once
                if (mode, traffic) in direct:
                    continue
                direct.add((mode, traffic))
            crossings = [r.get("node_changes") for r in rows if r.get("part") == "length"
                         and r.get("layout") == ("direct" if n == 0 else layout)
                         and r.get("n") == n and r.get("node_changes") is not None]
            body.append([label(mode), traffic, "direct" if n == 0 else layout, n,
                         max(crossings) if crossings else "-", count,
                         mean_std(mean, std, count),
                         f"{100 * mean / base:.0f}%" if base else "-"])
    steered = [r for r in rows if boolean(r.get("steered")) is False]
    L += table(["mode", "traffic", "layout", "n", "tunnel crossings", "runs", "Mbit/s",
                "% of n=0"], body)
    L += ["", f"Every function's forwarded-packet counter was read around each run: "
              f"{len(steered)} run(s) had a function that saw nothing"
              + (" (see meta.json warnings)." if steered else " (all chains steered).")]
    return L


def rules_section(rows):
    L = ["", "## Throughput per firewall rule count", ""]
    keys = ca.rule_keys(rows)
    if not keys:
        return L + ["Not measured in this run."]
    L += ["iptables rules in the FORWARD chain that never match (every packet walks the "
          "list), then one ACCEPT; `single`: one firewall with every rule, `spread`: the "
          "rules split evenly over a chain of firewalls, all on the VMs' node. `stateful` "
          "puts a conntrack ESTABLISHED rule first; a chain is one-way (replies go direct), "
          "so the firewall never sees a reply, every packet stays NEW and still walks the "
          "list: stateful costs conntrack on top.", ""]
    body = []
    for mode, traffic, layout, stateful in keys:
        pts = ca.rule_points(rows, mode, traffic, layout, stateful)
        base = pts[0][1] if pts and pts[0][0] == 0 else None
        hops = next((r.get("n") for r in rows if r.get("part") == "rules"
                     and r.get("layout") == layout), None)
        for total, mean, std, count in pts:
            body.append([label(mode), traffic, layout, hops,
                         "stateful" if stateful else "stateless", total, count,
                         mean_std(mean, std, count),
                         f"{100 * mean / base:.0f}%" if base else "-"])
    return L + table(["mode", "traffic", "layout", "firewalls", "rules", "total rules", "runs",
                      "Mbit/s", "% of 0 rules"], body)


def cnb_section(rows, fits, meta):
    modes = sorted({mode_of(r) for r in rows})
    L = ["", "## CNB", "",
         "A chain makes sense in CNB too: a function is a port of the network on the common "
         "`br-int`, with the network's VLAN, and the same steering flows (model/chains) go "
         "on `br-int` with the common `patch-int` and VLAN; hops on other nodes ride the "
         "common tunnels. What differs is whose bridge the tenant's functions sit on: in DNB "
         "the tenant's own `brint-`, which a tenant's controller may program itself "
         "(ryu_apps/tenant_chain); in CNB the provider's shared one.", ""]
    if "cnb" not in modes:
        return L + [f"This run measured {', '.join(m.upper() for m in modes) or 'nothing'} "
                    "only (the spec's modes): no CNB comparison."]
    body = []
    for f in fits:
        if f["mode"] != "dnb":
            continue
        c = ca.find_fit(fits, "cnb", f["traffic"], f["layout"])
        if c is not None:
            body.append([f["layout"], f["traffic"], pct(f["loss"]), pct(c["loss"]),
                         f"{100 * (f['loss'] - c['loss']):+.1f} pp"])
    return L + table(["layout", "traffic", "l (DNB)", "l (CNB)", "DNB - CNB"], body)


def setup_section(meta, machine, note):
    L = ["## Setup", "", f"Machine{note}:", ""]
    L += table(["key", "value"], [[k, v] for k, v in machine.items() if k != "hostname"])
    if meta.get("nodes"):
        L += ["", "Nodes:", ""] + table(["key", "value"], list(meta["nodes"].items()))
    spec = meta.get("spec")
    L += ["", "Spec:", ""]
    L += ["```json", json.dumps(spec, indent=2, default=str), "```"] if spec else \
        ["- no spec in meta.json"]
    return L


# -- the report ----------------------------------------------------------------------------
def write_report(results_dir, render_figures=True, progress=None):
    """Write report.md into *results_dir*; returns its path."""
    rd, rows = chainplots.load(results_dir)
    figs = figures.report_figures(rd, chainplots.render, render_figures, progress)
    meta = rd.meta()
    machine, note = meta.get("machine"), ""
    if not machine:
        machine, note = machine_info(), " (collected when this report was written)"
    name = (meta.get("spec") or {}).get("name") or os.path.basename(rd.root)
    fits = ca.loss_fits(rows)
    mode, traffic = headline(rows)
    head = ca.find_fit(fits, mode, traffic, "same") if mode else None
    L = [f"# tenantnet chain experiment report: {name}", "", f"Results directory: `{rd.root}`",
         ""]
    facts = [(k, meta.get(k)) for k in ("status", "modes", "started", "finished", "seconds")
             if meta.get(k) is not None]
    if facts:
        L += ["Run: " + "; ".join(f"{k} {', '.join(v) if isinstance(v, list) else v}"
                                  for k, v in facts), ""]
    if head is not None:
        L += [f"**Headline** ({label(mode)}, {traffic}, functions on one node): measured loss "
              f"per hop l = **{pct(head['loss'])}** (95% interval {interval(head)}) against "
              f"seed 000's ~{pct(SEED_LOSS, 0)} per namespace hop.", ""]
    for key in ("warnings", "errors"):
        if meta.get(key):
            L += [f"Run {key}:", ""] + [f"- {w}" for w in meta[key]] + [""]
    L += setup_section(meta, machine, note) + [""]
    L += loss_section(rows, fits) + length_section(rows) + rules_section(rows)
    L += cnb_section(rows, fits, meta)
    L += ["", "## Figures", ""]
    for fig in chainplots.FIGURES:
        L += [f"![{fig}]({fig})" if fig in (figs.get("written") or {}) else
              f"- `{fig}`: skipped ({(figs.get('skipped') or {}).get(fig, 'not rendered')})", ""]
    results = claims(rows)
    L += ["## Claims of seed 000", "",
          f"Verdicts computed from the data above: {HOLDS} / {FAILS} / {NOT_MEASURED}; "
          f"directional claims need the claimed sign and t >= {T_MIN:g}. Judged on "
          f"{label(mode) if mode else '-'}: the length claims on traffic {traffic or '-'} "
          "(TCP with the most streams, as seed 000's 8 flows), the firewall claims on the "
          "first traffic of `chains.firewall.traffic`.", ""]
    L += table(["claim", "seed 000", "verdict"],
               [[c["id"], c["claim"].split(" [")[0], f"**{c['verdict']}**"] for c in results])
    L += [""]
    for c in results:
        L += [f"### {c['id']}: {c['claim']}", "", f"- measured: {c['measured']}",
              f"- **verdict: {c['verdict']}**", ""]
    path = rd.path("report.md")
    with open(path + ".tmp", "w") as fh:
        fh.write("\n".join(L).rstrip() + "\n")
    os.replace(path + ".tmp", path)
    return path

