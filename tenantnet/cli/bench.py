"""`tenantnet bench flows [--flows N] [--repeat R] [--json]`: tenantnet measured side by
side with Open vSwitch's own tools on a throwaway switch (tenantnet.bench)."""

import signal

from tenantnet.cli.common import print_json, progress


def _interrupt_on_sigterm():
    """SIGTERM ends a bench like Ctrl-C: its cleanup runs. Returns the old handler."""
    def on_term(_signum, _frame):
        raise KeyboardInterrupt
    return signal.signal(signal.SIGTERM, on_term)


def cmd_bench_flows(args):
    from tenantnet.bench import flows
    from tenantnet.bench.switch import check_can_run
    check_can_run()
    old = _interrupt_on_sigterm()
    try:
        result = flows.run(args.flows, repeat=args.repeat,
                           progress=None if args.json else progress)
    finally:
        signal.signal(signal.SIGTERM, old)
    if args.json:
        print_json(result)
    else:
        show_flows(result, args.repeat)
    return 0


def show_flows(r, repeat):
    from rich.console import Console
    from rich.table import Table
    n = r["flows"]
    table = Table(title=f"{n} flows on one userspace OVS bridge (median of {repeat})")
    table.add_column("step")
    table.add_column("tenantnet (s)", justify="right")
    table.add_column("ovs-ofctl --bundle (s)", justify="right")
    table.add_column("ofctl / tenantnet", justify="right")
    table.add_row("install into an empty table", f"{r['tenantnet_install_s']:.3f}",
                  f"{r['ofctl_install_s']:.3f}", f"{r['install_ratio']:.2f}")
    table.add_row("delete them", f"{r['tenantnet_delete_s']:.3f}", f"{r['ofctl_delete_s']:.3f}",
                  f"{r['ofctl_delete_s'] / r['tenantnet_delete_s']:.2f}")
    table.add_row("no-op resync (dump + compare)", f"{r['noop_resync_s']:.3f}", "", "")
    Console().print(table)


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
