"""Fault injection on the one-machine lab, as an operator does it: `tenantnet lab stop|start
controller`, `lab stop|start tenant:NAME` and `lab link down|up NODE transport`.

Every "no packet lost" check pings every 10 ms across the whole fault window, and checks
that it did: the first reply came before the fault, the last one after the recovery, and
every echo in between was answered (icmp_seq has no gap).

compute1: web1, app1     compute2: web2, app2     net1: the network node (probes)
acme/web is the provider's; globex/app is programmed by globex's own controller."""

import os
import time

import pytest

from conftest import lab_prerequisites, lab_up_and_down, nodes_yaml, run_cli, wait_for_value
from spanping import Pinger
from tenantnet.errors import ApiError

pytestmark = [pytest.mark.lab, pytest.mark.integration,
              pytest.mark.skipif(lab_prerequisites() is not None, reason=str(lab_prerequisites()))]

PREFIX = os.environ.get("TENANTNET_FAULTS_PREFIX", "tnft")

CONFIG = """\
mode: dnb
controller:
  management_ip: 198.18.0.1
  api_token: provider-lab-token
""" + nodes_yaml() + """\
tenants:
  - name: acme
    networks:
      - {name: web, segmentation_id: 100, cidr: 10.0.0.0/24, transport_cidr: 198.19.100.0/24}
  - name: globex
    token: globex-lab-token
    networks:
      - {name: app, segmentation_id: 200, cidr: 10.0.0.0/24, transport_cidr: 198.19.200.0/24,
         controller: "ssl:198.18.0.202:6653"}
vms:
  - {name: web1, network: acme/web, node: compute1}
  - {name: web2, network: acme/web, node: compute2}
  - {name: app1, network: globex/app, node: compute1}
  - {name: app2, network: globex/app, node: compute2}
"""


def cli(*args, check=True):
    return run_cli(PREFIX, *args, check=check, timeout=300)


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    yield from lab_up_and_down(PREFIX, tmp_path_factory.mktemp("faults") / "lab.yaml",
                               CONFIG)


wait_for = wait_for_value


def node_states(lab):
    try:
        return {s["node"]: s for s in lab.api(timeout=5).health()["node_states"]}
    except ApiError:
        return {}


def vm_ip(lab, name):
    return lab.api().get_vm(name)["ip"]


def test_status_and_vm_list_show_node_states(lab):
    st = lab.status()
    assert {n: s["state"] for n, s in st["nodes"].items()} == \
        {"compute1": "up", "compute2": "up", "net1": "up"}
    assert all(s["state_since"] and s["state_reason"] for s in st["nodes"].values())
    out = cli("lab", "status").stdout
    assert "state up since" in out
    out = cli("vm", "list").stdout
    assert "nodes: compute1 up, compute2 up, net1 up" in out


def test_controller_crash_loses_no_packet(lab):
    pinger = Pinger(lab, "web1", vm_ip(lab, "web2"))
    time.sleep(1.0)
    t_stop = time.time()
    out = cli("lab", "stop", "controller").stdout
    assert "SIGKILL" in out
    assert not lab.fabric.process_alive("controller")
    with pytest.raises(ApiError):
        lab.api(timeout=2).health()
    time.sleep(2.0)                      # the switches are without their controller a while
    out = cli("lab", "start", "controller").stdout
    assert "ready" in out
    health = lab.api(timeout=5).health()
    assert health["status"] == "ok"
    t_ready = time.time()
    assert lab.fabric.process_alive("controller")
    time.sleep(1.0)
    pinger.stop().assert_spans(t_stop, t_ready)
    # same command line as the lab's
    ctl = [c for c in lab.status()["controllers"] if c["role"] == "provider"][0]
    assert ctl["alive"] and "tenantnet.app" in ctl["command_line"]
    assert wait_for("every node up", lambda: {s["state"] for s in node_states(lab).values()}
                    == {"up"}, 30)


def test_tenant_controller_crash_keeps_its_switches_forwarding(lab):
    before = [c for c in lab.status()["controllers"] if c["tenant"] == "globex"][0]
    pinger = Pinger(lab, "app1", vm_ip(lab, "app2"))
    time.sleep(1.0)
    t_stop = time.time()
    out = cli("lab", "stop", "tenant:globex").stdout
    assert "SIGKILL" in out
    assert not lab.fabric.process_alive("tenant-globex")
    time.sleep(5.0)                      # longer than the switches' echo timeout (3 s)
    cli("lab", "start", "tenant:globex")
    t_back = time.time()
    after = [c for c in lab.status()["controllers"] if c["tenant"] == "globex"][0]
    assert after["alive"] and after["pid"] != before["pid"]
    assert after["argv"] == before["argv"]
    time.sleep(2.0)
    pinger.stop().assert_spans(t_stop, t_back)


def test_transport_link_down_is_seen_in_health_and_recovers(lab):
    out = cli("lab", "link", "down", "compute2", "transport").stdout
    assert "transport link cut" in out
    try:
        st = wait_for("compute2 down for its transport",
                      lambda: (s := node_states(lab).get("compute2")) and s["state"] == "down"
                      and s, 15)
        assert "transport unreachable" in st["reason"], st
        assert node_states(lab)["compute1"]["state"] == "up"
        assert not lab.ping("web1", vm_ip(lab, "web2"), wait=1.0)     # really cut
        status = lab.status()["nodes"]["compute2"]
        assert status["state"] == "down" and "transport" in status["state_reason"]
        assert "compute2 down since" in cli("vm", "list").stdout
    finally:
        out = cli("lab", "link", "up", "compute2").stdout
    assert "transport link restored" in out
    wait_for("compute2 up again", lambda: node_states(lab).get("compute2", {}).get("state")
             == "up", 30)
    lab.wait_reachable(lab.topology_from_api(), ["web2", "app2"], timeout=30)


def test_fault_commands_fail_in_one_line(lab):
    for args, text in ((("lab", "stop", "tenant:nobody"), "no such controller"),
                       (("lab", "start", "controller"), "still running"),
                       (("lab", "link", "down", "compute9"), "compute9")):
        proc = cli(*args, check=False)
        assert proc.returncode != 0, (args, proc.stdout)
        assert text in proc.stderr, (args, proc.stderr)
        assert "Traceback" not in proc.stderr
