"""Desired state of every node, computed from the topology model (a pure function).

For each node: the bridges (with their kind, datapath id, controller target, datapath type
and ports), each port's type, options, VLAN tag and external_ids, and the addresses of the ex-
endpoints. tenantnet.southbound.ovsdb makes a node look like this; nothing here talks to a switch.

The external_ids include the records a restarted controller relearns API placements from
(VMs and functions on their ports, chains on the integration bridges): model.records
defines them, for writing here and for reading back.

The datapath type is the node's, not the model's: node bootstrap records it (Open_vSwitch
external_ids:tenantnet-datapath) and the controller reads it when it connects, then passes
it to node_state. New tenant bridges are created with it; an existing bridge keeps its own."""

from dataclasses import dataclass, field

from tenantnet.model import naming, records

BOOTSTRAP_OWNER = "bootstrap"

# Common bridges every node has (created by node bootstrap, never removed by the
# controller). Equations (1) and (2) count them: 2 per compute node, 3 per network node.
COMMON_BRIDGES = {"compute": ("br-int", "br-tun"), "network": ("br-int", "br-tun", "br-ex")}
COMMON_KINDS = {"br-int": "common-int", "br-tun": "common-tun", "br-ex": "common-ex"}
TRANSPORT_BRIDGE = "br-tun"
# Open vSwitch datapath types a node can have: the kernel module, or userspace.
DATAPATHS = ("netdev", "system")
DATAPATH_KEY = "tenantnet-datapath"       # Open_vSwitch external_ids, set by node bootstrap
USERSPACE_DATAPATH = "netdev"


@dataclass
class PortSpec:
    name: str
    type: str = ""                 # "" (system device), "internal", "patch", "gre"
    options: dict = field(default_factory=dict)
    tag: int = None
    external_ids: dict = field(default_factory=dict)


@dataclass
class BridgeSpec:
    name: str
    kind: str                      # brint, brtun, common-int, common-tun, common-ex
    network: str = None
    dpid: int = None
    controller: str = None         # OpenFlow target, e.g. tcp:198.18.0.1:6653
    ports: dict = field(default_factory=dict)   # name -> PortSpec (ours only)
    external_ids: dict = field(default_factory=dict)
    # The node's datapath type ("system" or "netdev"; None: not known). A bridge we create
    # gets it; an existing bridge is never changed (a mismatch is only reported).
    datapath_type: str = None

    @property
    def common(self):
        return self.kind.startswith("common-")


@dataclass
class NodeState:
    node: str
    bridges: dict = field(default_factory=dict)    # name -> BridgeSpec
    addresses: dict = field(default_factory=dict)  # ex- interface -> "ip/prefixlen"
    datapath: str = None                           # the node's datapath type (see DATAPATHS)

    @property
    def userspace(self):
        """True on a userspace-datapath (netdev) node: steps such as static tunnel
        neighbours apply to those only."""
        return self.datapath == USERSPACE_DATAPATH

    def owned_bridges(self):
        return {n: b for n, b in self.bridges.items() if not b.common}

    def ports(self):
        """Every port we own on this node, name -> (bridge, PortSpec)."""
        return {p.name: (b.name, p) for b in self.bridges.values() for p in b.ports.values()}


_ids = records.ids


# A switch with nothing from its controller for this long sends an echo request, and drops
# the connection when that is not answered within as long again (Controller
# inactivity_probe; Open vSwitch's default is 5 s). The controller's own echo requests
# (controller.ofconn.echo_interval: 1 s, longer above 200 connections) keep a switch from
# being idle, so at this value the switches do not probe a healthy controller: with 1,000
# bridges, 5 s made 200 more echo exchanges a second for the controller to answer.
CONTROLLER_PROBE_MS = 30000

# The longest a switch waits between attempts to reach its controller (Controller
# max_backoff; Open vSwitch's default is 8 s, its minimum 1 s). A restarted controller
# opens its OpenFlow port only once it is ready (controller.oflisten), and the switches it
# refused meanwhile come back within this: at 8 s, a bridge's flows were checked up to
# 8 s after the controller was ready. A refused attempt costs both sides almost nothing.
CONTROLLER_BACKOFF_MS = 2000

# The Controller row's columns the controller sets on every programmed bridge (diffed).
CONTROLLER_OPTIONS = {"inactivity_probe": CONTROLLER_PROBE_MS,
                      "max_backoff": CONTROLLER_BACKOFF_MS}

# Common bridges the controller programs over OpenFlow. br-tun carries the transport
# underlay (uplink, LOCAL, ex- endpoints) in both modes and the CNB tunnels; br-int the CNB
# VM ports. br-ex is left to the node.
MANAGED_COMMON = ("br-int", "br-tun")


def _attachment_port(att, vid):
    """The port of a VM, network function or probe, with its record (model.records)."""
    return PortSpec(att.port, "", {}, vid, records.attachment_ids(att))


def node_state(topo, node_name, datapath=None, reuse=None, changed=()):
    """The NodeState of *node_name*. *datapath* is the node's datapath type as the node
    records it ("system" or "netdev"; None when not known): every bridge carries it.

    *reuse*: the node's NodeState (same datapath) in a model that differs from *topo* only
    in the networks *changed* (a placement's): the bridges of every other DNB network are
    taken from it as they are, so a placement costs its own networks, not the node's size."""
    if datapath is not None and datapath not in DATAPATHS:
        raise ValueError(f"node {node_name}: datapath {datapath!r}: expected one of "
                         f"{', '.join(DATAPATHS)}")
    node = topo.node(node_name)
    state = NodeState(node=node_name, datapath=datapath)
    target = topo.controller.openflow_target
    for name in COMMON_BRIDGES[node.role]:
        managed = name in MANAGED_COMMON
        state.bridges[name] = BridgeSpec(
            name=name, kind=COMMON_KINDS[name],
            dpid=naming.datapath_id(node_name, name) if managed else None,
            controller=target if managed else None, datapath_type=datapath,
            # br-int: the integration bridge of the CNB networks, with their chains' record
            # (always, "[]" too; see model.records). _cnb_state fills it in.
            external_ids=records.chains_ids(()) if name == "br-int" else {})
    _cnb_state(topo, node_name, state)
    for key in topo.dnb_networks_on(node_name):
        if reuse is not None and key not in changed and _reuse_network(reuse, state, key):
            continue
        net = topo.network(key)
        brint, brtun = naming.brint_name(key), naming.brtun_name(key)
        pi, pt = naming.patch_int_name(key), naming.patch_tun_name(key)
        # A network with its own controller: its bridges connect to the tenant's controller
        # only, and the provider never programs their flows.
        ctl = net.controller or target
        int_br = BridgeSpec(name=brint, kind="brint", network=key,
                            dpid=naming.datapath_id(node_name, brint), controller=ctl,
                            external_ids=dict(_ids("brint", network=key),
                                              **records.chains_ids(topo.chains_of(key))),
                            datapath_type=datapath)
        tun_br = BridgeSpec(name=brtun, kind="brtun", network=key,
                            dpid=naming.datapath_id(node_name, brtun), controller=ctl,
                            external_ids=_ids("brtun", network=key), datapath_type=datapath)
        int_br.ports[pi] = PortSpec(pi, "patch", {"peer": pt}, None, _ids("patch", network=key))
        tun_br.ports[pt] = PortSpec(pt, "patch", {"peer": pi}, None, _ids("patch", network=key))
        for att in topo.attachments(key):
            if att.node == node_name:
                int_br.ports[att.port] = _attachment_port(att, net.local_vid)
        local_ip = topo.ex_ip(key, node_name)
        for peer in topo.hosting_nodes(key):
            if peer == node_name:
                continue
            gre = naming.gre_port_name(key, peer)
            tun_br.ports[gre] = PortSpec(
                gre, "gre",
                {"remote_ip": topo.ex_ip(key, peer), "local_ip": local_ip, "key": "flow"},
                None, _ids("gre", network=key, peer=peer))
        ex = naming.ex_port_name(key)
        prefix = net.transport_cidr.split("/")[1]
        state.bridges[TRANSPORT_BRIDGE].ports[ex] = PortSpec(
            ex, "internal", {}, None, _ids("ex", network=key, address=f"{local_ip}/{prefix}"))
        state.addresses[ex] = f"{local_ip}/{prefix}"
        state.bridges[brint] = int_br
        state.bridges[brtun] = tun_br
    return state


def _reuse_network(reuse, state, key):
    """Copy DNB network *key*'s bridges, endpoint port and address from NodeState *reuse*
    into *state*; False when *reuse* does not have them."""
    brint, brtun, ex = naming.brint_name(key), naming.brtun_name(key), naming.ex_port_name(key)
    tun = reuse.bridges.get(TRANSPORT_BRIDGE)
    if brint not in reuse.bridges or brtun not in reuse.bridges or tun is None \
            or ex not in tun.ports or ex not in reuse.addresses:
        return False
    state.bridges[TRANSPORT_BRIDGE].ports[ex] = tun.ports[ex]
    state.addresses[ex] = reuse.addresses[ex]
    state.bridges[brint] = reuse.bridges[brint]
    state.bridges[brtun] = reuse.bridges[brtun]
    return True


def _cnb_state(topo, node_name, state):
    """CNB (the OpenStack model): every CNB network's VMs on the common br-int, tagged with
    the network's VLAN; br-tun with one GRE port per peer node, the key set per flow."""
    nets = topo.cnb_networks_on(node_name)
    if not nets:
        return
    br_int, br_tun = state.bridges["br-int"], state.bridges["br-tun"]
    br_int.external_ids = records.chains_ids([c for key in nets for c in topo.chains_of(key)])
    br_int.ports[naming.CNB_PATCH_INT] = PortSpec(
        naming.CNB_PATCH_INT, "patch", {"peer": naming.CNB_PATCH_TUN}, None, _ids("patch"))
    br_tun.ports[naming.CNB_PATCH_TUN] = PortSpec(
        naming.CNB_PATCH_TUN, "patch", {"peer": naming.CNB_PATCH_INT}, None, _ids("patch"))
    for key in nets:
        for att in topo.attachments(key):
            if att.node == node_name:
                br_int.ports[att.port] = _attachment_port(att, topo.cnb_vid(key))
    local_ip = topo.node(node_name).transport_ip
    for peer in topo.cnb_peers(node_name):
        gre = naming.cnb_gre_port_name(peer)
        br_tun.ports[gre] = PortSpec(
            gre, "gre", {"remote_ip": topo.node(peer).transport_ip, "local_ip": local_ip,
                         "key": "flow"}, None, _ids("gre", peer=peer))


def desired_state(topo, datapaths=None):
    """node name -> NodeState for every node of the model; *datapaths*: node name ->
    datapath type, as the nodes record it (a node left out: not known)."""
    datapaths = datapaths or {}
    return {n.name: node_state(topo, n.name, datapaths.get(n.name)) for n in topo.nodes()}
