"""Driving the raw-socket prober (tenantnet.experiment.prober) from the run.

`ProberProcess` starts one prober in one probe endpoint and talks to it over its stdin and
stdout (arm/drop/deadline/stop in; ready, replies and the final result out).
`package_env()` is the environment of every `python -m tenantnet...` child of a run (these
probers, the labs' teardown process): this tenantnet on sys.path."""

import json
import os
import subprocess
import sys
import threading

import tenantnet
from tenantnet.experiment.interrupts import ExperimentError

PROBER_READY_TIMEOUT = 30.0


def package_env():
    """Environment for `python -m tenantnet...` children: this tenantnet on sys.path."""
    root = os.path.dirname(os.path.dirname(os.path.abspath(tenantnet.__file__)))
    env = dict(os.environ)
    env["PYTHONPATH"] = root + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    return env


class ProberProcess:
    """One prober in one probe endpoint, driven over stdin (arm/drop/deadline/stop).

    Started through the fabric's endpoint executor when it has one (the endpoint may live
    on another host), else with `ip netns exec` here; in a session of its own either way,
    so that a terminal Ctrl-C is the runner's to handle, not the prober's."""

    def __init__(self, fabric, endpoint, iface, src_ip, src_mac, targets, interval_ms,
                 timeout_s):
        self.netns = fabric.endpoint_netns(endpoint)
        self.targets = dict(targets)                   # ip -> mac
        self.replies = {}                              # ip -> time, as they come in
        self.result = None
        self.error = None
        self._lock = threading.Lock()
        python = sys.executable
        if hasattr(fabric, "endpoint_python"):
            python = fabric.endpoint_python(endpoint)
        args = ["-m", "tenantnet.experiment.prober", "--iface", iface, "--src-ip", src_ip,
                "--src-mac", src_mac, "--interval-ms", str(interval_ms),
                "--timeout", str(timeout_s), "--stdin", "--live"]
        for ip, mac in self.targets.items():
            args += ["--target", f"{ip}={mac}"]
        kwargs = dict(stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                      text=True, bufsize=1, start_new_session=True)
        if python == sys.executable:                   # this host: this tenantnet
            kwargs["env"] = package_env()
        if hasattr(fabric, "endpoint_executor"):
            self.proc = fabric.endpoint_executor(endpoint).popen([python] + args, **kwargs)
        else:
            self.proc = subprocess.Popen(["ip", "netns", "exec", self.netns, python] + args,
                                         **kwargs)
        self._stderr = []
        self._ready = threading.Event()
        self._reader = threading.Thread(target=self._read, daemon=True,
                                        name=f"prober-{self.netns}")
        self._reader.start()
        self._err_reader = threading.Thread(target=self._read_err, daemon=True)
        self._err_reader.start()

    def _read(self):
        for line in self.proc.stdout:
            line = line.strip()
            if line == "ready":
                self._ready.set()
            elif line.startswith("reply "):
                parts = line.split()
                if len(parts) == 3:
                    with self._lock:
                        self.replies.setdefault(parts[1], float(parts[2]))
            elif line.startswith("{"):
                try:
                    self.result = json.loads(line)
                except ValueError:
                    self.error = f"unreadable prober output: {line[:200]}"
        self._ready.set()

    def _read_err(self):
        for line in self.proc.stderr:
            self._stderr.append(line.rstrip())

    def wait_ready(self, timeout=PROBER_READY_TIMEOUT):
        if not self._ready.wait(timeout) or self.proc.poll() is not None:
            self.kill()
            raise ExperimentError(f"the prober in {self.netns} did not start: "
                                  + (" ".join(self._stderr[-3:]) or "no output"))

    def send(self, line):
        with self._lock:
            if self.proc.poll() is not None:
                return
            try:
                self.proc.stdin.write(line + "\n")
                self.proc.stdin.flush()
            except (BrokenPipeError, ValueError, OSError):
                pass

    def arm(self, ip):
        self.send(f"arm {ip}")

    def drop(self, ip):
        self.send(f"drop {ip}")

    def set_deadline(self, epoch):
        self.send(f"deadline {epoch:.6f}")

    def answered(self):
        with self._lock:
            return len(self.replies)

    def finish(self, timeout):
        """Wait for the prober's end (it stops by itself); return {ip: time or None}."""
        try:
            self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.send("stop")
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.kill()
        self._reader.join(timeout=5)
        self._err_reader.join(timeout=1)
        if self.result is None:
            # No final line (killed): what was reported live is still true.
            with self._lock:
                return {ip: self.replies.get(ip) for ip in self.targets}
        return {ip: self.result.get(ip) for ip in self.targets}

    def kill(self):
        if self.proc.poll() is None:
            try:
                self.proc.kill()
            except ProcessLookupError:
                pass
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                pass
        for stream in (self.proc.stdin,):
            try:
                stream.close()
            except (OSError, ValueError, BrokenPipeError):
                pass

