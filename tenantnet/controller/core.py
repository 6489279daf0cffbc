"""The controller core: model -> desired state -> OVSDB and OpenFlow, plus the placement API.

Data flow for a placement request (and for start-up, and for a switch that connects):
  validate against the model (config.vm_from_spec)  -> new Topology (copy, not mutated)
  desired.node_state for every affected node          -> ovsdb.NodeOvsdb.reconcile
  ex- endpoint addresses                              -> host executor (ip addr)
  flows.node_flows for the affected bridges           -> ofswitch.FlowPusher.sync (bundle)
Only when all of that succeeded does the new Topology replace the old one. A switch that
(re)connects goes through the same sync as a placement: compute, install, remove stale.

Node loss is normal: each node is up, down or reconciling (controller.nodestate). The
controller starts with the nodes that answer, a watcher thread per node reconnects the
others with a capped back-off and reconciles a node in full whenever it comes back; a
placement that would touch a node that is not up is refused with 503 before anything is
changed; a periodic audit repairs drift on the nodes that are up."""

import concurrent.futures
import logging
import threading
import time

from tenantnet.controller import metrics as metrics_mod
from tenantnet.controller import nfv
from tenantnet.controller import tls as controller_tls
from tenantnet.model import config as config_mod
from tenantnet.model import naming
from tenantnet.model.desired import node_state
from tenantnet.errors import PlacementError, SouthboundError, TenantnetError
from tenantnet.model.flows import node_flows
from tenantnet.model.desired import TRANSPORT_BRIDGE
from tenantnet.node.bootstrap import NetnsNodeHost
from tenantnet.southbound.ovsdb import NodeOvsdb
from tenantnet.controller import recovery
from tenantnet.controller.placement import VmPlacement
from tenantnet.controller.nodestate import DOWN, RECONCILING, UP, Backoff, NodeStates
from tenantnet.controller.tenancy import PROVIDER, TenantView, make_authorizer

LOG = logging.getLogger("tenantnet.controller.core")
CONNECT_TIMEOUT = 3.0      # seconds one attempt to reach a node's OVSDB may take
CHECK_INTERVAL = 0.5       # seconds between checks that an up node's connection holds
RETRY_INITIAL = 0.5        # first wait before reaching a down node again (then doubling)


def _parallel(func, items):
    """func(item) for every item, concurrently; results in order. The first error is raised
    once every call has finished (no work is left running behind the caller's back)."""
    items = list(items)
    if len(items) <= 1:
        return [func(i) for i in items]
    with concurrent.futures.ThreadPoolExecutor(max_workers=min(16, len(items))) as pool:
        futures = [pool.submit(func, i) for i in items]
        concurrent.futures.wait(futures)
    return [f.result() for f in futures]


def _settled(func, items):
    """Like _parallel, but every call's exception is returned in its place."""
    def call(item):
        try:
            return func(item)
        except Exception as exc:  # noqa: BLE001 -- handed back to the caller
            return exc
    return _parallel(call, items)


def _remembered(seen, topo, datapath):
    """The NodeState remembered in *seen* for *topo* as it is now, or None."""
    for topo_seen, version, dp, state in seen:
        if topo_seen is topo and version == topo.version and dp == datapath:
            return state
    return None


def _reason(exc, node=None):
    """An exception as a one-line reason (without a leading "node NODE: ")."""
    if isinstance(exc, TenantnetError):
        text = str(exc)
    else:
        text = f"{type(exc).__name__}: {exc}"
    text = " ".join(text.split()) or type(exc).__name__
    if node is not None and text.startswith(f"node {node}: "):
        text = text[len(f"node {node}: "):]
    return text


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
        self._in_sync = {}          # dpid -> cookies installed by our last sync (this connection)
        self.endpoint_macs = {}     # node -> {br-tun interface: MAC in use}
        self._tunnel_neighbors = set()   # (node, remote ip, mac) entries already set
        self._states = {}           # node -> recent desired states (see _node_state)
        self.started = False
        self.ready = threading.Event()   # set once start() has connected and reconciled
        self._queue = []                  # placements waiting to be realised (see _submit)
        self._queue_lock = threading.Lock()
        self.api_server = None
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
        self._threads = []
        self.metrics = metrics_mod.for_core(self)   # GET /metrics (controller.metrics)

    # -- lifecycle -----------------------------------------------------------------
    def start(self):
        """Reach every node that answers (one bounded attempt each, side by side), relearn
        runtime placements from them and reconcile them; then serve the API. Nodes that
        did not answer are down: their watchers keep trying them in the background."""
        names = sorted(self.nodes)
        outcomes = _settled(self._connect, names)
        with self.lock:
            reached = []
            for name, out in zip(names, outcomes):
                if isinstance(out, Exception):
                    self.states.set(name, DOWN, _reason(out, name))
                else:
                    self.states.set(name, RECONCILING, "reached at start-up")
                    reached.append(name)
            self._recover(reached)
            up = self._resync(reached, "reconciled at start-up")
            self.started = True
            self.ready.set()
        if self.api_server is not None:
            self.api_server.start()
        for name in names:
            self._spawn(f"tenantnet-node-{name}", self._watch, name)
        if self.audit_interval > 0:
            self._spawn("tenantnet-audit", self._audit_loop)
        LOG.info("controller ready: %d of %d nodes up%s, %d networks, %d VMs", len(up),
                 len(names), "" if len(up) == len(names) else " (the others are retried)",
                 len(self.topo.networks()), len(self.topo.vms()))

    def stop(self):
        self._stopping.set()
        if self.api_server is not None:
            self.api_server.stop()
        for thread in self._threads:
            thread.join(CONNECT_TIMEOUT + 2)
        for node in self.nodes.values():
            node.close()

    def _spawn(self, name, func, *args):
        thread = threading.Thread(target=self._guarded, args=(func, *args), name=name,
                                  daemon=True)
        self._threads.append(thread)
        thread.start()

    @staticmethod
    def _guarded(func, *args):
        try:
            func(*args)
        except Exception:  # noqa: BLE001 -- a bug in a watcher must be seen, not lost
            LOG.exception("%s failed", getattr(func, "__name__", func))

    def _count(self, key, n=1):
        with self._counters_lock:
            self.counters[key] = self.counters.get(key, 0) + n

    def _connect(self, name):
        return self.nodes[name].connect(retry_for=0, attempt_timeout=CONNECT_TIMEOUT)

    def _recover(self, node_names=None):
        """Relearn the API placements recorded on the nodes *node_names* (default all):
        VMs, then network functions, then chains (controller.recovery, model.records).
        The nodes already up hold the current chain records. Returns the networks of what
        was added."""
        found = {}
        for node_name in sorted(self.nodes if node_names is None else node_names):
            try:
                found[node_name] = recovery.read_node(self.nodes[node_name])
            except Exception as exc:  # noqa: BLE001 -- the node went away meanwhile
                LOG.warning("node %s: placements not read: %s", node_name, _reason(exc))
        return recovery.relearn(self.topo, found, current=self.states.up_nodes())

    # -- node health ---------------------------------------------------------------
    def node_states(self):
        """[{node, state (up|down|reconciling), since (ISO 8601 UTC), since_epoch,
        reason}], one per node this controller programs."""
        return self.states.as_list()

    def _forget(self, name):
        """Drop what we believe about node *name*'s switches: after a break it is read
        again (ports, flow tables, endpoint MACs, tunnel neighbours)."""
        for key in [k for k in self.portmaps if k[0] == name]:
            del self.portmaps[key]
        for bf in self._node_flows(self.topo, name).values():
            self._in_sync.pop(bf.dpid, None)
        self._tunnel_neighbors = {k for k in self._tunnel_neighbors if k[0] != name}
        self.endpoint_macs.pop(name, None)

    def _record(self, name, result):
        for bridge, pm in result.portmaps.items():
            self.portmaps[(name, bridge)] = pm
        self.endpoint_macs[name] = result.macs

    def _resync(self, names, why):
        """Reconcile the connected nodes *names* in full (under self.lock): OVSDB, `ex-`
        addresses, tunnel neighbours, and the flows of every connected bridge, dumped
        from the switch rather than trusted from memory. A node that fails goes down (its
        watcher tries again). Returns the nodes now up."""
        if not names:
            return []
        for name in names:
            self.states.set(name, RECONCILING, self.states.reason(name))
            self._forget(name)
        states = {n: self._node_state(self.topo, n) for n in names}
        results = _settled(lambda n: self._reconcile_node(states[n], True), names)
        ok = []
        for name, res in zip(names, results):
            if isinstance(res, Exception):
                self.states.set(name, DOWN, f"reconcile failed: {_reason(res, name)}")
                self.nodes[name].close()
                continue
            self._record(name, res)
            ok.append(name)
        for name in ok:
            self.states.set(name, UP, why)
            self._count("resyncs")
        self._refresh_neighbors()
        jobs = [(n, br, bf) for n in ok for br, bf in self._node_flows(self.topo, n).items()
                if self.pusher.connected(bf.dpid)]
        for (n, br, _), res in zip(jobs, _settled(lambda j: self._sync_bridge(*j), jobs)):
            if isinstance(res, Exception):
                LOG.error("%s/%s: flow sync failed: %s", n, br, _reason(res))
        return ok

    def _refresh_neighbors(self):
        """Tunnel neighbours on every up node (cached: only new endpoint MACs cost)."""
        for name in self.states.up_nodes():
            try:
                self._resolve_tunnels(self._node_state(self.topo, name))
            except TenantnetError as exc:
                LOG.warning("node %s: tunnel neighbours not set: %s", name, exc)

    def _watch(self, name):
        """Node *name*'s watcher: while it is up, check every CHECK_INTERVAL that its OVSDB
        connection holds; while it is down, try to reach it with a capped back-off, and
        when it answers relearn its placements and reconcile it in full."""
        node = self.nodes[name]
        backoff = Backoff(RETRY_INITIAL, self.retry_max)
        cut = False                   # down because its transport link is (OVSDB holds)
        while not self._stopping.is_set():
            if cut and node.connected():
                if self._transport_lost(name):
                    self._stopping.wait(CHECK_INTERVAL)
                    continue
                cut = False
                with self.lock:
                    if self._stopping.is_set():
                        break
                    try:
                        self._come_back(name, "transport link up again")
                    except Exception as exc:  # noqa: BLE001 -- never lose the watcher
                        self.states.set(name, DOWN, f"reconcile failed: {_reason(exc, name)}")
                        node.close()
                continue
            cut = False
            if self.states.is_up(name):
                if node.connected():
                    lost = self._transport_lost(name)
                    if lost:
                        with self.lock:
                            self.states.set(name, DOWN, lost)
                        cut = True
                        continue
                    self._stopping.wait(CHECK_INTERVAL)
                    continue
                with self.lock:
                    self.states.set(name, DOWN, "OVSDB connection lost")
                    node.close()
                    self._forget(name)
                backoff.reset()
                continue                  # one attempt at once: a restarted server is back
            try:
                self._connect(name)
            except Exception as exc:  # noqa: BLE001 -- whatever it is, the node is down
                self.states.set(name, DOWN, _reason(exc, name))
                self._stopping.wait(backoff.next())
                continue
            with self.lock:
                if self._stopping.is_set():
                    break
                try:
                    self._come_back(name)
                except Exception as exc:  # noqa: BLE001 -- never lose the watcher
                    self.states.set(name, DOWN, f"reconcile failed: {_reason(exc, name)}")
                    node.close()
            if self.states.is_up(name):
                backoff.reset()
            else:
                self._stopping.wait(backoff.next())

    def _transport_lost(self, name):
        """Why node *name*'s transport is unreachable ("transport unreachable: ..."), or
        None: its uplink on br-tun (the config's transport_interface) reports link_state
        down in the node's OVSDB (carrier lost: a cut cable, a switch port down)."""
        node = self.topo.node(name)
        uplink = getattr(node, "transport_interface", None)
        if not uplink:
            return None
        try:
            state = self.nodes[name].link_state(uplink)
        except Exception:  # noqa: BLE001 -- a broken connection is the OVSDB check's
            return None
        if state == "down":
            return f"transport unreachable: uplink {uplink} link down"
        return None

    def _come_back(self, name, why="OVSDB reachable again"):
        """Node *name* answers again (under self.lock): relearn its API placements,
        reconcile it in full, and let its peers learn the placements relearned."""
        self.states.set(name, RECONCILING, why)
        nets = self._recover([name])
        up = self._resync([name], "reconciled after it came back")
        peers = sorted({p for key in nets for p in self.topo.hosting_nodes(key)} - {name})
        peers = [p for p in peers if self.states.is_up(p)]
        if up and peers:
            try:
                self._realise(self.topo, peers, nets=nets)
            except TenantnetError as exc:
                LOG.error("peers of %s not updated: %s", name, exc)

    # -- drift ---------------------------------------------------------------------
    def _audit_loop(self):
        while not self._stopping.wait(self.audit_interval):
            try:
                self.audit()
            except Exception as exc:  # noqa: BLE001 -- the next audit tries again
                LOG.error("audit failed: %s", _reason(exc))

    def audit(self):
        """Compare every up node with the model and repair what differs: OVSDB records,
        `ex-` addresses, tunnel neighbours, flow tables (dumped). Logs and counts each
        repair; returns them."""
        repairs = []
        for name in self.states.up_nodes():
            with self.lock:
                if self._stopping.is_set() or not self.states.is_up(name):
                    continue
                try:
                    found, _ = self._repair_node(name)
                except Exception as exc:  # noqa: BLE001 -- e.g. the node just went away
                    LOG.warning("audit of node %s not finished: %s", name, _reason(exc, name))
                    continue
            repairs += found
        for item in repairs:
            LOG.warning("audit repaired %s", item)
        self._count("audits")
        self._count("audit_repairs", len(repairs))
        return repairs

    def _repair_node(self, name, bridges=None, neighbors=False):
        """Make up node *name* match the model again (under self.lock): OVSDB, `ex-`
        addresses, tunnel neighbours (*neighbors*: set them all again, e.g. after its
        br-tun reconnected), and the flows of its connected bridges (*bridges*, default
        all), dumped from the switches. Returns ([repairs], {bridge: sync result})."""
        state = self._node_state(self.topo, name)
        result = self.nodes[name].reconcile(state)
        self._record(name, result)
        repairs = [f"{name}: {c}" for c in result.commands]
        host = self.hosts.get(name)
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
            self._tunnel_neighbors = {k for k in self._tunnel_neighbors if k[0] != name}
        if neighbors or check or result.changed:
            self._refresh_neighbors()
        jobs = [(br, bf) for br, bf in self._node_flows(self.topo, name).items()
                if (bridges is None or br in bridges) and self.pusher.connected(bf.dpid)]
        for _, bf in jobs:
            self._in_sync.pop(bf.dpid, None)
        flows = {}
        for (br, _), res in zip(jobs, _settled(lambda j: self._sync_bridge(name, *j), jobs)):
            if isinstance(res, Exception):
                LOG.error("%s/%s: flow sync failed: %s", name, br, _reason(res))
                continue
            flows[br] = res
            if res["added"] or res["removed"]:
                repairs.append(f"{name}/{br}: +{res['added']} -{res['removed']} flows")
        return repairs, flows

    # -- realising a topology ------------------------------------------------------
    def _reconcile_node(self, state, force_addresses):
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

    def _realise(self, topo, node_names, nets=None, wait_flows=True, force_addresses=False,
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
        states = {n: self._node_state(topo, n, since, nets) for n in node_names}
        known = {node for node, _ in self.portmaps}
        ovsdb_nodes = [n for n in node_names if since is None or n not in known
                       or self._node_state(since, n) != states[n]]
        results = _parallel(lambda n: self._reconcile_node(states[n], force_addresses),
                            ovsdb_nodes)
        for name, result in zip(ovsdb_nodes, results):
            for bridge, pm in result.portmaps.items():
                self.portmaps[(name, bridge)] = pm
            self.endpoint_macs[name] = result.macs
        _parallel(lambda n: self._resolve_tunnels(states[n]), node_names)
        timings["ovsdb_ms"] = round((time.perf_counter() - t0) * 1000, 2)
        t1 = time.perf_counter()
        jobs = []
        for name in node_names:
            # Tenant bridges of other networks are untouched by this change; the common
            # bridges may carry any network (CNB) or endpoint (underlay): always synced.
            for bridge, bf in self._node_flows(topo, name, networks=nets).items():
                if not wait_flows and not self.pusher.connected(bf.dpid):
                    continue  # it will be synced when it connects
                jobs.append((name, bridge, bf))
        _parallel(lambda job: self._sync_bridge(*job), jobs)
        timings["openflow_ms"] = round((time.perf_counter() - t1) * 1000, 2)
        return timings

    def _node_state(self, topo, name, since=None, nets=None):
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
            state = node_state(topo, name, datapath, reuse=reuse, changed=nets or ())
            self._states[name] = [(topo, topo.version, datapath, state)] + seen[:1]
        return state

    def _node_flows(self, topo, name, networks=None):
        """flows.node_flows of node *name* in *topo*, from its remembered state."""
        return node_flows(topo, name, state=self._node_state(topo, name), networks=networks)

    def _resolve_tunnels(self, state):
        """Give the node of *state* the MAC of every tunnel endpoint it has a GRE port to
        (see node.bootstrap.NetnsNodeHost.set_tunnel_neighbor), once per endpoint MAC.
        Userspace-datapath nodes only: the kernel datapath resolves tunnel neighbours
        itself, queueing the packet meanwhile."""
        node = state.node
        host = self.hosts.get(node)
        if host is None or not hasattr(host, "set_tunnel_neighbors") or not state.userspace:
            return
        new = []
        for br in state.bridges.values():
            for port in br.ports.values():
                if port.type != "gre":
                    continue
                peer = port.external_ids.get("tenantnet-peer")
                net = port.external_ids.get("tenantnet-network")
                endpoint = naming.ex_port_name(net) if net else "br-tun"
                mac = self.endpoint_macs.get(peer, {}).get(endpoint)
                key = (node, port.options["remote_ip"], mac)
                if mac and key not in self._tunnel_neighbors and key not in new:
                    new.append(key)
        if new:
            host.set_tunnel_neighbors([(ip, mac) for _, ip, mac in new])
            self._tunnel_neighbors.update(new)

    def _sync_bridge(self, node, bridge, bf, connect_timeout=15.0):
        """Sync one bridge's flows once it is connected. A switch that drops its connection
        during the sync (a new bridge whose first TLS handshake Open vSwitch timed out on a
        busy host, say) is synced again when it is back, within *connect_timeout*."""
        deadline = time.monotonic() + connect_timeout
        while True:
            if not self.pusher.wait_connected(bf.dpid, max(0.0, deadline - time.monotonic())):
                raise SouthboundError(f"{node}/{bridge} (dpid {naming.dpid_str(bf.dpid)}) did "
                                      "not connect to the controller within "
                                      f"{connect_timeout:.0f}s")
            try:
                return self._sync_connected(node, bridge, bf)
            except SouthboundError as exc:
                if self.pusher.connected(bf.dpid) or time.monotonic() >= deadline:
                    raise
                LOG.info("%s/%s: the switch left during its flow sync (%s); syncing again "
                         "when it is back", node, bridge, _reason(exc))

    def _sync_connected(self, node, bridge, bf):
        pm = self.portmaps.get((node, bridge))
        if pm is None or any(p not in pm for f in bf.flows for p in f.port_names()):
            pm = self.nodes[node].portmap(bridge)
            self.portmaps[(node, bridge)] = pm
        # What we last installed on this connection: an unchanged bridge costs no round trip.
        # (A reconnect clears it, and then the switch's own flow table is read again.)
        try:
            want = frozenset(f.resolve(pm).cookie() for f in bf.flows)
        except KeyError:
            want = None                  # let sync() name the missing port
        known = self._in_sync.get(bf.dpid)
        if want is not None and known == want:
            self.metrics.flow_sync(node, bridge, len(bf.flows))
            return {"added": 0, "removed": 0, "mode": None}
        t0 = time.perf_counter()
        result = self.pusher.sync(bf.dpid, bf.flows, pm, installed=known)
        self.metrics.flow_sync(node, bridge, len(bf.flows), time.perf_counter() - t0,
                               bundle=result.get("mode") == "bundle")
        if want is not None:
            self._in_sync[bf.dpid] = want
        return result

    def _locate(self, dpid):
        """(node, bridge, BridgeFlows) of *dpid* in the current model, or None."""
        topo = self.topo
        node_bridge = naming.dpid_owner(topo, dpid)
        if node_bridge is None:
            return None
        node, bridge = node_bridge
        return node, bridge, self._node_flows(topo, node)[bridge]

    # -- OpenFlow events (called by tenantnet.app) --------------------------------
    def switch_connected(self, dpid):
        # A switch may connect before start() has reached the nodes' OVSDB; start() skips
        # unconnected bridges, so either path ends with the bridge in sync.
        if not self.ready.wait(120):
            LOG.error("switch %s connected but the controller never became ready",
                      naming.dpid_str(dpid))
            return
        with self.lock:
            found = self._locate(dpid)
            if found is None:
                LOG.warning("switch %s is not one of ours; ignoring it", naming.dpid_str(dpid))
                return
            node, bridge, bf = found
            if node not in self.nodes:
                LOG.warning("switch %s is %s/%s, a node this controller does not program; "
                            "ignoring it", naming.dpid_str(dpid), node, bridge)
                return
            if not self.states.is_up(node):
                # Reconciling the node syncs every bridge of it that is connected by then.
                LOG.info("%s/%s connected while node %s is %s: it is synced when the node "
                         "is reconciled", node, bridge, node, self.states.state(node))
                return
            # A reconnect is a break: the node's OVSDB and this bridge's flow table are
            # checked in full (a restarted ovs-vswitchd also lost its tunnel neighbours).
            self._in_sync.pop(dpid, None)
            try:
                repairs, flows = self._repair_node(node, bridges={bridge},
                                                   neighbors=bridge == TRANSPORT_BRIDGE)
                self._count("switch_resyncs")
                res = flows.get(bridge, {"added": 0, "removed": 0})
                others = [r for r in repairs if not r.startswith(f"{node}/{bridge}:")]
                LOG.info("%s/%s connected: +%d -%d flows%s", node, bridge, res["added"],
                         res["removed"], f"; repaired {'; '.join(others)}" if others else "")
            except TenantnetError as exc:
                LOG.error("%s/%s: sync after connect failed: %s", node, bridge, exc)

    def switch_disconnected(self, dpid):
        self._in_sync.pop(dpid, None)
        LOG.info("switch %s disconnected", naming.dpid_str(dpid))

    # -- placement service (used by tenantnet.controller.api) --------------------------------
    def _change(self, new_topo, nets):
        """Realise *new_topo* for the networks *nets*; on success it becomes the model."""
        affected = sorted({n for key in nets for n in self.topo.hosting_nodes(key)}
                          | {n for key in nets for n in new_topo.hosting_nodes(key)})
        try:
            timings = self._realise(new_topo, affected, nets=set(nets), since=self.topo)
        except TenantnetError:
            # Put the switches back the way the current model says.
            LOG.error("placement failed; restoring %s", ", ".join(affected))
            try:
                self._realise(self.topo, affected, nets=set(nets))
            except TenantnetError as exc:
                LOG.error("restore failed too: %s", exc)
            raise
        self.topo = new_topo
        return affected, timings

    # Placements that arrive while another is being realised are realised together: one
    # OVSDB transaction per node and one bundle per bridge for the whole group, instead of
    # one round of each per VM. A batch of spawn requests (the paper's experiment) then costs
    # about two rounds, not one per request.
    def _submit(self, req):
        with self._queue_lock:
            self._queue.append(req)
        while not req.done.is_set():
            with self.lock:
                with self._queue_lock:
                    group, self._queue = self._queue, []
                if group:
                    self._apply(group)
        self.metrics.placement("add" if req.kind == "add" else "delete",
                               time.perf_counter() - req.t0, ok=req.error is None,
                               bridges_created=bool((req.result or {}).get("bridges_created")))
        if req.error is not None:
            raise req.error
        return req.result

    def _apply(self, group):
        new = self.topo.copy()
        accepted = []
        for req in group:
            try:
                req.prepare(new)
            except TenantnetError as exc:
                req.fail(exc)
                continue
            try:
                self._refuse_if_down(req, new)
            except PlacementError as exc:
                req.undo(new)
                self._count("refused_node_down")
                req.fail(exc)
                continue
            accepted.append(req)
        if not accepted:
            return
        try:
            affected, timings = self._change(new, {r.vm.network for r in accepted})
        except TenantnetError as exc:
            if len(accepted) == 1:
                accepted[0].fail(exc)
                return
            # One bad placement must not sink the others: realise them one by one.
            for req in accepted:
                req.reset()
                self._apply([req])
            return
        for req in accepted:
            req.finish(new, affected, dict(timings, group_size=len(accepted)))

    def _refuse_if_down(self, req, new):
        """PlacementError 503 when a node *req* would touch (its network's nodes, before
        and after) is not up: nothing anywhere is changed for it."""
        net = req.vm.network
        affected = sorted(set(self.topo.hosting_nodes(net)) | set(new.hosting_nodes(net)))
        down = self.states.down_among(affected)
        if down:
            node, state, reason = down[0]
            others = f" (and {', '.join(n for n, _, _ in down[1:])})" if down[1:] else ""
            raise PlacementError(
                f"node {node} is {state}{others}: {reason}; placements that touch it are "
                f"refused until it is back (nothing was changed)", status=503)

    def add_vm(self, spec):
        out = self._submit(VmPlacement("add", spec=spec))
        LOG.info("placed %s on %s in %.1f ms", out["name"], out["node"],
                 out["timings"]["total_ms"])
        return out

    def del_vm(self, name):
        return self._submit(VmPlacement("del", name=name))

    def list_vms(self):
        return [vm.as_dict() for vm in sorted(self.topo.vms().values(), key=lambda v: v.name)]

    def get_vm(self, name):
        vm = self.topo.vm(name)
        if vm is None:
            raise PlacementError(f"unknown VM {name!r}", status=404)
        return vm.as_dict()

    def topology(self):
        topo = self.topo
        return {
            "mode": topo.mode,
            "nodes": [{"name": n.name, "role": n.role, "management_ip": n.management_ip,
                       "transport_ip": n.transport_ip,
                       "networks": topo.networks_on(n.name)} for n in topo.nodes()],
            "networks": [{"key": k, "tenant": n.tenant, "name": n.name,
                          "segmentation_id": n.segmentation_id, "cidr": n.cidr,
                          "transport_cidr": n.transport_cidr, "mode": n.mode,
                          "controller": n.controller,
                          "hosting_nodes": topo.hosting_nodes(k),
                          "probes": [p.as_dict() for p in topo.probes(k)]}
                         for k, n in sorted(topo.networks().items())],
            "vms": self.list_vms(),
            **nfv.topology_extra(topo),
        }

    # -- network functions and chains (controller.nfv) ---------------------------------
    def add_function(self, spec):
        return self._submit(nfv.FunctionPlacement("add", spec=spec))

    def del_function(self, name):
        """Chains stop steering to it first (one round of bundles), then it goes."""
        self._submit(nfv.FunctionPlacement("drain", name=name))
        return self._submit(nfv.FunctionPlacement("del", name=name))

    def list_functions(self):
        return nfv.topology_extra(self.topo)["functions"]

    def add_chain(self, spec):
        return self._submit(nfv.ChainPlacement("add", spec=spec))

    def del_chain(self, name):
        return self._submit(nfv.ChainPlacement("del", name=name))

    def list_chains(self):
        return nfv.topology_extra(self.topo)["chains"]

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


def build_core(pusher, app, settings):
    """The provider's core from its Settings (tenantnet.controller.settings)."""
    topo = config_mod.load_file(settings.config)
    if settings.api_token:
        topo.controller.api_token = settings.api_token
    hosts = {node: NetnsNodeHost(where.netns, where.rundir)
             for node, where in settings.node_netns.items()}
    unknown = sorted(set(settings.ovsdb_remotes) - {n.name for n in topo.nodes()})
    if unknown:
        raise TenantnetError(f"ovsdb_remote names unknown node(s) {', '.join(unknown)} "
                             f"(the config has {', '.join(n.name for n in topo.nodes())})")
    tls = controller_tls.for_controller(topo.controller, settings.pki_dir)
    if tls is not None:
        tls.apply_ovsdb()
        port = tls.apply_openflow(app.CONF, topo.controller.openflow_port)
        LOG.info("TLS on: OVSDB ssl:, OpenFlow TLS on port %d, HTTPS API (%s)", port,
                 tls.identity.directory)
    core = Core(topo, pusher, ovsdb_remotes=settings.ovsdb_remotes, hosts=hosts,
                source=settings.config, audit_interval=settings.audit_interval,
                retry_max=settings.node_retry_max)
    if settings.api_socket or settings.api_listen:
        from tenantnet.controller.api import ApiServer
        core.api_server = ApiServer(core, tcp=settings.api_tcp, unix_path=settings.api_socket,
                                    authorizer=make_authorizer(topo), unix_trusted=True,
                                    tls=tls.api if tls is not None else None)
    return core
