"""Figures of one results directory (matplotlib, Agg backend: no display needed).

``render(results_dir)`` reads

    reachability.csv            mode, instances, networks, total, success (or successful),
                                failed, missing, mean_ms, std_ms, ...
    reachability_instances.csv  mode, instances, networks, repeat, vm, node, network,
                                bridges_existed, request_time, ready_time, reachable_time,
                                reachability_ms, status
    bandwidth.csv               bandwidth.BANDWIDTH_COLUMNS rows (lab modes and baselines)
    baseline.csv                (optional) baseline rows, if kept apart from bandwidth.csv

and writes the PNGs below next to them. A figure whose data is missing (no CNB run yet, no
bandwidth rows, ...) is skipped with a note; render never fails because data is absent.

    fig4_dnb_reachability.png       DNB mean reachability vs instances, one series per
                                    network count, error bars = sample std
    fig5_reachability_dnb_vs_cnb.png  DNB and CNB side by side, one panel per network count
    fig6_bandwidth_tcp_udp.png      mean TCP (a) and UDP (b) bandwidth per mode, baselines
                                    (veth, ovs-flat on this host; vm-transport,
                                    vm-ovs-flat on node VMs) as grey hatched
                                    reference bars
    fig7_tcp_per_direction.png      TCP per direction (probe->vm vs vm->probe) per mode
    fig8_tcp_dnb_vs_cnb.png         TCP DNB vs CNB per direction and combined, with the
                                    relative difference
    fig_first_instances.png         per-instance reachability vs arrival order, instances
                                    that created their network's bridges in red

Every number drawn comes from ``analysis``; this module loads the tables and draws.
"""

import math
import statistics

from tenantnet.experiment.analysis import (BASELINE_MODES, COMBINED, DIRECTIONS,
                                           arrival_order, describe, measurements, mode_of,
                                           modes_in, numbers, reachability_series)
from tenantnet.experiment.figures import pyplot, render_figures, save
from tenantnet.experiment.results import ResultsDir

FIGURES = ("fig4_dnb_reachability.png", "fig5_reachability_dnb_vs_cnb.png",
           "fig6_bandwidth_tcp_udp.png", "fig7_tcp_per_direction.png",
           "fig8_tcp_dnb_vs_cnb.png", "fig_first_instances.png")
CEILINGS = ("veth", "vm-transport")      # the "% of" reference, the first one present
SHORT_LABELS = {"veth": "veth", "ovs-flat": "flat OVS", "vm-transport": "VM-VM transport",
                "vm-ovs-flat": "flat OVS in a VM"}
MODE_LABELS = {"dnb": "DNB", "cnb": "CNB", "veth": "veth pair (ceiling)",
               "ovs-flat": "flat OVS bridge (reference)",
               "vm-transport": "VM-VM transport (ceiling)",
               "vm-ovs-flat": "flat OVS in a VM (reference)"}
MODE_COLOURS = {"dnb": "#1f77b4", "cnb": "#ff7f0e", "veth": "#7f7f7f", "ovs-flat": "#b0b0b0",
                "vm-transport": "#7f7f7f", "vm-ovs-flat": "#b0b0b0"}
DIRECTION_LABELS = {"probe->vm": "probe → VM (controller to VM)",
                    "vm->probe": "VM → probe (VM to controller)",
                    COMBINED: "both directions"}


# -- loading -----------------------------------------------------------------------------
def load(results_dir):
    """The tables of *results_dir* as lists of dicts (empty lists for missing files)."""
    rd = results_dir if isinstance(results_dir, ResultsDir) else ResultsDir(results_dir,
                                                                            create=False)
    data = {}
    for name in ("reachability", "reachability_instances", "bandwidth", "baseline"):
        data[name] = rd.read_csv(name + ".csv", default=[])
    seen = {id(r) for r in data["bandwidth"]}
    bw_rows = list(data["bandwidth"])
    # baseline.csv rows that are not already in bandwidth.csv (same mode+vm+proto+dir+repeat)
    keys = {(mode_of(r), r.get("vm"), r.get("protocol"), r.get("direction"), r.get("repeat"))
            for r in bw_rows}
    for r in data["baseline"]:
        k = (mode_of(r), r.get("vm"), r.get("protocol"), r.get("direction"), r.get("repeat"))
        if k not in keys and id(r) not in seen:
            bw_rows.append(r)
    data["bandwidth_all"] = bw_rows
    return rd, data


# -- presentation --------------------------------------------------------------------------
def rate_unit(max_value):
    """(divisor, label) for bits per second."""
    v = max_value or 0.0
    if v >= 1e9:
        return 1e9, "Gbit/s"
    if v >= 1e6:
        return 1e6, "Mbit/s"
    if v >= 1e3:
        return 1e3, "kbit/s"
    return 1.0, "bit/s"


def sig(v):
    """*v* with three significant digits, keeping trailing zeros (1.00, 0.218, 100)."""
    return f"{v:.0f}" if abs(v) >= 100 else f"{v:#.3g}"


def label(mode):
    return MODE_LABELS.get(mode, mode.upper())


def colour(mode, i=0):
    return MODE_COLOURS.get(mode, f"C{(i + 2) % 10}")


# -- plotting ----------------------------------------------------------------------------
def fig4(plt, data, path):
    series = reachability_series(data["reachability"], "dnb")
    if not series:
        return "no DNB rows in reachability.csv"
    fig, ax = plt.subplots(figsize=(7.5, 4.8))
    for i, (k, pts) in enumerate(series.items()):
        xs, ys, es = [p[0] for p in pts], [p[1] for p in pts], [p[2] or 0.0 for p in pts]
        ax.errorbar(xs, ys, yerr=es, marker="o", capsize=4, label=f"{k} network{'s' * (k > 1)}",
                    color=f"C{i}")
    ax.set_title("Fig. 4 - DNB: mean reachability time vs number of instances")
    ax.set_xlabel("instances requested in one batch")
    ax.set_ylabel("reachability time (ms)")
    ax.set_ylim(bottom=0)
    ax.legend(title="series")
    ax.text(0.01, 0.98, "error bars: sample std over successful instances",
            transform=ax.transAxes, va="top", fontsize=8, color="0.35")
    return save(plt, fig, path)


def fig5(plt, data, path):
    dnb = reachability_series(data["reachability"], "dnb")
    cnb = reachability_series(data["reachability"], "cnb")
    if not dnb or not cnb:
        have = [name for name, series in (("DNB", dnb), ("CNB", cnb)) if series]
        return f"needs DNB and CNB reachability rows (have: {', '.join(have) or 'none'})"
    counts = sorted(set(dnb) | set(cnb))
    cols = min(3, len(counts))
    rows = math.ceil(len(counts) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4.6 * cols, 3.8 * rows), squeeze=False,
                             sharey=True)
    for ax, k in zip(axes.flat, counts):
        for mode, series in (("dnb", dnb), ("cnb", cnb)):
            pts = series.get(k)
            if not pts:
                continue
            ax.errorbar([p[0] for p in pts], [p[1] for p in pts],
                        yerr=[p[2] or 0.0 for p in pts], marker="o" if mode == "dnb" else "s",
                        capsize=4, color=colour(mode), label=label(mode))
        ax.set_title(f"{k} network{'s' * (k > 1)}")
        ax.set_xlabel("instances requested")
        ax.set_ylabel("reachability time (ms)")
        ax.legend()
    for ax in list(axes.flat)[:len(counts)]:   # after all panels (shared y axis)
        ax.set_ylim(bottom=0)
    for ax in list(axes.flat)[len(counts):]:
        ax.set_visible(False)
    fig.suptitle("Fig. 5 - mean reachability time, DNB vs CNB (error bars: sample std)")
    return save(plt, fig, path)


def _mean_std(vals):
    """(mean, sample std) for a bar and its error bar: no spread drawn for one value."""
    if not vals:
        return None, None
    st = describe(vals)
    return st["mean"], st["std"] or 0.0


def fig6(plt, data, path):
    rows = data["bandwidth_all"]
    modes = modes_in(rows)
    if not rows or not any(m not in BASELINE_MODES for m in modes):
        return "no lab-mode rows in bandwidth.csv"
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.8))
    ceiling = None
    for ax, proto, tag in ((axes[0], "tcp", "(a) TCP"), (axes[1], "udp", "(b) UDP")):
        stats = [(m, *_mean_std(measurements(rows, m, proto))) for m in modes]
        stats = [s for s in stats if s[1] is not None]
        if not stats:
            ax.text(0.5, 0.5, f"no {proto.upper()} measurements", ha="center",
                    transform=ax.transAxes)
            ax.set_title(f"{tag}: no data")
            continue
        div, unit = rate_unit(max(s[1] + (s[2] or 0) for s in stats))
        xs = list(range(len(stats)))
        for x, (m, mean, std) in zip(xs, stats):
            base = m in BASELINE_MODES
            ax.bar(x, mean / div, yerr=std / div, capsize=5, color=colour(m, x),
                   hatch="//" if base else None, edgecolor="0.25", label=label(m))
        ref = next((m for m in CEILINGS if any(s[0] == m for s in stats)), None)
        veth = next((s[1] for s in stats if s[0] == ref), None)
        top = max((s[1] + (s[2] or 0)) / div for s in stats)
        for x, (m, mean, std) in zip(xs, stats):
            text = sig(mean / div)
            if veth and m != ref:
                text += f"\n{100 * mean / veth:.0f}% of {SHORT_LABELS[ref]}"
            ax.text(x, (mean + (std or 0)) / div + 0.02 * top, text, ha="center",
                    va="bottom", fontsize=8)
        ax.set_xticks(xs, [label(s[0]).replace(" (", "\n(") for s in stats])
        ax.set_ylabel(f"mean bandwidth ({unit})")
        ax.set_ylim(0, top * 1.25)
        rate = next((r.get("udp_rate") for r in rows if str(r.get("protocol")).lower() == "udp"
                     and r.get("udp_rate")), None)
        extra = f", offered {rate}bit/s" if proto == "udp" and rate else ""
        ax.set_title(f"{tag}: both directions{extra}")
        ceiling = ceiling or veth
    fig.suptitle("Fig. 6 - mean bandwidth probe <-> VM per mode (error bars: sample std); "
                 "hatched = same-run references")
    return save(plt, fig, path)


def _baseline_lines(ax, rows, direction, div, unit, top):
    """Dashed reference lines for the baselines; those above *top* become a note."""
    notes = []
    for b, style in zip(BASELINE_MODES, ("--", ":", "--", ":")):
        mean, _ = _mean_std(measurements(rows, b, "tcp", direction))
        if mean is None:
            continue
        if mean / div <= top:
            ax.axhline(mean / div, color="0.3", ls=style, lw=1.2, label=label(b))
            ax.text(0.01, mean / div, f" {sig(mean / div)} {unit}", transform=ax.get_yaxis_transform(),
                    ha="left", va="bottom", fontsize=8, color="0.25")
        else:
            notes.append(f"{label(b)}: {sig(mean / div)} {unit} (above the scale)")
    if notes:
        ax.text(0.99, 0.98, "\n".join(notes), transform=ax.transAxes, ha="right", va="top",
                fontsize=8, color="0.25", bbox={"facecolor": "white", "alpha": 0.8,
                                                 "edgecolor": "0.7"})


def fig7(plt, data, path):
    rows = [r for r in data["bandwidth_all"] if str(r.get("protocol")).lower() == "tcp"]
    lab_modes = [m for m in modes_in(rows) if m not in BASELINE_MODES]
    if not lab_modes:
        return "no lab-mode TCP rows in bandwidth.csv"
    vms = []
    for r in rows:
        if mode_of(r) in lab_modes and r.get("vm") not in vms:
            vms.append(r.get("vm"))
    groups = vms + ["all VMs"]

    def vals(m, d, g):
        return numbers(r.get("bits_per_second") for r in rows
                       if mode_of(r) == m and r.get("direction") == d
                       and (g == "all VMs" or r.get("vm") == g))

    lab_max = max((v for m in lab_modes for d in DIRECTIONS for v in vals(m, d, "all VMs")),
                  default=0.0)
    base_means = [_mean_std(measurements(rows, b, "tcp", d))[0] for b in BASELINE_MODES
                  for d in DIRECTIONS]
    in_range = [b for b in base_means if b is not None and b <= 1.6 * lab_max]
    div, unit = rate_unit(max([lab_max] + in_range))
    top = max([lab_max] + in_range) / div * 1.2
    fig, axes = plt.subplots(1, 2, figsize=(max(10, 1.6 * len(groups) * len(lab_modes) + 4),
                                            4.8), sharey=True)
    width = 0.8 / len(lab_modes)
    for ax, d, tag in zip(axes, DIRECTIONS, ("(a)", "(b)")):
        for j, m in enumerate(lab_modes):
            for i, g in enumerate(groups):
                vs = vals(m, d, g)
                if not vs:
                    continue
                mean, std = _mean_std(vs)
                x = i + (j - (len(lab_modes) - 1) / 2) * width
                ax.bar(x, mean / div, width, yerr=std / div, capsize=4, color=colour(m, j),
                       edgecolor="0.25", label=label(m) if i == len(groups) - 1 else None)
                ax.scatter([x] * len(vs), [v / div for v in vs], s=12, color="k", zorder=3,
                           alpha=0.6)
        _baseline_lines(ax, rows, d, div, unit, top)
        ax.set_xticks(range(len(groups)), groups)
        ax.set_xlabel("VM (bars: mean over repeats; dots: single runs)")
        ax.set_ylabel(f"TCP bandwidth ({unit})")
        ax.set_ylim(0, top)
        ax.set_title(f"{tag} {DIRECTION_LABELS[d]}")
    handles, labels = {}, []
    for ax in axes:
        for h, lab in zip(*ax.get_legend_handles_labels()):
            if lab not in handles:
                handles[lab] = h
                labels.append(lab)
    fig.legend([handles[lab] for lab in labels], labels, loc="lower center",
               ncol=len(labels), fontsize=9)
    fig.suptitle("Fig. 7 - TCP bandwidth per direction (error bars: sample std; lines: "
                 "same-run references)")
    fig.tight_layout(rect=(0, 0.07, 1, 1))
    fig.savefig(path)
    plt.close(fig)
    return path


def fig8(plt, data, path):
    rows = [r for r in data["bandwidth_all"] if str(r.get("protocol")).lower() == "tcp"]
    have = [m for m in ("dnb", "cnb") if measurements(rows, m, "tcp")]
    if len(have) < 2:
        return f"needs TCP rows for DNB and CNB (have: {', '.join(have) or 'none'})"
    groups = list(DIRECTIONS) + [COMBINED]

    def vals(m, g):
        return measurements(rows, m, "tcp", None if g == COMBINED else g)

    div, unit = rate_unit(max(max(vals(m, g) or [0]) for m in have for g in groups))
    fig, ax = plt.subplots(figsize=(8.5, 4.8))
    width = 0.38
    tops = []
    for j, m in enumerate(("dnb", "cnb")):
        for i, g in enumerate(groups):
            mean, std = _mean_std(vals(m, g))
            if mean is None:
                continue
            ax.bar(i + (j - 0.5) * width, mean / div, width, yerr=std / div, capsize=4,
                   color=colour(m), edgecolor="0.25", label=label(m) if i == 0 else None)
            tops.append((mean + std) / div)
    for i, g in enumerate(groups):
        d, c = _mean_std(vals("dnb", g))[0], _mean_std(vals("cnb", g))[0]
        if d is not None and c:
            ax.text(i, max(tops) * 1.04, f"DNB vs CNB: {100 * (d - c) / c:+.1f}%",
                    ha="center", fontsize=9)
    ax.set_xticks(range(len(groups)), [DIRECTION_LABELS[g] for g in groups], fontsize=9)
    ax.set_ylabel(f"mean TCP bandwidth ({unit})")
    ax.set_ylim(0, max(tops) * 1.15)
    ax.set_title("Fig. 8 - TCP bandwidth, DNB vs CNB (error bars: sample std)")
    ax.legend(loc="lower right")
    return save(plt, fig, path)


def fig_first(plt, data, path):
    pts = arrival_order(data["reachability_instances"])
    if not pts:
        return "no successful rows in reachability_instances.csv"
    modes = [m for m in modes_in([{"mode": p[0]} for p in pts])]
    fig, axes = plt.subplots(1, len(modes), figsize=(6.2 * len(modes), 4.6), squeeze=False,
                             sharey=True)
    for ax, m in zip(axes.flat, modes):
        mine = [p for p in pts if p[0] == m]
        for flag, col, text in ((True, "#1f77b4", "bridges already there"),
                                (None, "#999999", "bridges_existed unknown"),
                                (False, "#d62728", "created its network's bridges")):
            sel = [p for p in mine if p[3] is flag]
            if not sel:
                continue
            mean = statistics.fmean(p[2] for p in sel)
            ax.scatter([p[1] for p in sel], [p[2] for p in sel], s=16, alpha=0.65, color=col,
                       label=f"{text} (n={len(sel)}, mean {mean:.0f} ms)", zorder=3 - (flag is True))
        # mean per arrival index over all runs
        by_i = {}
        for p in mine:
            by_i.setdefault(p[1], []).append(p[2])
        xs = sorted(by_i)
        ax.plot(xs, [statistics.fmean(by_i[x]) for x in xs], color="k", lw=1, alpha=0.6,
                label=f"{label(m)} mean at this position")
        for other in modes:
            if other == m or m != "dnb":
                continue
            ref = {}
            for p in pts:
                if p[0] == other:
                    ref.setdefault(p[1], []).append(p[2])
            rx = sorted(ref)
            ax.plot(rx, [statistics.fmean(ref[x]) for x in rx], color=colour(other), lw=1.2,
                    ls="--", label=f"{label(other)} mean at this position")
        ax.set_title(f"{label(m)}: reachability by request order")
        ax.set_xlabel("request order in its batch (1 = first request)")
        ax.set_ylabel("reachability time (ms)")
        ax.legend(fontsize=8, loc="best", framealpha=0.9)
    for ax in axes.flat:            # after all panels: sharey must see every panel's data
        ax.set_ylim(bottom=0)
    fig.suptitle("Per-instance reachability: do the first instances pay for bridge creation?")
    return save(plt, fig, path)


_FIG_FUNCS = {"fig4_dnb_reachability.png": fig4, "fig5_reachability_dnb_vs_cnb.png": fig5,
              "fig6_bandwidth_tcp_udp.png": fig6, "fig7_tcp_per_direction.png": fig7,
              "fig8_tcp_dnb_vs_cnb.png": fig8, "fig_first_instances.png": fig_first}


def render(results_dir, progress=None):
    """Write every figure whose data is there. Returns {"written": {name: path},
    "skipped": {name: reason}}; also saved as figures.json in the directory."""
    rd, data = load(results_dir)
    return render_figures(rd, _FIG_FUNCS, data, pyplot(), progress)
