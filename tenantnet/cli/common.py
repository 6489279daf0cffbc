"""Helpers shared by the `tenantnet` subcommands: output, progress lines, credentials."""

import json
import os

from tenantnet.errors import TenantnetError


DEFAULT_PREFIX = os.environ.get("TENANTNET_LAB_PREFIX", "tn")


def print_json(data):
    print(json.dumps(data, indent=2, sort_keys=True))


def progress(text):
    print(f"  · {text}", flush=True)


def read_token(args):
    if args.token_file:
        try:
            with open(args.token_file) as fh:
                return fh.read().strip()
        except OSError as exc:
            raise TenantnetError(f"cannot read {args.token_file}: {exc.strerror}") from None
    return args.token or os.environ.get("TENANTNET_TOKEN")
