"""The paper's equations (1)-(4) as functions of the topology model.

 (1) |bridges_c| = 2 (|tns_c| + 1)                      bridges on compute node c
 (2) |bridges|   = sum_c 2 (|tns_c| + 1) + |ons| (2|tns| + 3)
 (3) |tnts_n|   <= C(|cns| + |ons|, 2)                  tunnels of network n
 (4) |tnts|     <= |tns| C(|cns| + |ons|, 2)
tns: tenant networks with a running VM; tns_c: those on compute node c; cns: compute
nodes; ons: network nodes. A tunnel is one node pair (a GRE port at each end).

Only DNB networks have bridges and tunnels of their own, so with CNB networks tns counts
the DNB ones; CNB networks share the common bridges and one tunnel per node pair that has
at least one CNB network in common (cnb_tunnels)."""

from math import comb


def _dnb(topo, keys):
    return [k for k in keys if topo.mode_of(k) == "dnb"]


def bridges_on_compute(topo, node_name):
    """Equation (1)."""
    return 2 * (len(topo.dnb_networks_on(node_name)) + 1)


def total_bridges(topo):
    """Equation (2)."""
    tns = len(_dnb(topo, topo.active_networks()))
    return (sum(bridges_on_compute(topo, c.name) for c in topo.compute_nodes())
            + len(topo.network_nodes()) * (2 * tns + 3))


def tunnels_of_network(topo, net_key):
    """The exact |tnts_n| of a DNB network: a full mesh among the nodes hosting it."""
    return comb(len(topo.hosting_nodes(net_key)), 2)


def tunnel_bound_per_network(topo):
    """Equation (3)'s right-hand side."""
    return comb(len(topo.compute_nodes()) + len(topo.network_nodes()), 2)


def cnb_tunnels(topo):
    """Common tunnels: node pairs sharing at least one active CNB network."""
    pairs = {tuple(sorted((n.name, p))) for n in topo.nodes() for p in topo.cnb_peers(n.name)}
    return len(pairs)


def total_tunnels(topo):
    return (sum(tunnels_of_network(topo, k) for k in _dnb(topo, topo.active_networks()))
            + cnb_tunnels(topo))


def total_tunnel_bound(topo):
    """Equation (4)'s right-hand side (plus, for CNB, one full mesh of all nodes)."""
    bound = len(_dnb(topo, topo.active_networks())) * tunnel_bound_per_network(topo)
    if any(topo.mode_of(k) == "cnb" for k in topo.active_networks()):
        bound += tunnel_bound_per_network(topo)
    return bound
