"""`tenantnet pki init|node|tenant|show`: the deployment's certificates (tenantnet.pki).

  tenantnet pki init   [--dir /etc/tenantnet/pki] [--address IP|NAME ...] [-c CONFIG]
  tenantnet pki node   NAME [--address IP ...] [--dir ...]
  tenantnet pki tenant NAME [--address IP ...] [--dir ...]
  tenantnet pki show   [--dir ...] [--json]

`init` takes the controller's management address from -c CONFIG (controller.management_ip)
and `node` the node's when -c is given. Needs only `cryptography`: also runnable as
`python3 -m tenantnet.cli.pki ...` from a checkout (the Vagrant host does so)."""

import argparse
import json
import os
import sys

from tenantnet import pki
from tenantnet.errors import TenantnetError


def _config_addresses(args, node=None):
    if not getattr(args, "config", None):
        return []
    from tenantnet.model import config
    topo = config.load_file(args.config)
    if node is None:
        return [topo.controller.management_ip]
    for n in topo.nodes():
        if n.name == node:
            return [n.management_ip]
    raise TenantnetError(f"{args.config}: no node {node!r} (nodes: "
                         f"{', '.join(n.name for n in topo.nodes())})")


def _said(ident, what):
    print(f"{what}: {ident.directory} (key.pem, cert.pem and the CA files it trusts)")


def cmd_init(args):
    ident = pki.init(args.dir, [*_config_addresses(args), *args.address], force=args.force)
    _said(ident, "provider")
    print(f"CAs: {os.path.join(os.path.abspath(args.dir), 'ca')} (keep the *.key files "
          "on this machine only)")
    return 0


def cmd_node(args):
    ident = pki.issue_node(args.dir, args.name,
                           [*_config_addresses(args, args.name), *args.address],
                           force=args.force)
    _said(ident, f"node {args.name}")
    print("  copy it to the node's /etc/tenantnet/pki/node/, then: tenantnet node bootstrap")
    return 0


def cmd_tenant(args):
    ident = pki.issue_tenant(args.dir, args.name, args.address, force=args.force)
    _said(ident, f"tenant {args.name}")
    return 0


def cmd_show(args):
    rows = pki.describe(args.dir)
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    if not rows:
        print(f"{args.dir}: no certificates (tenantnet pki init)")
    for r in rows:
        print(f"{r['role']:8} {r['name']:20} until {r['not_after'][:10]}  {r['directory']}")
    return 0


def add_pki_commands(sub):
    p = sub.add_parser("pki", help="certificates for TLS: the CAs, the provider, nodes, "
                                   "tenants")
    psub = p.add_subparsers(dest="pki_cmd", required=True)

    def common(c):
        c.add_argument("--dir", default=pki.DEFAULT_DIR,
                       help=f"the PKI's directory (default {pki.DEFAULT_DIR})")
        c.add_argument("--force", action="store_true",
                       help="make it again even when a valid one exists")
        return c

    c = common(psub.add_parser("init", help="the three CAs and the provider's certificate"))
    c.add_argument("--address", action="append", default=[], metavar="IP|NAME",
                   help="an address clients reach the controller at (repeatable)")
    c.add_argument("-c", "--config", help="take controller.management_ip from this config")
    c.set_defaults(func=cmd_init)
    c = common(psub.add_parser("node", help="a node's certificate directory"))
    c.add_argument("name")
    c.add_argument("--address", action="append", default=[], metavar="IP|NAME")
    c.add_argument("-c", "--config", help="take the node's management_ip from this config")
    c.set_defaults(func=cmd_node)
    c = common(psub.add_parser("tenant", help="a tenant controller's certificate directory"))
    c.add_argument("name")
    c.add_argument("--address", action="append", default=[], metavar="IP|NAME")
    c.set_defaults(func=cmd_tenant)
    c = psub.add_parser("show", help="what the PKI directory holds")
    c.add_argument("--dir", default=pki.DEFAULT_DIR)
    c.add_argument("--json", action="store_true")
    c.set_defaults(func=cmd_show)


def main(argv=None):
    parser = argparse.ArgumentParser(prog="tenantnet")
    add_pki_commands(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["pki", *(sys.argv[1:] if argv is None else argv)])
    try:
        import cryptography  # noqa: F401
    except ImportError:
        print("tenantnet pki: needs the Python package cryptography (Debian/Ubuntu: apt "
              "install python3-cryptography)", file=sys.stderr)
        return 2
    try:
        return args.func(args)
    except TenantnetError as exc:
        print(f"tenantnet pki: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
