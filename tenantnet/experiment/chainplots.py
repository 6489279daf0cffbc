"""Figures of a chain experiment's results directory (matplotlib, Agg backend).

``render(results_dir)`` reads chains.csv and writes

    fig_chain_length.png   throughput against chain length n, one panel per traffic, one
                           series per (mode, layout): mean +- sample std per n, and the
                           fitted (1 - l)^n * t_in curve, with l and its 95% interval in
                           the legend
    fig_chain_rules.png    throughput against the chain's total iptables rule count, one
                           panel per traffic, one series per (mode, layout, stateful)

A figure whose data is missing is skipped with the reason (figures.json). Every number
drawn comes from ``chainanalysis``.
"""

import math

from tenantnet.experiment import chainanalysis as ca
from tenantnet.experiment.analysis import finite
from tenantnet.experiment.figures import pyplot, render_figures, save
from tenantnet.experiment.plots import label, rate_unit
from tenantnet.experiment.results import ResultsDir

FIGURES = ("fig_chain_length.png", "fig_chain_rules.png")
LAYOUT_LABELS = {"same": "same node", "spread": "spread over nodes",
                 "single": "one firewall", "spread-fw": "rules spread over the chain"}
LAYOUT_MARKERS = {"same": "o", "spread": "s", "single": "o"}


def load(results_dir):
    rd = results_dir if isinstance(results_dir, ResultsDir) else ResultsDir(results_dir,
                                                                            create=False)
    return rd, rd.read_csv("chains.csv", default=[])


def pct(v):
    return "-" if v is None else f"{100 * v:.1f}%"


def fit_label(fit):
    """'l = 12.3% [9.1%, 15.2%]' (the interval when there is one)."""
    text = f"l = {pct(fit['loss'])}"
    if fit.get("loss_low") is not None:
        text += f" [{pct(fit['loss_low'])}, {pct(fit['loss_high'])}]"
    return text


def _panels(plt, count):
    cols = min(3, count)
    rows = math.ceil(count / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(5.4 * cols, 4.3 * rows), squeeze=False)
    for ax in list(axes.flat)[count:]:
        ax.set_visible(False)
    return fig, list(axes.flat)[:count]


def _traffic_title(rows, traffic):
    r = next(x for x in rows if x.get("traffic") == traffic)
    streams = int(finite(r.get("streams")) or 1)
    what = f"{str(r.get('protocol')).upper()}, {streams} stream{'s' * (streams > 1)}"
    if str(r.get("protocol")).lower() == "udp":
        rate = str(r.get("udp_rate") or "0")
        what += ", as fast as it can" if rate in ("0", "0.0") else f", {rate}bit/s each"
    return f"{traffic} ({what})"


def _traffic_panels(plt, rows, keys, part):
    """One panel per traffic of series *keys*: (fig, [(ax, traffic, its keys)], divisor,
    unit), the throughput unit from the rows of *part*."""
    traffics = list(dict.fromkeys(k[1] for k in keys))
    fig, axes = _panels(plt, len(traffics))
    top = max(finite(r.get(ca.BPS)) or 0 for r in rows if r.get("part") == part)
    div, unit = rate_unit(top)
    panels = [(ax, t, [k for k in keys if k[1] == t]) for ax, t in zip(axes, traffics)]
    return fig, panels, div, unit


def _finish_panel(ax, rows, traffic, unit):
    ax.set_title(_traffic_title(rows, traffic))
    ax.set_ylabel(f"throughput received ({unit})")
    ax.set_ylim(bottom=0)
    ax.legend(fontsize=7, loc="best", framealpha=0.8)


def fig_length(plt, rows, path):
    from matplotlib.ticker import MaxNLocator
    fits = ca.loss_fits(rows)
    keys = ca.series_keys(rows)
    if not keys:
        return "no length rows in chains.csv"
    fig, panels, div, unit = _traffic_panels(plt, rows, keys, "length")
    for ax, traffic, series in panels:
        for i, (mode, t, layout) in enumerate(series):
            pts = ca.length_points(ca.length_rows(rows, mode, t, layout))
            if not pts:
                continue
            colour = f"C{i}"
            ax.errorbar([p[0] for p in pts], [p[1] / div for p in pts],
                        yerr=[p[2] / div for p in pts], marker=LAYOUT_MARKERS.get(layout, "^"),
                        ls="none", capsize=4, color=colour)
            fit = ca.find_fit(fits, mode, t, layout)
            name = f"{label(mode)}, {LAYOUT_LABELS.get(layout, layout)}"
            if fit is None:
                ax.plot([], [], color=colour, marker="o", label=name)
                continue
            xs = [x / 10 for x in range(0, int(10 * fit["n_max"]) + 1)]
            ax.plot(xs, [fit["t_in"] * (1 - fit["loss"]) ** x / div for x in xs],
                    color=colour, ls="--", label=f"{name}: {fit_label(fit)}")
        ax.set_xlabel("chain length n (functions crossed)")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        _finish_panel(ax, rows, traffic, unit)
    fig.suptitle("Throughput vs chain length\npoints: mean +- sample std; dashed: fitted "
                 "(1 - l)^n t_in, l [95% interval]", fontsize=10)
    return save(plt, fig, path)


def fig_rules(plt, rows, path):
    keys = ca.rule_keys(rows)
    if not keys:
        return "no firewall rows in chains.csv"
    fig, panels, div, unit = _traffic_panels(plt, rows, keys, "rules")
    for ax, traffic, series in panels:
        for i, (mode, t, layout, stateful) in enumerate(series):
            pts = ca.rule_points(rows, mode, t, layout, stateful)
            if not pts:
                continue
            spread = next((r.get("n") for r in rows if r.get("part") == "rules"
                           and r.get("layout") == layout), None)
            what = "one firewall" if layout == "single" else f"spread over {spread} firewalls"
            ax.errorbar([p[0] for p in pts], [p[1] / div for p in pts],
                        yerr=[p[2] / div for p in pts], marker=LAYOUT_MARKERS.get(layout, "s"),
                        capsize=4, color=f"C{i}", ls="-" if layout == "single" else "--",
                        label=f"{label(mode)}, {what}, "
                              f"{'stateful' if stateful else 'stateless'}")
        ax.set_xscale("symlog", linthresh=10)
        ax.set_xlabel("iptables rules in the chain (total; symlog scale)")
        _finish_panel(ax, rows, traffic, unit)
    fig.suptitle("Throughput vs firewall rule count\n(mean +- sample std)", fontsize=10)
    return save(plt, fig, path)


_FIG_FUNCS = {"fig_chain_length.png": fig_length, "fig_chain_rules.png": fig_rules}


def render(results_dir, progress=None):
    """Write every figure whose data is there; returns {"written": {name: path},
    "skipped": {name: reason}}, also saved as figures.json."""
    rd, rows = load(results_dir)
    return render_figures(rd, _FIG_FUNCS, rows, pyplot(titlesize=10), progress)


def print_fits(results_dir, out=None):
    """The fitted loss per hop of every series, one line each (for `experiment run`)."""
    import sys
    out = out or sys.stdout
    _, rows = load(results_dir)
    fits = ca.loss_fits(rows)
    if fits:
        print(f"  {'mode':5} {'layout':7} {'traffic':10} {'t_in Mbit/s':>11} {'l':>7} "
              "95% interval", file=out)
    for f in fits:
        print(f"  {f['mode']:5} {f['layout']:7} {f['traffic']:10} {f['t_in'] / 1e6:>11.1f} "
              f"{pct(f['loss']):>7} " + (f"[{pct(f['loss_low'])}, {pct(f['loss_high'])}]"
                                         if f.get("loss_low") is not None else "-"), file=out)
