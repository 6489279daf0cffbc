"""Topology's indexes (vertices by kind, each network's members per node) against the graph
itself, after random adds, replacements and removals; and the desired state a placement
computes by reusing the current one against the state computed in full. Pure."""

import dataclasses
import random

from tenantnet.model import config, naming
from tenantnet.model.desired import node_state
from tenantnet.model.topology import Attachment, Function

from test_chains import BASE, CHAINS, FUNCTIONS


def from_graph(topo):
    """What the indexed queries must answer, recomputed from the graph's vertices."""
    members = [d["obj"] for v, d in topo.g.nodes(data=True) if v[0] in ("vm", "fn")]
    nets = [d["obj"].key for v, d in topo.g.nodes(data=True) if v[0] == "net"]
    net_nodes = {n.name for n in topo.nodes() if n.role == "network"}
    hosting = {k: sorted({m.node for m in members if m.network == k} | net_nodes)
               for k in nets if any(m.network == k for m in members)}
    return {"active": sorted(hosting), "hosting": hosting,
            "vms": sorted(d["obj"].name for v, d in topo.g.nodes(data=True) if v[0] == "vm"),
            "tenants": sorted(v[1] for v in topo.g.nodes if v[0] == "tenant")}


def from_index(topo):
    active = topo.active_networks()
    return {"active": active, "hosting": {k: topo.hosting_nodes(k) for k in active},
            "vms": sorted(topo.vms()), "tenants": topo.tenants()}


def vm(name, net, node):
    return Attachment(name=name, kind="vm", network=net, node=node,
                      mac=naming.mac_for("vm", name), ip="10.0.0.9", port=f"tap-{name}",
                      source="api")


def ids_from_graph(topo):
    """{(field, value): name} of every attachment (listed, as placements did before the
    index), and None for every probe MAC and port of every configured network that no
    attachment has (an inactive network's probe) and for values nobody has."""
    want = {}
    for key in topo.networks():
        for n in topo.network_nodes():
            want[("mac", naming.mac_for("probe", key, n.name))] = None
            want[("port", naming.probe_port_name(key))] = None
    want[("mac", "02:ff:ff:ff:ff:ff")] = want[("port", "tap-nobody")] = None
    for key in topo.networks():
        for a in topo.attachments(key):
            want[("mac", a.mac)] = want[("port", a.port)] = a.name
    return want


def ids_from_index(topo, keys):
    return {(field, value): topo.attachment_named(field, value) for field, value in keys}


def test_indexes_agree_with_the_graph_after_random_changes():
    rng = random.Random(7)
    topo = config.load_text(BASE + FUNCTIONS + CHAINS, "t.yaml")
    nets = sorted(topo.networks())
    nodes = [n.name for n in topo.compute_nodes()]
    assert from_index(topo) == from_graph(topo)
    placed = []
    for step in range(300):
        copy = rng.random() < 0.1
        if copy:
            topo = topo.copy()
        if placed and rng.random() < 0.4:
            topo.remove_vm(placed.pop(rng.randrange(len(placed))))
        else:
            name = f"r{step}"
            topo.add_vm(vm(name, rng.choice(nets), rng.choice(nodes)))
            placed.append(name)
        fn = rng.choice(sorted(topo.functions().values(), key=lambda f: f.name) or [None])
        if isinstance(fn, Function) and rng.random() < 0.2:
            topo.add_function(dataclasses.replace(fn, draining=not fn.draining))   # replaced
        assert from_index(topo) == from_graph(topo), step
        ids = ids_from_graph(topo)
        assert ids_from_index(topo, ids) == ids, step
    for name in placed:
        topo.remove_vm(name)
    for fn in list(topo.functions()):
        for chain in [c for c in topo.chains().values() if fn in c.through]:
            topo.remove_chain(chain.name)
        topo.remove_function(fn)
    assert from_index(topo) == from_graph(topo)
    ids = ids_from_graph(topo)
    assert ids_from_index(topo, ids) == ids


def test_a_placement_state_reusing_the_current_one_equals_the_full_one():
    topo = config.load_text(BASE + FUNCTIONS + CHAINS, "t.yaml")
    nets = sorted(topo.networks())
    for node in [n.name for n in topo.nodes()]:
        before = node_state(topo, node, "netdev")
        for net in nets:
            new = topo.copy()
            new.add_vm(vm("extra", net, node if topo.node(node).role == "compute"
                          else topo.compute_nodes()[0].name))
            reused = node_state(new, node, "netdev", reuse=before, changed={net})
            assert reused == node_state(new, node, "netdev"), (node, net)
            # the networks not changed are the very objects of the current state
            for name, br in reused.bridges.items():
                if br.network not in (None, net) and name in before.bridges:
                    assert br is before.bridges[name]
