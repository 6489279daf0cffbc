"""FlowPusher / TenantnetApp against a real Open vSwitch (userspace datapath).

Harness (one per module):
  * a fresh network namespace tnx-b-<pid> holding a private OvsInstance (its own
    ovsdb-server + ovs-vswitchd, run/db/log dirs under /tmp/tnx-b-<pid>/) with bridge
    tnx-b-br (datapath_type=netdev, fail_mode=secure, protocols=OpenFlow13);
  * the os-ken controller runs IN THIS PROCESS via tenantnet.controller.runner.ControllerRuntime,
    whose thread enters the same namespace (setns) before starting os-ken, so every
    os-ken thread and socket lives there and the bridge reaches it on the namespace's
    own 127.0.0.1. Nothing is created in the root namespace except the /tmp dir.
  * the app's core (Settings.core_factory, handed in as an os-ken context) is a StubCore that records connects/disconnects and, when
    given desired flows, syncs them on every connect (the production path).
The test thread stays in the root namespace; ovs-vsctl/ovs-ofctl reach the instance
through its unix sockets. Requires root and Open vSwitch; skipped otherwise.
"""

import os
import re
import shutil
import signal
import socket
import sys
import threading
import time

import pytest

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from tenantnet.controller.settings import CONTEXT, Settings  # noqa: E402
from tenantnet.southbound import ofctl  # noqa: E402
from tenantnet.southbound.ofswitch import STREAM_PART  # noqa: E402
from tenantnet.controller import ofconn
from tenantnet.controller import runner as ofrunner
from tenantnet.errors import SouthboundError  # noqa: E402
from tenantnet.model.flowspec import COOKIE_PREFIX, Flow  # noqa: E402
from tenantnet.lab import netns as ns        # noqa: E402
from tenantnet.lab.ovs import OvsInstance    # noqa: E402

TAG = f"tnx-b-{os.getpid()}"
BASE = f"/tmp/{TAG}"
BRIDGE = "tnx-b-br"
DPID = 0x00000000000000B1
PORTS = {"tnx-b-p1": 1, "tnx-b-p2": 2}
ECHO_INTERVAL, ECHO_MAX = 1, 2

pytestmark = [pytest.mark.lab, pytest.mark.integration, pytest.mark.skipif(
    os.geteuid() != 0 or (not shutil.which("ovs-vswitchd") and
                          not os.path.exists("/usr/sbin/ovs-vswitchd")),
    reason="needs root and Open vSwitch")]


# -- stub core ----------------------------------------------------------------------------

class StubCore:
    def __init__(self, pusher, app):
        self.pusher = pusher
        self.app = app
        self.cond = threading.Condition()
        self.events = []             # ("up"|"down", dpid, monotonic time)
        self.desired = None          # flows to sync on connect (None: do nothing)
        self.sync_results = []       # result dict or exception of each on-connect sync
        self.started = self.stopped = False

    def start(self):
        self.started = True

    def stop(self):
        self.stopped = True

    def switch_connected(self, dpid):
        # called in the app's event thread, which delivers the replies a sync waits for:
        # the sync runs in a thread of its own (controller.ofapp)
        threading.Thread(target=self._connected, args=(dpid,), daemon=True).start()

    def _connected(self, dpid):
        result = None
        if self.desired is not None:
            try:
                result = self.pusher.sync(dpid, self.desired, PORTS)
            except Exception as exc:   # recorded for the test to see
                result = exc
        with self.cond:
            if self.desired is not None:
                self.sync_results.append(result)
            self.events.append(("up", dpid, time.monotonic()))
            self.cond.notify_all()

    def switch_disconnected(self, dpid):
        with self.cond:
            self.events.append(("down", dpid, time.monotonic()))
            self.cond.notify_all()

    def wait_event(self, kind, after, timeout):
        """Time of the first *kind* event later than index *after*, or None."""
        deadline = time.monotonic() + timeout
        with self.cond:
            while True:
                for ev in self.events[after:]:
                    if ev[0] == kind:
                        return ev[2]
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return None
                self.cond.wait(remaining)


# -- harness ------------------------------------------------------------------------------

def _free_port_in(netns):
    """A free TCP port on 127.0.0.1 inside *netns* (probed from a thread living there)."""
    out = {}

    def probe():
        try:
            ofrunner.enter_netns(netns)
            s = socket.socket()
            s.bind(("127.0.0.1", 0))
            out["port"] = s.getsockname()[1]
            s.close()
        except Exception as exc:
            out["error"] = exc

    t = threading.Thread(target=probe)
    t.start()
    t.join()
    if "error" in out:
        raise out["error"]
    return out["port"]


class Lab:
    def __init__(self):
        self.netns = TAG
        self.ovs = OvsInstance(os.path.join(BASE, "ovs"), netns=self.netns)
        self.runtime = None
        self.port = None

    def start(self):
        os.makedirs(BASE, exist_ok=True)
        ns.add(self.netns)
        self.ovs.start()
        self.port = _free_port_in(self.netns)
        settings = Settings(config="(none: a stub core)", echo_interval=ECHO_INTERVAL,
                            echo_max_unreplied=ECHO_MAX,
                            core_factory=lambda pusher, app, _settings: StubCore(pusher, app))
        self.runtime = ofrunner.ControllerRuntime(
            listen_host="127.0.0.1", listen_port=self.port, netns=self.netns,
            contexts={CONTEXT: settings}).start()
        self.app = self.runtime.app("TenantnetApp")
        self.core = self.app.core
        self.pusher = self.app.pusher
        self.ovs.vsctl(
            "add-br", BRIDGE, "--", "set", "bridge", BRIDGE, "datapath_type=netdev",
            "fail_mode=secure", "protocols=OpenFlow13",
            f"other_config:datapath-id={DPID:016x}")
        for name, ofport in PORTS.items():
            self.ovs.vsctl("add-port", BRIDGE, name, "--", "set", "interface", name,
                           "type=internal", f"ofport_request={ofport}")
        self.connect()
        assert self.pusher.wait_connected(DPID, 15), "bridge did not connect"

    def connect(self):
        self.ovs.vsctl("set-controller", BRIDGE, f"tcp:127.0.0.1:{self.port}")

    def disconnect(self):
        self.ovs.vsctl("del-controller", BRIDGE)

    def stop(self):
        try:
            if self.runtime is not None:
                self.runtime.stop()
        finally:
            pid = self.ovs.pid("ovs-vswitchd")
            if pid:                       # in case a test left it stopped
                try:
                    os.kill(pid, signal.SIGCONT)
                except ProcessLookupError:
                    pass
            self.ovs.stop()
            ns.delete(self.netns)
            shutil.rmtree(BASE, ignore_errors=True)

    # -- looking at the switch --------------------------------------------------------
    def dump(self):
        """[(cookie, table, priority, match, actions)] from ovs-ofctl dump-flows."""
        out = self.ovs.ofctl("dump-flows", "--no-stats", BRIDGE).stdout
        rows = []
        for line in out.splitlines():
            line = line.strip()
            if not line or line.startswith("OFPST_FLOW") or line.startswith("NXST_FLOW"):
                continue
            m = re.match(r"(?:cookie=(0x[0-9a-f]+), )?(?:table=(\d+), )?priority=(\d+)"
                         r"(?:,(\S+))? actions=(\S+)$", line)
            assert m, f"cannot parse flow line {line!r}"
            cookie, table, prio, match, actions = m.groups()
            rows.append((int(cookie or "0", 16), int(table or 0), int(prio), match or "",
                         actions))
        return sorted(rows)

    def ours(self):
        return [r for r in self.dump() if r[0] >> 32 == COOKIE_PREFIX]


@pytest.fixture(scope="module")
def lab():
    lab = Lab()
    try:
        lab.start()
        yield lab
    finally:
        lab.stop()


@pytest.fixture
def clean(lab):
    """Start every test with none of our flows and a clean foreign-flow slate."""
    lab.core.desired = None
    assert lab.pusher.wait_connected(DPID, 15)
    lab.pusher.sync(DPID, [], PORTS)           # ours, through the pusher
    lab.ovs.ofctl("del-flows", BRIDGE)          # whatever else a test left
    lab.ovs.vsctl("clear", "Bridge", BRIDGE, "flow_tables")
    assert lab.dump() == []
    return lab


# -- the desired flows and how the switch shows them ---------------------------------

def desired_flows():
    return [
        Flow.make(0, 100, {"in_port": "tnx-b-p1", "vlan_vid": 10},
                  [("pop_vlan",), ("output", "tnx-b-p2")], rule="vlan-in"),
        Flow.make(0, 90, {"in_port": "tnx-b-p2"},
                  [("push_vlan",), ("set_field", "vlan_vid", 20), ("output", "tnx-b-p1")],
                  rule="vlan-out"),
        Flow.make(0, 50, {"eth_dst": "02:00:00:00:00:01"}, [], goto=1, rule="to-t1"),
        Flow.make(0, 40, {"in_port": "tnx-b-p1", "eth_type": 0x0806},
                  [("set_field", "tunnel_id", 100), ("output", "IN_PORT")], rule="tun"),
        Flow.make(1, 10, {"tunnel_id": 100}, [("output", "LOCAL")], rule="local"),
        Flow.make(1, 5, {}, [("output", "NORMAL")], rule="normal"),
        Flow.make(0, 0, {}, [], rule="drop"),
    ]


EXPECTED_TEXT = {   # rule -> (table, priority, match, actions) as ovs-ofctl prints them
    "vlan-in": (0, 100, "in_port=1,dl_vlan=10", "pop_vlan,output:2"),
    "vlan-out": (0, 90, "in_port=2",
                 "push_vlan:0x8100,set_field:4116->vlan_vid,output:1"),
    "to-t1": (0, 50, "dl_dst=02:00:00:00:00:01", "goto_table:1"),
    "tun": (0, 40, "arp,in_port=1", "set_field:0x64->tun_id,IN_PORT"),
    "local": (1, 10, "tun_id=0x64", "LOCAL"),
    "normal": (1, 5, "", "NORMAL"),
    "drop": (0, 0, "", "drop"),
}


def expected_rows(flows):
    return sorted((f.resolve(PORTS).cookie(),) + EXPECTED_TEXT[f.rule] for f in flows)


# -- pure translation (no switch) --------------------------------------------------------

def test_plan_sync_pure():
    flows = [f.resolve(PORTS) for f in desired_flows()]
    cookies = {f.cookie() for f in flows}
    stale = (COOKIE_PREFIX << 32) | 1
    add, delete = ofctl.plan_sync(flows + flows[:1], cookies - {flows[0].cookie()}
                                  | {stale, 0x1234})
    assert add == [flows[0]] and delete == [stale]
    clash = Flow.make(0, 100, {"in_port": 1, "vlan_vid": 10}, [("output", 3)])
    with pytest.raises(ValueError):
        ofctl.plan_sync(flows + [clash], set())


# -- against the switch ------------------------------------------------------------------

def test_sync_installs_exactly_desired(clean):
    lab = clean
    flows = desired_flows()
    result = lab.pusher.sync(DPID, flows, PORTS)
    assert result["added"] == len(flows) and result["removed"] == 0
    assert result["mode"] == "bundle"
    assert lab.dump() == expected_rows(flows)
    assert lab.pusher.installed_cookies(DPID) == {f.resolve(PORTS).cookie() for f in flows}


def test_second_sync_is_noop(clean):
    lab = clean
    lab.pusher.sync(DPID, desired_flows(), PORTS)
    before = lab.dump()
    assert lab.pusher.sync(DPID, desired_flows(), PORTS) == dict(added=0, removed=0,
                                                                   mode=None)
    assert lab.dump() == before


def test_changing_one_flow_adds_one_removes_one(clean):
    lab = clean
    flows = desired_flows()
    lab.pusher.sync(DPID, flows, PORTS)
    changed = list(flows)
    changed[0] = Flow.make(0, 100, {"in_port": "tnx-b-p1", "vlan_vid": 10},
                           [("pop_vlan",), ("output", "tnx-b-p1")], rule="vlan-in")
    result = lab.pusher.sync(DPID, changed, PORTS)
    assert (result["added"], result["removed"]) == (1, 1)
    rows = lab.dump()
    new_cookie = changed[0].resolve(PORTS).cookie()
    assert (new_cookie, 0, 100, "in_port=1,dl_vlan=10", "pop_vlan,output:1") in rows
    assert flows[0].resolve(PORTS).cookie() not in {r[0] for r in rows}
    assert len(rows) == len(flows)
    # a changed match/priority (not just actions) is an add + a real delete
    moved = list(changed)
    moved[-1] = Flow.make(1, 1, {}, [], rule="drop")
    result = lab.pusher.sync(DPID, moved, PORTS)
    assert (result["added"], result["removed"]) == (1, 1)
    assert [r for r in lab.dump() if r[2] == 0 or r[2] == 1] == [
        (moved[-1].resolve(PORTS).cookie(), 1, 1, "", "drop")]


def test_foreign_flows_untouched(clean):
    lab = clean
    lab.ovs.ofctl("add-flow", BRIDGE, "table=0,priority=200,cookie=0x1234,arp,actions=NORMAL")
    lab.ovs.ofctl("add-flow", BRIDGE, "table=1,priority=7,in_port=2,actions=drop")
    # same top bits as ours except one: not ours either
    lab.ovs.ofctl("add-flow", BRIDGE,
                  f"table=2,priority=3,cookie=0x{(COOKIE_PREFIX ^ 1) << 32 | 5:x},actions=drop")
    foreign = lab.dump()
    assert len(foreign) == 3
    lab.pusher.sync(DPID, desired_flows(), PORTS)
    assert sorted(lab.dump()) == sorted(foreign + expected_rows(desired_flows()))
    assert lab.pusher.sync(DPID, [], PORTS)["removed"] == len(desired_flows())
    assert lab.dump() == foreign


def test_stale_flow_of_ours_is_removed(clean):
    lab = clean
    stale = (COOKIE_PREFIX << 32) | 0xDEAD
    lab.ovs.ofctl("add-flow", BRIDGE, f"table=3,priority=9,cookie=0x{stale:x},actions=drop")
    result = lab.pusher.sync(DPID, desired_flows(), PORTS)
    assert (result["added"], result["removed"]) == (len(desired_flows()), 1)
    assert lab.dump() == expected_rows(desired_flows())


def test_fallback_flowmods_without_bundle(clean):
    lab = clean
    result = lab.pusher.sync(DPID, desired_flows(), PORTS, use_bundle=False)
    assert result["mode"] == "flowmod" and result["added"] == len(desired_flows())
    assert lab.dump() == expected_rows(desired_flows())


def test_missing_port_and_unknown_switch(clean):
    lab = clean
    with pytest.raises(SouthboundError, match="tnx-b-p9"):
        lab.pusher.sync(DPID, [Flow.make(0, 1, {}, [("output", "tnx-b-p9")])], PORTS)
    with pytest.raises(SouthboundError, match="not connected"):
        lab.pusher.sync(0x42, [], PORTS)


BAD_FLOWS = {
    "bad-out-port": Flow.make(0, 5, {}, [("output", 0xFFFFFFF0)]),      # invalid reserved
    "goto-backwards": Flow.make(2, 5, {}, [], goto=1),
    "bad-table": Flow.make(255, 5, {}, []),
    "vlan-without-tag": Flow.make(0, 5, {}, [("set_field", "vlan_vid", 5)]),
}


@pytest.mark.parametrize("bad", sorted(BAD_FLOWS))
def test_bad_flow_rejects_whole_bundle(clean, bad):
    """Validation errors at bundle-add time: the bundle is discarded, nothing changes."""
    lab = clean
    good = desired_flows()
    lab.pusher.sync(DPID, good, PORTS)
    before = lab.dump()
    # one flow changed, one added, one removed, plus the bad one
    attempt = good[1:] + [Flow.make(3, 1, {}, []), BAD_FLOWS[bad]]
    with pytest.raises(SouthboundError, match="nothing changed"):
        lab.pusher.sync(DPID, attempt, PORTS)
    assert lab.dump() == before
    assert lab.pusher.sync(DPID, good, PORTS)["added"] == 0   # still fully usable


def test_a_problem_found_after_the_first_part_was_sent_changes_nothing(clean):
    """The adds of a sync go out in parts while the later flows are still resolved and
    planned: a conflict or a missing port found after the first part discards the bundle."""
    lab = clean
    good = desired_flows()
    lab.pusher.sync(DPID, good, PORTS)
    before = lab.dump()
    many = [Flow.make(5, 10, {"eth_dst": f"02:00:00:00:{i >> 8:02x}:{i & 255:02x}"}, [])
            for i in range(STREAM_PART + 10)]
    conflict = Flow.make(5, 10, {"eth_dst": "02:00:00:00:00:00"}, [("output", "tnx-b-p1")])
    with pytest.raises(SouthboundError, match="conflicting desired flows"):
        lab.pusher.sync(DPID, good + many + [conflict], PORTS)
    assert lab.dump() == before
    missing = Flow.make(0, 1, {}, [("output", "tnx-b-p9")])
    with pytest.raises(SouthboundError, match="tnx-b-p9"):
        lab.pusher.sync(DPID, good + many + [missing], PORTS)
    assert lab.dump() == before
    assert lab.pusher.sync(DPID, good + many, PORTS)["added"] == len(many)


def test_commit_time_failure_rolls_back(clean):
    """An error only found at COMMIT (table full) rolls the whole bundle back."""
    lab = clean
    good = desired_flows()
    lab.pusher.sync(DPID, good, PORTS)
    before = lab.dump()
    lab.ovs.vsctl("--", "--id=@ft", "create", "Flow_Table", "flow_limit=3",
                  "overflow_policy=refuse", "--", "set", "Bridge", BRIDGE,
                  "flow_tables:4=@ft")
    attempt = good[1:] + [Flow.make(4, p, {}, []) for p in range(5)]
    with pytest.raises(SouthboundError, match="commit failed.*TABLE_FULL"):
        lab.pusher.sync(DPID, attempt, PORTS)
    assert lab.dump() == before


def test_reconnect_after_del_controller_resyncs(clean):
    """del-controller / set-controller: the on-connect sync restores every flow.

    Open vSwitch flushes the whole flow table when a bridge goes from having a
    controller to having none (and back), so the resync has to add everything."""
    lab = clean
    lab.core.desired = desired_flows()
    n, n_sync = len(lab.core.events), len(lab.core.sync_results)
    lab.disconnect()
    assert lab.core.wait_event("down", n, 10) is not None
    assert not lab.pusher.connected(DPID)
    with pytest.raises(SouthboundError, match="not connected"):
        lab.pusher.sync(DPID, desired_flows(), PORTS)
    lab.connect()
    assert lab.core.wait_event("up", n, 15) is not None
    assert lab.core.sync_results[n_sync:] == [
        dict(added=len(desired_flows()), removed=0, mode="bundle")]
    assert lab.dump() == expected_rows(desired_flows())


def test_reconnect_after_drift_resyncs(clean):
    """Connection lost while the switch keeps its flows and drifts: the resync removes
    our stale flow, re-adds our missing one, and leaves foreign flows alone.

    The connection is broken by pointing the bridge at a port nobody listens on (the
    bridge keeps a controller, so Open vSwitch does not flush its flows)."""
    lab = clean
    flows = desired_flows()
    lab.pusher.sync(DPID, flows, PORTS)
    lab.core.desired = flows
    n, n_sync = len(lab.core.events), len(lab.core.sync_results)
    lab.ovs.vsctl("set-controller", BRIDGE, f"tcp:127.0.0.1:{_free_port_in(lab.netns)}")
    assert lab.core.wait_event("down", n, 10) is not None
    stale = (COOKIE_PREFIX << 32) | 0xBEEF
    lab.ovs.ofctl("add-flow", BRIDGE, f"table=5,priority=1,cookie=0x{stale:x},actions=drop")
    lab.ovs.ofctl("add-flow", BRIDGE, "table=5,priority=2,cookie=0x99,actions=drop")
    lab.ovs.ofctl("del-flows", BRIDGE, "table=1,tun_id=0x64")       # our "local" flow
    assert len(lab.ours()) == len(flows)      # 6 of ours + the stale one
    lab.connect()
    assert lab.core.wait_event("up", n, 15) is not None
    assert lab.core.sync_results[n_sync:] == [dict(added=1, removed=1, mode="bundle")]
    assert lab.ours() == expected_rows(flows)
    assert (0x99, 5, 2, "", "drop") in lab.dump()


def test_dead_switch_detected_by_echo(lab, clean):
    """A switch that stops answering (SIGSTOP, TCP stays up) is declared DEAD."""
    lab.core.desired = desired_flows()
    pid = lab.ovs.pid("ovs-vswitchd")
    n = len(lab.core.events)
    t0 = time.monotonic()
    os.kill(pid, signal.SIGSTOP)
    try:
        down = lab.core.wait_event("down", n, ECHO_INTERVAL * (ECHO_MAX + 3) + 5)
    finally:
        os.kill(pid, signal.SIGCONT)
    assert down is not None, "frozen switch never declared dead"
    elapsed = down - t0
    assert elapsed <= ECHO_INTERVAL * (ECHO_MAX + 2) + 1, elapsed
    assert lab.core.wait_event("up", n, 20) is not None
    assert lab.pusher.wait_connected(DPID, 5)
    assert lab.ours() == expected_rows(desired_flows())


def test_killed_switch_detected_quickly(lab):
    """TCP close (switch process killed) is seen at once, not after echo timeouts."""
    n = len(lab.core.events)
    pid = lab.ovs.pid("ovs-vswitchd")
    t0 = time.monotonic()
    os.kill(pid, signal.SIGKILL)
    down = lab.core.wait_event("down", n, 10)
    assert down is not None and down - t0 < 1.0, down and down - t0
    # last test of the module: the fixture's teardown cleans up the remaining ovsdb-server


def test_the_runtime_raises_its_open_files_limit_to_the_hard_one():
    """A controller of hundreds of bridges needs more than the common 1,024 descriptors:
    starting from a soft limit of 256 (a child, so this process keeps its own), the
    runtime's raise ends at the hard limit, and the sockets past the old soft limit open."""
    script = ("import resource, socket; from tenantnet.controller import runner; "
              "resource.setrlimit(resource.RLIMIT_NOFILE, "
              "(256, resource.getrlimit(resource.RLIMIT_NOFILE)[1])); "
              "got = runner.raise_open_files_limit(); "
              "socks = [socket.socket() for _ in range(300)]; "
              "print(got, resource.getrlimit(resource.RLIMIT_NOFILE)[1], "
              "max(s.fileno() for s in socks))")
    import resource
    import subprocess
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                         timeout=60)
    assert out.returncode == 0, out.stderr
    got, hard, top = (int(x) for x in out.stdout.split())
    if hard < 400:
        pytest.skip(f"the hard limit here is {hard}")
    assert got == hard == resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    assert top > 256


def test_the_echo_interval_grows_past_the_controllers_echo_budget():
    """At most ECHO_BUDGET echo requests a second in all: the configured interval up to
    ECHO_BUDGET * interval connections, then connections / budget."""
    budget = ofconn.ECHO_BUDGET
    assert ofconn.echo_interval(1, 1) == 1.0
    assert ofconn.echo_interval(1, int(budget)) == 1.0
    assert ofconn.echo_interval(1, int(budget) * 5) == 5.0
    assert ofconn.echo_interval(10, int(budget) * 5) == 10.0
    for n in (1, 50, 500, 5000):
        assert n / ofconn.echo_interval(1, n) <= budget
