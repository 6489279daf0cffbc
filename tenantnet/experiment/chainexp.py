"""The chain-length experiment (issue 11, after seed 000): throughput through a service
chain of n network functions, and through iptables firewalls with many rules.

    tenantnet experiment run -c configs/experiments/chains-quick.yaml

``runner.run`` hands a spec with a ``chains:`` section (chainspec.py) to ``run`` here. Per
mode, one lab (the spec's nodes, one network t1/net1, built by labs.LabFactory and torn
down after) and on it:

- two VMs, ``csrc`` and ``cdst``, both on the first compute node (the "home" node), so that
  n = 0 is VM to VM on one bridge;
- the hop functions of the length part, of kind ``chains.function``, placed through the
  API once: ``s1..sN`` on the home node (layout ``same``: every hop is a namespace on the
  same integration bridge, as seed 000's namespace chains) and ``x1..xN`` round robin over
  the other compute nodes, starting with the second (layout ``spread``: every hop crosses
  a GRE tunnel);
- for each length n and layout, a chain csrc -> cdst through the first n of them
  (``POST /v1/chains``), one iperf3 run per traffic and repeat, then the chain is deleted
  (n = 0: no chain, measured once, layout ``direct``; the fits use it for every layout);
- the firewall part: for each rule count R, layout and stateful setting, firewalls on the
  home node (``single``: one with R rules; ``spread``: ``spread_over`` with R split
  evenly), a chain through them, iperf3, then chain and firewalls are deleted.

Every run reads each chain function's forwarded-packet counter before and after: a row
records what each function saw (``forwarded``), and ``steered`` is false when one saw
nothing (the traffic went around it). Rows go to chains.csv/json (``CHAIN_COLUMNS``),
rewritten after every run; meta.json has ``"experiment": "chains"``; then chainreport
writes the figures and report.md. Ctrl-C: the lab comes down, meta.json says interrupted.
"""

import os
import time

from tenantnet.experiment import DEFAULT_PREFIX, iperf
from tenantnet.experiment.labs import LabFactory
from tenantnet.experiment.machine import machine_info
from tenantnet.experiment.interrupts import ExperimentError
from tenantnet.experiment.results import ResultsDir
from tenantnet.experiment.runframe import Reporter, node_info, now, recorded_run, render

EXPERIMENT = "chains"
SRC, DST = "csrc", "cdst"
SHAPER_RATE = "100gbit"       # a shaper hop that never limits (seed 000: 1 Tb/s)
REACH_TIMEOUT_S = 30.0
CHAIN_COLUMNS = [
    "mode", "part", "layout", "n", "function", "rules_total", "rules", "stateful",
    "traffic", "protocol", "streams", "udp_rate", "repeat", "duration_s",
    "bits_per_second", "sender_bits_per_second", "retransmits", "lost_percent",
    "cpu_sender_pct", "cpu_receiver_pct", "node_changes", "nodes", "forwarded",
    "forwarded_min", "steered", "mtu", "error",
]


def split_rules(total, parts):
    """*total* rules over *parts* firewalls, as evenly as can be (the first get one more)."""
    return [total // parts + (1 if i < total % parts else 0) for i in range(parts)]


def spread_nodes(computes, count):
    """The nodes of hop functions 1..count in the spread layout: round robin over the
    compute nodes, starting with the one after the VMs' node (computes[0])."""
    return [computes[i % len(computes)] for i in range(1, count + 1)]


def node_changes(path):
    """How many hops of *path* (the nodes a packet visits, in order) cross a tunnel."""
    return sum(1 for a, b in zip(path, path[1:]) if a != b)


class ChainBench:
    """The measurements of one mode on one lab (see the module docstring)."""

    def __init__(self, lab, spec, mode, say, on_row, step):
        self.lab, self.spec, self.cs, self.mode = lab, spec, spec.chains, mode
        self.say, self.on_row, self.step = say, on_row, step
        self.network = spec.network_key(1)
        self.computes = spec.compute_node_names()
        self.home = self.computes[0]
        self.functions = {}           # name -> (node, lab function object)
        self.vms = {}                 # name -> (ip, executor)
        self.mtu = None

    # -- set-up ----------------------------------------------------------------------
    def place_vms(self):
        for name in (SRC, DST):
            self.say(f"chains [{self.mode}]: placing VM {name} on {self.home}")
            rec = self.lab.add_vm(name, self.network, self.home)
            self.vms[name] = (rec["ip"], self.lab.fabric.endpoint_executor(name))
            self.mtu = (rec.get("tuning_applied") or {}).get("mtu")
        self.wait_reachable()

    def wait_reachable(self):
        deadline = time.time() + REACH_TIMEOUT_S
        while not self.lab.ping(SRC, self.vms[DST][0], count=1, wait=1):
            if time.time() > deadline:
                raise ExperimentError(f"chains [{self.mode}]: {DST} did not answer {SRC} "
                                      f"within {REACH_TIMEOUT_S:.0f}s")
            time.sleep(0.1)

    def add_function(self, name, node, kind, **options):
        if kind == "shaper":
            options.setdefault("rate", SHAPER_RATE)
        self.lab.add_function(name, self.network, node, kind, **options)
        fn = next(f for f in self.lab.api().list_functions() if f["name"] == name)
        self.functions[name] = (node, self.lab.function(fn))

    def del_function(self, name):
        self.functions.pop(name, None)
        self.lab.del_function(name)

    def hop_names(self, layout, n):
        return [f"{'s' if layout == 'same' else 'x'}{i}" for i in range(1, n + 1)]

    def place_hops(self):
        top = self.cs.max_functions()
        for layout in self.cs.layouts:
            nodes = [self.home] * top if layout == "same" else spread_nodes(self.computes, top)
            for name, node in zip(self.hop_names(layout, top), nodes):
                self.say(f"chains [{self.mode}]: function {name} ({self.cs.function}) on {node}")
                self.add_function(name, node, self.cs.function)

    # -- one point -------------------------------------------------------------------
    def forwarded(self, names):
        return [self.functions[n][1].counters()["forwarded"] for n in names]

    def measure(self, through, base):
        """Every traffic of *base*["traffic"] (names) x repeats through a chain over
        *through* (function names; [] for none), with *base* as the rows' context."""
        chain = None
        if through:
            chain = f"c-{base['part']}-{base['layout']}-{len(through)}"
            self.lab.api().add_chain(chain, self.network, SRC, DST, through)
        path = [self.home] + [self.functions[n][0] for n in through] + [self.home]
        try:
            for repeat in range(self.cs.repeats):
                for tname in base["traffic"]:
                    self.one_run(through, dict(base, traffic=tname, repeat=repeat,
                                               nodes=path, node_changes=node_changes(path)))
        finally:
            if chain is not None:
                self.lab.api().del_chain(chain)

    def one_run(self, through, row):
        t = self.cs.traffic_named(row["traffic"])
        (src_ip, src_ex), (dst_ip, dst_ex) = self.vms[SRC], self.vms[DST]
        row.update(protocol=t.protocol, streams=t.streams, mtu=self.mtu, mode=self.mode,
                   udp_rate=t.rate if t.protocol == "udp" else None,
                   duration_s=self.cs.duration_s, n=len(through))
        self.say(f"chains [{self.mode}]: {row['part']} {row['layout']} n={len(through)} "
                 f"rules={row.get('rules_total')} {t.name} ({self.cs.duration_s}s)")
        before = self.forwarded(through)
        try:
            rec = iperf.run_iperf(dst_ex, dst_ip, src_ex, src_ip, protocol=t.protocol,
                                  duration=self.cs.duration_s, udp_rate=t.rate,
                                  parallel=t.streams)
        except iperf.IperfError as exc:
            rec = {"error": str(exc)}
            self.say(f"chains [{self.mode}]: run failed: {exc}")
        seen = [b - a for a, b in zip(before, self.forwarded(through))]
        for key in ("bits_per_second", "sender_bits_per_second", "retransmits",
                    "lost_percent", "cpu_sender_pct", "cpu_receiver_pct", "error"):
            row[key] = rec.get(key)
        row.update(forwarded=seen, forwarded_min=min(seen) if seen else None,
                   steered=all(s > 0 for s in seen) if through else None)
        self.on_row({k: row.get(k) for k in CHAIN_COLUMNS})
        self.step()

    # -- the parts -------------------------------------------------------------------
    def run_lengths(self):
        every = [t.name for t in self.cs.traffic]
        for n in self.cs.lengths:
            for layout in (["direct"] if n == 0 else self.cs.layouts):
                self.measure(self.hop_names(layout, n),
                             {"part": "length", "layout": layout,
                              "function": self.cs.function if n else None,
                              "traffic": every, "rules_total": None, "rules": None,
                              "stateful": None})

    def run_firewall(self):
        fw = self.cs.firewall
        for stateful in fw.stateful:
            for layout in fw.layouts:
                parts = 1 if layout == "single" else fw.spread_over
                for total in fw.rules:
                    rules = split_rules(total, parts)
                    names = [f"w{i}" for i in range(1, parts + 1)]
                    self.say(f"chains [{self.mode}]: {parts} firewall(s), {total} rules "
                             f"({'stateful' if stateful else 'stateless'})")
                    try:
                        for name, count in zip(names, rules):
                            self.add_function(name, self.home, "firewall", rules=count,
                                              stateful=stateful)
                        self.measure(names, {"part": "rules", "layout": layout,
                                             "function": "firewall", "traffic": fw.traffic,
                                             "rules_total": total, "rules": rules,
                                             "stateful": stateful})
                    finally:
                        for name in names:
                            if name in self.functions:
                                self.del_function(name)


# -- the run ------------------------------------------------------------------------------
def run(spec, out_dir, modes=None, progress=True, prefix=DEFAULT_PREFIX, state_dir=None):
    """Run the chain experiment *spec* in *modes*; write chains.csv, meta.json, the
    figures and report.md to *out_dir*. Returns the ResultsDir."""
    from tenantnet.experiment.spec import check_mode
    from tenantnet.lab.fabric import LabFabric, check_host
    modes = list(modes or spec.modes)
    LabFabric(prefix=prefix, state_dir=state_dir)
    check_host()
    for m in modes:
        check_mode(spec, m)
    iperf.check_installed()
    rd = ResultsDir(out_dir)
    meta = {"name": spec.name, "experiment": EXPERIMENT, "status": "running", "modes": modes,
            "prefix": prefix, "spec": spec.to_dict(), "machine": machine_info(),
            "nodes": node_info(spec), "started": now(),
            "started_epoch": time.time(), "finished": None, "phases": [], "warnings": [],
            "errors": [], "files": {"meta": "meta.json", "chains": "chains.csv",
                                    "lab_configs": "labs/"}}
    rd.write_json("meta.json", meta)
    rows = []

    def on_row(row):
        rows.append(row)
        rd.write_table("chains", rows, columns=CHAIN_COLUMNS)
        if row.get("steered") is False:
            meta["warnings"].append(f"{row['mode']} {row['part']} {row['layout']} "
                                    f"n={row['n']} {row['traffic']}: a function saw no "
                                    f"packet ({row['forwarded']})")

    def on_end():
        if not rows:
            rd.write_table("chains", [], columns=CHAIN_COLUMNS)

    reporter = Reporter(progress)
    with recorded_run(rd, meta, reporter, len(modes) * spec.chains.points(), spec.name,
                             on_end):
        for mode in modes:
            factory = LabFactory(spec, mode, prefix=prefix, state_dir=state_dir,
                                 config_dir=rd.path(os.path.join("labs", "")),
                                 reporter=reporter)
            phase = {"mode": mode, "part": "chains", "started": now()}
            meta["phases"].append(phase)
            t0 = time.perf_counter()
            reporter.describe(f"{spec.name}: chains {mode}")
            with factory(networks=1, label=f"chains {mode}") as lab:
                bench = ChainBench(lab, spec, mode, reporter.log, on_row, reporter.step)
                bench.place_vms()
                bench.place_hops()
                bench.run_lengths()
                if spec.chains.firewall.enabled:
                    bench.run_firewall()
            phase.update(finished=now(), seconds=round(time.perf_counter() - t0, 1))
            rd.write_json("meta.json", meta)
    render(rd, meta)
    rd.write_json("meta.json", meta)
    return rd


def is_chain_results(rd):
    """Whether results directory *rd* holds a chain experiment."""
    return rd.meta().get("experiment") == EXPERIMENT

