"""A whole experiment run: every mode back to back, reachability then bandwidth, then the
plots and the report, all written to one results directory (see results.py)::

    from tenantnet.experiment.spec import load_spec
    from tenantnet.experiment.runner import run
    out = run(load_spec("configs/experiments/quick.yaml"), "results/quick", modes=["dnb"])

Results directory (``ResultsDir``):

=============================== ========================================================
meta.json                        spec, tuning, machine (machine.machine_info), nodes,
                                 timestamps, status
reachability_instances.csv/json  one row per instance (reachability.INSTANCE_FIELDS)
reachability.csv/json            the eight-field records (analysis.records)
bandwidth.csv/json               rows returned by bandwidth.run_bandwidth, every mode
labs/<mode>-k<K>.yaml            the generated lab configs
labs/<mode>-state.txt            node VMs only: each mode's reference state (labs.py)
=============================== ========================================================

Labs (tenantnet.experiment.labs): with emulated nodes every sub-experiment and every
mode's bandwidth part runs on a lab built for it. With node VMs (``lab: {nodes: vm}``) the
whole run shares one lab, reset to its checked fresh state after every part; the modes
switch by restarting the controller on the other mode's config (meta.json ``labs``).

Baselines (``bandwidth.baselines``), after the modes: on emulated labs this machine's veth
pair and flat OVS bridge (baseline.run_baselines, no lab up); on node VMs the same path
without tenantnet on the lab's node VMs: VM to VM over the plain transport network and a
flat kernel OVS bridge in one node VM (vmbaseline.run_vm_baselines). meta.json
``baselines`` says which, and the report names them.

Tables are rewritten after every sub-experiment, so an interrupted run keeps what it
measured (meta.json then says ``"status": "interrupted"``).

Interrupts (interrupts.InterruptGuard). Every lab is torn down in a ``finally``. The first
Ctrl-C or SIGTERM raises KeyboardInterrupt in the main thread: the batch in progress starts
no new work, the controller is stopped so that requests in flight end, the placement
threads are joined, probers (in sessions of their own) are killed and the lab comes down.
The teardown (Lab.down) runs in a child process of its own session, so the terminal's
SIGINT, which reaches the whole foreground process group, cannot kill it or the
`ip`/`ovs-appctl` commands it runs; meanwhile further signals are noted and ignored. A
Ctrl-C that arrives during the routine teardown between two sub-experiments is acted on
once that teardown is done. run() then re-raises KeyboardInterrupt (the CLI exits with
130), after writing meta.json with ``"status": "interrupted"``.

Lab prefix: ``tnexp`` unless given (the runner owns that prefix while it runs; it refuses to
start when a lab with that prefix is up, and never tears down a lab it did not build).
"""

import datetime
import inspect
import os
import time

from tenantnet.model import config as config_mod
from tenantnet.errors import TenantnetError
from tenantnet.experiment import DEFAULT_PREFIX, analysis
from tenantnet.experiment.labs import LabFactory, SharedLab
from tenantnet.experiment.machine import machine_info
from tenantnet.experiment.interrupts import ExperimentError
from tenantnet.experiment.reachability import INSTANCE_FIELDS, run_reachability
from tenantnet.experiment.results import ResultsDir
from tenantnet.experiment.runframe import (Reporter, node_info, now, optional_module,
                                            recorded_run, render)
from tenantnet.experiment.spec import KNOWN_MODES, check_mode

RECORD_COLUMNS = analysis.RECORD_FIELDS + analysis.EXTRA_FIELDS


# -- labs (tenantnet.experiment.labs) ---------------------------------------------------
# LabFactory (a fresh lab per part) and SharedLab (one lab of node VMs per run) live there.


# -- machine and nodes ------------------------------------------------------------
def lab_networks(spec):
    """How many networks a lab shared by the whole run needs: the grid's largest count (a
    network without VMs has nothing on any node), at least 1 for the bandwidth part."""
    return max(spec.reachability.networks) if spec.reachability.enabled else 1


def default_out_dir(spec):
    stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
    return os.path.join("results", f"{spec.name}-{stamp}")


# -- optional parts (bandwidth, plots, report) ----------------------------------------
def call_bandwidth(module, factory, spec, mode, out_dir, reporter):
    """module.run_bandwidth, in either of its two shapes:

    - ``run_bandwidth(lab_factory, spec, mode, out_dir, progress)``: it makes its own labs;
    - ``run_bandwidth(lab, spec, mode, progress=None)``: it measures on a lab that is up;
      the runner gives it one with a single network (factory(networks=1))."""
    func = module.run_bandwidth
    try:
        params = list(inspect.signature(func).parameters)
    except (TypeError, ValueError):
        params = []
    if params and params[0] == "lab":
        with factory(networks=1, label=f"bandwidth {mode}") as lab:
            return func(lab, spec, mode, progress=reporter)
    return func(factory, spec, mode, out_dir, reporter)


# -- the run --------------------------------------------------------------------------
def run(spec, out_dir, modes=None, progress=True, prefix=DEFAULT_PREFIX, state_dir=None):
    """Run *spec* in *modes* (default: spec.modes) and write the results to *out_dir*.

    Returns the ResultsDir. Raises ConfigError before anything is built when a mode is
    refused by this tenantnet; re-raises KeyboardInterrupt after cleaning up. A spec with
    a ``chains:`` section is the chain experiment (chainexp.run)."""
    if getattr(spec, "chains", None) is not None:
        from tenantnet.experiment import chainexp
        return chainexp.run(spec, out_dir, modes=modes, progress=progress, prefix=prefix,
                            state_dir=state_dir)
    modes = list(modes or spec.modes)
    from tenantnet.lab.fabric import LabFabric, check_host
    LabFabric(prefix=prefix, state_dir=state_dir)      # a bad prefix fails here (LabError)
    check_host()                                       # root, tools, Open vSwitch
    for m in modes:
        if m not in KNOWN_MODES:
            raise ExperimentError(f"unknown mode {m!r} (known: {', '.join(KNOWN_MODES)})")
        check_mode(spec, m)
    rd = ResultsDir(out_dir)
    tuning = config_mod.parse_tuning(spec.source, dict(spec.tuning)).as_dict()
    meta = {"name": spec.name, "status": "running", "modes": modes, "prefix": prefix,
            "spec": spec.to_dict(), "tuning": tuning, "machine": machine_info(),
            "nodes": node_info(spec),
            "started": now(), "started_epoch": time.time(), "finished": None,
            "phases": [], "warnings": [], "errors": [],
            "files": {"meta": "meta.json",
                      "reachability_instances": "reachability_instances.csv",
                      "reachability": "reachability.csv", "bandwidth": "bandwidth.csv",
                      "lab_configs": "labs/"}}
    rd.write_json("meta.json", meta)
    inst_rows, bw_rows = [], []

    points = len(spec.reachability.grid()) * spec.reachability.repeats \
        if spec.reachability.enabled else 0
    total_steps = len(modes) * (points + (1 if spec.bandwidth.enabled else 0)) + \
        (1 if spec.bandwidth.enabled and spec.bandwidth.baselines else 0)
    reporter = Reporter(progress)
    bandwidth = optional_module("bandwidth") if spec.bandwidth.enabled else None
    if spec.bandwidth.enabled and bandwidth is None:
        meta["warnings"].append("bandwidth: tenantnet.experiment.bandwidth is not available; "
                                "skipped")

    def save_reachability(rows):
        inst_rows.extend(rows)
        rd.write_table("reachability_instances", inst_rows, columns=INSTANCE_FIELDS)
        rd.write_table("reachability", analysis.records(inst_rows), columns=RECORD_COLUMNS)

    config_dir = rd.path(os.path.join("labs", ""))
    shared = None
    if spec.lab.nodes == "vm":
        # node VMs take minutes to boot: one lab for the whole run, reset between parts
        shared = SharedLab(spec, lab_networks(spec), state_dir_for_results=config_dir)
        meta["labs"] = {"reuse": "one lab of node VMs for the whole run, reset and checked "
                                 "between parts, modes switched by restarting the controller "
                                 "(tenantnet.experiment.labs)",
                        "networks": shared.networks, "events": shared.events}

    def factory_for(mode):
        return LabFactory(spec, mode, prefix=prefix, state_dir=state_dir,
                          config_dir=config_dir, reporter=reporter, shared=shared,
                          on_vm_accel=lambda a: meta["nodes"].update(virtualisation=a))

    def on_end():
        if shared is not None:
            shared.close()            # after an error or Ctrl-C (a no-op when done)
        if not inst_rows and spec.reachability.enabled:
            rd.write_table("reachability_instances", [], columns=INSTANCE_FIELDS)
            rd.write_table("reachability", [], columns=RECORD_COLUMNS)
        if spec.bandwidth.enabled and bandwidth is not None and not bw_rows:
            rd.write_table("bandwidth", [])

    with recorded_run(rd, meta, reporter, total_steps, f"{spec.name}", on_end):
        for w in meta["warnings"]:
            reporter.log("warning: " + w)
        for mode in modes:
            factory = factory_for(mode)
            if spec.reachability.enabled:
                reporter.describe(f"{spec.name}: reachability {mode}")
                phase = {"mode": mode, "part": "reachability", "started": now()}
                meta["phases"].append(phase)
                t0 = time.perf_counter()
                run_reachability(factory, spec, mode, progress=reporter,
                                 on_rows=save_reachability)
                phase.update(finished=now(), seconds=round(time.perf_counter() - t0, 1))
                rd.write_json("meta.json", meta)
            if bandwidth is not None:
                reporter.describe(f"{spec.name}: bandwidth {mode}")
                phase = {"mode": mode, "part": "bandwidth", "started": now()}
                meta["phases"].append(phase)
                t0 = time.perf_counter()
                try:
                    rows = call_bandwidth(bandwidth, factory, spec, mode, rd.root, reporter)
                except TenantnetError as exc:
                    meta["errors"].append(f"bandwidth {mode}: {exc}")
                    reporter.log(f"bandwidth {mode} failed: {exc}")
                    rows = []
                for row in rows or []:
                    row.setdefault("mode", mode)
                bw_rows.extend(rows or [])
                rd.write_table("bandwidth", bw_rows)
                phase.update(finished=now(), seconds=round(time.perf_counter() - t0, 1),
                             rows=len(rows or []))
                rd.write_json("meta.json", meta)
                reporter.step()
        if bandwidth is not None and spec.bandwidth.baselines:
            from tenantnet.experiment import baseline, vmbaseline
            kind = "vm" if spec.lab.nodes == "vm" else "host"
            names = "VM to VM over the transport, flat OVS in a node VM" if kind == "vm" \
                else "veth, flat OVS"
            reporter.describe(f"{spec.name}: baselines ({names})")
            phase = {"mode": "baselines", "part": "bandwidth", "started": now()}
            meta["phases"].append(phase)
            t0 = time.perf_counter()
            try:
                if kind == "vm":
                    # The same path without tenantnet, on the lab's own node VMs (no tenant
                    # VM is up: nothing else competes for their CPU).
                    with factory_for(modes[-1])(networks=1, label="baselines") as lab:
                        nodes = vmbaseline.vm_nodes(lab)
                        meta["baselines"] = {"kind": kind, "nodes": list(nodes),
                                             "modes": baseline.describe(f"{prefix}b", kind,
                                                                        nodes)}
                        rows = vmbaseline.run_vm_baselines(lab, spec, f"{prefix}b",
                                                           progress=reporter,
                                                           tuning=spec.tuning, nodes=nodes)
                else:
                    # The machine's own ceiling, measured in the same run with no lab up
                    # (nothing else competes for the CPU): a veth pair, one flat OVS bridge.
                    meta["baselines"] = {"kind": kind,
                                         "modes": baseline.describe(f"{prefix}b", kind)}
                    rows = baseline.run_baselines(f"{prefix}b", spec, progress=reporter,
                                                  tuning=spec.tuning)
            except TenantnetError as exc:
                meta["errors"].append(f"baselines: {exc}")
                reporter.log(f"baselines failed: {exc}")
                rows = []
            bw_rows.extend(rows)
            rd.write_table("bandwidth", bw_rows)
            phase.update(finished=now(), seconds=round(time.perf_counter() - t0, 1),
                         rows=len(rows))
            rd.write_json("meta.json", meta)
            reporter.step()
        if shared is not None:
            shared.close()
    render(rd, meta)
    rd.write_json("meta.json", meta)
    return rd


