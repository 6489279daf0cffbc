"""Model, names, desired state, flows and equations (pure logic: no switch involved)."""

from conftest import two_tenant_config
from tenantnet.model import config, equations, naming
from tenantnet.model.desired import desired_state
from tenantnet.model.flows import (RULE_EGRESS, RULE_FLOOD, RULE_INGRESS, T_CLASSIFY, T_EGRESS,
                             all_flows, node_flows)

CFG = two_tenant_config(3, ("web1@compute1", "web2@compute2", "app1@compute1"))


def topo():
    return config.load_text(CFG, "t.yaml")


def test_short_names_fit_and_are_deterministic():
    long = "a-very-long-tenant.with-a-long-network"
    n1 = naming.short_name("brint", long)
    assert len(n1) <= 15 and n1 == naming.short_name("brint", long)
    assert n1 != naming.short_name("brint", long + "x")
    assert naming.short_name("brint", "acme.web") == "brint-acme.web"
    for fn in (naming.brint_name, naming.brtun_name, naming.ex_port_name, naming.patch_int_name,
               naming.patch_tun_name, naming.probe_port_name):
        assert len(fn("some-tenant-name/some-network-name")) <= 15
    assert len(naming.gre_port_name("t/n", "compute-node-with-long-name")) <= 15
    assert naming.datapath_id("compute1", "brint-x") != naming.datapath_id("compute2", "brint-x")


def test_hosting_nodes_and_probes():
    t = topo()
    assert t.hosting_nodes("acme/web") == ["compute1", "compute2", "net1"]
    assert t.hosting_nodes("globex/app") == ["compute1", "net1"]
    assert t.networks_on("compute3") == []
    assert [p.node for p in t.probes("acme/web")] == ["net1"]


def test_desired_state_bridges_ports_and_tunnels():
    state = desired_state(topo())
    c1 = state["compute1"]
    assert set(c1.bridges) == {"br-int", "br-tun", "brint-acme.web", "brtun-acme.web",
                               naming.brint_name("globex/app"), naming.brtun_name("globex/app")}
    brint = c1.bridges["brint-acme.web"]
    assert brint.ports["pi-acme.web"].options == {"peer": "pt-acme.web"}
    tap = brint.ports["tap-web1"]
    assert tap.tag == 100 and tap.external_ids["tenantnet-vm"] == "web1"
    brtun = c1.bridges["brtun-acme.web"]
    gre = {p.options["remote_ip"]: p for p in brtun.ports.values() if p.type == "gre"}
    assert set(gre) == {"198.19.100.12", "198.19.100.2"}        # compute2 and net1 only
    assert all(p.options["local_ip"] == "198.19.100.11" and p.options["key"] == "flow"
               for p in gre.values())
    assert c1.addresses == {"ex-acme.web": "198.19.100.11/24",
                            naming.ex_port_name("globex/app"): "198.19.200.11/24"}
    assert set(state["compute3"].bridges) == {"br-int", "br-tun"}   # hosts nothing
    net1 = state["net1"]
    assert "br-ex" in net1.bridges and "prb-acme.web" in net1.bridges["brint-acme.web"].ports
    assert brint.controller == "ssl:198.18.0.1:6653"


def test_equations_match_desired_state():
    t = topo()
    state = desired_state(t)
    for c in t.compute_nodes():
        assert equations.bridges_on_compute(t, c.name) == len(state[c.name].bridges)
    assert equations.total_bridges(t) == sum(len(s.bridges) for s in state.values())
    gre_ports = sum(1 for s in state.values() for b in s.bridges.values()
                    for p in b.ports.values() if p.type == "gre")
    assert gre_ports == 2 * equations.total_tunnels(t)   # one port at each end
    for key in t.active_networks():
        assert equations.tunnels_of_network(t, key) <= equations.tunnel_bound_per_network(t)
    assert equations.total_tunnels(t) <= equations.total_tunnel_bound(t)
    assert equations.total_tunnels(t) == 3 + 1   # acme/web: 3 nodes -> 3; globex/app: 2 -> 1


def _by_rule(flows, rule):
    return [f for f in flows if f.rule == rule]


def test_four_rule_types():
    t = topo()
    fl = node_flows(t, "compute1")["brtun-acme.web"].flows
    gre_c2 = naming.gre_port_name("acme/web", "compute2")
    gre_n1 = naming.gre_port_name("acme/web", "net1")
    ingress = _by_rule(fl, RULE_INGRESS)
    assert {f.match_dict["in_port"] for f in ingress} == {gre_c2, gre_n1}
    for f in ingress:
        assert f.table == T_CLASSIFY and f.match_dict["tunnel_id"] == 100
        assert f.actions == (("push_vlan",), ("set_field", "vlan_vid", 100),
                             ("output", "pt-acme.web"))
    egress = {f.match_dict["eth_dst"]: f for f in _by_rule(fl, RULE_EGRESS)}
    web2, probe = t.vm("web2"), t.probes("acme/web")[0]
    assert set(egress) == {web2.mac, probe.mac}     # never the local VM's own MAC
    assert egress[web2.mac].actions == (("pop_vlan",), ("set_field", "tunnel_id", 100),
                                        ("output", gre_c2))
    assert egress[web2.mac].table == T_EGRESS and egress[web2.mac].match_dict["vlan_vid"] == 100
    (flood,) = _by_rule(fl, RULE_FLOOD)
    assert {a[1] for a in flood.actions if a[0] == "output"} == {gre_c2, gre_n1}
    # remote egress: the other nodes learned web1's MAC with a rule to compute1's tunnel
    web1 = t.vm("web1")
    for node in ("compute2", "net1"):
        rem = [f for f in _by_rule(node_flows(t, node)["brtun-acme.web"].flows, RULE_EGRESS)
               if f.match_dict["eth_dst"] == web1.mac]
        assert len(rem) == 1
        assert rem[0].actions[-1] == ("output", naming.gre_port_name("acme/web", "compute1"))


def test_split_horizon_and_default_drop():
    t = topo()
    for bf in all_flows(t).values():
        if not bf.bridge.startswith("brtun"):
            continue
        patch = [f for f in bf.flows if f.rule == "classify-from-int"][0].match_dict["in_port"]
        for f in bf.flows:
            outs = [a[1] for a in f.actions if a[0] == "output"]
            assert "NORMAL" not in outs
            if isinstance(f.match_dict.get("in_port"), str) and f.match_dict["in_port"] != patch:
                assert outs == [patch]           # from a tunnel: only to the patch port
        drops = [f for f in bf.flows if f.priority == 0]
        assert {f.table for f in drops} == {T_CLASSIFY, T_EGRESS}
        assert all(f.actions == () and f.goto is None for f in drops)


def test_removing_last_vm_removes_bridges_and_remote_rules():
    t = topo()
    before = node_flows(t, "compute2")["brtun-acme.web"].flows
    web1_mac = t.vm("web1").mac
    assert any(f.match_dict.get("eth_dst") == web1_mac for f in before)
    t.remove_vm("web1")
    state = desired_state(t)
    assert "brint-acme.web" not in state["compute1"].bridges
    assert naming.brint_name("globex/app") in state["compute1"].bridges
    after = node_flows(t, "compute2")["brtun-acme.web"].flows
    assert not any(f.match_dict.get("eth_dst") == web1_mac for f in after)
    assert not any(naming.gre_port_name("acme/web", "compute1") in f.port_names() for f in after)


def test_flow_cookies_are_ours_and_stable():
    t = topo()
    fl = node_flows(t, "compute1")["brtun-acme.web"].flows
    pm = {p: i + 1 for i, p in enumerate(sorted({p for f in fl for p in f.port_names()}))}
    cookies = [f.resolve(pm).cookie() for f in fl]
    assert len(set(cookies)) == len(cookies)
    assert all(c >> 32 == 0x544E4E54 for c in cookies)
    assert cookies == [f.resolve(pm).cookie() for f in fl]


def cnb_topo(mixed=False):
    text = CFG.replace("transport_cidr: 198.19.200.0/24}",
                       "transport_cidr: 198.19.200.0/24, mode: cnb}")
    if not mixed:
        text = "mode: cnb\n" + text
    return config.load_text(text, "t.yaml")


def test_cnb_desired_state_uses_common_bridges_and_node_tunnels():
    t = cnb_topo()
    c1 = desired_state(t)["compute1"]
    assert set(c1.bridges) == {"br-int", "br-tun"}
    br_int, br_tun = c1.bridges["br-int"], c1.bridges["br-tun"]
    vids = {t.cnb_vid("acme/web"), t.cnb_vid("globex/app")}
    assert len(vids) == 2                        # one VLAN per network on the shared br-int
    assert br_int.ports["tap-web1"].tag == t.cnb_vid("acme/web")
    assert br_int.ports["tap-app1"].tag == t.cnb_vid("globex/app")
    gre = {p.options["remote_ip"] for p in br_tun.ports.values() if p.type == "gre"}
    assert gre == {"198.19.0.12", "198.19.0.2"}  # one per peer node, not per network
    assert c1.addresses == {}                    # no ex- endpoints in CNB
    assert equations.total_bridges(t) == sum(len(s.bridges) for s in desired_state(t).values())
    gre_ports = sum(1 for s in desired_state(t).values() for b in s.bridges.values()
                    for p in b.ports.values() if p.type == "gre")
    assert gre_ports == 2 * equations.total_tunnels(t)


def test_cnb_flows_key_by_vlan_and_tunnel_id_and_keep_split_horizon():
    t = cnb_topo()
    fl = node_flows(t, "compute1")["br-tun"].flows
    web = [f for f in fl if f.rule == RULE_INGRESS and f.match_dict["tunnel_id"] == 100]
    assert {f.match_dict["in_port"] for f in web} == {naming.cnb_gre_port_name("compute2"),
                                                      naming.cnb_gre_port_name("net1")}
    assert all(f.actions == (("push_vlan",), ("set_field", "vlan_vid", t.cnb_vid("acme/web")),
                             ("output", naming.CNB_PATCH_TUN)) for f in web)
    app = [f for f in fl if f.rule == RULE_INGRESS and f.match_dict["tunnel_id"] == 200]
    assert {f.match_dict["in_port"] for f in app} == {naming.cnb_gre_port_name("net1")}
    egress = {f.match_dict["eth_dst"]: f for f in fl if f.rule == RULE_EGRESS}
    assert egress[t.vm("web2").mac].actions[-1] == ("output", naming.cnb_gre_port_name("compute2"))
    assert egress[t.vm("web2").mac].match_dict["vlan_vid"] == t.cnb_vid("acme/web")
    for f in fl:
        inp = f.match_dict.get("in_port")
        if isinstance(inp, str) and inp.startswith("gre-"):
            assert [a[1] for a in f.actions if a[0] == "output"] == [naming.CNB_PATCH_TUN]
        assert ("output", "NORMAL") not in f.actions


def test_underlay_rules_deliver_by_address_to_each_endpoint():
    t = topo()
    fl = [f for f in node_flows(t, "compute1")["br-tun"].flows if f.rule == "underlay"]
    to_port = {(f.match_dict.get("arp_tpa") or f.match_dict.get("ipv4_dst")): f.actions
               for f in fl if f.match_dict.get("in_port") == "eth1"}
    assert to_port["198.19.0.11"] == (("output", "LOCAL"),)
    assert to_port["198.19.100.11"] == (("output", naming.ex_port_name("acme/web")),)
    outs = {f.match_dict["in_port"] for f in fl if f.actions == (("output", "eth1"),)}
    assert outs == {"LOCAL", naming.ex_port_name("acme/web"), naming.ex_port_name("globex/app")}


def test_mixed_modes_on_one_node():
    t = cnb_topo(mixed=True)
    c1 = desired_state(t)["compute1"]
    assert naming.brint_name("acme/web") in c1.bridges              # DNB: dedicated
    assert naming.brint_name("globex/app") not in c1.bridges        # CNB: common
    assert "tap-app1" in c1.bridges["br-int"].ports
    assert equations.bridges_on_compute(t, "compute1") == len(c1.bridges)


def test_desired_state_carries_the_nodes_datapath():
    t = topo()
    # unknown (no record read yet): None everywhere, and nothing else differs
    plain = desired_state(t)["compute1"]
    assert plain.datapath is None and not plain.userspace
    assert {b.datapath_type for b in plain.bridges.values()} == {None}
    state = desired_state(t, {"compute1": "system", "compute2": "netdev"})
    c1, c2 = state["compute1"], state["compute2"]
    assert c1.datapath == "system" and not c1.userspace
    assert c2.datapath == "netdev" and c2.userspace
    assert state["net1"].datapath is None                       # left out: not known
    # every bridge, tenant and common, carries the node's type
    assert {b.datapath_type for b in c1.bridges.values()} == {"system"}
    assert c1.bridges["brint-acme.web"].datapath_type == "system"
    assert c1.bridges["brtun-acme.web"].datapath_type == "system"
    assert {b.datapath_type for b in c2.bridges.values()} == {"netdev"}
    # the datapath type is the node's: ports, tunnels and addresses do not depend on it
    assert c1.addresses == plain.addresses
    assert {n: b.ports for n, b in c1.bridges.items()} == \
        {n: b.ports for n, b in plain.bridges.items()}
    assert c1 != plain                            # a changed datapath is a changed state
    # flows do not depend on it either
    assert node_flows(t, "compute1").keys() == set(c1.bridges)


def test_desired_state_refuses_an_unknown_datapath():
    import pytest
    from tenantnet.model.desired import node_state
    with pytest.raises(ValueError, match="compute1: datapath 'dpdk'"):
        node_state(topo(), "compute1", "dpdk")
