"""The controller core: model -> desired state -> OVSDB and OpenFlow.

Data flow for a placement request (and for start-up, and for a switch that connects):
  validate against the model (config.vm_from_spec)  -> new Topology (copy, not mutated)
  desired.node_state for every affected node          -> ovsdb.NodeOvsdb.reconcile
  ex- endpoint addresses                              -> host executor (ip addr)
  flows.node_flows for the affected bridges           -> flowsync.FlowSync.sync (bundle)
Only when all of that succeeded does the new Topology replace the old one. A switch that
(re)connects goes through the same sync as a placement: compute, install, remove stale.

`Core` owns the model, the lifecycle, this realisation path and what it remembers of the
switches, and composes the rest, each holding a reference to it:
  service.PlacementService   the placement queue and the placement API (add, del, list, get)
  nodewatch.NodeWatch        node health: start-up reach, watchers, full reconcile, audit
  flowsync.FlowSync          one bridge's flows in sync, and what was installed on it
  switchsync.SwitchSync      switches that (re)connect, synced in batches per node
Node loss is normal: each node is up, down or reconciling (controller.nodestate); a
placement that would touch a node that is not up is refused with 503 before anything is
changed (see nodewatch and service). `provider.build_core` builds the provider's core from
its settings."""

import logging
import threading
import time

from tenantnet.controller import metrics as metrics_mod
from tenantnet.controller.fanout import parallel, reason, settled
from tenantnet.controller.flowsync import FlowSync
from tenantnet.controller.nodestate import DOWN, RECONCILING, NodeStates
from tenantnet.controller.nodewatch import CONNECT_TIMEOUT, RETRY_INITIAL, NodeWatch
from tenantnet.controller.service import PlacementService
from tenantnet.controller.switchsync import SwitchSync
from tenantnet.controller.tenancy import PROVIDER, TenantView
from tenantnet.model import desired, flows, naming
from tenantnet.southbound.ovsdb import NodeOvsdb

LOG = logging.getLogger("tenantnet.controller.core")


def _remembered(seen, topo, datapath):
    """The NodeState remembered in *seen* for *topo* as it is now, or None."""
    for topo_seen, version, dp, state in seen:
        if topo_seen is topo and version == topo.version and dp == datapath:
            return state
    return None


class Core:
    def __init__(self, topo, pusher, ovsdb_remotes=None, hosts=None, source="config",
                 managed_nodes=None, audit_interval=0.0, retry_max=8.0):
        """*managed_nodes*: names of the nodes this controller programs (default: all).
        *audit_interval*: seconds between drift audits (0: none). *retry_max*: the cap of
        the back-off between attempts to reach a node that is down."""
        self.topo = topo
        self.pusher = pusher
        self.source = source
        remotes = ovsdb_remotes or {}
        c = topo.controller
        self.nodes = {n.name: NodeOvsdb(n.name, remotes.get(
            n.name, f"{c.ovsdb_scheme}:{n.management_ip}:{c.ovsdb_port}")) for n in topo.nodes()
            if managed_nodes is None or n.name in managed_nodes}
        self.hosts = hosts or {}
        self.lock = threading.RLock()
        self.portmaps = {}          # (node, bridge) -> {port name: ofport}
        self.endpoint_macs = {}     # node -> {br-tun interface: MAC in use}
        self._tunnel_neighbors = set()   # (node, remote ip, mac) entries already set
        self._states = {}           # node -> recent desired states (see node_state)
        self.started = False
        self.ready = threading.Event()   # set once start() has connected and reconciled
        self.api_server = None
        self._reaching = None       # (thread, {"names", "outcomes"}) of reach_nodes
        self.states = NodeStates(sorted(self.nodes))
        self.audit_interval = float(audit_interval or 0)
        self.retry_max = max(RETRY_INITIAL, float(retry_max))
        # Read by the metrics: full node reconciliations (a node came back), flow syncs
        # after a switch (re)connected, audits run, drift repaired by them, placements
        # refused because a node they touch is not up.
        self.counters = {"resyncs": 0, "switch_resyncs": 0, "audits": 0,
                         "audit_repairs": 0, "refused_node_down": 0}
        self._counters_lock = threading.Lock()
        self._stopping = threading.Event()
        self.flowsync = FlowSync(self)
        self.nodewatch = NodeWatch(self, self._stopping)
        self.service = PlacementService(self)
        self.switchsync = SwitchSync(self, self._stopping)
        self.metrics = metrics_mod.for_core(self)   # GET /metrics (controller.metrics)

    # -- lifecycle -----------------------------------------------------------------
    def start(self):
        """Reach every node that answers (one bounded attempt each, side by side), relearn
        runtime placements from them and reconcile them; then serve. Nodes that did not
        answer are down: their watchers keep trying them in the background. The API listens
        from the start, while the nodes are reached: its health says "starting" and the rest
        is refused (`not_serving`) until this is done."""
        if self._reaching is None:
            self.reach_nodes()
        if self.api_server is not None:
            self.api_server.start()
        thread, box = self._reaching
        self._reaching = None
        thread.join()
        names, outcomes = box["names"], box["outcomes"]
        with self.lock:
            reached = []
            for name, out in zip(names, outcomes):
                if isinstance(out, Exception):
                    self.states.set(name, DOWN, reason(out, name))
                else:
                    self.states.set(name, RECONCILING, "reached at start-up")
                    reached.append(name)
            self.nodewatch.recover(reached)
            up = self.nodewatch.resync(reached, "reconciled at start-up")
            self.started = True
            self.ready.set()
        self.nodewatch.start(names)
        LOG.info("controller ready: %d of %d nodes up%s, %d networks, %d VMs", len(up),
                 len(names), "" if len(up) == len(names) else " (the others are retried)",
                 len(self.topo.networks()), len(self.topo.vms()))

    def reach_nodes(self):
        """Start reaching every node, in the background: one bounded attempt each, side by
        side, deferred (each node's tables read once; its IDL starts when its watcher first
        checks the connection, after the API answers, or for a change to commit). `start`
        takes the outcomes. build_core calls it before it makes the API server, whose
        imports then overlap the nodes' TLS handshakes and their servers' answers."""
        box = {"names": sorted(self.nodes)}

        def reach():
            box["outcomes"] = settled(lambda n: self.nodewatch.connect(n, deferred=True),
                                      box["names"])
        thread = threading.Thread(target=reach, name="tenantnet-reach-nodes", daemon=True)
        self._reaching = (thread, box)
        thread.start()

    def stop(self):
        self._stopping.set()
        if self.api_server is not None:
            self.api_server.stop()
        self.nodewatch.join(CONNECT_TIMEOUT + 2)
        for node in self.nodes.values():
            node.close()

    def count(self, key, n=1):
        """Add *n* to counter *key* (see self.counters)."""
        with self._counters_lock:
            self.counters[key] = self.counters.get(key, 0) + n

    def node_states(self):
        """[{node, state (up|down|reconciling), since (ISO 8601 UTC), since_epoch,
        reason}], one per node this controller programs."""
        return self.states.as_list()

    # -- what we believe about the nodes' switches ---------------------------------
    def forget(self, name):
        """Drop what we believe about node *name*'s switches: after a break it is read
        again (ports, flow tables, endpoint MACs, tunnel neighbours)."""
        for key in [k for k in self.portmaps if k[0] == name]:
            del self.portmaps[key]
        # the bridges' ids only: the node's flows (13,000 at 1,000 VMs) are not needed here
        for br in self.node_state(self.topo, name).bridges.values():
            if br.dpid is not None:
                self.flowsync.forget(br.dpid)
        self.forget_neighbors(name)
        self.endpoint_macs.pop(name, None)

    def forget_neighbors(self, name):
        """Node *name*'s tunnel neighbours are set again when next resolved."""
        self._tunnel_neighbors = {k for k in self._tunnel_neighbors if k[0] != name}

    def record(self, name, result):
        """Remember node *name*'s ports and endpoint MACs from its reconcile *result*."""
        for bridge, pm in result.portmaps.items():
            self.portmaps[(name, bridge)] = pm
        self.endpoint_macs[name] = result.macs

    # -- realising a topology ------------------------------------------------------
    def reconcile_node(self, state, force_addresses):
        name = state.node
        result = self.nodes[name].reconcile(state)
        host = self.hosts.get(name)
        # *force_addresses* (start-up): every address checked, in one call, and set where it
        # is missing; a new ex- port is a new kernel device: it needs its address (again).
        have = host.all_addresses() if host is not None and force_addresses else {}
        todo = {}
        for ifname, cidr in state.addresses.items() if host is not None else ():
            if f"add port {ifname} to br-tun" in result.commands or (
                    force_addresses and cidr not in have.get(ifname, ())):
                todo[ifname] = cidr
        if todo:
            host.set_addresses(todo)          # one process for all of them
        if result.changed:
            self.metrics.ovsdb_transaction(name, result.seconds)
            LOG.info("%s: %d OVSDB changes in %.1f ms", name, len(result.commands),
                     result.seconds * 1000)
        return result

    def realise(self, topo, node_names, nets=None, wait_flows=True, force_addresses=False,
                since=None):
        """Push *topo*'s desired state to *node_names*; return timings.

        Nodes are independent, so their OVSDB transactions run side by side, and so do the
        flow syncs of all affected bridges: a placement costs about one node's round trips,
        not the sum over the nodes hosting the network."""
        timings = {}
        t0 = time.perf_counter()
        node_names = [n for n in node_names if n in self.nodes]
        # *since*: the topology the switches were last reconciled to. A node whose desired
        # OVSDB state is the same under both (a VM placed elsewhere only changes its flows)
        # needs no OVSDB round trip.
        states = {n: self.node_state(topo, n, since, nets) for n in node_names}
        known = {node for node, _ in self.portmaps}
        ovsdb_nodes = [n for n in node_names if since is None or n not in known
                       or self.node_state(since, n) != states[n]]
        results = parallel(lambda n: self.reconcile_node(states[n], force_addresses),
                           ovsdb_nodes)
        for name, result in zip(ovsdb_nodes, results):
            self.record(name, result)
        parallel(lambda n: self.resolve_tunnels(states[n]), node_names)
        timings["ovsdb_ms"] = round((time.perf_counter() - t0) * 1000, 2)
        t1 = time.perf_counter()
        jobs = []
        for name in node_names:
            # Tenant bridges of other networks are untouched by this change; the common
            # bridges may carry any network (CNB) or endpoint (underlay): always synced.
            for bridge, bf in self.node_flows(topo, name, networks=nets).items():
                if not wait_flows and not self.pusher.connected(bf.dpid):
                    continue  # it will be synced when it connects
                jobs.append((name, bridge, bf))
        parallel(lambda job: self.flowsync.sync(*job), jobs)
        timings["openflow_ms"] = round((time.perf_counter() - t1) * 1000, 2)
        return timings

    def node_state(self, topo, name, since=None, nets=None):
        """*topo*'s desired state of node *name*, with the datapath type the node records
        (read when its OVSDB connection was made). Remembered for the last two models seen
        (a placement's new one and the current one), as long as they are not changed: a
        placement computes each node's state once, not once per question asked of it.
        *since*, *nets*: *topo* is a placement's model, which differs from *since* (the
        current one) in the networks *nets* only; the node's other bridges are reused from
        *since*'s state, so a placement costs its own networks, not the node's size."""
        datapath = self.nodes[name].datapath
        seen = self._states.get(name, [])
        state = _remembered(seen, topo, datapath)
        if state is None:
            reuse = None if since is None or nets is None else _remembered(seen, since, datapath)
            state = desired.node_state(topo, name, datapath, reuse=reuse,
                                       changed=nets or ())
            self._states[name] = [(topo, topo.version, datapath, state)] + seen[:1]
        return state

    def node_flows(self, topo, name, networks=None):
        """flows.node_flows of node *name* in *topo*, from its remembered state."""
        return flows.node_flows(topo, name, state=self.node_state(topo, name),
                                networks=networks)

    def resolve_tunnels(self, state):
        """Give the node of *state* the MAC of every tunnel endpoint it has a GRE port to
        (see node.hostops.NetnsNodeHost.set_tunnel_neighbor), once per endpoint MAC.
        Userspace-datapath nodes only: the kernel datapath resolves tunnel neighbours
        itself, queueing the packet meanwhile."""
        node = state.node
        host = self.hosts.get(node)
        if host is None or not hasattr(host, "set_tunnel_neighbors") or not state.userspace:
            return
        new = {}                                 # a set, in order
        for br in state.bridges.values():
            for port in br.ports.values():
                if port.type != "gre":
                    continue
                peer = port.external_ids.get("tenantnet-peer")
                net = port.external_ids.get("tenantnet-network")
                endpoint = naming.ex_port_name(net) if net else "br-tun"
                mac = self.endpoint_macs.get(peer, {}).get(endpoint)
                key = (node, port.options["remote_ip"], mac)
                if mac and key not in self._tunnel_neighbors:
                    new[key] = None
        if new:
            host.set_tunnel_neighbors([(ip, mac) for _, ip, mac in new])
            self._tunnel_neighbors.update(new)

    # -- OpenFlow events (called in tenantnet.app's event thread: they return at once) --
    def switch_connected(self, dpid):
        """Switch *dpid* connected: synced soon, with the others that connect meanwhile
        (controller.switchsync)."""
        self.switchsync.connected(dpid)

    def switch_disconnected(self, dpid):
        self.switchsync.disconnected(dpid)
        self.flowsync.forget(dpid)
        LOG.info("switch %s disconnected", naming.dpid_str(dpid))

    # -- the placement service (controller.service), as the API and TenantView call it
    def add_vm(self, spec):
        return self.service.add_vm(spec)

    def add_vms(self, specs):
        return self.service.add_vms(specs)

    def del_vm(self, name):
        return self.service.del_vm(name)

    def list_vms(self):
        return self.service.list_vms()

    def get_vm(self, name):
        return self.service.get_vm(name)

    def topology(self):
        return self.service.topology()

    def add_function(self, spec):
        return self.service.add_function(spec)

    def del_function(self, name):
        return self.service.del_function(name)

    def list_functions(self):
        return self.service.list_functions()

    def add_chain(self, spec):
        return self.service.add_chain(spec)

    def del_chain(self, name):
        return self.service.del_chain(name)

    def list_chains(self):
        return self.service.list_chains()

    def not_serving(self):
        """None once the core has started, else why the API refuses requests (its gate)."""
        if self.started:
            return None
        return ("the controller is starting: it serves once it has reached and reconciled "
                "its nodes (GET /v1/health says when); try again")

    def health(self):
        with self._counters_lock:
            counters = dict(self.counters)
        return {"status": "ok" if self.started else "starting", "nodes": len(self.nodes),
                "vms": len(self.topo.vms()), "node_states": self.node_states(),
                "counters": counters}

    def for_principal(self, principal):
        if principal == PROVIDER:
            return self
        return TenantView(self, principal.split(":", 1)[1])

