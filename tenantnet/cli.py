"""The `tenantnet` command line.

  tenantnet check-config FILE
  tenantnet controller -c FILE [OpenFlow, API and logging options]
  tenantnet lab up -c FILE | down | status [--json] | exec VM -- CMD | matrix | demo -c FILE
  tenantnet vm add NAME --network TENANT/NET --node NODE [--mac M] [--ip IP] | del NAME | list

Every failure is one clear line on stderr and a non-zero exit, never a traceback."""

import argparse
import json
import os
import sys

from tenantnet.errors import TenantnetError

DEFAULT_PREFIX = os.environ.get("TENANTNET_LAB_PREFIX", "tn")


def _print_json(data):
    print(json.dumps(data, indent=2, sort_keys=True))


# -- check-config -------------------------------------------------------------------
def cmd_check_config(args):
    from tenantnet import config, equations
    topo = config.load_file(args.file)
    print(f"{args.file}: OK — mode {topo.mode}, {len(topo.compute_nodes())} compute + "
          f"{len(topo.network_nodes())} network nodes, {len(topo.tenants())} tenants, "
          f"{len(topo.networks())} networks, {len(topo.vms())} VMs")
    print(f"  bridges (eq. 2): {equations.total_bridges(topo)}, "
          f"tunnels: {equations.total_tunnels(topo)} (bound, eq. 4: "
          f"{equations.total_tunnel_bound(topo)})")
    for vm in sorted(topo.vms().values(), key=lambda v: v.name):
        print(f"  {vm.name:12} {vm.network:20} {vm.node:10} {vm.mac} {vm.ip}")
    return 0


# -- controller ---------------------------------------------------------------------
def _read_token(args):
    if args.token_file:
        try:
            with open(args.token_file) as fh:
                return fh.read().strip()
        except OSError as exc:
            raise TenantnetError(f"cannot read {args.token_file}: {exc.strerror}") from None
    return args.token or os.environ.get("TENANTNET_TOKEN")


def cmd_controller(args):
    if args.tenant:
        return _tenant_controller(args)
    if not args.config:
        raise TenantnetError("controller: give -c FILE (the provider's controller) or "
                             "--tenant NAME --api URL (a tenant's own controller)")
    from tenantnet import config
    config.load_file(args.config)          # refuse a bad config before anything starts
    os.environ["TENANTNET_CONFIG"] = os.path.abspath(args.config)
    if args.api_socket:
        os.environ["TENANTNET_API_SOCKET"] = args.api_socket
    if args.api_listen:
        os.environ["TENANTNET_API_LISTEN"] = args.api_listen
    if args.node_netns:
        os.environ["TENANTNET_NODE_NETNS"] = args.node_netns
    if args.ovsdb_remote:
        os.environ["TENANTNET_OVSDB_REMOTES"] = ",".join(args.ovsdb_remote)
    return _run_os_ken(args, "controller")


def _run_os_ken(args, what):
    """Run the os-ken app in the foreground with the command line's OpenFlow options."""
    from tenantnet.ofrunner import run_controller
    try:
        run_controller(listen_host=args.listen_host, listen_port=args.listen_port,
                       echo_interval=args.echo_interval, echo_max_unreplied=args.echo_max_unreplied,
                       log_level=args.log_level)
    except RuntimeError as exc:
        raise TenantnetError(f"{what} stopped: {exc}") from None
    return 0


def _tenant_controller(args):
    if not args.api:
        raise TenantnetError("controller --tenant: give --api URL, the provider's API "
                             "(e.g. http://198.18.0.1:8080)")
    from tenantnet import app as tapp
    from tenantnet.tenant import tenant_core_factory
    extra = None
    if args.app:
        import importlib
        try:
            module = importlib.import_module(args.app)
        except ImportError as exc:
            raise TenantnetError(f"cannot load app {args.app}: {exc}") from None
        extra = getattr(module, "extra_flows", None)
        if extra is None:
            raise TenantnetError(f"{args.app} has no extra_flows(topo, node, bridge)")
    tapp.CORE_FACTORY = tenant_core_factory(args.tenant, args.api, token=_read_token(args),
                                            poll_interval=args.poll_interval, extra_flows=extra,
                                            cache=args.cache)
    return _run_os_ken(args, "tenant controller")


# -- lab ------------------------------------------------------------------------------
def _lab(args):
    from tenantnet.lab.lab import Lab
    return Lab(prefix=args.prefix)


def _progress(text):
    print(f"  · {text}", flush=True)


def cmd_lab_up(args):
    lab = _lab(args)
    try:
        result = lab.up(args.config, timeout=args.timeout, progress=_progress)
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
        _print_json(status)
        return 0
    c = status["controller"]
    print(f"lab '{status['prefix']}' ({status['state_dir']}); controller pid {c['pid']} "
          f"{'alive' if c['alive'] else 'NOT RUNNING'}, API {c['api']}")
    for name, n in sorted(status["nodes"].items()):
        print(f"  node {name:10} {n['role']:8} ns {n['namespace']:14} {n['ovsdb_remote']:24} "
              f"bridges: {' '.join(n['bridges'])}")
    for name, v in sorted(status["vms"].items()):
        print(f"  vm   {name:10} on {v['node']:10} {v['network'] or '?':18} {v['mac']} {v['ip']} "
              f"ns {v['namespace']}")
    return 0


def cmd_lab_exec(args):
    cmd = args.cmd[1:] if args.cmd and args.cmd[0] == "--" else args.cmd
    if not cmd:
        raise TenantnetError("lab exec: give a command after --, e.g. "
                             "tenantnet lab exec web1 -- ping -c1 10.0.0.3")
    return _lab(args).exec(args.vm, cmd).returncode


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
        _print_json(m)
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
def _vm_target(args):
    """In a lab the VM namespace is created too; otherwise only the API is called."""
    from tenantnet.lab.lab import Lab
    if args.api:
        from tenantnet.client import ApiClient
        return None, ApiClient(args.api, token=_read_token(args))
    lab = Lab(prefix=args.prefix)
    if lab.is_up():
        return lab, lab.api()
    env = os.environ.get("TENANTNET_API")
    if env:
        from tenantnet.client import ApiClient
        return None, ApiClient(env, token=_read_token(args))
    raise TenantnetError(f"no lab with prefix {args.prefix!r} is up and no --api given "
                         "(e.g. --api http://198.18.0.1:8080 or unix:/path/api.sock)")


def cmd_vm_add(args):
    lab, api = _vm_target(args)
    if lab is not None:
        rec = lab.add_vm(args.name, args.network, args.node, mac=args.mac, ip=args.ip)
    else:
        rec = api.add_vm(args.name, args.network, args.node, mac=args.mac, ip=args.ip)
    if args.json:
        _print_json(rec)
    else:
        t = rec.get("timings", {})
        print(f"{rec['name']}: {rec['network']} on {rec['node']}, {rec['mac']} {rec['ip']} — "
              f"realised in {t.get('total_ms', 0):.1f} ms (OVSDB {t.get('ovsdb_ms', 0):.1f}, "
              f"OpenFlow {t.get('openflow_ms', 0):.1f}); "
              f"{'new bridges' if rec.get('bridges_created') else 'existing bridges'}")
    return 0


def cmd_vm_del(args):
    lab, api = _vm_target(args)
    rec = lab.del_vm(args.name) if lab is not None else api.del_vm(args.name)
    print(f"{rec['name']}: removed from {rec['node']} ({rec['network']})")
    return 0


def cmd_vm_list(args):
    _, api = _vm_target(args)
    vms = api.list_vms()
    if args.json:
        _print_json(vms)
        return 0
    for v in vms:
        print(f"{v['name']:12} {v['network']:20} {v['node']:10} {v['mac']} {v['ip']:15} "
              f"({v.get('source', '')})")
    return 0


def build_parser():
    p = argparse.ArgumentParser(prog="tenantnet", description=__doc__.split("\n")[0])
    sub = p.add_subparsers(dest="command", required=True)

    c = sub.add_parser("check-config", help="validate a config file")
    c.add_argument("file")
    c.set_defaults(func=cmd_check_config)

    c = sub.add_parser("controller", help="run the os-ken controller in the foreground")
    c.add_argument("-c", "--config", help="the provider's config (not with --tenant)")
    c.add_argument("--tenant", help="run as this tenant's own controller (reads --api)")
    c.add_argument("--api", help="with --tenant: the provider's API, http://HOST:PORT")
    c.add_argument("--token", help="with --tenant: the tenant's API credential")
    c.add_argument("--token-file", help="with --tenant: a file holding the credential")
    c.add_argument("--poll-interval", type=float, default=0.2,
                   help="with --tenant: seconds between placement reads (default 0.2)")
    c.add_argument("--app", help="with --tenant: a module with extra_flows(topo, node, "
                                 "bridge), e.g. ryu_apps.tenant_acl")
    c.add_argument("--cache", help="with --tenant: keep the last placement read in this file "
                                   "and start from it when the provider's API is down")
    c.add_argument("--listen-host", default="0.0.0.0", help="OpenFlow listen address")
    c.add_argument("--listen-port", type=int, default=6653, help="OpenFlow listen port")
    c.add_argument("--echo-interval", type=float, default=1.0,
                   help="seconds between OpenFlow echo requests (default 1)")
    c.add_argument("--echo-max-unreplied", type=int, default=3,
                   help="unanswered echoes before a switch is declared dead (default 3)")
    c.add_argument("--api-listen", help="HOST:PORT for the JSON HTTP API")
    c.add_argument("--api-socket", help="unix socket path for the JSON HTTP API")
    c.add_argument("--node-netns", help="NODE=NETNS[:OVS_RUNDIR],... run node-side steps via ip netns "
                        "(the lab)")
    c.add_argument("--ovsdb-remote", action="append", default=[],
                   help="NODE=REMOTE, e.g. compute1=unix:/run/x/db.sock (default: "
                        "tcp:MANAGEMENT_IP:OVSDB_PORT)")
    c.add_argument("--log-level", default="INFO")
    c.set_defaults(func=cmd_controller)

    lab = sub.add_parser("lab", help="the one-machine lab").add_subparsers(dest="lab_cmd",
                                                                           required=True)
    for name, func, helptext in (("up", cmd_lab_up, "build a lab from a config"),
                                 ("demo", cmd_lab_demo, "up, reachability matrix, down")):
        c = lab.add_parser(name, help=helptext)
        c.add_argument("-c", "--config", required=True)
        c.add_argument("--timeout", type=float, default=120.0)
        c.add_argument("--keep-on-failure", action="store_true",
                       help="leave a failed lab up for inspection")
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
    c = lab.add_parser("matrix", help="reachability between every pair of endpoints")
    c.add_argument("--json", action="store_true")
    c.set_defaults(func=cmd_lab_matrix)
    for c in lab.choices.values():
        c.add_argument("--prefix", default=DEFAULT_PREFIX, help="lab name prefix (default tn)")

    from tenantnet.experiment.cli import add_experiment_commands
    from tenantnet.node_cli import add_node_commands
    add_experiment_commands(sub)
    add_node_commands(sub)

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
        c.add_argument("--prefix", default=DEFAULT_PREFIX)
        c.add_argument("--api", help="API endpoint (http://HOST:PORT or unix:PATH)")
        c.add_argument("--token", help="API credential (default: $TENANTNET_TOKEN)")
        c.add_argument("--token-file", help="a file holding the API credential")
    return p


def main(argv=None):
    args = build_parser().parse_args(argv)
    try:
        return args.func(args) or 0
    except TenantnetError as exc:
        print(f"tenantnet: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("tenantnet: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
