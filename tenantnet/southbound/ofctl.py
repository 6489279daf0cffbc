"""Flow (tenantnet.model.flowspec) -> OpenFlow 1.3 messages, and the sync plan.

Pure translation: nothing here sends, waits or keeps state. Every message is built with
the datapath's own classes, ``dp.ofproto`` / ``dp.ofproto_parser``, or, for the flow-mods
and bundle adds of a sync (``*_bytes``), packed directly as the same bytes by
tenantnet.southbound.ofwire; nothing else is imported from a framework: the same code serves an os-ken Datapath (tenantnet's
controller, our ryu-manager) and a Ryu one (ryu_apps.tenant_l2 under the real Ryu's
ryu-manager), or ``ProtocolDesc(0x04)`` of either in unit tests.

Sync model: every flow an owner installs carries cookie = prefix<<32 | hash(resolved flow),
so "installed == desired" is a set comparison of cookies. The owner is the 32-bit prefix:
tenantnet's COOKIE_PREFIX ("TNNT") by default, another app's own (ryu_apps.tenant_acl:
"TACL"). plan_sync() says which desired flows to add and which installed cookies of that
prefix to delete; a delete removes exactly one cookie (OFPFC_DELETE, table ALL,
cookie_mask all ones), so flows of another prefix, or with cookie 0, are never hit.
"""

import struct

from tenantnet.model.flowspec import COOKIE_MASK_OURS, COOKIE_PREFIX
from tenantnet.southbound import ofwire

OFP13 = 0x04
ADD = "add"
DELETE = "delete"

COOKIE_ALL_ONES = 0xFFFFFFFFFFFFFFFF

_RESERVED_PORT_CONSTS = {
    "NORMAL": "OFPP_NORMAL",
    "IN_PORT": "OFPP_IN_PORT",
    "LOCAL": "OFPP_LOCAL",
    "CONTROLLER": "OFPP_CONTROLLER",
    "FLOOD": "OFPP_FLOOD",
    "ALL": "OFPP_ALL",
}


# -- flows -> messages -----------------------------------------------------------------

def _port_no(ofp, port, what):
    if isinstance(port, bool):
        raise ValueError(f"{what}: bad port {port!r}")
    if isinstance(port, int):
        return port
    if isinstance(port, str) and port in _RESERVED_PORT_CONSTS:
        return getattr(ofp, _RESERVED_PORT_CONSTS[port])
    raise ValueError(f"{what}: port {port!r} is not resolved to an ofport number "
                     f"(call Flow.resolve(portmap) first)")


def build_match(dp, match):
    """OFPMatch from a Flow.match tuple/dict (vlan_vid gets OFPVID_PRESENT)."""
    ofp, parser = dp.ofproto, dp.ofproto_parser
    fields = {}
    for key, value in dict(match).items():
        if key == "vlan_vid":
            fields[key] = ofp.OFPVID_PRESENT | int(value)
        elif key == "in_port":
            fields[key] = _port_no(ofp, value, "match in_port")
        else:                       # eth_dst, eth_type, tunnel_id, ... as is
            fields[key] = value
    return parser.OFPMatch(**fields)


def build_actions(dp, actions):
    """List of OFPAction* from Flow.actions tuples."""
    ofp, parser = dp.ofproto, dp.ofproto_parser
    out = []
    for act in actions:
        kind = act[0]
        if kind == "output":
            port = _port_no(ofp, act[1], "output")
            max_len = ofp.OFPCML_NO_BUFFER if port == ofp.OFPP_CONTROLLER else 0
            out.append(parser.OFPActionOutput(port, max_len))
        elif kind == "push_vlan":
            out.append(parser.OFPActionPushVlan(0x8100))
        elif kind == "pop_vlan":
            out.append(parser.OFPActionPopVlan())
        elif kind == "set_field":
            _, field, value = act
            if field == "vlan_vid":
                value = ofp.OFPVID_PRESENT | int(value)
            out.append(parser.OFPActionSetField(**{field: value}))
        else:
            raise ValueError(f"unknown action {act!r}")
    return out


def to_flow_mod(dp, flow, command=ADD, prefix=COOKIE_PREFIX):
    """OFPFlowMod (OF1.3) for a *resolved* Flow; cookie = flow.cookie(prefix).

    command: ADD (default) or DELETE (strict delete of exactly this flow), or an
    OFPFC_* number."""
    ofp, parser = dp.ofproto, dp.ofproto_parser
    if command == ADD:
        command = ofp.OFPFC_ADD
    elif command == DELETE:
        command = ofp.OFPFC_DELETE_STRICT
    inst = []
    if flow.actions:
        inst.append(parser.OFPInstructionActions(ofp.OFPIT_APPLY_ACTIONS,
                                                 build_actions(dp, flow.actions)))
    if flow.goto is not None:
        inst.append(parser.OFPInstructionGotoTable(flow.goto))
    deleting = command in (ofp.OFPFC_DELETE, ofp.OFPFC_DELETE_STRICT)
    return parser.OFPFlowMod(
        dp, cookie=flow.cookie(prefix), cookie_mask=COOKIE_ALL_ONES if deleting else 0,
        table_id=flow.table, command=command, idle_timeout=0, hard_timeout=0,
        priority=flow.priority, buffer_id=ofp.OFP_NO_BUFFER,
        out_port=ofp.OFPP_ANY, out_group=ofp.OFPG_ANY, flags=0,
        match=build_match(dp, flow.match), instructions=inst)


def delete_cookie_msg(dp, cookie):
    """OFPFlowMod deleting every flow whose cookie is exactly *cookie*, in all tables."""
    ofp, parser = dp.ofproto, dp.ofproto_parser
    return parser.OFPFlowMod(
        dp, cookie=cookie, cookie_mask=COOKIE_ALL_ONES, table_id=ofp.OFPTT_ALL,
        command=ofp.OFPFC_DELETE, idle_timeout=0, hard_timeout=0, priority=0,
        buffer_id=ofp.OFP_NO_BUFFER, out_port=ofp.OFPP_ANY, out_group=ofp.OFPG_ANY,
        flags=0, match=parser.OFPMatch(), instructions=[])


def flow_mod_bytes(dp, flow, prefix=COOKIE_PREFIX):
    """The bytes (xid 0) of to_flow_mod(dp, flow, ADD, prefix): packed directly
    (ofwire) when the flow's fields allow it, else serialized by the datapath's classes."""
    raw = None
    if dp.ofproto.OFP_VERSION == OFP13:
        raw = ofwire.flow_mod(flow, flow.cookie(prefix))
    if raw is None:
        msg = to_flow_mod(dp, flow, prefix=prefix)
        msg.set_xid(0)
        msg.serialize()
        raw = bytes(msg.buf)
    return raw


def delete_cookie_bytes(dp, cookie):
    """The bytes (xid 0) of delete_cookie_msg(dp, cookie)."""
    if dp.ofproto.OFP_VERSION == OFP13:
        return ofwire.delete_cookie(cookie)
    msg = delete_cookie_msg(dp, cookie)
    msg.set_xid(0)
    msg.serialize()
    return bytes(msg.buf)


def message_bytes(dp, what, prefix=COOKIE_PREFIX):
    """The bytes (xid 0) of one sync message: a resolved Flow to add (its cookie with
    *prefix*), or an int cookie to delete."""
    if isinstance(what, int):
        return delete_cookie_bytes(dp, what)
    return flow_mod_bytes(dp, what, prefix)


def bundle_add_bytes(dp, bundle_id, msg, xid):
    """The bytes of bundle_add(dp, bundle_id, MSG) with xid *xid*, for *msg* given as
    bytes (its xid is replaced)."""
    return ofwire.bundle_add(bundle_id, bundle_flags(dp), msg, xid)


def our_flow_stats_request(dp, prefix=COOKIE_PREFIX):
    """OFPFlowStatsRequest for every flow carrying cookie *prefix* (ours), all tables."""
    ofp, parser = dp.ofproto, dp.ofproto_parser
    return parser.OFPFlowStatsRequest(
        dp, flags=0, table_id=ofp.OFPTT_ALL, out_port=ofp.OFPP_ANY,
        out_group=ofp.OFPG_ANY, cookie=prefix << 32,
        cookie_mask=COOKIE_MASK_OURS, match=parser.OFPMatch())


def bundle_flags(dp):
    return dp.ofproto.ONF_BF_ATOMIC | dp.ofproto.ONF_BF_ORDERED


def bundle_ctrl(dp, bundle_id, ctrl_type):
    """ONFBundleCtrlMsg (OF1.3 ONF extension EXT-230); ctrl_type is ONF_BCT_*."""
    return dp.ofproto_parser.ONFBundleCtrlMsg(dp, bundle_id, ctrl_type,
                                              bundle_flags(dp), [])


def bundle_add(dp, bundle_id, msg):
    """ONFBundleAddMsg wrapping *msg* (os-ken copies the outer xid into the inner one)."""
    return dp.ofproto_parser.ONFBundleAddMsg(dp, bundle_id, bundle_flags(dp), msg, [])


# -- sync plan -------------------------------------------------------------------------

class SyncPlan:
    """plan_sync() one desired flow at a time, so a sync can send the first flows while it
    still resolves the others: add(flow) says whether to send it, to_delete() the rest."""

    def __init__(self, installed_cookies, prefix=COOKIE_PREFIX):
        self.prefix = prefix
        self.ours = {c for c in installed_cookies if (c & COOKIE_MASK_OURS) == (prefix << 32)}
        self.by_cookie = {}
        self.by_key = {}

    def add(self, flow):
        """True if the resolved *flow* is to be added: desired, not seen before in this
        plan, and not installed. ValueError as plan_sync() says."""
        c = flow.cookie(self.prefix)
        prev = self.by_cookie.get(c)
        if prev is not None:
            if (prev.table, prev.priority, prev.match, prev.actions, prev.goto) != \
                    (flow.table, flow.priority, flow.match, flow.actions, flow.goto):
                raise ValueError(f"cookie collision between {prev} and {flow}")
            return False
        key = (flow.table, flow.priority, flow.match)
        other = self.by_key.get(key)
        if other is not None:
            raise ValueError(f"conflicting desired flows with the same table, priority and "
                             f"match: {other} ({other.rule or '?'}) vs {flow} "
                             f"({flow.rule or '?'})")
        self.by_key[key] = flow
        self.by_cookie[c] = flow
        return c not in self.ours

    def to_delete(self):
        """Sorted installed cookies of ours that no flow added so far has."""
        return sorted(self.ours - set(self.by_cookie))


def plan_sync(desired_resolved_flows, installed_cookies, prefix=COOKIE_PREFIX):
    """(to_add, to_delete_cookies) turning *installed_cookies* into the desired set.

    to_add: desired flows whose cookie is not installed (duplicates dropped, input order
    kept); to_delete_cookies: sorted installed cookies of ours that are not desired.
    Ours are the cookies with *prefix* in their high 32 bits; every other installed
    cookie (another app's prefix, cookie 0) is ignored: it is never deleted.

    Raises ValueError when two different desired flows share table+priority+match (the
    switch would keep only one of them, and every sync would flap between them)."""
    plan = SyncPlan(installed_cookies, prefix)
    to_add = [f for f in desired_resolved_flows if plan.add(f)]
    return to_add, plan.to_delete()


# -- errors ----------------------------------------------------------------------------

def _const_name(ofp, prefix, value):
    for name in dir(ofp):
        if name.startswith(prefix) and getattr(ofp, name) == value:
            return name
    return None


def describe_error(msg):
    """One line for an OFPErrorMsg (standard or ONF/Nicira experimenter error)."""
    ofp = msg.datapath.ofproto
    if msg.type == ofp.OFPET_EXPERIMENTER:
        exp_type = getattr(msg, "exp_type", None)
        experimenter = getattr(msg, "experimenter", None)
        name = _const_name(ofp, "ONFERR_", exp_type) or f"exp_type={exp_type}"
        text = f"experimenter error {name} (experimenter=0x{experimenter or 0:x})"
    else:
        try:
            text = f"{ofp.ofp_error_type_to_str(msg.type)} " \
                   f"{ofp.ofp_error_code_to_str(msg.type, msg.code)}"
        except Exception:           # unknown numbers: still say them
            text = f"type={msg.type} code={msg.code}"
    data = bytes(msg.data or b"")
    if msg.type != ofp.OFPET_HELLO_FAILED and len(data) >= 8:
        _ver, mtype, _len, xid = struct.unpack_from("!BBHI", data)
        try:
            what = ofp.ofp_msg_type_to_str(mtype)
        except Exception:
            what = str(mtype)
        text += f" for {what} xid={xid}"
    return text
