"""The controller process's garbage-collector policy.

Python's cyclic collector runs whenever 700 more container objects were made than freed,
and every so often scans every object there is. A controller start-up makes millions of
them (the model, the nodes' tables, then the IDLs' rows and os-ken's connections), so the
collector kept scanning what was alive for good: reaching the six nodes of a 1,000-VM lab
spent 0.5-0.8 s of its 1.0-1.3 s collecting, and their IDLs 1.5 s of 2.8 s
(docs/performance.md). So:

- `start_up()`: no collection while the core starts (`Core.start`); at its end, what exists
  is frozen (`gc.freeze`: out of every later collection; freed objects are still freed at
  once by their reference counts, only cycles among them wait until `stopped`), and the
  youngest generation is collected after YOUNG_THRESHOLD objects instead of 700.
- `stopped()`: the frozen objects are collectable again and the thresholds as they were
  (a process that runs several controllers one after another: the tests)."""

import contextlib
import gc

YOUNG_THRESHOLD = 10_000
_saved = []                 # the thresholds before start_up, while a controller runs


@contextlib.contextmanager
def start_up():
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        gc.freeze()
        if not _saved:
            _saved.append(gc.get_threshold())
            gc.set_threshold(YOUNG_THRESHOLD, *_saved[0][1:])
        if was_enabled:
            gc.enable()


def stopped():
    gc.unfreeze()
    if _saved:
        gc.set_threshold(*_saved.pop())
