"""An experiment's errors and what Ctrl-C and SIGTERM do while it runs.

`ExperimentError` is the error of an experiment that could not be carried out (one line for
the user); `Interrupted` the one of a run that was stopped. `GUARD`, the one InterruptGuard,
is installed around a run by runframe.recorded_run; `shield_interrupts()` (GUARD.shield)
keeps a teardown from being cut short."""

import contextlib
import signal
import sys
import threading

from tenantnet.errors import TenantnetError


class ExperimentError(TenantnetError):
    """An experiment that could not be carried out."""


class Interrupted(ExperimentError):
    """The run was stopped (Ctrl-C or SIGTERM); the lab was torn down."""


# -- interrupt handling ---------------------------------------------------------------
class InterruptGuard:
    """What Ctrl-C (SIGINT) and SIGTERM do while an experiment runs (runner.run installs it).

    - Outside a shield, the first signal raises KeyboardInterrupt: the run stops and tears
      its lab down.
    - Inside a shield (a teardown) a signal is only noted: the teardown always completes.
      If it was the first one, KeyboardInterrupt is raised when the shield ends, so a
      Ctrl-C during the routine teardown between two sub-experiments is not lost either.
    - Once the interrupt is raised, further signals are noted and ignored until run() ends.

    The teardown itself runs in a child process of its own session (runner.teardown), so
    the terminal's SIGINT, which goes to the whole foreground process group, cannot kill
    a half-done `ip netns del` or `ovs-appctl exit` either. Without an installed guard
    (library use, other threads) a shield falls back to ignoring the signals (SIG_IGN,
    inherited by the children it starts)."""

    SIGNALS = (signal.SIGINT, signal.SIGTERM)

    def __init__(self):
        self.installed = False
        self.count = 0
        self.raised = False
        self.pending = False
        self.depth = 0
        self._old = {}

    def install(self):
        if threading.current_thread() is not threading.main_thread() or self.installed:
            return self
        self.count, self.raised, self.pending, self.depth = 0, False, False, 0
        for s in self.SIGNALS:
            self._old[s] = signal.signal(s, self._handle)
        self.installed = True
        return self

    def uninstall(self):
        if not self.installed:
            return
        for s, h in self._old.items():
            signal.signal(s, h if h is not None else signal.SIG_DFL)
        self._old.clear()
        self.installed = False

    def _handle(self, signum, frame):
        self.count += 1
        if self.depth or self.raised:
            if not self.raised:
                self.pending = True
            print("tenantnet: tearing the lab down, please wait", file=sys.stderr, flush=True)
            return
        self.raised = True
        raise KeyboardInterrupt

    @contextlib.contextmanager
    def shield(self):
        if threading.current_thread() is not threading.main_thread():
            yield
            return
        if not self.installed:
            old = {s: signal.signal(s, signal.SIG_IGN) for s in self.SIGNALS}
            try:
                yield
            finally:
                for s, h in old.items():
                    signal.signal(s, h if h is not None else signal.SIG_DFL)
            return
        self.depth += 1
        try:
            yield
        finally:
            self.depth -= 1
            if not self.depth and self.pending and not self.raised:
                self.pending = False
                self.raised = True
                raise KeyboardInterrupt


GUARD = InterruptGuard()
shield_interrupts = GUARD.shield

