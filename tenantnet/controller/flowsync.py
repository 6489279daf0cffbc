"""One bridge's flow table made to match the model, for the controller core: wait until the
switch is connected, resolve port names to ofports, and push the difference (as one bundle,
through `southbound.ofswitch.FlowPusher.sync`), remembering what was installed on this
connection so that an unchanged bridge costs no round trip."""

import logging
import time

from tenantnet.controller.fanout import reason
from tenantnet.errors import SouthboundError
from tenantnet.model import naming

# The core's logger: flow syncs were logged as the core's before they had a module.
LOG = logging.getLogger("tenantnet.controller.core")


class FlowSync:
    def __init__(self, core):
        """*core*: the Core whose switches are synced (its pusher, nodes, portmaps and
        metrics)."""
        self.core = core
        self.in_sync = {}           # dpid -> cookies installed by our last sync (this connection)

    def forget(self, dpid):
        """Trust nothing about bridge *dpid*: its next sync reads its flow table again."""
        self.in_sync.pop(dpid, None)

    def sync(self, node, bridge, bf, connect_timeout=15.0):
        """Sync one bridge's flows once it is connected. A switch that drops its connection
        during the sync (a new bridge whose first TLS handshake Open vSwitch timed out on a
        busy host, say) is synced again when it is back, within *connect_timeout*."""
        pusher = self.core.pusher
        deadline = time.monotonic() + connect_timeout
        while True:
            if not pusher.wait_connected(bf.dpid, max(0.0, deadline - time.monotonic())):
                raise SouthboundError(f"{node}/{bridge} (dpid {naming.dpid_str(bf.dpid)}) did "
                                      "not connect to the controller within "
                                      f"{connect_timeout:.0f}s")
            try:
                return self._sync_connected(node, bridge, bf)
            except SouthboundError as exc:
                if pusher.connected(bf.dpid) or time.monotonic() >= deadline:
                    raise
                LOG.info("%s/%s: the switch left during its flow sync (%s); syncing again "
                         "when it is back", node, bridge, reason(exc))

    def _sync_connected(self, node, bridge, bf):
        core = self.core
        pm = core.portmaps.get((node, bridge))
        if pm is None or any(p not in pm for f in bf.flows for p in f.port_names()):
            pm = core.nodes[node].portmap(bridge)
            core.portmaps[(node, bridge)] = pm
        # What we last installed on this connection: an unchanged bridge costs no round trip.
        # (A reconnect clears it, and then the switch's own flow table is read again.)
        try:
            want = frozenset(f.resolve(pm).cookie() for f in bf.flows)
        except KeyError:
            want = None                  # let sync() name the missing port
        known = self.in_sync.get(bf.dpid)
        if want is not None and known == want:
            core.metrics.flow_sync(node, bridge, len(bf.flows))
            return {"added": 0, "removed": 0, "mode": None}
        t0 = time.perf_counter()
        result = core.pusher.sync(bf.dpid, bf.flows, pm, installed=known)
        core.metrics.flow_sync(node, bridge, len(bf.flows), time.perf_counter() - t0,
                               bundle=result.get("mode") == "bundle")
        if want is not None:
            self.in_sync[bf.dpid] = want
        return result
