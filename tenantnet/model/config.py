"""Load and validate a tenantnet YAML config into a Topology.

Every problem is reported as ConfigError(source, key, problem), e.g.
  configs/lab/x.yaml: vms[2].node: unknown node 'compute9' (known: compute1, compute2)
and a config with a problem changes nothing. The same checks serve runtime placement
requests (source "API request"), so the API and the file speak the same language.

This module owns the file and its top level: reading and parsing it, the controller,
security, tuning and lab settings, the nodes and the tenants with their networks. One
mapping is read with model.section; VMs, network functions and chains are validated by
model.placements (the same functions the API uses), re-exported here."""

import ipaddress
import re

import yaml

from tenantnet.model import naming
from tenantnet.errors import ConfigError
from tenantnet.model.placements import (CHAIN_ANY, CHAIN_FAILURE, FUNCTION_KINDS,
                                        chain_from_spec, function_from_spec, vm_from_spec)
from tenantnet.model.section import Section, parse_cidr, parse_ip, parse_name, typename
from tenantnet.model.topology import (NODE_KINDS, SECURITY_MODES, ControllerSettings,
                                      LabSettings, Network, Node, Topology, Tuning, ex_ip)

# config.vm_from_spec and friends stay this module's face (the API, the controller and the
# tests call them); model.placements owns them.
__all__ = ["MODES", "ROLES", "MAX_SEGMENTATION_ID", "IFNAME_RE", "read_text", "parse_yaml",
           "load_file", "load_text", "build", "parse_tuning", "check_names_unique",
           "vm_from_spec", "function_from_spec", "chain_from_spec", "FUNCTION_KINDS",
           "CHAIN_FAILURE", "CHAIN_ANY", "Section", "typename"]

MODES = ("dnb", "cnb")
ROLES = ("compute", "network")
MAX_SEGMENTATION_ID = 2 ** 32 - 1  # GRE keys are 32 bits
IFNAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,14}$")


def read_text(path):
    """A file's text, or ConfigError naming it."""
    try:
        with open(path) as fh:
            return fh.read()
    except OSError as exc:
        raise ConfigError(path, "", f"cannot read file: {exc.strerror}") from None


def parse_yaml(text, source):
    """YAML text -> data; malformed or empty YAML is a ConfigError with line and column."""
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark else ""
        problem = getattr(exc, "problem", None) or str(exc)
        raise ConfigError(source, "", f"malformed YAML: {where}{problem}") from None
    if data is None:
        raise ConfigError(source, "", "the file is empty")
    return data


def load_file(path):
    """Read and validate *path*; return a Topology. Raises ConfigError."""
    return load_text(read_text(path), source=path)


def load_text(text, source="<config>"):
    return build(parse_yaml(text, source), source)


def build(data, source):
    top = Section(source, "", data)
    mode = top.take("mode", str, default="dnb")
    if mode not in MODES:
        raise ConfigError(source, "mode", f"unknown mode {mode!r} (supported: {', '.join(MODES)})")
    controller = _controller(source, top.take("controller", dict, default={}))
    controller.security = top.take("security", str, default=controller.security)
    if controller.security not in SECURITY_MODES:
        raise ConfigError(source, "security", f"unknown security {controller.security!r} "
                          f"(expected one of: {', '.join(SECURITY_MODES)})")
    tuning = parse_tuning(source, top.take("tuning", dict, default={}))
    lab = _lab(source, top.take("lab", dict, default={}))
    topo = Topology(mode=mode, controller=controller, tuning=tuning, lab=lab)

    _nodes(source, topo, top.take("nodes", list, required=True))
    _tenants(source, topo, top.take("tenants", list, default=[]), mode)
    for i, raw in enumerate(top.take("vms", list, default=[])):
        vm = vm_from_spec(topo, raw, source, f"vms[{i}]")
        topo.add_vm(vm)
    for i, raw in enumerate(top.take("functions", list, default=[])):
        topo.add_function(function_from_spec(topo, raw, source, f"functions[{i}]"))
    for i, raw in enumerate(top.take("chains", list, default=[])):
        topo.add_chain(chain_from_spec(topo, raw, source, f"chains[{i}]"))
    top.done()
    check_names_unique(topo, source)
    return topo


def _controller(source, raw):
    sec = Section(source, "controller", raw)
    c = ControllerSettings()
    c.management_ip = parse_ip(source, sec.key("management_ip"),
                          sec.take("management_ip", str, default=c.management_ip))
    for port in ("openflow_port", "ovsdb_port", "api_port"):
        value = sec.take(port, int, default=getattr(c, port))
        if not 1 <= value <= 65535:
            raise ConfigError(source, sec.key(port), f"port {value} is outside 1..65535")
        setattr(c, port, value)
    c.api_token = _token(source, sec, "api_token")
    sec.done()
    return c


def _token(source, sec, key):
    """A credential given inline (`KEY`) or in a file (`KEY_file`)."""
    inline = sec.take(key, str, default=None)
    path = sec.take(f"{key}_file", str, default=None)
    if inline and path:
        raise ConfigError(source, sec.key(key), f"give {key} or {key}_file, not both")
    if path:
        try:
            with open(path) as fh:
                inline = fh.read().strip()
        except OSError as exc:
            raise ConfigError(source, sec.key(f"{key}_file"),
                              f"cannot read {path}: {exc.strerror}") from None
    if inline is not None and len(inline) < 8:
        raise ConfigError(source, sec.key(key), "a credential needs at least 8 characters")
    return inline


def _openflow_target(source, key, value):
    """tcp:IP:PORT or ssl:IP:PORT, as ovs-vsctl set-controller takes it."""
    parts = str(value).split(":")
    if len(parts) != 3 or parts[0] not in ("tcp", "ssl"):
        raise ConfigError(source, key, f"{value!r} is not an OpenFlow controller target "
                                       "(expected tcp:IP:PORT or ssl:IP:PORT)")
    parse_ip(source, key, parts[1])
    if not parts[2].isdigit() or not 1 <= int(parts[2]) <= 65535:
        raise ConfigError(source, key, f"{value!r}: port must be 1..65535")
    return str(value)


def parse_tuning(source, raw):
    sec = Section(source, "tuning", raw)
    t = Tuning()
    t.vm_mtu = sec.take("vm_mtu", int, default=t.vm_mtu)
    if not 576 <= t.vm_mtu <= 9000:
        raise ConfigError(source, sec.key("vm_mtu"), f"MTU {t.vm_mtu} is outside 576..9000")
    t.tx_checksum_offload = sec.take("tx_checksum_offload", bool, default=t.tx_checksum_offload)
    thresh = sec.take("neigh_gc_thresh", list, default=None)
    if thresh is not None:
        if len(thresh) != 3 or not all(isinstance(x, int) and not isinstance(x, bool) and x > 0
                                       for x in thresh) or sorted(thresh) != thresh:
            raise ConfigError(source, sec.key("neigh_gc_thresh"),
                              "expected three increasing positive integers [gc_thresh1, 2, 3]")
        t.neigh_gc_thresh = tuple(thresh)
    sec.done()
    return t


def _lab(source, raw):
    sec = Section(source, "lab", raw)
    lab = LabSettings()
    for key in ("management_cidr", "transport_cidr"):
        value = sec.take(key, str, default=getattr(lab, key))
        setattr(lab, key, str(parse_cidr(source, sec.key(key), value)))
    lab.nodes = sec.take("nodes", str, default=lab.nodes)
    if lab.nodes not in NODE_KINDS:
        raise ConfigError(source, sec.key("nodes"), f"{lab.nodes!r}: expected one of "
                          f"{', '.join(NODE_KINDS)}")
    lab.vm_memory_mb = sec.take("vm_memory_mb", int, default=lab.vm_memory_mb)
    if not 384 <= lab.vm_memory_mb <= 16384:
        raise ConfigError(source, sec.key("vm_memory_mb"), f"{lab.vm_memory_mb}: expected "
                          "384 to 16384 (MB of memory per node VM)")
    sec.done()
    return lab


def _nodes(source, topo, raw_nodes):
    if not raw_nodes:
        raise ConfigError(source, "nodes", "at least one node is required")
    seen = {}
    mgmt_net = ipaddress.ip_network(topo.lab.management_cidr)
    trans_net = ipaddress.ip_network(topo.lab.transport_cidr)
    for i, raw in enumerate(raw_nodes):
        path = f"nodes[{i}]"
        sec = Section(source, path, raw)
        name = parse_name(source, sec.key("name"), sec.take("name", str, required=True), "node")
        role = sec.take("role", str, required=True)
        if role not in ROLES:
            raise ConfigError(source, sec.key("role"),
                              f"unknown role {role!r} (expected one of: {', '.join(ROLES)})")
        mgmt = parse_ip(source, sec.key("management_ip"),
                        sec.take("management_ip", str, required=True))
        trans = parse_ip(source, sec.key("transport_ip"),
                         sec.take("transport_ip", str, required=True))
        uplink = sec.take("transport_interface", str, default="eth1")
        if not IFNAME_RE.match(uplink):
            raise ConfigError(source, sec.key("transport_interface"),
                              f"{uplink!r} is not a valid interface name (at most 15 characters)")
        sec.done()
        if ipaddress.ip_address(mgmt) not in mgmt_net:
            raise ConfigError(source, sec.key("management_ip"),
                              f"{mgmt} is outside lab.management_cidr {mgmt_net}")
        if ipaddress.ip_address(trans) not in trans_net:
            raise ConfigError(source, sec.key("transport_ip"),
                              f"{trans} is outside lab.transport_cidr {trans_net}")
        if mgmt == topo.controller.management_ip:
            raise ConfigError(source, sec.key("management_ip"),
                              f"{mgmt} is the controller's management address")
        for what, value in (("name", name), ("management_ip", mgmt), ("transport_ip", trans)):
            if (what, value) in seen:
                raise ConfigError(source, sec.key(what),
                                  f"duplicate {what} {value!r} (also {seen[(what, value)]})")
            seen[(what, value)] = path
        topo.add_node(Node(name, role, mgmt, trans, uplink))
    if not topo.network_nodes():
        raise ConfigError(source, "nodes", "no node has role 'network': one is needed to host "
                                           "each tenant network's probe")


def _tenants(source, topo, raw_tenants, mode):
    segs, tcidrs, owners = {}, {}, {}
    lab_trans = ipaddress.ip_network(topo.lab.transport_cidr)
    tenant_names = set()
    for i, raw in enumerate(raw_tenants):
        sec = Section(source, f"tenants[{i}]", raw)
        tname = parse_name(source, sec.key("name"), sec.take("name", str, required=True), "tenant")
        if tname in tenant_names:
            raise ConfigError(source, sec.key("name"), f"duplicate tenant {tname!r}")
        tenant_names.add(tname)
        nets = sec.take("networks", list, default=[])
        token = _token(source, sec, "token")
        sec.done()
        if token is not None:
            if token in topo.tenant_tokens.values() or token == topo.controller.api_token:
                raise ConfigError(source, sec.key("token"), "this credential is already used")
            topo.tenant_tokens[tname] = token
        net_names = set()
        for j, rawnet in enumerate(nets):
            nsec = Section(source, f"tenants[{i}].networks[{j}]", rawnet)
            nname = parse_name(source, nsec.key("name"), nsec.take("name", str, required=True),
                          "network")
            if nname in net_names:
                raise ConfigError(source, nsec.key("name"),
                                  f"duplicate network {nname!r} in tenant {tname!r}")
            net_names.add(nname)
            seg = nsec.take("segmentation_id", int, required=True)
            if isinstance(seg, bool) or not 1 <= seg <= MAX_SEGMENTATION_ID:
                raise ConfigError(source, nsec.key("segmentation_id"),
                                  f"{seg} is outside 1..{MAX_SEGMENTATION_ID} (a 32-bit GRE key)")
            if seg in segs:
                raise ConfigError(source, nsec.key("segmentation_id"),
                                  f"segmentation id {seg} is already used by {segs[seg]}")
            cidr = parse_cidr(source, nsec.key("cidr"), nsec.take("cidr", str, required=True))
            if cidr.num_addresses < 8:
                raise ConfigError(source, nsec.key("cidr"), f"{cidr} is too small (at least /29)")
            net_mode = nsec.take("mode", str, default=mode)
            if net_mode not in MODES:
                raise ConfigError(source, nsec.key("mode"), f"unknown mode {net_mode!r} "
                                                            f"(supported: {', '.join(MODES)})")
            # A CNB network rides the common tunnels: its own transport network is optional.
            raw_tcidr = nsec.take("transport_cidr", str, required=net_mode == "dnb")
            own = nsec.take("controller", str, default=None)
            if own is not None:
                own = _openflow_target(source, nsec.key("controller"), own)
                scheme = "ssl" if topo.controller.tls else "tcp"
                if not own.startswith(scheme + ":"):
                    raise ConfigError(source, nsec.key("controller"), (
                        f"{own}: with TLS (the default) a tenant's controller is "
                        f"ssl:IP:PORT (or set `security: insecure`)") if scheme == "ssl" else (
                        f"{own}: with `security: insecure` nodes have no certificates, so a "
                        "tenant's controller is tcp:IP:PORT"))
                if net_mode != "dnb":
                    raise ConfigError(source, nsec.key("controller"),
                                      "only a DNB network has bridges of its own to hand to a "
                                      "tenant's controller (this one is cnb)")
                if own in owners and owners[own] != tname:
                    raise ConfigError(source, nsec.key("controller"),
                                      f"{own} is tenant {owners[own]}'s controller; two "
                                      "tenants never share one")
                owners[own] = tname
            tcidr = (parse_cidr(source, nsec.key("transport_cidr"), raw_tcidr) if raw_tcidr
                     else None)
            nsec.done()
            # Every ex- endpoint of every network lives in the same kernel routing table of
            # a node, so transport networks must not overlap each other or the node fabric.
            if tcidr is not None:
                if tcidr.overlaps(lab_trans):
                    raise ConfigError(source, nsec.key("transport_cidr"),
                                      f"{tcidr} overlaps the node transport network {lab_trans}")
                for other, where in tcidrs.items():
                    if tcidr.overlaps(other):
                        raise ConfigError(source, nsec.key("transport_cidr"),
                                          f"{tcidr} overlaps {other} of {where}")
            net = Network(tname, nname, seg, str(cidr), str(tcidr) if tcidr else None, net_mode,
                          own)
            if tcidr is not None:
                _check_ex_ips(topo, net, source, nsec.key("transport_cidr"))
                tcidrs[tcidr] = net.key
            segs[seg] = net.key
            topo.add_network(net)


def _check_ex_ips(topo, net, source, key):
    tnet = ipaddress.ip_network(net.transport_cidr)
    seen = {}
    for node in topo.nodes():
        addr = ex_ip(net, node)
        if ipaddress.ip_address(addr) in (tnet.network_address, tnet.broadcast_address):
            raise ConfigError(source, key, f"node {node.name}'s endpoint would get {addr}, which is "
                                           f"not a host address of {tnet} (its transport_ip's "
                                           "host part must fit in the transport CIDR)")
        if addr in seen:
            raise ConfigError(source, key, f"nodes {seen[addr]} and {node.name} would both get "
                                           f"endpoint address {addr} in {tnet}: use a larger CIDR")
        seen[addr] = node.name


def check_names_unique(topo, source):
    """Shortened names must not collide: interface names within an OVS instance (checked
    across all of them at once), probe names within the lab (they name its endpoints)."""
    def unique(entries, what):
        owners = {}
        for name, owner, key in entries:
            if owners.setdefault(name, owner) != owner:
                raise ConfigError(source, key, f"{owners[name]} and {owner} map to the same "
                                               f"{what} {name!r}; rename one")

    nodes = [n.name for n in topo.nodes()]
    ifaces = []
    for key in topo.networks():
        ifaces += [(name, f"network {key}", "tenants") for name in (
            naming.brint_name(key), naming.brtun_name(key), naming.ex_port_name(key),
            naming.patch_int_name(key), naming.patch_tun_name(key), naming.probe_port_name(key))]
        if topo.mode_of(key) == "dnb":
            ifaces += [(naming.gre_port_name(key, peer), f"network {key}'s tunnel to {peer}",
                        "tenants") for peer in nodes]
    ifaces += [(naming.cnb_gre_port_name(peer), f"the common tunnel to node {peer}", "nodes")
               for peer in nodes]
    unique(ifaces, "interface name")
    unique([(naming.probe_name(key, node.name), f"the probe of {key} on {node.name}", "tenants")
            for key in topo.networks() for node in topo.network_nodes()], "probe name")

