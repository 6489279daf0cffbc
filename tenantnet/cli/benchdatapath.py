"""`tenantnet bench datapath [--seconds S] [--repeat R] [--json]`: TCP over a veth pair, a
flat OVS bridge, and two lab nodes in CNB and in DNB, with each path's datapath flows
(tenantnet.bench.datapath), registered under `tenantnet bench` by cli/bench."""

from tenantnet.cli.benchrun import print_result, right_table, run_bench
from tenantnet.cli.common import progress


def cmd_bench_datapath(args):
    from tenantnet.bench import datapath
    datapath.check_args(args.seconds, args.repeat)
    result, details = run_bench(datapath.run, args.seconds, repeat=args.repeat,
                                progress=None if args.json else progress)
    return print_result(args, result, lambda: show(result, details))


def show(r, d):
    from rich.console import Console
    from tenantnet.bench.datapath import PATHS, key_of
    console = Console()
    table = right_table(f"TCP, iperf3, {r['seconds']} s per run, median of {r['repeat']} "
                        f"round(s), MTU {r['mtu']} (Gbit/s)", "path", "4 streams", "1 stream",
                        "dp flows", "recirc flows", "passes / packet")
    for path in PATHS:
        f = r["datapath_flows"].get(path, {})
        passes = ", ".join(f"{w} {s['passes_per_packet']}"
                           for w, s in sorted(r["pmd_stats"].get(path, {}).items()))
        table.add_row(path, f"{r[key_of(path, 4)]:.3f}", f"{r[key_of(path, 1)]:.3f}",
                      str(f.get("flows", 0)), str(f.get("recirc_flows", 0)), passes or "-")
    console.print(table)
    console.print(f"dnb_over_cnb: {r['dnb_over_cnb']:.3f} (4 streams), "
                  f"{r['dnb_over_cnb_1stream']:.3f} (1 stream)")
    if r["repeat"] > 1:
        for key, values in d["rounds"].items():
            console.print(f"  {key}: {values}")
    for path in PATHS:
        hops = r["datapath_flows"].get(path, {}).get("hops", [])
        if not hops:
            continue
        console.print(f"[bold]{path}[/bold]: busy datapath flows (4 streams; 2nd = a second "
                      "pass, after tnl_pop or recirc)")
        for h in hops:
            console.print(f"  {h['where']:>9} in_port({h['in_port']})"
                          f"{' 2nd' if h['second_pass'] else ''} {h['packets']:>9} pkts: "
                          + ", ".join(h["actions"]), markup=False, highlight=False,
                          soft_wrap=True)


def add_datapath_bench_command(bsub):
    """Add `datapath` to the `tenantnet bench` subparsers *bsub*."""
    c = bsub.add_parser("datapath", help="TCP over a veth pair, a flat OVS bridge and two lab "
                                         "nodes in CNB and DNB (prefixes tnbd, tnbdb), with "
                                         "the datapath flows of each path")
    c.add_argument("--seconds", type=int, default=5,
                   help="seconds per iperf3 run (default 5)")
    c.add_argument("--repeat", type=int, default=1,
                   help="rounds over every path; each figure is their median (default 1)")
    c.add_argument("--json", action="store_true", help="one JSON object")
    c.set_defaults(func=cmd_bench_datapath)
