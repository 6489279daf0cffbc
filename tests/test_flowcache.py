"""The pieces of a flow sync that need no switch: the per-switch cache of resolved flows
(southbound.flowcache), xid blocks and reply routing (southbound.ofreplies), and what the
bundle code names as the culprit of an error (southbound.ofbundle)."""

import threading
import time

import pytest
from os_ken.ofproto.ofproto_protocol import ProtocolDesc

from tenantnet.errors import SouthboundError
from tenantnet.model.flowspec import COOKIE_PREFIX, Flow
from tenantnet.southbound.flowcache import FlowCache
from tenantnet.southbound.ofbundle import Labels
from tenantnet.southbound.ofreplies import ReplyRouter, Waiter, XidBlock

DP = ProtocolDesc(0x04)
PORTS = {"a": 1, "b": 2}
PREFIX_ACL = 0x5441434C


def flows():
    return [Flow.make(0, 10, {"in_port": "a", "eth_dst": f"02:00:00:00:00:{i:02x}"},
                      [("output", "b")], rule="r") for i in range(5)] + [
        Flow.make(1, 0, {}, [("output", "NORMAL")])]


def test_resolves_like_flow_resolve_and_reuses_the_work():
    cache = FlowCache()
    first = cache.resolve(7, COOKIE_PREFIX, flows(), PORTS)
    assert first == [f.resolve(PORTS) for f in flows()]
    again = cache.resolve(7, COOKIE_PREFIX, flows(), PORTS)     # equal, not the same, flows
    assert all(a is b for a, b in zip(first, again))


def test_owners_are_kept_apart_and_cookies_are_the_resolved_flows():
    cache = FlowCache()
    mine = cache.resolve(7, COOKIE_PREFIX, flows(), PORTS)
    theirs = cache.resolve(7, PREFIX_ACL, flows()[:1], PORTS)
    assert cache.resolve(7, COOKIE_PREFIX, flows(), PORTS)[1] is mine[1]   # not evicted
    assert theirs[0].cookie(PREFIX_ACL) == flows()[0].resolve(PORTS).cookie(PREFIX_ACL)
    assert mine[0].cookie() == flows()[0].resolve(PORTS).cookie()


def test_a_changed_port_map_is_not_served_from_the_cache():
    cache = FlowCache()
    old = cache.resolve(7, COOKIE_PREFIX, flows(), PORTS)
    new = cache.resolve(7, COOKIE_PREFIX, flows(), {"a": 1, "b": 9})
    assert new == [f.resolve({"a": 1, "b": 9}) for f in flows()] and new != old


def test_a_missing_port_names_port_and_flow():
    cache = FlowCache()
    bad = Flow.make(0, 1, {}, [("output", "tap-x")])
    with pytest.raises(KeyError) as info:
        cache.resolve(7, COOKIE_PREFIX, flows() + [bad], PORTS)
    assert info.value.args == ("tap-x", bad)


def test_only_the_last_syncs_flows_are_kept_and_forget_drops_them():
    cache = FlowCache()
    first = cache.resolve(7, COOKIE_PREFIX, flows(), PORTS)
    cache.resolve(7, COOKIE_PREFIX, [], PORTS)
    again = cache.resolve(7, COOKIE_PREFIX, flows(), PORTS)
    assert again == first and again[0] is not first[0]          # resolved afresh
    cache.forget(7)
    assert cache.resolve(7, COOKIE_PREFIX, flows(), PORTS)[0] is not again[0]


# -- xids and replies ---------------------------------------------------------------------

class FakeDp:
    ofproto = DP.ofproto

    def __init__(self, xid=0):
        self.xid = xid
        self.sent = []

    def send(self, data):
        self.sent.append(data)
        return True


class Reply:
    def __init__(self, dp, xid):
        self.datapath, self.xid = dp, xid


def test_xid_block_wraps_around_the_xid_space():
    block = XidBlock(0xFFFFFFFE, 4, 0xFFFFFFFF, None)
    assert [block.xid(i) for i in range(4)] == [0xFFFFFFFE, 0xFFFFFFFF, 0, 1]
    assert 0 in block and 1 in block and 2 not in block and 0xFFFFFFFD not in block
    assert block.index(1) == 3 and block.index(2) is None


def test_a_block_takes_consecutive_xids_and_routes_their_replies():
    router, dp = ReplyRouter(), FakeDp(xid=0xFFFFFFFD)
    router.attach(dp)
    waiter = Waiter("test")
    block = router.send_block(dp, list(range(3)), waiter,
                              lambda item, xid: xid.to_bytes(4, "big"))
    assert b"".join(dp.sent) == bytes.fromhex("fffffffe" "ffffffff" "00000000")
    assert dp.xid == 0
    assert router.route(Reply(dp, 0)) and not router.route(Reply(dp, 1))
    assert not router.route(Reply(FakeDp(), 0))                  # another connection
    assert [m.xid for m in waiter.msgs] == [0]
    labels = Labels()
    labels.add_block(block, ["x", 0x5, "z"])
    labels.single[7] = "bundle open"
    assert (labels.of(0xFFFFFFFF), labels.of(7), labels.of(9)) == (
        "delete cookie=0x5", "bundle open", "xid 9")
    router.forget_block(dp, block)
    assert not router.route(Reply(dp, 0))


def test_detach_fails_the_waiters_of_that_connection_only():
    router, dp, other = ReplyRouter(), FakeDp(), FakeDp()
    router.attach(dp)
    router.attach(other)
    mine, theirs = Waiter("mine"), Waiter("theirs")
    router.send_block(dp, [1], mine, lambda item, xid: b"x")
    router.send_block(other, [1], theirs, lambda item, xid: b"x")
    router.detach(dp, "switch disconnected")
    with pytest.raises(SouthboundError, match="mine: switch disconnected"):
        mine.wait_for(lambda ms: bool(ms), time.monotonic() + 10)
    assert theirs.failed is None
    with pytest.raises(SouthboundError, match="switch disconnected"):
        router.send_block(dp, [1], mine, lambda item, xid: b"x")


def test_an_encoding_error_stops_the_block_and_forgets_it():
    router, dp = ReplyRouter(), FakeDp()
    router.attach(dp)

    def encode(item, xid):
        if item == 2:
            raise ValueError("cannot encode 2")
        return b"x" * 40000
    with pytest.raises(ValueError):
        router.send_block(dp, [0, 1, 2, 3], Waiter("w"), encode)
    assert len(dp.sent) == 1                                     # the first full write
    assert not router.route(Reply(dp, 1))


def test_a_waiter_is_woken_by_a_reply_from_another_thread():
    waiter = Waiter("w")
    threading.Timer(0.05, waiter.deliver, args=("reply",)).start()
    assert waiter.wait_for(lambda ms: bool(ms), time.monotonic() + 10) == ["reply"]
