"""What the figure modules (``plots``, ``chainplots``) share: matplotlib on the Agg backend
(no display needed) with their common settings, saving a figure, and drawing a set of
figures into a results directory, each one skipped with its reason when it cannot be
drawn (figures.json)."""

import os


def pyplot(titlesize=11):
    """matplotlib.pyplot on the Agg backend, with the figures' common settings."""
    import matplotlib
    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt
    plt.rcParams.update({"figure.dpi": 110, "savefig.dpi": 110, "font.size": 10,
                         "axes.grid": True, "grid.alpha": 0.3, "axes.titlesize": titlesize})
    return plt


def save(plt, fig, path):
    """Write *fig* to *path* and close it; returns *path*."""
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


def report_figures(rd, render, render_figures=True, progress=None):
    """The figures a report of results directory *rd* shows: drawn now by
    render(rd, progress=...) (a module's `render`), or else as figures.json recorded them."""
    if render_figures:
        return render(rd, progress=progress)
    return rd.read_json("figures.json", default={"written": [], "skipped": {}})


def render_figures(rd, funcs, data, plt, progress=None):
    """Draw func(plt, data, path) for each {name: func} of *funcs* into results directory
    *rd*; a func returns the path it wrote, or why it drew nothing. One bad figure does not
    stop the others, and no stale file of an older render is left under a skipped name.
    Returns {"written": {name: path}, "skipped": {name: reason}}, also saved as
    figures.json."""
    written, skipped = {}, {}
    for name, func in funcs.items():
        path = rd.path(name)
        try:
            result = func(plt, data, path)
        except Exception as exc:  # noqa: BLE001 -- one bad figure must not stop the others
            plt.close("all")
            result = f"could not be drawn: {type(exc).__name__}: {exc}"
        if result == path and os.path.getsize(path) > 0:
            written[name] = path
        else:
            skipped[name] = result
            if os.path.exists(path):
                os.remove(path)          # never leave a stale figure from an older render
        if progress:
            progress(f"{name}: {'written' if name in written else 'skipped: ' + skipped[name]}")
    rd.write_json("figures.json", {"written": sorted(written), "skipped": skipped})
    return {"written": written, "skipped": skipped}
