"""`tenantnet function add|del|list` and `tenantnet chain add|del|list`: network functions
and service chains at runtime, through the controller's API (like `tenantnet vm`).

In a lab that is up, `function add` also makes the function's namespace and sets it up as
its kind says (forward, firewall, shaper), and `function del` removes it; elsewhere only the
API is called. Chains are only flows: always the API."""

from tenantnet.cli.lab import (add_target_options, api_target, on_target, print_record,
                               print_records, timing)
from tenantnet.errors import TenantnetError


def _options(args):
    """The function's kind settings and addresses given on the command line."""
    out = {}
    for key in ("mac", "ip", "rules", "rate"):
        if getattr(args, key) is not None:
            out[key] = getattr(args, key)
    if args.stateful is not None:
        out["stateful"] = args.stateful
    return out


def _settings(options):
    return ", ".join(f"{k} {v}" for k, v in sorted(options.items())) or "no settings"


# -- function ---------------------------------------------------------------------------------
def cmd_function_add(args):
    rec = on_target(args, "add_function", args.name, args.network, args.node, args.kind,
                    **_options(args))
    return print_record(args, rec, lambda r: (
        f"{r['name']}: {r['function']} ({_settings(r.get('options', {}))}) on "
        f"{r['network']} at {r['node']}, {r['mac']} {r['ip']} — {timing(r)}"))


def cmd_function_del(args):
    rec = on_target(args, "del_function", args.name)
    affected = rec.get("chains_affected") or []
    print(f"{rec['name']}: removed from {rec['node']} ({rec['network']})"
          + (f"; chains that named it now do without it: {', '.join(affected)}"
             if affected else ""))
    return 0


def cmd_function_list(args):
    return print_records(args, "list_functions", lambda f: (
        f"{f['name']:12} {f['function']:9} {f['network']:20} {f['node']:10} {f['mac']} "
        f"{f['ip'] or '-':15} {_settings(f.get('options', {}))} ({f.get('source', '')})"))


# -- chain ------------------------------------------------------------------------------------
def _through(values):
    """--through fw1,sh1 or --through fw1 --through sh1: the functions in order."""
    names = [n.strip() for v in values for n in v.split(",")]
    if any(not n for n in names):
        raise TenantnetError(f"--through {','.join(values)}: an empty function name; give the "
                             "functions in order, e.g. --through fw1,sh1")
    return names


def _path(c):
    return (f"{c['from']} -> {c['to']} through {', '.join(c['through'])} "
            f"(on failure: {c.get('on_failure', 'open')})")


def cmd_chain_add(args):
    _, api = api_target(args)
    rec = api.add_chain(args.name, args.network, args.src, args.dst, _through(args.through),
                        on_failure=args.on_failure)
    return print_record(args, rec,
                        lambda r: f"{r['name']}: {r['network']} {_path(r)} — {timing(r)}")


def cmd_chain_del(args):
    _, api = api_target(args)
    rec = api.del_chain(args.name)
    print(f"{rec['name']}: removed; {rec['from']} -> {rec['to']} on {rec['network']} is "
          "forwarded directly again")
    return 0


def cmd_chain_list(args):
    return print_records(args, "list_chains", lambda c: (
        f"{c['name']:14} {c['network']:20} {_path(c)} ({c.get('source', '')})"))


def _add_del_list(group, del_help, cmd_del, list_help, cmd_list):
    """`del NAME` and `list [--json]` under the subparsers *group*, then the target options
    on each of its commands (add, del, list)."""
    c = group.add_parser("del", help=del_help)
    c.add_argument("name")
    c.set_defaults(func=cmd_del)
    c = group.add_parser("list", help=list_help)
    c.add_argument("--json", action="store_true")
    c.set_defaults(func=cmd_list)
    for c in group.choices.values():
        add_target_options(c)


def add_nfv_commands(sub):
    """`function add|del|list` and `chain add|del|list` under *sub*."""
    fn = sub.add_parser("function", help="place network functions at runtime") \
        .add_subparsers(dest="function_cmd", required=True)
    c = fn.add_parser("add", help="add a network function (an endpoint chains steer through)")
    c.add_argument("name")
    c.add_argument("--network", required=True, help="TENANT/NETWORK")
    c.add_argument("--node", required=True, help="a compute node")
    c.add_argument("--kind", required=True, help="forward, firewall or shaper")
    c.add_argument("--mac")
    c.add_argument("--ip")
    c.add_argument("--rules", type=int, help="firewall: number of rules (default 0)")
    state = c.add_mutually_exclusive_group()
    state.add_argument("--stateful", dest="stateful", action="store_const", const=True,
                       default=None, help="firewall: conntrack first (the default)")
    state.add_argument("--stateless", dest="stateful", action="store_const", const=False,
                       help="firewall: every packet through every rule")
    c.add_argument("--rate", help="shaper: a tc rate, e.g. 100mbit (default 100mbit)")
    c.add_argument("--json", action="store_true")
    c.set_defaults(func=cmd_function_add)
    _add_del_list(fn, "remove a function (chains stop using it first)", cmd_function_del,
                  "the network functions", cmd_function_list)

    ch = sub.add_parser("chain", help="place service chains at runtime") \
        .add_subparsers(dest="chain_cmd", required=True)
    c = ch.add_parser("add", help="steer a VM's IPv4 traffic through functions, in order")
    c.add_argument("name")
    c.add_argument("--network", required=True, help="TENANT/NETWORK")
    c.add_argument("--from", dest="src", required=True, metavar="VM")
    c.add_argument("--to", dest="dst", required=True, metavar="VM|any")
    c.add_argument("--through", required=True, action="append", metavar="FN[,FN...]",
                   help="the functions in order (comma-separated, or repeated)")
    c.add_argument("--on-failure", choices=("open", "closed"),
                   help="a missing function is skipped (open, the default) or the chain's "
                        "traffic dropped (closed)")
    c.add_argument("--json", action="store_true")
    c.set_defaults(func=cmd_chain_add)
    _add_del_list(ch, "remove a chain: its traffic is forwarded directly again", cmd_chain_del,
                  "the service chains", cmd_chain_list)
