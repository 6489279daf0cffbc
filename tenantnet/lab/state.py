"""The lab's books: typed records of everything a lab made, kept in <state_dir>/state.json.

Everything is recorded *before* it is created, so that `lab down` -- from this process or
another one, after a crash too -- removes exactly that. Several processes share one lab
(CLI, controller, tests): `StateStore.txn()` holds an flock on <state_dir>/.lock and
re-reads the file first, and `StateStore.read()` re-reads it, so no process ever saves a
stale copy over another's changes.

The JSON keys are those of the state files written before these records existed (format
version 1), so a lab brought up by an older tenantnet is read, and brought down, as is.
"""

import contextlib
import dataclasses
import fcntl
import json
import os
import re
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Tuple

from tenantnet.errors import LabError
from tenantnet.model import naming

STATE_VERSION = 1
DEFAULT_STATE_ROOT = "/run/tenantnet"
NODE_KINDS = ("emulated", "vm", "host")
IFNAMSIZ_MAX = 15
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,%d}$" % (naming.LAB_NAME_MAX - 1))
_IFNAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,14}$")


def check_name(what, name):
    """LabError unless *name* may name a lab node, endpoint or process."""
    if not isinstance(name, str) or not _NAME_RE.match(name):
        raise LabError(f"{what} name {name!r}: use 1-{naming.LAB_NAME_MAX} characters from "
                       "[A-Za-z0-9_.-], starting with a letter or digit")


def check_ifname(name):
    if not isinstance(name, str) or not _IFNAME_RE.match(name):
        raise LabError(f"interface name {name!r}: use 1-{IFNAMSIZ_MAX} characters from "
                       "[A-Za-z0-9_.-] (Linux limit)")


def _fields(cls, data, what):
    """The known keys of *data* for dataclass *cls* (unknown keys: a newer format)."""
    if not isinstance(data, dict):
        raise ValueError(f"{what}: expected an object, got {type(data).__name__}")
    names = {f.name for f in dataclasses.fields(cls)}
    return {k: v for k, v in data.items() if k in names}


@dataclass
class FabricRec:
    """The fabric namespace with the `mgmt` and `transport` Linux bridges."""
    netns: str
    management_cidr: str
    transport_cidr: str
    bridges: List[str] = field(default_factory=lambda: ["mgmt", "transport"])


@dataclass
class ControllerRec:
    """The controller namespace, with `mgmt` on the management bridge."""
    netns: str
    management_ip: str
    prefix_len: int
    fabric_peer: str


@dataclass
class VmDetails:
    """What a node VM is, beyond a host node (tenantnet.lab.vmnodes)."""
    accel: Optional[str] = None
    vm_dir: Optional[str] = None
    serial_log: Optional[str] = None
    memory_mb: Optional[int] = None


@dataclass
class NodeRec:
    """One lab node. kind: 'emulated' (a namespace with its own Open vSwitch, made by the
    lab), 'vm' (a node VM of the lab, reached over SSH) or 'host' (a machine that exists
    already, reached through its executor)."""
    kind: str
    netns: Optional[str]
    role: str
    management_ip: str
    transport_ip: str
    ovsdb_port: int = 6640
    ovsdb_remote: str = ""
    unix_remote: Optional[str] = None
    addresses: Dict[str, List[str]] = field(default_factory=dict)
    bridges: List[str] = field(default_factory=list)
    # emulated nodes
    mgmt_prefix_len: int = 24
    transport_prefix_len: int = 16
    base_dir: Optional[str] = None
    fabric_peers: Dict[str, str] = field(default_factory=dict)
    pids: Dict[str, Optional[int]] = field(default_factory=dict)
    start_times: Dict[str, Optional[int]] = field(default_factory=dict)
    bootstrap: List[str] = field(default_factory=list)
    tls_dir: Optional[str] = None     # its certificates (tenantnet pki node); None: plain TCP
    # host and vm nodes: where commands run, and how
    exec: str = "local"
    ssh_identity: Optional[str] = None
    ssh_options: Dict[str, str] = field(default_factory=dict)
    ssh_via: Optional[str] = None
    ovs_db: Optional[str] = None
    python: Optional[str] = None
    vm: Optional[VmDetails] = None

    @property
    def host_node(self):
        """A machine the lab reaches (vm, host), not a namespace it made."""
        return self.kind != "emulated"

    def to_json(self):
        out = dataclasses.asdict(self)
        del out["kind"], out["vm"]
        out["host_node"] = self.host_node
        if self.host_node:
            out["kind"] = self.kind
        if self.vm is not None:
            out["kind_details"] = dataclasses.asdict(self.vm)
        return out

    @classmethod
    def from_json(cls, data, name):
        known = _fields(cls, data, f"node {name}")
        known["kind"] = data.get("kind", "host") if data.get("host_node") else "emulated"
        if known["kind"] not in NODE_KINDS:
            raise ValueError(f"node {name}: unknown kind {known['kind']!r}")
        details = data.get("kind_details")
        if details:
            known["vm"] = VmDetails(**_fields(VmDetails, details, f"node {name}"))
        return cls(**known)


@dataclass
class EndpointRec:
    """An endpoint (a tenant's "VM", or a network's probe): namespace *netns* with `eth0`,
    its veth peer *port_name* on node *node*, made on the host *exec* names. *config*: what
    configure_endpoint applied (as it reports it), None before."""
    netns: str
    node: str
    port_name: str
    kind: str
    exec: str = "local"
    config: Optional[dict] = None

    @property
    def local(self):
        return self.exec == "local"


@dataclass
class ProcessRec:
    """A process the lab owns, known by pid *and* start time (a reused pid is not ours);
    pid None: recorded before it was started."""
    pid: Optional[int]
    start_time: Optional[int]
    netns: Optional[str]
    cmd: List[str]
    log: Optional[str]


@dataclass
class LabState:
    """The whole of one lab's books."""
    prefix: str
    version: int = STATE_VERSION
    owns_state_dir: bool = False
    namespaces: List[str] = field(default_factory=list)
    remote_namespaces: List[Tuple[str, str]] = field(default_factory=list)
    fabric: Optional[FabricRec] = None
    controller: Optional[ControllerRec] = None
    nodes: Dict[str, NodeRec] = field(default_factory=dict)
    endpoints: Dict[str, EndpointRec] = field(default_factory=dict)
    processes: Dict[str, ProcessRec] = field(default_factory=dict)

    # -- namespaces: local ones by name, those on host nodes as (executor spec, name) -----
    def owns_namespace(self, name, spec="local"):
        if spec == "local":
            return name in self.namespaces
        return (spec, name) in self.remote_namespaces

    def record_namespace(self, name, spec="local"):
        if spec == "local":
            if name not in self.namespaces:
                self.namespaces.append(name)
        elif (spec, name) not in self.remote_namespaces:
            self.remote_namespaces.append((spec, name))

    def forget_namespace(self, name, spec="local"):
        if spec == "local":
            if name in self.namespaces:
                self.namespaces.remove(name)
        elif (spec, name) in self.remote_namespaces:
            self.remote_namespaces.remove((spec, name))

    def node_with_exec(self, spec):
        """The first node reached through executor *spec* (its SSH settings), or None."""
        return next((r for r in self.nodes.values() if r.exec == spec), None)

    def is_empty(self):
        return not (self.fabric or self.controller or self.nodes or self.endpoints
                    or self.processes or self.namespaces or self.remote_namespaces)

    # -- JSON ------------------------------------------------------------------------------
    def to_json(self):
        return {"version": self.version, "prefix": self.prefix,
                "owns_state_dir": self.owns_state_dir,
                "namespaces": list(self.namespaces),
                "remote_namespaces": [list(e) for e in self.remote_namespaces],
                "fabric": dataclasses.asdict(self.fabric) if self.fabric else None,
                "controller": dataclasses.asdict(self.controller) if self.controller else None,
                "nodes": {n: r.to_json() for n, r in self.nodes.items()},
                "endpoints": {n: dataclasses.asdict(r) for n, r in self.endpoints.items()},
                "processes": {n: dataclasses.asdict(r) for n, r in self.processes.items()}}

    @classmethod
    def from_json(cls, data):
        """LabState from a state file's JSON; ValueError/TypeError when it is not one."""
        if not isinstance(data, dict):
            raise ValueError("not a JSON object")
        version = data.get("version", STATE_VERSION)
        if not isinstance(version, int) or version > STATE_VERSION:
            raise ValueError(f"state format {version!r} is newer than this tenantnet's "
                             f"({STATE_VERSION})")
        fab, ctl = data.get("fabric"), data.get("controller")
        return cls(
            prefix=data.get("prefix"), version=STATE_VERSION,
            owns_state_dir=bool(data.get("owns_state_dir")),
            namespaces=list(data.get("namespaces") or []),
            remote_namespaces=[(s, n) for s, n in data.get("remote_namespaces") or []],
            fabric=FabricRec(**_fields(FabricRec, fab, "fabric")) if fab else None,
            controller=ControllerRec(**_fields(ControllerRec, ctl, "controller"))
            if ctl else None,
            nodes={n: NodeRec.from_json(r, n) for n, r in (data.get("nodes") or {}).items()},
            endpoints={n: EndpointRec(**_fields(EndpointRec, r, f"endpoint {n}"))
                       for n, r in (data.get("endpoints") or {}).items()},
            processes={n: ProcessRec(**_fields(ProcessRec, r, f"process {n}"))
                       for n, r in (data.get("processes") or {}).items()})


class StateStore:
    """The state file of lab *prefix* in *state_dir*, its lock, and the current LabState
    (`state`): fresh after `read()`, and inside `txn()` until it ends."""

    def __init__(self, prefix, state_dir=None):
        self.prefix = prefix
        self.state_dir = os.path.abspath(state_dir or os.path.join(DEFAULT_STATE_ROOT, prefix))
        self.state_file = os.path.join(self.state_dir, "state.json")
        self.lock_file = os.path.join(self.state_dir, ".lock")
        self._depth = 0            # txn nesting
        self.state = self.load()

    @property
    def default_dir(self):
        """Whether state_dir is the lab's default one (always the lab's to remove)."""
        return self.state_dir == os.path.join(DEFAULT_STATE_ROOT, self.prefix)

    def load(self):
        try:
            with open(self.state_file) as fh:
                data = json.load(fh)
        except FileNotFoundError:
            return LabState(prefix=self.prefix)
        except (OSError, ValueError) as exc:
            raise LabError(f"{self.state_file}: unreadable lab state ({exc}); "
                           "remove it by hand after checking `ip netns list`") from exc
        if isinstance(data, dict) and data.get("prefix") != self.prefix:
            raise LabError(f"{self.state_file} belongs to lab prefix {data.get('prefix')!r}, "
                           f"not {self.prefix!r}")
        try:
            return LabState.from_json(data)
        except (ValueError, TypeError) as exc:
            raise LabError(f"{self.state_file}: not a lab state this tenantnet reads ({exc}); "
                           "bring the lab down with the tenantnet that made it "
                           f"(`tenantnet lab down --prefix {self.prefix}`)") from exc

    def read(self):
        """The current state, re-read from the file (unless inside a transaction)."""
        if not self._depth:
            self.state = self.load()
        return self.state

    @contextlib.contextmanager
    def txn(self):
        """Hold the lab's state lock with freshly loaded state (re-entrant); yields it."""
        if self._depth:
            self._depth += 1
            try:
                yield self.state
            finally:
                self._depth -= 1
            return
        created = not os.path.isdir(self.state_dir)
        os.makedirs(self.state_dir, exist_ok=True)
        fh = open(self.lock_file, "a")
        try:
            fcntl.flock(fh, fcntl.LOCK_EX)
            self.state = self.load()
            if created and not os.path.exists(self.state_file):
                self.state.owns_state_dir = True
            self._depth = 1
            try:
                yield self.state
            finally:
                self._depth = 0
        finally:
            fh.close()                   # releases the flock

    def save(self):
        os.makedirs(self.state_dir, exist_ok=True)
        tmp = self.state_file + ".tmp"
        with open(tmp, "w") as fh:
            json.dump(self.state.to_json(), fh, indent=2, sort_keys=True)
        os.replace(tmp, self.state_file)

    def reset(self):
        """Forget everything (the lab is down; its files are gone)."""
        self.state = LabState(prefix=self.prefix)
