"""The `tenantnet` command line.

  tenantnet check-config FILE
  tenantnet controller -c FILE [OpenFlow, API and logging options]
  tenantnet lab up -c FILE | down | status [--json] | exec VM -- CMD | matrix | demo -c FILE
  tenantnet vm add NAME --network TENANT/NET --node NODE [--mac M] [--ip IP] | del NAME | list

Every failure is one clear line on stderr and a non-zero exit, never a traceback."""

import argparse
import os
import sys

from tenantnet.cli.common import read_token
from tenantnet.errors import TenantnetError


# -- check-config -------------------------------------------------------------------
def cmd_check_config(args):
    from tenantnet.model import config, equations
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
def cmd_controller(args):
    if args.tenant:
        return _tenant_controller(args)
    if not args.config:
        raise TenantnetError("controller: give -c FILE (the provider's controller) or "
                             "--tenant NAME --api URL (a tenant's own controller)")
    from tenantnet.model import config
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
    from tenantnet.controller.runner import run_controller
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
    from tenantnet.controller.tenant import tenant_core_factory
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
    tapp.CORE_FACTORY = tenant_core_factory(args.tenant, args.api, token=read_token(args),
                                            poll_interval=args.poll_interval, extra_flows=extra,
                                            cache=args.cache)
    return _run_os_ken(args, "tenant controller")


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

    from tenantnet.cli.experiment import add_experiment_commands
    from tenantnet.cli.lab import add_lab_commands, add_vm_commands
    from tenantnet.cli.node import add_node_commands
    add_lab_commands(sub)
    add_experiment_commands(sub)
    add_node_commands(sub)
    add_vm_commands(sub)

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
