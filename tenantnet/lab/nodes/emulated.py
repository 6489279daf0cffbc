"""An emulated node: a network namespace of this machine with its own ovsdb-server and
ovs-vswitchd (userspace datapath), wired to the fabric:

    <prefix>-<node>   `mgmt` on the management bridge (management IP; OVSDB listens here),
                      `eth1` on the transport bridge, attached to br-tun, whose LOCAL port
                      carries the node's transport IP; br-int on every node, br-ex on
                      role=network nodes

Set-up goes through tenantnet.node.bootstrap.bootstrap_node, the code `tenantnet node
bootstrap` runs on a real host. The daemons are the lab's: stopped by pid and start time."""

import os
import shutil

from tenantnet.errors import LabError, TenantnetError
from tenantnet.lab import fabricnet, hosts
from tenantnet.lab import netns as ns
from tenantnet.lab.nodes.base import LabNode
from tenantnet.lab.ovs import OvsInstance
from tenantnet.lab.state import NodeRec
from tenantnet.model import naming
from tenantnet.model.desired import COMMON_BRIDGES
from tenantnet.node import procs
from tenantnet.node.bootstrap import bootstrap_node
from tenantnet.node.hostops import ExecHost

DAEMONS = ("ovs-vswitchd", "ovsdb-server")
# Unix socket paths (OVS db.sock, <bridge>.mgmt, *.ctl) must fit in sun_path (108 bytes).
MAX_RUNDIR = 80


class EmulatedNode(LabNode):
    kind = "emulated"

    @classmethod
    def describe(cls, state, prefix, state_dir, name, role, management_ip, transport_ip,
                 mgmt_prefix_len=24, transport_prefix_len=16, ovsdb_port=6640, tls_dir=None):
        """The NodeRec of a new emulated node (nothing is created): LabError when its
        addresses are outside the fabric's networks or its directory too long. *tls_dir*:
        the node's certificates (`tenantnet pki node`): OVSDB on pssl:, else plain ptcp:."""
        fabricnet.check_in(state, management_ip, "management_cidr",
                           f"node {name} management_ip")
        fabricnet.check_in(state, transport_ip, "transport_cidr", f"node {name} transport_ip")
        base_dir = os.path.join(state_dir, "nodes", name)
        if len(os.path.join(base_dir, "run")) > MAX_RUNDIR:
            raise LabError(f"state dir {state_dir} is too long for OVS unix sockets "
                           "(choose a shorter state_dir)")
        return NodeRec(
            kind=cls.kind, netns=naming.node_netns(prefix, name), role=role,
            management_ip=management_ip, transport_ip=transport_ip,
            mgmt_prefix_len=int(mgmt_prefix_len),
            transport_prefix_len=int(transport_prefix_len), ovsdb_port=int(ovsdb_port),
            base_dir=base_dir, tls_dir=tls_dir,
            ovsdb_remote=f"{'ssl' if tls_dir else 'tcp'}:{management_ip}:{int(ovsdb_port)}",
            unix_remote=f"unix:{os.path.join(base_dir, 'run', 'db.sock')}",
            fabric_peers={"mgmt": naming.fabric_peer_name("m", "node", name),
                          "transport": naming.fabric_peer_name("t", "node", name)})

    def build(self):
        """Make the node as described: namespace, links to the fabric, Open vSwitch,
        bootstrap. Everything is recorded before it exists (the caller recorded the node,
        and removes it when this fails)."""
        rec, store = self.rec, self.store
        fabric = store.state.fabric.netns
        hosts.claim_namespace(store, rec.netns)
        fabricnet.veth_to_fabric(fabric, rec.netns, "mgmt", "mgmt", rec.fabric_peers["mgmt"])
        ns.run(["ip", "addr", "replace", f"{rec.management_ip}/{rec.mgmt_prefix_len}",
                "dev", "mgmt"], netns=rec.netns)
        fabricnet.veth_to_fabric(fabric, rec.netns, "eth1", "transport",
                                 rec.fabric_peers["transport"])
        inst = self.ovs()
        store.save()                      # base_dir recorded before OVS writes there
        inst.start()
        rec.pids = {d: inst.pid(d) for d in ("ovsdb-server", "ovs-vswitchd")}
        rec.start_times = {d: procs.start_time(p) for d, p in rec.pids.items()}
        store.save()
        self.bootstrap(inst)

    def bootstrap(self, inst):
        """The node's set-up, by the code `tenantnet node bootstrap` runs on a real host:
        ARP sysctls, br-int/br-tun(/br-ex) with datapath netdev, eth1 on br-tun, the
        transport IP on br-tun's LOCAL port, TLS, OVSDB opened to the management network."""
        rec = self.rec
        transport = f"{rec.transport_ip}/{rec.transport_prefix_len}"
        rec.bridges = list(COMMON_BRIDGES[rec.role])
        addrs = rec.addresses.setdefault("br-tun", [])
        if transport not in addrs:
            addrs.append(transport)
        self.store.save()
        try:
            steps = bootstrap_node(inst.vsctl, rec.role, "eth1", transport, rec.management_ip,
                                   ovsdb_port=rec.ovsdb_port, datapath="netdev",
                                   system_id=self.name, hostname=self.name,
                                   host=ExecHost(ns.executor_in(rec.netns)), ofctl=inst.ofctl,
                                   tls_dir=rec.tls_dir,
                                   ovsdb_pidfile=inst.pidfile("ovsdb-server"))
        except TenantnetError as exc:
            raise LabError(f"node {self.name}: bootstrap failed: {exc}") from exc
        rec.bootstrap = [str(st) for st in steps]
        self.store.save()

    # -- its Open vSwitch ----------------------------------------------------------------
    def ovs(self):
        """The node's OvsInstance (vsctl/ofctl/appctl). Its OVSDB listens on ovsdb_target
        through the manager bootstrap set (not a command-line remote)."""
        tls = self.rec.tls_dir
        return OvsInstance(self.rec.base_dir, netns=self.rec.netns, system_id=self.name,
                           ovsdb_ca=os.path.join(tls, "ovsdb-ca.pem") if tls else None)

    def bridges(self):
        inst = self.ovs()
        if not (inst.running() and ns.exists(self.rec.netns)):
            raise LabError(f"node {self.name}: its Open vSwitch is not running")
        out = inst.vsctl("list-br", check=False)
        return out.stdout.split() if out.returncode == 0 else []

    def run(self, cmd_list, check=False, timeout=60, capture=True):
        # in the node's namespace, with ovs-vsctl, ovs-ofctl, ovs-appctl finding its OVS
        return ns.run(list(cmd_list), netns=self.netns, check=check, timeout=timeout,
                      capture=capture, executor=self.host, env=self.ovs().env)

    # -- teardown --------------------------------------------------------------------------
    owns_netns = True

    def daemons(self):
        """The node's live ovsdb-server and ovs-vswitchd: the recorded pid with its recorded
        start time, or a pidfile's pid that runs from the node's directory."""
        rec = self.rec
        inst = OvsInstance(rec.base_dir, netns=rec.netns)
        found = []
        for daemon in DAEMONS:
            for pid in sorted({inst.pid(daemon), rec.pids.get(daemon)} - {None}):
                started = rec.start_times.get(daemon) if pid == rec.pids.get(daemon) else None
                if started is None:
                    # No start time (a crash before it was saved, or an older state file):
                    # ours only while it runs from our directory. The start time now pins it.
                    if rec.base_dir not in procs.proc_cmdline(pid):
                        continue
                    started = procs.start_time(pid)
                if procs.pid_alive(pid, started):
                    found.append((pid, started, daemon))
        return found

    def remove_files(self):
        shutil.rmtree(self.rec.base_dir, ignore_errors=True)

    @classmethod
    def orphans(cls, store, known):
        """Nodes for the OVS directories under the lab's nodes/ that no record names (a
        crash between mkdir and save), *known* being the recorded ones: enough to stop
        their daemons and remove them."""
        nodes_dir = os.path.join(store.state_dir, "nodes")
        if not os.path.isdir(nodes_dir):
            return []
        return [cls(entry, NodeRec(kind=cls.kind, netns=None, role="compute", management_ip="",
                                   transport_ip="", base_dir=base), store)
                for entry in sorted(os.listdir(nodes_dir))
                for base in [os.path.join(nodes_dir, entry)] if base not in known]

    def remove(self):
        """Stop the node and delete its namespace; returns problems (then nothing is
        forgotten: the node stays recorded for `lab down`)."""
        problems = self.stop()
        if problems:
            return problems
        state = self.store.state
        if state.owns_namespace(self.rec.netns):
            ns.delete(self.rec.netns)
        state.forget_namespace(self.rec.netns)
        return []

