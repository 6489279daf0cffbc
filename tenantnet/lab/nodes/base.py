"""What every lab node offers, whatever its kind: where its commands run, its Open vSwitch
(as an OVSDB target), addresses on its interfaces, endpoints made on it, teardown, status.

A node object is a view on its record (a NodeRec in the lab's books, `store`): methods that
change the record save the books, and the caller holds `store.txn()` around them."""

import ipaddress
import time

from tenantnet.errors import LabError
from tenantnet.lab import hosts
from tenantnet.lab import netns as ns
from tenantnet.lab.state import check_ifname
from tenantnet.node import procs


class LabNode:
    kind = None

    def __init__(self, name, rec, store):
        self.name = name
        self.rec = rec
        self.store = store

    # -- where commands run ------------------------------------------------------------
    @property
    def host(self):
        """The executor of the machine the node lives on (this one, or one over SSH)."""
        return hosts.node_host(self.rec)

    @property
    def spec(self):
        """The executor spec of that machine ('local', 'ssh:...'), as endpoints record it."""
        return self.rec.exec

    @property
    def netns(self):
        """The namespace the node's interfaces live in on its host (None: the host's own)."""
        return self.rec.netns

    def executor(self):
        """Executor that runs commands in the node's namespace on its host."""
        return ns.executor_in(self.netns, base=self.host)

    def run(self, cmd_list, check=False, timeout=60, capture=True):
        """Run *cmd_list* on the node (`tenantnet lab node`); the CompletedProcess."""
        return ns.run(list(cmd_list), netns=self.netns, check=check, timeout=timeout,
                      capture=capture, executor=self.host)

    def build(self):
        """Make the node as described by its record. A host or VM node exists before it is
        recorded (a node VM is booted and provisioned by tenantnet.lab.vmnodes, a host by
        its operator): there is nothing to build, and bridges() checks it."""

    # -- its Open vSwitch ----------------------------------------------------------------
    @property
    def ovsdb_target(self):
        """The OVSDB remote the controller reaches the node at."""
        return self.rec.ovsdb_remote

    def ovs(self):
        raise LabError(f"node {self.name} is a {self.kind} node ({self.rec.exec}): its Open "
                       "vSwitch is the machine's own; use node_executor() to run ovs-vsctl "
                       "there")

    def bridges(self):
        """The bridges of the node's Open vSwitch (LabError when it cannot be reached)."""
        raise NotImplementedError

    # -- addresses -----------------------------------------------------------------------
    def set_address(self, ifname, ip_cidr, timeout=5.0):
        """`ip addr replace` *ip_cidr* on *ifname* and set it up, once the interface exists
        (OVS creates internal ports asynchronously). Recorded."""
        check_ifname(ifname)
        try:
            ipaddress.ip_interface(ip_cidr)
        except ValueError as exc:
            raise LabError(f"set_node_address: {exc}") from exc
        self._wait_link(ifname, timeout)
        ns.run(["ip", "addr", "replace", ip_cidr, "dev", ifname], netns=self.netns,
               executor=self.host)
        ns.run(["ip", "link", "set", ifname, "up"], netns=self.netns, executor=self.host)
        addrs = self.rec.addresses.setdefault(ifname, [])
        if ip_cidr not in addrs:
            addrs.append(ip_cidr)
        self.store.save()

    def del_address(self, ifname, ip_cidr):
        """Remove *ip_cidr* from *ifname* (fine when already gone). Recorded."""
        if ns.link_exists(ifname, netns=self.netns, executor=self.host):
            ns.run(["ip", "addr", "del", ip_cidr, "dev", ifname], netns=self.netns,
                   check=False, executor=self.host)
        addrs = self.rec.addresses.get(ifname, [])
        if ip_cidr in addrs:
            addrs.remove(ip_cidr)
        if not addrs:
            self.rec.addresses.pop(ifname, None)
        self.store.save()

    def _wait_link(self, ifname, timeout):
        deadline = time.time() + timeout
        while not ns.link_exists(ifname, netns=self.netns, executor=self.host):
            if time.time() >= deadline:
                raise LabError(f"interface {ifname} did not appear in namespace {self.netns} "
                               f"within {timeout:.0f}s")
            time.sleep(0.05)

    # -- endpoints on it -------------------------------------------------------------------
    def has_port(self, port_name):
        return ns.link_exists(port_name, netns=self.netns, executor=self.host)

    def make_endpoint(self, netns, port_name):
        """Namespace *netns* on the node's host with `eth0`, whose veth peer *port_name* is
        in the node's namespace, set up. The caller records *netns* first."""
        host = self.host
        ns.add(netns, executor=host)
        ns.run(["ip", "link", "add", port_name, "type", "veth", "peer", "name", "eth0",
                "netns", netns], netns=self.netns, executor=host)
        ns.run(["ip", "link", "set", port_name, "up"], netns=self.netns, executor=host)
        # The link comes up now, before the controller attaches port_name to a bridge: a
        # carrier change after Open vSwitch took the port can hold its first packets a second.
        ns.run(["ip", "link", "set", "eth0", "up"], netns=netns, executor=host)

    def remake_endpoint(self, netns, port_name):
        """Make endpoint *netns* again when it is gone (the node rebooted); True if made."""
        if ns.exists(netns, executor=self.host):
            return False
        if self.has_port(port_name):
            self.del_port(port_name)
        self.make_endpoint(netns, port_name)
        return True

    def del_port(self, port_name):
        """Delete an endpoint's veth from the node side (fine when gone): a namespace's
        devices are destroyed asynchronously, so the node would keep the port a while."""
        ns.run(["ip", "link", "del", port_name], netns=self.netns, check=False,
               executor=self.host)

    #: endpoints on this node vanish with it (a node VM's disk): teardown only forgets them
    endpoints_go_with_node = False
    #: the node's namespace is one the lab made on this machine (deleted at teardown)
    owns_netns = False

    # -- teardown and status ---------------------------------------------------------------
    def daemons(self):
        """[(pid, start_time, daemon)] the lab runs on this machine for the node, live."""
        return []

    def remove_files(self):
        """Remove the node's files on this machine, once its daemons are gone."""

    def stop(self):
        """End the node's daemons and remove its files; returns problems, as lines (the
        node then stays recorded for the next `lab down`)."""
        return stop_nodes([self])

    def status(self):
        """The node as `lab status` reports it: the record plus live checks."""
        try:
            bridges, running = self.bridges(), True
        except LabError:
            bridges, running = [], False
        rec = self.rec
        return {"netns": rec.netns, "role": rec.role, "kind": self.kind,
                "netns_exists": self.netns_exists(), "exec": rec.exec,
                "management_ip": rec.management_ip, "transport_ip": rec.transport_ip,
                "ovsdb_remote": rec.ovsdb_remote, "unix_remote": rec.unix_remote,
                "base_dir": rec.base_dir, "ovs_running": running, "bridges": bridges,
                "addresses": {k: list(v) for k, v in rec.addresses.items()}}

    def netns_exists(self):
        return True if self.netns is None else ns.exists(self.netns, executor=self.host)


def stop_nodes(nodes):
    """Stop the daemons of *nodes* by pid, all at once, and wait until they are gone; then
    remove each node's files. Returns problems (a survivor's node keeps its files)."""
    owned = {node: node.daemons() for node in nodes}
    left = procs.stop([(pid, st) for found in owned.values() for pid, st, _ in found])
    problems = []
    for node, found in owned.items():
        alive = [(pid, daemon) for pid, st, daemon in found if (pid, st) in left]
        if alive:
            problems.append(f"node {node.name}: " + ", ".join(
                f"{daemon} {procs.describe(pid)} survived SIGKILL" for pid, daemon in alive))
        else:
            node.remove_files()
    return problems
