"""report.md for one results directory: setup, the reachability records, the bandwidth
summary with ratios to the same-run baselines, the figures, and the paper's claims set
beside what was measured, each with its verdict (``claims``).

    write_report(results_dir) -> path of report.md

Inputs (all optional; what is missing is reported as not measured): reachability.csv,
reachability_instances.csv, bandwidth.csv (and baseline.csv), spec.json (or meta.json with a
"spec" key), machine.json or meta.json ``machine`` (``machine.machine_info()``; collected at
report time when absent), figures written by ``plots.render`` (called here unless
``render_figures=False``). The statistics are ``analysis``'s and the verdicts ``claims``';
this module writes.
"""

import json
import os
import sys

from tenantnet.experiment import analysis, figures, plots
from tenantnet.experiment.analysis import COMBINED, DIRECTIONS, finite, mode_of
from tenantnet.experiment.claims import FAILS, HOLDS, NOT_MEASURED, T_MIN, claims
from tenantnet.experiment.machine import machine_info


# -- setup ---------------------------------------------------------------------------------
def _baseline_lines(bases, meta):
    """What the run's baselines are (meta.json ``baselines``, else by mode name)."""
    from tenantnet.experiment import baseline
    info = meta.get("baselines") if isinstance(meta.get("baselines"), dict) else {}
    described = dict(info.get("modes") or {})
    for kind in ("host", "vm"):
        for m, text in baseline.describe("", kind, info.get("nodes")).items():
            described.setdefault(m, text)
    if not bases:
        return []
    where = {"vm": "on the lab's node VMs: the same path without tenantnet",
             "host": "on this host, with no lab up"}.get(info.get("kind"), "")
    out = [f"Baselines measured in the same run{' ' + where if where else ''}; the ratios "
           "below compare against them:", ""]
    out += [f"- `{m}` ({plots.label(m)}): {described.get(m, 'no description')}" for m in bases]
    return out + [""]


def _table(headers, rows):
    out = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    for r in rows:
        out.append("| " + " | ".join("-" if v is None else str(v).replace("|", "\\|")
                                     for v in r) + " |")
    return out


def _f(v, digits=1):
    v = finite(v)
    return None if v is None else f"{v:.{digits}f}"


def _tuning_lines(data, spec):
    lines = []
    if isinstance(spec, dict) and spec.get("tuning"):
        lines.append(f"- spec tuning: `{json.dumps(spec['tuning'], sort_keys=True)}`")
    combos = {}
    for r in data["bandwidth_all"]:
        key = (mode_of(r), r.get("mtu"), r.get("tx_offload"), json.dumps(r.get("neigh_gc_thresh")),
               r.get("tcp_congestion"), r.get("iperf_version"))
        combos[key] = combos.get(key, 0) + 1
    if combos:
        lines.append("- as applied to the measured endpoints (from bandwidth rows):")
        lines.append("")
        lines += _table(["mode", "MTU", "TX checksum offload", "neigh gc_thresh",
                         "TCP congestion control", "iperf3", "rows"],
                        [[k[0], k[1], k[2], k[3] if k[3] != "null" else "not applied", k[4],
                          k[5], n] for k, n in combos.items()])
    return lines


# -- the sections --------------------------------------------------------------------------
def _head_lines(rd, meta, spec):
    name = spec.get("name") if isinstance(spec, dict) and spec.get("name") else \
        os.path.basename(rd.root)
    L = [f"# tenantnet experiment report: {name}", "",
         f"Results directory: `{rd.root}`", ""]
    run_facts = [(k, meta.get(k)) for k in ("status", "modes", "started", "finished", "seconds")
                 if meta.get(k) is not None]
    if run_facts:
        L += ["Run: " + "; ".join(f"{k} {', '.join(v) if isinstance(v, list) else v}"
                                  for k, v in run_facts), ""]
    for key in ("warnings", "errors"):
        if meta.get(key):
            L += [f"Run {key}:", ""] + [f"- {w}" for w in meta[key]] + [""]
    return L


def _setup_lines(data, meta, spec, machine, machine_note):
    L = ["## Setup", "", f"Machine{machine_note}:", ""]
    L += _table(["key", "value"], [[k, v] for k, v in machine.items()
                                   if k not in ("hostname",)])
    nodes = meta.get("nodes")
    if nodes:
        L += ["", "Nodes:", ""]
        L += _table(["key", "value"], [[k, v] for k, v in nodes.items()])
    labs = meta.get("labs")
    if isinstance(labs, dict) and labs.get("events"):
        kinds = [e.get("event") for e in labs["events"]]
        usual = ("built", "mode switched", "reset", "torn down")
        other = [k for k in kinds if k not in usual]
        L += ["", f"Labs: {labs.get('reuse', 'shared')}: {kinds.count('built')} built, "
                  f"{kinds.count('mode switched')} mode switch(es), {kinds.count('reset')} "
                  "reset(s) checked against the fresh state"
                  + (f"; {', '.join(other)} (see meta.json)" if other else "") + "."]
    L += ["", "Tuning (section III.G):", ""]
    L += _tuning_lines(data, spec) or ["- no tuning information in this run"]
    L += ["", "Spec:", ""]
    if spec is not None:
        L += ["```json", json.dumps(spec, indent=2, sort_keys=False, default=str), "```"]
    else:
        L += ["- no spec.json in this run"]
    return L


def _reachability_lines(recs):
    L = ["", "## Reachability time (section IV.A)", ""]
    if not recs:
        return L + ["Not measured in this run (no reachability.csv)."]
    L += ["The paper's eight fields per sub-experiment (mode leads; times over successful "
          "instances, std = sample standard deviation):", ""]
    has_split = any(r.get("mean_ms_bridges_created") is not None for r in recs)
    headers = ["mode", "instances", "networks", "total", "success", "failed", "missing",
               "mean (ms)", "std (ms)"]
    if has_split:
        headers += ["mean, created bridges (ms)", "mean, bridges existed (ms)"]
    body = []
    for r in recs:
        row = [mode_of(r).upper(), r.get("instances"), r.get("networks"), r.get("total"),
               r.get("success", r.get("successful")), r.get("failed"), r.get("missing"),
               _f(r.get("mean_ms")), _f(r.get("std_ms"))]
        if has_split:
            row += [_f(r.get("mean_ms_bridges_created")), _f(r.get("mean_ms_bridges_existed"))]
        body.append(row)
    return L + _table(headers, body)


def _tcp_body(rows, summary, bases):
    body = []
    for m in analysis.modes_in(rows):
        for d in list(DIRECTIONS) + [COMBINED]:
            st = summary[m]["tcp"].get(d)
            if not st or not st["n"]:
                continue
            ratios = []
            for b in bases:
                bd = summary.get(b, {}).get("tcp", {}).get(d, {}).get("mean")
                ratios.append(f"{100 * st['mean'] / bd:.0f}%" if bd and m != b else None)
            body.append([plots.label(m), d, st["n"], _f(st["mean"] / 1e6),
                         _f((st["std"] or 0) / 1e6) if st["std"] is not None else None,
                         *ratios])
    return body


def _udp_body(rows, summary, bases):
    ubase = {m: summary[m]["udp"].get("bits_per_second", {}).get(COMBINED, {}).get("mean")
             for m in bases}
    body = []
    for m in analysis.modes_in(rows):
        u = summary[m]["udp"]
        if not u or not u["bits_per_second"][COMBINED]["n"]:
            continue

        def ms(metric, scale=1.0, digits=2):
            st = u[metric][COMBINED]
            if st["mean"] is None:
                return None
            std = "-" if st["std"] is None else f"{st['std'] / scale:.{digits}f}"
            return f"{st['mean'] / scale:.{digits}f} +- {std}"
        bps = u["bits_per_second"][COMBINED]["mean"]
        ratios = [f"{100 * bps / ubase[b]:.0f}%" if ubase.get(b) and m != b else None
                  for b in bases]
        body.append([plots.label(m), u["bits_per_second"][COMBINED]["n"],
                     ms("bits_per_second", 1e6, 3), ms("jitter_ms", 1, 4), ms("packets", 1, 0),
                     ms("lost_packets", 1, 1), ms("lost_percent", 1, 3),
                     ms("out_of_order", 1, 1), *ratios])
    return body


def _bandwidth_lines(rows, meta):
    L = ["", "## Bandwidth (section IV.B)", ""]
    if not rows:
        return L + ["Not measured in this run (no bandwidth.csv)."]
    summary = analysis.summarise(rows)
    bases = [m for m in analysis.BASELINE_MODES if m in summary]
    base = {m: summary[m]["tcp"].get(COMBINED, {}).get("mean") for m in bases}
    ratio_heads = [f"% of {plots.SHORT_LABELS.get(b, b)}" for b in bases]
    L += _baseline_lines(bases, meta)
    L += ["TCP (iperf3, bits received per second; std = sample standard deviation; ratios "
          "to the same-run baselines" + (f": {', '.join(bases)}" if bases else "") + "):",
          ""]
    L += _table(["mode", "direction", "n", "mean (Mbit/s)", "std (Mbit/s)", *ratio_heads],
                _tcp_body(rows, summary, bases))
    L += ["", "UDP (both directions; bandwidth received; datagrams sent):", ""]
    L += _table(["mode", "n", "bandwidth (Mbit/s)", "jitter (ms)", "datagrams",
                 "lost", "lost (%)", "out of order", *ratio_heads],
                _udp_body(rows, summary, bases))
    if not base:
        L += ["", "No baselines in this run: ratios not available."]
    return L


def _figure_lines(written, skipped):
    L = ["", "## Figures", ""]
    for fig in plots.FIGURES:
        if fig in written:
            L += [f"![{fig}]({fig})", ""]
        else:
            L += [f"- `{fig}`: skipped ({skipped.get(fig, 'not rendered')})", ""]
    return L


def _claim_lines(data):
    L = ["## Claims", "",
         f"Verdicts are computed from the data above: {HOLDS} / {FAILS} / {NOT_MEASURED}. "
         f"A directional claim holds when the sign is as claimed and Welch's t >= {T_MIN:g}.",
         ""]
    results = claims(data)
    L += _table(["claim", "paper", "verdict", "why"],
                [[c["id"], c["claim"].split(" [")[0], f"**{c['verdict']}**", c["why"]]
                 for c in results])
    L += [""]
    for c in results:
        L += [f"### Claim {c['id']}: {c['claim']}", "",
              f"- measured: {c['measured']}",
              f"- **verdict: {c['verdict']}**" + (f" ({c['why']})" if c["why"] else ""), ""]
    return L


# -- the report ------------------------------------------------------------------------------
def write_report(results_dir, render_figures=True, progress=None):
    """Write report.md into *results_dir*; returns its path."""
    rd, data = plots.load(results_dir)
    figs = figures.report_figures(rd, plots.render, render_figures, progress)
    meta = rd.meta()
    spec = rd.read_json("spec.json", default=None) or meta.get("spec")
    if isinstance(spec, dict) and meta.get("tuning") and not spec.get("tuning"):
        spec = dict(spec, tuning=meta["tuning"])
    machine = rd.read_json("machine.json", default=None) or meta.get("machine")
    machine_note = ""
    if machine is None:
        machine = machine_info()
        machine_note = " (collected when this report was written: no machine.json in the run)"
    L = (_head_lines(rd, meta, spec)
         + _setup_lines(data, meta, spec, machine, machine_note)
         + _reachability_lines(data["reachability"])
         + _bandwidth_lines(data["bandwidth_all"], meta)
         + _figure_lines(figs.get("written") or {}, figs.get("skipped") or {})
         + _claim_lines(data))
    path = rd.path("report.md")
    tmp = path + ".tmp"
    with open(tmp, "w") as fh:
        fh.write("\n".join(L).rstrip() + "\n")
    os.replace(tmp, path)
    return path


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 1:
        print("usage: python -m tenantnet.experiment.report RESULTS_DIR", file=sys.stderr)
        return 2
    print(write_report(argv[0], progress=print))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
