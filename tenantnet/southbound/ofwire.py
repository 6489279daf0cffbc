"""OpenFlow 1.3 wire bytes for the few message shapes a flow sync sends, packed with
`struct` in one pass: flow-mods of tenantnet's Flow (tenantnet.model.flowspec), deletes
by cookie, and ONF bundle adds wrapping them.

os-ken builds each of these from a tree of objects (OFPMatch, OFPAction*, OFPInstruction*,
netaddr for every MAC), which cost about 100 µs a flow; this costs a few. The bytes are
the ones os-ken's serializer makes for the same flow (same OXM order: by field number),
which tests/test_ofwire.py checks. A Flow with a field or action not listed here gets
None from flow_mod(), and the caller uses os-ken's classes for it.

xid: messages are built with xid 0; with_xid() stamps one in."""

import socket
import struct

OFP_VERSION = 0x04
OFPT_EXPERIMENTER = 4
OFPT_FLOW_MOD = 14
OFPFC_ADD = 0
OFPFC_DELETE = 3
OFPFC_DELETE_STRICT = 4
OFPTT_ALL = 0xFF
OFP_NO_BUFFER = 0xFFFFFFFF
OFPP_ANY = 0xFFFFFFFF
OFPG_ANY = 0xFFFFFFFF
OFPCML_NO_BUFFER = 0xFFFF
OFPVID_PRESENT = 0x1000
COOKIE_ALL_ONES = 0xFFFFFFFFFFFFFFFF
ONF_EXPERIMENTER_ID = 0x4F4E4600
ONF_ET_BUNDLE_ADD_MESSAGE = 2301

RESERVED_PORTS = {"IN_PORT": 0xFFFFFFF8, "NORMAL": 0xFFFFFFFA, "FLOOD": 0xFFFFFFFB,
                  "ALL": 0xFFFFFFFC, "CONTROLLER": 0xFFFFFFFD, "LOCAL": 0xFFFFFFFE}

_HEADER = struct.Struct("!BBHI")
_FLOW_MOD = struct.Struct("!BBHIQQBBHHHIIIH2x")       # header + ofp_flow_mod, no match
_BUNDLE_ADD = struct.Struct("!BBHIIIIxxH")             # header + ONF bundle add, no message
_XID = struct.Struct("!I")


def _int(value):
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(value)
    return value


def _oxm_packer(num, fmt, convert):
    """value -> the whole OXM TLV (OpenFlow basic class, no mask)."""
    packer = struct.Struct("!HBB" + fmt)
    head = (0x8000, num << 1, packer.size - 4)

    def pack(value):
        return packer.pack(*head, convert(value))
    return pack


def _mac(value):
    raw = bytes.fromhex(value.replace(":", "")) if isinstance(value, str) else b""
    if len(raw) != 6 or value.count(":") != 5:
        raise ValueError(value)
    return raw


def _ipv4(value):
    if not isinstance(value, str) or "/" in value:
        raise ValueError(value)
    return socket.inet_aton(value)


def _vid(value):
    return OFPVID_PRESENT | _int(value)


def _port(value):
    if isinstance(value, str):
        return RESERVED_PORTS[value]
    return _int(value)


# field name -> (OXM field number, value -> OXM bytes); os-ken orders fields by number
_OXM_FIELDS = {name: (num, fmt, conv) for name, num, fmt, conv in (
    ("in_port", 0, "I", _port),
    ("eth_dst", 3, "6s", _mac),
    ("eth_src", 4, "6s", _mac),
    ("eth_type", 5, "H", _int),
    ("vlan_vid", 6, "H", _vid),
    ("ipv4_src", 11, "4s", _ipv4),
    ("ipv4_dst", 12, "4s", _ipv4),
    ("arp_spa", 22, "4s", _ipv4),
    ("arp_tpa", 23, "4s", _ipv4),
    ("tunnel_id", 38, "Q", _int),
)}
_OXM = {name: (num, _oxm_packer(num, fmt, conv))
        for name, (num, fmt, conv) in _OXM_FIELDS.items()}
_MATCH_HEAD = struct.Struct("!HH")
_OUTPUT = struct.Struct("!HHIH6x")
_PUSH_VLAN = struct.pack("!HHH2x", 17, 8, 0x8100)
_POP_VLAN = struct.pack("!HH4x", 18, 8)
_APPLY_HEAD = struct.Struct("!HH4x")
_GOTO = struct.Struct("!HHB3x")
_ZEROS = bytes(8)


def _oxm(key, value):
    return _OXM[key][1](value)


def _match(match):
    """ofp_match bytes of a match tuple ((field, value), ...): one packer per shape (the
    fields, in the tuple's order), made once, fields in os-ken's order (by number)."""
    shape = tuple([kv[0] for kv in match])
    return _remembered(_MATCH_SHAPES, 1024, shape, _match_packer)(match)


_MATCH_SHAPES = {}                  # the fields of a match, in order -> its packer


def _remembered(cache, limit, key, make):
    """cache[key], made by make(key) the first time; *cache* starts afresh at *limit*
    entries (a bound, not an LRU: the keys are few shapes and shared instructions)."""
    value = cache.get(key)
    if value is None:
        value = make(key)
        if len(cache) >= limit:
            cache.clear()
        cache[key] = value
    return value


def _match_packer(shape):
    """match -> ofp_match bytes for matches of *shape*; KeyError for a field not listed."""
    order = sorted(range(len(shape)), key=lambda i: _OXM[shape[i]][0])
    fmt, heads = "!HH", []
    for i in order:
        num, fmt_i, conv = _OXM_FIELDS[shape[i]]
        size = struct.calcsize("!" + fmt_i)
        fmt += "I" + fmt_i
        heads.append((i, 0x80000000 | num << 9 | size, conv))
    length = struct.calcsize(fmt)
    packer = struct.Struct(fmt + "x" * (-length % 8))

    def pack(match):
        args = [1, length]
        for i, head, conv in heads:
            args.append(head)
            args.append(conv(match[i][1]))
        return packer.pack(*args)
    return pack


def _action(act):
    kind = act[0]
    if kind == "output":
        port = _port(act[1])
        return _OUTPUT.pack(0, 16, port, OFPCML_NO_BUFFER if port == 0xFFFFFFFD else 0)
    if kind == "push_vlan" and len(act) == 1:
        return _PUSH_VLAN
    if kind == "pop_vlan" and len(act) == 1:
        return _POP_VLAN
    if kind == "set_field" and len(act) == 3:
        oxm = _oxm(act[1], act[2])
        length = 4 + len(oxm)
        return _MATCH_HEAD.pack(25, length + (-length % 8)) + oxm + _ZEROS[:-length % 8]
    raise ValueError(act)


_INSTRUCTIONS = {}                  # (actions, goto) -> their bytes: flows share them


def _instructions(flow):
    return _remembered(_INSTRUCTIONS, 4096, (flow.actions, flow.goto),
                       lambda _key: _encode_instructions(flow))


def _encode_instructions(flow):
    out = b""
    if flow.actions:
        acts = b"".join([_action(a) for a in flow.actions])
        out = _APPLY_HEAD.pack(4, 8 + len(acts)) + acts
    if flow.goto is not None:
        out += _GOTO.pack(1, 8, flow.goto)
    return out


def flow_mod(flow, cookie, command=OFPFC_ADD, cookie_mask=0):
    """OFPT_FLOW_MOD bytes (xid 0) for a *resolved* Flow, or None when the flow uses a
    field or action this module does not encode (the caller then uses os-ken)."""
    try:
        body = _match(flow.match) + _instructions(flow)
        if not 0 <= flow.table <= 0xFE or not 0 <= flow.priority <= 0xFFFF:
            return None
    except (KeyError, ValueError, TypeError, struct.error):
        return None
    length = _FLOW_MOD.size + len(body)
    return _FLOW_MOD.pack(OFP_VERSION, OFPT_FLOW_MOD, length, 0, cookie, cookie_mask,
                          flow.table, command, 0, 0, flow.priority, OFP_NO_BUFFER,
                          OFPP_ANY, OFPG_ANY, 0) + body


_EMPTY_MATCH = _match(())


def delete_cookie(cookie):
    """OFPT_FLOW_MOD bytes (xid 0): delete every flow whose cookie is exactly *cookie*,
    in every table."""
    length = _FLOW_MOD.size + len(_EMPTY_MATCH)
    return _FLOW_MOD.pack(OFP_VERSION, OFPT_FLOW_MOD, length, 0, cookie, COOKIE_ALL_ONES,
                          OFPTT_ALL, OFPFC_DELETE, 0, 0, 0, OFP_NO_BUFFER, OFPP_ANY,
                          OFPG_ANY, 0) + _EMPTY_MATCH


def with_xid(msg, xid):
    """*msg* (bytes of one message) with its header's xid set to *xid*."""
    return msg[:4] + _XID.pack(xid) + msg[8:]


def bundle_add(bundle_id, flags, msg, xid):
    """ONF bundle add (OF1.3 extension) carrying *msg*; inner and outer xid are *xid*."""
    return _BUNDLE_ADD.pack(OFP_VERSION, OFPT_EXPERIMENTER, _BUNDLE_ADD.size + len(msg), xid,
                            ONF_EXPERIMENTER_ID, ONF_ET_BUNDLE_ADD_MESSAGE, bundle_id,
                            flags) + msg[:4] + _XID.pack(xid) + msg[8:]
