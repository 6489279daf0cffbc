"""What the syncs of a switch have already worked out for each of its flows: the flow
resolved to ofport numbers, with its cookie (which the resolved Flow keeps once computed),
so a resync of flows seen before neither resolves nor hashes them again.

Only resolution is kept: a flow's flow-mod bytes are needed when it is sent, which is when
it is not on the switch, so bytes kept from an earlier sync would almost never be used,
while keeping them costs every first install a hash and an entry per flow.

Flows are plain, immutable data (tenantnet.model.flowspec.Flow): the cache is keyed by the
flow's value, so the desired flows a caller computes afresh for every sync still hit.
One memo per (dpid, cookie prefix), since each owner syncs its own flows:
  * it holds the flows of the last sync of that owner only, so it never outgrows the
    switch's desired set;
  * it is started afresh when the port map differs from the one it was resolved with;
  * it goes when the switch disconnects (forget).
Thread-safe for different switches; the syncs of one switch are serialised by the
caller (ofswitch.FlowPusher)."""

import threading


class _Memo:
    __slots__ = ("portmap", "resolved")

    def __init__(self, portmap):
        self.portmap = dict(portmap)
        self.resolved = {}            # Flow (port names) -> resolved Flow


class FlowCache:
    def __init__(self):
        self._lock = threading.Lock()
        self._memos = {}              # (dpid, prefix) -> _Memo

    def resolve(self, dpid, prefix, flows, portmap):
        """The resolved copy of every flow in *flows* (Flow.resolve(portmap)), in order.

        KeyError (from Flow.resolve: the port name) with the flow as its second argument
        when a port is not in *portmap*."""
        resolver = self.resolver(dpid, prefix, portmap)
        out = [resolver.resolve(flow) for flow in flows]
        resolver.keep()
        return out

    def resolver(self, dpid, prefix, portmap):
        """A Resolver for one sync's flows, one at a time; its keep() makes them the
        memo of (dpid, prefix)."""
        key = (dpid, prefix)
        with self._lock:
            memo = self._memos.get(key)
        if memo is None or memo.portmap != portmap:
            memo = _Memo(portmap)
        return Resolver(self, key, memo)

    def _store(self, key, memo):
        with self._lock:
            self._memos[key] = memo

    def forget(self, dpid):
        """Drop every memo of *dpid* (its switch is gone)."""
        with self._lock:
            for key in [k for k in self._memos if k[0] == dpid]:
                del self._memos[key]


class Resolver:
    """Resolves the flows of one sync (FlowCache.resolver)."""

    def __init__(self, cache, key, memo):
        self._cache, self._key, self._memo = cache, key, memo
        self._known = memo.resolved
        self._seen = []

    def resolve(self, flow):
        """Flow.resolve(portmap), or the copy the last sync made; KeyError(port, flow)."""
        resolved = self._known.get(flow) if self._known else None
        if resolved is None:
            try:
                resolved = flow.resolve(self._memo.portmap)
            except KeyError as exc:
                raise KeyError(exc.args[0], flow) from None
        self._seen.append((flow, resolved))
        return resolved

    def keep(self):
        """The flows resolved so far are the memo from now on (the last sync's flows)."""
        self._memo.resolved = dict(self._seen)
        self._cache._store(self._key, self._memo)
