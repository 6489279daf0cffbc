"""`tenantnet experiment ...`: hooked into tenantnet/cli/main.py by add_experiment_commands.

  tenantnet experiment run -c FILE [--out DIR] [--modes dnb,cnb] [--prefix P] [--no-progress]
  tenantnet experiment plot RESULTS_DIR
  tenantnet experiment check -c FILE      (validate a spec, print the grid; builds nothing)

Errors are TenantnetError subclasses: tenantnet.cli.main prints them as one line."""

import os
import sys

from tenantnet.errors import TenantnetError


def cmd_experiment_run(args):
    from tenantnet.experiment import runner
    from tenantnet.experiment.spec import load_spec, parse_modes
    spec = load_spec(args.config)
    modes = parse_modes(args.modes) if args.modes else spec.modes
    out = args.out or runner.default_out_dir(spec)
    progress = sys.stderr.isatty() if args.progress is None else args.progress
    print(f"experiment {spec.name}: modes {', '.join(modes)}; results in {os.path.abspath(out)}",
          flush=True)
    rd = runner.run(spec, out, modes=modes, progress=progress, prefix=args.prefix)
    meta = rd.read_json("meta.json")
    print(f"experiment {spec.name}: {meta['status']} in {meta.get('seconds', 0):.0f}s; "
          f"results in {rd.root}")
    for name in ("reachability.csv", "bandwidth.csv", "chains.csv", "report.md"):
        if rd.exists(name):
            print(f"  {rd.path(name)}")
    _print_records(rd)
    if spec.chains is not None:
        from tenantnet.experiment.chainplots import print_fits
        print_fits(rd)
    return 0


def _print_records(rd):
    if not rd.exists("reachability.csv"):
        return
    rows = rd.read_csv("reachability.csv")
    if not rows:
        return
    print(f"  {'mode':5} {'inst':>5} {'nets':>5} {'total':>6} {'ok':>4} {'fail':>5} "
          f"{'miss':>5} {'mean ms':>9} {'std ms':>9}")
    for r in rows:
        mean = "-" if r["mean_ms"] is None else f"{r['mean_ms']:.1f}"
        std = "-" if r["std_ms"] is None else f"{r['std_ms']:.1f}"
        print(f"  {r['mode']:5} {r['instances']:>5} {r['networks']:>5} {r['total']:>6} "
              f"{r['success']:>4} {r['failed']:>5} {r['missing']:>5} {mean:>9} {std:>9}")


def cmd_experiment_plot(args):
    from tenantnet.experiment import runner
    from tenantnet.experiment.results import ResultsDir
    rd = ResultsDir(args.results_dir, create=False)
    if not rd.exists("meta.json"):
        raise TenantnetError(f"{rd.root}: not an experiment results directory (no meta.json)")
    missing = [m for m in ("plots", "report") if runner.optional_module(m) is None]
    if len(missing) == 2:
        raise TenantnetError("tenantnet.experiment.plots and .report are not available in "
                             "this installation")
    warnings = runner.render(rd)
    print(f"rendered {rd.root}" + (f" ({len(warnings)} warning(s))" if warnings else ""))
    return 1 if warnings else 0


def cmd_experiment_check(args):
    from tenantnet.experiment.spec import load_spec, mode_unsupported
    spec = load_spec(args.config)
    r, b = spec.reachability, spec.bandwidth
    print(f"{args.config}: OK — experiment {spec.name}, modes {', '.join(spec.modes)}, "
          f"{spec.lab.compute_nodes} compute + {spec.lab.network_nodes} network node(s)")
    c = spec.chains
    if c is not None:
        print(f"  chains: lengths {c.lengths} x layouts {c.layouts} ({c.function}), traffic "
              f"{', '.join(t.name for t in c.traffic)}, {c.duration_s:g}s x {c.repeats} "
              f"repeat(s); firewall: " + (f"rules {c.firewall.rules} x {c.firewall.layouts} "
                                         f"x stateful {c.firewall.stateful}, traffic "
                                         f"{', '.join(c.firewall.traffic)}"
                                         if c.firewall.enabled else "off")
              + f"; {c.points()} iperf3 runs per mode")
    if r.enabled:
        runs = len(r.grid()) * r.repeats
        labs = (f"{runs} runs on one lab, reset between runs" if spec.lab.nodes == "vm"
                else f"{runs} labs per mode")
        print(f"  reachability: instances {r.instances} x networks {r.networks} x "
              f"{r.repeats} repeat(s) = {labs}, timeout "
              f"{r.timeout_s:g}s, probe every {r.probe_interval_ms:g} ms")
    if b.enabled:
        print(f"  bandwidth: {b.vms} VM(s), {', '.join(b.protocols)}, {b.duration_s:g}s per "
              f"run, UDP at {b.udp_rate}")
    for m in spec.modes:
        why = mode_unsupported(spec, m)
        if why:
            print(f"  mode {m}: NOT RUNNABLE here: {why}")
    return 0


def add_experiment_commands(subparsers):
    """Add `experiment run|plot|check` to tenantnet's top-level *subparsers*."""
    from tenantnet.experiment import DEFAULT_PREFIX
    exp = subparsers.add_parser("experiment", help="the paper's experiments (section IV)")
    sub = exp.add_subparsers(dest="experiment_cmd", required=True)

    c = sub.add_parser("run", help="run an experiment spec: reachability and bandwidth (or "
                                   "the chain experiment), every mode, plots and report")
    c.add_argument("-c", "--config", required=True, help="experiment spec (YAML), e.g. "
                                                         "configs/experiments/quick.yaml")
    c.add_argument("--out", help="results directory (default results/NAME-YYYYmmdd-HHMMSS)")
    c.add_argument("--modes", help="comma-separated modes to run (default: the spec's)")
    c.add_argument("--prefix", default=DEFAULT_PREFIX,
                   help=f"lab prefix used while running (default {DEFAULT_PREFIX})")
    g = c.add_mutually_exclusive_group()
    g.add_argument("--progress", dest="progress", action="store_true", default=None,
                   help="progress bars (default: when stderr is a terminal)")
    g.add_argument("--no-progress", dest="progress", action="store_false")
    c.set_defaults(func=cmd_experiment_run)

    c = sub.add_parser("plot", help="(re)draw the figures and the report of a results dir")
    c.add_argument("results_dir")
    c.set_defaults(func=cmd_experiment_plot)

    c = sub.add_parser("check", help="validate an experiment spec (builds nothing)")
    c.add_argument("-c", "--config", required=True)
    c.set_defaults(func=cmd_experiment_check)
    return exp
