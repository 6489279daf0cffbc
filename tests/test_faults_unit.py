"""Fault injection and the transport check, without a lab: the watcher marks a node whose
transport uplink lost its link down (its OVSDB connection kept) and reconciles it when the
link is back; `lab stop|start|link` targets are parsed, and host nodes refused, in one line."""

import types

import pytest

from test_node_health import FakeNode, fake_core
from tenantnet.controller import nodewatch
from tenantnet.controller.nodestate import DOWN, UP
from tenantnet.errors import LabError
from tenantnet.lab import faults


class LinkNode(FakeNode):
    def __init__(self, name):
        super().__init__(name)
        self.links = {"eth1": "up"}

    def link_state(self, ifname):
        return self.links.get(ifname)


def test_watcher_marks_a_node_down_while_its_transport_link_is_down(monkeypatch):
    core, resynced = fake_core(monkeypatch)
    node = core.nodes["compute2"] = LinkNode("compute2")
    node.is_connected = True
    core.states.set("compute2", UP, "reconciled at start-up")
    seen = []

    def wait(timeout=None):
        seen.append((timeout, core.states.state("compute2"), core.states.reason("compute2")))
        if len(seen) == 1:
            node.links["eth1"] = "down"          # the cable is cut
        if len(seen) == 3:
            node.links["eth1"] = "up"            # and plugged in again
        if len(seen) >= 4:
            core._stopping.set()
        return core._stopping.is_set()
    core._stopping.wait = wait
    core.nodewatch.watch("compute2")
    assert [s[1] for s in seen] == [UP, DOWN, DOWN, UP]
    assert seen[1][2] == "transport unreachable: uplink eth1 link down"
    assert all(s[0] == nodewatch.CHECK_INTERVAL for s in seen)
    assert node.closed == 0                       # OVSDB held all along
    assert resynced == [["compute2"]]             # reconciled in full when it came back


def test_a_node_without_link_state_is_never_marked_down_for_its_transport(monkeypatch):
    core, _ = fake_core(monkeypatch)              # FakeNode has no link_state at all
    assert core.nodewatch.transport_lost("compute1") is None
    core.nodes["compute1"] = LinkNode("compute1")
    core.nodes["compute1"].links = {}             # no uplink in its OVSDB
    assert core.nodewatch.transport_lost("compute1") is None


def test_fault_targets_and_link_kinds_fail_in_one_line():
    assert faults.process_name("controller") == "controller"
    assert faults.process_name("tenant:acme") == "tenant-acme"
    assert faults.is_controller("tenant:acme") and not faults.is_controller("compute1")
    with pytest.raises(LabError, match="tenant:NAME"):
        faults.process_name("tenant:")
    node = types.SimpleNamespace(kind="host", rec=None)
    fabric = types.SimpleNamespace(node=lambda name: node, prefix="tn", store=types.SimpleNamespace(
        state=types.SimpleNamespace(fabric=types.SimpleNamespace(netns="tn-fabric"))))
    with pytest.raises(LabError, match="^node h1 is a host node: `lab link` is not supported "
                                       "for host nodes$"):
        faults._link_ends(fabric, "h1", "transport")
    with pytest.raises(LabError, match="expected one of management, transport"):
        faults._link_ends(fabric, "h1", "storage")
    node.kind, node.rec = "emulated", types.SimpleNamespace(
        fabric_peers={"mgmt": "m-node-h1", "transport": "t-node-h1"})
    assert faults._link_ends(fabric, "h1", "transport") == [("tn-fabric", "t-node-h1")]
    assert faults._link_ends(fabric, "h1", "management") == [("tn-fabric", "m-node-h1")]
