"""OVSDB southbound: make a node's Open vSwitch match its desired NodeState.

One ovsdbapp connection per node (active: the controller connects to the node's
ovsdb-server). `reconcile` reads what the node holds, computes the difference and
commits it as one transaction; running it again with the same desired state commits
nothing. The difference itself (which commands) is southbound.ovsplan's. After the
transaction every port we want is checked for ofport/error.

The datapath type belongs to the node: `connect` reads it (Open_vSwitch
external_ids:tenantnet-datapath, set by node bootstrap; else br-tun's datapath_type); the
planner gives it to the bridges it creates."""

import logging
import select
import threading
import time
from dataclasses import dataclass, field

from ovs import poller as ovs_poller
from ovsdbapp.backend.ovs_idl import command as ovs_command
from ovsdbapp.backend.ovs_idl import connection, idlutils
from ovsdbapp.schema.open_vswitch import impl_idl

from tenantnet.southbound import ovsjson, ovsplan, ovsread, ovsview
from tenantnet.model.desired import DATAPATH_KEY, DATAPATHS, TRANSPORT_BRIDGE
from tenantnet.model.records import OWNER, OWNER_KEY
from tenantnet.errors import SouthboundError

LOG = logging.getLogger(__name__)


class SystemPoll:
    """What python-ovs's Poller expects of its poll object (register(fd, events), adding to
    what the fd was registered for; poll(milliseconds)), on the system's poll().

    python-ovs waits with select() (an emulation of poll() kept for eventlet, which tenantnet
    does not use): select() refuses socket numbers above 1,023, and a controller with 1,000
    bridges connected has them, so an OVSDB connection made then could never be read."""

    def __init__(self):
        self._poll = select.poll()
        self._events = {}

    def register(self, fd, events):
        fd = fd if isinstance(fd, int) else fd.fileno()
        self._events[fd] = self._events.get(fd, 0) | events   # poll() would replace them
        self._poll.register(fd, self._events[fd])

    def poll(self, timeout):
        return self._poll.poll(timeout)


ovs_poller.SelectPoll = SystemPoll
# ovsdbapp logs every failed schema fetch at INFO; connect() retries and reports once.
logging.getLogger("ovsdbapp.backend.ovs_idl.idlutils").setLevel(logging.WARNING)


class _Snapshot(ovs_command.BaseCommand):
    """The node's Bridge/Port/Interface tables as plain dicts, from the connection's
    LiveView (southbound.ovsview: only rows changed since the last read are converted).

    READ_ONLY: ovsdbapp runs it in the caller's thread under the connection lock, with no
    transaction. (As a transaction it would bump next_cfg, make ovs-vswitchd reconfigure,
    and wait for that: about 5 ms for every read.) The answer is a point-in-time copy of
    the view's maps (rows are replaced, never changed, when they change)."""

    READ_ONLY = True

    def __init__(self, api, view):
        super().__init__(api)
        self.view = view

    def run_idl(self, txn):
        idl = self.api.ovsdb_connection.idl
        tables = self.view.read(idl, _session_seqno(idl))
        self.result = {key: dict(value) for key, value in tables.items()}


def node_datapath(snap):
    """(datapath type, where it came from) of the node in *snap*, or (None, None): the
    record node bootstrap leaves (Open_vSwitch external_ids:tenantnet-datapath), else the
    datapath type of br-tun."""
    recorded = snap.get("system", {}).get("external_ids", {}).get(DATAPATH_KEY)
    if recorded in DATAPATHS:
        return recorded, f"Open_vSwitch external_ids:{DATAPATH_KEY}"
    tun = snap["bridges"].get(TRANSPORT_BRIDGE)
    if tun is not None:
        return ovsplan.datapath_name(tun["datapath_type"]), f"{TRANSPORT_BRIDGE} datapath_type"
    return None, None


@dataclass
class ReconcileResult:
    node: str
    commands: list = field(default_factory=list)   # human-readable description of each change
    seconds: float = 0.0
    portmaps: dict = field(default_factory=dict)   # bridge -> {port name: ofport}
    macs: dict = field(default_factory=dict)       # interface -> MAC in use (tunnel endpoints)
    diffed: list = field(default_factory=list)     # the bridges compared (the rest: in order)

    @property
    def changed(self):
        return bool(self.commands)


class NodeOvsdb:
    """An active OVSDB connection to one node.

    `connect` makes one connection (or retries for *retry_for* seconds), every step of it
    bounded by *attempt_timeout*: a node that is gone, or whose management link drops
    packets, costs at most that long. `connected` says whether that very connection still
    holds: the IDL underneath reconnects on its own after a break, but what it missed
    meanwhile is unknown, so a reconnect counts as a break (the caller reconnects and
    reconciles in full).

    A *deferred* connect reads the node's tables once without an IDL (southbound.ovsread)
    and starts the IDL only when something needs it: a reconcile that finds a change to
    commit, or `connected` (the node watchers' check, which follows the controller's
    start-up). Until then `snapshot` answers from that first read. After a controller
    restart a node that needs no change is reconciled at a small share of an IDL's cost
    (docs/performance.md)."""

    def __init__(self, node, remote, timeout=20):
        self.node = node
        self.remote = remote
        self.timeout = timeout
        self.api = None
        self.datapath = None          # the node's datapath type, read by connect()
        self._session_seqno = None    # the session's seqno when we connected
        self._view = None             # the connection's ovsview.LiveView
        self._first = None            # a deferred connect's first read (a view), until the IDL
        self._load_lock = threading.Lock()
        self._planner = ovsplan.Planner(node)

    def connect(self, retry_for=30.0, attempt_timeout=5.0, deferred=False):
        """Connect (SouthboundError, one line, when the node cannot be reached or was never
        bootstrapped). *retry_for* 0: one attempt. *deferred*: see the class."""
        deadline = time.monotonic() + retry_for
        LOG.debug("node %s: connecting to OVSDB at %s", self.node, self.remote)
        while True:
            try:
                self._connect_once(attempt_timeout, deferred)
                break
            except SouthboundError:
                if time.monotonic() + 0.2 >= deadline:
                    raise
                time.sleep(0.2)
        try:
            self.read_datapath()
        except SouthboundError:
            self.close()
            raise
        return self

    def _connect_once(self, timeout, deferred):
        self.close()
        ovsjson.use_c_parser()
        try:
            with ovsread.Reader(self.remote, timeout) as reader:
                schema = reader.schema("Open_vSwitch")
                columns = ovsview.monitored_columns(schema)
                first = reader.select(schema, {t: columns[t] for t in ovsview.TABLES}) \
                    if deferred else None
        except (OSError, ValueError) as exc:
            raise SouthboundError(f"node {self.node}: cannot reach OVSDB at {self.remote}: "
                                  f"{_why(exc)}") from None
        helper = idlutils.create_schema_helper(schema)
        for table, cols in columns.items():
            helper.register_columns(table, cols)
        idl = ovsview.TrackingIdl(self.remote, helper)
        conn = connection.Connection(idl=idl, timeout=timeout)
        # ovsdbapp keeps the connection in a *class* attribute, shared by every
        # instance: a class of our own per node keeps each node's connection apart.
        per_node = type(f"NodeOvsdbIdl_{self.node}", (impl_idl.OvsdbIdl,),
                        {"_ovsdb_connection": None})
        api = per_node(conn, start=False)     # commands can be made before it starts
        self._planner.forget()
        if deferred:
            self.api = api
            self._first = ovsview.read_selected(first)
            return
        self._start_idl(api, timeout)
        self.api = api

    def _start_idl(self, api, timeout):
        """Start *api*'s IDL: the node's initial contents within *timeout* seconds."""
        conn = api.ovsdb_connection
        conn.timeout = timeout
        try:
            conn.start()
        except Exception as exc:  # noqa: BLE001 -- one line; ovsdbapp would log a traceback
            conn.idl.close()
            raise SouthboundError(f"node {self.node}: OVSDB at {self.remote} did not send its "
                                  f"contents within {timeout:.0f}s ({_why(exc)})") from None
        conn.timeout = self.timeout    # transactions get the longer timeout
        self._view = ovsview.LiveView()
        self._session_seqno = _session_seqno(conn.idl)

    def _load(self):
        """Start the IDL of a deferred connect, once (SouthboundError when it fails: the
        connection is then broken). The planner forgets what it found in order: the IDL's
        view counts changes afresh."""
        with self._load_lock:
            if self._first is None:
                return
            api = self.api
            try:
                if api is None:
                    raise SouthboundError(f"node {self.node}: not connected to its OVSDB "
                                          f"({self.remote})")
                self._start_idl(api, self.timeout)
            finally:
                self._first = None
            self._planner.forget()
            LOG.debug("node %s: IDL started after a deferred connect", self.node)

    def connected(self):
        """True while the connection made by connect() holds (no break since). After a
        deferred connect, the first call starts the IDL (and waits for it)."""
        if self._first is not None:
            try:
                self._load()
            except SouthboundError as exc:
                LOG.info("%s", exc)
                return False
        api = self.api
        if api is None:
            return False
        try:
            conn = api.ovsdb_connection
            return bool(conn.is_running) and _session_seqno(conn.idl) == self._session_seqno \
                and _session_connected(conn.idl)
        except Exception:  # noqa: BLE001 -- a half-closed connection is not connected
            return False

    def read_datapath(self, snap=None):
        """The node's datapath type (also kept in self.datapath), as node bootstrap recorded
        it, else br-tun's. SouthboundError when the node has neither: it was never
        bootstrapped."""
        snap = snap or self.snapshot()
        datapath, source = node_datapath(snap)
        if datapath is None:
            raise SouthboundError(
                f"node {self.node} ({self.remote}) has no datapath type: neither Open_vSwitch "
                f"external_ids:{DATAPATH_KEY} nor a {TRANSPORT_BRIDGE} bridge; run `tenantnet "
                "node bootstrap --datapath system|netdev` on the node first")
        tun = snap["bridges"].get(TRANSPORT_BRIDGE)
        if tun is not None and ovsplan.datapath_name(tun["datapath_type"]) != datapath:
            LOG.warning("node %s: bootstrap recorded datapath %s but %s has datapath_type %s; "
                        "new bridges get %s, existing ones are left as they are (re-run "
                        "`tenantnet node bootstrap` to make them agree)", self.node, datapath,
                        TRANSPORT_BRIDGE, ovsplan.datapath_name(tun["datapath_type"]),
                        datapath)
        if datapath != self.datapath:
            LOG.info("node %s: datapath %s (from %s)", self.node, datapath, source)
        self.datapath = datapath
        return datapath

    def close(self):
        api, self.api = self.api, None
        if api is not None and self._first is not None:   # deferred, never started
            self._first = None
            api.ovsdb_connection.idl.close()
            return
        if api is not None:
            try:
                api.ovsdb_connection.stop(timeout=5)
            except Exception:  # noqa: BLE001 -- closing a dead connection is not worth reporting
                pass

    def snapshot(self):
        first = self._first
        if first is not None:          # a deferred connect's first read
            return {key: dict(value) for key, value in first.items()}
        return _Snapshot(self.api, self._view).execute(check_error=True)

    def link_state(self, ifname):
        """`link_state` of interface *ifname* as the node's Open vSwitch reports it ('up',
        'down'; None when it has no such interface or reports none)."""
        return self.snapshot()["interfaces"].get(ifname, {}).get("link_state")

    def portmap(self, bridge, snap=None):
        snap = snap or self.snapshot()
        br = snap["bridges"].get(bridge)
        if not br:
            return {}
        out = {}
        for pname in br["ports"]:
            for iname in snap["ports"][pname]["interfaces"]:
                ofport = snap["interfaces"][iname]["ofport"]
                if isinstance(ofport, int) and ofport > 0:
                    out[iname] = ofport
        return out

    def owned(self, snap=None):
        """What this node holds that is ours: {bridges: [...], ports: {name: external_ids}}."""
        snap = snap or self.snapshot()
        return {
            "bridges": sorted(n for n, b in snap["bridges"].items()
                              if b["external_ids"].get(OWNER_KEY) == OWNER),
            "ports": {n: p["external_ids"] for n, p in snap["ports"].items()
                      if p["external_ids"].get(OWNER_KEY) == OWNER},
        }

    # -- reconcile -----------------------------------------------------------------
    def plan(self, desired, snap):
        """The ovsplan.Plan turning *snap* into *desired* (see ovsplan.Planner.plan)."""
        return self._planner.plan(self.api, desired, snap, self.datapath)

    def reconcile(self, desired, wait_ofport=10.0):
        """Make the node match *desired* (a NodeState). Returns ReconcileResult."""
        start = time.perf_counter()
        if self._first is None and not self.connected():
            # The IDL's copy may be stale, and a transaction would wait out its timeout.
            raise SouthboundError(f"node {self.node}: not connected to its OVSDB "
                                  f"({self.remote})")
        snap = self.snapshot()
        plan = self.plan(desired, snap)
        if plan.commands and self._first is not None:
            self._load()               # a change to commit: it needs the IDL, and its view
            snap = self.snapshot()
            plan = self.plan(desired, snap)
        cmds = plan.commands
        if cmds:
            try:
                with self.api.transaction(check_error=True) as txn:
                    for cmd in cmds:
                        txn.add(cmd)
            except Exception as exc:
                raise SouthboundError(f"node {self.node}: OVSDB transaction failed: {exc}") from exc
        result = ReconcileResult(node=self.node, commands=plan.notes, diffed=plan.diffed)
        result.portmaps, result.macs = self._wait_ports(
            desired, plan.diffed, wait_ofport if cmds else 0.0)
        self._planner.remember(plan.in_order)
        result.seconds = time.perf_counter() - start
        return result

    def _wait_ports(self, desired, bridges, timeout):
        """Wait until every wanted port of *bridges* has an ofport; raise on an interface
        error. Returns ({bridge: portmap} of *bridges*, {br-tun interface: MAC in use})."""
        deadline = time.time() + timeout
        while True:
            snap = self.snapshot()
            missing, errors = [], []
            for br in (desired.bridges[b] for b in bridges):
                for name in br.ports:
                    iface = snap["interfaces"].get(name)
                    if iface is None:
                        missing.append(name)
                    elif iface["error"]:
                        errors.append(f"{name}: {iface['error']}")
                    elif not isinstance(iface["ofport"], int) or iface["ofport"] <= 0:
                        missing.append(name)
            if not missing and not errors:
                macs = {name: snap["interfaces"][name]["mac_in_use"]
                        for name in snap["bridges"].get("br-tun", {}).get("ports", [])
                        if name in snap["interfaces"]}
                return {b: self.portmap(b, snap) for b in bridges}, macs
            if time.time() >= deadline:
                if errors:
                    raise SouthboundError(f"node {self.node}: port errors: {'; '.join(errors)}")
                raise SouthboundError(f"node {self.node}: ports without an OpenFlow port number "
                                      f"after {timeout:.0f}s: {', '.join(sorted(missing))}")
            time.sleep(0.02)


def _why(exc):
    """An exception as a short reason."""
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    try:
        text = str(exc).strip()
    except Exception:  # noqa: BLE001 -- ovsdbapp's TimeoutException from wait_for_change
        text = ""      # has no message to format
    return (text or type(exc).__name__).splitlines()[0]


# The python-ovs IDL has no public "is this the connection I made" query; its jsonrpc
# session counts connects and disconnects in a seqno.
def _session_seqno(idl):
    return idl._session.get_seqno()


def _session_connected(idl):
    return idl._session.is_connected()
