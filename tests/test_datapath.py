"""The node's datapath type comes from the node (issue 8, kernel datapath correctness).

Node bootstrap records it (Open_vSwitch external_ids:tenantnet-datapath, and creates br-int /
br-tun with it); the controller reads it when it connects (NodeOvsdb.connect), the desired
state carries it, tenant bridges are created with it, and the controller never changes the
datapath type of an existing bridge. Static tunnel neighbours are a userspace-only step.

The first tests are pure (a recording stand-in for ovsdbapp's API). The others run real
ovsdb-server/ovs-vswitchd instances in namespaces (tnk-dp*). There is no openvswitch kernel
module here: ovs-vswitchd refuses to build a datapath_type=system bridge ("unknown datapath
type system") but OVSDB keeps the records, so for a system node the checks are on the
records, and a reconcile there ends in "ports without an OpenFlow port number"."""

import logging
import os
import shutil
import tempfile

import pytest

from conftest import lab_prerequisites, two_tenant_config
from tenantnet.controller.core import Core
from tenantnet.errors import SouthboundError
from tenantnet.lab import netns as ns
from tenantnet.lab.ovs import OvsInstance
from tenantnet.model import config, naming
from tenantnet.model.desired import node_state
from tenantnet.node.bootstrap import bootstrap_node
from tenantnet.node.hostops import ExecHost, NetnsNodeHost
from tenantnet.node.hostexec import NetnsExecutor
from tenantnet.southbound.ovsdb import NodeOvsdb, node_datapath

CFG = two_tenant_config(2, ("web1@compute1", "web2@compute2", "app1@compute1"))
CNB_CFG = "mode: cnb\n" + CFG
TENANT_BRIDGES = {naming.brint_name("acme/web"), naming.brtun_name("acme/web"),
                  naming.brint_name("globex/app"), naming.brtun_name("globex/app")}


def topo(text=CFG):
    return config.load_text(text, "t.yaml")


# -- pure ---------------------------------------------------------------------------------
def _snap(record=None, br_tun=None):
    snap = {"system": {"external_ids": {}}, "bridges": {}, "ports": {}, "interfaces": {}}
    if record is not None:
        snap["system"]["external_ids"]["tenantnet-datapath"] = record
    if br_tun is not None:
        snap["bridges"]["br-tun"] = {"datapath_type": br_tun}
    return snap


def test_node_datapath_prefers_the_bootstrap_record_then_br_tun():
    assert node_datapath(_snap("system", "netdev"))[0] == "system"
    assert node_datapath(_snap("netdev"))[0] == "netdev"
    assert node_datapath(_snap(None, "netdev"))[0] == "netdev"
    assert node_datapath(_snap(None, ""))[0] == "system"      # "" is Open vSwitch's system
    assert node_datapath(_snap("bogus", "netdev"))[0] == "netdev"
    assert node_datapath(_snap()) == (None, None)


class _Api:
    """Records the ovsdbapp commands NodeOvsdb.plan asks for."""

    def __getattr__(self, name):
        return lambda *args, **kwargs: (name, args, kwargs)


def _planner(datapath=None):
    conn = NodeOvsdb("compute1", "unix:/nonexistent")
    conn.api = _Api()
    conn.datapath = datapath
    return conn


def _existing(datapath_type):
    """A snapshot of a bootstrapped node whose common bridges have *datapath_type*."""
    common = {"external_ids": {}, "fail_mode": "standalone", "protocols": [],
              "other_config": {}, "controller": [], "ports": [],
              "datapath_type": datapath_type}
    return {"system": {"external_ids": {}}, "ports": {}, "interfaces": {},
            "bridges": {"br-int": dict(common, name="br-int"),
                        "br-tun": dict(common, name="br-tun")}}


@pytest.mark.parametrize("node_dp", ["system", "netdev"])
def test_plan_creates_tenant_bridges_with_the_nodes_datapath_and_never_sets_it(node_dp):
    conn = _planner()
    cmds, notes, _, _ = conn.plan(node_state(topo(), "compute1", node_dp), _existing(node_dp))
    add_br = {c[1][0]: c[2] for c in cmds if c[0] == "add_br"}
    assert set(add_br) == TENANT_BRIDGES
    assert all(kw["datapath_type"] == node_dp for kw in add_br.values())
    # db_set on a bridge never touches datapath_type (it would rebuild the bridge)
    for name, args, _ in cmds:
        if name == "db_set" and args[0] == "Bridge":
            assert "datapath_type" not in [col for col, _ in args[2:]], args
    assert not any("datapath_type" in n for n in notes)


def test_plan_leaves_a_mismatching_existing_bridge_alone_and_says_so(caplog):
    conn = _planner()
    desired = node_state(topo(CNB_CFG), "compute1", "system")
    with caplog.at_level(logging.WARNING, logger="tenantnet.southbound.ovsplan"):
        cmds, notes, _, _ = conn.plan(desired, _existing("netdev"))
        conn.plan(desired, _existing("netdev"))          # reported once, not every time
    assert not any(c[0] == "add_br" for c in cmds)          # CNB: common bridges only
    assert not any("datapath_type" in n for n in notes)
    warned = [r.getMessage() for r in caplog.records if "datapath_type netdev" in r.getMessage()]
    assert len(warned) == 2                                   # br-int and br-tun, once each
    assert all("node compute1" in w and "never changes" in w for w in warned)


def test_plan_without_a_known_datapath_refuses_to_create_a_bridge():
    conn = _planner(None)
    with pytest.raises(SouthboundError, match=r"compute1.*datapath type is not known.*"
                                              r"tenantnet node bootstrap"):
        conn.plan(node_state(topo(), "compute1", None), _existing("netdev"))
    # NodeOvsdb's own reading stands in when the desired state does not say
    cmds = _planner("netdev").plan(node_state(topo(), "compute1"), _existing("netdev")).commands
    assert {c[2]["datapath_type"] for c in cmds if c[0] == "add_br"} == {"netdev"}


class _Host:
    def __init__(self):
        self.neighbors = []

    def set_addresses(self, addresses):
        pass

    def set_tunnel_neighbors(self, entries, bridge="br-tun"):
        self.neighbors += entries
        return True


def test_core_carries_each_nodes_datapath_and_sets_neighbours_on_userspace_nodes_only():
    t = topo()
    hosts = {"compute1": _Host(), "compute2": _Host()}
    core = Core(t, pusher=None, hosts=hosts, managed_nodes={"compute1", "compute2", "net1"})
    core.nodes["compute1"].datapath = "system"
    core.nodes["compute2"].datapath = "netdev"
    core.nodes["net1"].datapath = "netdev"
    s1, s2 = core.node_state(t, "compute1"), core.node_state(t, "compute2")
    assert s1.datapath == "system" and s2.datapath == "netdev"
    assert s1.bridges[naming.brint_name("acme/web")].datapath_type == "system"
    ex = naming.ex_port_name("acme/web")
    core.endpoint_macs = {"compute1": {ex: "02:00:00:00:00:01"},
                          "compute2": {ex: "02:00:00:00:00:02"},
                          "net1": {ex: "02:00:00:00:00:03"}}
    core.resolve_tunnels(s1)
    core.resolve_tunnels(s2)
    assert hosts["compute1"].neighbors == []                  # kernel datapath: none
    assert ("198.19.100.11", "02:00:00:00:00:01") in hosts["compute2"].neighbors


def test_netns_node_host_sets_tunnel_neighbours_on_userspace_nodes_only():
    kernel = NetnsNodeHost("tnk-none", rundir="/nonexistent", datapath="system")
    assert kernel.set_tunnel_neighbor("198.19.0.12", "02:00:00:00:00:01") is None
    assert NetnsNodeHost("tnk-none").datapath == "netdev"        # the lab's nodes


# -- against real Open vSwitch ------------------------------------------------------------
needs_lab = pytest.mark.skipif(lab_prerequisites() is not None, reason=str(lab_prerequisites()))
MGMT_IP = "198.18.78.{}"
TRANSPORT = "198.19.0.{}/24"        # the config's compute1/compute2 transport addresses


def _node(netns, base, system_id):
    ns.delete(netns)
    ns.add(netns)
    for cmd in (["ip", "link", "add", "mgmt", "type", "veth", "peer", "name", "mgmt-peer"],
                ["ip", "link", "add", "eth1", "type", "veth", "peer", "name", "eth1-peer"],
                ["ip", "link", "set", "eth1-peer", "up"]):
        ns.run(cmd, netns=netns)
    for i, vm in enumerate(("web1", "app1", "web2")):
        tap = naming.vm_port_name(vm)
        ns.run(["ip", "link", "add", tap, "type", "veth", "peer", "name", f"tnk-vm{i}"],
               netns=netns)
        ns.run(["ip", "link", "set", tap, "up"], netns=netns)
    ovs = OvsInstance(os.path.join(base, netns), netns=netns, system_id=system_id)
    ovs.start()
    return ovs


@pytest.fixture
def nodes():
    """compute1 bootstrapped with datapath system, compute2 with netdev."""
    base = tempfile.mkdtemp(prefix="tnk-dp-", dir="/tmp")
    made = []
    try:
        kern = _node("tnk-dps", base, "compute1")
        made.append(("tnk-dps", kern))
        user = _node("tnk-dpn", base, "compute2")
        made.append(("tnk-dpn", user))
        # As `tenantnet node bootstrap --datapath system` on a host with the module loaded
        # (a stand-in module directory: the check is all it reads). Without host access,
        # since ovs-vswitchd cannot build br-tun here, there is no kernel br-tun to address.
        modules = os.path.join(base, "modules")
        os.makedirs(os.path.join(modules, "openvswitch"))
        bootstrap_node(kern.vsctl, "compute", "eth1", TRANSPORT.format(11),
                       MGMT_IP.format(11), datapath="system", system_id="compute1",
                       module_dir=modules)
        bootstrap_node(user.vsctl, "compute", "eth1", TRANSPORT.format(12), MGMT_IP.format(12),
                       datapath="netdev", system_id="compute2", ofctl=user.ofctl,
                       host=ExecHost(NetnsExecutor("tnk-dpn")))
        yield kern, user
    finally:
        for netns, ovs in made:
            ovs.stop()
            ns.delete(netns)
        for netns in ("tnk-dps", "tnk-dpn"):
            ns.delete(netns)
        shutil.rmtree(base, ignore_errors=True)


def _dp(ovs, bridge):
    return ovs.vsctl("get", "Bridge", bridge, "datapath_type").stdout.strip().strip('"')


@needs_lab
@pytest.mark.lab
def test_a_system_node_gets_system_bridges_and_keeps_its_br_tun(nodes):
    kern, _ = nodes
    assert kern.vsctl("get", "Open_vSwitch", ".",
                      "external_ids:tenantnet-datapath").stdout.strip().strip('"') == "system"
    assert _dp(kern, "br-tun") == "system" and _dp(kern, "br-int") == "system"
    conn = NodeOvsdb("compute1", kern.unix_remote).connect()
    try:
        assert conn.datapath == "system"
        for text in (CFG, CNB_CFG):               # DNB: tenant bridges; CNB: GRE on br-tun
            desired = node_state(topo(text), "compute1", conn.datapath)
            # ovs-vswitchd here has no kernel module: the records are made, ports get no
            # OpenFlow port number
            with pytest.raises(SouthboundError, match="without an OpenFlow port number"):
                conn.reconcile(desired, wait_ofport=0.5)
            snap = conn.snapshot()
            assert conn.plan(desired, snap).commands == []          # nothing left to do
            assert _dp(kern, "br-tun") == "system" and _dp(kern, "br-int") == "system"
            assert snap["bridges"]["br-tun"]["fail_mode"] == "secure"   # taken over
            if text is CFG:
                assert TENANT_BRIDGES <= set(snap["bridges"])
                for br in TENANT_BRIDGES:
                    assert _dp(kern, br) == "system", br
            else:
                assert not TENANT_BRIDGES & set(snap["bridges"])      # removed again
                assert naming.cnb_gre_port_name("compute2") in snap["bridges"]["br-tun"]["ports"]
    finally:
        conn.close()


@needs_lab
@pytest.mark.lab
def test_a_netdev_node_still_gets_netdev_and_a_mismatch_is_only_logged(nodes, caplog):
    _, user = nodes
    conn = NodeOvsdb("compute2", user.unix_remote).connect()
    try:
        assert conn.datapath == "netdev"
        desired = node_state(topo(), "compute2", conn.datapath)
        result = conn.reconcile(desired)
        assert result.portmaps[naming.brint_name("acme/web")]       # a working bridge
        for br in (naming.brint_name("acme/web"), naming.brtun_name("acme/web")):
            assert _dp(user, br) == "netdev"
        assert _dp(user, "br-tun") == "netdev"
        assert conn.reconcile(desired).commands == []
        # someone changes br-int to the kernel datapath: the controller leaves it so, and
        # says so
        user.vsctl("set", "Bridge", "br-int", "datapath_type=system")
        with caplog.at_level(logging.WARNING, logger="tenantnet.southbound.ovsplan"):
            assert conn.plan(desired, conn.snapshot()).commands == []
        assert _dp(user, "br-int") == "system"
        assert any("bridge br-int has datapath_type system" in r.getMessage()
                   for r in caplog.records)
    finally:
        conn.close()


@needs_lab
@pytest.mark.lab
def test_a_node_that_was_never_bootstrapped_is_a_clear_error(tmp_path):
    netns = "tnk-dpx"
    ns.delete(netns)
    ns.add(netns)
    ovs = OvsInstance(str(tmp_path / "ovs"), netns=netns)
    try:
        ovs.start()
        with pytest.raises(SouthboundError, match=r"node compute9 .*no datapath type.*"
                                                  r"tenantnet node bootstrap"):
            NodeOvsdb("compute9", ovs.unix_remote).connect(retry_for=10)
        # br-tun without the record: its datapath type is the node's
        ovs.vsctl("add-br", "br-tun", "--", "set", "Bridge", "br-tun", "datapath_type=netdev")
        conn = NodeOvsdb("compute9", ovs.unix_remote).connect(retry_for=10)
        assert conn.datapath == "netdev"
        conn.close()
    finally:
        ovs.stop()
        ns.delete(netns)
