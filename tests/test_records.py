"""The records in OVSDB external_ids (model.records) and relearning API placements from them
(controller.recovery): pure, no switch. The real restart is tests/test_nfv_restart.py."""

import json
import logging

import pytest

from tenantnet.controller import recovery
from tenantnet.model import config, naming, records
from tenantnet.model.desired import node_state

from test_chains import BASE, CHAINS, FUNCTIONS

API_FUNCTIONS = [
    {"name": "fw2", "network": "acme/web", "node": "compute3", "kind": "firewall",
     "rules": 5, "stateful": False},
    {"name": "dbf2", "network": "initech/db", "node": "compute2", "kind": "shaper",
     "rate": "10mbit"},
]
API_CHAINS = [
    {"name": "c2", "network": "acme/web", "from": "web3", "to": "any", "through": ["fw2", "fw1"],
     "on_failure": "closed"},
    {"name": "d1", "network": "initech/db", "from": "db1", "to": "db2", "through": ["dbf2"]},
]


def base():
    return config.load_text(BASE + FUNCTIONS + CHAINS, "t.yaml")


def with_api_placements():
    """The config's model plus a VM, two functions and two chains placed through the API."""
    topo = base()
    topo.add_vm(config.vm_from_spec(topo, {"name": "web7", "network": "acme/web",
                                           "node": "compute3"}, "API request", "",
                                    vm_source="api"))
    for spec in API_FUNCTIONS:
        topo.add_function(config.function_from_spec(topo, spec, "API request", "",
                                                    fn_source="api"))
    for spec in API_CHAINS:
        topo.add_chain(config.chain_from_spec(topo, spec, "API request", "", chain_source="api"))
    return topo


def read(topo):
    """What recovery.read_node would find on every node whose switches match *topo*."""
    found = {}
    for node in topo.nodes():
        state = node_state(topo, node.name)
        ports = {p.name: p.external_ids for b in state.bridges.values()
                 for p in b.ports.values()}
        bridges = {b.name: b.external_ids for b in state.bridges.values()}
        found[node.name] = {"VM": records.recovered_vms(ports, node.name),
                            "function": records.recovered_functions(ports, node.name),
                            "chain": records.recovered_chains(bridges, node.name)}
    return found


def test_a_restart_relearns_vms_functions_and_chains_as_they_were():
    before = with_api_placements()
    after = base()
    nets = recovery.relearn(after, read(before))
    assert nets == {"acme/web", "initech/db"}
    assert after.vms() == before.vms()
    assert after.functions() == before.functions()
    assert after.chains() == before.chains()
    # so the desired state, records included, is the same: reconcile changes nothing
    for node in before.nodes():
        assert node_state(after, node.name) == node_state(before, node.name)
    # relearning again (a node that comes back) adds nothing
    assert recovery.relearn(after, read(before)) == set()


def test_the_records_are_where_model_records_says():
    topo = with_api_placements()
    c3 = node_state(topo, "compute3")
    fw2 = c3.bridges[naming.brint_name("acme/web")].ports[naming.function_port_name("fw2")]
    ids = fw2.external_ids
    assert ids["tenantnet-kind"] == "function" and ids["tenantnet-function"] == "fw2"
    assert ids["tenantnet-source"] == "api" and ids["tenantnet-nf"] == "firewall"
    assert json.loads(ids["tenantnet-options"]) == {"rules": 5, "stateful": False}
    # chains: on the integration bridge of their network on every hosting node (DNB) ...
    for node in topo.hosting_nodes("acme/web"):
        br = node_state(topo, node).bridges[naming.brint_name("acme/web")]
        chains = json.loads(br.external_ids["tenantnet-chains"])
        assert [(c["name"], c["source"]) for c in chains] == [("c1", "config"), ("c2", "api")]
    # ... and on the common br-int in CNB, which always says (an empty list too)
    assert [c["name"] for c in json.loads(node_state(topo, "compute2").bridges["br-int"]
                                          .external_ids["tenantnet-chains"])] == ["d1"]
    assert node_state(topo, "compute3").bridges["br-int"].external_ids == \
        {"tenantnet-chains": "[]"}
    # a config VM's record says so, and is never relearned
    assert node_state(topo, "compute1").bridges[naming.brint_name("acme/web")].ports[
        naming.vm_port_name("web1")].external_ids["tenantnet-source"] == "config"


def test_a_chain_that_outlived_its_function_and_vm_comes_back_as_it_was():
    before = with_api_placements()
    before.remove_function("fw2")         # a chain outlives its functions (fail-closed: drop)
    after = base()
    recovery.relearn(after, read(before))
    assert after.chain("c2") == before.chain("c2")
    assert after.chain("c2").through == ("fw2", "fw1") and after.function("fw2") is None


def test_a_node_down_at_start_up_takes_no_chain_away():
    before = with_api_placements()
    found = read(before)
    del found["compute3"]                 # fw2 and web7 are there
    after = base()
    recovery.relearn(after, found)
    assert after.chain("c2") == before.chain("c2") and after.function("fw2") is None
    # when compute3 comes back, its placements are relearned
    recovery.relearn(after, {"compute3": read(before)["compute3"]})
    assert after.function("fw2") == before.function("fw2") and after.vm("web7") is not None


def test_a_chain_deleted_while_its_record_was_away_is_not_brought_back(caplog):
    before = with_api_placements()
    records_then = read(before)
    after = base()
    found = dict(records_then)
    del found["compute3"]                    # down at start-up: web7 and fw2 unknown
    recovery.relearn(after, found)
    # c2 is deleted meanwhile (compute3 was not known to host acme/web: allowed)
    after.remove_chain("c2")
    with caplog.at_level(logging.INFO, logger="tenantnet.controller.recovery"):
        nets = recovery.relearn(after, {"compute3": records_then["compute3"]},
                                current=["compute1", "compute2", "net1"])
    assert after.chain("c2") is None and after.function("fw2") is not None
    assert nets == {"acme/web"}
    assert "the chain c2 is not relearned: node compute1, up and hosting acme/web, has no " \
           "record of it" in caplog.text
    # with no other node up that hosts the network, its record is the only one: relearned
    again = base()
    recovery.relearn(again, {"compute3": records_then["compute3"]}, current=[])
    assert again.chain("c2") == before.chain("c2")


def test_conflicts_with_the_config_are_reported_and_the_config_wins(caplog):
    before = with_api_placements()
    # the config now declares fw2 itself, and a VM with web7's address
    changed = BASE + FUNCTIONS + ("  - {name: fw2, network: acme/web, node: compute1, "
                                  "kind: forward, ip: 10.0.0.200}\n") + CHAINS
    after = config.load_text(changed, "t.yaml")
    web7_ip = before.vm("web7").ip
    after.add_vm(config.vm_from_spec(after, {"name": "web8", "network": "acme/web",
                                             "node": "compute2", "ip": web7_ip}, "t.yaml", ""))
    with caplog.at_level(logging.INFO, logger="tenantnet.controller.recovery"):
        recovery.relearn(after, read(before))
    text = "\n".join(r.getMessage() for r in caplog.records)
    assert after.function("fw2").source == "config" and after.function("fw2").node == "compute1"
    assert "not relearning the function fw2 placed through the API" in text
    assert "the config now declares a function of that name" in text
    assert after.vm("web7") is None
    assert "not relearning the VM web7 placed through the API" in text
    assert f"ip: {web7_ip} is already used by web8" in text and "its port is removed" in text
    # the chain naming fw2 names the config's fw2 now: same network, so it is relearned
    assert after.chain("c2") is not None
    assert "Traceback" not in text


def test_unreadable_or_foreign_records_are_reported_not_fatal(caplog):
    topo = base()
    ports = {"nf-x": {"tenantnet-owner": "tenantnet", "tenantnet-kind": "function",
                      "tenantnet-function": "x", "tenantnet-network": "acme/web",
                      "tenantnet-options": "{not json", "tenantnet-source": "api"},
             "someone": {"tenantnet-kind": "vm", "tenantnet-vm": "y"}}     # not ours
    bridges = {"brint-x": {"tenantnet-chains": "[1, 2]"}, "br-int": {"tenantnet-chains": "{"}}
    found = {"compute1": {"VM": records.recovered_vms(ports, "compute1"),
                          "function": records.recovered_functions(ports, "compute1"),
                          "chain": records.recovered_chains(bridges, "compute1")}}
    assert found["compute1"]["VM"] == {}
    with caplog.at_level(logging.WARNING, logger="tenantnet.controller.recovery"):
        assert recovery.relearn(topo, found) == set()
    text = "\n".join(r.getMessage() for r in caplog.records)
    assert "port nf-x: a function record that cannot be read (tenantnet-options" in text
    assert "bridge br-int: a chain record that cannot be read" in text
    assert "bridge brint-x: a chain record that cannot be read" in text


@pytest.mark.parametrize("spec,words", [
    ({"name": "c9", "network": "acme/web", "from": "app1", "to": "any", "through": ["fw1"]},
     "'app1' is not a VM of acme/web"),
    ({"name": "c9", "network": "acme/web", "from": "web1", "to": "any", "through": ["fw9"]},
     "'fw9' is not a network function of acme/web"),
])
def test_a_recovered_chain_still_names_only_its_own_networks_members(spec, words):
    with pytest.raises(config.ConfigError, match=words):
        config.chain_from_spec(base(), spec, "node x", "", chain_source="api", recovered=True)
