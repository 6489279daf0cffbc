"""A throwaway switch for benchmarks: a network namespace `tnbench-<pid>` holding a private
Open vSwitch (ovsdb-server + ovs-vswitchd, userspace datapath, directories under
/tmp/tnbench-<pid>/) and tenantnet's os-ken controller running in this process inside
that namespace (plain TCP: the switch is private). By default it has one bridge and a
core that does nothing on its own (bench flows); a bench may give it a core of its own
and set the switch up in before_controller() / after_controller() (bench placement).

Everything it makes carries the `tnbench-` prefix and is removed by `stop()` (processes
by pid, the namespace and the directory by name), also after an error or Ctrl-C."""

import os
import shutil
import socket
import subprocess
import threading

from tenantnet.errors import LabError, TenantnetError
from tenantnet.lab import netns as ns
from tenantnet.lab.ovs import OvsInstance, check_prerequisites
from tenantnet.node.procs import describe, stop as stop_pids

PREFIX = "tnbench-"
BRIDGE = "tnbench-br"
DPID = 0x00000000000000BE
PORTS = {"tnbench-p1": 1, "tnbench-p2": 2}
STOP_TIMEOUT = 120.0               # seconds for each of SIGTERM and SIGKILL


class IdleCore:
    """The controller's core for a benchmark: switches come and go, nothing is synced."""

    def __init__(self, pusher, _app, _settings):
        self.pusher = pusher

    def start(self):
        pass

    def stop(self):
        pass

    def switch_connected(self, dpid):
        pass

    def switch_disconnected(self, dpid):
        pass


def check_can_run():
    """TenantnetError (one line) unless this process can make a throwaway switch."""
    if os.geteuid() != 0:
        raise TenantnetError("bench: needs root (it makes a network namespace and its own "
                             "Open vSwitch); run it with sudo")
    try:
        check_prerequisites()
    except LabError as exc:
        raise TenantnetError(f"bench: {exc}") from None
    if not shutil.which("ip"):
        raise TenantnetError("bench: ip not found: install the 'iproute2' package")


def _free_port_in(netns):
    from tenantnet.controller.runner import enter_netns
    out = {}

    def probe():
        try:
            enter_netns(netns)
            with socket.socket() as s:
                s.bind(("127.0.0.1", 0))
                out["port"] = s.getsockname()[1]
        except Exception as exc:  # noqa: BLE001 -- handed to the caller
            out["error"] = exc

    t = threading.Thread(target=probe)
    t.start()
    t.join()
    if "error" in out:
        raise TenantnetError(f"bench: cannot probe a port in {netns}: {out['error']}")
    return out["port"]


class BenchSwitch:
    """A private OVS and an in-process tenantnet controller; by default one bridge,
    connected to it (the hooks before_controller / after_controller set up more)."""

    def __init__(self, tag=None, core_factory=IdleCore):
        """*core_factory*: the controller's core (Settings.core_factory): IdleCore, or a
        real one (bench placement), built in the controller with its pusher."""
        self.tag = tag or f"{PREFIX}{os.getpid()}"
        self.base = os.path.join("/tmp", self.tag)
        self.netns = self.tag
        self.ovs = OvsInstance(os.path.join(self.base, "ovs"), netns=self.netns)
        self.core_factory = core_factory
        self.port = None               # the controller's OpenFlow port (in the namespace)
        self.runtime = None
        self.pusher = None
        self.core = None

    def start(self, timeout=20):
        from tenantnet.controller import runner
        from tenantnet.controller.settings import CONTEXT, Settings
        if ns.exists(self.netns) or os.path.exists(self.base):
            raise TenantnetError(f"bench: {self.netns} already exists (another bench with "
                                 f"this pid?); remove it or wait for it to end")
        os.makedirs(self.base)
        ns.add(self.netns)
        self.ovs.start()
        self.port = _free_port_in(self.netns)
        self.before_controller()
        settings = Settings(config="(none: a benchmark)", echo_interval=5.0,
                            echo_max_unreplied=3, audit_interval=0.0,
                            core_factory=self.core_factory)
        try:
            self.runtime = runner.ControllerRuntime(
                listen_host="127.0.0.1", listen_port=self.port, netns=self.netns,
                contexts={CONTEXT: settings}).start()
        except RuntimeError as exc:
            raise TenantnetError(f"bench: the controller did not start: {exc}") from None
        app = self.runtime.app("TenantnetApp")
        self.pusher, self.core = app.pusher, app.core
        self.after_controller(timeout)
        return self

    @property
    def controller_target(self):
        """The OpenFlow target of the in-process controller, as the switch reaches it."""
        return f"tcp:127.0.0.1:{self.port}"

    def before_controller(self):
        """Hook: runs once the switch is up, before the controller starts."""

    def after_controller(self, timeout):
        """Hook: runs once the controller listens. Here: the flows bench's one bridge,
        connected to the controller."""
        self.ovs.vsctl("add-br", BRIDGE, "--", "set", "bridge", BRIDGE,
                       "datapath_type=netdev", "fail_mode=secure", "protocols=OpenFlow13",
                       f"other_config:datapath-id={DPID:016x}")
        for name, ofport in PORTS.items():
            self.ovs.vsctl("add-port", BRIDGE, name, "--", "set", "interface", name,
                           "type=internal", f"ofport_request={ofport}")
        self.ovs.vsctl("set-controller", BRIDGE, self.controller_target)
        if not self.pusher.wait_connected(DPID, timeout):
            raise TenantnetError(f"bench: bridge {BRIDGE} did not connect to the controller "
                                 f"in {timeout} s; see {self.ovs.logdir}")

    def ofctl(self, *args, stdin=None, timeout=300):
        """`ovs-ofctl -O OpenFlow13 ARGS` on this switch (through its management socket);
        *stdin*: a file to read (for the `-` argument). TenantnetError when it fails."""
        cmd = ["ovs-ofctl", "-O", "OpenFlow13", *args]
        try:
            if stdin is None:
                proc = subprocess.run(cmd, env=self.ovs.env, capture_output=True, text=True,
                                      timeout=timeout)
            else:
                with open(stdin) as fh:
                    proc = subprocess.run(cmd, env=self.ovs.env, stdin=fh,
                                          capture_output=True, text=True, timeout=timeout)
        except subprocess.TimeoutExpired:
            raise TenantnetError(f"bench: {' '.join(cmd)}: no answer in {timeout} s") from None
        if proc.returncode != 0:
            raise TenantnetError(f"bench: {' '.join(cmd)}: "
                                 f"{proc.stderr.strip() or f'exit {proc.returncode}'}")
        return proc

    def stop(self):
        """Remove everything start() made; a list of what could not be removed."""
        problems = []
        if self.runtime is not None:
            try:
                self.runtime.stop()
            except Exception as exc:  # noqa: BLE001 -- keep cleaning up
                problems.append(f"controller: {exc}")
            self.runtime = None
            self.pusher = self.core = None
        # A switch with a thousand ports takes a while to exit: give it time, by pid.
        left = stop_pids([(self.ovs.pid(d), None) for d in ("ovs-vswitchd", "ovsdb-server")],
                         timeout=STOP_TIMEOUT, kill_timeout=STOP_TIMEOUT)
        problems += [f"Open vSwitch process {describe(pid)} did not exit" for pid, _ in left]
        try:
            self.ovs.stop(remove=False)
        except TenantnetError as exc:
            problems.append(str(exc))
        try:
            ns.delete(self.netns)
        except TenantnetError as exc:
            problems.append(str(exc))
        if ns.exists(self.netns):
            problems.append(f"network namespace {self.netns} is still there")
        shutil.rmtree(self.base, ignore_errors=True)
        if os.path.exists(self.base):
            problems.append(f"{self.base} is still there")
        return problems

    def __enter__(self):
        try:
            return self.start()
        except BaseException:
            self.stop()
            raise

    def __exit__(self, *exc):
        problems = self.stop()
        if problems and exc[0] is None:
            raise TenantnetError("bench: cleanup incomplete: " + "; ".join(problems))
        return False


def leftovers():
    """Names of `tnbench-<pid>` namespaces and /tmp directories that exist now (any
    bench's)."""
    def ours(name):
        return name.startswith(PREFIX) and name[len(PREFIX):].isdigit()
    found = [n for n in ns.list_namespaces() if ours(n)]
    found += [os.path.join("/tmp", d) for d in os.listdir("/tmp") if ours(d)]
    return sorted(found)
