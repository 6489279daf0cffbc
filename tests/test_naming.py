"""Names derived from tenant, network, node and VM names: deterministic, within their
limits, and distinct for the longest and strangest names a config may have."""

import re

import pytest

from conftest import (LONG_COMPUTES, LONG_NETS, LONG_TENANTS, LONG_VMS, at_limit,
                      longest_names_config, two_tenant_config)
from tenantnet.errors import ConfigError
from tenantnet.model import config, naming

# what tenantnet.lab.fabric takes as an endpoint or process name
LAB_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
PREFIX = "abcdefgh"          # the longest lab prefix


def test_fit_keeps_what_fits_and_shortens_the_rest_deterministically():
    assert naming.fit("x" * 40, 40) == "x" * 40
    long_a, long_b = "y" * 60 + "a", "y" * 60 + "b"
    short_a = naming.fit(long_a, 40)
    assert len(short_a) == 40 and short_a.startswith("y" * 32)
    assert short_a == naming.fit(long_a, 40)              # the same input, the same name
    assert short_a != naming.fit(long_b, 40)              # naive truncation would merge them
    with pytest.raises(ValueError):
        naming.fit(long_a, 8)


def test_probe_names():
    assert naming.probe_name("acme/web", "net1") == "probe.acme.web.net1"     # as before
    names = {naming.probe_name(f"{t}/{n}", node) for t in LONG_TENANTS for n in LONG_NETS
             for node in ("ctl", at_limit("net", "1"), at_limit("net", "2"))}
    assert len(names) == 2 * 2 * 3
    for name in names:
        assert len(name) <= naming.LAB_NAME_MAX and LAB_NAME.match(name)
        assert name.startswith("probe.tenant_a") and not naming.valid_name(name)   # no VM's


def test_lab_namespaces_of_nodes_named_like_the_labs_own():
    nodes = ["compute1", "ctl", "fabric", "v-web1", "p-x", "tc-acme", "n-ctl", "n-n-ctl",
             "vv-web1", "ctl2"]
    spaces = [naming.fabric_netns("tn"), naming.controller_netns("tn"),
              naming.endpoint_netns("tn", "vm", "web1"), naming.endpoint_netns("tn", "probe", "x"),
              naming.tenant_netns("tn", "acme")] + [naming.node_netns("tn", n) for n in nodes]
    assert len(set(spaces)) == len(spaces)
    # ordinary node names keep the documented layout
    assert naming.node_netns("tn", "compute1") == "tn-compute1"
    assert naming.node_netns("tn", "ctl2") == "tn-ctl2"
    assert naming.node_netns("tn", "ctl") == "tn-n-ctl"
    assert naming.endpoint_netns("tn", "vm", "web1") == "tn-v-web1"
    assert naming.tenant_netns("tn", "acme") == "tn-tc-acme"


def test_tenant_controller_namespaces_at_the_limit():
    spaces = {naming.tenant_netns(PREFIX, t) for t in LONG_TENANTS}
    assert len(spaces) == 2 and all(len(s) <= naming.NETNS_MAX for s in spaces)
    assert not spaces & {naming.node_netns(PREFIX, n) for n in LONG_COMPUTES + ["ctl"]}
    assert naming.tenant_netns(PREFIX, LONG_TENANTS[0]) == naming.tenant_netns(PREFIX,
                                                                               LONG_TENANTS[0])


def test_fabric_peers_are_interface_names_and_never_shared():
    peers = [naming.fabric_peer_name("m", "ctl", "")]
    for owner in ["ctl", "x", "tc-x"] + LONG_COMPUTES:
        peers += [naming.fabric_peer_name("m", "node", owner),
                  naming.fabric_peer_name("t", "node", owner),
                  naming.fabric_peer_name("m", "tenant", owner)]
    assert len(set(peers)) == len(peers)
    assert all(len(p) <= naming.IFNAMSIZ for p in peers)
    assert naming.fabric_peer_name("m", "node", "x") == naming.fabric_peer_name("m", "node", "x")


def test_longest_names_config_gives_valid_distinct_names():
    names = LONG_TENANTS + LONG_NETS + LONG_VMS + LONG_COMPUTES
    assert all(naming.valid_name(n) for n in names) and len(set(names)) == len(names)
    assert {len(n) for n in names} == {naming.MAX_NAME, naming.MAX_NAME - 2}

    topo = config.load_text(longest_names_config(), "longest.yaml")    # check-config takes it
    endpoints = list(topo.vms()) + [p.name for k in topo.networks() for p in topo.probes(k)]
    assert len(set(endpoints)) == len(endpoints) == 8 + 4
    assert all(len(e) <= naming.LAB_NAME_MAX and LAB_NAME.match(e) for e in endpoints)
    ports = [a.port for k in topo.networks() for a in topo.attachments(k)]
    ifaces = ports + [f(k) for k in topo.networks() for f in (
        naming.brint_name, naming.brtun_name, naming.ex_port_name, naming.patch_int_name,
        naming.patch_tun_name)]
    assert len(set(ifaces)) == len(ifaces) and all(len(i) <= naming.IFNAMSIZ for i in ifaces)
    spaces = [naming.fabric_netns(PREFIX), naming.controller_netns(PREFIX)]
    spaces += [naming.node_netns(PREFIX, n.name) for n in topo.nodes()]
    spaces += [naming.endpoint_netns(PREFIX, "vm", v) for v in topo.vms()]
    spaces += [naming.endpoint_netns(PREFIX, "probe", p) for p in endpoints[8:]]
    spaces += [naming.tenant_netns(PREFIX, t) for t in LONG_TENANTS]
    assert len(set(spaces)) == len(spaces)
    assert all(len(s) <= naming.NETNS_MAX and LAB_NAME.match(s) for s in spaces)


def test_one_character_over_the_limit_is_refused():
    text = longest_names_config().replace(LONG_VMS[0], LONG_VMS[0] + "1")
    with pytest.raises(ConfigError, match="too long"):
        config.load_text(text, "longest.yaml")


def test_colliding_shortened_names_are_refused(monkeypatch):
    monkeypatch.setattr(naming, "probe_name", lambda key, node: "probe.same")
    with pytest.raises(ConfigError) as err:
        config.load_text(two_tenant_config(), "t.yaml")
    assert err.value.key == "tenants"
    assert "map to the same probe name 'probe.same'" in err.value.problem
    monkeypatch.undo()
    monkeypatch.setattr(naming, "cnb_gre_port_name", lambda peer: "gre-same")
    with pytest.raises(ConfigError) as err:
        config.load_text(two_tenant_config(), "t.yaml")
    assert err.value.key == "nodes" and "the common tunnel to node" in err.value.problem


def test_many_names_with_a_long_common_head_stay_apart():
    """A thousand VMs named like an experiment's (`experiment-vm-0001`, ...) all get distinct
    interface names: the shortened names carry 30 bits of hash, not 16."""
    for prefix in ("experiment-vm-", "a-very-long-tenant-network-"):
        names = [f"{prefix}{i:04d}" for i in range(2000)]
        ports = {naming.vm_port_name(n) for n in names}
        assert len(ports) == len(names)
        assert all(len(p) <= naming.IFNAMSIZ for p in ports)
