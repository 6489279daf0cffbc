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

from conftest import CONFIGS, lab_prerequisites
from tenantnet.model import naming
from tenantnet.model.flowspec import COOKIE_PREFIX
from tenantnet.lab.lab import Lab

pytestmark = [pytest.mark.lab,
              pytest.mark.skipif(lab_prerequisites() is not None, reason=str(lab_prerequisites()))]

PREFIX = "tnc"
CONFIG = os.path.join(CONFIGS, "tenant-controllers.yaml")


@pytest.fixture(scope="module")
def lab():
    lab = Lab(prefix=PREFIX)
    lab.down()
    proc = subprocess.run([sys.executable, "-m", "tenantnet.cli", "lab", "up", "-c", CONFIG,
                           "--prefix", PREFIX, "--timeout", "120"],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr + proc.stdout
    yield lab
    lab.down()
    assert not [n for n in os.listdir("/run/netns") if n.startswith(PREFIX + "-")]


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
    for net, target in (("acme/web", "tcp:198.18.0.201:6653"),
                        ("globex/app", "tcp:198.18.0.202:6653")):
        for bridge in (naming.brint_name(net), naming.brtun_name(net)):
            assert ovs.vsctl("get-controller", bridge).stdout.split() == [target]
    assert ovs.vsctl("get-controller", "br-tun").stdout.split() == ["tcp:198.18.0.1:6653"]
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
        lab._start_controller(topo, lab.meta()["config"])
        lab._wait_api(60)


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
    ovs.vsctl("set-controller", bridge, "tcp:198.18.0.201:6653")     # acme's controller
    try:
        assert wait_for(lambda: f"switch {dpid} is not a bridge of this tenant: refused"
                        in open(lab.tenant_log("acme")).read(), 20)
        # acme's controller installed nothing there
        assert not [c for c in cookies(lab, "compute2", bridge)
                    if int(c, 16) >> 32 != COOKIE_PREFIX]
    finally:
        ovs.vsctl("set-controller", bridge, "tcp:198.18.0.202:6653")
    assert wait_for(lambda: lab.ping("app2", vms(lab)["app1"]["ip"]), 30)


def test_tenant_network_function_drops_one_direction(lab):
    lab.stop_tenant_controller("acme")
    lab.start_tenant_controller("acme", app="ryu_apps.tenant_acl", env={"TENANTNET_ACL": "web1>web2"})
    try:
        def blocked():
            rows = {(r["src"], r["dst"]): r for r in lab.matrix(listen=1.5)["rows"]}
            return (not rows[("web1", "web2")]["unicast"] and rows[("web2", "web1")]["unicast"]
                    and rows[("web1", "web3")]["unicast"])
        assert wait_for(blocked, 30)
        dump = lab.fabric.ovs("compute1").ofctl("dump-flows", naming.brint_name("acme/web")).stdout
        acl = [line for line in dump.splitlines() if "priority=500" in line]
        assert len(acl) == 1 and vms(lab)["web2"]["mac"] in acl[0] and "n_packets=0" not in acl[0]
    finally:
        lab.stop_tenant_controller("acme")
        lab.start_tenant_controller("acme")
    assert wait_for(lambda: lab.ping("web1", vms(lab)["web2"]["ip"]), 30)


def test_api_credentials_from_a_tenant_host(lab):
    """A tenant's controller host reaches the provider's TCP API with its own token only."""
    def cli_in(netns, *args):
        return subprocess.run(["ip", "netns", "exec", netns, sys.executable, "-m",
                               "tenantnet.cli", *args], capture_output=True, text=True, timeout=60)
    netns = f"{PREFIX}-tc-acme"
    api = "http://198.18.0.1:8080"
    out = cli_in(netns, "vm", "list", "--json", "--api", api, "--token", "acme-lab-token")
    assert out.returncode == 0, out.stderr
    assert {v["network"] for v in json.loads(out.stdout)} == {"acme/web"}
    out = cli_in(netns, "vm", "list", "--api", api)
    assert out.returncode == 1 and "credential" in out.stderr
    out = cli_in(netns, "vm", "add", "x1", "--network", "globex/app", "--node", "compute1",
                 "--api", api, "--token", "acme-lab-token")
    assert out.returncode == 1 and "no network" in out.stderr
    assert "x1" not in vms(lab)
