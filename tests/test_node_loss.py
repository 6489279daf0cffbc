"""Node loss on the one-machine lab (real namespaces, real Open vSwitch): one node's
Open vSwitch crashes (SIGKILL) and the controller restarts without it; the rest goes on,
placements that touch the lost node are refused with 503 and change nothing, and when the
node comes back it is reconciled in full. A bridge deleted by hand is repaired by the
periodic audit.

compute1: web1, app1     compute2: web2      net1: the network node (probes)
acme/web lives on all three nodes, globex/app on compute1 and net1 only."""

import os
import time

import pytest

from conftest import (lab_prerequisites, lab_up_and_down, run_cli, two_tenant_config,
                      wait_for_value)
from tenantnet.errors import ApiError
from tenantnet.model import naming
from tenantnet.model.desired import node_state
from tenantnet.model.flows import node_flows
from tenantnet.model.flowspec import COOKIE_PREFIX
from tenantnet.southbound.ovsdb import NodeOvsdb

pytestmark = [pytest.mark.lab, pytest.mark.integration,
              pytest.mark.skipif(lab_prerequisites() is not None, reason=str(lab_prerequisites()))]

PREFIX = os.environ.get("TENANTNET_NODE_LOSS_PREFIX", "tnl")
AUDIT = 4.0                     # seconds: the restarted controller's audit interval
LOST = "compute2"


def cli(*args, check=True):
    return run_cli(PREFIX, *args, check=check, timeout=300)


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    yield from lab_up_and_down(PREFIX, tmp_path_factory.mktemp("node-loss") / "lab.yaml",
                               two_tenant_config(2, ("web1@compute1", "web2@compute2", "app1@compute1")))


def states(lab):
    return {s["node"]: s for s in lab.api(timeout=5).health()["node_states"]}


wait_for = wait_for_value


def our_cookies(lab, node, bridge):
    """Our cookies on *bridge*, as ovs-ofctl reads them (not the controller)."""
    out = lab.fabric.ovs(node).ofctl("dump-flows", bridge, check=False).stdout
    found = set()
    for line in out.splitlines():
        if "cookie=" in line:
            cookie = int(line.split("cookie=")[1].split(",")[0], 16)
            if cookie >> 32 == COOKIE_PREFIX:
                found.add(cookie)
    return found


def switch_state(lab, node):
    """What node *node* holds: {bridge: (ports, our flow cookies)}."""
    ovs = lab.fabric.ovs(node)
    out = {}
    for br in ovs.vsctl("list-br").stdout.split():
        ports = frozenset(ovs.vsctl("list-ports", br).stdout.split())
        out[br] = (ports, frozenset(our_cookies(lab, node, br)))
    return out


def desired_state(lab, node):
    """What the controller's model says *node* should hold, in switch_state's terms (the
    port numbers are read from the node's OVSDB to resolve the flows)."""
    topo = lab.topology_from_api()
    want = node_state(topo, node, "netdev")
    conn = NodeOvsdb(node, lab.fabric.ovs(node).unix_remote).connect(retry_for=5)
    try:
        snap = conn.snapshot()
        flows = node_flows(topo, node)
        out = {}
        for name, br in want.bridges.items():
            cookies = frozenset()
            if name in flows:
                pm = conn.portmap(name, snap)
                cookies = frozenset(f.resolve(pm).cookie() for f in flows[name].flows)
            ports = frozenset(br.ports)
            if br.common:
                # a common bridge also has bootstrap's ports (the uplink): those stay as
                # they are; ours are exact
                theirs = {p for p in snap["bridges"].get(name, {}).get("ports", [])
                          if p != name and snap["ports"][p]["external_ids"].get(
                              "tenantnet-owner") != "tenantnet"}
                ports |= frozenset(theirs)
            out[name] = (ports, cookies)
        return out
    finally:
        conn.close()


def test_node_loss_restart_refusal_recovery_and_audit(lab):
    topo = lab.topology()
    config_path = lab.meta()["config"]

    # -- one node's Open vSwitch crashes; the controller restarts without it -------------
    out = cli("lab", "stop", LOST).stdout
    assert "SIGKILL" in out
    assert not lab.fabric.ovs(LOST).running()
    lab.fabric.stop_process("controller")
    started = time.monotonic()
    lab.start_controller(topo, config_path,
                          ["--tenantnet-audit-interval", str(AUDIT)])

    def answers():
        try:
            return lab.api(timeout=1).health()
        except ApiError:
            return None
    health = wait_for("the restarted controller's API", answers, 15)
    assert time.monotonic() - started < 5.0, "the API took longer than 5 s to answer"
    health = wait_for("start-up done", lambda: (h := answers()) and h["status"] == "ok" and h,
                      10)
    by_node = {s["node"]: s for s in health["node_states"]}
    assert by_node[LOST]["state"] == "down", by_node
    assert "cannot reach OVSDB" in by_node[LOST]["reason"]
    assert by_node["compute1"]["state"] == by_node["net1"]["state"] == "up"
    with open(lab.controller_log()) as fh:
        log = fh.read()
    assert "Traceback" not in log, log[log.index("Traceback") - 400:][:3000]
    assert f"node {LOST} is down" in log, log[-3000:]

    # -- a placement that touches only healthy nodes goes on ----------------------------
    lab.add_vm("app2", "globex/app", "compute1")
    lab.wait_reachable(lab.topology_from_api(), ["app2"], timeout=30)

    # -- a placement on the lost node: 503, and nothing anywhere changed ----------------
    before = {n: switch_state(lab, n) for n in ("compute1", "net1")}
    vms_before = lab.api().list_vms()
    with pytest.raises(ApiError) as err:
        lab.add_vm("web3", "acme/web", LOST)
    assert err.value.status == 503 and f"node {LOST} is down" in str(err.value)
    proc = cli("vm", "add", "web3", "--network", "acme/web", "--node", LOST, check=False)
    assert proc.returncode == 1 and f"node {LOST} is down" in proc.stderr
    assert "Traceback" not in proc.stderr and len(proc.stderr.strip().splitlines()) == 1
    assert lab.api().list_vms() == vms_before
    assert {n: switch_state(lab, n) for n in ("compute1", "net1")} == before
    assert not os.path.exists(f"/run/netns/{PREFIX}-v-web3")

    # -- the node comes back: the placement, retried, goes through; the node is exact ---
    cli("lab", "start", LOST)
    deadline = time.monotonic() + 30
    while True:
        try:
            lab.add_vm("web3", "acme/web", LOST)
            break
        except ApiError as exc:
            assert exc.status == 503, exc
            assert time.monotonic() < deadline, f"{LOST} not back within 30 s: {exc}"
            time.sleep(0.5)
    assert states(lab)[LOST]["state"] == "up"
    lab.wait_reachable(lab.topology_from_api(), ["web3", "web2", "web1", "app2"], timeout=30)
    for node in ("compute1", LOST, "net1"):
        want = desired_state(lab, node)
        wait_for(f"{node} exactly as desired",
                 lambda: switch_state(lab, node) == want, 15)

    # -- a bridge deleted by hand is back within one audit interval ---------------------
    repairs = lab.api().health()["counters"]["audit_repairs"]
    bridge = naming.brint_name("globex/app")
    lab.fabric.ovs("compute1").vsctl("del-br", bridge)
    gone = time.monotonic()
    want = desired_state(lab, "compute1")
    assert bridge in want
    wait_for(f"{bridge} back", lambda: switch_state(lab, "compute1") == want, AUDIT + 10)
    assert time.monotonic() - gone <= AUDIT + 3, "not repaired within one audit interval"
    assert lab.api().health()["counters"]["audit_repairs"] > repairs
    with open(lab.controller_log()) as fh:
        assert f"audit repaired compute1: add bridge {bridge}" in fh.read()
    lab.wait_reachable(lab.topology_from_api(), ["app1", "app2"], timeout=30)
