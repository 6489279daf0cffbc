"""Tenant-run controllers on the lab: failure independence, refusal of foreign bridges,
a tenant network function, and per-tenant API credentials.

configs/lab/tenant-controllers.yaml: acme/web and globex/app (DNB) are programmed by their
tenants' own controllers; initech/db (CNB) by the provider."""

import json
import os
import subprocess
import sys
import time

import pytest

from conftest import CONFIGS, lab_prerequisites, lab_up_and_down
from tenantnet import pki
from tenantnet.lab import certs
from tenantnet.model import naming
from tenantnet.model.flowspec import COOKIE_PREFIX
from ryu_apps.tenant_acl import COOKIE_PREFIX as ACL_COOKIE_PREFIX

pytestmark = [pytest.mark.lab,
              pytest.mark.skipif(lab_prerequisites() is not None, reason=str(lab_prerequisites()))]

PREFIX = os.environ.get("TENANTNET_TEST_PREFIX_TENANT", "tnc")
CONFIG = os.path.join(CONFIGS, "tenant-controllers.yaml")


@pytest.fixture(scope="module")
def lab():
    yield from lab_up_and_down(PREFIX, CONFIG)


def vms(lab):
    return {v["name"]: v for v in lab.api().list_vms()}


def cookies(lab, node, bridge):
    out = lab.fabric.ovs(node).ofctl("dump-flows", bridge).stdout
    return sorted(line.split("cookie=")[1].split(",")[0] for line in out.splitlines()
                  if "cookie=" in line)


def start_pings(lab, pairs, count=300):
    """Background pings every 10 ms between (src, dst) VM pairs."""
    v = vms(lab)
    return {(a, b): subprocess.Popen(
        ["ip", "netns", "exec", lab.fabric.endpoint_netns(a), "ping", "-n", "-q", "-i", "0.01",
         "-c", str(count), v[b]["ip"]], stdout=subprocess.PIPE, text=True) for a, b in pairs}


def losses(pingers):
    out = {}
    for pair, proc in pingers.items():
        text, _ = proc.communicate(timeout=120)
        out[pair] = text.split("received, ")[1].split("%")[0] if "received, " in text else text
    return out


def wait_for(cond, timeout=20.0):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if cond():
            return True
        time.sleep(0.1)
    return False


def test_tenant_networks_work_and_stay_isolated(lab):
    m = lab.matrix()
    for r in m["rows"]:
        assert r["unicast"] == r["same_network"], r
        if r["same_network"]:
            assert r["ping"], r


def test_provider_hands_tenant_bridges_to_tenant_controllers(lab):
    ovs = lab.fabric.ovs("compute1")
    for net, target in (("acme/web", "ssl:198.18.0.201:6653"),
                        ("globex/app", "ssl:198.18.0.202:6653")):
        for bridge in (naming.brint_name(net), naming.brtun_name(net)):
            assert ovs.vsctl("get-controller", bridge).stdout.split() == [target]
    assert ovs.vsctl("get-controller", "br-tun").stdout.split() == ["ssl:198.18.0.1:6653"]
    # the tenant's controller, not the provider, installed acme's flows
    log = open(lab.tenant_log("acme")).read()
    assert f"compute1/{naming.brtun_name('acme/web')}" in log
    provider_log = open(lab.controller_log()).read()
    assert f"compute1/{naming.brtun_name('acme/web')} connected" not in provider_log


def test_runtime_placement_on_a_tenant_network_is_programmed_by_the_tenant(lab):
    rec = lab.add_vm("web8", "acme/web", "compute3")
    lab.wait_reachable(lab.topology_from_api(), ["web8"], timeout=30)
    assert wait_for(lambda: rec["mac"] in lab.fabric.ovs("compute1").ofctl(
        "dump-flows", naming.brtun_name("acme/web")).stdout)
    lab.del_vm("web8")
    assert wait_for(lambda: rec["mac"] not in lab.fabric.ovs("compute1").ofctl(
        "dump-flows", naming.brtun_name("acme/web")).stdout)


def test_provider_down_tenant_traffic_flows_and_tenant_controller_keeps_working(lab):
    topo = lab.topology()
    pingers = start_pings(lab, [("web1", "web2"), ("app1", "app2"), ("db1", "db2")])
    time.sleep(0.3)
    lab.fabric.stop_process("controller")
    try:
        assert all(v == "0" for v in losses(pingers).values()), "traffic lost"
        # With the provider still down: a tenant bridge loses its flows (an operator's
        # mistake), acme's controller restarts from its cached placement and repairs it.
        bridge = naming.brtun_name("acme/web")
        ovs = lab.fabric.ovs("compute1")
        before = cookies(lab, "compute1", bridge)
        ovs.ofctl("del-flows", bridge, f"cookie=0x{COOKIE_PREFIX:08x}00000000/0xffffffff00000000")
        assert cookies(lab, "compute1", bridge) == []
        lab.stop_tenant_controller("acme")
        lab.start_tenant_controller("acme", topo=topo)
        assert wait_for(lambda: cookies(lab, "compute1", bridge) == before, 30)
        assert lab.ping("web1", vms_cached(topo, "web2"))
    finally:
        lab.start_controller(topo, lab.meta()["config"])
        lab.wait_api(60)


def vms_cached(topo, name):
    return topo.vm(name).ip


def test_one_tenant_controller_down_affects_no_one_else(lab):
    provider_before = {n: cookies(lab, n, "br-tun") for n in ("compute1", "compute2")}
    globex_before = cookies(lab, "compute1", naming.brtun_name("globex/app"))
    pingers = start_pings(lab, [("web1", "web2"), ("app1", "app2"), ("db1", "db2")])
    time.sleep(0.3)
    lab.stop_tenant_controller("acme")
    try:
        assert all(v == "0" for v in losses(pingers).values()), "traffic lost"
        assert {n: cookies(lab, n, "br-tun") for n in provider_before} == provider_before
        assert cookies(lab, "compute1", naming.brtun_name("globex/app")) == globex_before
        # globex's controller still programs its network: a new globex VM becomes reachable
        lab.add_vm("app7", "globex/app", "compute3")
        lab.wait_reachable(lab.topology_from_api(), ["app7"], timeout=30)
        lab.del_vm("app7")
    finally:
        lab.start_tenant_controller("acme")


def test_a_tenant_controller_refuses_another_tenants_bridge(lab):
    """Two guards. Normally the switch never gives it the chance: a bridge connects only to
    the target in its own Controller record, which the provider sets to its tenant's
    controller. And if a bridge is pointed at the wrong tenant's controller anyway (here: by
    hand, as a misconfiguration), that controller refuses it and programs nothing."""
    ovs = lab.fabric.ovs("compute2")
    bridge = naming.brint_name("globex/app")
    dpid = naming.dpid_str(naming.datapath_id("compute2", bridge))
    ovs.vsctl("set-controller", bridge, "ssl:198.18.0.201:6653")     # acme's controller
    try:
        assert wait_for(lambda: f"switch {dpid} is not a bridge of this tenant: refused"
                        in open(lab.tenant_log("acme")).read(), 20)
        # acme's controller installed nothing there
        assert not [c for c in cookies(lab, "compute2", bridge)
                    if int(c, 16) >> 32 != COOKIE_PREFIX]
    finally:
        ovs.vsctl("set-controller", bridge, "ssl:198.18.0.202:6653")
    assert wait_for(lambda: lab.ping("app2", vms(lab)["app1"]["ip"]), 30)


def test_tenant_network_function_drops_one_direction(lab):
    lab.stop_tenant_controller("acme")
    # `ryu-manager ryu_apps.tenant_l2 ryu_apps.tenant_acl`, [tenant_acl] pairs = web1>web2
    lab.start_tenant_controller("acme", app="ryu_apps.tenant_acl",
                                conf={"tenant_acl": {"pairs": "web1>web2"}})
    try:
        def blocked():
            rows = {(r["src"], r["dst"]): r for r in lab.matrix(listen=1.5)["rows"]}
            return (not rows[("web1", "web2")]["unicast"] and rows[("web2", "web1")]["unicast"]
                    and rows[("web1", "web3")]["unicast"])
        assert wait_for(blocked, 30)
        dump = lab.fabric.ovs("compute1").ofctl("dump-flows", naming.brint_name("acme/web")).stdout
        acl = [line for line in dump.splitlines() if "priority=500" in line]
        assert len(acl) == 1 and vms(lab)["web2"]["mac"] in acl[0] and "n_packets=0" not in acl[0]
        assert f"cookie=0x{ACL_COOKIE_PREFIX:08x}" in acl[0]      # tenant_acl's own cookie
        # it follows the placement: a new VM that web1 must not reach either ...
        lab.stop_tenant_controller("acme")
        lab.start_tenant_controller("acme", app="ryu_apps.tenant_acl",
                                    conf={"tenant_acl": {"pairs": "web1>web2,web1>web7"}})
        rec = lab.add_vm("web7", "acme/web", "compute2")
        lab.wait_reachable(lab.topology_from_api(), ["web7"], timeout=30)
        assert wait_for(lambda: rec["mac"] in lab.fabric.ovs("compute1").ofctl(
            "dump-flows", naming.brint_name("acme/web")).stdout)
        assert not lab.ping("web1", rec["ip"].split("/")[0], count=2)
        # ... and whose rule goes when it does; tenant_l2's flows were never touched
        tnnt = cookies(lab, "compute1", naming.brint_name("acme/web"))
        lab.del_vm("web7")
        assert wait_for(lambda: rec["mac"] not in lab.fabric.ovs("compute1").ofctl(
            "dump-flows", naming.brint_name("acme/web")).stdout)
        after = cookies(lab, "compute1", naming.brint_name("acme/web"))
        assert [c for c in tnnt if int(c, 16) >> 32 == COOKIE_PREFIX] == \
            [c for c in after if int(c, 16) >> 32 == COOKIE_PREFIX]
    finally:
        # tenant_l2 alone leaves tenant_acl's drop rules where they are (not its cookie);
        # tenant_acl with no pairs removes them
        lab.stop_tenant_controller("acme")
        lab.start_tenant_controller("acme", app="ryu_apps.tenant_acl",
                                    conf={"tenant_acl": {"pairs": ""}})
        assert wait_for(lambda: not [c for c in cookies(lab, "compute1",
                                                        naming.brint_name("acme/web"))
                                     if int(c, 16) >> 32 == ACL_COOKIE_PREFIX])
        lab.stop_tenant_controller("acme")
        lab.start_tenant_controller("acme")
    assert wait_for(lambda: lab.ping("web1", vms(lab)["web2"]["ip"]), 30)


# A tenant's own app, written for Ryu (classic `ryu.` imports), run unchanged next to
# tenant_l2 by tenantnet's ryu-manager: it drops ICMP sent by one VM, nothing else.
CLASSIC_ICMP_DROP = """
from ryu.base import app_manager
from ryu.controller import ofp_event
from ryu.controller.handler import CONFIG_DISPATCHER, set_ev_cls
from ryu.ofproto import ofproto_v1_3

MAC = "{mac}"


class NoPingFromOneVm(app_manager.RyuApp):
    OFP_VERSIONS = [ofproto_v1_3.OFP_VERSION]

    @set_ev_cls(ofp_event.EventOFPSwitchFeatures, CONFIG_DISPATCHER)
    def switch_features(self, ev):
        dp = ev.msg.datapath
        ofp, parser = dp.ofproto, dp.ofproto_parser
        match = parser.OFPMatch(eth_type=0x0800, ip_proto=1, eth_src=MAC)
        inst = [parser.OFPInstructionActions(ofp.OFPIT_APPLY_ACTIONS, [])]
        dp.send_msg(parser.OFPFlowMod(datapath=dp, cookie=0x1C3B, priority=700, match=match,
                                      instructions=inst))
        self.logger.info("no ICMP from %s on %016x", MAC, dp.id)
"""


def test_a_classic_ryu_app_runs_next_to_tenant_l2(lab, tmp_path):
    """`ryu-manager ryu_apps.tenant_l2 ./no_ping.py` as acme's controller: web1's pings are
    dropped on its brint bridge; its other traffic, and everyone else's pings, pass."""
    v = vms(lab)
    app = tmp_path / "no_ping.py"
    app.write_text(CLASSIC_ICMP_DROP.format(mac=v["web1"]["mac"]))
    brint = naming.brint_name("acme/web")
    lab.stop_tenant_controller("acme")
    lab.start_tenant_controller("acme", app=str(app))
    try:
        def dropping():
            dump = lab.fabric.ovs("compute1").ofctl("dump-flows", brint).stdout
            return "cookie=0x1c3b" in dump and "priority=700" in dump
        assert wait_for(dropping, 30), open(lab.tenant_log("acme")).read()[-3000:]
        # the drop ...
        assert not lab.ping("web1", v["web2"]["ip"], count=2)
        assert not lab.ping("web1", v["web3"]["ip"], count=2)
        # ... and the untouched rest: web1 still reaches everyone at layer 2, and the
        # others ping each other (web2 -> web1 echo requests arrive; the replies are ICMP
        # from web1 and are dropped too, so ping web2 -> web3 for the IP path)
        rows = {(r["src"], r["dst"]): r for r in lab.matrix(listen=1.5)["rows"]}
        assert rows[("web1", "web2")]["unicast"] and rows[("web1", "web3")]["unicast"]
        assert rows[("web2", "web1")]["unicast"]
        assert lab.ping("web2", v["web3"]["ip"], count=2)
        assert lab.ping("app1", v["app2"]["ip"], count=2)        # another tenant: untouched
        dump = lab.fabric.ovs("compute1").ofctl("dump-flows", brint).stdout
        mine = [line for line in dump.splitlines() if "cookie=0x1c3b" in line]
        assert len(mine) == 1 and "n_packets=0" not in mine[0]
        assert [c for c in cookies(lab, "compute1", brint) if int(c, 16) >> 32 == COOKIE_PREFIX]
        log = open(lab.tenant_log("acme")).read()
        assert "no ICMP from" in log and "Traceback" not in log
    finally:
        lab.stop_tenant_controller("acme")
        for node in ("compute1", "compute2", "compute3"):
            for bridge in (brint, naming.brtun_name("acme/web")):
                lab.fabric.ovs(node).ofctl("del-flows", bridge, "cookie=0x1c3b/-1",
                                           check=False)
        lab.start_tenant_controller("acme")
    assert wait_for(lambda: lab.ping("web1", vms(lab)["web2"]["ip"]), 30)


def test_api_credentials_from_a_tenant_host(lab):
    """A tenant's controller host reaches the provider's TCP API with its own token only."""
    ca = pki.tenant(certs.pki_dir(lab.fabric.state_dir), "acme").ca("api")

    def cli_in(netns, *args):
        return subprocess.run(["ip", "netns", "exec", netns, "env", f"TENANTNET_API_CA={ca}",
                               sys.executable, "-m", "tenantnet.cli", *args],
                              capture_output=True, text=True, timeout=60)
    netns = f"{PREFIX}-tc-acme"
    api = "https://198.18.0.1:8080"
    plain = cli_in(netns, "vm", "list", "--api", "http://198.18.0.1:8080", "--token",
                   "acme-lab-token")
    assert plain.returncode == 1 and "https://" in plain.stderr, plain.stderr
    out = cli_in(netns, "vm", "list", "--json", "--api", api, "--token", "acme-lab-token")
    assert out.returncode == 0, out.stderr
    assert {v["network"] for v in json.loads(out.stdout)} == {"acme/web"}
    out = cli_in(netns, "vm", "list", "--api", api)
    assert out.returncode == 1 and "credential" in out.stderr
    out = cli_in(netns, "vm", "add", "x1", "--network", "globex/app", "--node", "compute1",
                 "--api", api, "--token", "acme-lab-token")
    assert out.returncode == 1 and "no network" in out.stderr
    assert "x1" not in vms(lab)
