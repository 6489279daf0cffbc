"""Reading one mapping of a config: `Section` (typed keys, unknown keys refused) and the
checkers of single values (names, IPv4 addresses and networks, MACs).

Every problem is a ConfigError(source, key, problem). model.config (the YAML file),
model.placements (VMs, network functions, chains) and the experiment specs read their
mappings with these."""

import ipaddress

from tenantnet.model import naming
from tenantnet.errors import ConfigError


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


def parse_name(source, key, value, what):
    if not isinstance(value, str) or not naming.NAME_RE.match(value):
        raise ConfigError(source, key, f"{what} name {value!r} must start with a lowercase letter "
                                       "and contain only a-z, 0-9, '_' and '-'")
    if len(value) > naming.MAX_NAME:
        raise ConfigError(source, key, f"{what} name {value!r} is too long "
                                       f"({len(value)} > {naming.MAX_NAME} characters)")
    return value


def parse_ip(source, key, value):
    try:
        return str(ipaddress.IPv4Address(value))
    except (ipaddress.AddressValueError, ValueError):
        raise ConfigError(source, key, f"{value!r} is not an IPv4 address") from None


def parse_cidr(source, key, value):
    try:
        return ipaddress.IPv4Network(value, strict=True)
    except (ipaddress.AddressValueError, ipaddress.NetmaskValueError, ValueError) as exc:
        raise ConfigError(source, key, f"{value!r} is not an IPv4 network in CIDR form ({exc})") \
            from None


def parse_mac(source, key, value):
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
