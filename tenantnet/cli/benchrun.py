"""The frame every `tenantnet bench` subcommand runs in (cli/bench, cli/benchlab,
cli/benchdatapath): the machine check, SIGTERM as Ctrl-C (so a bench's cleanup runs), and
its output (one JSON object, or tables)."""

import signal

from tenantnet.cli.common import print_json


def _interrupt_on_sigterm():
    """SIGTERM ends a bench like Ctrl-C: its cleanup runs. Returns the old handler."""
    def on_term(_signum, _frame):
        raise KeyboardInterrupt
    return signal.signal(signal.SIGTERM, on_term)


def run_bench(func, *args, **kwargs):
    """func(*args, **kwargs) once check_can_run() passes (root, Open vSwitch's tools), with
    SIGTERM turned into Ctrl-C meanwhile so that the bench's cleanup runs."""
    from tenantnet.bench.switch import check_can_run
    check_can_run()
    old = _interrupt_on_sigterm()
    try:
        return func(*args, **kwargs)
    finally:
        signal.signal(signal.SIGTERM, old)


def print_result(args, result, show):
    """*result* as one JSON object with --json, else show() (the tables). Returns 0."""
    if args.json:
        print_json(result)
    else:
        show()
    return 0


def right_table(title, first, *numbers):
    """A rich Table titled *title*: the column *first*, then the right-aligned columns
    *numbers*."""
    from rich.table import Table
    table = Table(title=title)
    table.add_column(first)
    for name in numbers:
        table.add_column(name, justify="right")
    return table
