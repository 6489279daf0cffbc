"""The paper's equations (1)-(4) as functions of the topology model.

 (1) |bridges_c| = 2 (|tns_c| + 1)                      bridges on compute node c
 (2) |bridges|   = sum_c 2 (|tns_c| + 1) + |ons| (2|tns| + 3)
 (3) |tnts_n|   <= C(|cns| + |ons|, 2)                  tunnels of network n
 (4) |tnts|     <= |tns| C(|cns| + |ons|, 2)
tns: tenant networks with a running VM; tns_c: those on compute node c; cns: compute
nodes; ons: network nodes. A tunnel is one node pair of a network (two GRE ports)."""

from math import comb


def bridges_on_compute(topo, node_name):
    """Equation (1)."""
    return 2 * (len(topo.networks_on(node_name)) + 1)


def total_bridges(topo):
    """Equation (2)."""
    tns = len(topo.active_networks())
    return (sum(bridges_on_compute(topo, c.name) for c in topo.compute_nodes())
            + len(topo.network_nodes()) * (2 * tns + 3))


def tunnels_of_network(topo, net_key):
    """The exact |tnts_n|: a full mesh among the nodes hosting the network."""
    return comb(len(topo.hosting_nodes(net_key)), 2)


def tunnel_bound_per_network(topo):
    """Equation (3)'s right-hand side."""
    return comb(len(topo.compute_nodes()) + len(topo.network_nodes()), 2)


def total_tunnels(topo):
    return sum(tunnels_of_network(topo, k) for k in topo.active_networks())


def total_tunnel_bound(topo):
    """Equation (4)'s right-hand side."""
    return len(topo.active_networks()) * tunnel_bound_per_network(topo)
