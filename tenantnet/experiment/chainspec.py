"""The ``chains:`` section of an experiment spec: the chain-length experiment (issue 11).

A spec with a ``chains:`` section is a chain experiment (``spec.Spec.chains``); it has no
``reachability:`` or ``bandwidth:`` section. ``modes``, ``lab`` and ``tuning`` are the
spec's own (``spec.py``)::

    chains:
      lengths: [0, 1, 2, 4, 8]     # n, functions in the chain (0: no chain, VM to VM)
      layouts: [same, spread]      # same: every function on the VMs' node; spread: round
                                   # robin over the other compute nodes (hops cross GRE)
      function: forward            # the kind of every hop of the length part
      traffic:                     # iperf3 runs per point, by name
        - {name: tcp-1, protocol: tcp, streams: 1}
        - {name: tcp-4, protocol: tcp, streams: 4}
        - {name: udp-4, protocol: udp, streams: 4, rate: max}   # max: iperf3 -b 0
      duration_s: 3
      repeats: 1
      firewall:                    # throughput against iptables rule count
        enabled: true
        rules: [0, 10, 100, 1000]  # total rules of the chain
        layouts: [single, spread]  # single: one firewall with every rule; spread: the
                                   # rules split evenly over spread_over firewalls
        spread_over: 4
        stateful: [false]          # with true, a conntrack rule comes first
        traffic: [udp-4]           # names from chains.traffic

Every error is a ConfigError naming the file, the key and the problem, and unknown keys
are refused, as in the rest of the spec.
"""

import re
from dataclasses import asdict, dataclass, field

from tenantnet.errors import ConfigError
from tenantnet.model.section import Section, typename

MAX_LENGTH = 16
LAYOUTS = ("same", "spread")
FIREWALL_LAYOUTS = ("single", "spread")
FUNCTION_KINDS = ("forward", "firewall", "shaper")
MAX_RULES = 100000
MAX_STREAMS = 16
_TRAFFIC_NAME = re.compile(r"^[a-z][a-z0-9_-]{0,31}$")
_RATE = re.compile(r"^[0-9]+(\.[0-9]+)?[KMG]?$")


@dataclass
class Traffic:
    """One kind of load: iperf3 with *streams* parallel streams; *rate* is UDP's -b (per
    stream; "0" = as fast as the sender can)."""
    name: str
    protocol: str = "tcp"
    streams: int = 1
    rate: str = "0"


def default_traffic():
    return [Traffic("tcp-1", "tcp", 1), Traffic("tcp-4", "tcp", 4),
            Traffic("udp-4", "udp", 4, "0")]


@dataclass
class FirewallSpec:
    enabled: bool = True
    rules: list = field(default_factory=lambda: [0, 10, 100, 1000])
    layouts: list = field(default_factory=lambda: list(FIREWALL_LAYOUTS))
    spread_over: int = 4
    stateful: list = field(default_factory=lambda: [False])
    traffic: list = field(default_factory=lambda: ["udp-4"])


@dataclass
class ChainSpec:
    lengths: list = field(default_factory=lambda: list(range(9)))
    layouts: list = field(default_factory=lambda: list(LAYOUTS))
    function: str = "forward"
    traffic: list = field(default_factory=default_traffic)
    duration_s: int = 3
    repeats: int = 1
    firewall: FirewallSpec = field(default_factory=FirewallSpec)

    def to_dict(self):
        return asdict(self)

    def traffic_named(self, name):
        return next(t for t in self.traffic if t.name == name)

    def max_functions(self):
        """How many hop functions the length part needs per layout."""
        return max(self.lengths)

    def points(self):
        """How many iperf3 runs a mode makes (for progress and `experiment check`)."""
        chains = sum(1 for n in self.lengths if n == 0) + \
            sum(len(self.layouts) for n in self.lengths if n > 0)
        runs = chains * len(self.traffic) * self.repeats
        fw = self.firewall
        if fw.enabled:
            runs += (len(fw.rules) * len(fw.layouts) * len(fw.stateful) * len(fw.traffic)
                     * self.repeats)
        return runs


def _int(sec, name, default, low, high):
    value = sec.take(name, int, default=default)
    if not low <= value <= high:
        raise ConfigError(sec.source, sec.key(name),
                          f"expected an integer from {low} to {high}, got {value!r}")
    return value


def _unique_list(sec, name, default, check, what):
    """The list at key *name* of *sec* (a copy of *default* when absent): not empty, every
    item accepted by check(key, item) (which raises ConfigError), no item twice."""
    value = sec.take(name, list, default=None)
    if value is None:
        return list(default)
    if not value:
        raise ConfigError(sec.source, sec.key(name), "the list is empty")
    out = []
    for i, item in enumerate(value):
        key = f"{sec.key(name)}[{i}]"
        check(key, item)
        if item in out:
            raise ConfigError(sec.source, key, f"duplicate {what} {item!r}")
        out.append(item)
    return out


def _choices(sec, name, default, allowed, what):
    def check(key, item):
        if item not in allowed:
            raise ConfigError(sec.source, key, f"unknown {what} {item!r} (known: "
                                               f"{', '.join(map(str, allowed))})")
    return _unique_list(sec, name, default, check, what)


def _ints(sec, name, default, low, high):
    def check(key, item):
        if isinstance(item, bool) or not isinstance(item, int) or not low <= item <= high:
            raise ConfigError(sec.source, key, f"expected an integer from {low} to {high}, "
                                               f"got {typename(item)} {item!r}")
    return sorted(_unique_list(sec, name, default, check, "value"))   # defaults are sorted


def _rate(source, key, value):
    if isinstance(value, bool):
        raise ConfigError(source, key, f"expected a rate such as 500M or max, got {value!r}")
    text = str(value).strip().upper()
    if text == "MAX":
        return "0"
    if not _RATE.match(text):
        raise ConfigError(source, key, f"{value!r} is not a rate (examples: 500M, 1G, or max "
                                       "for as fast as the sender can)")
    return text


def _traffic(source, path, raw):
    if raw is None:
        return default_traffic()
    if not isinstance(raw, list) or not raw:
        raise ConfigError(source, path, "expected a non-empty list of {name, protocol, "
                                        "streams, rate}")
    out = []
    for i, item in enumerate(raw):
        sec = Section(source, f"{path}[{i}]", item)
        name = sec.take("name", str, required=True)
        if not _TRAFFIC_NAME.match(name):
            raise ConfigError(source, sec.key("name"), f"{name!r}: use a lowercase letter "
                                                       "then up to 31 of [a-z0-9_-]")
        if any(t.name == name for t in out):
            raise ConfigError(source, sec.key("name"), f"duplicate traffic name {name!r}")
        proto = sec.take("protocol", str, default="tcp")
        if proto not in ("tcp", "udp"):
            raise ConfigError(source, sec.key("protocol"),
                              f"unknown protocol {proto!r} (known: tcp, udp)")
        streams = _int(sec, "streams", 1, 1, MAX_STREAMS)
        rate = sec.take("rate", (str, int, float), default=None)
        if rate is not None and proto != "udp":
            raise ConfigError(source, sec.key("rate"), "a rate applies to UDP only (TCP "
                                                       "always sends as fast as it can)")
        rate = _rate(source, sec.key("rate"), rate) if rate is not None else "0"
        sec.done()
        out.append(Traffic(name, proto, streams, rate))
    return out


def parse_chains(source, raw):
    """ChainSpec from the ``chains:`` mapping *raw* of spec file *source*."""
    sec = Section(source, "chains", raw)
    c = ChainSpec()
    c.lengths = _ints(sec, "lengths", c.lengths, 0, MAX_LENGTH)
    c.layouts = _choices(sec, "layouts", c.layouts, LAYOUTS, "layout")
    c.function = sec.take("function", str, default=c.function)
    if c.function not in FUNCTION_KINDS:
        raise ConfigError(source, sec.key("function"), f"unknown function kind {c.function!r} "
                                                       f"(known: {', '.join(FUNCTION_KINDS)})")
    c.traffic = _traffic(source, sec.key("traffic"), sec.take("traffic", list, default=None))
    c.duration_s = _int(sec, "duration_s", c.duration_s, 1, 600)
    c.repeats = _int(sec, "repeats", c.repeats, 1, 100)
    if len(c.lengths) < 2:
        raise ConfigError(source, sec.key("lengths"), "give at least two lengths: the loss "
                                                      "per hop is fitted over them")
    fsec = Section(source, sec.key("firewall"), sec.take("firewall", dict, default={}))
    fw = FirewallSpec()
    fw.enabled = fsec.take("enabled", bool, default=True)
    fw.rules = _ints(fsec, "rules", fw.rules, 0, MAX_RULES)
    fw.layouts = _choices(fsec, "layouts", fw.layouts, FIREWALL_LAYOUTS, "layout")
    fw.spread_over = _int(fsec, "spread_over", fw.spread_over, 2, MAX_LENGTH)
    fw.stateful = _choices(fsec, "stateful", fw.stateful, (False, True), "setting")
    names = [t.name for t in c.traffic]
    default = [t.name for t in c.traffic if t.protocol == "udp"][:1] or names[:1]
    fw.traffic = _choices(fsec, "traffic", default, names, "traffic name")
    fsec.done()
    c.firewall = fw
    sec.done()
    return c
