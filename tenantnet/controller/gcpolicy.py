"""The controller process's garbage-collector policy.

Python's cyclic collector runs whenever 700 more container objects were made than freed,
and every so often scans every object there is. A controller start-up makes millions of
them (the model, the nodes' tables, then the IDLs' rows and os-ken's connections), so the
collector kept scanning what was alive for good: reaching the six nodes of a 1,000-VM lab
spent 0.5-0.8 s of its 1.0-1.3 s collecting, and their IDLs 1.5 s of 2.8 s
(docs/performance.md). So:

- `starting()` (the app's constructor, before the core is built: it starts reaching the
  nodes) to `started()` (the end of `Core.start`, failed or not): no collection. At
  `started()`, what exists is frozen (`gc.freeze`: out of every later collection; freed
  objects are still freed at once by their reference counts, only cycles among them wait
  until `stopped`), and the youngest generation is collected after YOUNG_THRESHOLD objects
  instead of 700.
- `stopped()`: the frozen objects are collectable again and the thresholds as they were
  (a process that runs several controllers one after another: the tests)."""

import gc

YOUNG_THRESHOLD = 10_000
_state = {"was_enabled": None, "thresholds": None}


def starting():
    if _state["was_enabled"] is None:
        _state["was_enabled"] = gc.isenabled()
    gc.disable()


def started():
    gc.freeze()
    if _state["thresholds"] is None:
        _state["thresholds"] = gc.get_threshold()
        gc.set_threshold(YOUNG_THRESHOLD, *_state["thresholds"][1:])
    if _state["was_enabled"] is not False:
        gc.enable()
    _state["was_enabled"] = None


def stopped():
    if _state["was_enabled"] is not None:       # stopped before it started
        if _state["was_enabled"]:
            gc.enable()
        _state["was_enabled"] = None
    gc.unfreeze()
    if _state["thresholds"] is not None:
        gc.set_threshold(*_state["thresholds"])
        _state["thresholds"] = None
