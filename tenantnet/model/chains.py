"""Service chains as flows on a tenant's integration bridge (pure logic, like Table I).

A network function is an endpoint with ONE port on the network's integration bridge
(brint-xy, or the common br-int in CNB), with a MAC and an IP of the network, and IP
forwarding on: the frame it receives for its own MAC leaves it again, routed, through the
same port, with the function's MAC as source and the next destination's as target.

Steering is therefore a rewrite of eth_dst, plus an explicit output:

  entry, on the node of `from` (in_port = from's port):
      ipv4_src = from.ip [, ipv4_dst = to.ip]  -> eth_dst := first function's MAC
  hop i, on the node of function i (in_port = its port), the same IP match
                                                -> eth_dst := function i+1's MAC
  the last function's output is left to plain forwarding (NORMAL) towards `to`.

"Explicit output": to a function on the same node, its port; to one on another node, the
patch port with the network's VID pushed (brint's trunk), so brtun-xy's Table I egress rule
for that MAC (remote egress) carries it over the network's GRE tunnel. Nothing else changes
on the tunnel bridges: a hop on another node is just a unicast frame to a MAC there.

Everything else is untouched: the steering flows match the chain's IPv4 traffic entering
from `from`'s or a function's port only, in their own priority band (above the NORMAL flow,
below the tenant_acl drop rules at 500: a dropped pair stays dropped). ARP is never steered.

Failure (per chain, `on_failure`):
  open    a function that is gone (or being removed: `draining`) is skipped; with none
          left, the chain's traffic is plainly forwarded;
  closed  while any of its functions is missing, the chain's traffic is dropped at the entry.
A chain whose `from` or `to` VM is gone has no flows."""

from tenantnet.model import naming
from tenantnet.model.flowspec import Flow

PRIO_CHAIN_ANY = 300         # a `to: any` chain
PRIO_CHAIN = 310             # a chain to one VM: wins over `to: any` of the same source
ETH_IPV4 = 0x0800
RULE_CHAIN_ENTRY = "chain-entry"
RULE_CHAIN_HOP = "chain-hop"
RULE_CHAIN_DROP = "chain-closed"


def live_hops(topo, chain):
    """(the chain's functions that can take traffic, in order; names of the missing ones)."""
    hops, missing = [], []
    for name in chain.through:
        fn = topo.function(name)
        if fn is None or fn.draining or fn.network != chain.network:
            missing.append(name)
        else:
            hops.append(fn)
    return hops, missing


def _to(node, fn, patch, vid):
    """Actions that send a frame to function *fn* from a port on *node*."""
    acts = [("set_field", "eth_dst", fn.mac)]
    if fn.node == node:
        return acts + [("output", fn.port)]
    return acts + [("push_vlan",), ("set_field", "vlan_vid", vid), ("output", patch)]


def chain_flows(topo, net_key, node, patch, vid):
    """The steering flows of every chain of *net_key* on *node*'s integration bridge, whose
    trunk to the tunnel side is *patch* and which tags the network with *vid*."""
    flows = []
    for chain in topo.chains_of(net_key):
        src = topo.vm(chain.src)
        dst = None if chain.dst == "any" else topo.vm(chain.dst)
        if src is None or (chain.dst != "any" and dst is None):
            continue
        match = {"eth_type": ETH_IPV4, "ipv4_src": src.ip}
        prio = PRIO_CHAIN_ANY
        if dst is not None:
            match["ipv4_dst"] = dst.ip
            prio = PRIO_CHAIN
        hops, missing = live_hops(topo, chain)
        tag = chain.name
        if missing and chain.on_failure == "closed":
            if src.node == node:
                flows.append(Flow.make(0, prio, dict(match, in_port=src.port), [],
                                       rule=f"{RULE_CHAIN_DROP} {tag}"))
            continue
        if not hops:
            continue
        if src.node == node:
            flows.append(Flow.make(0, prio, dict(match, in_port=src.port),
                                   _to(node, hops[0], patch, vid),
                                   rule=f"{RULE_CHAIN_ENTRY} {tag}"))
        for fn, nxt in zip(hops, hops[1:]):
            if fn.node == node:
                flows.append(Flow.make(0, prio, dict(match, in_port=fn.port),
                                       _to(node, nxt, patch, vid),
                                       rule=f"{RULE_CHAIN_HOP} {tag}: {fn.name}>{nxt.name}"))
    return flows


def bridge_chain_flows(topo, node, bridge):
    """The steering flows of integration bridge *bridge* on *node* (brint-xy of a DNB
    network, or the common br-int for every CNB network on the node); [] for any other."""
    if bridge == "br-int":
        out = []
        for key in topo.cnb_networks_on(node):
            out += chain_flows(topo, key, node, naming.CNB_PATCH_INT, topo.cnb_vid(key))
        return out
    for key in topo.dnb_networks_on(node):
        if bridge == naming.brint_name(key):
            return chain_flows(topo, key, node, naming.patch_int_name(key),
                               topo.network(key).local_vid)
    return []
