"""The one-machine lab: a fabric of network namespaces and private Open vSwitch instances.

Pure mechanics, no knowledge of tenants. Layout (names for prefix "tn"):

    tn-fabric      Linux bridges `mgmt` and `transport` (the physical networks)
    tn-ctl         a controller namespace with `mgmt` on the management network
    tn-<node>      one emulated node (tn-n-<node> when the name could be mistaken for
                   one of the others): `mgmt` (management IP, OVSDB listens here),
                   `eth1` on the transport network, attached to the OVS bridge br-tun whose
                   LOCAL port carries the node's transport IP; br-int on every node, br-ex
                   on role=network nodes; its own ovsdb-server + ovs-vswitchd (netdev)
    tn-v-<name>    an endpoint ("VM"; tn-p-<name> for probes): `eth0`, whose veth peer
                   (named by the caller) sits in the node namespace

Every name derived from a node or endpoint name comes from tenantnet.model.naming.

Node set-up goes through tenantnet.node.bootstrap.bootstrap_node, the code `tenantnet node
bootstrap` runs on a real host. A lab may also hold *host nodes* (add_host_node): machines
that exist already (the Vagrant lab's VMs), reached through an executor (SSH); endpoints
are then made on that machine by the same functions (create_endpoint, configure_interface)
and removed by down(), which never touches the host node itself.

Everything created is recorded in <state_dir>/state.json *before* it is created, so that
down() -- from this process or another one, after a crash too -- removes exactly that.
Several processes may share one lab (CLI, controller, tests): every mutating method holds an
flock on <state_dir>/.lock and re-reads the state file first, and every reading method
re-reads it, so no process ever saves a stale copy over another's changes.
"""

import contextlib
import fcntl
import functools
import ipaddress
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time

from tenantnet.node.bootstrap import ARP_SYSCTLS, ExecHost, bootstrap_node
from tenantnet.model import naming
from tenantnet.model.desired import COMMON_BRIDGES
from tenantnet.errors import LabError, TenantnetError
from tenantnet.node.hostexec import executor_for
from tenantnet.lab import netns as ns
from tenantnet.lab import ovs as ovsmod
from tenantnet.node import procs
from tenantnet.lab.ovs import OvsInstance
from tenantnet.node.procs import pid_alive, proc_cmdline

STATE_VERSION = 1
DEFAULT_STATE_ROOT = "/run/tenantnet"
IFNAMSIZ_MAX = 15
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,%d}$" % (naming.LAB_NAME_MAX - 1))
_IFNAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,14}$")
_PREFIX_RE = re.compile(r"^[a-z](?:[a-z0-9-]{0,6}[a-z0-9])?$")
# Unix socket paths (OVS db.sock, <bridge>.mgmt, *.ctl) must fit in sun_path (108 bytes).
_MAX_RUNDIR = 80

# Node namespaces: the transport veth, br-tun LOCAL and every ex-xy endpoint share one L2
# segment. With Linux defaults the kernel answers ARP for any local address on any of them
# ("ARP flux"), the remote OVS then caches the wrong MAC for a tunnel endpoint and its GRE
# packets are not terminated (OVS terminates native tunnels on exact (MAC, IP) pairs).
NODE_SYSCTLS = ARP_SYSCTLS          # applied by bootstrap_node

REQUIRED_TOOLS = ("ip", "ethtool", "ping", "sysctl")


def check_host():
    """Raise LabError with a clear message when this host cannot run the lab."""
    if os.geteuid() != 0:
        raise LabError("the lab needs root (network namespaces, veths, Open vSwitch): "
                       "run it as root, e.g. with sudo")
    for tool in REQUIRED_TOOLS:
        if not shutil.which(tool):
            pkg = {"ip": "iproute2", "ping": "iputils-ping", "sysctl": "procps"}.get(tool, tool)
            raise LabError(f"'{tool}' not found: install the '{pkg}' package")
    ovsmod.check_prerequisites()


def _mutating(method):
    """Run *method* under the state lock, on freshly loaded state."""
    @functools.wraps(method)
    def wrapper(self, *args, **kwargs):
        with self._txn():
            return method(self, *args, **kwargs)
    return wrapper


def _reading(method):
    """Run *method* on freshly loaded state (unless already inside a transaction)."""
    @functools.wraps(method)
    def wrapper(self, *args, **kwargs):
        self._refresh()
        return method(self, *args, **kwargs)
    return wrapper


# -- executor-aware endpoint mechanics (shared by lab nodes and host nodes) ---------------
_EXECUTORS = {}
_EXECUTORS_LOCK = threading.Lock()


def host_executor(spec="local", identity=None, options=None, via=None):
    """The executor of a node's host, cached per process (one SSH control connection per
    host, however many LabFabric objects come and go). *via*: executor spec of where the
    ssh client runs (e.g. 'netns:NAME'; default this host)."""
    key = (spec or "local", identity, tuple(sorted((options or {}).items())), via)
    with _EXECUTORS_LOCK:
        ex = _EXECUTORS.get(key)
        if ex is None:
            kwargs = {}
            try:
                if (spec or "").startswith("ssh:"):
                    kwargs = {"identity": identity, "options": options,
                              "base": executor_for(via) if via else None}
                ex = executor_for(spec or "local", **kwargs)
            except TenantnetError as exc:
                raise LabError(str(exc)) from exc
            _EXECUTORS[key] = ex
        return ex


def create_endpoint(host, node_netns, netns, port_name):
    """Namespace *netns* on *host* (an executor) with `eth0`, whose veth peer *port_name*
    is put in *node_netns* (None: the host's own namespace, as on a real node) and set up.
    The caller records *netns* first and removes it on failure."""
    ns.add(netns, executor=host)
    ns.run(["ip", "link", "add", port_name, "type", "veth", "peer", "name", "eth0",
            "netns", netns], netns=node_netns, executor=host)
    ns.run(["ip", "link", "set", port_name, "up"], netns=node_netns, executor=host)
    # The link comes up now, before the controller attaches port_name to a bridge: a carrier
    # change after Open vSwitch took the port can hold its first packets for a second.
    ns.run(["ip", "link", "set", "eth0", "up"], netns=netns, executor=host)


def configure_interface(host, netns, mac, ip_cidr, mtu=1400, tx_offload=False,
                        neigh_gc_thresh=None, what="configure_endpoint", ifname="eth0"):
    """Set MAC, MTU, IP and offloads of *ifname* in *netns* on *host* and bring it up.

    Returns a dict of what was applied (see LabFabric.configure_endpoint)."""
    try:
        iface = ipaddress.ip_interface(ip_cidr)
    except ValueError as exc:
        raise LabError(f"{what}: {exc}") from exc
    if not re.match(r"^[0-9a-fA-F]{2}(:[0-9a-fA-F]{2}){5}$", mac or ""):
        raise LabError(f"{what}: bad MAC {mac!r}")
    applied = {"netns": netns, "ifname": ifname, "mac": mac.lower(),
               "ip": str(iface), "mtu": int(mtu), "tx_offload": bool(tx_offload)}

    def run(cmd, **kw):
        return ns.run(cmd, netns=netns, executor=host, **kw)

    # No down/up here (see create_endpoint): a veth takes a new MAC and MTU while up.
    run(["ip", "link", "set", ifname, "address", mac, "mtu", str(int(mtu))])
    run(["ip", "addr", "flush", "dev", ifname])
    run(["ip", "addr", "add", str(iface), "dev", ifname])
    run(["ethtool", "-K", ifname, "tx", "on" if tx_offload else "off"])
    if neigh_gc_thresh is not None:
        if isinstance(neigh_gc_thresh, int):
            t = (neigh_gc_thresh, 2 * neigh_gc_thresh, 4 * neigh_gc_thresh)
        else:
            t = tuple(int(x) for x in neigh_gc_thresh)
            if len(t) != 3:
                raise LabError(f"{what}: neigh_gc_thresh needs 3 values")
        fam = "ipv6" if iface.version == 6 else "ipv4"
        probe = run(["test", "-e", f"/proc/sys/net/{fam}/neigh/default/gc_thresh1"],
                    check=False)
        if probe.returncode == 0:
            run(["sysctl", "-q", "-w"] + [f"net.{fam}.neigh.default.gc_thresh{i + 1}={v}"
                                          for i, v in enumerate(t)])
            applied["neigh_gc_thresh"] = list(t)
        else:
            # Linux keeps the neighbour table (and its GC thresholds) global: outside the
            # initial namespace net.*.neigh.default does not exist. We never change the
            # host's own sysctls, so report instead of pretending.
            applied["neigh_gc_thresh"] = None
            applied["neigh_gc_thresh_skipped"] = (
                f"requested {list(t)}: this kernel has no net.{fam}.neigh.default.gc_thresh* "
                "inside network namespaces (the neighbour table is host-global); "
                "set them on the host if needed")
    run(["ip", "link", "set", "lo", "up"])
    run(["ip", "link", "set", ifname, "up"])
    return applied


class LabFabric:
    """Builder and janitor of one lab, identified by *prefix* (namespace name prefix)."""

    def __init__(self, prefix="tn", state_dir=None):
        if not _PREFIX_RE.match(prefix or ""):
            raise LabError(f"lab prefix {prefix!r}: use 1-8 lowercase letters, digits or '-', "
                           "starting with a letter and not ending with '-'")
        self.prefix = prefix
        self.state_dir = os.path.abspath(state_dir or os.path.join(DEFAULT_STATE_ROOT, prefix))
        self.state_file = os.path.join(self.state_dir, "state.json")
        self._popen = {}           # process name -> Popen (only for processes we started)
        self._depth = 0            # _txn nesting
        self.state = self._load()

    # -- state -------------------------------------------------------------------------
    def _empty_state(self):
        return {"version": STATE_VERSION, "prefix": self.prefix, "owns_state_dir": False,
                "namespaces": [], "remote_namespaces": [], "fabric": None, "controller": None,
                "nodes": {}, "endpoints": {}, "processes": {}}

    def _load(self):
        try:
            with open(self.state_file) as fh:
                state = json.load(fh)
        except FileNotFoundError:
            return self._empty_state()
        except (OSError, ValueError) as exc:
            raise LabError(f"{self.state_file}: unreadable lab state ({exc}); "
                           "remove it by hand after checking `ip netns list`") from exc
        if state.get("prefix") != self.prefix:
            raise LabError(f"{self.state_file} belongs to lab prefix {state.get('prefix')!r}, "
                           f"not {self.prefix!r}")
        base = self._empty_state()
        base.update(state)
        return base

    def _refresh(self):
        if not self._depth:
            self.state = self._load()

    @contextlib.contextmanager
    def _txn(self):
        """Hold the lab's state lock with freshly loaded state (re-entrant)."""
        if self._depth:
            self._depth += 1
            try:
                yield
            finally:
                self._depth -= 1
            return
        created = not os.path.isdir(self.state_dir)
        os.makedirs(self.state_dir, exist_ok=True)
        fh = open(os.path.join(self.state_dir, ".lock"), "a")
        try:
            fcntl.flock(fh, fcntl.LOCK_EX)
            self.state = self._load()
            if created and not os.path.exists(self.state_file):
                self.state["owns_state_dir"] = True
            self._depth = 1
            try:
                yield
            finally:
                self._depth = 0
        finally:
            fh.close()                   # releases the flock

    def _save(self):
        os.makedirs(self.state_dir, exist_ok=True)
        tmp = self.state_file + ".tmp"
        with open(tmp, "w") as fh:
            json.dump(self.state, fh, indent=2, sort_keys=True)
        os.replace(tmp, self.state_file)

    def _record_ns(self, name):
        """Record namespace *name* (before it is created)."""
        if name not in self.state["namespaces"]:
            self.state["namespaces"].append(name)
        self._save()

    def _forget_ns(self, name):
        if name in self.state["namespaces"]:
            self.state["namespaces"].remove(name)

    def _check_free(self, name, host_spec=None):
        if host_spec and host_spec != "local":
            if [host_spec, name] in self.state["remote_namespaces"]:
                return
            if ns.exists(name, executor=self._host(host_spec)):
                raise LabError(f"network namespace {name} already exists on {host_spec} (left "
                               f"over from another lab?): remove it there with "
                               f"`ip netns del {name}`")
            return
        if ns.exists(name) and name not in self.state["namespaces"]:
            raise LabError(f"network namespace {name} already exists (left over from another "
                           f"lab?): remove it with `ip netns del {name}`")

    def _add_ns(self, name, host_spec=None, create=True):
        """Create namespace *name* (on host node *host_spec*), recorded first; refuse one
        that is not ours. create=False only records it (the caller creates it)."""
        self._check_free(name, host_spec)
        if host_spec and host_spec != "local":
            if [host_spec, name] not in self.state["remote_namespaces"]:
                self.state["remote_namespaces"].append([host_spec, name])
            self._save()
        else:
            self._record_ns(name)
        if create:
            ns.add(name, executor=self._host(host_spec))

    def _host(self, spec, rec=None):
        """Executor of host *spec* ('local' or 'ssh:...'), with the SSH settings recorded
        for the node that uses it."""
        if not spec or spec == "local":
            return host_executor("local")
        if rec is None:
            rec = next((r for r in self.state["nodes"].values() if r.get("exec") == spec), {})
        return host_executor(spec, rec.get("ssh_identity"), rec.get("ssh_options"),
                             rec.get("ssh_via"))

    def _node_host(self, rec):
        return self._host(rec.get("exec", "local"), rec)

    # -- naming --------------------------------------------------------------------------
    @staticmethod
    def _check_name(what, name):
        if not isinstance(name, str) or not _NAME_RE.match(name):
            raise LabError(f"{what} name {name!r}: use 1-{naming.LAB_NAME_MAX} characters from "
                           "[A-Za-z0-9_.-], starting with a letter or digit")

    @staticmethod
    def _check_ifname(name):
        if not isinstance(name, str) or not _IFNAME_RE.match(name):
            raise LabError(f"interface name {name!r}: use 1-{IFNAMSIZ_MAX} characters from "
                           "[A-Za-z0-9_.-] (Linux limit)")

    @property
    def fabric_netns(self):
        return naming.fabric_netns(self.prefix)

    @property
    def controller_netns(self):
        return naming.controller_netns(self.prefix)

    @_reading
    def node_netns(self, node):
        rec = self.state["nodes"].get(node)
        return rec["netns"] if rec else naming.node_netns(self.prefix, node)

    def _require_fabric(self):
        if not self.state["fabric"]:
            raise LabError("the fabric is not up: call up_fabric() first")

    def _node(self, node):
        rec = self.state["nodes"].get(node)
        if not rec:
            raise LabError(f"unknown node {node!r} (known: {sorted(self.state['nodes'])})")
        return rec

    def _endpoint(self, name):
        rec = self.state["endpoints"].get(name)
        if not rec:
            raise LabError(f"unknown endpoint {name!r} (known: {sorted(self.state['endpoints'])})")
        return rec

    @_reading
    def ovs(self, node):
        """The OvsInstance of *node* (for vsctl/ofctl/appctl). Its OVSDB listens on
        rec["ovsdb_remote"] through the manager bootstrap set (not a command-line remote)."""
        rec = self._node(node)
        if rec.get("host_node"):
            raise LabError(f"node {node} is a host node ({rec['exec']}): its Open vSwitch is "
                           "the machine's own; use node_executor() to run ovs-vsctl there")
        return OvsInstance(rec["base_dir"], netns=rec["netns"], system_id=node)

    @_reading
    def node_executor(self, node):
        """Executor that runs commands in *node*'s namespace on its host (lab nodes: this
        machine; host nodes: the machine itself, e.g. over SSH)."""
        rec = self._node(node)
        return ns.executor_in(rec["netns"], base=self._node_host(rec))

    # -- fabric --------------------------------------------------------------------------
    @_mutating
    def up_fabric(self, management_cidr="198.18.0.0/24", transport_cidr="198.19.0.0/16"):
        """Create <prefix>-fabric with Linux bridges `mgmt` and `transport` (idempotent)."""
        try:
            mgmt = str(ipaddress.ip_network(management_cidr, strict=False))
            transport = str(ipaddress.ip_network(transport_cidr, strict=False))
        except ValueError as exc:
            raise LabError(f"up_fabric: {exc}") from exc
        fab = self.fabric_netns
        if self.state["fabric"] and ns.exists(fab):
            return fab
        self._check_free(fab)
        self.state["fabric"] = {"netns": fab, "management_cidr": mgmt,
                                "transport_cidr": transport, "bridges": ["mgmt", "transport"]}
        self._add_ns(fab)
        for br in ("mgmt", "transport"):
            if not ns.link_exists(br, netns=fab):
                ns.run(["ip", "link", "add", br, "type", "bridge", "stp_state", "0"], netns=fab)
            ns.run(["ip", "link", "set", br, "up"], netns=fab)
        return fab

    def _check_in(self, ip, cidr_key, what):
        try:
            addr = ipaddress.ip_address(ip)
        except ValueError as exc:
            raise LabError(f"{what}: {exc}") from exc
        net = ipaddress.ip_network(self.state["fabric"][cidr_key])
        if addr not in net:
            raise LabError(f"{what} {ip} is outside the fabric's {cidr_key} {net}")

    def _veth_to_fabric(self, netns, ifname, bridge, peer):
        """veth *ifname* inside *netns*, its *peer* in the fabric, enslaved to *bridge*."""
        fab = self.fabric_netns
        if ns.link_exists(peer, netns=fab):
            ns.run(["ip", "link", "del", peer], netns=fab, check=False)
        ns.run(["ip", "link", "add", ifname, "netns", netns, "type", "veth",
                "peer", "name", peer], netns=fab)
        ns.run(["ip", "link", "set", peer, "master", bridge, "up"], netns=fab)
        ns.run(["ip", "link", "set", ifname, "up"], netns=netns)

    # -- controller ------------------------------------------------------------------------
    @_mutating
    def add_controller(self, management_ip, prefix_len=24):
        """Namespace <prefix>-ctl with `mgmt` on the management bridge. Returns its name."""
        self._require_fabric()
        self._check_in(management_ip, "management_cidr", "controller management_ip")
        ctl = self.controller_netns
        if self.state["controller"]:
            raise LabError(f"the controller namespace {ctl} already exists in this lab")
        peer = naming.fabric_peer_name("m", "ctl", "")
        self._check_free(ctl)
        self.state["controller"] = {"netns": ctl, "management_ip": management_ip,
                                    "prefix_len": int(prefix_len), "fabric_peer": peer}
        self._add_ns(ctl)
        self._veth_to_fabric(ctl, "mgmt", "mgmt", peer)
        ns.run(["ip", "addr", "replace", f"{management_ip}/{prefix_len}", "dev", "mgmt"],
               netns=ctl)
        return ctl

    @_mutating
    def add_management_host(self, netns, peer, management_ip, prefix_len=24):
        """Namespace *netns* with `mgmt` at *management_ip* on the management bridge, the
        fabric side of its veth called *peer* (naming.fabric_peer_name): a host that only
        talks to the controllers, such as a tenant's controller. Recorded for `down`;
        an existing one is left as it is. Returns *netns*."""
        self._require_fabric()
        self._check_in(management_ip, "management_cidr", f"{netns} management address")
        if ns.exists(netns):
            return netns
        self._add_ns(netns)
        self._veth_to_fabric(netns, "mgmt", "mgmt", peer)
        ns.run(["ip", "addr", "replace", f"{management_ip}/{prefix_len}", "dev", "mgmt"],
               netns=netns)
        return netns

    # -- nodes -----------------------------------------------------------------------------
    @_mutating
    def add_node(self, name, role, management_ip, transport_ip, mgmt_prefix_len=24,
                 transport_prefix_len=16, ovsdb_port=6640):
        """Create node *name* (role "compute" or "network") with its own Open vSwitch.

        Returns {netns, ovsdb_remote, unix_remote, base_dir}."""
        self._require_fabric()
        self._check_name("node", name)
        if role not in ("compute", "network"):
            raise LabError(f"node {name}: role {role!r} must be 'compute' or 'network'")
        if name in self.state["nodes"]:
            raise LabError(f"node {name!r} already exists in this lab")
        self._check_in(management_ip, "management_cidr", f"node {name} management_ip")
        self._check_in(transport_ip, "transport_cidr", f"node {name} transport_ip")
        for other, rec in self.state["nodes"].items():
            if rec["management_ip"] == management_ip or rec["transport_ip"] == transport_ip:
                raise LabError(f"node {name}: address already used by node {other}")
        netns = naming.node_netns(self.prefix, name)
        base_dir = os.path.join(self.state_dir, "nodes", name)
        if len(os.path.join(base_dir, "run")) > _MAX_RUNDIR:
            raise LabError(f"state dir {self.state_dir} is too long for OVS unix sockets "
                           "(choose a shorter state_dir)")
        rec = {"netns": netns, "role": role, "management_ip": management_ip,
               "transport_ip": transport_ip, "mgmt_prefix_len": int(mgmt_prefix_len),
               "transport_prefix_len": int(transport_prefix_len),
               "ovsdb_port": int(ovsdb_port), "base_dir": base_dir,
               "ovsdb_remote": f"tcp:{management_ip}:{int(ovsdb_port)}",
               "unix_remote": f"unix:{os.path.join(base_dir, 'run', 'db.sock')}",
               "fabric_peers": {"mgmt": naming.fabric_peer_name("m", "node", name),
                                "transport": naming.fabric_peer_name("t", "node", name)},
               "pids": {}, "addresses": {}, "bridges": []}
        self._check_free(netns)
        self.state["nodes"][name] = rec
        try:
            self._add_ns(netns)
            self._veth_to_fabric(netns, "mgmt", "mgmt", rec["fabric_peers"]["mgmt"])
            ns.run(["ip", "addr", "replace", f"{management_ip}/{mgmt_prefix_len}",
                    "dev", "mgmt"], netns=netns)
            self._veth_to_fabric(netns, "eth1", "transport", rec["fabric_peers"]["transport"])

            inst = OvsInstance(base_dir, netns=netns, system_id=name)
            self._save()                      # base_dir recorded before OVS writes there
            inst.start()
            rec["pids"] = {d: inst.pid(d) for d in ("ovsdb-server", "ovs-vswitchd")}
            rec["start_times"] = {d: procs.start_time(p) for d, p in rec["pids"].items()}
            self._save()
            self._bootstrap(name, inst, rec)
        except Exception:
            self._remove_node(name)
            self._save()
            raise
        return {"netns": netns, "ovsdb_remote": rec["ovsdb_remote"],
                "unix_remote": rec["unix_remote"], "base_dir": base_dir}

    def _bootstrap(self, name, inst, rec):
        """The node's set-up, by the code `tenantnet node bootstrap` runs on a real host:
        ARP sysctls, br-int/br-tun(/br-ex) with datapath netdev, eth1 on br-tun, the
        transport IP on br-tun's LOCAL port, OVSDB opened to the management network."""
        transport = f"{rec['transport_ip']}/{rec['transport_prefix_len']}"
        rec["bridges"] = list(COMMON_BRIDGES[rec["role"]])
        rec["addresses"].setdefault("br-tun", [])
        if transport not in rec["addresses"]["br-tun"]:
            rec["addresses"]["br-tun"].append(transport)
        self._save()
        host = ExecHost(ns.executor_in(rec["netns"]))
        try:
            steps = bootstrap_node(inst.vsctl, rec["role"], "eth1", transport,
                                   rec["management_ip"], ovsdb_port=rec["ovsdb_port"],
                                   datapath="netdev", system_id=name, hostname=name,
                                   host=host, ofctl=inst.ofctl)
        except TenantnetError as exc:
            raise LabError(f"node {name}: bootstrap failed: {exc}") from exc
        rec["bootstrap"] = [str(st) for st in steps]
        self._save()

    @_mutating
    def add_host_node(self, name, role, management_ip, transport_ip, executor=None,
                      netns=None, ovsdb_port=6640, python=None, ssh_identity=None,
                      ssh_options=None, ssh_via=None, ovs_db=None):
        """Record node *name* that already exists and was bootstrapped on its own (a
        machine of the multi-node lab), reached through *executor* (a spec:
        'ssh:root@198.18.0.21', the default being ssh:root@MANAGEMENT_IP; 'local' for this
        host). *netns*: the namespace its Open vSwitch lives in on that host (None: the
        host's own). *python*: the interpreter with tenantnet on that host (for l2probe).
        *ssh_via*: where the ssh client runs ('netns:NAME'; default here). *ovs_db*: the
        OVSDB remote to check the host with (default: tcp:MANAGEMENT_IP:OVSDB_PORT, as the
        controller reaches it).

        Endpoints on it are made on that host; down() removes them and leaves the node."""
        self._check_name("node", name)
        if role not in ("compute", "network"):
            raise LabError(f"node {name}: role {role!r} must be 'compute' or 'network'")
        if name in self.state["nodes"]:
            raise LabError(f"node {name!r} already exists in this lab")
        for what, ip in (("management_ip", management_ip), ("transport_ip", transport_ip)):
            try:
                ipaddress.ip_address(ip)
            except ValueError as exc:
                raise LabError(f"node {name} {what}: {exc}") from exc
        spec = executor or f"ssh:root@{management_ip}"
        rec = {"netns": netns, "role": role, "management_ip": management_ip,
               "transport_ip": transport_ip, "ovsdb_port": int(ovsdb_port),
               "base_dir": None, "host_node": True, "exec": spec,
               "ssh_identity": ssh_identity, "ssh_options": dict(ssh_options or {}),
               "ssh_via": ssh_via, "ovs_db": ovs_db,
               "python": python, "ovsdb_remote": f"tcp:{management_ip}:{int(ovsdb_port)}",
               "unix_remote": None, "pids": {}, "addresses": {}, "bridges": []}
        self._host(spec, rec)                  # a bad spec fails here, before it is saved
        self.state["nodes"][name] = rec
        self._save()
        return {"netns": netns, "ovsdb_remote": rec["ovsdb_remote"], "exec": spec}

    @_mutating
    def set_node_kind(self, node, kind, **details):
        """Record what host node *node* is ('vm': a node VM of this lab; its details, e.g.
        accel='tcg'), for status and for the experiment's records."""
        rec = self._node(node)
        rec["kind"] = kind
        rec["kind_details"] = dict(details)
        self._save()

    def node_kind(self, node):
        """'emulated' (a namespace with its own OVS), 'vm' (a node VM) or 'host' (a machine
        reached over SSH)."""
        rec = self._node(node)
        if not rec.get("host_node"):
            return "emulated"
        return rec.get("kind", "host")

    @_reading
    def check_host_node(self, node):
        """Reach host node *node* and its OVSDB: returns its bridges (LabError naming the
        host when the executor or Open vSwitch there fails)."""
        rec = self._node(node)
        # By default through the OVSDB remote the controller uses (tcp:MANAGEMENT_IP:6640,
        # opened by bootstrap), from the host itself: that checks the manager too.
        db = rec.get("ovs_db") or rec["ovsdb_remote"]
        out = ns.run(["ovs-vsctl", f"--db={db}", "--timeout=10", "list-br"], netns=rec["netns"],
                     executor=self._node_host(rec))
        return out.stdout.split()

    @staticmethod
    def _wait_link(netns, ifname, timeout=5.0, executor=None):
        deadline = time.time() + timeout
        while True:
            if ns.link_exists(ifname, netns=netns, executor=executor):
                return
            if time.time() >= deadline:
                raise LabError(f"interface {ifname} did not appear in namespace {netns} "
                               f"within {timeout:.0f}s")
            time.sleep(0.05)

    @staticmethod
    def _ovs_procs(rec):
        """[(pid, start_time, daemon)] of a node's live daemons: the recorded pid with its
        recorded start time, or a pidfile's pid that runs from the node's directory."""
        if rec.get("host_node") or not rec.get("base_dir"):
            return []                         # a host node's Open vSwitch is not ours
        inst = OvsInstance(rec["base_dir"], netns=rec.get("netns"))
        pids, starts = rec.get("pids") or {}, rec.get("start_times") or {}
        found = []
        for daemon in ("ovs-vswitchd", "ovsdb-server"):
            for pid in sorted({inst.pid(daemon), pids.get(daemon)} - {None}):
                started = starts.get(daemon) if pid == pids.get(daemon) else None
                if started is None:
                    # No start time (a crash before it was saved, or an older state file):
                    # ours only while it runs from our directory. The start time now pins it.
                    if rec["base_dir"] not in proc_cmdline(pid):
                        continue
                    started = procs.start_time(pid)
                if pid_alive(pid, started):
                    found.append((pid, started, daemon))
        return found

    def _stop_ovs(self, *recs):
        """Stop nodes' daemons by pid (see _ovs_procs) and wait until they are gone; then
        remove their directories. Returns problems (a survivor keeps its directory)."""
        owned = {rec["base_dir"]: self._ovs_procs(rec) for rec in recs if rec.get("base_dir")
                 and not rec.get("host_node")}
        left = procs.stop([(pid, st) for found in owned.values() for pid, st, _ in found])
        problems = []
        for base_dir, found in owned.items():
            alive = [(pid, daemon) for pid, st, daemon in found if (pid, st) in left]
            if alive:
                problems.append(f"ovs {base_dir}: " + ", ".join(
                    f"{daemon} {procs.describe(pid)} survived SIGKILL" for pid, daemon in alive))
            else:
                shutil.rmtree(base_dir, ignore_errors=True)
        return problems

    def _remove_node(self, name):
        """Remove node *name*; returns problems (the node then stays recorded for down)."""
        rec = self.state["nodes"].get(name)
        if not rec:
            return []
        problems = self._stop_ovs(rec)
        if problems:
            return problems
        if not rec.get("host_node"):
            if rec["netns"] in self.state["namespaces"]:
                ns.delete(rec["netns"])
            self._forget_ns(rec["netns"])
        del self.state["nodes"][name]
        return []

    @_mutating
    def set_node_address(self, node, ifname, ip_cidr, timeout=5.0):
        """`ip addr replace` *ip_cidr* on *ifname* in the node namespace and set it up.

        Waits up to *timeout* s for the interface (OVS creates internal ports asynchronously)."""
        rec = self._node(node)
        self._check_ifname(ifname)
        try:
            ipaddress.ip_interface(ip_cidr)
        except ValueError as exc:
            raise LabError(f"set_node_address: {exc}") from exc
        host = self._node_host(rec)
        self._wait_link(rec["netns"], ifname, timeout, executor=host)
        ns.run(["ip", "addr", "replace", ip_cidr, "dev", ifname], netns=rec["netns"],
               executor=host)
        ns.run(["ip", "link", "set", ifname, "up"], netns=rec["netns"], executor=host)
        addrs = rec["addresses"].setdefault(ifname, [])
        if ip_cidr not in addrs:
            addrs.append(ip_cidr)
        self._save()

    @_mutating
    def del_node_address(self, node, ifname, ip_cidr):
        """Remove *ip_cidr* from *ifname* in the node namespace (fine when already gone)."""
        rec = self._node(node)
        host = self._node_host(rec)
        if ns.link_exists(ifname, netns=rec["netns"], executor=host):
            ns.run(["ip", "addr", "del", ip_cidr, "dev", ifname], netns=rec["netns"],
                   check=False, executor=host)
        addrs = rec["addresses"].get(ifname, [])
        if ip_cidr in addrs:
            addrs.remove(ip_cidr)
        if not addrs:
            rec["addresses"].pop(ifname, None)
        self._save()

    # -- endpoints -------------------------------------------------------------------------
    def add_endpoint(self, name, node, port_name, kind="vm"):
        """Namespace <prefix>-v-<name> (<prefix>-p-<name> for kind="probe") with `eth0`;
        its veth peer *port_name* is put in the node namespace and set up (not attached to
        any bridge: that is the caller's business). Returns the namespace name.

        On a host node all of it happens on that node's machine, through its executor.
        Only the bookkeeping holds the state lock; the `ip` commands run outside it, so a
        batch of endpoints is created in parallel (everything is recorded before it exists)."""
        self._check_name("endpoint", name)
        self._check_ifname(port_name)
        if kind not in ("vm", "probe"):
            raise LabError(f"endpoint {name}: kind {kind!r} must be 'vm' or 'probe'")
        with self._txn():
            if name in self.state["endpoints"]:
                raise LabError(f"endpoint {name!r} already exists in this lab")
            nrec = self._node(node)
            spec = nrec.get("exec", "local")
            host = self._node_host(nrec)
            if ns.link_exists(port_name, netns=nrec["netns"], executor=host):
                raise LabError(f"endpoint {name}: interface {port_name} already exists on node "
                               f"{node}")
            netns = naming.endpoint_netns(self.prefix, kind, name)
            self._check_free(netns, spec)
            self.state["endpoints"][name] = {"netns": netns, "node": node,
                                             "port_name": port_name, "kind": kind,
                                             "config": None, "exec": spec}
            self._add_ns(netns, spec, create=False)
        try:
            create_endpoint(host, nrec["netns"], netns, port_name)
        except Exception:
            with self._txn():
                self._remove_endpoint(name)
                self._save()
            raise
        return netns

    def configure_endpoint(self, name, mac, ip_cidr, mtu=1400, tx_offload=False,
                           neigh_gc_thresh=None):
        """Set MAC, MTU, IP and offloads of the endpoint's eth0 and bring it up.

        tx_offload=False runs `ethtool -K eth0 tx off` (the userspace datapath does not
        complete partial checksums of veth traffic). neigh_gc_thresh: None, an int N
        (gc_thresh1/2/3 = N, 2N, 4N) or a 3-tuple. Returns a dict of what was applied."""
        with self._txn():
            rec = self._endpoint(name)
            host, netns = self._endpoint_host(rec), rec["netns"]
        applied = {"endpoint": name}          # the commands run outside the state lock
        applied.update(configure_interface(host, netns, mac, ip_cidr, mtu=mtu,
                                           tx_offload=tx_offload,
                                           neigh_gc_thresh=neigh_gc_thresh,
                                           what=f"configure_endpoint {name}"))
        with self._txn():
            self._endpoint(name)["config"] = applied
            self._save()
        return dict(applied)

    def restore_endpoints(self, node):
        """Make again, as recorded, every endpoint of *node* whose namespace is gone (a
        node VM or host that rebooted: what a hypervisor does when it restarts its VMs).
        Returns {name: its recorded configuration} of the endpoints it made."""
        with self._txn():
            nrec = self._node(node)
            host = self._node_host(nrec)
            mine = {n: dict(r) for n, r in self.state["endpoints"].items()
                    if r["node"] == node}
        made = {}
        for name, rec in sorted(mine.items()):
            ehost = self._endpoint_host(rec)
            if ns.exists(rec["netns"], executor=ehost):
                continue
            if ns.link_exists(rec["port_name"], netns=nrec["netns"], executor=host):
                ns.run(["ip", "link", "del", rec["port_name"]], netns=nrec["netns"],
                       executor=host, check=False)
            create_endpoint(host, nrec["netns"], rec["netns"], rec["port_name"])
            cfg = rec.get("config")
            if cfg:
                configure_interface(ehost, rec["netns"], cfg["mac"], cfg["ip"],
                                    mtu=cfg.get("mtu", 1400),
                                    tx_offload=cfg.get("tx_offload", False),
                                    neigh_gc_thresh=cfg.get("neigh_gc_thresh"),
                                    what=f"restore_endpoint {name}")
            made[name] = cfg or {}
        return made

    def _endpoint_host(self, rec):
        spec = rec.get("exec", "local")
        node = self.state["nodes"].get(rec.get("node"))
        return self._host(spec, node if node and node.get("exec") == spec else None)

    def _remove_endpoint(self, name):
        rec = self.state["endpoints"].get(name)
        if not rec:
            return
        spec = rec.get("exec", "local")
        # Delete the pair from its node side first: a namespace's devices are destroyed
        # asynchronously by the kernel, so a node would otherwise keep the port a while.
        node = self.state["nodes"].get(rec.get("node"), {})
        if node and rec.get("port_name"):
            host = self._endpoint_host(rec) if spec != "local" else None
            ns.run(["ip", "link", "del", rec["port_name"]], netns=node.get("netns"),
                   check=False, executor=host)
        if spec != "local":
            entry = [spec, rec["netns"]]
            if entry in self.state["remote_namespaces"]:
                ns.delete(rec["netns"], executor=self._endpoint_host(rec))
                self.state["remote_namespaces"].remove(entry)
        else:
            if rec["netns"] in self.state["namespaces"]:
                ns.delete(rec["netns"])   # the veth pair (and the node-side port) goes with it
            self._forget_ns(rec["netns"])
        del self.state["endpoints"][name]

    @_mutating
    def remove_endpoint(self, name):
        """Delete the endpoint namespace (its veth pair disappears with it). OVS port records
        referring to the node-side port are the caller's to remove."""
        self._endpoint(name)
        self._remove_endpoint(name)
        self._save()

    @_reading
    def endpoint_netns(self, name):
        """The endpoint's namespace name (on its node's host: see endpoint_executor)."""
        return self._endpoint(name)["netns"]

    @_reading
    def endpoint_executor(self, name):
        """Executor running commands inside endpoint *name* wherever it lives (a
        NetnsExecutor on this host, or on a host node's machine over SSH): use its popen()
        rather than `ip netns exec` to start long-running tools (probers, iperf)."""
        rec = self._endpoint(name)
        return ns.executor_in(rec["netns"], base=self._endpoint_host(rec))

    @_reading
    def endpoint_python(self, name):
        """The Python with tenantnet on the endpoint's host (sys.executable here)."""
        rec = self._endpoint(name)
        node = self.state["nodes"].get(rec["node"]) or {}
        return node.get("python") or sys.executable

    @_reading
    def exec(self, name, cmd_list, check=False, timeout=60, capture=True):
        """Run *cmd_list* inside endpoint *name*'s namespace; return the CompletedProcess."""
        rec = self._endpoint(name)
        return ns.run(list(cmd_list), netns=rec["netns"], check=check, timeout=timeout,
                      capture=capture, executor=self._endpoint_host(rec))

    @_reading
    def node_exec(self, name, cmd_list, check=False, timeout=60, capture=True):
        """Run *cmd_list* on node *name*, whatever its kind: inside its namespace (an
        emulated node) or on its host (a real machine, over SSH). `vagrant ssh -c` for
        the lab's nodes. Returns the CompletedProcess."""
        rec = self.state["nodes"].get(name)
        if rec is None:
            known = ", ".join(sorted(self.state["nodes"])) or "none"
            raise LabError(f"no node {name!r} in lab {self.prefix!r} (nodes: {known})")
        host = self._node_host(rec)
        netns = None if rec.get("host_node") else rec["netns"]
        # an emulated node's own Open vSwitch: ovs-vsctl, ovs-ofctl, ovs-appctl find it
        env = None if netns is None else OvsInstance(rec["base_dir"], netns=netns).env
        return ns.run(list(cmd_list), netns=netns, check=check, timeout=timeout,
                      capture=capture, executor=host, env=env)

    # -- processes -------------------------------------------------------------------------
    @_mutating
    def start_process(self, name, cmd_list, netns, log_path):
        """Start *cmd_list* in namespace *netns* (None: this namespace) as a new session,
        output to *log_path*; its pid is recorded. Returns the pid."""
        self._check_name("process", name)
        old = self.state["processes"].get(name)
        if old and pid_alive(old["pid"], old.get("start_time")):
            raise LabError(f"process {name!r} is already running (pid {old['pid']})")
        if netns and not ns.exists(netns):
            raise LabError(f"start_process {name}: no network namespace {netns}")
        full = (["ip", "netns", "exec", netns] if netns else []) + list(cmd_list)
        os.makedirs(os.path.dirname(os.path.abspath(log_path)), exist_ok=True)
        # Record the intent first: a crash between Popen and the save leaves at worst a
        # record without pid, never an unrecorded process we started.
        self.state["processes"][name] = {"pid": None, "start_time": None, "netns": netns,
                                         "cmd": list(cmd_list), "log": log_path}
        self._save()
        try:
            with open(log_path, "ab") as log:
                proc = subprocess.Popen(full, stdin=subprocess.DEVNULL, stdout=log,
                                        stderr=subprocess.STDOUT, start_new_session=True)
        except OSError as exc:
            del self.state["processes"][name]
            self._save()
            raise LabError(f"start_process {name}: {exc}") from exc
        self._popen[name] = proc
        self.state["processes"][name].update(pid=proc.pid, start_time=procs.start_time(proc.pid))
        self._save()
        return proc.pid

    @_mutating
    def adopt_process(self, name, pid, netns, cmd_list, log_path):
        """Record daemon *pid*, started by other means (a QEMU that daemonized itself,
        say), as the lab's process *name*: `stop_process` and `down` end it by pid and
        start time, and wait until it is gone."""
        self._check_name("process", name)
        started = procs.start_time(pid)
        if started is None:
            raise LabError(f"adopt_process {name}: pid {pid} is not running")
        self.state["processes"][name] = {"pid": int(pid), "start_time": started,
                                         "netns": netns, "cmd": list(cmd_list),
                                         "log": log_path}
        self._save()

    @_reading
    def process_alive(self, name):
        rec = self.state["processes"].get(name)
        if not rec:
            return False
        proc = self._popen.get(name)
        if proc is not None and proc.poll() is not None:
            return False
        return pid_alive(rec["pid"], rec.get("start_time"))

    @_mutating
    def stop_process(self, name, timeout=5.0):
        """SIGTERM (then SIGKILL) the recorded process and the rest of its process group
        (only members started after it, so a reused pid is never hit), wait until they are
        gone, and forget it. LabError (the record kept) when one survives SIGKILL."""
        rec = self.state["processes"].get(name)
        if not rec:
            return
        pid, st = rec.get("pid"), rec.get("start_time")
        proc = self._popen.get(name)
        poll = proc.poll if proc is not None else None   # reaps it once it ended
        if pid and st is not None:
            for sig in (signal.SIGTERM, signal.SIGKILL):
                left = procs.group_members(pid, st)
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
        del self.state["processes"][name]
        self._save()

    # -- inspection ------------------------------------------------------------------------
    @_reading
    def status(self):
        """What this lab consists of, from the state file plus live checks."""
        nodes = {}
        for name, rec in self.state["nodes"].items():
            if rec.get("host_node"):
                try:
                    bridges, running = self.check_host_node(name), True
                except LabError:
                    bridges, running = [], False
                netns_exists = True if rec["netns"] is None else \
                    ns.exists(rec["netns"], executor=self._node_host(rec))
            else:
                inst = OvsInstance(rec["base_dir"], netns=rec["netns"])
                netns_exists = ns.exists(rec["netns"])
                running = inst.running() and netns_exists
                bridges = []
                if running:
                    out = inst.vsctl("list-br", check=False)
                    bridges = out.stdout.split() if out.returncode == 0 else []
            nodes[name] = {"netns": rec["netns"], "role": rec["role"],
                           "kind": self.node_kind(name), **rec.get("kind_details", {}),
                           "netns_exists": netns_exists, "exec": rec.get("exec", "local"),
                           "management_ip": rec["management_ip"],
                           "transport_ip": rec["transport_ip"],
                           "ovsdb_remote": rec["ovsdb_remote"],
                           "unix_remote": rec["unix_remote"], "base_dir": rec["base_dir"],
                           "ovs_running": running, "bridges": bridges,
                           "addresses": {k: list(v) for k, v in rec["addresses"].items()}}
        endpoints = {name: {"netns": rec["netns"], "node": rec["node"],
                            "port_name": rec["port_name"], "kind": rec["kind"],
                            "exec": rec.get("exec", "local"),
                            "netns_exists": ns.exists(rec["netns"],
                                                      executor=self._endpoint_host(rec)),
                            "config": rec["config"]}
                     for name, rec in self.state["endpoints"].items()}
        processes = {name: {"pid": rec["pid"], "netns": rec["netns"], "log": rec["log"],
                            "cmd": rec["cmd"], "alive": self.process_alive(name)}
                     for name, rec in self.state["processes"].items()}
        fab = self.state["fabric"]
        ctl = self.state["controller"]
        return {"prefix": self.prefix, "state_dir": self.state_dir,
                "fabric": dict(fab, netns_exists=ns.exists(fab["netns"])) if fab else None,
                "controller": dict(ctl, netns_exists=ns.exists(ctl["netns"])) if ctl else None,
                "nodes": nodes, "endpoints": endpoints, "processes": processes}

    # -- teardown --------------------------------------------------------------------------
    @staticmethod
    def _stop_namespace_processes(namespaces, timeout=5.0):
        """End every process left in *namespaces* (`ip netns pids`), by pid: SIGTERM, then
        SIGKILL, waiting until each is gone. Returns problems, as lines."""
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

    @_mutating
    def down(self):
        """Remove everything the state records (safe to repeat, and after a crash)."""
        problems = []
        for name in list(self.state["processes"]):
            try:
                self.stop_process(name)
            except Exception as exc:  # noqa: BLE001 -- keep tearing down
                problems.append(f"process {name}: {exc}")   # its record stays for a retry
        # OVS first (the daemons would keep a deleted namespace alive), also instances whose
        # directory exists without a node record (crash between mkdir and save).
        recs = list(self.state["nodes"].values())
        nodes_dir = os.path.join(self.state_dir, "nodes")
        known = {r["base_dir"] for r in recs}
        if os.path.isdir(nodes_dir):
            for entry in sorted(os.listdir(nodes_dir)):
                base = os.path.join(nodes_dir, entry)
                if base not in known:
                    recs.append({"base_dir": base, "netns": None, "pids": {}})
        try:
            problems += self._stop_ovs(*recs)
        except Exception as exc:  # noqa: BLE001
            problems.append(f"ovs: {exc}")

        # Node VMs (their QEMU was a process above): their namespaces went with them, and
        # their disks are removed here.
        vm_specs = set()
        for rec in self.state["nodes"].values():
            if rec.get("kind") == "vm":
                vm_specs.add(rec["exec"])
                vm_dir = rec.get("kind_details", {}).get("vm_dir")
                if vm_dir and os.path.isdir(vm_dir):
                    shutil.rmtree(vm_dir, ignore_errors=True)
                    with contextlib.suppress(OSError):     # the lab's folder, once empty
                        os.rmdir(os.path.dirname(vm_dir))
        # Endpoints on host nodes: on their machines, through their executors.
        for spec, name in list(self.state["remote_namespaces"]):
            if spec in vm_specs:
                self.state["remote_namespaces"].remove([spec, name])
                for ep, rec in list(self.state["endpoints"].items()):
                    if rec.get("exec") == spec and rec["netns"] == name:
                        del self.state["endpoints"][ep]
                continue
            try:
                host = self._host(spec)
                ns.delete(name, executor=host)
                if ns.exists(name, executor=host):
                    problems.append(f"namespace {name} on {spec} could not be deleted")
                    continue
            except TenantnetError as exc:
                problems.append(f"namespace {name} on {spec}: {exc}")
                continue
            self.state["remote_namespaces"].remove([spec, name])
            for ep, rec in list(self.state["endpoints"].items()):
                if rec.get("exec") == spec and rec["netns"] == name:
                    del self.state["endpoints"][ep]

        mine = self.prefix + "-"
        order = [r["netns"] for r in self.state["endpoints"].values()
                 if r.get("exec", "local") == "local"]
        order += [r["netns"] for r in self.state["nodes"].values() if not r.get("host_node")]
        if self.state["controller"]:
            order.append(self.state["controller"]["netns"])
        if self.state["fabric"]:
            order.append(self.state["fabric"]["netns"])
        # fallback: anything else the state references with our prefix
        order += [n for n in self.state["namespaces"] if n not in order]
        order = [n for n in order if n and n.startswith(mine)]
        # Whatever still runs in them (an `iperf3 -s -D` started with `lab exec`, say) would
        # outlive `ip netns del`: end it, by pid, and wait until it is gone.
        problems += self._stop_namespace_processes(order)
        for name in order:
            ns.delete(name)
            if ns.exists(name):
                problems.append(f"namespace {name} could not be deleted")
        if problems:
            self._save()
            raise LabError("lab down incomplete: " + "; ".join(problems))

        owns = self.state.get("owns_state_dir") or \
            self.state_dir == os.path.join(DEFAULT_STATE_ROOT, self.prefix)
        if owns:
            shutil.rmtree(self.state_dir, ignore_errors=True)
        else:
            # a directory the caller made: remove our files, and the directory if then empty
            shutil.rmtree(nodes_dir, ignore_errors=True)
            for f in (self.state_file, self.state_file + ".tmp",
                      os.path.join(self.state_dir, ".lock")):
                try:
                    os.remove(f)
                except FileNotFoundError:
                    pass
            try:
                os.rmdir(self.state_dir)
            except OSError:
                pass
        self._popen.clear()
        self.state = self._empty_state()
