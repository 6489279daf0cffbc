"""`tenantnet bench resync [--vms N --networks N --nodes K] [--json]` and `tenantnet bench
bulk [...] [--json]`: the benches that run on a lab of their own (tenantnet.bench.resync,
tenantnet.bench.bulk), registered under `tenantnet bench` by cli/bench."""

from tenantnet.cli.benchrun import run_bench
from tenantnet.cli.common import print_json, progress


def _run(func, args, **extra):
    return run_bench(func, args.vms, networks=args.networks, nodes=args.nodes,
                     progress=None if args.json else progress, keep_logs=args.keep_logs,
                     **extra)


def _deployment(r):
    return ("TLS on every control channel (OVSDB ssl:, OpenFlow TLS, HTTPS API), as deployed"
            if r["tls"] else "TLS off (security: insecure)")


def cmd_bench_resync(args):
    from tenantnet.bench import resync
    result, details = _run(resync.run, args, profile=args.profile)
    if args.json:
        print_json(result)
        return 0
    from rich.console import Console
    from rich.table import Table
    print(_deployment(result))
    table = Table(title=f"controller restart: {result['vms']} VMs, {result['networks']} "
                        f"networks, {result['nodes']} compute nodes + 1 network node, "
                        f"{details['bridges']} bridges")
    table.add_column("measure", no_wrap=True)
    table.add_column("value", justify="right")
    table.add_column("how", style="dim")
    rows = [
        ("ready_s", f"{result['ready_s']:.3f}", "process start → health ok, every node up"),
        ("  API first answered (s)", f"{details['api_answered_s']}", ""),
        ("bridges_synced_s", "not reached" if result["bridges_synced_s"] is None
         else f"{result['bridges_synced_s']:.3f}",
         f"every bridge reconnected and synced ({details['switch_resyncs']} syncs)"),
        ("ovsdb_changes", str(result["ovsdb_changes"]), "ovsdb-client monitor on every node"),
        ("flow_changes", str(result["flow_changes"]),
         f"ovs-vswitchd's flow_mod reports (the build's: {details['build_flow_mods']})"),
        ("  controller's own count", f"{details['controller_ovsdb_transactions']} OVSDB "
         f"transactions, {details['controller_bundles']} bundles", "GET /metrics"),
        ("ping_lost", str(result["ping_lost"]),
         f"of {details['echoes']} echoes, -i 0.01; longest gap "
         f"{details['ping']['longest_gap_s']} s"),
        ("flows_total", str(result["flows_total"]), "tenantnet's flows on the switches"),
    ]
    for row in rows:
        table.add_row(*row)
    Console().print(table)
    for table_name, lines in details["ovsdb_changed_rows"].items():
        Console().print(f"changed in {table_name}: " + "; ".join(lines))
    for line in details["flow_mod_reports"]:
        Console().print(line)
    return 0


def cmd_bench_bulk(args):
    from tenantnet.bench import bulk
    result, details = _run(bulk.run, args)
    if args.json:
        print_json(result)
        return 0
    from rich.console import Console
    from rich.table import Table
    print(_deployment(result))
    table = Table(title=f"one batch of {result['vms']} placements on {result['networks']} new "
                        f"networks over {result['nodes']} compute nodes + 1 network node")
    table.add_column("", no_wrap=True)
    table.add_column("seconds", justify="right")
    table.add_column("how", style="dim")
    table.add_row("tenantnet_last_s (tenantnet, last VM)", f"{result['tenantnet_last_s']:.3f}",
                  "batch sent → its API answer (ports with ofports, flows committed)")
    table.add_row("tenantnet_mean_s (mean per VM)", f"{result['tenantnet_mean_s']:.3f}", "")
    table.add_row("raw_s (raw tools)", f"{result['raw_s']:.3f}",
                  "one ovs-vsctl transaction per node + ovs-ofctl --bundle per bridge, "
                  "nodes side by side")
    table.add_row("ratio (last / raw)", f"{result['ratio']:.2f}", "")
    Console().print(table)
    Console().print(f"raw reference per node (s): {details['raw_per_node_s']}; "
                    f"each side {details['bridges']} tenant bridges and {details['ports']} "
                    f"ports; flows: tenantnet {details['flows']} (with br-tun's and br-int's), "
                    f"raw {details['raw_flows']} (what it added)")
    return 0


def add_lab_bench_commands(bsub):
    """Add `resync` and `bulk` to the `tenantnet bench` subparsers *bsub*."""
    c = bsub.add_parser("resync", help="controller restart at scale on a lab of its own "
                                       "(prefix tnbr): time to ready, changes made, pings lost")
    c.add_argument("--vms", type=int, default=1000, help="VMs placed (default 1000)")
    c.add_argument("--networks", type=int, default=100, help="networks (default 100)")
    c.add_argument("--nodes", type=int, default=5,
                   help="compute nodes, plus one network node (default 5)")
    c.add_argument("--json", action="store_true", help="one JSON object")
    c.add_argument("--profile", metavar="PATH", default=None,
                   help="sample the restarted controller with py-spy (collapsed stacks, "
                        "every thread) from its start to the end of the window")
    c.add_argument("--keep-logs", metavar="DIR", default=None,
                   help="copy the controller's and the nodes' logs into DIR before the "
                        "lab is removed")
    c.set_defaults(func=cmd_bench_resync)
    c = bsub.add_parser("bulk", help="one batch of placements on a lab of its own (prefix "
                                     "tnbb), against the raw tools on the same nodes")
    c.add_argument("--vms", type=int, default=80, help="VMs in the batch (default 80)")
    c.add_argument("--networks", type=int, default=8, help="networks (default 8)")
    c.add_argument("--nodes", type=int, default=5,
                   help="compute nodes, plus one network node (default 5)")
    c.add_argument("--json", action="store_true", help="one JSON object")
    c.add_argument("--keep-logs", metavar="DIR", default=None,
                   help="copy the controller's and the nodes' logs into DIR before the "
                        "lab is removed")
    c.set_defaults(func=cmd_bench_bulk)
