"""`tenantnet node ...` and `tenantnet cluster ...`: hooked into tenantnet/cli/main.py by
add_node_commands (also runnable as `python -m tenantnet.cli.node ...`).

  tenantnet node bootstrap --role compute|network --transport-interface IF
        --transport-ip IP/PREFIX --management-ip IP [--ovsdb-port 6640]
        [--security tls|insecure] [--tls-dir /etc/tenantnet/pki/node]
        [--datapath system|netdev] [--system-id NAME] [--db unix:/var/run/openvswitch/db.sock]
  tenantnet node addresses [--interface ex-NAME] [--db ...]
        (give ex- endpoints their addresses from OVSDB: the node's half of the
        controller's work; the Vagrant lab runs it from a udev rule)
  tenantnet cluster up [-c /etc/tenantnet/config.yaml] [--api URL] [--node-exec NODE=SPEC]
        [--identity KEY] [--ssh-option K=V] [--python PATH] [--prefix tn]
  tenantnet cluster status|matrix|down [--prefix tn]
        (then `tenantnet vm add|del|list --prefix tn` makes VM namespaces on the hosts,
        and `tenantnet lab exec VM --prefix tn -- CMD` runs commands in them)

Errors are TenantnetError subclasses: tenantnet.cli.main prints them as one line."""

import argparse
import json
import sys

from tenantnet.errors import TenantnetError

DEFAULT_DB = "unix:/var/run/openvswitch/db.sock"
DEFAULT_CLUSTER_CONFIG = "/etc/tenantnet/config.yaml"


def _host_tools(args):
    from tenantnet.node.hostops import ExecHost
    from tenantnet.node.ovscli import local_ofctl, local_vsctl
    from tenantnet.node.hostexec import LocalExecutor
    ex = LocalExecutor()
    return local_vsctl(db=args.db, executor=ex), local_ofctl(executor=ex), ExecHost(ex)


def cmd_node_bootstrap(args):
    from tenantnet.node.bootstrap import bootstrap_node
    vsctl, ofctl, host = _host_tools(args)
    steps = bootstrap_node(vsctl, args.role, args.transport_interface, args.transport_ip,
                           args.management_ip, ovsdb_port=args.ovsdb_port,
                           datapath=args.datapath, system_id=args.system_id,
                           hostname=args.hostname, host=host, ofctl=ofctl,
                           check=not args.no_check, arp_sysctls=not args.no_arp_sysctls,
                           tls_dir=None if args.security == "insecure" else args.tls_dir,
                           ovsdb_pidfile=args.ovsdb_pidfile)
    if args.json:
        print(json.dumps([s.as_dict() for s in steps], indent=2))
        return 0
    changed = sum(s.changed for s in steps)
    print(f"node bootstrap ({args.role}, datapath {args.datapath}): "
          f"{changed} change(s)" + ("" if changed else ", already bootstrapped"))
    for s in steps:
        print(f"  {s}")
    return 0


def cmd_node_addresses(args):
    from tenantnet.node.exaddresses import apply_endpoint_addresses
    vsctl, _, host = _host_tools(args)
    applied = apply_endpoint_addresses(vsctl, host.set_address, only=args.interface)
    if args.interface and args.interface not in applied:
        print(f"{args.interface}: no address recorded for it in OVSDB (not an ex- endpoint?)")
        return 0
    for name, cidr in sorted(applied.items()):
        print(f"{name}: {cidr}")
    return 0


def _pairs(items, what):
    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key or not value:
            raise TenantnetError(f"{what} {item!r}: expected KEY=VALUE")
        out[key] = value
    return out


def _remote_lab(args):
    from tenantnet.lab.remote import RemoteLab
    return RemoteLab(prefix=args.prefix)


def cmd_cluster_up(args):
    from tenantnet.cli.common import progress
    lab = _remote_lab(args)
    result = lab.up(args.config, api=args.api, timeout=args.timeout, progress=progress,
                    node_exec=_pairs(args.node_exec, "--node-exec"), identity=args.identity,
                    ssh_options=_pairs(args.ssh_option, "--ssh-option"), python=args.python,
                    api_ca=args.api_ca)
    print(f"cluster '{args.prefix}' recorded: {len(result['nodes'])} hosts, API "
          f"{lab.api_endpoint}, {len(result['reachable_after_s'])} VM(s) reachable "
          f"({result['seconds']:.1f}s)")
    print(f"next: tenantnet vm add NAME --network TENANT/NET --node NODE --prefix {args.prefix}"
          f" | tenantnet cluster matrix --prefix {args.prefix}")
    return 0


def cmd_cluster_down(args):
    lab = _remote_lab(args)
    lab.down()
    print(f"cluster '{args.prefix}': every VM namespace it made is gone (hosts untouched; "
          "VMs placed through the API stay placed in the controller until `vm del`)")
    return 0


def cmd_cluster_status(args):
    from tenantnet.cli.lab import cmd_lab_status
    return cmd_lab_status(args)


def cmd_cluster_matrix(args):
    from tenantnet.cli.lab import cmd_lab_matrix
    return cmd_lab_matrix(args)


def add_node_commands(subparsers):
    """Add `node bootstrap|addresses` and `cluster up|status|matrix|down` to tenantnet's
    top-level *subparsers*."""
    from tenantnet.node.bootstrap import DATAPATHS, ROLES
    from tenantnet.node.tls import DEFAULT_DIR as TLS_DIR, DEFAULT_PIDFILE as TLS_PIDFILE
    node = subparsers.add_parser("node", help="prepare this host as a tenantnet node")
    sub = node.add_subparsers(dest="node_cmd", required=True)

    c = sub.add_parser("bootstrap", help="br-int, br-tun (+ br-ex), system-id, OVSDB for the "
                                         "controller (idempotent)")
    c.add_argument("--role", required=True, choices=ROLES)
    c.add_argument("--transport-interface", required=True, metavar="IF",
                   help="the NIC on the transport network (becomes br-tun's uplink)")
    c.add_argument("--transport-ip", required=True, metavar="IP/PREFIX",
                   help="this node's transport address (put on br-tun's LOCAL port)")
    c.add_argument("--management-ip", required=True, metavar="IP",
                   help="this node's management address (OVSDB listens there)")
    c.add_argument("--ovsdb-port", type=int, default=6640)
    c.add_argument("--datapath", choices=DATAPATHS, default="system",
                   help="system: the kernel module (real hosts, default); netdev: userspace")
    c.add_argument("--system-id", help="Open_vSwitch external_ids:system-id (default: the one "
                                       "already set, else the hostname)")
    c.add_argument("--hostname", help="external_ids:hostname (default: this host's name)")
    c.add_argument("--db", default=DEFAULT_DB, help=f"OVSDB of this host (default {DEFAULT_DB})")
    c.add_argument("--no-check", action="store_true", help="skip the prerequisite checks")
    c.add_argument("--no-arp-sysctls", action="store_true",
                   help="leave net.ipv4.conf.{all,default}.arp_ignore/arp_announce alone")
    c.add_argument("--security", choices=("tls", "insecure"), default="tls",
                   help="tls (default): OVSDB on pssl: for the provider only, bridges on ssl:; "
                        "insecure: plain ptcp: (a warning)")
    c.add_argument("--tls-dir", default=TLS_DIR, metavar="DIR",
                   help="this node's certificates, as `tenantnet pki node NAME` makes them "
                        f"(default {TLS_DIR})")
    c.add_argument("--ovsdb-pidfile", default=TLS_PIDFILE, metavar="FILE",
                   help=f"ovsdb-server's pidfile, to check its CA (default {TLS_PIDFILE})")
    c.add_argument("--json", action="store_true", help="print the steps as JSON")
    c.set_defaults(func=cmd_node_bootstrap)

    c = sub.add_parser("addresses", help="give ex- endpoints the addresses their OVSDB ports "
                                         "record")
    c.add_argument("--interface", help="only this endpoint (e.g. from a udev rule: %%k)")
    c.add_argument("--db", default=DEFAULT_DB)
    c.set_defaults(func=cmd_node_addresses)

    cluster = subparsers.add_parser("cluster", help="VM namespaces on the hosts of a "
                                                    "multi-node lab (run on the controller)")
    csub = cluster.add_subparsers(dest="cluster_cmd", required=True)
    c = csub.add_parser("up", help="record the cluster, check its hosts over SSH, make the "
                                   "config's VM namespaces")
    c.add_argument("-c", "--config", default=DEFAULT_CLUSTER_CONFIG,
                   help=f"the controller's config (default {DEFAULT_CLUSTER_CONFIG})")
    c.add_argument("--api", help="controller API (default https://MANAGEMENT_IP:API_PORT; "
                                 "http:// with security: insecure)")
    c.add_argument("--api-ca", metavar="FILE",
                   help="the CA file of an https:// API (default $TENANTNET_API_CA, else "
                        "/etc/tenantnet/pki/provider/api-ca.pem when it exists)")
    c.add_argument("--node-exec", action="append", default=[], metavar="NODE=SPEC",
                   help="how to reach NODE: ssh:[USER@]HOST[:PORT], local (default "
                        "ssh:root@MANAGEMENT_IP)")
    c.add_argument("--identity", help="SSH private key for the hosts")
    c.add_argument("--ssh-option", action="append", default=[], metavar="KEY=VALUE",
                   help="extra ssh -o option, e.g. UserKnownHostsFile=/dev/null")
    c.add_argument("--python", default="/opt/tenantnet-venv/bin/python",
                   help="Python with tenantnet on the hosts")
    c.add_argument("--timeout", type=float, default=120.0)
    c.set_defaults(func=cmd_cluster_up)
    for name, func, helptext in (
            ("status", cmd_cluster_status, "hosts and VM namespaces"),
            ("matrix", cmd_cluster_matrix, "layer-2 + ping reachability between endpoints"),
            ("down", cmd_cluster_down, "remove every VM namespace the cluster made")):
        c = csub.add_parser(name, help=helptext)
        if name in ("status", "matrix"):
            c.add_argument("--json", action="store_true")
        c.set_defaults(func=func)
    for c in csub.choices.values():
        c.add_argument("--prefix", default="tn", help="lab name prefix (default tn)")
    return node


def main(argv=None):
    p = argparse.ArgumentParser(prog="tenantnet", description="tenantnet node commands")
    add_node_commands(p.add_subparsers(dest="command", required=True))
    args = p.parse_args(argv)
    try:
        return args.func(args) or 0
    except TenantnetError as exc:
        print(f"tenantnet: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
