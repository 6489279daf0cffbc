"""The lab's physical networks: the fabric namespace <prefix>-fabric with the Linux bridges
`mgmt` and `transport`, and the hosts on them that are not nodes -- the controller
namespace <prefix>-ctl and management hosts such as a tenant's controller.

Callers hold the books' transaction (store.txn()); every namespace is recorded before it
is created (tenantnet.lab.hosts.claim_namespace)."""

import ipaddress

from tenantnet.errors import LabError
from tenantnet.lab import hosts
from tenantnet.lab import netns as ns
from tenantnet.lab.state import ControllerRec, FabricRec
from tenantnet.model import naming


def require_fabric(state):
    if not state.fabric:
        raise LabError("the fabric is not up: call up_fabric() first")


def check_in(state, ip, cidr_key, what):
    """LabError unless *ip* is in the fabric's management_cidr or transport_cidr."""
    try:
        addr = ipaddress.ip_address(ip)
    except ValueError as exc:
        raise LabError(f"{what}: {exc}") from exc
    net = ipaddress.ip_network(getattr(state.fabric, cidr_key))
    if addr not in net:
        raise LabError(f"{what} {ip} is outside the fabric's {cidr_key} {net}")


def veth_to_fabric(fabric_netns, netns, ifname, bridge, peer):
    """veth *ifname* inside *netns*, its *peer* in the fabric, enslaved to *bridge*."""
    if ns.link_exists(peer, netns=fabric_netns):
        ns.run(["ip", "link", "del", peer], netns=fabric_netns, check=False)
    ns.run(["ip", "link", "add", ifname, "netns", netns, "type", "veth",
            "peer", "name", peer], netns=fabric_netns)
    ns.run(["ip", "link", "set", peer, "master", bridge, "up"], netns=fabric_netns)
    ns.run(["ip", "link", "set", ifname, "up"], netns=netns)


def up_fabric(store, management_cidr, transport_cidr):
    """Create <prefix>-fabric with Linux bridges `mgmt` and `transport` (idempotent)."""
    try:
        mgmt = str(ipaddress.ip_network(management_cidr, strict=False))
        transport = str(ipaddress.ip_network(transport_cidr, strict=False))
    except ValueError as exc:
        raise LabError(f"up_fabric: {exc}") from exc
    state = store.state
    fab = naming.fabric_netns(store.prefix)
    if state.fabric and ns.exists(fab):
        return fab
    hosts.check_free(state, fab)
    state.fabric = FabricRec(netns=fab, management_cidr=mgmt, transport_cidr=transport)
    hosts.claim_namespace(store, fab)
    for br in ("mgmt", "transport"):
        if not ns.link_exists(br, netns=fab):
            ns.run(["ip", "link", "add", br, "type", "bridge", "stp_state", "0"], netns=fab)
        ns.run(["ip", "link", "set", br, "up"], netns=fab)
    return fab


def _management_link(state, netns, peer, management_ip, prefix_len):
    veth_to_fabric(state.fabric.netns, netns, "mgmt", "mgmt", peer)
    ns.run(["ip", "addr", "replace", f"{management_ip}/{prefix_len}", "dev", "mgmt"],
           netns=netns)


def add_controller(store, management_ip, prefix_len=24):
    """Namespace <prefix>-ctl with `mgmt` on the management bridge. Returns its name."""
    state = store.state
    require_fabric(state)
    check_in(state, management_ip, "management_cidr", "controller management_ip")
    ctl = naming.controller_netns(store.prefix)
    if state.controller:
        raise LabError(f"the controller namespace {ctl} already exists in this lab")
    peer = naming.fabric_peer_name("m", "ctl", "")
    hosts.check_free(state, ctl)
    state.controller = ControllerRec(netns=ctl, management_ip=management_ip,
                                     prefix_len=int(prefix_len), fabric_peer=peer)
    hosts.claim_namespace(store, ctl)
    _management_link(state, ctl, peer, management_ip, prefix_len)
    return ctl


def add_management_host(store, netns, peer, management_ip, prefix_len=24):
    """Namespace *netns* with `mgmt` at *management_ip* on the management bridge, the
    fabric side of its veth called *peer*: a host that only talks to the controllers.
    An existing one is left as it is. Returns *netns*."""
    state = store.state
    require_fabric(state)
    check_in(state, management_ip, "management_cidr", f"{netns} management address")
    if ns.exists(netns):
        return netns
    hosts.claim_namespace(store, netns)
    _management_link(state, netns, peer, management_ip, prefix_len)
    return netns
