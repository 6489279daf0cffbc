"""Service chains (issue 11): validation of functions and chains, the steering flows as
data, and the API with tenants' credentials (no switch: Core without nodes)."""

import pytest

from tenantnet.controller.api import ApiServer
from tenantnet.controller.client import ApiClient
from tenantnet.controller.core import Core
from tenantnet.controller.nodestate import UP
from tenantnet.controller.tenancy import make_authorizer
from tenantnet.controller.tenant import topology_from_api
from tenantnet.errors import ApiError, ConfigError
from tenantnet.model import config, naming
from tenantnet.model.chains import (PRIO_CHAIN, PRIO_CHAIN_ANY, bridge_chain_flows,
                                    live_hops)
from tenantnet.model.flows import node_flows

BASE = """
mode: dnb
controller: {api_token: provider-secret}
nodes:
  - {name: compute1, role: compute, management_ip: 198.18.0.11, transport_ip: 198.19.0.11}
  - {name: compute2, role: compute, management_ip: 198.18.0.12, transport_ip: 198.19.0.12}
  - {name: compute3, role: compute, management_ip: 198.18.0.13, transport_ip: 198.19.0.13}
  - {name: net1, role: network, management_ip: 198.18.0.2, transport_ip: 198.19.0.2}
tenants:
  - name: acme
    token: acme-secret
    networks:
      - {name: web, segmentation_id: 100, cidr: 10.0.0.0/24, transport_cidr: 198.19.100.0/24}
  - name: globex
    token: globex-secret
    networks:
      - {name: app, segmentation_id: 200, cidr: 10.0.0.0/24, transport_cidr: 198.19.200.0/24}
  - name: initech
    networks:
      - {name: db, mode: cnb, segmentation_id: 300, cidr: 10.0.0.0/24}
vms:
  - {name: web1, network: acme/web, node: compute1}
  - {name: web2, network: acme/web, node: compute2}
  - {name: web3, network: acme/web, node: compute1}
  - {name: app1, network: globex/app, node: compute1}
  - {name: app2, network: globex/app, node: compute2}
  - {name: db1, network: initech/db, node: compute1}
  - {name: db2, network: initech/db, node: compute2}
"""
FUNCTIONS = """
functions:
  - {name: fw1, network: acme/web, node: compute2, kind: firewall, rules: 100}
  - {name: sh1, network: acme/web, node: compute3, kind: shaper, rate: 50mbit}
  - {name: fw9, network: globex/app, node: compute1, kind: forward}
  - {name: dbf, network: initech/db, node: compute1, kind: forward}
"""
CHAINS = """
chains:
  - {name: c1, network: acme/web, from: web1, to: web2, through: [fw1, sh1]}
"""


def load(text):
    return config.load_text(text, "t.yaml")


def chain_topo(extra=""):
    return load(BASE + FUNCTIONS + CHAINS + extra)


# -- validation ------------------------------------------------------------------------------
@pytest.mark.parametrize("functions,chains,key,words", [
    ("- {name: fw1, network: acme/web, node: compute2, kind: router}", "",
     "functions[0].kind", "unknown function kind 'router'"),
    ("- {name: fw1, network: acme/web, node: net1, kind: forward}", "",
     "functions[0].node", "not a compute node"),
    ("- {name: fw1, network: acme/nope, node: compute1, kind: forward}", "",
     "functions[0].network", "unknown network"),
    ("- {name: fw1, network: acme/web, node: compute1, kind: shaper, rate: fast}", "",
     "functions[0].rate", "not a tc rate"),
    ("- {name: fw1, network: acme/web, node: compute1, kind: firewall, rules: -1}", "",
     "functions[0].rules", "expected 0..100000"),
    ("- {name: fw1, network: acme/web, node: compute1, kind: forward, rate: 1mbit}", "",
     "functions[0].rate", "unknown key"),
    ("- {name: web1, network: acme/web, node: compute1, kind: forward}", "",
     "functions[0].name", "duplicate name"),
    ("- {name: fw1, network: acme/web, node: compute1, kind: forward, ip: 10.0.0.2}", "",
     "functions[0].ip", "already used by web1"),
    ("- {name: fw1, network: acme/web, node: compute1, kind: forward}",
     "- {name: c, network: acme/web, from: web1, to: app2, through: [fw1]}",
     "chains[0].to", "'app2' is not a VM of acme/web"),
    ("- {name: fw1, network: acme/web, node: compute1, kind: forward}\n"
     "  - {name: fw2, network: globex/app, node: compute1, kind: forward}",
     "- {name: c, network: acme/web, from: web1, to: web2, through: [fw1, fw2]}",
     "chains[0].through[1]", "'fw2' is not a network function of acme/web"),
    ("- {name: fw1, network: acme/web, node: compute1, kind: forward}",
     "- {name: c, network: acme/web, from: web1, to: web2, through: [fw1, fw1]}",
     "chains[0].through[1]", "appears twice"),
    ("- {name: fw1, network: acme/web, node: compute1, kind: forward}",
     "- {name: c, network: acme/web, from: web1, to: web2, through: []}",
     "chains[0].through", "at least one function"),
    ("- {name: fw1, network: acme/web, node: compute1, kind: forward}",
     "- {name: c, network: acme/web, from: web1, to: web1, through: [fw1]}",
     "chains[0].to", "to itself"),
    ("- {name: fw1, network: acme/web, node: compute1, kind: forward}",
     "- {name: c, network: acme/web, from: web1, to: any, through: [fw1], on_failure: maybe}",
     "chains[0].on_failure", "expected one of open, closed"),
    ("- {name: fw1, network: acme/web, node: compute1, kind: forward}",
     "- {name: c, network: acme/web, from: web1, to: any, through: [fw1]}\n"
     "  - {name: d, network: acme/web, from: web1, to: any, through: [fw1]}",
     "chains[1].to", "already steers"),
    ("- {name: fw1, network: acme/web, node: compute1, kind: forward}",
     "- {name: c, network: acme/web, from: web1, to: web2, through: [fw1], via: [fw1]}",
     "chains[0].via", "unknown key"),
])
def test_bad_functions_and_chains_name_the_file_and_key(functions, chains, key, words):
    text = BASE + f"functions:\n  {functions}\n" + (f"chains:\n  {chains}\n" if chains else "")
    with pytest.raises(ConfigError) as exc:
        load(text)
    assert exc.value.source == "t.yaml"
    assert exc.value.key == key and words in exc.value.problem, str(exc.value)


def test_functions_are_attachments_with_a_port_mac_and_ip():
    topo = chain_topo()
    fw1 = topo.function("fw1")
    assert fw1.port == naming.function_port_name("fw1") and fw1.ip not in (
        topo.vm("web1").ip, topo.vm("web2").ip, topo.vm("web3").ip)
    assert dict(fw1.options) == {"rules": 100, "stateful": True}
    assert fw1 in topo.attachments("acme/web")
    # a function's node hosts the network's bridges, with its port on brint-
    assert "compute3" in topo.hosting_nodes("acme/web")
    # a VM placed later never takes a function's address
    vm = config.vm_from_spec(topo, {"name": "web9", "network": "acme/web", "node": "compute1"},
                             "api", "")
    assert vm.ip not in {f.ip for f in topo.functions_of("acme/web")}


# -- flows -----------------------------------------------------------------------------------
def chain_rules(topo, node, bridge):
    return [f for f in node_flows(topo, node)[bridge].flows if f.rule.startswith("chain")]


def test_steering_flows_across_nodes():
    topo = chain_topo()
    web = naming.brint_name("acme/web")
    fw1, sh1 = topo.function("fw1"), topo.function("sh1")
    web1, web2 = topo.vm("web1"), topo.vm("web2")
    match = {"eth_type": 0x0800, "ipv4_src": web1.ip, "ipv4_dst": web2.ip}
    to_patch = [("push_vlan",), ("set_field", "vlan_vid", 100),
                ("output", naming.patch_int_name("acme/web"))]
    (entry,) = chain_rules(topo, "compute1", web)
    assert entry.table == 0 and entry.priority == PRIO_CHAIN
    assert entry.match_dict == dict(match, in_port=web1.port)
    assert list(entry.actions) == [("set_field", "eth_dst", fw1.mac)] + to_patch
    (hop,) = chain_rules(topo, "compute2", web)
    assert hop.match_dict == dict(match, in_port=fw1.port)
    assert list(hop.actions) == [("set_field", "eth_dst", sh1.mac)] + to_patch
    assert chain_rules(topo, "compute3", web) == []      # the last hop: plain forwarding
    # remote hops ride the existing Table I: brtun-xy on compute1 knows fw1's MAC
    tun = node_flows(topo, "compute1")[naming.brtun_name("acme/web")].flows
    assert any(f.match_dict.get("eth_dst") == fw1.mac for f in tun)
    # other networks are untouched, and so is every other flow
    plain = load(BASE + FUNCTIONS)
    for node in ("compute1", "compute2", "compute3"):
        for br in node_flows(topo, node):
            if br != web:
                assert node_flows(topo, node)[br].flows == node_flows(plain, node)[br].flows
        assert [f for f in node_flows(topo, node)[web].flows if not f.rule.startswith("chain")] \
            == node_flows(plain, node)[web].flows


def test_same_node_hop_outputs_to_the_function_port_and_any_is_lower_priority():
    topo = chain_topo("  - {name: c2, network: acme/web, from: web3, to: any, through: [fw1]}\n")
    text = BASE + FUNCTIONS.replace("node: compute2, kind: firewall",
                                    "node: compute1, kind: firewall") + CHAINS
    local = load(text)
    entry, hop = sorted(chain_rules(local, "compute1", naming.brint_name("acme/web")),
                        key=lambda f: f.rule)
    assert entry.match_dict["in_port"] == local.vm("web1").port
    assert entry.actions[-1] == ("output", local.function("fw1").port)
    assert hop.match_dict["in_port"] == local.function("fw1").port
    any_entry = [f for f in chain_rules(topo, "compute1", naming.brint_name("acme/web"))
                 if f.match_dict["in_port"] == topo.vm("web3").port]
    assert len(any_entry) == 1 and any_entry[0].priority == PRIO_CHAIN_ANY
    assert "ipv4_dst" not in any_entry[0].match_dict


def test_a_missing_function_fails_open_or_closed():
    topo = chain_topo()
    topo.remove_function("sh1")
    (entry,) = chain_rules(topo, "compute1", naming.brint_name("acme/web"))
    assert entry.actions[0] == ("set_field", "eth_dst", topo.function("fw1").mac)
    assert chain_rules(topo, "compute2", naming.brint_name("acme/web")) == []   # fw1: last
    topo.remove_function("fw1")
    assert chain_rules(topo, "compute1", naming.brint_name("acme/web")) == []   # plain
    closed = load(BASE + FUNCTIONS + CHAINS.replace("[fw1, sh1]}",
                                                    "[fw1, sh1], on_failure: closed}"))
    closed.remove_function("sh1")
    (drop,) = chain_rules(closed, "compute1", naming.brint_name("acme/web"))
    assert drop.actions == () and drop.goto is None         # an explicit drop
    assert live_hops(closed, closed.chain("c1"))[1] == ["sh1"]


def test_cnb_chains_are_on_the_common_br_int():
    topo = load(BASE + FUNCTIONS + "chains:\n  - {name: d, network: initech/db, from: db2, "
                "to: db1, through: [dbf]}\n")
    (entry,) = [f for f in bridge_chain_flows(topo, "compute2", "br-int")]
    assert entry.actions[-1] == ("output", naming.CNB_PATCH_INT)
    assert ("set_field", "vlan_vid", topo.cnb_vid("initech/db")) in entry.actions


def test_tenant_controller_bridges_get_no_chain_flows_from_tenant_l2():
    text = (BASE + FUNCTIONS + CHAINS).replace(
        "transport_cidr: 198.19.100.0/24}",
        "transport_cidr: 198.19.100.0/24, controller: 'ssl:198.18.0.201:6653'}")
    topo = load(text)
    web = naming.brint_name("acme/web")
    assert web not in node_flows(topo, "compute1")
    assert not [f for f in node_flows(topo, "compute1", tenant="acme")[web].flows
                if f.rule.startswith("chain")]
    assert bridge_chain_flows(topo, "compute1", web)     # ryu_apps.tenant_chain's part


# -- API ------------------------------------------------------------------------------------
@pytest.fixture
def api(tmp_path):
    topo = chain_topo()
    core = Core(topo, pusher=None)
    core.started = True
    core.realise = lambda *a, **k: {}          # no switches here: realising is a no-op
    for name in core.nodes:
        core.states.set(name, UP, "test")
    server = ApiServer(core, tcp=("127.0.0.1", 0), unix_path=str(tmp_path / "api.sock"),
                       authorizer=make_authorizer(topo), unix_trusted=True).start()
    url = f"http://127.0.0.1:{server.tcp_address[1]}"
    yield core, url
    server.stop()


def test_chains_and_functions_over_the_api_with_tenant_credentials(api):
    core, url = api
    acme = ApiClient(url, token="acme-secret")
    globex = ApiClient(url, token="globex-secret")
    assert [c["name"] for c in acme.list_chains()] == ["c1"]
    assert globex.list_chains() == [] and [f["name"] for f in globex.list_functions()] == ["fw9"]
    fn = acme.add_function("fw2", "acme/web", "compute3", "firewall", rules=5, stateful=False)
    assert fn["function"] == "firewall" and fn["options"] == {"rules": 5, "stateful": False}
    chain = acme.add_chain("c2", "acme/web", "web3", "any", ["fw2"], on_failure="closed")
    assert chain["from"] == "web3" and chain["to"] == "any" and chain["on_failure"] == "closed"
    view = acme.topology(typed=True)
    assert {c.name for c in view.chains} == {"c1", "c2"}
    rebuilt = topology_from_api(view)
    assert bridge_chain_flows(rebuilt, "compute1", naming.brint_name("acme/web")) == \
        bridge_chain_flows(core.topo, "compute1", naming.brint_name("acme/web"))
    # isolation: another tenant's network, VMs and functions
    with pytest.raises(ApiError) as exc:
        globex.add_chain("x", "acme/web", "web1", "web2", ["fw1"])
    assert exc.value.status == 403
    with pytest.raises(ApiError) as exc:
        globex.add_chain("x", "globex/app", "app1", "app2", ["fw1"])
    assert exc.value.status == 400 and "through[0]" in str(exc.value)
    with pytest.raises(ApiError) as exc:
        globex.add_chain("x", "globex/app", "app1", "web2", ["fw9"])
    assert exc.value.status == 400 and "to:" in str(exc.value)
    for call in (lambda: globex.del_chain("c1"), lambda: globex.del_function("fw1")):
        with pytest.raises(ApiError) as exc:
            call()
        assert exc.value.status == 404
    with pytest.raises(ApiError) as exc:
        globex.add_function("f", "acme/web", "compute1", "forward")
    assert exc.value.status == 403
    # validation errors name the key, as config errors do
    with pytest.raises(ApiError) as exc:
        acme.request("POST", "/v1/chains", {"name": "y", "network": "acme/web", "from": "web1",
                                            "to": "web2", "through": ["fw1"], "via": 1})
    assert exc.value.status == 400 and "via: unknown field" in str(exc.value)
    assert "from" in str(exc.value)
    with pytest.raises(ApiError) as exc:
        acme.add_function("f", "acme/web", "compute1", "shaper", rate="fast")
    assert exc.value.status == 400 and "rate:" in str(exc.value)
    # deleting a function: chains skip it, and say so
    gone = acme.del_function("sh1")
    assert gone["deleted"] is True and gone["chains_affected"] == ["c1"]
    assert live_hops(core.topo, core.topo.chain("c1")) == ([core.topo.function("fw1")],
                                                          ["sh1"])
    assert acme.del_chain("c1")["deleted"] is True
    assert [c["name"] for c in acme.list_chains()] == ["c2"]


# -- lab function kinds (commands only: no namespace here) ------------------------------------
def test_function_kinds_are_one_class_each_and_build_their_commands():
    from tenantnet.lab.functions import for_function, kinds
    assert set(kinds()) == set(config.FUNCTION_KINDS)
    topo = chain_topo()
    ran = []

    def run(cmd):
        ran.append(cmd)
    fw = for_function(topo.function("fw1"), run)
    fw.setup()
    assert ["sysctl", "-qw", "net.ipv4.ip_forward=1"] in ran
    assert ["sysctl", "-qw", "net.ipv4.conf.eth0.send_redirects=0"] in ran
    restore = ran[-1][-1]
    assert restore.count("-j DROP") == 100 and "ESTABLISHED,RELATED" in restore
    assert restore.index("ESTABLISHED") < restore.index("-j DROP") < restore.index(
        "tenantnet-accept")
    ran.clear()
    for_function({"name": "s", "function": "shaper", "options": {"rate": "5mbit"}}, run).setup()
    assert ran[-1][:6] == ["tc", "qdisc", "replace", "dev", "eth0", "root"] and "5mbit" in ran[-1]
