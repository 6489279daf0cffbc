"""The base of every network function kind: IP forwarding through its one port, and a
counter of what it forwarded."""

import importlib
import pkgutil
import re

from tenantnet.errors import LabError

SEEN = "tenantnet-seen"           # the mangle/FORWARD rule that counts forwarded packets
_KINDS = {}


class NetworkFunction:
    """A function endpoint. *run(cmd_list)* runs a command inside its namespace (raising
    LabError on failure) and returns the CompletedProcess; *options*: its kind's settings
    (model.config.FUNCTION_KINDS)."""

    kind = None

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        if cls.kind:
            _KINDS[cls.kind] = cls

    def __init__(self, name, options, run, interface="eth0"):
        self.name, self.options, self.run, self.interface = name, dict(options), run, interface

    # -- building ------------------------------------------------------------------
    def setup(self):
        """Forward IPv4 back out of the one port, quietly (no ICMP redirect telling the
        sender to bypass us), count it, then the kind's own part."""
        for key in ("all", "default", self.interface):
            self.run(["sysctl", "-qw", f"net.ipv4.conf.{key}.send_redirects=0"])
        self.run(["sysctl", "-qw", "net.ipv4.ip_forward=1"])
        self.run(["iptables", "-w", "-t", "mangle", "-A", "FORWARD", "-m", "comment",
                  "--comment", SEEN])
        self.configure()

    def configure(self):
        """The kind's own set-up (none for plain forwarding)."""

    # -- reading ------------------------------------------------------------------
    def counters(self):
        """What it saw: {"forwarded": packets} plus the kind's own counters."""
        out = {"forwarded": self.rule_packets("mangle", "FORWARD", SEEN)}
        out.update(self.kind_counters())
        return out

    def kind_counters(self):
        return {}

    def rule_packets(self, table, chain, comment):
        """Packets counted by the rule of *table*/*chain* with *comment*."""
        text = self.run(["iptables", "-w", "-t", table, "-L", chain, "-v", "-x", "-n"]).stdout
        for line in text.splitlines():
            if f"/* {comment} */" in line:
                return int(line.split()[0])
        raise LabError(f"function {self.name}: no rule {comment!r} in {table}/{chain}")

    def restore(self, table, lines):
        """Append *lines* (iptables-save rule lines) to *table* in one iptables-restore."""
        text = "\n".join([f"*{table}", *lines, "COMMIT", ""])
        self.run(["sh", "-c", f"iptables-restore -w --noflush <<'TENANTNET_EOF'\n{text}"
                              "TENANTNET_EOF"])


def kinds():
    """kind name -> class, for every module of this package."""
    from tenantnet.lab import functions as package
    for mod in pkgutil.iter_modules(package.__path__):
        if re.match(r"^[a-z][a-z0-9_]*$", mod.name) and mod.name != "base":
            importlib.import_module(f"{package.__name__}.{mod.name}")
    return dict(_KINDS)


def for_function(fn, run):
    """The NetworkFunction object of model function *fn* (a topology.Function, or a dict
    of the API's wire.Function)."""
    if isinstance(fn, dict):
        name, kind, options = fn["name"], fn["function"], fn.get("options") or {}
    else:
        name, kind, options = fn.name, fn.nf, dict(fn.options)
    cls = kinds().get(kind)
    if cls is None:
        raise LabError(f"function {name}: the lab has no kind {kind!r} "
                       f"(known: {', '.join(sorted(kinds()))})")
    return cls(name, options, run)
