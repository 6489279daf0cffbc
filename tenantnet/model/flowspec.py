"""Flows as plain data, independent of os-ken.

The pure logic (tenantnet.model.flows) returns lists of Flow; tenantnet.southbound.ofctl turns them into
os-ken OpenFlow 1.3 messages. Port references are *names* (str) until the southbound
resolves them with the bridge's name->ofport map, so desired flows are a pure function of
the topology model.

Conventions:
  match keys are os-ken OFPMatch field names: in_port, eth_dst, eth_type, vlan_vid, tunnel_id.
    vlan_vid holds the plain VID (1..4094); the OFPVID_PRESENT bit is added by ofctl.
    in_port holds a port name (str) or a number (int).
  actions are tuples:
    ("output", port)          port: name (str), number (int) or "NORMAL" / "IN_PORT" / "LOCAL"
    ("push_vlan",)            push an 802.1Q header (ethertype 0x8100)
    ("pop_vlan",)
    ("set_field", field, v)   e.g. ("set_field", "vlan_vid", 100), ("set_field", "tunnel_id", 100)
  an empty action list with goto=None is an explicit drop.
"""

import hashlib
from dataclasses import dataclass, field

# High 32 bits of every cookie we install: "TNNT". The low 32 bits are a hash of the
# resolved flow, so "installed == desired" is a set comparison of cookies.
COOKIE_PREFIX = 0x544E4E54
COOKIE_MASK_OURS = 0xFFFFFFFF00000000
RESERVED_PORTS = ("NORMAL", "IN_PORT", "LOCAL", "CONTROLLER", "FLOOD", "ALL")


@dataclass(frozen=True)
class Flow:
    table: int
    priority: int
    match: tuple = ()          # sorted tuple of (field, value)
    actions: tuple = ()        # tuple of action tuples
    goto: int = None           # goto-table, applied after actions
    rule: str = ""             # what the flow is for, e.g. "local-ingress" (not sent to the switch)

    @staticmethod
    def make(table, priority, match=None, actions=(), goto=None, rule=""):
        return Flow(table, priority, tuple(sorted((match or {}).items())),
                    tuple(tuple(a) for a in actions), goto, rule)

    @property
    def match_dict(self):
        return dict(self.match)

    def port_names(self):
        """Every port name this flow refers to (for resolution to ofport numbers)."""
        names = set()
        m = self.match_dict
        if isinstance(m.get("in_port"), str) and m["in_port"] not in RESERVED_PORTS:
            names.add(m["in_port"])
        for act in self.actions:
            if act[0] == "output" and isinstance(act[1], str) and act[1] not in RESERVED_PORTS:
                names.add(act[1])
        return names

    def resolve(self, portmap):
        """Return a copy with port names replaced by numbers from *portmap* (name -> ofport).

        Raises KeyError naming the port when it is not (yet) on the bridge."""
        match = self.match
        for i, (key, value) in enumerate(match):
            if key == "in_port":
                if isinstance(value, str) and value not in RESERVED_PORTS:
                    match = match[:i] + (("in_port", portmap[value]),) + match[i + 1:]
                break
        actions = self.actions
        for act in actions:
            if act[0] == "output" and isinstance(act[1], str) and act[1] not in RESERVED_PORTS:
                actions = tuple([("output", portmap[a[1]]) if a[0] == "output" and
                                 isinstance(a[1], str) and a[1] not in RESERVED_PORTS else a
                                 for a in actions])
                break
        if match is self.match and actions is self.actions:
            return self                 # nothing to resolve: the same (immutable) flow
        # What the frozen dataclass's __init__ does, field by field, at a third of its
        # cost (a sync resolves every desired flow).
        flow = object.__new__(Flow)
        flow.__dict__.update(table=self.table, priority=self.priority, match=match,
                             actions=actions, goto=self.goto, rule=self.rule)
        return flow

    def cookie(self, prefix=COOKIE_PREFIX):
        """The cookie of this (resolved) flow: prefix | 32-bit hash of its content.

        *prefix* (32 bits) says whose flow it is: tenantnet's COOKIE_PREFIX by default;
        another app on the same bridge (ryu_apps.tenant_acl) uses a prefix of its own, so
        neither app's sync ever deletes the other's flows."""
        low = self.__dict__.get("cookie_low")
        if low is None:
            text = repr((self.table, self.priority, self.match, self.actions, self.goto))
            low = int.from_bytes(hashlib.sha256(text.encode()).digest()[:4], "big")
            # kept beside the (frozen) fields: a flow's content, hence its hash, never changes
            self.__dict__["cookie_low"] = low
        return (prefix << 32) | low

    def __str__(self):
        m = ",".join(f"{k}={v}" for k, v in self.match)
        a = ",".join(":".join(str(x) for x in act) for act in self.actions) or "drop"
        g = f",goto:{self.goto}" if self.goto is not None else ""
        return f"table={self.table},priority={self.priority},{m} actions={a}{g}"


@dataclass
class BridgeFlows:
    """All desired flows of one bridge, keyed by (node, bridge)."""
    node: str
    bridge: str
    dpid: int
    flows: list = field(default_factory=list)
    network: str = None
