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

brint-xy is the tenant's virtual ToR switch: VLAN-tagged access ports for VMs (and the
probe), a trunk patch port to brtun-xy, and one NORMAL flow that does L2 learning."""

from tenantnet import naming
from tenantnet.desired import node_state
from tenantnet.flowspec import BridgeFlows, Flow

T_CLASSIFY, T_EGRESS = 0, 1
PRIO_UNICAST, PRIO_CLASSIFY, PRIO_FLOOD, PRIO_DEFAULT = 200, 100, 100, 0

RULE_INGRESS = "local-ingress"
RULE_EGRESS = "egress"          # local egress for this node's VMs' peers / remote egress
RULE_FLOOD = "local-flood"
RULE_FROM_INT = "classify-from-int"
RULE_DROP = "default-drop"
RULE_NORMAL = "int-normal"


def brint_flows(topo, net_key):
    return [Flow.make(0, PRIO_DEFAULT, actions=[("output", "NORMAL")], rule=RULE_NORMAL)]


def brtun_flows(topo, net_key, node_name):
    net = topo.network(net_key)
    vid, seg = net.local_vid, net.segmentation_id
    patch = naming.patch_tun_name(net_key)
    peers = [p for p in topo.hosting_nodes(net_key) if p != node_name]
    gre = {p: naming.gre_port_name(net_key, p) for p in peers}
    flows = [
        Flow.make(T_CLASSIFY, PRIO_CLASSIFY, {"in_port": patch}, goto=T_EGRESS, rule=RULE_FROM_INT),
        Flow.make(T_CLASSIFY, PRIO_DEFAULT, rule=RULE_DROP),
        Flow.make(T_EGRESS, PRIO_DEFAULT, rule=RULE_DROP),
    ]
    for p in peers:
        flows.append(Flow.make(
            T_CLASSIFY, PRIO_CLASSIFY, {"in_port": gre[p], "tunnel_id": seg},
            [("push_vlan",), ("set_field", "vlan_vid", vid), ("output", patch)],
            rule=RULE_INGRESS))
    for att in topo.attachments(net_key):
        if att.node == node_name:
            continue
        flows.append(Flow.make(
            T_EGRESS, PRIO_UNICAST, {"vlan_vid": vid, "eth_dst": att.mac},
            [("pop_vlan",), ("set_field", "tunnel_id", seg), ("output", gre[att.node])],
            rule=RULE_EGRESS))
    if peers:
        # The flood list is rebuilt whole each time: one rule, every tunnel of the network.
        flows.append(Flow.make(
            T_EGRESS, PRIO_FLOOD, {"vlan_vid": vid},
            [("pop_vlan",), ("set_field", "tunnel_id", seg)]
            + [("output", gre[p]) for p in peers],
            rule=RULE_FLOOD))
    return flows


def node_flows(topo, node_name):
    """(bridge name) -> BridgeFlows for every OpenFlow-managed bridge on the node."""
    out = {}
    for name, br in node_state(topo, node_name).bridges.items():
        if br.kind == "brint":
            flows = brint_flows(topo, br.network)
        elif br.kind == "brtun":
            flows = brtun_flows(topo, br.network, node_name)
        else:
            continue
        out[name] = BridgeFlows(node=node_name, bridge=name, dpid=br.dpid, flows=flows,
                                network=br.network)
    return out


def all_flows(topo):
    """dpid -> BridgeFlows for the whole model."""
    return {bf.dpid: bf for n in topo.nodes() for bf in node_flows(topo, n.name).values()}
