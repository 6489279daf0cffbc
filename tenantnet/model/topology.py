"""The topology model: who is where, as a networkx graph.

Graph vertices are typed tuples: ("node", name), ("tenant", name), ("net", "tenant/net"),
("vm", name). Edges: tenant-net (owns), vm-net (attached), vm-node (placed on). Everything
else (which nodes host a network, the probes, counts for equations (1)-(4)) is derived from
the graph, so there is one source of truth and nothing to keep in step."""

import functools
import ipaddress
from dataclasses import dataclass, field

import networkx as nx

from tenantnet.model import naming


@dataclass(frozen=True)
class Node:
    name: str
    role: str                 # "compute" or "network"
    management_ip: str
    transport_ip: str
    transport_interface: str = "eth1"   # the uplink on br-tun (bootstrap attaches it)


@dataclass(frozen=True)
class Network:
    tenant: str
    name: str
    segmentation_id: int
    cidr: str
    transport_cidr: str
    mode: str = "dnb"
    controller: str = None    # the tenant's own OpenFlow controller for this network's bridges

    @property
    def key(self):
        return naming.network_key(self.tenant, self.name)

    @property
    def local_vid(self):
        """The VID that tags this network's frames between brint-xy and brtun-xy.

        The bridge pair is dedicated to one network, so the VID needs no per-node
        allocation (and no state to recover): it is derived from the segmentation id."""
        seg = self.segmentation_id
        return seg if 1 <= seg <= 4094 else (seg % 4094) + 1


@dataclass(frozen=True)
class Attachment:
    """Something with a MAC and an IP on a tenant network: a VM, or a network node's probe."""
    name: str
    kind: str                 # "vm" or "probe"
    network: str              # network key
    node: str
    mac: str
    ip: str
    port: str                 # host-side port name on brint-xy
    source: str = "config"    # "config" or "api": where a VM was declared

    def as_dict(self):
        return {"name": self.name, "kind": self.kind, "network": self.network, "node": self.node,
                "mac": self.mac, "ip": self.ip, "port": self.port, "source": self.source}


@dataclass(frozen=True)
class Function:
    """A tenant's network function: an endpoint with one port on its network's brint-
    (like a VM), which forwards the chain traffic steered to its MAC (see model.chains).

    *nf* is its kind (forward, firewall, shaper: how the lab builds it); *options* its
    kind's settings as sorted (key, value) pairs; *draining*: being removed, so chains
    already skip it (its port is still there)."""
    name: str
    network: str
    node: str
    mac: str
    ip: str
    port: str
    nf: str = "forward"
    options: tuple = ()
    source: str = "config"
    draining: bool = False

    kind = "function"          # an attachment kind, beside "vm" and "probe"

    def as_dict(self):
        return {"name": self.name, "kind": self.kind, "network": self.network,
                "node": self.node, "mac": self.mac, "ip": self.ip, "port": self.port,
                "source": self.source, "function": self.nf, "options": dict(self.options)}


@dataclass(frozen=True)
class Chain:
    """Traffic from VM *src* to VM *dst* (or to anything: dst "any") crosses the functions
    *through*, in order. *on_failure*: "open" (a missing function is skipped) or "closed"
    (the chain's traffic is dropped while one is missing)."""
    name: str
    network: str
    src: str
    dst: str
    through: tuple
    on_failure: str = "open"
    source: str = "config"

    def as_dict(self):
        return {"name": self.name, "network": self.network, "from": self.src, "to": self.dst,
                "through": list(self.through), "on_failure": self.on_failure,
                "source": self.source}


@dataclass
class Tuning:
    """Section III.G performance tuning applied to VM interfaces."""
    vm_mtu: int = 1400
    tx_checksum_offload: bool = False
    neigh_gc_thresh: tuple = None  # (gc_thresh1, gc_thresh2, gc_thresh3) or None

    def as_dict(self):
        return {"vm_mtu": self.vm_mtu, "tx_checksum_offload": self.tx_checksum_offload,
                "neigh_gc_thresh": list(self.neigh_gc_thresh) if self.neigh_gc_thresh else None}


@dataclass
class ControllerSettings:
    management_ip: str = "198.18.0.1"
    openflow_port: int = 6653
    ovsdb_port: int = 6640
    api_port: int = 8080
    api_token: str = None          # the provider's credential on the TCP API
    security: str = "tls"          # SECURITY_MODES: the whole deployment's control channels

    @property
    def tls(self):
        return self.security == "tls"

    @property
    def openflow_target(self):
        return f"{'ssl' if self.tls else 'tcp'}:{self.management_ip}:{self.openflow_port}"

    @property
    def ovsdb_scheme(self):
        """How the controller reaches a node's OVSDB: ssl (pssl: on the node) or tcp."""
        return "ssl" if self.tls else "tcp"


# tls: OVSDB on pssl: with client certificates, ssl: OpenFlow targets, an HTTPS API;
# insecure: plain TCP everywhere (an explicit choice, warned about)
SECURITY_MODES = ("tls", "insecure")


# emulated: a namespace with its own userspace-datapath OVS; vm: a QEMU VM with the
# kernel datapath (tenantnet.vm)
NODE_KINDS = ("emulated", "vm")


@dataclass
class LabSettings:
    management_cidr: str = "198.18.0.0/24"
    transport_cidr: str = "198.19.0.0/24"
    nodes: str = "emulated"        # NODE_KINDS: how the one-machine lab makes its nodes
    vm_memory_mb: int = 768        # per node VM (nodes: vm)


KINDS = ("node", "tenant", "net", "vm", "fn", "chain")   # the vertex kinds of the graph
MEMBER_KINDS = ("vm", "fn")    # what makes a network active on a node


class Topology:
    def __init__(self, mode="dnb", controller=None, tuning=None, lab=None):
        self.mode = mode
        self.controller = controller or ControllerSettings()
        self.tuning = tuning or Tuning()
        self.lab = lab or LabSettings()
        self.tenant_tokens = {}        # tenant -> API credential
        self.g = nx.Graph()
        # kind -> {name: object}, in the order added: the queries by kind read this index
        # instead of scanning every vertex of the graph (VMs are most of them).
        self._kinds = {kind: {} for kind in KINDS}
        self.version = 0               # counts the changes: (object, version) names a state
        self._placed = {}              # network -> {node: number of its VMs and functions}
        # "mac"/"port" -> {value: name} of every VM and function (attachment_named)
        self._member_ids = {"mac": {}, "port": {}}
        self._probe_ids = None         # the same for every configured network's probes

    # -- building ------------------------------------------------------------------
    def _count(self, kind, obj, step):
        if kind in MEMBER_KINDS and obj is not None:
            on = self._placed.setdefault(obj.network, {})
            on[obj.node] = on.get(obj.node, 0) + step
            if not on[obj.node]:
                del on[obj.node]
            for column, index in self._member_ids.items():
                value = getattr(obj, column)
                if step > 0:
                    index[value] = obj.name
                elif index.get(value) == obj.name:
                    del index[value]

    def _add(self, kind, name, obj, *links):
        """Add (or replace) vertex (kind, name) carrying *obj*, with edges to *links*."""
        self._count(kind, self._kinds[kind].get(name), -1)
        self._count(kind, obj, +1)
        self.g.add_node((kind, name), obj=obj)
        for other in links:
            self.g.add_edge((kind, name), other)
        self._kinds[kind][name] = obj
        self.version += 1

    def _remove(self, kind, name):
        self.g.remove_node((kind, name))
        self._count(kind, self._kinds[kind].pop(name), -1)
        self.version += 1

    def add_node(self, node):
        self._add("node", node.name, node)
        self._probe_ids = None

    def add_network(self, net):
        self._probe_ids = None
        self.g.add_node(("tenant", net.tenant))
        self._kinds["tenant"][net.tenant] = None
        self._add("net", net.key, net, ("tenant", net.tenant))

    def add_vm(self, vm):
        self._add("vm", vm.name, vm, ("net", vm.network), ("node", vm.node))

    def remove_vm(self, name):
        self._remove("vm", name)

    def add_function(self, fn):
        """Add (or replace) network function *fn*."""
        self._add("fn", fn.name, fn, ("net", fn.network), ("node", fn.node))

    def remove_function(self, name):
        self._remove("fn", name)

    def add_chain(self, chain):
        self._add("chain", chain.name, chain, ("net", chain.network))

    def remove_chain(self, name):
        self._remove("chain", name)

    @property
    def security(self):
        return self.controller.security

    def copy(self):
        other = Topology(self.mode, self.controller, self.tuning, self.lab)
        other.tenant_tokens = self.tenant_tokens
        other.g = self.g.copy()
        other._kinds = {kind: dict(objs) for kind, objs in self._kinds.items()}
        other._placed = {key: dict(on) for key, on in self._placed.items()}
        other._member_ids = {f: dict(index) for f, index in self._member_ids.items()}
        other._probe_ids = self._probe_ids      # never changed in place: rebuilt
        other.version = self.version
        return other

    # -- queries -------------------------------------------------------------------
    def _objs(self, kind):
        return list(self._kinds[kind].values())

    def nodes(self):
        return self._objs("node")

    def node(self, name):
        data = self.g.nodes.get(("node", name))
        return data["obj"] if data else None

    def compute_nodes(self):
        return [n for n in self.nodes() if n.role == "compute"]

    def network_nodes(self):
        return [n for n in self.nodes() if n.role == "network"]

    def networks(self):
        return {n.key: n for n in self._objs("net")}

    def network(self, key):
        data = self.g.nodes.get(("net", key))
        return data["obj"] if data else None

    def tenants(self):
        return sorted(self._kinds["tenant"])

    def vms(self):
        return {vm.name: vm for vm in self._objs("vm")}

    def vm(self, name):
        data = self.g.nodes.get(("vm", name))
        return data["obj"] if data else None

    def vms_of(self, net_key):
        return sorted((self.g.nodes[v]["obj"] for v in self.g.neighbors(("net", net_key))
                       if v[0] == "vm"), key=lambda vm: vm.name)

    def vms_on(self, node_name):
        return sorted((self.g.nodes[v]["obj"] for v in self.g.neighbors(("node", node_name))
                       if v[0] == "vm"), key=lambda vm: vm.name)

    def functions(self):
        return {fn.name: fn for fn in self._objs("fn")}

    def function(self, name):
        data = self.g.nodes.get(("fn", name))
        return data["obj"] if data else None

    def functions_of(self, net_key):
        return sorted((self.g.nodes[v]["obj"] for v in self.g.neighbors(("net", net_key))
                       if v[0] == "fn"), key=lambda fn: fn.name)

    def chains(self):
        return {c.name: c for c in self._objs("chain")}

    def chain(self, name):
        data = self.g.nodes.get(("chain", name))
        return data["obj"] if data else None

    def chains_of(self, net_key):
        return sorted((self.g.nodes[v]["obj"] for v in self.g.neighbors(("net", net_key))
                       if v[0] == "chain"), key=lambda c: c.name)

    def active_networks(self):
        """tns: the tenant networks with at least one VM (or network function)."""
        return sorted(k for k in self._kinds["net"] if self._placed.get(k))

    def hosting_nodes(self, net_key):
        """Nodes that carry the network's bridge pair: its VMs' (and functions') nodes plus
        every network node."""
        placed = self._placed.get(net_key)
        if not placed:
            return []
        return sorted(set(placed) | {n.name for n in self.network_nodes()})

    def networks_on(self, node_name):
        """tns_c: active networks whose bridges live on *node_name*."""
        return [k for k in self.active_networks() if node_name in self.hosting_nodes(k)]

    def probes(self, net_key):
        """One probe per network node for an active network (the DHCP-namespace analogue)."""
        net = self.network(net_key)
        if not self._placed.get(net_key):
            return []
        return [Attachment(name=probe_name(net_key, n.name), kind="probe", network=net_key,
                           node=n.name, mac=naming.mac_for("probe", net_key, n.name),
                           ip=probe_ip(net, i), port=naming.probe_port_name(net_key))
                for i, n in enumerate(sorted(self.network_nodes(), key=lambda n: n.name))]

    def attachments(self, net_key):
        """Everything with a MAC on the network: VMs, network functions and probes."""
        return self.vms_of(net_key) + self.functions_of(net_key) + self.probes(net_key)

    def attachment_named(self, field, value):
        """The name of the attachment (of any network: VM, network function, or probe of
        an active network) whose *field* ("mac" or "port") is *value*, or None. Indexed:
        a placement checks its MAC and port without listing every attachment."""
        name = self._member_ids[field].get(value)
        if name is not None:
            return name
        probes = self._probe_ids
        if probes is None:               # built whole, then shared (copies included)
            probes = {"mac": {}, "port": {}}
            for key in self._kinds["net"]:
                for n in self.network_nodes():
                    ids = {"mac": naming.mac_for("probe", key, n.name),
                           "port": naming.probe_port_name(key)}
                    for f, v in ids.items():
                        probes[f].setdefault(v, []).append((key, probe_name(key, n.name)))
            self._probe_ids = probes
        return next((name for key, name in probes[field].get(value, ())
                     if self._placed.get(key)), None)

    def ex_ip(self, net_key, node_name):
        return ex_ip(self.network(net_key), self.node(node_name))

    # -- modes -----------------------------------------------------------------------
    def mode_of(self, net_key):
        return self.network(net_key).mode

    def own_controller(self, net_key):
        """The tenant's controller target when the tenant programs this network itself."""
        return self.network(net_key).controller

    def dnb_networks_on(self, node_name):
        return [k for k in self.networks_on(node_name) if self.mode_of(k) == "dnb"]

    def cnb_networks_on(self, node_name):
        return [k for k in self.networks_on(node_name) if self.mode_of(k) == "cnb"]

    def cnb_vid(self, net_key):
        """The VLAN of a CNB network on the common br-int / br-tun.

        One map for every node: 1 + the network's rank among the configured CNB networks by
        segmentation id. Networks come from the config only, so the map never changes while
        the controller runs, and it is recomputed (not stored) after a restart."""
        cnb = sorted((n.segmentation_id, k) for k, n in self.networks().items()
                     if n.mode == "cnb")
        return 1 + [k for _, k in cnb].index(net_key)

    def cnb_peers(self, node_name):
        """Nodes that share at least one active CNB network with *node_name*: the common
        br-tun has one GRE port to each (OpenStack's tunnel mesh, pruned as l2pop does)."""
        peers = set()
        for key in self.cnb_networks_on(node_name):
            peers.update(self.hosting_nodes(key))
        peers.discard(node_name)
        return sorted(peers)


def probe_name(net_key, node_name):
    return naming.probe_name(net_key, node_name)


def probe_ip(net, index):
    """Probes take the first host addresses of the VM CIDR, one per network node."""
    return _nth_host(net.cidr, index)


def reserved_probe_ips(net, n_network_nodes):
    return {probe_ip(net, i) for i in range(n_network_nodes)}


def ex_ip(net, node):
    """The address of ex-xy on *node*: transport_cidr's network + the node's host number.

    E.g. transport_ip 198.19.0.11 and transport_cidr 198.19.100.0/24 give 198.19.100.11."""
    return _ex_address(net.transport_cidr, node.transport_ip)


# The addresses depend on the config's strings only, and are asked for thousands of times
# (every placement and every node's desired state: parsing them each time was 40% of
# relearning 1,000 VMs after a restart).
@functools.lru_cache(maxsize=4096)
def _nth_host(cidr, index):
    hosts = ipaddress.ip_network(cidr).hosts()
    for _ in range(index):
        next(hosts)
    return str(next(hosts))


@functools.lru_cache(maxsize=65536)
def _ex_address(transport_cidr, transport_ip):
    """The node's host number in every transport CIDR is the low 16 bits of its
    transport_ip."""
    tnet = ipaddress.ip_network(transport_cidr)
    offset = (int(ipaddress.ip_address(transport_ip)) & 0xFFFF) % tnet.num_addresses
    return str(tnet.network_address + offset)


@dataclass
class PlacementResult:
    vm: Attachment
    timings: dict = field(default_factory=dict)
