"""The frame of an experiment run (``runner.run``, ``chainexp.run``): its progress on the
terminal (``Reporter``) and its record in meta.json (``recorded_run``: status, errors,
start and end), with the interrupt guard (interrupts.GUARD) installed around it; what
the nodes are (``node_info``) and the rendering of a results directory (``render``: plots
and report, or the chain report)."""

import contextlib
import datetime
import importlib
import importlib.util
import sys
import time

from tenantnet.experiment.interrupts import GUARD, ExperimentError


def now():
    """The time now, UTC, ISO 8601 to the second (meta.json's timestamps)."""
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")


# -- progress -------------------------------------------------------------------------
class _Task:
    def __init__(self, reporter, task_id):
        self.reporter, self.id = reporter, task_id

    def update(self, **kwargs):
        if self.reporter.progress is not None and self.id is not None:
            self.reporter.progress.update(self.id, **kwargs)

    def advance(self, n=1):
        if self.reporter.progress is not None and self.id is not None:
            self.reporter.progress.advance(self.id, n)

    def remove(self):
        if self.reporter.progress is not None and self.id is not None:
            self.reporter.progress.remove_task(self.id)
            self.id = None


class Reporter:
    """Progress for the whole run: rich bars with an ETA when *enabled*, plain log lines on
    stderr otherwise. Given to the bandwidth part as its ``progress`` argument:

    - ``reporter(text)`` or ``reporter.log(text)``: one line of log;
    - ``reporter.task(description, total)``: a bar of its own, returning a handle with
      ``update(completed=, total=, description=)``, ``advance(n)`` and ``remove()``;
    - ``reporter.progress``: the rich Progress (None when disabled);
    - ``reporter.enabled``: whether bars are shown (``bool(reporter)`` is always True: it
      always takes log lines)."""

    def __init__(self, enabled=True):
        self.enabled = bool(enabled)
        self.progress = None
        self._overall = None

    def __bool__(self):
        return True

    def __call__(self, text):
        self.log(text)

    def start(self, total_steps, description="experiment"):
        if not self.enabled:
            return self
        from rich.console import Console
        from rich.progress import (BarColumn, MofNCompleteColumn, Progress, SpinnerColumn,
                                   TextColumn, TimeElapsedColumn, TimeRemainingColumn)
        self.progress = Progress(SpinnerColumn(), TextColumn("{task.description}"),
                                 BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                                 TextColumn("ETA"), TimeRemainingColumn(),
                                 console=Console(stderr=True), transient=False)
        self.progress.start()
        self._overall = self.progress.add_task(description, total=total_steps)
        return self

    def stop(self):
        if self.progress is not None:
            self.progress.stop()
            self.progress = None

    def log(self, text):
        if self.progress is not None:
            self.progress.console.log(text)
        else:
            print(f"  · {text}", file=sys.stderr, flush=True)

    def task(self, description, total=None):
        if self.progress is None:
            return _Task(self, None)
        return _Task(self, self.progress.add_task(description, total=total))

    def step(self, n=1):
        """Advance the overall bar (one sub-experiment, or one mode's bandwidth part)."""
        if self.progress is not None and self._overall is not None:
            self.progress.advance(self._overall, n)

    def describe(self, text):
        if self.progress is not None and self._overall is not None:
            self.progress.update(self._overall, description=text)


@contextlib.contextmanager
def recorded_run(rd, meta, reporter, total_steps, description, on_end=None):
    """The body of a run (experiment or chain experiment) recorded in *meta*: the interrupt
    guard and the progress *reporter* started around it; status complete, interrupted
    (Ctrl-C or SIGTERM; the KeyboardInterrupt goes on) or failed (the error in errors, and
    raised again); whatever happens, on_end() (cleanup, empty tables), the reporter stopped,
    the guard removed, finished and seconds set and meta.json written."""
    GUARD.install()
    reporter.start(total_steps, description=description)
    try:
        yield
        meta["status"] = "complete"
    except KeyboardInterrupt:
        meta["status"] = "interrupted"
        reporter.stop()
        print(f"interrupted: the lab was torn down; partial results in {rd.root}",
              file=sys.stderr)
        raise
    except BaseException as exc:
        meta["status"] = "failed"
        meta["errors"].append(f"{type(exc).__name__}: {exc}")
        raise
    finally:
        if on_end is not None:
            on_end()
        reporter.stop()
        GUARD.uninstall()
        meta["finished"] = now()
        meta["seconds"] = round(time.time() - meta["started_epoch"], 1)
        rd.write_json("meta.json", meta)


def node_info(spec):
    """What the lab's nodes are: their kind, datapath and virtualisation (the latter filled
    in from the first lab that comes up with node VMs: 'kvm' or 'tcg')."""
    if spec.lab.nodes == "vm":
        return {"kind": "vm", "datapath": "system (kernel)", "virtualisation": None,
                "vm_memory_mb": spec.lab.vm_memory_mb}
    return {"kind": "emulated", "datapath": "netdev (userspace)",
            "virtualisation": "none: network namespaces on this host"}


def optional_module(name):
    """tenantnet.experiment.<name>, or None when that module does not exist (yet)."""
    full = f"tenantnet.experiment.{name}"
    if importlib.util.find_spec(full) is None:
        return None
    try:
        return importlib.import_module(full)
    except ImportError as exc:
        raise ExperimentError(f"{full} cannot be imported: {exc}") from None


def render(rd, meta=None):
    """plots.render(out_dir) and report.write_report(out_dir), when those modules exist
    (chainreport.write_report for a chain experiment's results).
    Problems are warnings (the measurements are already saved). Returns the warnings."""
    warnings = []
    parts = (("plots", "render"), ("report", "write_report"))
    if (meta if meta is not None else rd.meta()).get("experiment") == "chains":
        parts = (("chainreport", "write_report"),)      # it draws its figures too
    for modname, func in parts:
        try:
            mod = optional_module(modname)
        except ExperimentError as exc:
            warnings.append(str(exc))
            continue
        if mod is None:
            warnings.append(f"{modname}: tenantnet.experiment.{modname} is not available; "
                            "skipped")
            continue
        try:
            getattr(mod, func)(rd.root)
        except Exception as exc:  # noqa: BLE001 -- another part's bug must not lose results
            warnings.append(f"{modname}.{func} failed: {type(exc).__name__}: {exc}")
    for w in warnings:
        print(f"warning: {w}", file=sys.stderr)
    if meta is not None:
        meta["warnings"].extend(warnings)
    return warnings
