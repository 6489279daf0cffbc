"""Relearning API placements from the nodes (NodeWatch.recover, at start-up and when a node
comes back).

The config file holds what it declares; what was placed through the API is held by the
nodes themselves, as records in their OVSDB external_ids (model.records). A restarted
controller reads them and adds, in this order, the VMs, then the network functions, then
the chains (a chain names VMs and functions), each validated by model.config like the
request that made it. So the reconcile that follows finds the ports and flows it would
make, and changes nothing.

Only records with source "api" are relearned: the config brings back its own. A record
that no longer fits (the config now declares that name, or an address it uses, ...) is
reported as a warning naming the record, where it was found and why; the config wins, and
the reconcile then removes what only that record wanted (its port, its steering flows)."""

import logging

from tenantnet.errors import ConfigError
from tenantnet.model import config as config_mod
from tenantnet.model import records

LOG = logging.getLogger("tenantnet.controller.recovery")

CONSEQUENCE = {"VM": "its port is removed", "function": "its port is removed",
               "chain": "its steering flows are removed"}


def read_node(conn):
    """The records on the node of *conn* (a connected southbound.ovsdb.NodeOvsdb):
    {"VM": {name: Record}, "function": {...}, "chain": {...}}."""
    snap = conn.snapshot()
    ports = conn.owned(snap)["ports"]
    bridges = {name: br["external_ids"] for name, br in snap["bridges"].items()}
    return {"VM": records.recovered_vms(ports, conn.node),
            "function": records.recovered_functions(ports, conn.node),
            "chain": records.recovered_chains(bridges, conn.node)}


def _existing(topo, what, name):
    return {"VM": topo.vm, "function": topo.function, "chain": topo.chain}[what](name)


def _validate(topo, rec):
    """The model object of *rec*, validated against *topo* (ConfigError when it no longer
    fits)."""
    source = f"node {rec.node} {rec.where}"
    if rec.what == "VM":
        return config_mod.vm_from_spec(topo, rec.spec, source, "", vm_source="api")
    if rec.what == "function":
        return config_mod.function_from_spec(topo, rec.spec, source, "", fn_source="api")
    return config_mod.chain_from_spec(topo, rec.spec, source, "", chain_source="api",
                                      recovered=True)


def _add(topo, what, obj):
    {"VM": topo.add_vm, "function": topo.add_function, "chain": topo.add_chain}[what](obj)


def relearn(topo, found, current=()):
    """Add to *topo* the API placements recorded on the nodes. *found*: node name ->
    read_node()'s answer for it. *current*: nodes that are up (reconciled to *topo*): their
    chain records are the current ones (see _stale). Returns the networks of what was
    added."""
    nets = set()
    for what in ("VM", "function", "chain"):
        seen = {}                          # name -> the first record of it (node order)
        for node in sorted(found):
            for name, rec in sorted(found[node].get(what, {}).items()):
                first = seen.setdefault(name, rec)
                if first is not rec:
                    if rec.problem is None and first.problem is None and \
                            (rec.spec, rec.source) != (first.spec, first.source):
                        LOG.warning("the %s %s is recorded differently on node %s (%s) and "
                                    "node %s (%s); the record on %s is used", what, rec.name,
                                    first.node, first.where, rec.node, rec.where, first.node)
                    continue
                obj = None if _stale(topo, rec, current) else _relearn_one(topo, rec)
                if obj is not None:
                    _add(topo, what, obj)
                    nets.add(obj.network)
                    LOG.info("relearned %s %s from node %s (%s)", what, rec.name, rec.node,
                             rec.where)
    return nets


def _stale(topo, rec, current):
    """True (and said) for the record of a chain the model does not have while a node that
    is up, other than the record's, hosts its network: that node's records are the current
    ones, so the chain was deleted while the record's node was away (its deletion could not
    know that node hosted the network: its placements were not relearned yet). A chain the
    model does not have is unknown on every up node only when none of them hosted its
    network when they were reconciled."""
    if rec.what != "chain" or rec.problem is not None or not rec.api or \
            topo.chain(rec.name) is not None:
        return False
    net = rec.spec.get("network")
    if topo.network(net) is None:
        return False
    up = sorted(set(topo.hosting_nodes(net)) & set(current) - {rec.node})
    if up:
        LOG.info("node %s: %s: the chain %s is not relearned: node %s, up and hosting %s, "
                 "has no record of it (it was deleted while node %s was away); its "
                 "steering flows are removed", rec.node, rec.where, rec.name, up[0], net,
                 rec.node)
    return bool(up)


def _relearn_one(topo, rec):
    """The model object to add for record *rec*, or None (reported when it is a conflict)."""
    what, name = rec.what, rec.name
    if rec.problem is not None:
        LOG.warning("node %s: %s: a %s record that cannot be read (%s); %s", rec.node,
                    rec.where, what, rec.problem, CONSEQUENCE[what])
        return None
    have = _existing(topo, what, name)
    if not rec.api:
        if have is None:
            LOG.info("node %s: %s: the %s %s came from the config, which no longer declares "
                     "it; %s", rec.node, rec.where, what, name, CONSEQUENCE[what])
        return None
    if have is not None:
        if have.source != "api":
            LOG.warning("not relearning the %s %s placed through the API (%s on node %s): "
                        "the config now declares a %s of that name, and the config's wins",
                        what, name, rec.where, rec.node, what)
        return None                      # api: already known (a node that came back)
    try:
        return _validate(topo, rec)
    except ConfigError as exc:
        LOG.warning("not relearning the %s %s placed through the API: it conflicts with the "
                    "config or with what was relearned before it: %s; %s", what, name, exc,
                    CONSEQUENCE[what])
        return None
