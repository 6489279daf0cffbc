"""Fault injection on the lab's emulated nodes: `tenantnet lab stop|start NODE`.

Stopping a node is a crash, not a clean shutdown: its ovsdb-server and ovs-vswitchd get
SIGKILL, by the pids (and start times) the lab recorded, and nothing else is touched: the
node's namespace, links, endpoints and OVS database stay, as a host whose Open vSwitch died
keeps its disks and cables. Starting it runs both daemons again on the same database and
then the node's set-up again (`tenantnet node bootstrap`, idempotent), as the node unit of
a real host does when Open vSwitch restarts. The controller notices both by itself.

Also `lab stop|start controller` and `lab stop|start tenant:NAME` (SIGKILL by the recorded
pid and start time; started again with the recorded command line), and `lab link down|up
NODE [management|transport]` (the fabric side of the node's link set down or up)."""

import os
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


# -- controllers: `lab stop|start controller`, `lab stop|start tenant:NAME` -----------------
def process_name(target):
    """The lab's process name of a controller target: 'controller' (the provider's) or
    'tenant:NAME' (tenant NAME's own controller)."""
    if target == "controller":
        return "controller"
    if target.startswith("tenant:") and target[len("tenant:"):]:
        return f"tenant-{target[len('tenant:'):]}"
    raise LabError(f"{target!r}: expected a node name, `controller` or `tenant:NAME`")


def is_controller(target):
    return target == "controller" or target.startswith("tenant:")


def _process(fabric, target):
    name = process_name(target)
    rec = fabric.store.state.processes.get(name)
    if rec is None:
        raise LabError(f"{target}: the lab runs no such controller (no process {name!r} in "
                       "its books)")
    return name, rec


def stop_controller(fabric, target, timeout=5.0):
    """SIGKILL the controller *target* ('controller' or 'tenant:NAME') and the rest of its
    process group, by the pid and start time the lab recorded, and wait until they are
    gone. The record stays (`lab start` runs the same command line again). Returns the
    pids killed ([] when it was not running)."""
    with fabric.store.txn():
        _, rec = _process(fabric, target)
        live = procs.group_members(rec.pid, rec.start_time) if rec.pid and \
            rec.start_time is not None else []
        procs.signal_all(live, signal.SIGKILL)
        left = procs.wait_gone(live, timeout)
        if left:
            raise LabError(f"{target}: " + ", ".join(procs.describe(p) for p, _ in left)
                           + f" still there {timeout:.0f}s after SIGKILL")
        return [pid for pid, _ in live]


def start_controller(fabric, target):
    """Run the controller *target* again with the command line, namespace and log the lab
    recorded when it started it. Returns the new pid. LabError when it still runs."""
    with fabric.store.txn():
        name, rec = _process(fabric, target)
        if procs.pid_alive(rec.pid, rec.start_time):
            raise LabError(f"{target} is still running (pid {rec.pid}); "
                           f"`tenantnet lab stop {target}` first")
        cmd, netns, log = list(rec.cmd), rec.netns, rec.log
    return fabric.start_process(name, cmd, netns, log)


# -- links: `lab link down|up NODE [management|transport]` ---------------------------------
LINKS = ("management", "transport")


def _link_ends(fabric, node_name, link):
    """[(namespace, interface)] to set down or up to cut *link* of *node_name*:
    an emulated node's veth peer in the fabric namespace; a node VM's tap there (plus
    its NIC on QEMU's monitor, see set_link)."""
    if link not in LINKS:
        raise LabError(f"link {link!r}: expected one of {', '.join(LINKS)}")
    node = fabric.node(node_name)
    fab = fabric.store.state.fabric.netns
    if node.kind == "emulated":
        return [(fab, node.rec.fabric_peers["mgmt" if link == "management" else "transport"])]
    if node.kind == "vm":
        from tenantnet.vm.qemu import tap_name
        return [(fab, tap_name(fabric.prefix, node_name, LINKS.index(link)))]
    raise LabError(f"node {node_name} is a {node.kind} node: `lab link` is not supported "
                   "for host nodes")


def set_link(fabric, node_name, link, up):
    """Cut (*up* False) or restore *link* of lab node *node_name*. Emulated nodes: the
    fabric side of the node's veth is set down, so the node sees its link lose carrier, as
    with a pulled cable. Node VMs: the tap in the fabric namespace is set down, and the NIC
    behind it loses its link inside the VM too (QEMU monitor `set_link`)."""
    from tenantnet.lab import netns as ns
    with fabric.store.txn():
        ends = _link_ends(fabric, node_name, link)
        node = fabric.node(node_name)
        for netns, ifname in ends:
            proc = ns.run(["ip", "link", "set", ifname, "up" if up else "down"], netns=netns,
                          check=False)
            if proc.returncode != 0:
                raise LabError(f"node {node_name}: `ip link set {ifname}` in {netns} failed: "
                               f"{(proc.stderr or '').strip()}")
        if node.kind == "vm" and node.rec.vm and node.rec.vm.vm_dir:
            _qemu_set_link(os.path.join(node.rec.vm.vm_dir, "monitor.sock"),
                           f"n{LINKS.index(link)}", up, node_name)
        return [i for _, i in ends]


def _qemu_set_link(monitor, netdev, up, node_name):
    """`set_link NETDEV on|off` on QEMU's human monitor; returns once QEMU has answered
    (its prompt again after the banner's)."""
    import socket
    seen = b""
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
            s.settimeout(5)
            s.connect(monitor)
            s.sendall(f"set_link {netdev} {'on' if up else 'off'}\n".encode())
            while seen.count(b"(qemu)") < 2:
                chunk = s.recv(4096)
                if not chunk:
                    break
                seen += chunk
    except OSError as exc:
        raise LabError(f"node {node_name}: QEMU monitor {monitor}: {exc}") from None
    if b"not found" in seen or b"Error" in seen:
        why = [ln.strip() for ln in seen.decode(errors="replace").splitlines()
               if "not found" in ln or "Error" in ln]
        raise LabError(f"node {node_name}: QEMU monitor: set_link {netdev}: {why[0]}")
