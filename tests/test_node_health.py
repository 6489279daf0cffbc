"""Node loss, without switches: the back-off, the node state table and its log, the watcher's
rounds, placements refused with 503 while a node they touch is down, and the tenant
controller's back-off while the provider's API does not answer."""

import logging
import types

import pytest

from conftest import two_tenant_config
from tenantnet.controller import nodewatch
from tenantnet.controller import tenant as tenant_mod
from tenantnet.controller.core import Core
from tenantnet.controller.placement import VmPlacement
from tenantnet.controller.nodestate import DOWN, RECONCILING, UP, Backoff, NodeStates, iso
from tenantnet.errors import ApiError, PlacementError, SouthboundError
from tenantnet.model import config
from tenantnet.model.topology import Topology


# -- Backoff ------------------------------------------------------------------------------
def test_backoff_doubles_up_to_its_cap_and_starts_again_after_reset():
    b = Backoff(0.5, 8.0)
    assert [b.next() for _ in range(7)] == [0.5, 1.0, 2.0, 4.0, 8.0, 8.0, 8.0]
    b.reset()
    assert b.next() == 0.5


def test_backoff_refuses_nonsense():
    for args in ((0, 1), (2, 1), (1, 2, 0.5)):
        with pytest.raises(ValueError):
            Backoff(*args)


# -- NodeStates ---------------------------------------------------------------------------
class Clock:
    def __init__(self):
        self.now = 1_700_000_000.0

    def __call__(self):
        return self.now


def test_states_start_down_and_record_time_and_reason_of_each_change():
    clock = Clock()
    st = NodeStates(["a", "b"], clock=clock)
    assert st.state("a") == DOWN and st.reason("a") == "not connected yet"
    clock.now += 5
    assert st.set("a", RECONCILING, "reached") is True
    clock.now += 1
    st.set("a", UP, "reconciled")
    rows = {r["node"]: r for r in st.as_list()}
    assert rows["a"] == {"node": "a", "state": "up", "since": iso(clock.now),
                         "since_epoch": round(clock.now, 3), "reason": "reconciled"}
    assert rows["b"]["state"] == "down"
    assert st.up_nodes() == ["a"]
    assert st.down_among(["a", "b", "unmanaged"]) == [("b", DOWN, "not connected yet")]
    # the same state again changes only the reason, not the time
    since = rows["a"]["since"]
    clock.now += 10
    assert st.set("a", UP, "still fine") is False
    assert st.as_list()[0]["since"] == since and st.reason("a") == "still fine"
    assert st.changes == 2
    with pytest.raises(ValueError):
        st.set("a", "sideways", "?")


def test_iso_is_utc_with_milliseconds():
    assert iso(0.25) == "1970-01-01T00:00:00.250Z"


def test_each_change_is_logged_once_and_a_repeating_failure_is_not_logged_again(caplog):
    st = NodeStates(["n"])
    caplog.set_level(logging.DEBUG, logger="tenantnet.controller.nodes")

    def loud():
        return [(r.levelname, r.getMessage()) for r in caplog.records
                if r.levelno >= logging.INFO]

    st.set("n", DOWN, "refused")                    # never reached: said once
    assert loud() == [("WARNING", "node n is down: refused")]
    caplog.clear()
    st.set("n", DOWN, "refused again")              # already said: reason only, no line
    assert loud() == []
    for _ in range(5):                              # connects, reconcile fails, down again
        st.set("n", RECONCILING, "reached")
        st.set("n", DOWN, "reconcile failed: no br-tun")
    assert loud() == [
        ("INFO", "node n is reconciling (was down): reached"),
        ("WARNING", "node n is down (was reconciling): reconcile failed: no br-tun")]
    caplog.clear()
    st.set("n", RECONCILING, "reached")
    st.set("n", UP, "reconciled")
    st.set("n", DOWN, "OVSDB connection lost")      # a new outage is logged again
    assert loud() == [("INFO", "node n is up (was reconciling): reconciled"),
                      ("WARNING", "node n is down (was up): OVSDB connection lost")]


# -- the core's watcher, with nodes that are not switches ---------------------------------
class FakeNode:
    """Stands in for southbound.ovsdb.NodeOvsdb: connect() fails *failures* times."""

    def __init__(self, name, failures=0):
        self.node = name
        self.failures = failures
        self.datapath = "netdev"
        self.is_connected = False
        self.closed = 0

    def connect(self, retry_for=0, attempt_timeout=5.0, deferred=False):
        if self.failures:
            self.failures -= 1
            raise SouthboundError(f"node {self.node}: cannot reach OVSDB at tcp:x: "
                                  "Connection refused")
        self.is_connected = True
        return self

    def connected(self):
        return self.is_connected

    def close(self):
        self.closed += 1
        self.is_connected = False

    def owned(self):
        return {"bridges": [], "ports": {}}


def fake_core(monkeypatch, failures=None, retry_max=8.0):
    topo = config.load_text(two_tenant_config(2, ("web1@compute1", "web2@compute2",
                                                  "app1@compute1")), "t.yaml")
    core = Core(topo, pusher=None, retry_max=retry_max)
    failures = failures or {}
    core.nodes = {n: FakeNode(n, failures.get(n, 0)) for n in core.nodes}
    resynced = []

    def resync(names, why):
        for n in names:
            core.states.set(n, UP, why)
        resynced.append(list(names))
        return list(names)
    monkeypatch.setattr(core.nodewatch, "resync", resync)
    monkeypatch.setattr(core, "forget", lambda name: None)
    return core, resynced


def run_watcher(core, name, rounds):
    """Run node *name*'s watcher until it has waited *rounds* times; the waits it asked
    for (the back-off) are returned instead of slept."""
    waits = []

    def wait(timeout=None):
        waits.append(timeout)
        if len(waits) >= rounds:
            core._stopping.set()
        return core._stopping.is_set()
    core._stopping.wait = wait
    core.nodewatch.watch(name)
    return waits


def test_watcher_retries_a_down_node_with_a_capped_backoff_then_reconciles_it(monkeypatch):
    core, resynced = fake_core(monkeypatch, failures={"compute2": 7}, retry_max=4.0)
    waits = run_watcher(core, "compute2", rounds=9)
    # seven refused attempts, each followed by a longer wait (capped), then up and checked
    assert waits[:7] == [0.5, 1.0, 2.0, 4.0, 4.0, 4.0, 4.0]
    assert resynced == [["compute2"]]
    assert core.states.state("compute2") == UP
    assert waits[7:] == [nodewatch.CHECK_INTERVAL] * 2


def test_watcher_sees_a_broken_connection_and_reconnects_at_once(monkeypatch):
    core, resynced = fake_core(monkeypatch)
    node = core.nodes["net1"]
    node.is_connected = True
    core.states.set("net1", UP, "reconciled at start-up")
    waits = []

    def wait(timeout=None):
        waits.append(timeout)
        if len(waits) == 1:
            node.is_connected = False          # the connection breaks
        if len(waits) >= 3:
            core._stopping.set()
        return core._stopping.is_set()
    core._stopping.wait = wait
    core.nodewatch.watch("net1")
    assert node.closed == 1                    # the broken connection was closed
    assert resynced == [["net1"]]              # and the node reconciled in full again
    assert waits == [nodewatch.CHECK_INTERVAL] * 3   # no back-off before the first attempt
    assert core.states.state("net1") == UP


# -- placements and node states ----------------------------------------------------------
def test_placement_touching_a_down_node_is_refused_with_503_and_changes_nothing(monkeypatch):
    core, _ = fake_core(monkeypatch)
    for n in ("compute1", "net1"):
        core.states.set(n, UP, "test")
    core.states.set("compute2", DOWN, "cannot reach OVSDB at tcp:198.18.0.12:6640")
    realised = []
    monkeypatch.setattr(core, "realise", lambda topo, nodes, **kw: realised.append(
        sorted(nodes)) or {"ovsdb_ms": 0, "openflow_ms": 0})
    before = sorted(core.topo.vms())
    # acme/web is on compute2 (web2): any placement in it touches compute2
    for node in ("compute2", "compute1"):
        with pytest.raises(PlacementError) as err:
            core.add_vm({"name": "web9", "network": "acme/web", "node": node})
        assert err.value.status == 503
        assert str(err.value).startswith("node compute2 is down: cannot reach OVSDB at "
                                          "tcp:198.18.0.12:6640; placements that touch it")
    with pytest.raises(PlacementError) as err:
        core.del_vm("web1")
    assert err.value.status == 503
    assert sorted(core.topo.vms()) == before and realised == []
    assert core.counters["refused_node_down"] == 3
    # globex/app lives on compute1 and net1 only: it goes on
    out = core.add_vm({"name": "app9", "network": "globex/app", "node": "compute1"})
    assert out["node"] == "compute1" and realised == [["compute1", "net1"]]
    assert "app9" in core.topo.vms()
    # bad input is still a 400-class error first, not a 503
    with pytest.raises(Exception) as err:
        core.add_vm({"name": "web9", "network": "acme/web", "node": "compute9"})
    assert getattr(err.value, "status", 400) != 503


def test_a_refused_placement_does_not_sink_others_in_the_same_group(monkeypatch):
    core, _ = fake_core(monkeypatch)
    core.states.set("compute1", UP, "test")
    core.states.set("net1", UP, "test")
    monkeypatch.setattr(core, "realise", lambda topo, nodes, **kw: {})
    reqs = [VmPlacement("add", spec={"name": "web9", "network": "acme/web",
                                     "node": "compute1"}),
            VmPlacement("add", spec={"name": "app9", "network": "globex/app",
                                     "node": "compute1"})]
    core.service.apply(reqs)
    assert reqs[0].error is not None and reqs[0].error.status == 503
    assert reqs[1].error is None and reqs[1].result["name"] == "app9"
    assert "web9" not in core.topo.vms() and "app9" in core.topo.vms()


def test_health_carries_node_states_and_counters(monkeypatch):
    core, _ = fake_core(monkeypatch)
    core.states.set("net1", UP, "reconciled")
    health = core.health()
    assert [(s["node"], s["state"]) for s in health["node_states"]] == [
        ("compute1", "down"), ("compute2", "down"), ("net1", "up")]
    assert set(health["counters"]) >= {"resyncs", "audit_repairs", "audits"}
    assert core.node_states() == health["node_states"]


# -- the tenant controller while the provider's API does not answer -----------------------
class DeadApi:
    def __init__(self, answers):
        self.answers = list(answers)
        self.endpoint = "http://198.18.0.1:8080"

    def topology(self, **_kw):
        ans = self.answers.pop(0) if self.answers else ApiError(0, "connection refused")
        if isinstance(ans, Exception):
            raise ans
        return ans


def test_tenant_controller_backs_off_and_logs_once_per_change(caplog, monkeypatch):
    tc = tenant_mod.TenantCore(pusher=None, tenant="acme", api="http://198.18.0.1:8080",
                               poll_interval=0.2)
    # what the API answers, whatever its wire type: only the tenant is looked at here
    topo = types.SimpleNamespace(tenant="acme")
    monkeypatch.setattr(tenant_mod, "topology_from_api", lambda data: Topology())
    down = ApiError(0, "connection refused")
    tc.client = DeadApi([down] * 6 + [topo, topo, down, topo])
    waits = []

    def wait(timeout=None):
        waits.append(timeout)
        if len(waits) > 10:
            return True
        return False
    tc._stop = type("Stop", (), {"wait": staticmethod(wait)})()
    tc._sync_all = lambda: None
    caplog.set_level(logging.DEBUG, logger="tenantnet.controller.tenant")
    tc._poll()
    assert waits[:8] == [0.2, 0.4, 0.8, 1.6, 3.2, 5.0, 5.0, 0.2]
    lines = [(r.levelname, r.getMessage().split(" (")[0].split(";")[0]) for r in caplog.records
             if r.levelno >= logging.INFO]
    assert lines == [
        ("WARNING", "tenant acme: the provider's API does not answer"),
        ("INFO", "tenant acme: the provider's API answers again"),
        ("WARNING", "tenant acme: the provider's API does not answer"),
        ("INFO", "tenant acme: the provider's API answers again")]
