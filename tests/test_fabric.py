"""Lab fabric mechanics on real namespaces and private Open vSwitch instances.

Needs root, iproute2, ethtool, ping and Open vSwitch (userspace datapath); skipped otherwise.
Uses lab prefix "tnt" and its own temporary state dirs, so it never meets a user's lab.
(Register the marker with `markers = lab: ...` in the pytest configuration.)
"""

import os
import shutil
import signal
import subprocess
import tempfile

import pytest

from tenantnet.errors import LabError
from tenantnet.lab import netns as ns
from tenantnet.lab.fabric import LabFabric, check_host
from tenantnet.node.procs import pid_alive, start_time

# Another lab already using "tnt" on this machine would make the tests fail (they never touch
# namespaces they did not create): pick another prefix with TENANTNET_TEST_PREFIX then.
PREFIX = os.environ.get("TENANTNET_TEST_PREFIX", "tnt")


def _host_problem():
    try:
        check_host()
    except LabError as exc:
        return str(exc)
    return None


_PROBLEM = _host_problem()
pytestmark = [pytest.mark.lab,
              pytest.mark.skipif(_PROBLEM is not None, reason=f"lab unavailable: {_PROBLEM}")]


def _ours():
    return {n for n in ns.list_namespaces() if n.startswith(PREFIX + "-")}


@pytest.fixture
def state_dir():
    # Short path: OVS unix sockets live under it.
    d = tempfile.mkdtemp(prefix=f"{PREFIX}-", dir="/tmp")
    yield d
    shutil.rmtree(d, ignore_errors=True)


def _attach(fab, node, port):
    """Test-only wiring, no tenant logic: port on br-int, br-int patched to br-tun, NORMAL."""
    ovs = fab.ovs(node)
    ovs.vsctl("add-port", "br-int", port,
              "--", "--may-exist", "add-port", "br-int", "int-tun",
              "--", "set", "interface", "int-tun", "type=patch", "options:peer=tun-int",
              "--", "--may-exist", "add-port", "br-tun", "tun-int",
              "--", "set", "interface", "tun-int", "type=patch", "options:peer=int-tun")
    ovs.ofctl("add-flow", "br-int", "table=0,priority=0,actions=NORMAL")


def _build(fab, endpoints=True):
    fab.up_fabric(management_cidr="198.18.0.0/24", transport_cidr="198.19.0.0/16")
    fab.add_controller("198.18.0.2", 24)
    info = {}
    for i, node in ((1, "n1"), (2, "n2")):
        info[node] = fab.add_node(node, "compute", f"198.18.0.{20 + i}", f"198.19.0.{20 + i}")
        if endpoints:
            fab.add_endpoint(f"e{i}", node, f"tap-e{i}")
            fab.configure_endpoint(f"e{i}", f"02:00:00:00:01:0{i}", f"10.0.0.{i}/24")
            _attach(fab, node, f"tap-e{i}")
    return info


@pytest.fixture(scope="class")
def lab():
    before = _ours()
    d = tempfile.mkdtemp(prefix=f"{PREFIX}-", dir="/tmp")
    fab = LabFabric(PREFIX, state_dir=d)
    try:
        info = _build(fab)
        yield fab, info, before
    finally:
        fab.down()
        shutil.rmtree(d, ignore_errors=True)


class TestSharedLab:
    """One lab (two nodes, one endpoint each) for the read-mostly checks; torn down at
    the end of the class, before the teardown tests below build their own."""

    def test_ping_between_endpoints(self, lab):
        fab, _, _ = lab
        res = fab.exec("e1", ["ping", "-c", "3", "-i", "0.2", "-W", "2", "10.0.0.2"])
        assert res.returncode == 0, res.stdout + res.stderr
        res = fab.exec("e2", ["ping", "-c", "1", "-W", "2", "10.0.0.1"])
        assert res.returncode == 0, res.stdout + res.stderr


    def test_endpoint_configuration_applied(self, lab):
        fab, _, _ = lab
        out = fab.exec("e1", ["ip", "-o", "link", "show", "eth0"], check=True).stdout
        assert "mtu 1400" in out and "02:00:00:00:01:01" in out
        feats = fab.exec("e1", ["ethtool", "-k", "eth0"], check=True).stdout
        assert "tx-checksumming: off" in feats


    def test_status_lists_nodes_and_endpoints(self, lab):
        fab, info, _ = lab
        st = fab.status()
        assert set(st["nodes"]) == {"n1", "n2"}
        for node in ("n1", "n2"):
            n = st["nodes"][node]
            assert n["netns"] == f"{PREFIX}-{node}" == info[node]["netns"]
            assert n["ovsdb_remote"] == info[node]["ovsdb_remote"]
            assert n["ovs_running"] is True
            assert {"br-tun", "br-int"} <= set(n["bridges"])
            assert "br-ex" not in n["bridges"]          # compute nodes only
        assert st["endpoints"]["e1"]["node"] == "n1"
        assert st["endpoints"]["e2"]["netns"] == fab.endpoint_netns("e2") == f"{PREFIX}-v-e2"
        assert st["controller"]["netns"] == f"{PREFIX}-ctl"


    def test_bootstrap_marks_common_bridges(self, lab):
        fab, _, _ = lab
        ovs = fab.ovs("n1")
        assert ovs.vsctl("get", "bridge", "br-tun", "datapath_type").stdout.strip() == "netdev"
        assert ovs.vsctl("get", "bridge", "br-tun", "external_ids:tenantnet-kind").stdout.strip() \
            == "common-tun"
        assert ovs.vsctl("get", "bridge", "br-int", "external_ids:tenantnet-owner").stdout.strip() \
            == "bootstrap"
        sysid = ovs.vsctl("get", "open_vswitch", ".", "external_ids:system-id").stdout.strip()
        assert sysid == "n1"


    def test_ovsdb_reachable_from_controller(self, lab):
        fab, info, _ = lab
        res = ns.run(["ovs-vsctl", f"--db={info['n2']['ovsdb_remote']}", "--timeout=10", "list-br"],
                     netns=fab.controller_netns, check=False)
        assert res.returncode == 0, res.stderr
        assert "br-tun" in res.stdout.split()


    def test_node_address_and_processes(self, lab):
        fab, _, _ = lab
        fab.ovs("n1").vsctl("add-port", "br-tun", "ex-tt", "--", "set", "interface", "ex-tt",
                            "type=internal")
        fab.set_node_address("n1", "ex-tt", "198.19.100.21/24")   # waits for the OVS port
        out = ns.run(["ip", "-o", "addr", "show", "dev", "ex-tt"],
                     netns=fab.node_netns("n1")).stdout
        assert "198.19.100.21/24" in out
        fab.del_node_address("n1", "ex-tt", "198.19.100.21/24")
        out = ns.run(["ip", "-o", "addr", "show", "dev", "ex-tt"],
                     netns=fab.node_netns("n1")).stdout
        assert "198.19.100.21" not in out

        log = os.path.join(fab.state_dir, "sleeper.log")
        pid = fab.start_process("sleeper", ["sleep", "60"], fab.endpoint_netns("e1"), log)
        assert fab.status()["processes"]["sleeper"]["alive"]
        fab.stop_process("sleeper")
        assert not pid_alive(pid)
        assert "sleeper" not in fab.status()["processes"]


    def test_remove_endpoint(self, lab):
        fab, _, _ = lab
        fab.add_endpoint("tmp", "n2", "tap-tmp", kind="probe")
        assert fab.endpoint_netns("tmp") == f"{PREFIX}-p-tmp" and ns.exists(f"{PREFIX}-p-tmp")
        fab.remove_endpoint("tmp")
        assert not ns.exists(f"{PREFIX}-p-tmp")
        assert not ns.link_exists("tap-tmp", netns=fab.node_netns("n2"))
        with pytest.raises(LabError):
            fab.endpoint_netns("tmp")


    def test_instances_sharing_one_state_never_lose_changes(self, lab):
        fab, _, _ = lab
        other = LabFabric(PREFIX, state_dir=fab.state_dir)     # as another process would
        other.add_endpoint("x1", "n1", "tap-x1", kind="probe")
        fab.add_endpoint("x2", "n2", "tap-x2", kind="probe")   # fab's copy was stale
        third = LabFabric(PREFIX, state_dir=fab.state_dir)
        assert {"x1", "x2"} <= set(third.status()["endpoints"])
        fab.remove_endpoint("x1")
        other.remove_endpoint("x2")
        assert not {"x1", "x2"} & set(third.status()["endpoints"])


def _pids(fab):
    """[(pid, start_time)] of every process the lab recorded (the start time tells a pid
    reused later from ours)."""
    pids = []
    for rec in fab.state.nodes.values():
        pids += [(p, rec.start_times[d]) for d, p in rec.pids.items() if p]
    pids += [(r.pid, r.start_time) for r in fab.state.processes.values()]
    assert all(st is not None for _, st in pids)
    return pids


def test_down_removes_everything_and_is_repeatable(state_dir):
    before = _ours()
    fab = LabFabric(PREFIX, state_dir=state_dir)
    _build(fab, endpoints=False)
    fab.add_endpoint("e1", "n1", "tap-e1")
    fab.start_process("sleeper", ["sleep", "60"], fab.node_netns("n2"),
                      os.path.join(state_dir, "logs", "sleeper.log"))
    pids = _pids(fab)
    assert len(pids) == 5                     # 2 x (ovsdb-server, ovs-vswitchd) + sleeper
    created = set(fab.state.namespaces)
    assert created == {f"{PREFIX}-{n}" for n in ("fabric", "ctl", "n1", "n2", "v-e1")}

    fab.down()
    assert _ours() <= before and not (created & set(ns.list_namespaces()))
    assert not any(pid_alive(*p) for p in pids)
    assert not os.path.exists(os.path.join(state_dir, "state.json"))
    assert not os.path.exists(os.path.join(state_dir, "nodes"))
    fab.down()                                # second time: nothing to do, no error
    LabFabric(PREFIX, state_dir=state_dir).down()


def test_down_after_crash_and_manual_kills(state_dir):
    before = _ours()
    fab = LabFabric(PREFIX, state_dir=state_dir)
    _build(fab, endpoints=False)
    long_name = "a-rather-long-node-name-01"      # veth names in the fabric stay <= 15
    fab.add_node(long_name, "network", "198.18.0.30", "198.19.0.30")
    peers = fab.state.nodes[long_name].fabric_peers.values()
    assert all(len(p) <= 15 for p in peers)
    assert "br-ex" in fab.status()["nodes"][long_name]["bridges"]
    fab.add_endpoint("e1", "n1", "tap-e1")
    fab.start_process("sleeper", ["sleep", "60"], fab.endpoint_netns("e1"),
                      os.path.join(state_dir, "sleeper.log"))
    pids = _pids(fab)
    created = set(fab.state.namespaces)

    # "crash": kill every recorded process by hand, remove a namespace by hand, and tear
    # down from a fresh object that only has the state file (as another process would).
    for pid, _ in pids:
        os.kill(pid, signal.SIGKILL)
    subprocess.run(["ip", "netns", "del", f"{PREFIX}-v-e1"], check=True)
    del fab

    again = LabFabric(PREFIX, state_dir=state_dir)
    assert set(again.state.namespaces) == created
    again.down()                  # returns only once every recorded process is gone
    assert _ours() <= before and not (created & set(ns.list_namespaces()))
    assert not [p for p in pids if pid_alive(*p)]
    again.down()


def test_down_ends_processes_the_lab_did_not_start_itself(state_dir):
    """A daemon started inside a lab namespace by hand (as `lab exec e1 -- iperf3 -s -D`
    would) does not outlive `lab down`: it is found with `ip netns pids` and ended by pid."""
    fab = LabFabric(PREFIX, state_dir=state_dir)
    _build(fab, endpoints=False)
    fab.add_endpoint("e1", "n1", "tap-e1")
    netns = fab.endpoint_netns("e1")
    # a double fork: the daemon's parent is gone, nothing of the lab records it
    subprocess.run(["ip", "netns", "exec", netns, "sh", "-c",
                    "setsid sleep 300 </dev/null >/dev/null 2>&1 &"], check=True)
    pids = [int(p) for p in subprocess.run(["ip", "netns", "pids", netns], check=True,
                                           capture_output=True, text=True).stdout.split()]
    assert pids, "the daemon did not start"
    started = [(pid, start_time(pid)) for pid in pids]
    fab.down()
    assert not [p for p in started if pid_alive(*p)]
    assert netns not in ns.list_namespaces()


def test_validation_errors_touch_nothing(state_dir):
    fab = LabFabric(PREFIX, state_dir=state_dir)
    with pytest.raises(LabError, match="up_fabric"):
        fab.add_node("n1", "compute", "198.18.0.21", "198.19.0.21")
    with pytest.raises(LabError, match="prefix"):
        LabFabric("Bad-Prefix", state_dir=state_dir)
    assert not os.path.exists(os.path.join(state_dir, "state.json"))
