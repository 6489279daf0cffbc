"""Experiment specs: YAML that says which sub-experiments to run, and the labs they run on.

    name: quick
    modes: [dnb, cnb]                  # default: both, run back to back
    lab: {compute_nodes: 3, network_nodes: 1, up_timeout_s: 120}
    reachability: {instances: [2, 4, 8], networks: [1, 2], repeats: 1, timeout_s: 60,
                   probe_interval_ms: 5, prepare_vms: false}
    bandwidth: {duration_s: 3, udp_rate: 100M, vms: 2, protocols: [tcp, udp]}
    tuning: {vm_mtu: 1400, tx_checksum_offload: false}   # passed to the lab config as is

Validation follows tenantnet.model.config: unknown keys are refused and every error is a
ConfigError naming the file, the key and the problem, e.g.
``configs/experiments/x.yaml: reachability.instances[1]: expected a positive integer, got 0``.

``reachability.prepare_vms`` (see reachability.py): false (default) makes each VM's
namespace and interface inside its request-to-reply interval, as Lab.add_vm does (the
"boot" is part of the metric, as in the paper); true makes them before the batch, so the
requests reach the controller as one batch and the metric is the networking part alone.

The spec also *generates* the lab configs (nothing else writes them):

- nodes compute1..N (management 198.18.0.11.., transport 198.19.0.11..) and network nodes
  net1..M (198.18.0.2.., 198.19.0.2..);
- K networks: tenant tK owns network netK (key ``tK/netK``), segmentation id 100+K, VM CIDR
  10.K.0.0/24, transport CIDR 198.19.(100+K).0/24; no VMs (experiments place them at run time);
- top-level ``mode:`` = the mode under test, and the ``tuning:`` section as given.

Placements (Spec.placements) are fixed up front, so the prober knows every target's MAC and
IP before any request is sent: VM i (0-based) of a batch goes to network i mod K and, as the
m-th VM of that network, to compute node (m + network index) mod N. Each network's VMs thus
cycle over all compute nodes and the load per node stays even. VM names are vm1..vmN, MACs
02:74:6e:KK:HH:LL (``tn``, network index, per-network index), IPs 10.K.0.(10+m+1).
"""

import copy
import ipaddress
import math
import os
import re
from dataclasses import asdict, dataclass, field

import yaml

from tenantnet.model import config as config_mod
from tenantnet.model.topology import NODE_KINDS
from tenantnet.model.section import Section, typename
from tenantnet.errors import ConfigError

KNOWN_MODES = ("dnb", "cnb")
PROTOCOLS = ("tcp", "udp")
MAX_COMPUTE = 80            # 198.18.0.11 .. 198.18.0.90
MAX_NETWORK_NODES = 8       # 198.18.0.2 .. 198.18.0.9
MAX_NETWORKS = 150          # 198.19.(100+K).0/24 must stay <= 198.19.250.0
VM_HOST_OFFSET = 10         # first VM of a network gets host number 11 (probes take 1..M)
MAX_VMS_PER_NETWORK = 240
UDP_RATE_PRESETS = {"paper": "1M"}      # the paper's UDP experiments ran at 1 Mbit/s
_RATE_RE = re.compile(r"^[0-9]+(\.[0-9]+)?[KMG]?$")


@dataclass
class LabSpec:
    compute_nodes: int = 5
    network_nodes: int = 1
    up_timeout_s: float = 120.0
    nodes: str = "emulated"          # or "vm": node VMs with the kernel datapath
    vm_memory_mb: int = 768


@dataclass
class ReachabilitySpec:
    enabled: bool = True
    instances: list = field(default_factory=lambda: [5, 10, 20, 40, 80])
    networks: list = field(default_factory=lambda: [1, 2, 4, 8])
    repeats: int = 1
    timeout_s: float = 60.0          # from the batch's request time; later = "missing"
    probe_interval_ms: float = 5.0   # per target
    prepare_vms: bool = False        # VMs' namespaces/interfaces made before the clock

    def grid(self):
        """(instances, networks) pairs, in the order they run."""
        return [(n, k) for k in self.networks for n in self.instances]


# The bandwidth part's defaults, the one place for them: BandwidthSpec's fields and
# bandwidth.settings() (which a dict or a Spec is merged over) both take them from here.
BANDWIDTH_DEFAULTS = {
    "duration_s": 20.0,
    "udp_rate": "100M",              # iperf3 -b for UDP ("paper" = "1M")
    "vms": 2,                        # how many VMs are measured
    "protocols": PROTOCOLS,
    "repeats": 1,                    # measurements per VM, protocol and direction
    # not spec keys: the measurement's own knobs (bandwidth.run_bandwidth)
    "network": None,                 # the lab's first network
    "omit_s": 0,                     # iperf3 -O
    "vm_prefix": "bw",
    "reach_timeout_s": 30.0,         # each VM must answer its probe within this
}


@dataclass
class BandwidthSpec:
    enabled: bool = True
    duration_s: float = BANDWIDTH_DEFAULTS["duration_s"]
    udp_rate: str = BANDWIDTH_DEFAULTS["udp_rate"]
    vms: int = BANDWIDTH_DEFAULTS["vms"]
    protocols: list = field(default_factory=lambda: list(BANDWIDTH_DEFAULTS["protocols"]))
    repeats: int = BANDWIDTH_DEFAULTS["repeats"]
    baselines: bool = True           # also measure the same-run baselines


@dataclass
class Placement:
    """One VM of a batch, decided before any request is sent."""
    index: int          # 0-based position in the batch (= request order)
    name: str
    network: str        # network key "tK/netK"
    network_index: int  # K (1-based)
    node: str
    mac: str
    ip: str

    def as_dict(self):
        return asdict(self)


@dataclass
class Spec:
    name: str
    source: str = "<spec>"
    modes: list = field(default_factory=lambda: list(KNOWN_MODES))
    lab: LabSpec = field(default_factory=LabSpec)
    reachability: ReachabilitySpec = field(default_factory=ReachabilitySpec)
    bandwidth: BandwidthSpec = field(default_factory=BandwidthSpec)
    tuning: dict = field(default_factory=dict)
    chains: object = None            # a chainspec.ChainSpec: this is a chain experiment

    def to_dict(self):
        out = {"name": self.name, "source": self.source, "modes": list(self.modes),
               "lab": asdict(self.lab), "reachability": asdict(self.reachability),
               "bandwidth": asdict(self.bandwidth), "tuning": dict(self.tuning)}
        if self.chains is not None:
            out["chains"] = self.chains.to_dict()
        return out

    # -- the generated labs -------------------------------------------------------
    def compute_node_names(self):
        return [f"compute{i}" for i in range(1, self.lab.compute_nodes + 1)]

    def network_node_names(self):
        return [f"net{i}" for i in range(1, self.lab.network_nodes + 1)]

    @staticmethod
    def network_key(k):
        """Key of network number *k* (1-based)."""
        return f"t{k}/net{k}"

    def network_keys(self, networks):
        return [self.network_key(k) for k in range(1, networks + 1)]

    def lab_config(self, mode, networks):
        """The lab config (a dict, ready for YAML) with *networks* networks and no VMs."""
        nodes = [{"name": name, "role": "compute", "management_ip": f"198.18.0.{10 + i}",
                  "transport_ip": f"198.19.0.{10 + i}"}
                 for i, name in enumerate(self.compute_node_names(), start=1)]
        nodes += [{"name": name, "role": "network", "management_ip": f"198.18.0.{1 + i}",
                   "transport_ip": f"198.19.0.{1 + i}"}
                  for i, name in enumerate(self.network_node_names(), start=1)]
        tenants = [{"name": f"t{k}", "networks": [
            {"name": f"net{k}", "segmentation_id": 100 + k, "cidr": f"10.{k}.0.0/24",
             "transport_cidr": f"198.19.{100 + k}.0/24"}]} for k in range(1, networks + 1)]
        cfg = {"mode": mode,
               "controller": {"management_ip": "198.18.0.1"},
               "lab": {"management_cidr": "198.18.0.0/24", "transport_cidr": "198.19.0.0/24",
                       "nodes": self.lab.nodes, "vm_memory_mb": self.lab.vm_memory_mb},
               "nodes": nodes, "tenants": tenants}
        if self.tuning:
            cfg["tuning"] = copy.deepcopy(self.tuning)
        return cfg

    def lab_config_text(self, mode, networks):
        head = (f"# Generated by tenantnet.experiment for spec {self.name!r} ({self.source}): "
                f"mode {mode}, {networks} network(s), no VMs.\n")
        return head + yaml.safe_dump(self.lab_config(mode, networks), sort_keys=False,
                                     default_flow_style=None, width=100)

    def write_lab_config(self, path, mode, networks):
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
        with open(path, "w") as fh:
            fh.write(self.lab_config_text(mode, networks))
        return path

    def placements(self, instances, networks):
        """The batch of *instances* VMs over *networks* networks (see the module docstring)."""
        nodes = self.compute_node_names()
        per_net = [0] * networks
        out = []
        for i in range(instances):
            net = i % networks
            m = per_net[net]
            per_net[net] += 1
            k = net + 1
            host = VM_HOST_OFFSET + m + 1
            out.append(Placement(
                index=i, name=f"vm{i + 1}", network=self.network_key(k), network_index=k,
                node=nodes[(m + net) % len(nodes)],
                mac=f"02:74:6e:{k:02x}:{(m >> 8) & 0xff:02x}:{m & 0xff:02x}",
                ip=str(ipaddress.ip_network(f"10.{k}.0.0/24").network_address + host)))
        return out


# -- loading ------------------------------------------------------------------------
def load_spec(path):
    """Read and validate an experiment spec file; return a Spec. Raises ConfigError."""
    return load_spec_text(config_mod.read_text(path), source=path)


def load_spec_text(text, source="<spec>"):
    return spec_from_dict(config_mod.parse_yaml(text, source), source)


def _number(sec, name, default, minimum=None, maximum=None, integer=False, strict_min=False):
    kinds = int if integer else (int, float)
    value = sec.take(name, kinds, default=default)
    key = sec.key(name)
    what = "an integer" if integer else "a number"
    if minimum is not None and (value <= minimum if strict_min else value < minimum):
        rel = ">" if strict_min else ">="
        raise ConfigError(sec.source, key, f"expected {what} {rel} {minimum}, got {value!r}")
    if maximum is not None and value > maximum:
        raise ConfigError(sec.source, key, f"expected {what} <= {maximum}, got {value!r}")
    return value


def _int_list(sec, name, default, maximum):
    value = sec.take(name, list, default=None)
    key = sec.key(name)
    if value is None:
        return list(default)
    if not value:
        raise ConfigError(sec.source, key, "the list is empty")
    out = []
    for i, item in enumerate(value):
        if isinstance(item, bool) or not isinstance(item, int) or item < 1:
            raise ConfigError(sec.source, f"{key}[{i}]",
                              f"expected a positive integer, got {typename(item)} {item!r}")
        if item > maximum:
            raise ConfigError(sec.source, f"{key}[{i}]", f"{item} is more than {maximum}")
        if item in out:
            raise ConfigError(sec.source, f"{key}[{i}]", f"duplicate value {item}")
        out.append(item)
    return out


def _modes(source, top):
    raw = top.take("modes", list, default=None)
    if raw is None:
        return list(KNOWN_MODES)
    if not raw:
        raise ConfigError(source, "modes", "the list is empty")
    out = []
    for i, m in enumerate(raw):
        if m not in KNOWN_MODES:
            raise ConfigError(source, f"modes[{i}]", f"unknown mode {m!r} "
                                                     f"(known: {', '.join(KNOWN_MODES)})")
        if m in out:
            raise ConfigError(source, f"modes[{i}]", f"duplicate mode {m!r}")
        out.append(m)
    return out


def parse_modes(text, source="--modes"):
    """'dnb,cnb' -> ['dnb', 'cnb'] (validated)."""
    items = [m.strip() for m in str(text).split(",") if m.strip()]
    if not items:
        raise ConfigError(source, "", "give at least one mode, e.g. dnb or dnb,cnb")
    for m in items:
        if m not in KNOWN_MODES:
            raise ConfigError(source, "", f"unknown mode {m!r} (known: {', '.join(KNOWN_MODES)})")
    return list(dict.fromkeys(items))


def normalise_rate(value, source, key):
    """iperf3-style rate: "100M", "1M", "500K", "1G", a number of bit/s, or "paper"."""
    if isinstance(value, bool):
        raise ConfigError(source, key, f"expected a rate such as 100M, got {value!r}")
    if isinstance(value, (int, float)):
        if value <= 0:
            raise ConfigError(source, key, f"expected a positive rate, got {value!r}")
        return str(int(value))
    text = str(value).strip()
    text = UDP_RATE_PRESETS.get(text.lower(), text)
    if not _RATE_RE.match(text.upper()):
        raise ConfigError(source, key, f"{value!r} is not a rate (examples: 100M, 1M, 500K, 1G, "
                                       f"or 'paper' for {UDP_RATE_PRESETS['paper']})")
    return text.upper()


def spec_from_dict(data, source="<spec>"):
    top = Section(source, "", data)
    name = top.take("name", str, required=True)
    if not re.match(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$", name):
        raise ConfigError(source, "name", f"{name!r}: use 1-64 characters from [A-Za-z0-9_.-]")
    modes = _modes(source, top)
    chains = None
    if isinstance(data, dict) and "chains" in data:
        from tenantnet.experiment.chainspec import parse_chains
        for part in ("reachability", "bandwidth"):
            if part in data:
                raise ConfigError(source, part, "a chain experiment (chains:) has no "
                                                f"{part} section: run it as a spec of its own")
        chains = parse_chains(source, top.take("chains", dict, required=True))

    sec = Section(source, "lab", top.take("lab", dict, default={}))
    lab = LabSpec()
    lab.compute_nodes = _number(sec, "compute_nodes", lab.compute_nodes, 1, MAX_COMPUTE, True)
    lab.network_nodes = _number(sec, "network_nodes", lab.network_nodes, 1, MAX_NETWORK_NODES,
                                True)
    lab.up_timeout_s = float(_number(sec, "up_timeout_s", lab.up_timeout_s, 1))
    lab.nodes = sec.take("nodes", str, default=lab.nodes)
    if lab.nodes not in NODE_KINDS:
        raise ConfigError(source, sec.key("nodes"), f"{lab.nodes!r}: expected one of "
                          f"{', '.join(NODE_KINDS)}")
    lab.vm_memory_mb = _number(sec, "vm_memory_mb", lab.vm_memory_mb, 384, 16384, True)
    sec.done()

    sec = Section(source, "reachability", top.take("reachability", dict, default={}))
    r = ReachabilitySpec()
    r.enabled = sec.take("enabled", bool, default=True)
    r.instances = _int_list(sec, "instances", r.instances, 10000)
    r.networks = _int_list(sec, "networks", r.networks, MAX_NETWORKS)
    r.repeats = _number(sec, "repeats", r.repeats, 1, 1000, True)
    r.timeout_s = float(_number(sec, "timeout_s", r.timeout_s, 0, strict_min=True))
    r.probe_interval_ms = float(_number(sec, "probe_interval_ms", r.probe_interval_ms, 1, 100))
    r.prepare_vms = sec.take("prepare_vms", bool, default=False)
    sec.done()
    for n in r.instances:
        for k in r.networks:
            if math.ceil(n / k) > MAX_VMS_PER_NETWORK:
                raise ConfigError(source, "reachability.instances",
                                  f"{n} instances over {k} network(s) puts "
                                  f"{math.ceil(n / k)} VMs on one /24 network "
                                  f"(at most {MAX_VMS_PER_NETWORK})")

    sec = Section(source, "bandwidth", top.take("bandwidth", dict, default={}))
    b = BandwidthSpec()
    b.enabled = sec.take("enabled", bool, default=True)
    b.duration_s = float(_number(sec, "duration_s", b.duration_s, 0, strict_min=True))
    b.udp_rate = normalise_rate(sec.take("udp_rate", (str, int, float), default=b.udp_rate),
                                source, sec.key("udp_rate"))
    b.vms = _number(sec, "vms", b.vms, 1, MAX_VMS_PER_NETWORK, True)
    protos = sec.take("protocols", list, default=list(b.protocols))
    if not protos:
        raise ConfigError(source, "bandwidth.protocols", "the list is empty")
    for i, p in enumerate(protos):
        if p not in PROTOCOLS:
            raise ConfigError(source, f"bandwidth.protocols[{i}]",
                              f"unknown protocol {p!r} (known: {', '.join(PROTOCOLS)})")
    b.protocols = list(dict.fromkeys(protos))
    b.repeats = _number(sec, "repeats", b.repeats, 1, 100, True)
    b.baselines = sec.take("baselines", bool, default=True)
    sec.done()

    tuning = top.take("tuning", dict, default={})
    config_mod.parse_tuning(source, tuning)         # same checks (and messages) as a lab config
    top.done()
    if chains is not None:
        r.enabled = b.enabled = False
        if lab.nodes != "emulated":
            raise ConfigError(source, "lab.nodes", "the chain experiment runs on emulated "
                                                   "nodes only (for now)")
        if lab.compute_nodes < 2 and "spread" in chains.layouts:
            raise ConfigError(source, "chains.layouts", "the spread layout needs at least "
                                                        "two compute nodes (lab.compute_nodes)")
    return Spec(name=name, source=source, modes=modes, lab=lab, reachability=r, bandwidth=b,
                tuning=dict(tuning), chains=chains)


def check_mode(spec, mode):
    """Raise ConfigError when tenantnet.model.config does not accept a lab config in *mode*
    (for instance while a mode is not implemented yet). Nothing is created."""
    text = spec.lab_config_text(mode, 1)
    try:
        config_mod.load_text(text, source=f"generated {mode} lab config")
    except ConfigError as exc:
        raise ConfigError(spec.source, "modes",
                          f"mode {mode!r} is refused by this tenantnet ({exc.problem}); "
                          f"run only the supported modes, e.g. --modes dnb") from None


def mode_unsupported(spec, mode):
    """The reason *mode* cannot run here, or None."""
    try:
        check_mode(spec, mode)
    except ConfigError as exc:
        return str(exc)
    return None
