"""The node's side of `ex-` endpoint addresses: the controller records each endpoint's
address on its port (external_ids:tenantnet-address); the node reads them back and sets them
on the kernel interfaces, at bootstrap (after a reboot) and from udev
(`tenantnet node addresses --interface NAME`)."""

import json
import time

from tenantnet.model.records import KIND_KEY
from tenantnet.node.ovscli import output

ADDRESS_KEY = "tenantnet-address"


def endpoint_addresses(vsctl):
    """{ex- port name: 'IP/PREFIX'} from the ports' external_ids:tenantnet-address (set by
    the controller on every ex- endpoint it creates)."""
    proc = vsctl("--format=json", "--columns=name,external_ids", "find", "Port",
                 f"external_ids:{KIND_KEY}=ex")
    data = json.loads(output(proc) or '{"data": []}')
    found = {}
    for name, ids in data.get("data", []):
        pairs = dict(ids[1]) if isinstance(ids, list) and ids and ids[0] == "map" else {}
        if pairs.get(ADDRESS_KEY):
            found[name] = pairs[ADDRESS_KEY]
    return found


def apply_endpoint_addresses(vsctl, set_address, only=None, timeout=5.0):
    """Give every ex- endpoint (or just *only*) the address its port records: the node's
    side of the controller's work (the paper uses a udev rule; so does the Vagrant lab,
    through `tenantnet node addresses --interface NAME`). Returns {name: cidr} applied.

    With *only*, waits up to *timeout* s for its port record (udev may see the device
    before the caller's transaction is visible)."""
    deadline = time.time() + timeout
    while True:
        found = endpoint_addresses(vsctl)
        if only is None or only in found or time.time() >= deadline:
            break
        time.sleep(0.1)
    if only is not None:
        found = {k: v for k, v in found.items() if k == only}
    for name, cidr in sorted(found.items()):
        set_address(name, cidr)
    return found
