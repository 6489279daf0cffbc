"""The lab's process supervisor: processes the lab started (controllers) or adopted (a
QEMU that daemonized itself), recorded by pid and start time in the lab's books, ended by
pid -- never by name -- and waited for until they are gone (tenantnet.node.procs).

Also ends whatever still runs inside the lab's namespaces at teardown (`ip netns pids`):
an `iperf3 -s -D` started with `lab exec` would otherwise outlive `lab down`."""

import os
import signal
import subprocess

from tenantnet.errors import LabError
from tenantnet.lab import netns as ns
from tenantnet.lab.state import ProcessRec, check_name
from tenantnet.node import procs


class Supervisor:
    """The processes of the lab whose books *store* keeps. Callers hold store.txn()
    around the mutating methods; a Popen is kept for a process this object started, so
    that its exit is reaped."""

    def __init__(self, store):
        self.store = store
        self._popen = {}           # process name -> Popen (only for processes we started)

    @property
    def records(self):
        return self.store.state.processes

    def start(self, name, cmd_list, netns, log_path):
        """Start *cmd_list* in namespace *netns* (None: this namespace) as a new session,
        output to *log_path*; its pid is recorded. Returns the pid."""
        check_name("process", name)
        old = self.records.get(name)
        if old and procs.pid_alive(old.pid, old.start_time):
            raise LabError(f"process {name!r} is already running (pid {old.pid})")
        if netns and not ns.exists(netns):
            raise LabError(f"start_process {name}: no network namespace {netns}")
        full = (["ip", "netns", "exec", netns] if netns else []) + list(cmd_list)
        os.makedirs(os.path.dirname(os.path.abspath(log_path)), exist_ok=True)
        # Record the intent first: a crash between Popen and the save leaves at worst a
        # record without pid, never an unrecorded process we started.
        rec = ProcessRec(pid=None, start_time=None, netns=netns, cmd=list(cmd_list),
                         log=log_path)
        self.records[name] = rec
        self.store.save()
        try:
            with open(log_path, "ab") as log:
                proc = subprocess.Popen(full, stdin=subprocess.DEVNULL, stdout=log,
                                        stderr=subprocess.STDOUT, start_new_session=True)
        except OSError as exc:
            del self.records[name]
            self.store.save()
            raise LabError(f"start_process {name}: {exc}") from exc
        self._popen[name] = proc
        rec.pid, rec.start_time = proc.pid, procs.start_time(proc.pid)
        self.store.save()
        return proc.pid

    def adopt(self, name, pid, netns, cmd_list, log_path):
        """Record daemon *pid*, started by other means, as the lab's process *name*."""
        check_name("process", name)
        started = procs.start_time(pid)
        if started is None:
            raise LabError(f"adopt_process {name}: pid {pid} is not running")
        self.records[name] = ProcessRec(pid=int(pid), start_time=started, netns=netns,
                                        cmd=list(cmd_list), log=log_path)
        self.store.save()

    def alive(self, name):
        rec = self.records.get(name)
        if not rec:
            return False
        proc = self._popen.get(name)
        if proc is not None and proc.poll() is not None:
            return False
        return procs.pid_alive(rec.pid, rec.start_time)

    def stop(self, name, timeout=5.0):
        """SIGTERM (then SIGKILL) the recorded process and the rest of its process group
        (only members started after it, so a reused pid is never hit), wait until they are
        gone, and forget it. LabError (the record kept) when one survives SIGKILL."""
        rec = self.records.get(name)
        if not rec:
            return
        proc = self._popen.get(name)
        poll = proc.poll if proc is not None else None   # reaps it once it ended
        if rec.pid and rec.start_time is not None:
            for sig in (signal.SIGTERM, signal.SIGKILL):
                left = procs.group_members(rec.pid, rec.start_time)
                if not left:
                    break
                procs.signal_all(left, sig)
                left = procs.wait_gone(left, timeout, poll)
                if not left:
                    break
            if left:
                raise LabError(f"process {name} did not exit within {2 * timeout:.0f}s of "
                               "SIGTERM and SIGKILL: "
                               + ", ".join(procs.describe(p) for p, _ in left))
        if proc is not None:
            self._popen.pop(name, None)
            try:
                proc.wait(timeout=1)
            except subprocess.TimeoutExpired:
                pass
        del self.records[name]
        self.store.save()

    def stop_all(self):
        """Stop every recorded process; returns problems, as lines (their records stay)."""
        problems = []
        for name in list(self.records):
            try:
                self.stop(name)
            except Exception as exc:  # noqa: BLE001 -- keep tearing down
                problems.append(f"process {name}: {exc}")
        return problems

    def status(self):
        return {name: {"pid": rec.pid, "netns": rec.netns, "log": rec.log, "cmd": rec.cmd,
                       "alive": self.alive(name)}
                for name, rec in self.records.items()}

    def forget_popens(self):
        self._popen.clear()


def stop_namespace_processes(namespaces, timeout=5.0):
    """End every process left in *namespaces* (`ip netns pids`) on this host, by pid:
    SIGTERM, then SIGKILL, waiting until each is gone. Returns problems, as lines."""
    found = []
    for name in namespaces:
        if not ns.exists(name):
            continue
        out = ns.run(["ip", "netns", "pids", name], check=False)
        found += [(int(pid), None) for pid in out.stdout.split() if pid.isdigit()]
    if not found:
        return []
    left = procs.stop(found, timeout=timeout, kill_timeout=timeout)
    return [f"{procs.describe(pid)} in a lab namespace did not exit" for pid, _ in left]
