"""Every flow on every tenant bridge, computed from the topology model (pure logic).

Pipeline of brtun-xy (a tunnel bridge: default drop, never NORMAL):
  table 0 CLASSIFY
     prio 100  in_port=<patch>                     -> goto EGRESS
     prio 100  in_port=<gre>, tunnel_id=<seg>      -> push VID, output <patch>   [local ingress]
     prio 0    drop
  table 1 EGRESS (frames from brint-xy, tagged with the network's VID)
     prio 200  vlan_vid=VID, eth_dst=<MAC on node N> -> pop VID, set tunnel_id, output <gre to N>
                                                     [local egress; on the other nodes, the
                                                      same rule is the new VM's remote egress]
     prio 100  vlan_vid=VID                        -> pop VID, set tunnel_id, output every gre
                                                     [local flood: broadcast/unknown unicast]
     prio 0    drop
Split horizon: a frame that came from a tunnel is only ever output to the patch port.

The common br-tun has the same tables for CNB networks (keyed by their common VLAN and
segmentation id, one GRE port per peer node), under priority-300 underlay rules that carry
the transport traffic of the node's endpoints (LOCAL and every ex- port) to the uplink.

brint-xy (and in CNB the common br-int) is the tenant's virtual ToR switch: VLAN-tagged access ports for VMs (and the
probe), a trunk patch port to brtun-xy, and one NORMAL flow that does L2 learning."""

from tenantnet.model import naming
from tenantnet.model.chains import bridge_chain_flows
from tenantnet.model.desired import node_state
from tenantnet.model.flowspec import BridgeFlows, Flow

T_CLASSIFY, T_EGRESS = 0, 1
PRIO_UNDERLAY, PRIO_UNICAST, PRIO_CLASSIFY, PRIO_FLOOD, PRIO_DEFAULT = 300, 200, 100, 100, 0

RULE_INGRESS = "local-ingress"
RULE_EGRESS = "egress"          # local egress for this node's VMs' peers / remote egress
RULE_FLOOD = "local-flood"
RULE_FROM_INT = "classify-from-int"
RULE_DROP = "default-drop"
RULE_NORMAL = "int-normal"
RULE_UNDERLAY = "underlay"


def brint_flows(topo, net_key):
    return [Flow.make(0, PRIO_DEFAULT, actions=[("output", "NORMAL")], rule=RULE_NORMAL)]


def _tunnel_rules(topo, net_key, node_name, patch, vid, gre_name):
    """Table I for one network on one tunnel bridge: ingress from each peer's tunnel,
    egress per remote MAC, one flood rule. *gre_name(peer)* names the tunnel to a peer."""
    seg = topo.network(net_key).segmentation_id
    peers = [p for p in topo.hosting_nodes(net_key) if p != node_name]
    flows = []
    for p in peers:
        flows.append(Flow.make(
            T_CLASSIFY, PRIO_CLASSIFY, {"in_port": gre_name(p), "tunnel_id": seg},
            [("push_vlan",), ("set_field", "vlan_vid", vid), ("output", patch)],
            rule=RULE_INGRESS))
    for att in topo.attachments(net_key):
        if att.node == node_name:
            continue
        flows.append(Flow.make(
            T_EGRESS, PRIO_UNICAST, {"vlan_vid": vid, "eth_dst": att.mac},
            [("pop_vlan",), ("set_field", "tunnel_id", seg), ("output", gre_name(att.node))],
            rule=RULE_EGRESS))
    if peers:
        # The flood list is rebuilt whole each time: one rule, every tunnel of the network.
        flows.append(Flow.make(
            T_EGRESS, PRIO_FLOOD, {"vlan_vid": vid},
            [("pop_vlan",), ("set_field", "tunnel_id", seg)]
            + [("output", gre_name(p)) for p in peers],
            rule=RULE_FLOOD))
    return flows


def _pipeline_frame(patch):
    """What every tunnel bridge has: frames from the integration side go to EGRESS,
    everything unmatched is dropped in both tables."""
    return [
        Flow.make(T_CLASSIFY, PRIO_CLASSIFY, {"in_port": patch}, goto=T_EGRESS, rule=RULE_FROM_INT),
        Flow.make(T_CLASSIFY, PRIO_DEFAULT, rule=RULE_DROP),
        Flow.make(T_EGRESS, PRIO_DEFAULT, rule=RULE_DROP),
    ]


def brtun_flows(topo, net_key, node_name):
    """brtun-xy: the dedicated tunnel bridge of one DNB network."""
    patch = naming.patch_tun_name(net_key)
    vid = topo.network(net_key).local_vid
    return _pipeline_frame(patch) + _tunnel_rules(
        topo, net_key, node_name, patch, vid, lambda p: naming.gre_port_name(net_key, p))


def underlay_flows(topo, node_name):
    """The transport side of the common br-tun, in both modes: frames from the uplink go to
    the local endpoint whose address they are for (ARP and IPv4 by target address: the
    endpoints share one L2 segment, so matching on addresses keeps each GRE packet to the
    one port that terminates it), and frames from a local endpoint go to the uplink."""
    node = topo.node(node_name)
    uplink = node.transport_interface
    endpoints = [("LOCAL", node.transport_ip)] + [
        (naming.ex_port_name(k), topo.ex_ip(k, node_name)) for k in topo.dnb_networks_on(node_name)]
    flows = []
    for port, ip in endpoints:
        flows.append(Flow.make(T_CLASSIFY, PRIO_UNDERLAY,
                               {"in_port": uplink, "eth_type": 0x0806, "arp_tpa": ip},
                               [("output", port)], rule=RULE_UNDERLAY))
        flows.append(Flow.make(T_CLASSIFY, PRIO_UNDERLAY,
                               {"in_port": uplink, "eth_type": 0x0800, "ipv4_dst": ip},
                               [("output", port)], rule=RULE_UNDERLAY))
        flows.append(Flow.make(T_CLASSIFY, PRIO_UNDERLAY, {"in_port": port},
                               [("output", uplink)], rule=RULE_UNDERLAY))
    return flows


def common_tun_flows(topo, node_name):
    """The common br-tun: underlay always; CNB's Table I rules for every CNB network."""
    flows = underlay_flows(topo, node_name)
    flows += [Flow.make(T_CLASSIFY, PRIO_DEFAULT, rule=RULE_DROP),
              Flow.make(T_EGRESS, PRIO_DEFAULT, rule=RULE_DROP)]
    cnb = topo.cnb_networks_on(node_name)
    if cnb:
        flows.append(Flow.make(T_CLASSIFY, PRIO_CLASSIFY, {"in_port": naming.CNB_PATCH_TUN},
                               goto=T_EGRESS, rule=RULE_FROM_INT))
    for key in cnb:
        flows += _tunnel_rules(topo, key, node_name, naming.CNB_PATCH_TUN, topo.cnb_vid(key),
                               naming.cnb_gre_port_name)
    return flows


def node_flows(topo, node_name, tenant=None, state=None, networks=None):
    """(bridge name) -> BridgeFlows for every bridge on the node that the caller programs.

    tenant=None: the provider's bridges (common ones, and tenant bridges of networks without
    a controller of their own). tenant=NAME: that tenant's bridges with its own controller.
    *state*: the node's NodeState when the caller has it (else computed). *networks*: only
    the tenant bridges of these networks (the common bridges always)."""
    out = {}
    for name, br in (state or node_state(topo, node_name)).bridges.items():
        if networks is not None and br.network is not None and br.network not in networks:
            continue
        own = br.network is not None and topo.own_controller(br.network)
        if tenant is None and own:
            continue
        if tenant is not None and not (own and topo.network(br.network).tenant == tenant):
            continue
        if br.kind in ("brint", "common-int") and br.dpid is not None:
            flows = brint_flows(topo, br.network)
            if tenant is None:
                # Service chains (model.chains). On a tenant's own bridges its chain app
                # (ryu_apps.tenant_chain) installs them, with a cookie prefix of its own.
                flows = flows + bridge_chain_flows(topo, node_name, name)
        elif br.kind == "brtun":
            flows = brtun_flows(topo, br.network, node_name)
        elif br.kind == "common-tun" and br.dpid is not None:
            flows = common_tun_flows(topo, node_name)
        else:
            continue
        out[name] = BridgeFlows(node=node_name, bridge=name, dpid=br.dpid, flows=flows,
                                network=br.network)
    return out


def all_flows(topo):
    """dpid -> BridgeFlows for the whole model."""
    return {bf.dpid: bf for n in topo.nodes() for bf in node_flows(topo, n.name).values()}
