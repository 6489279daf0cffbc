"""`tenantnet lab ...` and `tenantnet vm ...`: the one-machine lab (and, through
tenantnet.cli.node, a multi-node cluster) and runtime VM placement."""

import argparse
import os
import sys

from tenantnet.cli.common import DEFAULT_PREFIX, print_json, progress, read_token
from tenantnet.errors import TenantnetError


# -- lab ------------------------------------------------------------------------------
def _lab(args):
    from tenantnet.lab.lab import Lab
    return Lab(prefix=args.prefix)


def cmd_lab_up(args):
    lab = _lab(args)
    try:
        result = lab.up(args.config, timeout=args.timeout, progress=progress,
                        nodes=getattr(args, "nodes", None))
    except BaseException:
        if not args.keep_on_failure:
            print("lab up failed: tearing down what was built", file=sys.stderr)
            try:
                lab.down()
            except TenantnetError as exc:
                print(f"  (teardown: {exc})", file=sys.stderr)
        raise
    times = result["reachable_after_s"]
    t = lab.topology().tuning
    print(f"lab '{args.prefix}' is up in {result['seconds']:.1f}s; VM tuning (section III.G): "
          f"MTU {t.vm_mtu}, tx checksum offload {'on' if t.tx_checksum_offload else 'off'}"
          + (f", neighbour gc_thresh {list(t.neigh_gc_thresh)}" if t.neigh_gc_thresh else ""))
    print("every VM answers its probe:")
    for name, t in sorted(times.items()):
        print(f"  {name:12} reachable {t * 1000:8.1f} ms after the controller answered")
    print("next: tenantnet lab status | lab matrix | lab exec VM -- CMD | vm add ... | lab down")
    return 0


def cmd_lab_down(args):
    lab = _lab(args)
    lab.down()
    print(f"lab '{args.prefix}' is down (nothing of it is left)")
    return 0


def cmd_lab_status(args):
    status = _lab(args).status()
    if args.json:
        print_json(status)
        return 0
    c = status["controller"]
    print(f"lab '{status['prefix']}' ({status['state_dir']}); controller pid {c['pid']} "
          f"{'alive' if c['alive'] else 'NOT RUNNING'}, API {c['api']}")
    for ctl in status.get("controllers", []):
        who = "provider" if ctl["role"] == "provider" else f"tenant {ctl['tenant']}"
        print(f"  controller {who}: pid {ctl['pid']} "
              f"{'alive' if ctl['alive'] else 'NOT RUNNING'}, ns {ctl['namespace']}, "
              f"OpenFlow {ctl['listen']}\n    {ctl['command_line']}")
    for name, n in sorted(status["nodes"].items()):
        if n.get("kind") == "vm":
            where = f"VM ({n.get('accel') or '?'})"
        elif n.get("namespace"):
            where = f"ns {n['namespace']}"
        else:
            where = n.get("exec") or "host"
        print(f"  node {name:10} {n['role']:8} {where:17} {n['ovsdb_remote']:24} "
              f"bridges: {' '.join(n['bridges'])}")
        print(f"       {'':10} state {n.get('state') or '?'}"
              + (f" since {n['state_since']}: {n['state_reason']}" if n.get("state") else
                 " (the controller did not answer)"))
    for name, v in sorted(status["vms"].items()):
        print(f"  vm   {name:10} on {v['node']:10} {v['network'] or '?':18} {v['mac']} {v['ip']} "
              f"ns {v['namespace']}")
    return 0


def _command(args, example):
    """The command after `--` (a clear error when there is none)."""
    cmd = args.cmd[1:] if args.cmd and args.cmd[0] == "--" else args.cmd
    if not cmd:
        raise TenantnetError(f"give a command after --, e.g. {example}")
    return cmd


def cmd_lab_exec(args):
    cmd = _command(args, "tenantnet lab exec web1 -- ping -c1 10.0.0.3")
    return _lab(args).exec(args.vm, cmd).returncode


def cmd_lab_node(args):
    cmd = _command(args, "tenantnet lab node compute1 -- ovs-vsctl show")
    return _lab(args).node_exec(args.node, cmd).returncode


def cmd_lab_stop(args):
    from tenantnet.lab import faults
    lab = _lab(args)
    if faults.is_controller(args.node):
        killed = faults.stop_controller(lab.fabric, args.node)
        print(f"{args.node}: " + (f"killed (SIGKILL, pid {', '.join(map(str, killed))})"
                                  if killed else "was not running"))
        return 0
    killed = faults.stop_node(lab.fabric, args.node)
    print(f"node {args.node}: " + (f"ovsdb-server and ovs-vswitchd killed (SIGKILL, pid "
                                   f"{', '.join(map(str, killed))})" if killed else
                                   "its Open vSwitch was not running"))
    return 0


def cmd_lab_start(args):
    from tenantnet.lab import faults
    lab = _lab(args)
    if faults.is_controller(args.node):
        pid = faults.start_controller(lab.fabric, args.node)
        if args.node == "controller":
            lab.wait_api(args.timeout)
            print(f"controller: started again (pid {pid}), its API answers and it is ready")
        else:
            print(f"{args.node}: started again (pid {pid}), same command line")
        return 0
    pids = faults.start_node(lab.fabric, args.node)
    print(f"node {args.node}: ovsdb-server and ovs-vswitchd started (pid "
          f"{', '.join(str(pids[d]) for d in faults.DAEMONS)}), set up again")
    return 0


def cmd_lab_link(args):
    from tenantnet.lab import faults
    up = args.state == "up"
    ifaces = faults.set_link(_lab(args).fabric, args.node, args.link, up)
    print(f"node {args.node}: {args.link} link {'restored' if up else 'cut'} "
          f"({', '.join(ifaces)} {'up' if up else 'down'} in the fabric)")
    return 0


def print_matrix(m):
    names = m["names"]
    ok = {(r["src"], r["dst"]): r for r in m["rows"]}
    width = max(len(n) for n in names) + 1
    print("layer-2 reachability (row sends a unicast frame to column's MAC); "
          "✓ delivered, · not delivered, P = IP ping also answered")
    print(" " * width + " ".join(f"{i:>3}" for i in range(len(names))))
    for i, a in enumerate(names):
        cells = []
        for b in names:
            if a == b:
                cells.append("  -")
                continue
            r = ok[(a, b)]
            cells.append("  " + ("P" if r["ping"] else "✓") if r["unicast"] else "  ·")
        print(f"{a:<{width}}" + " ".join(cells) + f"   {i}: {m['networks'][a]}")
    bad = [r for r in m["rows"] if r["unicast"] != r["same_network"] or
           r["broadcast"] != r["same_network"] or (r["same_network"] and not r["ping"])]
    if bad:
        print(f"UNEXPECTED: {len(bad)} pairs differ from 'reachable iff same network'")
        for r in bad[:10]:
            print(f"  {r['src']} -> {r['dst']}: {r}")
        return 1
    print("as expected: every pair in the same network reaches, no pair across networks does")
    return 0


def cmd_lab_matrix(args):
    m = _lab(args).matrix()
    if args.json:
        print_json(m)
        return 0
    return print_matrix(m)


def cmd_lab_demo(args):
    """The main job until the experiment module exists: up, matrix, down."""
    args.keep_on_failure = False
    lab = _lab(args)
    try:
        cmd_lab_up(args)
        return print_matrix(lab.matrix())
    finally:
        lab.down()
        print(f"lab '{args.prefix}' torn down")


# -- vm -------------------------------------------------------------------------------
def api_target(args):
    """(lab or None, ApiClient) for `vm`, `function` and `chain`: in a lab the VM's (or the
    function's) namespace is created too; otherwise only the API is called."""
    from tenantnet.lab.lab import Lab
    if args.api:
        from tenantnet.controller.client import ApiClient
        return None, ApiClient(args.api, token=read_token(args))
    lab = Lab(prefix=args.prefix)
    if lab.is_up():
        return lab, lab.api()
    env = os.environ.get("TENANTNET_API")
    if env:
        from tenantnet.controller.client import ApiClient
        return None, ApiClient(env, token=read_token(args))
    raise TenantnetError(f"no lab with prefix {args.prefix!r} is up and no --api given "
                         "(e.g. --api http://198.18.0.1:8080 or unix:/path/api.sock)")


def on_target(args, method, *call_args, **kwargs):
    """*method* ("add_vm", "del_function", ...) called on the lab when one is up (it makes
    or removes the namespace too), else on the API."""
    lab, api = api_target(args)
    return getattr(api if lab is None else lab, method)(*call_args, **kwargs)


def print_record(args, rec, line):
    """*rec* as JSON with --json, else the line line(rec). Returns 0 (the exit status)."""
    if args.json:
        print_json(rec)
    else:
        print(line(rec))
    return 0


def print_records(args, method, line, after=None):
    """The API's list *method* ("list_vms", ...) as JSON with --json, else one line(record)
    per record, then after(api) when given. Returns 0 (the exit status)."""
    _, api = api_target(args)
    records = getattr(api, method)()
    if args.json:
        print_json(records)
        return 0
    for r in records:
        print(line(r))
    if after is not None:
        after(api)
    return 0


def timing(rec):
    """How long the controller took to realise *rec* (an API answer with `timings`)."""
    t = rec.get("timings", {})
    return (f"realised in {t.get('total_ms', 0):.1f} ms (OVSDB {t.get('ovsdb_ms', 0):.1f}, "
            f"OpenFlow {t.get('openflow_ms', 0):.1f})")


def cmd_vm_add(args):
    rec = on_target(args, "add_vm", args.name, args.network, args.node, mac=args.mac,
                    ip=args.ip)
    return print_record(args, rec, lambda r: (
        f"{r['name']}: {r['network']} on {r['node']}, {r['mac']} {r['ip']} — {timing(r)}; "
        f"{'new bridges' if r.get('bridges_created') else 'existing bridges'}"))


def cmd_vm_del(args):
    rec = on_target(args, "del_vm", args.name)
    print(f"{rec['name']}: removed from {rec['node']} ({rec['network']})")
    return 0


def cmd_vm_list(args):
    return print_records(
        args, "list_vms",
        lambda v: f"{v['name']:12} {v['network']:20} {v['node']:10} {v['mac']} {v['ip']:15} "
                  f"({v.get('source', '')})",
        after=lambda api: print_node_states(api.health().get("node_states", [])))


def print_node_states(states):
    """One line for the nodes, as the controller sees them, and one per node not up."""
    if not states:
        return
    print("nodes: " + ", ".join(f"{s['node']} {s['state']}" for s in states))
    for s in states:
        if s["state"] != "up":
            print(f"  {s['node']} {s['state']} since {s['since']}: {s['reason']}")


def add_lab_commands(sub):
    """`lab up|down|status|exec|matrix|demo` under *sub*."""
    lab = sub.add_parser("lab", help="the one-machine lab").add_subparsers(dest="lab_cmd",
                                                                           required=True)
    for name, func, helptext in (("up", cmd_lab_up, "build a lab from a config"),
                                 ("demo", cmd_lab_demo, "up, reachability matrix, down")):
        c = lab.add_parser(name, help=helptext)
        c.add_argument("-c", "--config", required=True)
        c.add_argument("--timeout", type=float, default=120.0)
        c.add_argument("--keep-on-failure", action="store_true",
                       help="leave a failed lab up for inspection")
        c.add_argument("--nodes", choices=("emulated", "vm"),
                       help="emulated: namespaces with userspace OVS (default); vm: QEMU VMs "
                            "with the kernel datapath (default: the config's lab.nodes)")
        c.set_defaults(func=func)
    c = lab.add_parser("down", help="remove everything the lab made (safe to repeat)")
    c.set_defaults(func=cmd_lab_down)
    c = lab.add_parser("status", help="nodes and VMs of the lab")
    c.add_argument("--json", action="store_true")
    c.set_defaults(func=cmd_lab_status)
    c = lab.add_parser("exec", help="run a command in a VM's namespace")
    c.add_argument("vm")
    c.add_argument("cmd", nargs=argparse.REMAINDER)
    c.set_defaults(func=cmd_lab_exec)
    c = lab.add_parser("node", help="run a command on a node (in its namespace, or on its "
                                    "host over SSH), like `vagrant ssh -c`")
    c.add_argument("node")
    c.add_argument("cmd", nargs=argparse.REMAINDER)
    c.set_defaults(func=cmd_lab_node)
    c = lab.add_parser("stop", help="crash a node's Open vSwitch (SIGKILL to its "
                                    "ovsdb-server and ovs-vswitchd), or a controller "
                                    "(`controller`, `tenant:NAME`; SIGKILL by pid)")
    c.add_argument("node", metavar="NODE|controller|tenant:NAME")
    c.set_defaults(func=cmd_lab_stop)
    c = lab.add_parser("start", help="start a stopped node's Open vSwitch again (and its "
                                     "set-up), or a controller with its recorded command line")
    c.add_argument("node", metavar="NODE|controller|tenant:NAME")
    c.add_argument("--timeout", type=float, default=90.0,
                   help="seconds to wait for the provider's controller to be ready")
    c.set_defaults(func=cmd_lab_start)
    c = lab.add_parser("link", help="cut or restore a node's management or transport link")
    c.add_argument("state", choices=("down", "up"))
    c.add_argument("node")
    c.add_argument("link", nargs="?", default="transport", choices=("management", "transport"),
                   help="default: transport")
    c.set_defaults(func=cmd_lab_link)
    c = lab.add_parser("matrix", help="reachability between every pair of endpoints")
    c.add_argument("--json", action="store_true")
    c.set_defaults(func=cmd_lab_matrix)
    for c in lab.choices.values():
        c.add_argument("--prefix", default=DEFAULT_PREFIX, help="lab name prefix (default tn)")
    from tenantnet.cli.image import add_image_commands
    add_image_commands(lab)                    # lab image build|box (node VM image)



def add_vm_commands(sub):
    """`vm add|del|list` under *sub*."""
    vm = sub.add_parser("vm", help="place VMs at runtime").add_subparsers(dest="vm_cmd",
                                                                          required=True)
    c = vm.add_parser("add")
    c.add_argument("name")
    c.add_argument("--network", required=True, help="TENANT/NETWORK")
    c.add_argument("--node", required=True)
    c.add_argument("--mac")
    c.add_argument("--ip")
    c.add_argument("--json", action="store_true")
    c.set_defaults(func=cmd_vm_add)
    c = vm.add_parser("del")
    c.add_argument("name")
    c.set_defaults(func=cmd_vm_del)
    c = vm.add_parser("list")
    c.add_argument("--json", action="store_true")
    c.set_defaults(func=cmd_vm_list)
    for c in vm.choices.values():
        add_target_options(c)


def add_target_options(parser):
    """The options of api_target(): which lab, or which API and credential."""
    parser.add_argument("--prefix", default=DEFAULT_PREFIX)
    parser.add_argument("--api", help="API endpoint (http://HOST:PORT or unix:PATH)")
    parser.add_argument("--token", help="API credential (default: $TENANTNET_TOKEN)")
    parser.add_argument("--token-file", help="a file holding the API credential")
