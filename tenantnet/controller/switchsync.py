"""Switches that (re)connect, synced in batches by one worker thread.

`Core.switch_connected` is called in the OpenFlow app's event thread and must return at
once (controller.ofapp): it only adds the switch to a pending set. One worker thread takes
every switch pending, groups them by node, and, under the core's lock, repairs each node
once for all of its bridges that connected: one OVSDB reconcile, then the flows of those
bridges (nodewatch.NodeWatch.repair_node). After a controller restart 1,000 bridges
reconnect within seconds; one thread and one lock round per bridge made hundreds of
threads queue for the core's lock while starting each new one took seconds, and the
app's event queue filled up behind them (bench resync at 1,000 VMs).

A reconnect is a break: the node's OVSDB and each bridge's flow table are checked in full
(a restarted ovs-vswitchd also lost its tunnel neighbours, set again when br-tun is among
the bridges), unless that was done after the switch connected (a controller's start-up
reconciles every node in full, with the flows of every bridge connected by then). A switch that connects before the core is ready waits for it; one that is
not ours, or on a node this controller does not program, is logged and left alone; one
on a node that is not up is synced when that node is reconciled."""

import logging
import threading

from tenantnet.controller.fanout import reason
from tenantnet.errors import TenantnetError
from tenantnet.model import naming
from tenantnet.model.desired import TRANSPORT_BRIDGE

LOG = logging.getLogger("tenantnet.controller.core")

READY_TIMEOUT = 120.0


class SwitchSync:
    def __init__(self, core, stopping):
        self.core = core
        self._stopping = stopping
        self._pending = set()
        self._cond = threading.Condition()
        self._thread = None

    def connected(self, dpid):
        """Switch *dpid* connected: sync it soon (returns at once). Nothing synced on its
        earlier connection is trusted any more."""
        self.core.flowsync.forget(dpid)
        with self._cond:
            self._pending.add(dpid)
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, daemon=True,
                                                name="tenantnet-switch-sync")
                self._thread.start()
            self._cond.notify()

    def disconnected(self, dpid):
        """Switch *dpid* went away: a sync still pending for it is dropped."""
        with self._cond:
            self._pending.discard(dpid)

    def pending(self):
        with self._cond:
            return len(self._pending)

    def _run(self):
        while not self._stopping.is_set():
            with self._cond:
                while not self._pending and not self._stopping.is_set():
                    self._cond.wait(1.0)
            if self._stopping.is_set():
                return
            # A switch may connect before start() has reached the nodes' OVSDB; start()
            # skips unconnected bridges, so either path ends with the bridge in sync.
            if not self.core.ready.wait(READY_TIMEOUT):
                LOG.warning("%d switch(es) connected and still wait for the controller's "
                            "start-up to end", self.pending())
                continue
            with self._cond:
                batch, self._pending = self._pending, set()
            try:
                self.sync(batch)
            except Exception:  # noqa: BLE001 -- a bug here must be seen, and not stop syncs
                LOG.exception("syncing %d switch(es) after they connected failed", len(batch))

    def sync(self, dpids):
        """Sync the switches *dpids* that connected: per node, one repair for all of its
        bridges among them. Returns {node: [bridges synced]}."""
        core = self.core
        done = {}
        with core.lock:
            by_node = {}
            owners = naming.dpid_index(core.topo)      # one pass for the whole batch
            for dpid in sorted(dpids):
                found = owners.get(dpid)
                if found is None:
                    LOG.warning("switch %s is not one of ours; ignoring it",
                                naming.dpid_str(dpid))
                    continue
                node, bridge = found
                if node not in core.nodes:
                    LOG.warning("switch %s is %s/%s, a node this controller does not "
                                "program; ignoring it", naming.dpid_str(dpid), node, bridge)
                    continue
                if not core.states.is_up(node):
                    # Reconciling the node syncs every bridge of it connected by then.
                    LOG.info("%s/%s connected while node %s is %s: it is synced when the "
                             "node is reconciled", node, bridge, node, core.states.state(node))
                    continue
                if dpid in core.flowsync.in_sync:
                    # synced in full since it connected (the start-up's or a node's full
                    # reconcile, which also set the tunnel neighbours): nothing to redo
                    core.count("switch_resyncs")
                    done.setdefault(node, []).append(bridge)
                    LOG.info("%s/%s connected: in sync (synced since it connected)", node,
                             bridge)
                    continue
                by_node.setdefault(node, set()).add(bridge)
            for node, bridges in sorted(by_node.items()):
                try:
                    repairs, synced = core.nodewatch.repair_node(
                        node, bridges=bridges, neighbors=TRANSPORT_BRIDGE in bridges)
                except TenantnetError as exc:
                    LOG.error("%s: sync of %s after connect failed: %s", node,
                              ", ".join(sorted(bridges)), reason(exc, node))
                    continue
                core.count("switch_resyncs", len(bridges))
                done[node] = sorted(done.get(node, []) + sorted(bridges))
                for bridge in sorted(bridges):
                    res = synced.get(bridge, {"added": 0, "removed": 0})
                    LOG.info("%s/%s connected: +%d -%d flows", node, bridge, res["added"],
                             res["removed"])
                others = [r for r in repairs
                          if not any(r.startswith(f"{node}/{b}:") for b in bridges)]
                if others:
                    LOG.info("%s: repaired %s", node, "; ".join(others))
        return done
