"""Messages out to the connected switches and their replies back: xids, waiters, writes.

`ReplyRouter` gives every message it sends a fresh xid of its connection and routes each
reply carrying that xid to the `Waiter` the sender named. Replies are routed by
(datapath object, xid): xids are per connection, so a reconnecting switch never receives
answers meant for its previous connection, and every waiter of a connection fails with
SouthboundError as soon as that connection is detached.

A sync sends thousands of messages whose replies (errors only, on success none) go to one
waiter: `send_block()` takes a block of consecutive xids for them, registered as one range
rather than one entry per message, and packs their bytes into large socket writes
(`dp.send()` of WRITE_SIZE bytes) instead of one queued message each.

Threading: the os-ken app's event thread calls route(); it never blocks. Waiter.wait_for()
blocks the calling thread (never an os-ken event handler: the reply it waits for is
delivered by that very thread). Nothing here imports os-ken or Ryu."""

import threading
import time

from tenantnet.errors import SouthboundError

WRITE_SIZE = 64 * 1024           # bytes of messages packed into one socket write


class Waiter:
    """Collects the messages that answer a group of xids."""

    def __init__(self, what):
        self.what = what
        self.cond = threading.Condition()
        self.msgs = []
        self.failed = None

    def deliver(self, msg):
        with self.cond:
            self.msgs.append(msg)
            self.cond.notify_all()

    def fail(self, reason):
        with self.cond:
            self.failed = reason
            self.cond.notify_all()

    def wait_for(self, done, deadline):
        """Block until done(msgs) is true; SouthboundError on disconnect or timeout."""
        with self.cond:
            while True:
                if done(self.msgs):
                    return list(self.msgs)
                if self.failed:
                    raise SouthboundError(f"{self.what}: {self.failed}")
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise SouthboundError(f"{self.what}: no answer from the switch in time")
                self.cond.wait(remaining)


def is_error(msg):
    """True for an OFPErrorMsg (of either framework)."""
    return type(msg).__name__ == "OFPErrorMsg"


class XidBlock:
    """Consecutive xids first, first+1, ... (count of them, modulo the xid space) of one
    connection; their replies go to one waiter."""
    __slots__ = ("first", "count", "mask", "waiter")

    def __init__(self, first, count, mask, waiter):
        self.first, self.count, self.mask, self.waiter = first, count, mask, waiter

    def __contains__(self, xid):
        return ((xid - self.first) & self.mask) < self.count

    def index(self, xid):
        """Position of *xid* in the block (0 for the first), None if it is not in it."""
        i = (xid - self.first) & self.mask
        return i if i < self.count else None

    def xid(self, i):
        return (self.first + i) & self.mask


class ReplyRouter:
    """Thread-safe: xids of every attached connection and who waits for their replies."""

    def __init__(self):
        self._lock = threading.Lock()
        self._waiters = {}            # (Datapath, xid) -> Waiter
        self._blocks = {}             # Datapath -> [XidBlock]
        self._xid_locks = {}          # Datapath -> Lock guarding dp.xid

    def attach(self, dp):
        """*dp* is a live connection: messages may be sent on it."""
        with self._lock:
            self._xid_locks.setdefault(dp, threading.Lock())

    def detach(self, dp, reason):
        """*dp* is gone: its waiters fail with *reason*, nothing more is sent on it."""
        with self._lock:
            self._xid_locks.pop(dp, None)
            failed = self._take(dp)
        for waiter in failed:
            waiter.fail(reason)

    def fail_all(self, reason):
        """Every waiter of every connection fails (the controller is stopping)."""
        with self._lock:
            dps = {dp for dp, _ in self._waiters} | set(self._blocks)
            failed = [w for dp in dps for w in self._take(dp)]
        for waiter in failed:
            waiter.fail(reason)

    def _take(self, dp):
        out = [self._waiters.pop(k) for k in [k for k in self._waiters if k[0] is dp]]
        return out + [b.waiter for b in self._blocks.pop(dp, [])]

    # -- replies --------------------------------------------------------------------------
    def route(self, msg):
        """Hand *msg* to the waiter of its (datapath, xid); False if nobody waits for it."""
        dp, xid = msg.datapath, msg.xid
        with self._lock:
            waiter = self._waiters.get((dp, xid))
            if waiter is None:
                waiter = next((b.waiter for b in self._blocks.get(dp, ()) if xid in b), None)
        if waiter is None:
            return False
        waiter.deliver(msg)
        return True

    def forget(self, dp, xids):
        """Replies to *xids* on *dp* are no longer waited for."""
        with self._lock:
            for xid in xids:
                self._waiters.pop((dp, xid), None)

    def forget_block(self, dp, block):
        with self._lock:
            blocks = self._blocks.get(dp)
            if blocks and block in blocks:
                blocks.remove(block)
                if not blocks:
                    del self._blocks[dp]

    # -- sending --------------------------------------------------------------------------
    def _xid_lock(self, dp):
        with self._lock:
            lock = self._xid_locks.get(dp)
        if lock is None:
            raise SouthboundError("switch disconnected")
        return lock

    def send(self, dp, msg, waiter=None, on_xid=None):
        """Give the framework message *msg* a fresh xid, route its replies to *waiter*,
        queue it. Returns the xid. *on_xid*(xid) is called once the xid is known, before
        the message leaves."""
        with self._xid_lock(dp):
            xid = dp.set_xid(msg)
            if on_xid is not None:
                on_xid(xid)
            if waiter is not None:
                with self._lock:
                    self._waiters[(dp, xid)] = waiter
        if not dp.send_msg(msg):
            raise SouthboundError("switch disconnected while sending")
        return xid

    def send_block(self, dp, items, waiter, encode):
        """Send one message per item, encode(item, xid) giving its bytes with its xid,
        packed into large socket writes; replies go to *waiter*. Returns the XidBlock
        (forget it with forget_block); on any exception nothing more is sent and the
        block is forgotten."""
        n = len(items)
        mask = dp.ofproto.MAX_XID
        with self._xid_lock(dp):             # a block of n xids, as n set_xid() calls
            block = XidBlock((dp.xid + 1) & mask, n, mask, waiter)
            dp.xid = (dp.xid + n) & mask
            with self._lock:
                self._blocks.setdefault(dp, []).append(block)
        try:
            chunk, size, xid = [], 0, block.first
            for item in items:
                data = encode(item, xid)
                xid = (xid + 1) & mask
                chunk.append(data)
                size += len(data)
                if size >= WRITE_SIZE:
                    self._write(dp, b"".join(chunk))
                    chunk, size = [], 0
            if chunk:
                self._write(dp, b"".join(chunk))
        except BaseException:
            self.forget_block(dp, block)
            raise
        return block

    @staticmethod
    def _write(dp, data):
        if not dp.send(data):
            raise SouthboundError("switch disconnected while sending")
