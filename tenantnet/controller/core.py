"""The controller core: model -> desired state -> OVSDB and OpenFlow, plus the placement API.

Data flow for a placement request (and for start-up, and for a switch that connects):
  validate against the model (config.vm_from_spec)  -> new Topology (copy, not mutated)
  desired.node_state for every affected node          -> ovsdb.NodeOvsdb.reconcile
  ex- endpoint addresses                              -> host executor (ip addr)
  flows.node_flows for the affected bridges           -> ofswitch.FlowPusher.sync (bundle)
Only when all of that succeeded does the new Topology replace the old one. A switch that
(re)connects goes through the same sync as a placement: compute, install, remove stale."""

import concurrent.futures
import logging
import threading
import time

from tenantnet.model import config as config_mod
from tenantnet.model import naming
from tenantnet.model.desired import node_state
from tenantnet.errors import ConfigError, PlacementError, SouthboundError, TenantnetError
from tenantnet.model.flows import node_flows
from tenantnet.node.bootstrap import NetnsNodeHost
from tenantnet.southbound.ovsdb import NodeOvsdb, recovered_vms

LOG = logging.getLogger("tenantnet.controller.core")
API_SOURCE = "API request"


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


class _Placement:
    """One add or delete request on its way through Core._submit."""

    def __init__(self, kind, spec=None, name=None):
        self.kind, self.spec, self.name = kind, spec, name
        self.t0 = time.perf_counter()
        self.done = threading.Event()
        self.result = self.error = self.vm = None
        self.new_on_node = None

    def prepare(self, topo):
        """Validate against *topo* (the group's model so far) and apply to it."""
        if self.kind == "add":
            vm = config_mod.vm_from_spec(topo, self.spec, API_SOURCE, "", vm_source="api")
            self.new_on_node = vm.node not in topo.hosting_nodes(vm.network)
            topo.add_vm(vm)
        else:
            vm = topo.vm(self.name)
            if vm is None:
                raise PlacementError(f"unknown VM {self.name!r}", status=404)
            topo.remove_vm(self.name)
        self.vm = vm

    def reset(self):
        self.vm = self.new_on_node = None

    def fail(self, exc):
        self.error = exc
        self.done.set()

    def finish(self, topo, affected, timings):
        timings["total_ms"] = round((time.perf_counter() - self.t0) * 1000, 2)
        out = self.vm.as_dict()
        out.update(nodes_updated=affected, timings=timings)
        if self.kind == "add":
            out.update(bridges_created=self.new_on_node and topo.mode_of(self.vm.network) == "dnb",
                       network_new_on_node=self.new_on_node, mode=topo.mode_of(self.vm.network))
        else:
            out.update(deleted=True)
        self.result = out
        self.done.set()


class Core:
    def __init__(self, topo, pusher, ovsdb_remotes=None, hosts=None, source="config",
                 managed_nodes=None):
        """*managed_nodes*: names of the nodes this controller programs (default: all)."""
        self.topo = topo
        self.pusher = pusher
        self.source = source
        remotes = ovsdb_remotes or {}
        self.nodes = {n.name: NodeOvsdb(n.name, remotes.get(
            n.name, f"tcp:{n.management_ip}:{topo.controller.ovsdb_port}")) for n in topo.nodes()
            if managed_nodes is None or n.name in managed_nodes}
        self.hosts = hosts or {}
        self.lock = threading.RLock()
        self.portmaps = {}          # (node, bridge) -> {port name: ofport}
        self._in_sync = {}          # dpid -> cookies installed by our last sync (this connection)
        self.endpoint_macs = {}     # node -> {br-tun interface: MAC in use}
        self._tunnel_neighbors = set()   # (node, remote ip, mac) entries already set
        self.started = False
        self.ready = threading.Event()   # set once start() has connected and reconciled
        self._queue = []                  # placements waiting to be realised (see _submit)
        self._queue_lock = threading.Lock()
        self.api_server = None

    # -- lifecycle -----------------------------------------------------------------
    def start(self):
        """Connect to every node, relearn runtime placements, reconcile everything."""
        with self.lock:
            for node in self.nodes.values():
                node.connect()
            self._recover()
            self._realise(self.topo, [n.name for n in self.topo.nodes()], wait_flows=False,
                          force_addresses=True)
            self.started = True
            self.ready.set()
        if self.api_server is not None:
            self.api_server.start()
        LOG.info("controller ready: %d nodes, %d networks, %d VMs", len(self.nodes),
                 len(self.topo.networks()), len(self.topo.vms()))

    def stop(self):
        if self.api_server is not None:
            self.api_server.stop()
        for node in self.nodes.values():
            node.close()

    def _recover(self):
        """Add VMs that were placed through the API (recorded in external_ids on the nodes)."""
        for node_name, node in self.nodes.items():
            for name, rec in recovered_vms(node.owned()["ports"]).items():
                if self.topo.vm(name) is not None or rec.get("source") != "api":
                    continue
                spec = {"name": name, "network": rec["network"], "node": node_name,
                        "mac": rec["mac"], "ip": rec["ip"]}
                try:
                    vm = config_mod.vm_from_spec(self.topo, spec, f"node {node_name}", "port",
                                                 vm_source="api")
                except ConfigError as exc:
                    LOG.warning("not recovering VM %s found on %s: %s", name, node_name, exc)
                    continue
                self.topo.add_vm(vm)
                LOG.info("recovered VM %s on %s from the node's OVSDB", name, node_name)

    # -- realising a topology ------------------------------------------------------
    def _reconcile_node(self, state, force_addresses):
        name = state.node
        result = self.nodes[name].reconcile(state)
        host = self.hosts.get(name)
        for ifname, cidr in state.addresses.items():
            # A new ex- port is a new kernel device: it needs its address (again).
            if host is not None and (force_addresses or
                                     f"add port {ifname} to br-tun" in result.commands):
                host.set_address(ifname, cidr)
        if result.changed:
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
        states = {n: self._node_state(topo, n) for n in node_names}   # once per node
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
            for bridge, bf in node_flows(topo, name).items():
                # Tenant bridges of other networks are untouched by this change; the common
                # bridges may carry any network (CNB) or endpoint (underlay): always synced.
                if nets is not None and bf.network is not None and bf.network not in nets:
                    continue
                if not wait_flows and not self.pusher.connected(bf.dpid):
                    continue  # it will be synced when it connects
                jobs.append((name, bridge, bf))
        _parallel(lambda job: self._sync_bridge(*job), jobs)
        timings["openflow_ms"] = round((time.perf_counter() - t1) * 1000, 2)
        return timings

    def _node_state(self, topo, name):
        """*topo*'s desired state of node *name*, with the datapath type the node records
        (read when its OVSDB connection was made)."""
        return node_state(topo, name, self.nodes[name].datapath)

    def _resolve_tunnels(self, state):
        """Give the node of *state* the MAC of every tunnel endpoint it has a GRE port to
        (see node.bootstrap.NetnsNodeHost.set_tunnel_neighbor), once per endpoint MAC.
        Userspace-datapath nodes only: the kernel datapath resolves tunnel neighbours
        itself, queueing the packet meanwhile."""
        node = state.node
        host = self.hosts.get(node)
        if host is None or not hasattr(host, "set_tunnel_neighbor") or not state.userspace:
            return
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
                    host.set_tunnel_neighbor(port.options["remote_ip"], mac)
                    self._tunnel_neighbors.add(key)

    def _sync_bridge(self, node, bridge, bf, connect_timeout=15.0):
        if not self.pusher.wait_connected(bf.dpid, connect_timeout):
            raise SouthboundError(f"{node}/{bridge} (dpid {naming.dpid_str(bf.dpid)}) did not "
                                  f"connect to the controller within {connect_timeout:.0f}s")
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
            return {"added": 0, "removed": 0, "mode": None}
        result = self.pusher.sync(bf.dpid, bf.flows, pm, installed=known)
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
        return node, bridge, node_flows(topo, node)[bridge]

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
            try:
                self._in_sync.pop(dpid, None)
                res = self._sync_bridge(node, bridge, bf)
                LOG.info("%s/%s connected: +%d -%d flows", node, bridge, res["added"],
                         res["removed"])
            except TenantnetError as exc:
                LOG.error("%s/%s: flow sync after connect failed: %s", node, bridge, exc)

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
        if req.error is not None:
            raise req.error
        return req.result

    def _apply(self, group):
        new = self.topo.copy()
        accepted = []
        for req in group:
            try:
                req.prepare(new)
                accepted.append(req)
            except TenantnetError as exc:
                req.fail(exc)
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

    def add_vm(self, spec):
        if not isinstance(spec, dict):
            raise ConfigError(API_SOURCE, "", "expected a JSON object")
        out = self._submit(_Placement("add", spec=spec))
        LOG.info("placed %s on %s in %.1f ms", out["name"], out["node"],
                 out["timings"]["total_ms"])
        return out

    def del_vm(self, name):
        return self._submit(_Placement("del", name=name))

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
        }

    def health(self):
        return {"status": "ok" if self.started else "starting", "nodes": len(self.nodes),
                "vms": len(self.topo.vms())}

    def for_principal(self, principal):
        if principal == PROVIDER:
            return self
        return TenantView(self, principal.split(":", 1)[1])


# -- API credentials ------------------------------------------------------------------
PROVIDER = "provider"
OPEN_ROUTES = {("GET", "/v1/health"), ("GET", "/openapi.json")}


class TenantView:
    """The placement service as one tenant sees it: its own networks and VMs only."""

    def __init__(self, core, tenant):
        self.core = core
        self.tenant = tenant

    def _mine(self, net_key):
        net = self.core.topo.network(net_key)
        return net is not None and net.tenant == self.tenant

    def _own_vm(self, name):
        vm = self.core.topo.vm(name)
        if vm is None or not self._mine(vm.network):
            # the same answer as for a VM that does not exist: nothing leaks
            raise PlacementError(f"unknown VM {name!r}", status=404)
        return vm

    def add_vm(self, spec):
        net = spec.get("network") if isinstance(spec, dict) else None
        if not isinstance(net, str) or not self._mine(net):
            raise PlacementError(f"tenant {self.tenant} has no network {net!r}", status=403)
        return self.core.add_vm(spec)

    def del_vm(self, name):
        self._own_vm(name)
        return self.core.del_vm(name)

    def get_vm(self, name):
        return self._own_vm(name).as_dict()

    def list_vms(self):
        return [v for v in self.core.list_vms() if self._mine(v["network"])]

    def topology(self):
        topo = self.core.topology()
        return {"mode": topo["mode"], "tenant": self.tenant,
                "nodes": [{"name": n["name"], "role": n["role"]} for n in topo["nodes"]],
                "networks": [n for n in topo["networks"] if n["tenant"] == self.tenant],
                "vms": [v for v in topo["vms"] if self._mine(v["network"])]}

    def health(self):
        return self.core.health()


def make_authorizer(topo):
    """Bearer tokens: the provider's (controller.api_token) sees everything, a tenant's
    (tenants[].token) only that tenant. No or unknown credential: refused."""
    by_token = {tok: f"tenant:{t}" for t, tok in topo.tenant_tokens.items()}
    if topo.controller.api_token:
        by_token[topo.controller.api_token] = PROVIDER

    def authorize(headers, method, path):
        if (method, path.rstrip("/") or "/") in OPEN_ROUTES:
            return None
        auth = headers.get("Authorization") or ""
        if not auth:
            raise PermissionError("this API needs a credential: send 'Authorization: Bearer "
                                  "TOKEN' (the provider's or your tenant's token)")
        scheme, _, token = auth.partition(" ")
        principal = by_token.get(token.strip()) if scheme.lower() == "bearer" else None
        if principal is None:
            raise PermissionError("the credential is not valid")
        return principal
    return authorize


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
    core = Core(topo, pusher, ovsdb_remotes=settings.ovsdb_remotes, hosts=hosts,
                source=settings.config)
    if settings.api_socket or settings.api_listen:
        from tenantnet.controller.api import ApiServer
        core.api_server = ApiServer(core, tcp=settings.api_tcp, unix_path=settings.api_socket,
                                    authorizer=make_authorizer(topo), unix_trusted=True)
    return core
