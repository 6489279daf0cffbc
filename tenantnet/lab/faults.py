"""Fault injection on the lab's emulated nodes: `tenantnet lab stop|start NODE`.

Stopping a node is a crash, not a clean shutdown: its ovsdb-server and ovs-vswitchd get
SIGKILL, by the pids (and start times) the lab recorded, and nothing else is touched: the
node's namespace, links, endpoints and OVS database stay, as a host whose Open vSwitch died
keeps its disks and cables. Starting it runs both daemons again on the same database and
then the node's set-up again (`tenantnet node bootstrap`, idempotent), as the node unit of
a real host does when Open vSwitch restarts. The controller notices both by itself."""

import signal

from tenantnet.errors import LabError
from tenantnet.node import procs

DAEMONS = ("ovsdb-server", "ovs-vswitchd")


def _emulated(fabric, name):
    node = fabric.node(name)
    if node.kind != "emulated":
        raise LabError(f"node {name} is a {node.kind} node: `lab stop|start` crashes and "
                       "restarts the Open vSwitch of emulated nodes only")
    return node


def _live(rec):
    """[(pid, start_time, daemon)] of the recorded daemons of *rec* that still run."""
    out = []
    for daemon in DAEMONS:
        pid, started = rec.pids.get(daemon), rec.start_times.get(daemon)
        if pid and started is not None and procs.pid_alive(pid, started):
            out.append((pid, started, daemon))
    return out


def node_running(fabric, name):
    """Whether emulated node *name*'s recorded ovsdb-server or ovs-vswitchd runs."""
    with fabric.store.txn():
        return bool(_live(_emulated(fabric, name).rec))


def stop_node(fabric, name, timeout=5.0):
    """SIGKILL node *name*'s ovsdb-server and ovs-vswitchd (recorded pids only) and wait
    until they are gone. Returns the pids killed ([] when neither was running)."""
    with fabric.store.txn():
        rec = _emulated(fabric, name).rec
        live = _live(rec)
        procs.signal_all([(pid, st) for pid, st, _ in live], signal.SIGKILL)
        left = procs.wait_gone([(pid, st) for pid, st, _ in live], timeout)
        if left:
            raise LabError(f"node {name}: " + ", ".join(
                procs.describe(pid) for pid, _ in left) + f" still there {timeout:.0f}s "
                "after SIGKILL")
        return [pid for pid, _, _ in live]


def start_node(fabric, name):
    """Start node *name*'s ovsdb-server and ovs-vswitchd again (same database, same
    directories), record their pids, and run the node's set-up again. LabError when one of
    them still runs (stop it first)."""
    with fabric.store.txn():
        node = _emulated(fabric, name)
        rec = node.rec
        live = _live(rec)
        if live:
            raise LabError(f"node {name}: {', '.join(d for _, _, d in live)} still running "
                           f"(pid {', '.join(str(p) for p, _, _ in live)}); "
                           f"`tenantnet lab stop {name}` first")
        inst = node.ovs()
        try:
            inst.start()
        finally:
            # whatever started is recorded, so that `lab down` stops it
            # (a pidfile left by the killed daemon names a pid that may be reused since)
            pids = {d: inst.pid(d) for d in DAEMONS}
            rec.pids = {d: p if p and rec.base_dir in procs.proc_cmdline(p) else None
                        for d, p in pids.items()}
            rec.start_times = {d: procs.start_time(p) if p else None
                               for d, p in rec.pids.items()}
            fabric.store.save()
        node.bootstrap(inst)
        return dict(rec.pids)
