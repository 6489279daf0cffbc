"""`tenantnet bench flows [--flows N] [--repeat R] [--json]` and `tenantnet bench placement
[--vms N] [--existing M] [--json]`: tenantnet measured side by side with Open vSwitch's own
tools on a throwaway switch (tenantnet.bench)."""

from tenantnet.cli.benchrun import print_result, right_table, run_bench
from tenantnet.cli.common import progress


def cmd_bench_flows(args):
    from tenantnet.bench import flows
    result = run_bench(flows.run, args.flows, repeat=args.repeat,
                       progress=None if args.json else progress)
    return print_result(args, result, lambda: show_flows(result, args.repeat))


def show_flows(r, repeat):
    from rich.console import Console
    n = r["flows"]
    table = right_table(f"{n} flows on one userspace OVS bridge (median of {repeat})", "step",
                        "tenantnet (s)", "ovs-ofctl --bundle (s)", "ofctl / tenantnet")
    table.add_row("install into an empty table", f"{r['tenantnet_install_s']:.3f}",
                  f"{r['ofctl_install_s']:.3f}", f"{r['install_ratio']:.2f}")
    table.add_row("delete them", f"{r['tenantnet_delete_s']:.3f}", f"{r['ofctl_delete_s']:.3f}",
                  f"{r['ofctl_delete_s'] / r['tenantnet_delete_s']:.2f}")
    table.add_row("no-op resync (dump + compare)", f"{r['noop_resync_s']:.3f}", "", "")
    Console().print(table)


def _levels(text):
    """--levels: a comma-separated list of positive integers."""
    import argparse
    try:
        values = [int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: expected numbers separated by commas, "
                                         "e.g. 100,250,500") from None
    if not values or min(values) < 1:
        raise argparse.ArgumentTypeError(f"{text!r}: expected positive numbers, e.g. 100,250")
    return values


def cmd_bench_placement(args):
    from tenantnet.bench import placement
    result, details = run_bench(placement.run, args.vms, existing=args.existing,
                                progress=None if args.json else progress,
                                profile_path=args.profile, more_levels=args.levels or ())
    if args.plot:
        from tenantnet.bench import plot
        plot.placement_curve(details, args.plot)
        if not args.json:
            print(f"plot: {args.plot}")
    return print_result(args, result, lambda: show_placement(result, details))


def show_placement(r, d):
    from rich.console import Console
    n, m = d["vms"], d["existing"]
    table = right_table(f"{n} VMs placed one at a time on one userspace OVS node (ms; ratio = "
                        f"tenantnet p50 / raw p50)", "placement", "tenantnet p50", "p95",
                        "raw p50", "ratio", "core: OVSDB / OpenFlow", "OVS floor")
    for level, info in sorted(d["levels"].items()):
        p50 = info["p50_ms"]
        core = info["core"]
        table.add_row(f"existing bridges, after {level} VMs", f"{p50:.1f}",
                      f"{info['p95_ms']:.1f}", f"{info['raw_p50_ms']:.1f}",
                      f"{p50 / info['raw_p50_ms']:.2f}",
                      f"{core['ovsdb_ms']:.1f} / {core['openflow_ms']:.1f}",
                      f"{info['floor_p50_ms']:.1f}")
    core = d["first_core"]
    table.add_row(f"first on the node, after {m} VMs", f"{r['first_on_node_p50_ms']:.1f}", "",
                  f"{r['raw_first_on_node_p50_ms']:.1f}",
                  f"{r['first_on_node_p50_ms'] / r['raw_first_on_node_p50_ms']:.2f}",
                  f"{core['ovsdb_ms']:.1f} / {core['openflow_ms']:.1f}")
    console = Console()
    console.print(table)
    if len(d["levels"]) > 1:
        low, high = min(d["levels"]), max(d["levels"])
        lo, hi = d["levels"][low], d["levels"][high]
        console.print(f"p50 after {high} VMs / p50 after {low}: tenantnet "
                      f"{hi['p50_ms'] / lo['p50_ms']:.2f}, raw tools "
                      f"{hi['raw_p50_ms'] / lo['raw_p50_ms']:.2f}; tenantnet above the "
                      f"floor: {hi['p50_ms'] - hi['floor_p50_ms']:.1f} ms after {high}, "
                      f"{lo['p50_ms'] - lo['floor_p50_ms']:.1f} ms after {low}")
    console.print("OVS floor: p50 of a commit that changes one Open_vSwitch external_ids "
                  "key (ovs-vswitchd reconfigures the whole node on every change)")


def add_bench_commands(sub):
    bench = sub.add_parser("bench", help="tenantnet against the raw Open vSwitch tools "
                                         "(needs root; makes and removes its own switch)")
    bsub = bench.add_subparsers(dest="bench_cmd", required=True)
    c = bsub.add_parser("flows", help="flow programming: the controller's bundle sync "
                                      "against ovs-ofctl --bundle")
    c.add_argument("--flows", type=int, default=10000, help="flows to install (default 10000)")
    c.add_argument("--repeat", type=int, default=3,
                   help="rounds; each figure is their median (default 3)")
    c.add_argument("--json", action="store_true", help="one JSON object")
    c.set_defaults(func=cmd_bench_flows)
    c = bsub.add_parser("placement", help="placing a VM: the controller's placement path "
                                          "against one ovs-vsctl transaction and "
                                          "ovs-ofctl --bundle")
    c.add_argument("--vms", type=int, default=20,
                   help="VMs placed one at a time on existing bridges, and first on the node "
                        "(default 20)")
    c.add_argument("--existing", type=int, default=None,
                   help="VMs already placed (default 10); given, the run also measures after "
                        "10 and prints p50_ms_at_10 and p50_ms_at_M, with the raw tools' "
                        "raw_p50_ms_at_... and Open vSwitch's floor_p50_ms_at_...")
    c.add_argument("--json", action="store_true", help="one JSON object")
    c.add_argument("--profile", metavar="PATH", default=None,
                   help="cProfile the controller's placements (the calling thread): one "
                        "pstats file per phase, PATH.at-M.pstats, PATH.first-on-node.pstats")
    c.add_argument("--levels", type=_levels, default=None, metavar="L1,L2,...",
                   help="more numbers of existing VMs to measure at, in the same run (e.g. "
                        "100,250,500,1000); the largest is M unless --existing is given")
    c.add_argument("--plot", metavar="FILE.png", default=None,
                   help="draw placement latency (tenantnet p50/p95, raw p50) against the "
                        "number of existing VMs into FILE.png")
    c.set_defaults(func=cmd_bench_placement)
    from tenantnet.cli.benchlab import add_lab_bench_commands     # bench resync, bench bulk
    add_lab_bench_commands(bsub)
    from tenantnet.cli.benchdatapath import add_datapath_bench_command   # bench datapath
    add_datapath_bench_command(bsub)
