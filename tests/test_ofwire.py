"""The bytes a flow sync sends and reads (tenantnet.southbound.ofwire, ofdump) against
os-ken's own serializer and parser: no switch involved."""

import struct

from os_ken.ofproto.ofproto_protocol import ProtocolDesc

from conftest import longest_names_config, two_tenant_config
from tenantnet.bench.flows import make_flows
from tenantnet.model import config
from tenantnet.model.flows import all_flows
from tenantnet.model.flowspec import COOKIE_PREFIX, Flow
from tenantnet.southbound import ofctl, ofdump, ofwire

DP = ProtocolDesc(0x04)
PREFIX_ACL = 0x5441434C


def oskens(msg):
    msg.set_xid(0)
    msg.serialize()
    return bytes(msg.buf)


def numbered(flow):
    """*flow* with every port name replaced by a number, as after Flow.resolve."""
    names = sorted(flow.port_names())
    return flow.resolve({n: 10 + i for i, n in enumerate(names)})


def model_flows():
    flows = []
    for text in (two_tenant_config(3, ("web1@compute1", "web2@compute2", "app1@compute1")),
                 longest_names_config()):
        for bridge_flows in all_flows(config.load_text(text, "t.yaml")).values():
            flows += [numbered(f) for f in bridge_flows.flows]
    return flows


EXTRA = [
    Flow.make(0, 40, {"in_port": 1, "eth_type": 0x0806, "arp_tpa": "10.0.0.1"},
              [("set_field", "tunnel_id", 100), ("output", "IN_PORT")]),
    Flow.make(1, 10, {"tunnel_id": 100}, [("output", "LOCAL")]),
    Flow.make(1, 5, {}, [("output", "NORMAL")]),
    Flow.make(0, 50, {"eth_dst": "02:00:00:00:00:01", "ipv4_dst": "10.1.2.3",
                      "eth_type": 0x800}, [], goto=1),
    Flow.make(0, 0, {}, []),
    Flow.make(0, 3, {"eth_src": "02:aa:bb:cc:dd:ee", "vlan_vid": 4094},
              [("pop_vlan",), ("output", "CONTROLLER")]),
    Flow.make(2, 7, {"in_port": 0xFFFFFFFE}, [("push_vlan",), ("set_field", "vlan_vid", 1),
                                              ("output", 0xFFFFFFFD)], goto=3),
]


def test_flow_mods_are_byte_identical_to_os_kens():
    flows = model_flows() + EXTRA + [numbered(f) for f in make_flows(30)]
    assert len(flows) > 50
    for flow in flows:
        for prefix in (COOKIE_PREFIX, PREFIX_ACL):
            mine = ofwire.flow_mod(flow, flow.cookie(prefix))
            assert mine == oskens(ofctl.to_flow_mod(DP, flow, prefix=prefix)), flow
            assert ofctl.flow_mod_bytes(DP, flow, prefix) == mine


def test_deletes_and_bundle_adds_are_byte_identical():
    cookie = (COOKIE_PREFIX << 32) | 0x1234ABCD
    assert ofwire.delete_cookie(cookie) == oskens(ofctl.delete_cookie_msg(DP, cookie))
    assert ofctl.message_bytes(DP, cookie) == ofwire.delete_cookie(cookie)
    flow = EXTRA[0]
    inner = ofctl.to_flow_mod(DP, flow)
    outer = ofctl.bundle_add(DP, 77, inner)
    outer.set_xid(0xDEADBEEF)
    outer.serialize()
    raw = ofctl.flow_mod_bytes(DP, flow)
    assert ofctl.bundle_add_bytes(DP, 77, raw, 0xDEADBEEF) == bytes(outer.buf)
    assert struct.unpack_from("!I", ofwire.with_xid(raw, 9), 4) == (9,)


def test_what_ofwire_does_not_encode_goes_to_os_ken():
    odd = [Flow.make(0, 1, {"ipv4_dst": "10.0.0.0/24"}, []),          # masked
           Flow.make(0, 1, {"udp_dst": 53}, []),                      # field not listed
           Flow.make(0, 1, {}, [("set_field", "eth_dst", "02:00:00:00:00:09")]),
           Flow.make(0, 1, {"eth_dst": "0200.0000.0001"}, [])]          # another MAC notation
    for flow in odd[:2] + odd[3:]:
        assert ofwire.flow_mod(flow, flow.cookie()) is None
    for flow in odd:
        assert ofctl.flow_mod_bytes(DP, flow) == oskens(ofctl.to_flow_mod(DP, flow))


def test_unresolved_port_is_refused():
    flow = Flow.make(0, 1, {}, [("output", "tap-x")])
    assert ofwire.flow_mod(flow, flow.cookie()) is None
    try:
        ofctl.flow_mod_bytes(DP, flow)
    except ValueError as exc:
        assert "tap-x" in str(exc)
    else:
        raise AssertionError("an unresolved port was encoded")


def test_resolve_and_cookie_unchanged():
    flow = Flow.make(0, 100, {"in_port": "a", "eth_dst": "02:00:00:00:00:01"},
                     [("output", "b"), ("output", "NORMAL")], goto=2, rule="r")
    resolved = flow.resolve({"a": 1, "b": 2})
    assert resolved == Flow(0, 100, (("eth_dst", "02:00:00:00:00:01"), ("in_port", 1)),
                            (("output", 2), ("output", "NORMAL")), 2, "r")
    assert resolved.cookie() == resolved.cookie() == 0x544E4E54 << 32 | (resolved.cookie()
                                                                         & 0xFFFFFFFF)
    # the cookie is the documented hash, whether cached or not
    import hashlib
    text = repr((0, 100, resolved.match, resolved.actions, 2))
    low = int.from_bytes(hashlib.sha256(text.encode()).digest()[:4], "big")
    assert resolved.cookie() == (COOKIE_PREFIX << 32) | low
    assert resolved.cookie(PREFIX_ACL) == (PREFIX_ACL << 32) | low
    plain = Flow.make(1, 5, {}, [("output", "NORMAL")])
    assert plain.resolve({}) is plain


def test_cookie_only_dump_reads_the_cookies_os_ken_reads():
    """A flow-stats reply as Open vSwitch sends it: ofdump reads the same cookies as
    os-ken's full parser."""
    parser = DP.ofproto_parser
    flows = [numbered(f) for f in make_flows(7)] + EXTRA
    entries = b""
    for flow in flows:
        fm = ofctl.flow_mod_bytes(DP, flow)
        match_and_inst = fm[48:]
        body = struct.pack("!HBxIIHHHH4xQQQ", 0, flow.table, 1, 2, flow.priority, 0, 0, 0,
                           flow.cookie(), 5, 6) + match_and_inst
        entries += struct.pack("!H", len(body)) + body[2:]
    reply = struct.pack("!BBHIHH4x", 4, 19, 16 + len(entries), 42, 1, 0) + entries
    full = parser.msg_parser(DP, 4, 19, len(reply), 42, bytearray(reply))
    assert [s.cookie for s in full.body] == [f.cookie() for f in flows]
    assert ofdump.cookies_of(reply, len(reply)) == [f.cookie() for f in flows]
