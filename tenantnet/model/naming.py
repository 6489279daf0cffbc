"""Deterministic names and identifiers for everything tenantnet creates.

Linux interface names (and so OVS bridges of the netdev datapath and internal ports) are
limited to 15 characters. A name that fits is used as is; a longer one keeps a readable
head and ends in a short hash of the full name, so the same input always gives the same
name and different inputs practically never collide (config validation checks anyway).

The one-machine lab's names (endpoints, namespaces, fabric veths) come from here too, by
the same rule (`fit`): whatever `tenantnet check-config` accepts -- names of up to MAX_NAME
characters from a-z, 0-9, '_' and '-' -- gives valid and distinct lab names."""

import base64
import hashlib
import re

IFNAMSIZ = 15  # usable characters of a Linux interface name
NAME_RE = re.compile(r"^[a-z][a-z0-9_-]*$")
MAX_NAME = 32  # longest node/tenant/network/VM name we accept
LAB_NAME_MAX = 40  # a lab endpoint's or process's name (tenantnet.lab.fabric)
NETNS_MAX = 64  # a lab namespace's name (Linux takes 255; keep `ip netns` readable)
LAB_TAG = 8  # hex digits of the hash that ends a shortened lab name


def _digest(text, nbytes=8):
    return hashlib.sha256(text.encode()).digest()[:nbytes]


def short_name(prefix, body, limit=IFNAMSIZ):
    """`prefix-body` when it fits in *limit*, else `prefix-<head><tag>`: *tag* is 6 base-32
    characters (30 bits) of a hash of the full name, so that even thousands of names sharing
    a long head practically never collide (config validation refuses a collision)."""
    full = f"{prefix}-{body}"
    if len(full) <= limit:
        return full
    tag = base64.b32encode(_digest(full)).decode().lower()[:6]
    room = limit - len(prefix) - 1 - len(tag)
    if room < 1:
        raise ValueError(f"prefix {prefix!r} leaves no room in a {limit}-character name")
    return f"{prefix}-{body[:room]}{tag}"


def fit(full, limit, tag=LAB_TAG):
    """*full* when it has at most *limit* characters, else its first characters and *tag*
    hex digits of a hash of all of it (so names sharing a long head stay apart)."""
    if len(full) <= limit:
        return full
    if limit <= tag:
        raise ValueError(f"{limit} characters leave no room for a readable head")
    return full[:limit - tag] + _digest(full).hex()[:tag]


def network_key(tenant, network):
    """The canonical id of a tenant network, as used in configs and the API."""
    return f"{tenant}/{network}"


def _net_body(net_key):
    # '.' cannot occur in tenant or network names, so "acme.web" is unambiguous.
    return net_key.replace("/", ".")


def brint_name(net_key):
    return short_name("brint", _net_body(net_key))


def brtun_name(net_key):
    return short_name("brtun", _net_body(net_key))


def ex_port_name(net_key):
    return short_name("ex", _net_body(net_key))


def patch_int_name(net_key):
    """Patch port on brint-xy (peer of patch_tun_name)."""
    return short_name("pi", _net_body(net_key))


def patch_tun_name(net_key):
    """Patch port on brtun-xy (peer of patch_int_name)."""
    return short_name("pt", _net_body(net_key))


def gre_port_name(net_key, peer_node):
    # Port names are unique per OVS instance, not per bridge: the network is part of it.
    # The peer comes first so that traces and dumps show where a tunnel leads.
    return short_name("gr", f"{peer_node}.{_net_body(net_key)}")


# CNB: the common bridges' patch pair (OpenStack's names) and GRE ports to peer nodes.
CNB_PATCH_INT = "patch-tun"   # on br-int, peer of CNB_PATCH_TUN
CNB_PATCH_TUN = "patch-int"   # on br-tun


def cnb_gre_port_name(peer_node):
    return short_name("gre", peer_node)


def vm_port_name(vm_name):
    """Host side of a VM's link, attached to brint-xy (the VM's 'tap')."""
    return short_name("tap", vm_name)


def function_port_name(fn_name):
    """Host side of a network function's link, attached to brint-xy."""
    return short_name("nf", fn_name)


def probe_port_name(net_key):
    """Host side of the network node's probe link for a network (the DHCP-namespace analogue)."""
    return short_name("prb", _net_body(net_key))


def probe_name(net_key, node):
    """The probe of *net_key* on network node *node*: `probe.<tenant>.<network>.<node>`,
    shortened to LAB_NAME_MAX. '.' never occurs in a VM name, so no VM is called so."""
    return fit(f"probe.{_net_body(net_key)}.{node}", LAB_NAME_MAX)


# -- the one-machine lab (prefix: the lab's own, 1-8 characters) ---------------------------
# Namespaces are `<prefix>-fabric`, `<prefix>-ctl`, `<prefix>-<node>`, `<prefix>-v-<vm>`,
# `<prefix>-p-<probe>` and `<prefix>-tc-<tenant>` (a tenant's own controller). A node whose
# name could be mistaken for one of the others gets `<prefix>-n-<node>` instead.
_LAB_OWN = ("fabric", "ctl")
_LAB_KINDS = ("v-", "p-", "f-", "tc-", "n-")


def fabric_netns(prefix):
    return f"{prefix}-fabric"


def controller_netns(prefix):
    return f"{prefix}-ctl"


def node_netns(prefix, node):
    reserved = node in _LAB_OWN or node.startswith(_LAB_KINDS)
    return fit(f"{prefix}-{'n-' if reserved else ''}{node}", NETNS_MAX)


def endpoint_netns(prefix, kind, name):
    """The namespace of lab endpoint *name*: kind 'vm', 'function' or 'probe'."""
    letter = {"vm": "v", "function": "f"}.get(kind, "p")
    return fit(f"{prefix}-{letter}-{name}", NETNS_MAX)


def tenant_netns(prefix, tenant):
    """The namespace of *tenant*'s own controller in the lab."""
    return fit(f"{prefix}-tc-{tenant}", NETNS_MAX)


def fabric_peer_name(kind, owner_kind, owner):
    """The fabric side of a veth (kind 'm' management, 't' transport) of *owner* (owner_kind
    'node', 'ctl' or 'tenant'): <kind>-<8 hex>, 10 characters."""
    return f"{kind}-{_digest(f'{owner_kind}:{owner}').hex()[:8]}"


def datapath_id(node, bridge):
    """A stable 64-bit datapath id for *bridge* on *node* (never 0)."""
    value = int.from_bytes(_digest(f"dpid:{node}/{bridge}"), "big") & 0x0000FFFFFFFFFFFF
    return value or 1


def dpid_index(topo, tenant=None):
    """{datapath id: (node, bridge)} of the bridges the caller programs: for many switches
    at once (a batch that connected), one pass over the model instead of one each.

    tenant=None: the provider's (common bridges and tenant bridges without a controller of
    their own); tenant=NAME: that tenant's bridges with its own controller."""
    def mine(key):
        own = topo.own_controller(key)
        return (not own) if tenant is None else (own and topo.network(key).tenant == tenant)
    index = {}
    for node in topo.nodes():
        names = [b for key in topo.dnb_networks_on(node.name) if mine(key)
                 for b in (brint_name(key), brtun_name(key))]
        if tenant is None:
            names += ["br-int", "br-tun"]
        for bridge in names:
            index[datapath_id(node.name, bridge)] = (node.name, bridge)
    return index


def dpid_owner(topo, dpid, tenant=None):
    """(node, bridge) with datapath id *dpid* among the bridges the caller programs, or None
    (see dpid_index)."""
    return dpid_index(topo, tenant).get(dpid)


def dpid_str(dpid):
    return f"{dpid:016x}"


def mac_for(kind, *parts, salt=0):
    """A locally administered unicast MAC derived from *parts* (02:xx:xx:xx:xx:xx)."""
    raw = _digest(f"mac:{kind}:{'/'.join(parts)}:{salt}", 5)
    return "02:" + ":".join(f"{b:02x}" for b in raw)


def valid_name(name):
    return isinstance(name, str) and bool(NAME_RE.match(name)) and len(name) <= MAX_NAME
