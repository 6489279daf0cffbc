"""Validating placements: one VM, network function or chain declaration checked against a
Topology (which must not yet hold it), for the YAML config and for the API alike.

`vm_from_spec`, `function_from_spec` and `chain_from_spec` return the model's
Attachment, Function and Chain; a VM or function gets its MAC and IP here (checked when
given, else the first free ones). Every problem is a ConfigError(source, key, problem)."""

import ipaddress
import re

from tenantnet.model import naming
from tenantnet.errors import ConfigError
from tenantnet.model.section import Section, parse_ip, parse_mac, parse_name, typename
from tenantnet.model.topology import Attachment, Chain, Function, reserved_probe_ips


# -- lookups shared by VMs, network functions and chains -------------------------------------
def _network_of(topo, source, key, net_key):
    net = topo.network(net_key)
    if net is None:
        known = ", ".join(sorted(topo.networks())) or "none"
        raise ConfigError(source, key,
                          f"unknown network {net_key!r} (expected tenant/network; known: {known})")
    return net


def _compute_node(topo, source, key, node_name, what):
    """The compute node *node_name*, for a *what* ("VM") to run on."""
    node = topo.node(node_name)
    if node is None:
        known = ", ".join(sorted(n.name for n in topo.compute_nodes()))
        raise ConfigError(source, key, f"unknown node {node_name!r} (known: {known})")
    if node.role != "compute":
        raise ConfigError(source, key, f"node {node_name!r} is a {node.role} node, not a "
                                       f"compute node; {what}s run on compute nodes")
    return node


def _new_name(topo, source, key, name, what):
    """*name* for a new *what* ("VM" or "network function"): no VM or function has it."""
    holder = ("VM" if topo.vm(name) is not None else
              "network function" if topo.function(name) is not None else None)
    if holder == what:
        raise ConfigError(source, key, f"duplicate {what} name {name!r}")
    if holder is not None:
        raise ConfigError(source, key, f"duplicate name {name!r}: a {holder} has it")


def _member(topo, source, key, name, net_key, what, missing_ok=False):
    """The VM or network function (*what*) *name*, which must be of network *net_key*;
    *missing_ok*: None when there is none."""
    found = topo.vm(name) if what == "VM" else topo.function(name)
    if (found is None and not missing_ok) or (found is not None and found.network != net_key):
        raise ConfigError(source, key, f"{name!r} is not a {what} of {net_key}")
    return found


def _attachment_keys(sec, what):
    """(name, network, node, mac, ip) of a VM or network function (*what*) being read."""
    name = parse_name(sec.source, sec.key("name"), sec.take("name", str, required=True), what)
    return (name, sec.take("network", str, required=True), sec.take("node", str, required=True),
            sec.take("mac", str, default=None), sec.take("ip", str, default=None))


def _place(topo, sec, what, kind, name, net_key, node_name, mac, ip, port):
    """(MAC, IP) of a new *what* ("VM" or "network function"; *kind* "vm" or "function" for
    its generated MAC) *name* on network *net_key* and compute node *node_name*, neither
    of which *topo* holds: *mac* and *ip* checked when given, else the first free ones;
    its *port* name must be free."""
    source = sec.source
    _new_name(topo, source, sec.key("name"), name, what)
    net = _network_of(topo, source, sec.key("network"), net_key)
    _compute_node(topo, source, sec.key("node"), node_name, what)
    if mac is not None:
        mac = parse_mac(source, sec.key("mac"), mac)
        owner = topo.attachment_named("mac", mac)
        if owner is not None:
            raise ConfigError(source, sec.key("mac"), f"MAC {mac} is already used by {owner}")
    else:
        salt = 0
        mac = naming.mac_for(kind, name)
        while topo.attachment_named("mac", mac) is not None:
            salt += 1
            mac = naming.mac_for(kind, name, salt=salt)
    cidr = ipaddress.ip_network(net.cidr)
    reserved = reserved_probe_ips(net, len(topo.network_nodes()))
    used_ips = {a.ip: a.name for a in topo.vms_of(net_key) + topo.functions_of(net_key)}
    if ip is not None:
        addr = parse_ip(source, sec.key("ip"), ip)
        if ipaddress.ip_address(addr) not in cidr:
            raise ConfigError(source, sec.key("ip"), f"{addr} is outside {net_key}'s CIDR {cidr}")
        if ipaddress.ip_address(addr) in (cidr.network_address, cidr.broadcast_address):
            raise ConfigError(source, sec.key("ip"), f"{addr} is not a host address of {cidr}")
        if addr in reserved:
            raise ConfigError(source, sec.key("ip"),
                              f"{addr} is reserved for {net_key}'s probe on the network node")
        if addr in used_ips:
            raise ConfigError(source, sec.key("ip"), f"{addr} is already used by {used_ips[addr]} "
                                                     f"on {net_key}")
        ip = addr
    else:
        ip = next((str(h) for h in cidr.hosts() if str(h) not in reserved and str(h) not in used_ips),
                  None)
        if ip is None:
            raise ConfigError(source, sec.key("network"), f"{net_key}'s CIDR {cidr} is full")
    clash = topo.attachment_named("port", port)
    if clash:
        raise ConfigError(source, sec.key("name"), f"{name!r} and {clash!r} map to the same "
                                                   f"port name {port!r}; rename one")
    return mac, ip


def vm_from_spec(topo, raw, source, path, vm_source="config"):
    """Validate one VM declaration against *topo* (which must not yet hold it)."""
    sec = Section(source, path, raw)
    name, net_key, node_name, mac, ip = _attachment_keys(sec, "VM")
    sec.done()
    port = naming.vm_port_name(name)
    mac, ip = _place(topo, sec, "VM", "vm", name, net_key, node_name, mac, ip, port)
    return Attachment(name=name, kind="vm", network=net_key, node=node_name, mac=mac, ip=ip,
                      port=port, source=vm_source)



# -- network functions and chains -----------------------------------------------------------
# Each kind's own keys: name -> (type, default, check(value) -> problem or None). The lab
# builds a kind with the class of the same name (tenantnet.lab.functions).
def _rate_problem(value):
    if not re.match(r"^[0-9]+(\.[0-9]+)?(bit|kbit|mbit|gbit|bps|kbps|mbps|gbps)$", value):
        return f"{value!r} is not a tc rate (e.g. 100mbit, 1gbit, 500kbit)"
    return None


FUNCTION_KINDS = {
    "forward": {},
    "firewall": {"rules": (int, 0, lambda v: None if 0 <= v <= 100000 else
                           f"{v} rules: expected 0..100000"),
                 "stateful": (bool, True, lambda v: None)},
    "shaper": {"rate": (str, "100mbit", _rate_problem)},
}
CHAIN_FAILURE = ("open", "closed")
CHAIN_ANY = "any"


def function_from_spec(topo, raw, source, path, fn_source="config"):
    """Validate one network function declaration against *topo* (which must not yet hold
    it): {name, network, node, kind, mac?, ip?, and the kind's own keys}."""
    sec = Section(source, path, raw)
    name, net_key, node_name, mac, ip = _attachment_keys(sec, "function")
    kind = sec.take("kind", str, required=True)
    if kind not in FUNCTION_KINDS:
        raise ConfigError(source, sec.key("kind"), f"unknown function kind {kind!r} "
                          f"(known: {', '.join(sorted(FUNCTION_KINDS))})")
    options = {}
    for opt, (typ, default, check) in FUNCTION_KINDS[kind].items():
        value = sec.take(opt, typ, default=default)
        problem = check(value)
        if problem:
            raise ConfigError(source, sec.key(opt), problem)
        options[opt] = value
    sec.done()
    port = naming.function_port_name(name)
    mac, ip = _place(topo, sec, "network function", "function", name, net_key, node_name,
                     mac, ip, port)
    return Function(name=name, network=net_key, node=node_name, mac=mac, ip=ip, port=port,
                    nf=kind, options=tuple(sorted(options.items())), source=fn_source)


def chain_from_spec(topo, raw, source, path, chain_source="config", recovered=False):
    """Validate one chain {name, network, from, to, through, on_failure?} against *topo*:
    it names only VMs and functions of its own network (so of its own tenant).
    *recovered*: a chain relearned from a node's records (controller.recovery) may name VMs
    and functions that are gone, since a chain outlives them (model.chains skips or drops
    them); a name that exists must still be of the chain's network."""
    sec = Section(source, path, raw)
    name = parse_name(source, sec.key("name"), sec.take("name", str, required=True), "chain")
    net_key = sec.take("network", str, required=True)
    src = sec.take("from", str, required=True)
    dst = sec.take("to", str, required=True)
    through = sec.take("through", list, required=True)
    failure = sec.take("on_failure", str, default="open")
    sec.done()
    if topo.chain(name) is not None:
        raise ConfigError(source, sec.key("name"), f"duplicate chain name {name!r}")
    _network_of(topo, source, sec.key("network"), net_key)
    if failure not in CHAIN_FAILURE:
        raise ConfigError(source, sec.key("on_failure"), f"{failure!r}: expected one of "
                          f"{', '.join(CHAIN_FAILURE)}")
    _member(topo, source, sec.key("from"), src, net_key, "VM", recovered)
    if dst != CHAIN_ANY:
        _member(topo, source, sec.key("to"), dst, net_key, "VM", recovered)
        if dst == src:
            raise ConfigError(source, sec.key("to"), f"a chain from {src!r} to itself")
    if not through:
        raise ConfigError(source, sec.key("through"), "at least one function is needed")
    for i, fn_name in enumerate(through):
        key = f"{sec.key('through')}[{i}]"
        if not isinstance(fn_name, str):
            raise ConfigError(source, key, f"expected a function name, got {typename(fn_name)}")
        _member(topo, source, key, fn_name, net_key, "network function", recovered)
        if fn_name in through[:i]:
            raise ConfigError(source, key, f"function {fn_name!r} appears twice")
    for other in topo.chains_of(net_key):
        if (other.src, other.dst) == (src, dst):
            raise ConfigError(source, sec.key("to"), f"chain {other.name!r} already steers "
                                                     f"{src} -> {dst}")
    return Chain(name=name, network=net_key, src=src, dst=dst, through=tuple(through),
                 on_failure=failure, source=chain_source)
