"""`tenantnet bench placement`: placing a VM, tenantnet's controller against the raw tools.

The node (a throwaway switch bootstrapped as one compute node, the provider's real core on a
model of it) and the raw tools' side of a placement are `bench.placementnode`'s. A placement
is `Core.add_vm`, the code behind the API's POST /vms: validation against the model, a copy
of the model, desired state, the OVSDB diff committed as one transaction (then every port
has its ofport), the flows as one bundle per changed bridge. The API's HTTP layer is not
part of it. The raw reference makes the same changes on the same switch, in the same run.
Existing VMs are placed through the core too, in groups (concurrent placements, as the API
realises them), on networks of 100 VMs each.

Measured, tenantnet and raw alternately, one VM at a time, each after ovs-vswitchd has done
with the change before it (`PlacementNode.settle`, off the clock):
  * N VMs on a network whose bridges exist (one VM there before), after M VMs are placed,
    and after 10 when M is given (the model is grown or shrunk between the two); and,
    after each pair, the floor: a commit that changes only an Open_vSwitch external_ids key,
    over the core's connection (`PlacementNode.reconfigure`), which ovs-vswitchd answers
    with the same whole-node reconfiguration as a placement's;
  * N first-on-node VMs: each the first of its network on the node, so its bridge pair,
    patch ports, `ex-` endpoint and their flows (and br-tun's underlay flows) are created.
On one node nothing else changes: the flows of a network on a node do not depend on that
node's own VMs (a peer's egress rules do), so a VM on existing bridges changes OVSDB only,
on both sides. The `ex-` address (a host-side step: udev in production) is not part of
either side.

After each phase the switch is checked: every port of both models has an ofport, and every
bridge the phase changed holds exactly the expected number of flows of each side."""

import concurrent.futures
import cProfile
import logging
import math
import os
import statistics
import subprocess
import time

from tenantnet.bench.placementnode import BENCH, TENANT, PlacementNode, RawPlacement, spec
from tenantnet.bench.raw import RAW_TENANT, check
from tenantnet.errors import TenantnetError
from tenantnet.model import naming

BASELINE = 10                     # p50_ms_at_10
PER_NETWORK = 100                 # existing VMs per network
GROW_THREADS = 16                 # concurrent placements while the model is grown
KEYS = ("p50_ms", "p95_ms", "raw_p50_ms", "ratio", "first_on_node_p50_ms",
        "raw_first_on_node_p50_ms")


def level_key(m, side=""):
    """The JSON key of a level's p50: p50_ms_at_M (tenantnet), raw_p50_ms_at_M (*side*
    "raw_": the raw tools), floor_p50_ms_at_M ("floor_": Open vSwitch's reconfiguration)."""
    return f"{side}p50_ms_at_{m}"


# -- the plan ------------------------------------------------------------------------------

def network_plan(n_existing_nets, n_new):
    """Network names in index order: the existing VMs' networks, the hot network (the
    measured VMs on existing bridges), then one per first-on-node VM."""
    return ([f"e{i}" for i in range(n_existing_nets)] + ["hot"]
            + [f"n{i}" for i in range(n_new)])


class _ForeignSwitches(logging.Filter):
    """The raw reference's bridges connect to the controller too; it ignores them, and
    so does its log here."""

    def filter(self, record):
        return "is not one of ours" not in str(record.msg)


# -- measuring -----------------------------------------------------------------------------

def _p(values, q):
    """The *q* quantile (0..1) of *values*, nearest rank."""
    ordered = sorted(values)
    return ordered[max(0, math.ceil(q * len(ordered)) - 1)]


class PlacementRun:
    """The measured phases on a PlacementNode: *n* VMs per phase, tenantnet and raw
    alternately; *profile*: a cProfile per phase around the core's placements."""

    def __init__(self, node, n, profile=False, progress=None):
        self.node, self.n = node, n
        self.core = node.core
        self.profiles = {} if profile else None     # phase -> cProfile.Profile
        self.phase = None
        self.say = progress or (lambda _msg: None)
        self.existing = []             # names of the existing e-VMs, in order
        self.tmp = os.path.join(node.base, "raw")
        os.makedirs(self.tmp, exist_ok=True)

    def place(self, name, net):
        profile = None
        if self.profiles is not None:
            profile = self.profiles.setdefault(self.phase, cProfile.Profile())
        t0 = time.perf_counter()
        if profile is not None:
            profile.enable()
        try:
            out = self.core.add_vm(spec(name, net))
        finally:
            if profile is not None:
                profile.disable()
        return time.perf_counter() - t0, out

    def set_existing(self, count):
        """Grow or shrink the model to *count* VMs: hot0 and count-1 e-VMs (placed and
        deleted through the core, in concurrent groups, off the clock)."""
        want = count - 1
        have = len(self.existing)
        if want > have:
            names = [f"e{i}" for i in range(have, want)]
            jobs = [(name, f"e{i // PER_NETWORK}") for i, name in zip(range(have, want), names)]
            with concurrent.futures.ThreadPoolExecutor(GROW_THREADS) as pool:
                list(pool.map(lambda j: self.core.add_vm(spec(*j)), jobs))
            self.existing += names
        elif want < have:
            gone = self.existing[want:]
            with concurrent.futures.ThreadPoolExecutor(GROW_THREADS) as pool:
                list(pool.map(self.core.del_vm, gone))
            del self.existing[want:]
        if len(self.core.topo.vms()) != count:
            raise TenantnetError(f"bench placement: the model holds "
                                 f"{len(self.core.topo.vms())} VMs, expected {count}")

    def existing_bridges(self, level):
        """N VMs on the hot network, tenantnet, raw and the floor alternately; the VMs
        taken back afterwards. Returns (tenantnet seconds, raw seconds, core timings,
        floor seconds)."""
        self.say(f"{self.n} placements on existing bridges after {level} VMs")
        self.phase = f"at-{level}"
        tn, raw, timings, floor = [], [], [], []
        settle = self.node.settle
        for i in range(self.n):
            rp = RawPlacement(self.node, self.node.raw_model, f"r{i}", "hot", self.tmp)
            settle()
            t, out = self.place(f"h{i}", "hot")
            tn.append(t)
            timings.append(out["timings"])
            if out["network_new_on_node"]:
                raise TenantnetError("bench placement: the hot network was new on the node")
            settle()
            t0 = time.perf_counter()
            rp.run()
            raw.append(time.perf_counter() - t0)
            settle()
            floor.append(self.node.reconfigure(i))
        hot = [naming.brint_name(naming.network_key(t, "hot")) for t in (TENANT, RAW_TENANT)]
        self.node.verify(f"{self.n} placements after {level} VMs", bridges=hot)
        # take them back (off the clock): the next level starts from the same VMs
        for i in range(self.n):
            self.core.del_vm(f"h{i}")
        ports = [naming.vm_port_name(f"r{i}") for i in range(self.n)]
        check(subprocess.run(["ovs-vsctl", f"--db={self.node.ovs.unix_remote}", "--timeout=20",
                              *[x for p in ports for x in ("--", "del-port", p)][1:]],
                             env=self.node.ovs.env, capture_output=True, text=True),
              BENCH, "ovs-vsctl del-port")
        for i in range(self.n):
            self.node.raw_model.remove_vm(f"r{i}")
        self.node.reconfigure(None)
        return tn, raw, timings, floor

    def first_on_node(self):
        self.say(f"{self.n} first-on-node placements")
        self.phase = "first-on-node"
        tn, raw, timings = [], [], []
        bridges = {"br-tun"}
        for i in range(self.n):
            rp = RawPlacement(self.node, self.node.raw_model, f"rf{i}", f"n{i}", self.tmp)
            self.node.settle()
            t, out = self.place(f"f{i}", f"n{i}")
            tn.append(t)
            timings.append(out["timings"])
            if not out["network_new_on_node"]:
                raise TenantnetError(f"bench placement: network n{i} was not new on the node")
            self.node.settle()
            t0 = time.perf_counter()
            rp.run()
            raw.append(time.perf_counter() - t0)
            for tenant in (TENANT, RAW_TENANT):
                key = naming.network_key(tenant, f"n{i}")
                bridges |= {naming.brint_name(key), naming.brtun_name(key)}
        self.node.verify(f"{self.n} first-on-node placements", bridges=sorted(bridges))
        return tn, raw, timings


def run(n=20, existing=None, progress=None, profile_path=None, more_levels=()):
    """(figures, details): the figures (KEYS, and p50_ms_at_10 / p50_ms_at_M with the raw
    tools' raw_p50_ms_at_10 / raw_p50_ms_at_M and Open vSwitch's own reconfiguration,
    floor_p50_ms_at_10 / floor_p50_ms_at_M, when *existing* is given) of *n* placements
    after *existing* VMs (default 10); the details for the table. *more_levels*: further
    numbers of existing VMs measured in the same run (each adds its three keys at L; the
    largest of all is M when *existing* is not given).
    *profile_path*: cProfile the core's placements (the calling thread), one pstats file
    per phase, PATH.at-M.pstats and PATH.first-on-node.pstats."""
    if n < 1:
        raise TenantnetError("bench placement: --vms must be at least 1")
    for value, option in [(existing, "--existing")] + [(v, "--levels") for v in more_levels]:
        if value is not None and value < 1:
            raise TenantnetError(f"bench placement: {option} must be at least 1 (the VM "
                                 "that makes the network's bridges exist)")
    if existing is None and more_levels:
        existing = max(more_levels)
    m = BASELINE if existing is None else existing
    levels = sorted({m} if existing is None else {BASELINE, m, *more_levels})
    top = max(levels)
    nets = network_plan(math.ceil((top - 1) / PER_NETWORK), n)
    raw_nets = network_plan(0, n)
    names = (["hot0"] + [f"e{i}" for i in range(top - 1)] + [f"h{i}" for i in range(n)]
             + [f"f{i}" for i in range(n)] + ["rhot0"] + [f"r{i}" for i in range(n)]
             + [f"rf{i}" for i in range(n)])
    taps = [naming.vm_port_name(x) for x in names]
    if len(set(taps)) != len(taps):
        raise TenantnetError("bench placement: two VMs map to the same port name")
    t_start = time.monotonic()

    def say(msg):
        if progress:
            progress(f"{time.monotonic() - t_start:6.1f} s  {msg}")

    quiet = _ForeignSwitches()
    core_log = logging.getLogger("tenantnet.controller.core")
    core_log.addFilter(quiet)
    bench = None
    try:
        with PlacementNode(nets, raw_nets) as node:
            say(f"node up; making {len(taps)} tap devices")
            node.make_taps(taps)
            bench = PlacementRun(node, n, profile=bool(profile_path), progress=say)
            node.core.add_vm(spec("hot0", "hot"))
            RawPlacement(node, node.raw_model, "rhot0", "hot", bench.tmp).run()
            at = {}
            for level in levels:
                say(f"placing the existing VMs: {level}")
                bench.set_existing(level)
                at[level] = bench.existing_bridges(level)
            first = bench.first_on_node()
            say("removing the node")
    finally:
        core_log.removeFilter(quiet)
        for phase, profile in ((bench.profiles or {}) if bench else {}).items():
            profile.dump_stats(f"{profile_path}.{phase}.pstats")
    say("done")
    tn, raw = at[m][:2]
    p50, raw_p50 = statistics.median(tn), statistics.median(raw)
    out = {
        "p50_ms": round(p50 * 1000, 2),
        "p95_ms": round(_p(tn, 0.95) * 1000, 2),
        "raw_p50_ms": round(raw_p50 * 1000, 2),
        "ratio": round(p50 / raw_p50, 3),
        "first_on_node_p50_ms": round(statistics.median(first[0]) * 1000, 2),
        "raw_first_on_node_p50_ms": round(statistics.median(first[1]) * 1000, 2),
    }
    if existing is not None:
        for level in levels:          # both sides per level: how each grows with the node
            out[level_key(level)] = round(statistics.median(at[level][0]) * 1000, 2)
            out[level_key(level, "raw_")] = round(statistics.median(at[level][1]) * 1000, 2)
            out[level_key(level, "floor_")] = round(statistics.median(at[level][3]) * 1000, 2)
    details = {"levels": {lv: {"p50_ms": round(statistics.median(r[0]) * 1000, 2),
                               "p95_ms": round(_p(r[0], 0.95) * 1000, 2),
                               "raw_p50_ms": round(statistics.median(r[1]) * 1000, 2),
                               "core": _core_split(r[2]),
                               "floor_p50_ms": round(statistics.median(r[3]) * 1000, 2)}
                         for lv, r in at.items()},
               "first_core": _core_split(first[2]), "existing": m, "vms": n}
    return out, details


def _core_split(timings):
    """Median of the core's own split (ovsdb_ms, openflow_ms) of a list of placements."""
    return {k: round(statistics.median(t.get(k, 0.0) for t in timings), 2)
            for k in ("ovsdb_ms", "openflow_ms")}
