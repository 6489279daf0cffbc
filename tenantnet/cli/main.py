"""The `tenantnet` command line.

  tenantnet check-config FILE
  tenantnet controller -c FILE [OpenFlow, API and logging options]
  tenantnet lab up -c FILE | down | status [--json] | exec VM -- CMD | matrix | demo -c FILE
  tenantnet bench flows|placement|resync|bulk [--json]
  tenantnet pki init|node|tenant|show
  tenantnet vm add NAME --network TENANT/NET --node NODE [--mac M] [--ip IP] | del NAME | list
  tenantnet function add NAME --network TENANT/NET --node NODE --kind KIND [...] | del | list
  tenantnet chain add NAME --network TENANT/NET --from VM --to VM|any --through FN,... | del | list

Every failure is one clear line on stderr and a non-zero exit, never a traceback."""

import argparse
import logging
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
    if not topo.controller.tls:
        print("  WARNING: security: insecure: OVSDB, OpenFlow and the API are plain TCP")
    print(f"  bridges (eq. 2): {equations.total_bridges(topo)}, "
          f"tunnels: {equations.total_tunnels(topo)} (bound, eq. 4: "
          f"{equations.total_tunnel_bound(topo)})")
    for vm in sorted(topo.vms().values(), key=lambda v: v.name):
        print(f"  {vm.name:12} {vm.network:20} {vm.node:10} {vm.mac} {vm.ip}")
    return 0


# -- controller ---------------------------------------------------------------------
def controller_argv(args):
    """`tenantnet controller -c FILE ...` as the equivalent `ryu-manager` arguments."""
    argv = ["tenantnet.app", "--tenantnet-config", os.path.abspath(args.config)]
    if args.config_file:
        argv += [x for f in args.config_file for x in ("--config-file", f)]
    for flag, value in (("--ofp-listen-host", args.listen_host),
                        ("--ofp-tcp-listen-port", args.listen_port),
                        ("--tenantnet-echo-interval", args.echo_interval),
                        ("--tenantnet-echo-max-unreplied", args.echo_max_unreplied),
                        ("--tenantnet-api-listen", args.api_listen),
                        ("--tenantnet-api-socket", args.api_socket),
                        ("--tenantnet-api-token-file", args.api_token_file),
                        ("--tenantnet-pki-dir", args.pki_dir)):
        if value is not None:
            argv += [flag, str(value)]
    if args.ovsdb_remote:
        pairs = dict(_pair(item, "--ovsdb-remote") for item in args.ovsdb_remote)
        argv += ["--tenantnet-ovsdb-remote", ",".join(f"{k}:{v}" for k, v in pairs.items())]
    if args.node_netns:
        pairs = dict(_pair(item, "--node-netns") for item in args.node_netns.split(","))
        argv += ["--tenantnet-node-netns", ",".join(
            f"{k}:{v.replace(':', '@', 1)}" for k, v in pairs.items())]
    return argv + ["--default-log-level", str(log_level(args))]


def log_level(args):
    level = logging.getLevelName(str(args.log_level).upper())
    if not isinstance(level, int):
        raise TenantnetError(f"--log-level {args.log_level!r}: expected DEBUG, INFO, WARNING "
                             "or ERROR")
    return level


def _pair(item, flag):
    key, sep, value = item.partition("=")
    if not sep or not key or not value:
        raise TenantnetError(f"{flag} {item!r}: expected NODE=VALUE")
    return key, value


def cmd_controller(args):
    """A front on `ryu-manager tenantnet.app`: the same code, flags for options."""
    if args.tenant:
        return _tenant_controller(args)
    if not args.config:
        raise TenantnetError("controller: give -c FILE (the provider's controller) or "
                             "--tenant NAME --api URL (a tenant's own controller)")
    from tenantnet.controller import ryumanager
    from tenantnet.model import config
    config.load_file(args.config)          # refuse a bad config before anything starts
    return ryumanager.run(controller_argv(args))


def tenant_conf_text(args, token_file):
    """The [tenant_l2] section `tenantnet controller --tenant` hands to ryu_apps.tenant_l2,
    and with TLS the [DEFAULT] files os-ken listens with (its own, and the nodes' CA)."""
    lines = ["[DEFAULT]",
             f"echo_request_interval = {args.echo_interval or 1.0}",
             f"maximum_unreplied_echo_requests = {args.echo_max_unreplied or 3}"]
    ident = None
    if args.security == "tls":
        from tenantnet import pki
        ident = pki.Identity(os.path.abspath(args.tls_dir)).check("node", "api")
        lines += [f"ofp_ssl_listen_port = {args.listen_port or 6653}",
                  f"ctl_privkey = {ident.key}", f"ctl_cert = {ident.cert}",
                  f"ca_certs = {ident.ca('node')}"]
    lines += ["", "[tenant_l2]", f"tenant = {args.tenant}", f"api = {args.api}",
              f"poll_interval = {args.poll_interval}"]
    if ident is not None:
        lines.append(f"api_ca = {ident.ca('api')}")
    if token_file:
        lines.append(f"token_file = {token_file}")
    if args.cache:
        lines.append(f"cache = {os.path.abspath(args.cache)}")
    return "\n".join(lines) + "\n"


def _tenant_controller(args):
    """A front on `ryu-manager ryu_apps.tenant_l2 [--app ...] --config-file GENERATED`."""
    import tempfile
    if not args.api:
        raise TenantnetError("controller --tenant: give --api URL, the provider's API "
                             "(e.g. http://198.18.0.1:8080)")
    from tenantnet.controller import ryumanager
    token_file = os.path.abspath(args.token_file) if args.token_file else None
    with tempfile.TemporaryDirectory(prefix="tenantnet-tenant-") as tmp:
        token = None if token_file else read_token(args)
        if token:
            token_file = os.path.join(tmp, "token")
            fd = os.open(token_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w") as fh:
                fh.write(token)
        conf = os.path.join(tmp, "tenant.conf")
        with open(conf, "w") as fh:
            fh.write(tenant_conf_text(args, token_file))
        argv = ["ryu_apps.tenant_l2", *args.app]
        for f in args.config_file:        # the user's own files: [tenant_acl] pairs, ...
            argv += ["--config-file", f]
        argv += ["--config-file", conf]   # last: the flags of this command win
        tcp_port = args.listen_port if args.security == "insecure" else None
        for flag, value in (("--ofp-listen-host", args.listen_host),
                            ("--ofp-tcp-listen-port", tcp_port)):
            if value is not None:
                argv += [flag, str(value)]
        return ryumanager.run(argv + ["--default-log-level", str(log_level(args))])


TENANT_TLS_DIR = "/etc/tenantnet/pki/tenant"


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
    c.add_argument("--app", action="append", default=[],
                   help="with --tenant: another os-ken/Ryu app to run next to "
                        "ryu_apps.tenant_l2, e.g. ryu_apps.tenant_acl (repeatable)")
    c.add_argument("--cache", help="with --tenant: keep the last placement read in this file "
                                   "and start from it when the provider's API is down")
    c.add_argument("--listen-host", help="OpenFlow listen address (default 0.0.0.0)")
    c.add_argument("--listen-port", type=int, help="OpenFlow listen port (default 6653)")
    c.add_argument("--config-file", action="append", default=[], metavar="CONF",
                   help="oslo.config file(s) with [DEFAULT] and [tenantnet] options, as for "
                        "ryu-manager; the flags here override it")
    c.add_argument("--api-token-file", help="a file holding the provider's API token "
                                            "(default: controller.api_token of the config)")
    c.add_argument("--echo-interval", type=float, default=None,
                   help="seconds between OpenFlow echo requests (default 1)")
    c.add_argument("--echo-max-unreplied", type=int, default=None,
                   help="unanswered echoes before a switch is declared dead (default 3)")
    c.add_argument("--api-listen", help="HOST:PORT for the JSON HTTP API")
    c.add_argument("--api-socket", help="unix socket path for the JSON HTTP API")
    c.add_argument("--node-netns", help="NODE=NETNS[:OVS_RUNDIR],... run node-side steps via ip netns "
                        "(the lab)")
    c.add_argument("--ovsdb-remote", action="append", default=[],
                   help="NODE=REMOTE, e.g. compute1=unix:/run/x/db.sock (default: "
                        "tcp:MANAGEMENT_IP:OVSDB_PORT)")
    c.add_argument("--pki-dir", help="the PKI directory whose provider/ the controller uses "
                                     "with `security: tls` (default /etc/tenantnet/pki)")
    c.add_argument("--security", choices=("tls", "insecure"), default="tls",
                   help="with --tenant: tls (default): OpenFlow over TLS with the files in "
                        "--tls-dir, the API checked against its api-ca.pem; insecure: plain")
    c.add_argument("--tls-dir", default=TENANT_TLS_DIR,
                   help="with --tenant: the tenant's directory made by `tenantnet pki tenant "
                        f"NAME` (default {TENANT_TLS_DIR})")
    c.add_argument("--log-level", default="INFO")
    c.set_defaults(func=cmd_controller)

    from tenantnet.cli.bench import add_bench_commands
    from tenantnet.cli.experiment import add_experiment_commands
    from tenantnet.cli.lab import add_lab_commands, add_vm_commands
    from tenantnet.cli.node import add_node_commands
    from tenantnet.cli.nfv import add_nfv_commands
    from tenantnet.cli.pki import add_pki_commands
    add_lab_commands(sub)
    add_experiment_commands(sub)
    add_node_commands(sub)
    add_vm_commands(sub)
    add_nfv_commands(sub)
    add_bench_commands(sub)
    add_pki_commands(sub)

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
    except BrokenPipeError:
        return quiet_broken_pipe()


def quiet_broken_pipe():
    """The reader of our output went away (`tenantnet ... | head`): stop quietly, as a
    Unix tool killed by SIGPIPE would, and keep the interpreter's final flush of stdout
    from reporting it again."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    return 128 + 13                   # what the shell reports for SIGPIPE


if __name__ == "__main__":
    sys.exit(main())
