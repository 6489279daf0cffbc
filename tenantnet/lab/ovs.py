"""One private Open vSwitch instance (ovsdb-server + ovs-vswitchd, userspace datapath).

Each emulated node runs its own instance inside its own network namespace, with its own
run/db/log directories, so that several instances live side by side and none of them is
the host's Open vSwitch. Processes are tracked by pidfile and stopped by pid only."""

import os
import shutil
import time

from tenantnet.errors import LabError
from tenantnet.lab import netns as ns
from tenantnet.node.procs import describe, pid_alive, stop as stop_pids

SCHEMA = "/usr/share/openvswitch/vswitch.ovsschema"
VSWITCHD_CANDIDATES = ("/usr/sbin/ovs-vswitchd", "/usr/lib/openvswitch-switch/ovs-vswitchd")
OVSDB_SERVER = "/usr/sbin/ovsdb-server"
# Remotes configured in the database (ovs-vsctl set-manager), as ovs-ctl serves them.
MANAGER_REMOTE = "db:Open_vSwitch,Open_vSwitch,manager_options"
# Its key and certificate, as ovs-ctl gives them (ovs-vsctl set-ssl).
SSL_OPTIONS = ("--private-key=db:Open_vSwitch,SSL,private_key",
               "--certificate=db:Open_vSwitch,SSL,certificate")


def _vswitchd_binary():
    for path in VSWITCHD_CANDIDATES:
        if os.path.exists(path):
            return path
    found = shutil.which("ovs-vswitchd")
    if found:
        return found
    raise LabError("ovs-vswitchd not found: install the 'openvswitch-switch' package")


def check_prerequisites():
    """Raise LabError naming the first missing Open vSwitch piece."""
    for path in (SCHEMA, OVSDB_SERVER):
        if not os.path.exists(path):
            raise LabError(f"{path} not found: install the 'openvswitch-switch' package")
    _vswitchd_binary()
    for tool in ("ovsdb-tool", "ovs-vsctl", "ovs-ofctl", "ovs-appctl"):
        if not shutil.which(tool):
            raise LabError(f"{tool} not found: install the 'openvswitch-switch' package")


class OvsInstance:
    """A private OVS rooted at *base_dir*, running inside network namespace *netns*.

    ovsdb-server always serves the remotes in Open_vSwitch manager_options, as the
    distribution's ovs-ctl does: node bootstrap opens OVSDB to the controller with
    `ovs-vsctl set-manager ptcp:PORT:IP` (that is how the lab's nodes do it). *ovsdb_tcp* =
    (ip, port) additionally opens OVSDB on that TCP address from the command line, for
    instances that are not bootstrapped (do not combine it with set-manager on the same
    port).

    Its key and certificate come from the SSL table, as with ovs-ctl. *ovsdb_ca*: the CA
    file that ovsdb-server alone trusts for its `pssl:` remotes (a node trusts only the
    provider's CA there, while ovs-vswitchd trusts the SSL table's bundle); without it,
    ovsdb-server trusts the SSL table's CA too, as ovs-ctl's --bootstrap-ca-cert does."""

    def __init__(self, base_dir, netns=None, ovsdb_tcp=None, system_id=None, ovsdb_ca=None):
        self.base_dir = os.path.abspath(base_dir)
        self.netns = netns
        self.ovsdb_tcp = ovsdb_tcp
        self.system_id = system_id
        self.ovsdb_ca = ovsdb_ca
        self.rundir = os.path.join(self.base_dir, "run")
        self.dbdir = os.path.join(self.base_dir, "db")
        self.logdir = os.path.join(self.base_dir, "log")
        self.db_file = os.path.join(self.dbdir, "conf.db")
        self.db_sock = os.path.join(self.rundir, "db.sock")

    # -- environment ---------------------------------------------------------------
    @property
    def env(self):
        env = dict(os.environ)
        env.update(OVS_RUNDIR=self.rundir, OVS_DBDIR=self.dbdir, OVS_LOGDIR=self.logdir,
                   OVS_SYSCONFDIR=self.dbdir, OVS_PKGDATADIR="/usr/share/openvswitch")
        return env

    @property
    def unix_remote(self):
        return f"unix:{self.db_sock}"

    @property
    def tcp_remote(self):
        if not self.ovsdb_tcp:
            return None
        return f"tcp:{self.ovsdb_tcp[0]}:{self.ovsdb_tcp[1]}"

    def pidfile(self, daemon):
        return os.path.join(self.rundir, f"{daemon}.pid")

    def pid(self, daemon):
        try:
            with open(self.pidfile(daemon)) as fh:
                return int(fh.read().strip())
        except (OSError, ValueError):
            return None

    # -- lifecycle -------------------------------------------------------------------
    def start(self):
        check_prerequisites()
        for d in (self.rundir, self.dbdir, self.logdir):
            os.makedirs(d, exist_ok=True)
        if not os.path.exists(self.db_file):
            ns.run(["ovsdb-tool", "create", self.db_file, SCHEMA], env=self.env)
        remotes = [f"--remote=punix:{self.db_sock}", f"--remote={MANAGER_REMOTE}"]
        if self.ovsdb_tcp:
            remotes.append(f"--remote=ptcp:{self.ovsdb_tcp[1]}:{self.ovsdb_tcp[0]}")
        ca = (f"--ca-cert={self.ovsdb_ca}" if self.ovsdb_ca
              else "--bootstrap-ca-cert=db:Open_vSwitch,SSL,ca_cert")
        ns.run([OVSDB_SERVER, self.db_file, *remotes, *SSL_OPTIONS, ca,
                f"--pidfile={self.pidfile('ovsdb-server')}", "--detach",
                f"--log-file={os.path.join(self.logdir, 'ovsdb-server.log')}",
                f"--unixctl={os.path.join(self.rundir, 'ovsdb-server.ctl')}"],
               netns=self.netns, env=self.env)
        init = ["--no-wait", "init"]
        if self.system_id:
            init += ["--", "set", "Open_vSwitch", ".", f"external_ids:system-id={self.system_id}"]
        self.vsctl(*init)
        ns.run([_vswitchd_binary(), self.unix_remote, "--disable-system",
                f"--pidfile={self.pidfile('ovs-vswitchd')}", "--detach",
                f"--log-file={os.path.join(self.logdir, 'ovs-vswitchd.log')}",
                f"--unixctl={os.path.join(self.rundir, 'ovs-vswitchd.ctl')}"],
               netns=self.netns, env=self.env)
        # vswitchd is ready once it answers on its control socket.
        deadline = time.time() + 20
        while time.time() < deadline:
            if self.appctl("version", check=False).returncode == 0:
                return self
            time.sleep(0.05)
        raise LabError(f"ovs-vswitchd under {self.base_dir} did not come up; see {self.logdir}")

    def running(self):
        return any(pid_alive(self.pid(d)) for d in ("ovs-vswitchd", "ovsdb-server"))

    def stop(self, remove=True):
        """Stop our two daemons by pid (never by name) and wait until they are gone (LabError
        naming a survivor); optionally remove the directories.

        Userspace bridges are persistent tap devices: outside a namespace (which takes them
        along when it is deleted) the bridges are deleted first so that no device is left."""
        if self.netns is None and pid_alive(self.pid("ovs-vswitchd")):
            bridges = self.vsctl("list-br", check=False).stdout.split()
            for br in bridges:
                self.vsctl("--if-exists", "del-br", br, check=False)
        left = stop_pids([(self.pid(d), None) for d in ("ovs-vswitchd", "ovsdb-server")])
        if left:
            raise LabError(f"Open vSwitch under {self.base_dir} did not exit: "
                           + ", ".join(describe(pid) for pid, _ in left))
        if remove and os.path.isdir(self.base_dir):
            shutil.rmtree(self.base_dir, ignore_errors=True)

    # -- tools -----------------------------------------------------------------------
    def vsctl(self, *args, check=True):
        return ns.run(["ovs-vsctl", f"--db={self.unix_remote}", "--timeout=20", *args],
                      env=self.env, check=check)

    def ofctl(self, *args, check=True):
        # ovs-ofctl reaches the bridge through vswitchd's mgmt socket under our rundir.
        return ns.run(["ovs-ofctl", "-O", "OpenFlow13", *args], env=self.env, check=check)

    def appctl(self, *args, check=True):
        return ns.run(["ovs-appctl", f"--target={os.path.join(self.rundir, 'ovs-vswitchd.ctl')}",
                       *args], env=self.env, check=check)

