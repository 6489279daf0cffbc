"""The node `tenantnet bench placement` measures on, and the raw tools' side of a placement.

One throwaway node (tenantnet.bench.switch: a `tnbench-<pid>` namespace with a private,
userspace Open vSwitch, bootstrapped as a compute node by `node.bootstrap.bootstrap_node`)
and the provider's real core (`controller.core.Core`) in the in-process os-ken controller,
with a model of one compute node (`make_topology`, DNB).

The raw reference makes the same changes on the same switch with the raw tools
(`RawPlacement`): one `ovs-vsctl` transaction (add-br with its columns, add-port with the
port's and the interface's columns) and, for every bridge whose flows change,
`ovs-ofctl --bundle add-flows` (bridges side by side). Its changes are computed from a
second model, tenant `raw`, by the same pure functions (desired.node_state,
flows.node_flows): before and after the VM, diffed. Its bridges connect to the same
controller (as the desired state says), which ignores them.

VM ports are tap devices made beforehand in the namespace (`PlacementNode.make_taps`, the
hypervisor's part, off the clock), with no VM behind them. `PlacementNode.verify` checks
the switch: every port of both models has an ofport, and every bridge named holds exactly
the expected number of flows of each side."""

import ipaddress
import subprocess
import time

from tenantnet.bench.raw import RAW_COOKIE, RAW_TENANT, RawChange, check
from tenantnet.bench.switch import BenchSwitch
from tenantnet.errors import TenantnetError
from tenantnet.lab import netns as ns
from tenantnet.model import config as config_mod
from tenantnet.model import naming
from tenantnet.model.desired import node_state
from tenantnet.model.flows import node_flows
from tenantnet.model.topology import ControllerSettings, Network, Node, Topology

NODE = "c1"
UPLINK = "tnb-up"                 # the node's transport interface (a veth)
UPLINK_PEER = "tnb-up-peer"
TRANSPORT_IP = "198.19.0.11"
OVSDB_PORT = 6640                 # bootstrap's OVSDB manager, inside the private namespace
TENANT = "bench"
BENCH = "bench placement"         # errors start with it
FLOOR_KEY = "tenantnet-bench-floor"   # Open_vSwitch external_ids key of the floor's commits
SETTLE_S = 0.1                    # before each measured change (PlacementNode.settle)


# -- the models ------------------------------------------------------------------------

def make_topology(tenant, nets, of_target):
    """A DNB model of one compute node, tenant *tenant* with networks *nets* (disjoint
    VM and transport address ranges and segmentation ids for either tenant)."""
    host, _, port = of_target.rpartition(":")
    topo = Topology(mode="dnb", controller=ControllerSettings(
        management_ip=host.split(":", 1)[1], openflow_port=int(port),
        ovsdb_port=OVSDB_PORT, security="insecure"))     # the private switch: plain TCP
    topo.add_node(Node(name=NODE, role="compute", management_ip="127.0.0.1",
                       transport_ip=TRANSPORT_IP, transport_interface=UPLINK))
    base = 0 if tenant == TENANT else 2048
    for i, name in enumerate(nets):
        idx = base + i
        cidr = ipaddress.ip_network("10.0.0.0/20").network_address + idx * 4096
        tcidr = ipaddress.ip_network("172.16.0.0/24").network_address + idx * 256
        topo.add_network(Network(tenant=tenant, name=name, segmentation_id=idx + 1,
                                 cidr=f"{cidr}/20", transport_cidr=f"{tcidr}/24"))
    return topo


def spec(name, net):
    return {"name": name, "network": naming.network_key(TENANT, net), "node": NODE}


# -- the raw tools' changes ----------------------------------------------------------

class RawPlacement(RawChange):
    """One VM placed with the raw tools (a RawChange on the raw model *model*, which gets
    the VM)."""

    def __init__(self, sw, model, name, net, files_dir):
        before = model.copy()
        vm = config_mod.vm_from_spec(model, {"name": name, "network": naming.network_key(
            RAW_TENANT, net), "node": NODE}, BENCH, "", vm_source="api")
        model.add_vm(vm)
        super().__init__(before, model, NODE, sw.ovs, files_dir, name, BENCH)
        self.sw, self.vm = sw, vm

    def run(self):
        """The raw placement (timed by the caller); the flows it added are recorded in
        the switch's raw_flows (bridge -> set of flows)."""
        super().run()
        for bridge, flows in self.flows.items():
            self.sw.raw_flows.setdefault(bridge, set()).update(flows)


# -- the node ------------------------------------------------------------------------

class PlacementNode(BenchSwitch):
    """The throwaway switch bootstrapped as compute node c1, with the provider's core."""

    def __init__(self, nets, raw_nets):
        super().__init__(core_factory=self.make_core)
        self.nets, self.raw_nets = nets, raw_nets
        self.model = self.raw_model = None
        self.raw_flows = {}            # bridge -> flows the raw tools installed

    def before_controller(self):
        from tenantnet.node.bootstrap import bootstrap_node
        from tenantnet.node.hostops import ExecHost
        # the uplink: one end of a veth pair, both ends up (carrier, as a real uplink has)
        ns.run(["ip", "link", "add", UPLINK, "type", "veth", "peer", "name", UPLINK_PEER],
               netns=self.netns)
        ns.run(["ip", "link", "set", UPLINK_PEER, "up"], netns=self.netns)
        bootstrap_node(self.ovs.vsctl, "compute", UPLINK, f"{TRANSPORT_IP}/24", "127.0.0.1",
                       ovsdb_port=OVSDB_PORT, datapath="netdev", system_id=f"{self.tag}-{NODE}",
                       hostname=f"{self.tag}-{NODE}", host=ExecHost(ns.executor_in(self.netns)),
                       ofctl=self.ovs.ofctl)
        self.model = make_topology(TENANT, self.nets, self.controller_target)
        self.raw_model = make_topology(RAW_TENANT, self.raw_nets, self.controller_target)

    def make_core(self, pusher, _app, _settings):
        from tenantnet.controller.core import Core
        return Core(self.model, pusher, ovsdb_remotes={NODE: self.ovs.unix_remote},
                    hosts={}, source="bench placement", audit_interval=0)

    def after_controller(self, timeout):
        core = self.core
        if not core.ready.wait(timeout) or not core.states.is_up(NODE):
            raise TenantnetError(f"bench placement: the controller did not reconcile node "
                                 f"{NODE} in {timeout} s: {core.node_states()}")
        for bf in node_flows(core.topo, NODE).values():
            if not self.pusher.wait_connected(bf.dpid, timeout):
                raise TenantnetError(f"bench placement: {bf.bridge} did not connect to the "
                                     f"controller in {timeout} s; see {self.ovs.logdir}")

    def reconfigure(self, value):
        """Seconds of one commit over the core's own connection that changes nothing but
        Open_vSwitch external_ids:tenantnet-bench-floor (set to *value*; None removes it).
        ovs-vswitchd reconfigures the whole node on every change of its database, and the
        commit returns once it has (cur_cfg, as for a placement): the floor under any
        placement's OVSDB commit on this node, with nothing of tenantnet's in it."""
        api = self.core.nodes[NODE].api
        cmd = (api.db_remove("Open_vSwitch", ".", "external_ids", FLOOR_KEY, if_exists=True)
               if value is None else
               api.db_set("Open_vSwitch", ".", ("external_ids", {FLOOR_KEY: str(value)})))
        t0 = time.perf_counter()
        with api.transaction(check_error=True) as txn:
            txn.add(cmd)
        return time.perf_counter() - t0

    def settle(self):
        """Wait, off the clock, until ovs-vswitchd has done with the last change: it goes on
        after the commit's wait has ended (a new port's status columns; the kernel's notice
        of the tap device it opened, on which it reconfigures the node again). Then one
        round trip to its main loop (an `ovs-appctl` command waits for a reconfiguration in
        progress). So no measurement pays for the one before it."""
        time.sleep(SETTLE_S)
        self.ovs.appctl("version")

    def make_taps(self, names):
        """Tap devices (no VM behind them) in the namespace, in one `ip -batch`."""
        if not names:
            return
        batch = "".join(f"tuntap add dev {n} mode tap\n" for n in names)
        check(subprocess.run(["ip", "-n", self.netns, "-batch", "-"], input=batch,
                             capture_output=True, text=True), BENCH, "ip -batch (taps)")

    def interfaces(self):
        """name -> ofport of every interface on the switch."""
        out = check(subprocess.run(
            ["ovs-vsctl", f"--db={self.ovs.unix_remote}", "--format=csv", "--no-headings",
             "--data=bare", "--columns=name,ofport", "list", "interface"], env=self.ovs.env,
            capture_output=True, text=True), BENCH, "ovs-vsctl list interface").stdout
        rows = (line.split(",") for line in out.splitlines() if line.strip())
        return {r[0].strip('"'): int(r[1]) if r[1].lstrip("-").isdigit() else -1 for r in rows}

    def flow_count(self, bridge, prefix):
        out = self.ofctl("dump-flows", "--no-stats", bridge,
                         f"cookie=0x{prefix << 32:x}/0xffffffff00000000").stdout
        return sum(1 for line in out.splitlines() if line.strip().startswith("cookie="))

    def verify(self, step, bridges=()):
        """Every port of both models has an ofport; *bridges* hold their flows."""
        from tenantnet.model.flowspec import COOKIE_PREFIX
        ifaces = self.interfaces()
        for model in (self.core.topo, self.raw_model):
            for name in node_state(model, NODE).ports():
                if ifaces.get(name, -1) <= 0:
                    raise TenantnetError(f"bench placement: after {step}, port {name} has "
                                         f"no OpenFlow port number")
        flows = node_flows(self.core.topo, NODE)
        for bridge in bridges:
            want = {COOKIE_PREFIX: len(set(flows[bridge].flows)) if bridge in flows else 0,
                    RAW_COOKIE: len(self.raw_flows.get(bridge, ()))}
            for prefix, count in want.items():
                got = self.flow_count(bridge, prefix)
                if got != count:
                    raise TenantnetError(f"bench placement: after {step}, {bridge} holds "
                                         f"{got} flows of cookie prefix 0x{prefix:x}, "
                                         f"expected {count}")
