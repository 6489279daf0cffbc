"""Load and validate a tenantnet YAML config into a Topology.

Every problem is reported as ConfigError(source, key, problem), e.g.
  configs/lab/x.yaml: vms[2].node: unknown node 'compute9' (known: compute1, compute2)
and a config with a problem changes nothing. The same checks serve runtime placement
requests (source "API request"), so the API and the file speak the same language."""

import ipaddress
import re

import yaml

from tenantnet.model import naming
from tenantnet.errors import ConfigError
from tenantnet.model.topology import (NODE_KINDS, SECURITY_MODES, Attachment, Chain,
                                      ControllerSettings, Function, LabSettings, Network,
                                      Node, Topology, Tuning, ex_ip, reserved_probe_ips)

MODES = ("dnb", "cnb")
ROLES = ("compute", "network")
MAX_SEGMENTATION_ID = 2 ** 32 - 1  # GRE keys are 32 bits
IFNAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,14}$")


class Section:
    """A mapping being read: remembers which keys were taken so unknown ones are refused."""

    def __init__(self, source, path, data):
        if not isinstance(data, dict):
            raise ConfigError(source, path or "(top level)",
                              f"expected a mapping, got {typename(data)}")
        self.source, self.path, self.data, self.taken = source, path, data, set()

    def key(self, name):
        return f"{self.path}.{name}" if self.path else name

    def take(self, name, kind, required=False, default=None):
        self.taken.add(name)
        if name not in self.data or self.data[name] is None:
            if required:
                raise ConfigError(self.source, self.key(name), "missing required key")
            return default
        value = self.data[name]
        kinds = kind if isinstance(kind, tuple) else (kind,)
        # bool is a subclass of int in Python; YAML's "yes" must not pass for a port number.
        ok = (bool in kinds) if isinstance(value, bool) else isinstance(value, kinds)
        if not ok:
            raise ConfigError(self.source, self.key(name),
                              f"expected {_kindname(kinds)}, got {typename(value)} {value!r}")
        return value

    def done(self):
        unknown = sorted(set(map(str, self.data)) - self.taken)
        if unknown:
            raise ConfigError(self.source, self.key(unknown[0]),
                              f"unknown key (allowed: {', '.join(sorted(self.taken))})")


def typename(value):
    return {dict: "a mapping", list: "a list", str: "a string", int: "an integer",
            bool: "a boolean", float: "a number", type(None): "nothing"}.get(type(value),
                                                                              type(value).__name__)


def _kindname(kinds):
    return " or ".join(typename(k()) if k is not type(None) else "nothing" for k in kinds)


def _name(source, key, value, what):
    if not isinstance(value, str) or not naming.NAME_RE.match(value):
        raise ConfigError(source, key, f"{what} name {value!r} must start with a lowercase letter "
                                       "and contain only a-z, 0-9, '_' and '-'")
    if len(value) > naming.MAX_NAME:
        raise ConfigError(source, key, f"{what} name {value!r} is too long "
                                       f"({len(value)} > {naming.MAX_NAME} characters)")
    return value


def _ip(source, key, value):
    try:
        return str(ipaddress.IPv4Address(value))
    except (ipaddress.AddressValueError, ValueError):
        raise ConfigError(source, key, f"{value!r} is not an IPv4 address") from None


def _cidr(source, key, value):
    try:
        return ipaddress.IPv4Network(value, strict=True)
    except (ipaddress.AddressValueError, ipaddress.NetmaskValueError, ValueError) as exc:
        raise ConfigError(source, key, f"{value!r} is not an IPv4 network in CIDR form ({exc})") \
            from None


def _mac(source, key, value):
    text = str(value).lower()
    parts = text.split(":")
    if len(parts) != 6 or not all(len(p) == 2 and all(c in "0123456789abcdef" for c in p)
                                  for p in parts):
        raise ConfigError(source, key, f"{value!r} is not a MAC address (xx:xx:xx:xx:xx:xx)")
    # Only a unicast address other than all-zero can be assigned to an interface.
    if text == "ff:ff:ff:ff:ff:ff":
        raise ConfigError(source, key, f"{value!r} is the broadcast MAC; a VM needs a unicast "
                                       "one, e.g. 02:00:00:00:00:01")
    if int(parts[0], 16) & 1:
        raise ConfigError(source, key, f"{value!r} is a multicast MAC; a VM needs a unicast one, "
                                       "e.g. 02:00:00:00:00:01")
    if text == "00:00:00:00:00:00":
        raise ConfigError(source, key, f"{value!r} is the all-zero MAC, which no interface can "
                                       "have; a VM needs a unicast one, e.g. 02:00:00:00:00:01")
    return text


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
    c.management_ip = _ip(source, sec.key("management_ip"),
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
    _ip(source, key, parts[1])
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
        setattr(lab, key, str(_cidr(source, sec.key(key), value)))
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
        name = _name(source, sec.key("name"), sec.take("name", str, required=True), "node")
        role = sec.take("role", str, required=True)
        if role not in ROLES:
            raise ConfigError(source, sec.key("role"),
                              f"unknown role {role!r} (expected one of: {', '.join(ROLES)})")
        mgmt = _ip(source, sec.key("management_ip"), sec.take("management_ip", str, required=True))
        trans = _ip(source, sec.key("transport_ip"), sec.take("transport_ip", str, required=True))
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
        tname = _name(source, sec.key("name"), sec.take("name", str, required=True), "tenant")
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
            nname = _name(source, nsec.key("name"), nsec.take("name", str, required=True),
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
            cidr = _cidr(source, nsec.key("cidr"), nsec.take("cidr", str, required=True))
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
            tcidr = _cidr(source, nsec.key("transport_cidr"), raw_tcidr) if raw_tcidr else None
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
    name = _name(sec.source, sec.key("name"), sec.take("name", str, required=True), what)
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
    attached = [a for k in topo.networks() for a in topo.attachments(k)]
    used_macs = {a.mac: a.name for a in attached}
    if mac is not None:
        mac = _mac(source, sec.key("mac"), mac)
        if mac in used_macs:
            raise ConfigError(source, sec.key("mac"), f"MAC {mac} is already used by {used_macs[mac]}")
    else:
        salt = 0
        mac = naming.mac_for(kind, name)
        while mac in used_macs:
            salt += 1
            mac = naming.mac_for(kind, name, salt=salt)
    cidr = ipaddress.ip_network(net.cidr)
    reserved = reserved_probe_ips(net, len(topo.network_nodes()))
    used_ips = {a.ip: a.name for a in topo.vms_of(net_key) + topo.functions_of(net_key)}
    if ip is not None:
        addr = _ip(source, sec.key("ip"), ip)
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
    clash = next((a.name for a in attached if a.port == port), None)
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
    name = _name(source, sec.key("name"), sec.take("name", str, required=True), "chain")
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
