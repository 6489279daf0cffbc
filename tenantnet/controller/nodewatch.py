"""Node health for the controller core: reaching a node's OVSDB, relearning its API
placements, reconciling it in full, watching it, and repairing drift.

Node loss is normal: each node is up, down or reconciling (controller.nodestate). A watcher
thread per node checks that an up node's OVSDB connection (and its transport uplink) holds,
reconnects a down node with a capped back-off and reconciles it in full whenever it comes
back; a periodic audit repairs drift on the nodes that are up. Everything that changes a
node runs under the core's lock (`Core.lock`), as placements do.

`NodeWatch` holds the core it serves (`controller.core.Core`) and uses its realisation path
(`node_state`, `node_flows`, `reconcile_node`, `realise`, `resolve_tunnels`, `record`,
`forget`, `flowsync`) and its node states, counters and hosts. Its log lines are the
core's (logger `tenantnet.controller.core`), as they were before it was a module."""

import logging
import threading

from tenantnet.controller import recovery
from tenantnet.controller.fanout import reason, settled
from tenantnet.controller.nodestate import DOWN, RECONCILING, UP, Backoff
from tenantnet.errors import TenantnetError
from tenantnet.model.desired import TRANSPORT_BRIDGE

LOG = logging.getLogger("tenantnet.controller.core")
CONNECT_TIMEOUT = 3.0      # seconds one attempt to reach a node's OVSDB may take
CHECK_INTERVAL = 0.5       # seconds between checks that an up node's connection holds
RETRY_INITIAL = 0.5        # first wait before reaching a down node again (then doubling)


class NodeWatch:
    def __init__(self, core, stopping):
        """*core*: the Core whose nodes are watched. *stopping*: the Event that ends the
        watchers and the audit (set by Core.stop)."""
        self.core = core
        self.stopping = stopping
        self.threads = []

    # -- threads -------------------------------------------------------------------
    def start(self, names):
        """A watcher thread for each node of *names*, and the audit thread when the core
        has an audit interval."""
        for name in names:
            self._spawn(f"tenantnet-node-{name}", self.watch, name)
        if self.core.audit_interval > 0:
            self._spawn("tenantnet-audit", self.audit_loop)

    def join(self, timeout):
        for thread in self.threads:
            thread.join(timeout)

    def _spawn(self, name, func, *args):
        thread = threading.Thread(target=_guarded, args=(func, *args), name=name, daemon=True)
        self.threads.append(thread)
        thread.start()

    # -- reaching and reconciling nodes --------------------------------------------
    def connect(self, name, deferred=False):
        """One bounded attempt to reach node *name*'s OVSDB (*deferred*: see
        southbound.ovsdb.NodeOvsdb)."""
        return self.core.nodes[name].connect(retry_for=0, attempt_timeout=CONNECT_TIMEOUT,
                                             deferred=deferred)

    def recover(self, node_names=None):
        """Relearn the API placements recorded on the nodes *node_names* (default all):
        VMs, then network functions, then chains (controller.recovery, model.records).
        The nodes already up hold the current chain records. Returns the networks of what
        was added."""
        core = self.core
        found = {}
        for node_name in sorted(core.nodes if node_names is None else node_names):
            try:
                found[node_name] = recovery.read_node(core.nodes[node_name])
            except Exception as exc:  # noqa: BLE001 -- the node went away meanwhile
                LOG.warning("node %s: placements not read: %s", node_name, reason(exc))
        return recovery.relearn(core.topo, found, current=core.states.up_nodes())

    def resync(self, names, why):
        """Reconcile the connected nodes *names* in full (under the core's lock): OVSDB,
        `ex-` addresses, tunnel neighbours, and the flows of every connected bridge, dumped
        from the switch rather than trusted from memory. A node that fails goes down (its
        watcher tries again). Returns the nodes now up."""
        if not names:
            return []
        core = self.core
        for name in names:
            core.states.set(name, RECONCILING, core.states.reason(name))
            core.forget(name)
        states = {n: core.node_state(core.topo, n) for n in names}
        results = settled(lambda n: core.reconcile_node(states[n], True), names)
        ok = []
        for name, res in zip(names, results):
            if isinstance(res, Exception):
                core.states.set(name, DOWN, f"reconcile failed: {reason(res, name)}")
                core.nodes[name].close()
                continue
            core.record(name, res)
            ok.append(name)
        for name in ok:
            core.states.set(name, UP, why)
            core.count("resyncs")
        self._refresh_neighbors()
        jobs = []
        for n in ok:
            # a bridge not connected is synced when it connects (controller.switchsync): at
            # start-up none is (the OpenFlow port opens after it), so no flows are computed
            if any(br.dpid is not None and core.pusher.connected(br.dpid)
                   for br in states[n].bridges.values()):
                jobs += [(n, br, bf) for br, bf in core.node_flows(core.topo, n).items()
                         if core.pusher.connected(bf.dpid)]
        for (n, br, _), res in zip(jobs, settled(lambda j: core.flowsync.sync(*j), jobs)):
            if isinstance(res, Exception):
                LOG.error("%s/%s: flow sync failed: %s", n, br, reason(res))
        return ok

    def _refresh_neighbors(self):
        """Tunnel neighbours on every up node, side by side (cached: only new endpoint MACs
        cost; each node is one round trip to its ovs-vswitchd)."""
        core = self.core
        names = list(core.states.up_nodes())
        outcomes = settled(lambda n: core.resolve_tunnels(core.node_state(core.topo, n)), names)
        for name, out in zip(names, outcomes):
            if isinstance(out, TenantnetError):
                LOG.warning("node %s: tunnel neighbours not set: %s", name, out)
            elif isinstance(out, Exception):
                raise out

    # -- watching one node ---------------------------------------------------------
    def watch(self, name):
        """Node *name*'s watcher: while it is up, check every CHECK_INTERVAL that its OVSDB
        connection holds; while it is down, try to reach it with a capped back-off, and
        when it answers relearn its placements and reconcile it in full."""
        core = self.core
        node = core.nodes[name]
        backoff = Backoff(RETRY_INITIAL, core.retry_max)
        cut = False                   # down because its transport link is (OVSDB holds)
        while not self.stopping.is_set():
            if cut and node.connected():
                if self.transport_lost(name):
                    self.stopping.wait(CHECK_INTERVAL)
                    continue
                cut = False
                with core.lock:
                    if self.stopping.is_set():
                        break
                    try:
                        self.come_back(name, "transport link up again")
                    except Exception as exc:  # noqa: BLE001 -- never lose the watcher
                        core.states.set(name, DOWN, f"reconcile failed: {reason(exc, name)}")
                        node.close()
                continue
            cut = False
            if core.states.is_up(name):
                if node.connected():
                    lost = self.transport_lost(name)
                    if lost:
                        with core.lock:
                            core.states.set(name, DOWN, lost)
                        cut = True
                        continue
                    self.stopping.wait(CHECK_INTERVAL)
                    continue
                with core.lock:
                    core.states.set(name, DOWN, "OVSDB connection lost")
                    node.close()
                    core.forget(name)
                backoff.reset()
                continue                  # one attempt at once: a restarted server is back
            try:
                self.connect(name)
            except Exception as exc:  # noqa: BLE001 -- whatever it is, the node is down
                core.states.set(name, DOWN, reason(exc, name))
                self.stopping.wait(backoff.next())
                continue
            with core.lock:
                if self.stopping.is_set():
                    break
                try:
                    self.come_back(name)
                except Exception as exc:  # noqa: BLE001 -- never lose the watcher
                    core.states.set(name, DOWN, f"reconcile failed: {reason(exc, name)}")
                    node.close()
            if core.states.is_up(name):
                backoff.reset()
            else:
                self.stopping.wait(backoff.next())

    def transport_lost(self, name):
        """Why node *name*'s transport is unreachable ("transport unreachable: ..."), or
        None: its uplink on br-tun (the config's transport_interface) reports link_state
        down in the node's OVSDB (carrier lost: a cut cable, a switch port down)."""
        node = self.core.topo.node(name)
        uplink = getattr(node, "transport_interface", None)
        if not uplink:
            return None
        try:
            state = self.core.nodes[name].link_state(uplink)
        except Exception:  # noqa: BLE001 -- a broken connection is the OVSDB check's
            return None
        if state == "down":
            return f"transport unreachable: uplink {uplink} link down"
        return None

    def come_back(self, name, why="OVSDB reachable again"):
        """Node *name* answers again (under the core's lock): relearn its API placements,
        reconcile it in full, and let its peers learn the placements relearned."""
        core = self.core
        core.states.set(name, RECONCILING, why)
        nets = self.recover([name])
        up = self.resync([name], "reconciled after it came back")
        peers = sorted({p for key in nets for p in core.topo.hosting_nodes(key)} - {name})
        peers = [p for p in peers if core.states.is_up(p)]
        if up and peers:
            try:
                core.realise(core.topo, peers, nets=nets)
            except TenantnetError as exc:
                LOG.error("peers of %s not updated: %s", name, exc)

    # -- drift ---------------------------------------------------------------------
    def audit_loop(self):
        while not self.stopping.wait(self.core.audit_interval):
            try:
                self.audit()
            except Exception as exc:  # noqa: BLE001 -- the next audit tries again
                LOG.error("audit failed: %s", reason(exc))

    def audit(self):
        """Compare every up node with the model and repair what differs: OVSDB records,
        `ex-` addresses, tunnel neighbours, flow tables (dumped). Logs and counts each
        repair; returns them."""
        core = self.core
        repairs = []
        for name in core.states.up_nodes():
            with core.lock:
                if self.stopping.is_set() or not core.states.is_up(name):
                    continue
                try:
                    found, _ = self.repair_node(name)
                except Exception as exc:  # noqa: BLE001 -- e.g. the node just went away
                    LOG.warning("audit of node %s not finished: %s", name, reason(exc, name))
                    continue
            repairs += found
        for item in repairs:
            LOG.warning("audit repaired %s", item)
        core.count("audits")
        core.count("audit_repairs", len(repairs))
        return repairs

    def repair_node(self, name, bridges=None, neighbors=False):
        """Make up node *name* match the model again (under the core's lock): OVSDB, `ex-`
        addresses, tunnel neighbours (*neighbors*: set them all again, e.g. after its
        br-tun reconnected), and the flows of its connected bridges (*bridges*, default
        all), dumped from the switches. Returns ([repairs], {bridge: sync result})."""
        core = self.core
        state = core.node_state(core.topo, name)
        result = core.nodes[name].reconcile(state)
        core.record(name, result)
        repairs = [f"{name}: {c}" for c in result.commands]
        host = core.hosts.get(name)
        # The ex- addresses live on br-tun's ports: read them (one process) when br-tun is
        # checked, not for every tenant bridge that reconnects.
        check = bridges is None or TRANSPORT_BRIDGE in bridges
        have = host.all_addresses() if host is not None and state.addresses and check else {}
        todo = {}
        for ifname, cidr in state.addresses.items():
            if host is None:
                break
            new_port = f"add port {ifname} to br-tun" in result.commands
            if new_port or (check and cidr not in have.get(ifname, ())):
                todo[ifname] = cidr
                if not new_port:
                    repairs.append(f"{name}: address {cidr} on {ifname}")
        if todo:
            host.set_addresses(todo)
        if neighbors:
            core.forget_neighbors(name)
        if neighbors or check or result.changed:
            self._refresh_neighbors()
        jobs = [(br, bf) for br, bf in core.node_flows(core.topo, name).items()
                if (bridges is None or br in bridges) and core.pusher.connected(bf.dpid)]
        for _, bf in jobs:
            core.flowsync.forget(bf.dpid)
        flows = {}
        for (br, _), res in zip(jobs, settled(lambda j: core.flowsync.sync(name, *j), jobs)):
            if isinstance(res, Exception):
                LOG.error("%s/%s: flow sync failed: %s", name, br, reason(res))
                continue
            flows[br] = res
            if res["added"] or res["removed"]:
                repairs.append(f"{name}/{br}: +{res['added']} -{res['removed']} flows")
        return repairs, flows


def _guarded(func, *args):
    try:
        func(*args)
    except Exception:  # noqa: BLE001 -- a bug in a watcher must be seen, not lost
        LOG.exception("%s failed", getattr(func, "__name__", func))
