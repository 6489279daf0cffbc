"""Each node's health as the provider's core sees it, and the back-off of its reconnects.

A node is `up` (its OVSDB connection holds and it was reconciled in full on it), `down`
(not reachable, or its connection broke, or reconciling it failed) or `reconciling` (just
connected, being made to match the model). Every change is recorded with its time and
reason and logged once; a node that keeps failing the same way (connect, reconcile fails,
down again) is not logged again for every round."""

import datetime
import logging
import threading
import time

LOG = logging.getLogger("tenantnet.controller.nodes")

UP, DOWN, RECONCILING = "up", "down", "reconciling"
STATES = (UP, DOWN, RECONCILING)


class Backoff:
    """Delays between reconnect attempts: *initial*, doubling, never above *cap*."""

    def __init__(self, initial=0.5, cap=8.0, factor=2.0):
        if initial <= 0 or cap < initial or factor < 1:
            raise ValueError("back-off: need 0 < initial <= cap and factor >= 1")
        self.initial, self.cap, self.factor = float(initial), float(cap), float(factor)
        self._next = self.initial

    def next(self):
        """The delay to wait now; the one after is longer (up to the cap)."""
        delay = self._next
        self._next = min(self.cap, self._next * self.factor)
        return delay

    def reset(self):
        self._next = self.initial


def iso(ts):
    """Epoch seconds as ISO 8601 UTC (milliseconds, 'Z')."""
    dt = datetime.datetime.fromtimestamp(ts, tz=datetime.timezone.utc)
    return dt.strftime("%Y-%m-%dT%H:%M:%S.") + f"{dt.microsecond // 1000:03d}Z"


class NodeStates:
    """Thread-safe table node -> (state, since, reason). Nodes start `down` ("not
    connected yet"). *clock*: epoch seconds (tests pass their own)."""

    def __init__(self, nodes, clock=time.time, log=LOG):
        self._clock = clock
        self._log = log
        self._lock = threading.Lock()
        now = clock()
        self._recs = {n: {"state": DOWN, "since": now, "reason": "not connected yet"}
                      for n in nodes}
        self._logged = {n: [] for n in nodes}    # the last two transitions logged
        self._announced = set()                   # nodes whose state was logged at least once
        self.changes = 0                          # state changes so far (all nodes)

    def __contains__(self, node):
        return node in self._recs

    def state(self, node):
        with self._lock:
            return self._recs[node]["state"]

    def is_up(self, node):
        return self.state(node) == UP

    def reason(self, node):
        with self._lock:
            return self._recs[node]["reason"]

    def set(self, node, state, reason):
        """Record *node*'s *state* and why. Same state again: only the reason may change (the
        time stays; logged only if this node's state was never logged, e.g. a node that was
        never reached since start-up). Returns True when the state changed."""
        if state not in STATES:
            raise ValueError(f"node state {state!r}: expected one of {', '.join(STATES)}")
        with self._lock:
            rec = self._recs[node]
            old = rec["state"]
            first = node not in self._announced
            self._announced.add(node)
            if old == state:
                rec["reason"] = reason
                message = (f"node %s is {state}: %s", node, reason) if first else None
                changed = False
            else:
                transition = (old, state, reason if state == DOWN else None)
                rec.update(state=state, since=self._clock(), reason=reason)
                self.changes += 1
                changed = True
                if transition in self._logged[node]:
                    # the same round again (connect, reconcile fails the same way, down)
                    message = None
                    self._log.debug("node %s: %s -> %s (%s)", node, old, state, reason)
                else:
                    self._logged[node] = (self._logged[node] + [transition])[-2:]
                    message = (f"node %s is {state} (was {old}): %s", node, reason)
        if message is not None:
            (self._log.warning if state == DOWN else self._log.info)(*message)
        return changed

    def down_among(self, nodes):
        """[(node, state, reason)] of *nodes* that are known here and not up."""
        with self._lock:
            return [(n, self._recs[n]["state"], self._recs[n]["reason"]) for n in nodes
                    if n in self._recs and self._recs[n]["state"] != UP]

    def up_nodes(self):
        with self._lock:
            return sorted(n for n, r in self._recs.items() if r["state"] == UP)

    def as_list(self):
        """[{node, state, since (ISO 8601 UTC), since_epoch, reason}] by node name."""
        with self._lock:
            return [{"node": n, "state": r["state"], "since": iso(r["since"]),
                     "since_epoch": round(r["since"], 3), "reason": r["reason"]}
                    for n, r in sorted(self._recs.items())]
