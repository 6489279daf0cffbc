"""The one-machine lab's mechanics behind one face: LabFabric, identified by a prefix.

No knowledge of tenants. Each concern has its own module; LabFabric holds the books'
transaction around them and answers questions about the lab with typed records:

    lab/state        the books: typed records in <state_dir>/state.json, flock, re-read
    lab/fabricnet    <prefix>-fabric (bridges `mgmt`, `transport`), <prefix>-ctl,
                     management hosts (tenants' controllers)
    lab/nodes/       the node kinds: emulated (namespace + own OVS), vm (QEMU node VM),
                     host (a machine reached over SSH), one interface
    lab/endpoints    <prefix>-v-<name> / <prefix>-p-<name> namespaces on any node
    lab/processes    processes by pid and start time (controllers, QEMU)
    lab/teardown     `down`: everything the books record, safe to repeat
    lab/hosts        executors per host (one SSH connection each), namespace claims

Every name derived from a node or endpoint name comes from tenantnet.model.naming.
Mutating methods hold the books' lock on freshly loaded state; reading methods re-read it,
so several processes (CLI, controller, tests) may share one lab.
"""

import dataclasses
import functools
import os
import re
import shutil

from tenantnet.errors import LabError
from tenantnet.lab import fabricnet, hosts, teardown
from tenantnet.lab import netns as ns
from tenantnet.lab import ovs as ovsmod
from tenantnet.lab.endpoints import Endpoints
from tenantnet.lab.nodes import EmulatedNode, HostNode, VmNode, node_named, node_of
from tenantnet.lab.processes import Supervisor
from tenantnet.lab.state import StateStore, check_name
from tenantnet.model import naming

_PREFIX_RE = re.compile(r"^[a-z](?:[a-z0-9-]{0,6}[a-z0-9])?$")
REQUIRED_TOOLS = ("ip", "ethtool", "ping", "sysctl")
ROLES = ("compute", "network")


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
    """Run *method* under the books' lock, on freshly loaded state."""
    @functools.wraps(method)
    def wrapper(self, *args, **kwargs):
        with self.store.txn():
            return method(self, *args, **kwargs)
    return wrapper


def _reading(method):
    """Run *method* on freshly loaded state (unless inside a transaction)."""
    @functools.wraps(method)
    def wrapper(self, *args, **kwargs):
        self.store.read()
        return method(self, *args, **kwargs)
    return wrapper


class LabFabric:
    """Builder and janitor of one lab, identified by *prefix* (namespace name prefix)."""

    def __init__(self, prefix="tn", state_dir=None):
        if not _PREFIX_RE.match(prefix or ""):
            raise LabError(f"lab prefix {prefix!r}: use 1-8 lowercase letters, digits or '-', "
                           "starting with a letter and not ending with '-'")
        self.prefix = prefix
        self.store = StateStore(prefix, state_dir)
        self.state_dir = self.store.state_dir
        self.state_file = self.store.state_file
        self.processes = Supervisor(self.store)
        self.endpoints = Endpoints(self.store)

    @property
    def state(self):
        """The lab's books as they are now (a LabState, typed records): read them, never
        change them here -- the methods below do, under the lock."""
        return self.store.read()

    # -- questions ---------------------------------------------------------------------------
    @property
    def fabric_netns(self):
        return naming.fabric_netns(self.prefix)

    @property
    def controller_netns(self):
        return naming.controller_netns(self.prefix)

    def has_fabric(self):
        """Whether the fabric namespace is recorded (a lab is up, or half up)."""
        return self.state.fabric is not None

    def is_empty(self):
        """Nothing recorded: no lab with this prefix and state directory."""
        return self.state.is_empty()

    def node_names(self):
        return sorted(self.state.nodes)

    def has_node(self, name):
        return name in self.state.nodes

    def has_endpoint(self, name):
        return name in self.state.endpoints

    def endpoint_names(self):
        return sorted(self.state.endpoints)

    def node(self, name):
        """The node object of *name* (tenantnet.lab.nodes), whatever its kind."""
        return node_named(self.store, name)

    @_reading
    def node_netns(self, node):
        rec = self.store.state.nodes.get(node)
        return rec.netns if rec else naming.node_netns(self.prefix, node)

    def node_kind(self, node):
        """'emulated' (a namespace with its own OVS), 'vm' (a node VM) or 'host' (a machine
        reached over SSH)."""
        return self.node(node).kind

    def ovs(self, node):
        """The OvsInstance of emulated node *node* (for vsctl/ofctl/appctl)."""
        return self.node(node).ovs()

    def node_executor(self, node):
        """Executor that runs commands in *node*'s namespace on its host."""
        return self.node(node).executor()

    def check_host_node(self, node):
        """Reach node *node* and its OVSDB: returns its bridges (LabError naming the host
        when the executor or Open vSwitch there fails)."""
        return self.node(node).bridges()

    def node_exec(self, name, cmd_list, check=False, timeout=60, capture=True):
        """Run *cmd_list* on node *name*, whatever its kind: inside its namespace (an
        emulated node) or on its host (a real machine, over SSH). `vagrant ssh -c` for
        the lab's nodes. Returns the CompletedProcess."""
        nodes = self.state.nodes
        if name not in nodes:
            known = ", ".join(sorted(nodes)) or "none"
            raise LabError(f"no node {name!r} in lab {self.prefix!r} (nodes: {known})")
        return self.node(name).run(cmd_list, check=check, timeout=timeout, capture=capture)

    # -- the fabric and its management hosts ---------------------------------------------------
    @_mutating
    def up_fabric(self, management_cidr="198.18.0.0/24", transport_cidr="198.19.0.0/16"):
        """Create <prefix>-fabric with Linux bridges `mgmt` and `transport` (idempotent)."""
        return fabricnet.up_fabric(self.store, management_cidr, transport_cidr)

    @_mutating
    def add_controller(self, management_ip, prefix_len=24):
        """Namespace <prefix>-ctl with `mgmt` on the management bridge. Returns its name."""
        return fabricnet.add_controller(self.store, management_ip, prefix_len)

    @_mutating
    def add_management_host(self, netns, peer, management_ip, prefix_len=24):
        """Namespace *netns* with `mgmt` at *management_ip* on the management bridge (a
        tenant's controller, say). Recorded for `down`. Returns *netns*."""
        return fabricnet.add_management_host(self.store, netns, peer, management_ip,
                                             prefix_len)

    # -- nodes: described first, built second --------------------------------------------------
    def _check_new_node(self, name, role):
        check_name("node", name)
        if role not in ROLES:
            raise LabError(f"node {name}: role {role!r} must be 'compute' or 'network'")
        if name in self.store.state.nodes:
            raise LabError(f"node {name!r} already exists in this lab")

    @_mutating
    def add_node(self, name, role, management_ip, transport_ip, mgmt_prefix_len=24,
                 transport_prefix_len=16, ovsdb_port=6640, tls_dir=None):
        """Create emulated node *name* (role "compute" or "network") with its own Open
        vSwitch; *tls_dir*: its certificates (OVSDB on pssl:), None: plain TCP. Returns
        {netns, ovsdb_remote, unix_remote, base_dir}."""
        state = self.store.state
        fabricnet.require_fabric(state)
        self._check_new_node(name, role)
        rec = EmulatedNode.describe(state, self.prefix, self.state_dir, name, role,
                                    management_ip, transport_ip, mgmt_prefix_len,
                                    transport_prefix_len, ovsdb_port, tls_dir)
        for other, o in state.nodes.items():
            if o.management_ip == management_ip or o.transport_ip == transport_ip:
                raise LabError(f"node {name}: address already used by node {other}")
        hosts.check_free(state, rec.netns)
        state.nodes[name] = rec
        node = node_of(name, rec, self.store)
        try:
            node.build()
        except Exception:
            if not node.remove():
                del state.nodes[name]
            self.store.save()
            raise
        return {"netns": rec.netns, "ovsdb_remote": rec.ovsdb_remote,
                "unix_remote": rec.unix_remote, "base_dir": rec.base_dir}

    @_mutating
    def add_host_node(self, name, role, management_ip, transport_ip, executor=None,
                      netns=None, ovsdb_port=6640, python=None, ssh_identity=None,
                      ssh_options=None, ssh_via=None, ovs_db=None, vm=None, tls=True):
        """Record node *name* that already exists and was bootstrapped on its own (see
        nodes.HostNode.describe for the arguments); *vm*: a VmDetails when it is a node
        VM of this lab (tenantnet.lab.vmnodes); *tls*: its OVSDB is on pssl: (the
        default), else plain TCP. Endpoints on it are made on that host;
        down() removes them and leaves the node."""
        self._check_new_node(name, role)
        kind = HostNode if vm is None else VmNode
        rec = kind.describe(name, role, management_ip, transport_ip, executor, netns,
                            ovsdb_port, python, ssh_identity, ssh_options, ssh_via, ovs_db,
                            vm=vm, tls=tls)
        self.store.state.nodes[name] = rec
        self.store.save()
        return {"netns": netns, "ovsdb_remote": rec.ovsdb_remote, "exec": rec.exec}

    @_mutating
    def set_node_address(self, node, ifname, ip_cidr, timeout=5.0):
        """`ip addr replace` *ip_cidr* on *ifname* in the node's namespace and set it up,
        waiting up to *timeout* s for the interface."""
        self.node(node).set_address(ifname, ip_cidr, timeout)

    @_mutating
    def del_node_address(self, node, ifname, ip_cidr):
        """Remove *ip_cidr* from *ifname* in the node's namespace (fine when gone)."""
        self.node(node).del_address(ifname, ip_cidr)

    # -- endpoints (tenantnet.lab.endpoints) ------------------------------------------------
    def add_endpoint(self, name, node, port_name, kind="vm"):
        """Namespace <prefix>-v-<name> (<prefix>-p-<name> for kind="probe") with `eth0` on
        *node*, its veth peer *port_name* in the node's namespace. Returns the namespace."""
        return self.endpoints.add(name, node, port_name, kind)

    def configure_endpoint(self, name, mac, ip_cidr, mtu=1400, tx_offload=False,
                           neigh_gc_thresh=None):
        """Set MAC, MTU, IP and offloads of the endpoint's eth0; a dict of what was applied."""
        return self.endpoints.configure(name, mac, ip_cidr, mtu, tx_offload, neigh_gc_thresh)

    def restore_endpoints(self, node):
        """Make again every endpoint of *node* whose namespace is gone; {name: config}."""
        return self.endpoints.restore(node)

    def remove_endpoint(self, name):
        self.endpoints.remove(name)

    def endpoint_netns(self, name):
        """The endpoint's namespace name (on its node's host: see endpoint_executor)."""
        return self.endpoints.get(name).netns

    def endpoint_executor(self, name):
        """Executor running commands inside endpoint *name* wherever it lives: use its
        popen() rather than `ip netns exec` to start long-running tools (probers, iperf)."""
        return self.endpoints.executor(name)

    def endpoint_python(self, name):
        """The Python with tenantnet on the endpoint's host (sys.executable here)."""
        return self.endpoints.python(name)

    def exec(self, name, cmd_list, check=False, timeout=60, capture=True):
        """Run *cmd_list* inside endpoint *name*'s namespace; return the CompletedProcess."""
        return self.endpoints.run(name, cmd_list, check, timeout, capture)

    # -- processes (tenantnet.lab.processes) ------------------------------------------------
    @_mutating
    def start_process(self, name, cmd_list, netns, log_path):
        """Start *cmd_list* in namespace *netns* (None: this one), output to *log_path*;
        recorded by pid and start time. Returns the pid."""
        return self.processes.start(name, cmd_list, netns, log_path)

    @_mutating
    def adopt_process(self, name, pid, netns, cmd_list, log_path):
        """Record daemon *pid*, started by other means (a QEMU that daemonized itself),
        as the lab's process *name*: stop_process and down end it by pid."""
        self.processes.adopt(name, pid, netns, cmd_list, log_path)

    @_reading
    def process(self, name):
        """The ProcessRec of *name*, or None."""
        return self.store.state.processes.get(name)

    @_reading
    def process_alive(self, name):
        return self.processes.alive(name)

    @_mutating
    def stop_process(self, name, timeout=5.0):
        """End the recorded process (and its group) and forget it; LabError (the record
        kept) when one survives SIGKILL."""
        self.processes.stop(name, timeout)

    # -- inspection and teardown -------------------------------------------------------------
    @_reading
    def status(self):
        """What this lab consists of, from the books plus live checks."""
        state = self.store.state
        ep_hosts = self.endpoints.host
        return {"prefix": self.prefix, "state_dir": self.state_dir,
                "fabric": _with_netns(state.fabric), "controller": _with_netns(state.controller),
                "nodes": {name: node_of(name, rec, self.store).status()
                          for name, rec in state.nodes.items()},
                "endpoints": {name: {"netns": rec.netns, "node": rec.node,
                                     "port_name": rec.port_name, "kind": rec.kind,
                                     "exec": rec.exec, "config": rec.config,
                                     "netns_exists": ns.exists(rec.netns,
                                                               executor=ep_hosts(rec))}
                              for name, rec in state.endpoints.items()},
                "processes": self.processes.status()}

    @_mutating
    def down(self):
        """Remove everything the books record (safe to repeat, and after a crash)."""
        teardown.down(self.store, self.processes)


def _with_netns(rec):
    if rec is None:
        return None
    out = dataclasses.asdict(rec)
    out["netns_exists"] = ns.exists(rec.netns)
    return out
