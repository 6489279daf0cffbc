"""`tenantnet bench datapath`: TCP (iperf3, 4 streams and 1 stream) over four paths, built
side by side and measured in turn in one run:

    veth      one veth pair between two namespaces (experiment.baseline.build_veth)
    flat_ovs  a flat userspace OVS bridge, one NORMAL flow (experiment.baseline.build_ovs)
    cnb       a lab in CNB (prefix ``tnbdc``): the probe on net1 -> a VM on compute1, the
              network on the common br-int/br-tun
    dnb       the same lab in DNB (prefix ``tnbdd``): the network on its own brint-/brtun-
              bridges, the tunnels between the nodes' ``ex-`` ports

Each lab is the one-machine lab (emulated nodes compute1 and net1, each a namespace with
its own userspace OVS; the controller as deployed, TLS on) with one network and the lab's
tuning (VM MTU 1400, no TX checksum offload); the baselines (prefix ``tnbdb``) use the
same MTU and offload setting. One lab per mode, as the experiment does: the datapath's
cost depends on every port of the node's ovs-vswitchd, not only on the path's. Each
round measures every path with 4 streams and then 1 stream; a figure is the median over
the rounds.

The switches on a path are read before and after each run: the datapath flows
(`dpctl/dump-flows -m --names`, the run's share by ufid: dpflows.delta) and the PMD
counters (`dpif-netdev/pmd-stats-clear`, then `-show`). The 4-stream run of the last
round gives each path's `datapath_flows` (dpflows.summary) and `pmd_stats`
(dpflows.pmd_summary).

Everything is removed at the end, also after an error or Ctrl-C: the labs by `Lab.down`
(their books: namespaces, OVS processes by pid), the baselines by
`baseline.cleanup_baselines` (their pidfiles and exact names). Addresses: the labs'
(198.18.0.0/15 and 10.0.0.0/24 inside their namespaces) and the baselines'
10.254.0.0/24 and 10.254.1.0/24 inside theirs."""

import os
import shutil
import statistics
import time

import yaml

from tenantnet.bench import dpflows
from tenantnet.bench.labbench import BenchBuild, refuse_lab, remove_lab
from tenantnet.errors import TenantnetError
from tenantnet.experiment import baseline, iperf
from tenantnet.lab import netns as ns
from tenantnet.lab.lab import Lab
from tenantnet.lab.ovs import OvsInstance

LAB_PREFIXES = {"cnb": "tnbdc", "dnb": "tnbdd"}
BASE_PREFIX = "tnbdb"
PATHS = ("veth", "flat_ovs", "cnb", "dnb")
STREAMS = (4, 1)
TENANT = "bench"
COMPUTE, NETWORK_NODE = "compute1", "net1"
MTU, TX_OFFLOAD = 1400, False
MAX_SECONDS = 600


def config(mode, mtu=MTU, tx_offload=TX_OFFLOAD):
    """The lab config of *mode*: two nodes, one network of tenant `bench`."""
    return {
        "mode": mode,
        "nodes": [{"name": COMPUTE, "role": "compute", "management_ip": "198.18.0.11",
                   "transport_ip": "198.19.0.11"},
                  {"name": NETWORK_NODE, "role": "network", "management_ip": "198.18.0.2",
                   "transport_ip": "198.19.0.2"}],
        "tuning": {"vm_mtu": mtu, "tx_checksum_offload": tx_offload},
        "tenants": [{"name": TENANT, "networks": [
            {"name": "net", "segmentation_id": 100, "cidr": "10.0.0.0/24",
             "transport_cidr": "198.19.1.0/24"}]}],
    }


def check_args(seconds, repeat):
    if not isinstance(seconds, int) or not 1 <= seconds <= MAX_SECONDS:
        raise TenantnetError(f"bench datapath: --seconds {seconds!r}: use a whole number of "
                             f"seconds from 1 to {MAX_SECONDS}")
    if not isinstance(repeat, int) or not 1 <= repeat <= 20:
        raise TenantnetError(f"bench datapath: --repeat {repeat!r}: use 1 to 20")


class Paths(BenchBuild):
    """The four paths: `with Paths(say) as p:` builds them, the exit removes them (also
    after an error or Ctrl-C). p.ends[path] = ((netns, ip) of the client, (netns, ip) of
    the server); p.switches[path] = {where: OvsInstance} of the switches on the path."""
    what = "bench datapath"

    def __init__(self, say, lab_prefixes=None, base_prefix=BASE_PREFIX):
        self.say = say
        self.lab_prefixes = dict(lab_prefixes or LAB_PREFIXES)
        self.base_prefix = base_prefix
        self.labs = {mode: Lab(prefix=p) for mode, p in self.lab_prefixes.items()}
        self.workdir = os.path.join("/tmp", f"{base_prefix}-bench-{os.getpid()}")
        self.ends, self.switches = {}, {}
        self.built, self.base_built = [], False

    def check(self):
        n = baseline.names(self.base_prefix)
        left = [x for x in (*n["veth"], *n["ovs-flat"], n["ovs"]) if ns.exists(x)]
        if os.path.isdir(baseline.ovs_base_dir(self.base_prefix)):
            left.append(baseline.ovs_base_dir(self.base_prefix))
        if left:
            raise TenantnetError(f"bench datapath: left over from an earlier run: "
                                 f"{', '.join(left)}; `python -m tenantnet.experiment.baseline "
                                 f"--cleanup {self.base_prefix}` removes them")
        for lab in self.labs.values():
            refuse_lab(lab, self.what)

    def build(self):
        self.base_built = True
        self.say(f"veth pair {' <-> '.join(baseline.names(self.base_prefix)['veth'])}")
        self.ends["veth"] = baseline.build_veth(self.base_prefix, MTU, TX_OFFLOAD)
        self.switches["veth"] = {}
        self.say(f"flat OVS bridge in {baseline.names(self.base_prefix)['ovs']}")
        self.ends["flat_ovs"] = baseline.build_ovs(self.base_prefix, MTU, TX_OFFLOAD)
        self.switches["flat_ovs"] = {"flat": OvsInstance(
            baseline.ovs_base_dir(self.base_prefix),
            netns=baseline.names(self.base_prefix)["ovs"])}
        os.makedirs(self.workdir, exist_ok=True)
        for mode, lab in self.labs.items():
            path = os.path.join(self.workdir, f"{mode}.yaml")
            with open(path, "w") as fh:
                yaml.safe_dump(config(mode), fh, sort_keys=False)
            self.built.append(mode)
            self.say(f"lab {lab.prefix}: {COMPUTE} and {NETWORK_NODE}, network "
                     f"{TENANT}/net in {mode.upper()}")
            lab.up(path, timeout=120, progress=self.say)
            network, vm = f"{TENANT}/net", "vm1"
            rec = lab.add_vm(vm, network, COMPUTE)
            net = next(n for n in lab.api().topology()["networks"] if n["key"] == network)
            probe = net["probes"][0]
            self._wait_ping(lab, probe["name"], rec["ip"])
            self.ends[mode] = ((lab.fabric.endpoint_executor(probe["name"]), probe["ip"]),
                               (lab.fabric.endpoint_executor(vm), rec["ip"]))
            self.switches[mode] = {n: lab.fabric.ovs(n) for n in (NETWORK_NODE, COMPUTE)}

    @staticmethod
    def _wait_ping(lab, probe, ip, timeout=30.0):
        deadline = time.time() + timeout
        while time.time() < deadline:
            if lab.ping(probe, ip, wait=0.3):
                return
            time.sleep(0.05)
        raise TenantnetError(f"bench datapath: {ip} does not answer {probe} within "
                             f"{timeout:.0f} s; see {lab.controller_log()}")

    def down(self):
        """Remove the labs and the baselines (by their books, pidfiles and exact names)."""
        problems = []
        for mode in reversed(self.built):
            remove_lab(self.labs[mode], self.say, problems)
        self.built = []
        if self.base_built:
            self.say(f"removing baselines {self.base_prefix}")
            try:
                baseline.cleanup_baselines(self.base_prefix)
            except (TenantnetError, OSError) as exc:
                problems.append(f"baselines {self.base_prefix}: {exc}")
            self.base_built = False
        shutil.rmtree(self.workdir, ignore_errors=True)
        return problems


def _appctl(inst, *args):
    proc = inst.appctl(*args, check=False)
    if proc.returncode != 0:
        raise TenantnetError(f"bench datapath: ovs-appctl {' '.join(args)} in "
                             f"{inst.netns}: {(proc.stderr or proc.stdout).strip()[:200]}")
    return proc.stdout


def measure(client, server, switches, seconds, streams):
    """One iperf3 TCP run from *client* to *server* ((netns, ip) each), the switches read
    before and after. Returns (iperf record, {where: [DpFlow] of the run}, {where:
    pmd-stats text of the run})."""
    before = {}
    for where, inst in switches.items():
        _appctl(inst, "dpif-netdev/pmd-stats-clear")
        before[where] = _appctl(inst, "dpctl/dump-flows", "-m", "--names")
    rec = iperf.run_iperf(server[0], server[1], client[0], client[1], protocol="tcp",
                          duration=seconds, parallel=streams)
    flows = {w: dpflows.delta(before[w], _appctl(i, "dpctl/dump-flows", "-m", "--names"))
             for w, i in switches.items()}
    stats = {w: _appctl(i, "dpif-netdev/pmd-stats-show") for w, i in switches.items()}
    return rec, flows, stats


def _gbps(bps):
    return round(bps / 1e9, 4)


def key_of(path, streams):
    return f"{path}_gbps" if streams == STREAMS[0] else f"{path}_{streams}stream_gbps"


def run(seconds=5, repeat=1, progress=None):
    """Build, measure, remove (see the module docstring). Returns (result, details): result
    has the keys of issue 10 (`veth_gbps`, `flat_ovs_gbps`, `cnb_gbps`, `dnb_gbps`,
    `dnb_over_cnb`: 4 streams), the 1-stream figures (`*_1stream_gbps`,
    `dnb_over_cnb_1stream`), every round's figures (`rounds`), and `datapath_flows` and
    `pmd_stats` per path; details has every round's retransmits and the flows of the last
    4-stream runs as text."""
    check_args(seconds, repeat)
    iperf.check_installed()
    say = progress or (lambda _msg: None)
    rounds = {key_of(p, s): [] for p in PATHS for s in STREAMS}
    retrans = {key_of(p, s): [] for p in PATHS for s in STREAMS}
    flows, pmd, dumps_out = {}, {}, {}
    t0 = time.perf_counter()
    with Paths(say) as paths:
        for r in range(repeat):
            for path in PATHS:
                for streams in STREAMS:
                    say(f"round {r + 1}/{repeat}: {path}, {streams} stream(s), {seconds} s")
                    client, server = paths.ends[path]
                    rec, run_flows, stats = measure(client, server, paths.switches[path],
                                                seconds, streams)
                    rounds[key_of(path, streams)].append(_gbps(rec["bits_per_second"]))
                    retrans[key_of(path, streams)].append(rec.get("retransmits"))
                    if streams == STREAMS[0]:
                        flows[path] = dpflows.summary(run_flows)
                        pmd[path] = dpflows.pmd_summary(stats)
                        dumps_out[path] = {w: [f"{f.match}, packets:{f.packets}, actions:"
                                               f"{','.join(f.actions)}" for f in fl]
                                           for w, fl in run_flows.items()}
    result = {key: round(statistics.median(values), 4) for key, values in rounds.items()}
    if not result["cnb_gbps"] or not result["cnb_1stream_gbps"]:
        raise TenantnetError(f"bench datapath: CNB carried nothing: {rounds}")
    result["dnb_over_cnb"] = round(result["dnb_gbps"] / result["cnb_gbps"], 4)
    result["dnb_over_cnb_1stream"] = round(result["dnb_1stream_gbps"]
                                           / result["cnb_1stream_gbps"], 4)
    result.update(seconds=seconds, repeat=repeat, streams=STREAMS[0], mtu=MTU, rounds=rounds,
                  datapath_flows=flows, pmd_stats=pmd)
    details = {"rounds": rounds, "retransmits": retrans, "dumps": dumps_out,
               "wall_s": round(time.perf_counter() - t0, 1)}
    return result, details
