"""FlowPusher: the connected datapaths and the blocking "make the switch hold exactly these
flows" operation.

Threading model (os-ken native hub = plain threads):
  * the os-ken app calls register()/unregister() and forwards every reply we may wait for
    (flow-stats replies, ONF bundle control replies, error messages, barrier replies) to
    handle_message() from its event-loop thread; handle_message() never blocks;
  * sync(), installed_cookies() and barrier() block the *calling* thread (never call them
    from an os-ken event handler: the reply they wait for is delivered by that very
    thread) until the answer arrives, the switch disconnects, or the timeout passes.

Replies are routed to waiters by (datapath object, xid); xids are per connection, so a
reconnecting switch never receives answers meant for its previous connection, and every
waiter of a connection fails with SouthboundError as soon as that connection goes away.

Framework: nothing here imports os-ken or Ryu. The flow-mods and bundle adds of a sync
are packed as bytes (ofwire, through ofctl) and written many to a socket write with
dp.send(); the other messages are built with the datapath's own ofproto_parser. Our flow
dumps are read for cookies only (ofdump). Waiting uses the `threading` module, which is
what the hub is made of under both managers: plain threads under os-ken's native hub, and
green threads under the real Ryu's ryu-manager (it monkey-patches `threading` before it
loads any app).

Owners: sync() manages the flows of one cookie prefix (default tenantnet's); other apps on
the same switch use a prefix of their own and the same pusher (ryu_apps.tenant_l2's
install()), and no sync ever deletes a flow of another prefix or with cookie 0.
"""

import itertools
import logging
import threading
import time

from tenantnet.southbound import ofctl, ofdump, ofwire
from tenantnet.errors import SouthboundError
from tenantnet.model.flowspec import COOKIE_PREFIX

LOG = logging.getLogger("tenantnet.southbound.ofswitch")

MODE_BUNDLE = "bundle"
MODE_FLOWMOD = "flowmod"
WRITE_SIZE = 64 * 1024           # bytes of messages packed into one socket write


class _Waiter:
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


def _is_error(msg):
    return type(msg).__name__ == "OFPErrorMsg"


def _label(what):
    """What a message of a sync does, in words: a Flow is added, an int cookie deleted."""
    if isinstance(what, int):
        return f"delete cookie=0x{what:x}"
    if isinstance(what, str):
        return what
    return f"add {what}"


def _dpid_str(dpid):
    return f"{dpid:016x}" if isinstance(dpid, int) else str(dpid)


class FlowPusher:
    """Thread-safe registry of connected datapaths plus the blocking flow sync.

    use_bundles=False forces the non-atomic fallback (flow-mods + barrier) everywhere."""

    def __init__(self, use_bundles=True):
        self.use_bundles = use_bundles
        self._lock = threading.Condition(threading.RLock())
        self._dps = {}                # dpid -> Datapath
        self._waiters = {}            # (Datapath, xid) -> _Waiter
        self._xid_locks = {}          # Datapath -> Lock guarding dp.set_xid
        self._sync_locks = {}         # dpid -> Lock: one sync per switch at a time
        self._no_bundles = set()      # dpids whose switch refused ONF bundles
        self._bundle_ids = itertools.count(1)

    # -- registry --------------------------------------------------------------------
    def register(self, dp, dpid=None):
        """Record *dp* as the live connection of *dpid* (default dp.id).

        Pass dpid explicitly from an EventOFPSwitchFeatures handler: os-ken sets dp.id in
        its own handler, which may run after ours."""
        dpid = dp.id if dpid is None else dpid
        with self._lock:
            old = self._dps.get(dpid)
            if old is not None and old is not dp:
                self._fail_waiters(old, "switch reconnected")
            self._dps[dpid] = dp
            self._xid_locks.setdefault(dp, threading.Lock())
            self._lock.notify_all()
        LOG.info("switch %s connected from %s", _dpid_str(dpid), getattr(dp, "address", "?"))

    def unregister(self, dp):
        """Forget *dp*; returns its dpid if it was the live connection, else None.

        Waiters on that connection fail with SouthboundError."""
        with self._lock:
            dpid = next((k for k, v in self._dps.items() if v is dp), None)
            if dpid is not None:
                del self._dps[dpid]
            self._fail_waiters(dp, "switch disconnected")
            self._xid_locks.pop(dp, None)
            self._lock.notify_all()
        if dpid is not None:
            LOG.info("switch %s disconnected", _dpid_str(dpid))
        return dpid

    def connected(self, dpid):
        with self._lock:
            dp = self._dps.get(dpid)
            return dp is not None and getattr(dp, "is_active", True)

    def wait_connected(self, dpid, timeout):
        """True once *dpid* is connected, False if *timeout* seconds pass first."""
        deadline = time.monotonic() + timeout
        with self._lock:
            while not self.connected(dpid):
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self._lock.wait(min(remaining, 0.5))
            return True

    def dpids(self):
        with self._lock:
            return sorted(self._dps)

    def datapath(self, dpid):
        with self._lock:
            dp = self._dps.get(dpid)
        if dp is None:
            raise SouthboundError(f"switch {_dpid_str(dpid)} is not connected")
        return dp

    def close(self):
        """Fail every pending waiter (controller shutting down)."""
        with self._lock:
            for dp in set(dp for dp, _ in self._waiters):
                self._fail_waiters(dp, "controller stopping")
            self._dps.clear()
            self._lock.notify_all()

    # -- replies from the app ----------------------------------------------------------
    def handle_message(self, msg):
        """Route one reply (flow stats, bundle ctrl, error, barrier) to its waiter."""
        with self._lock:
            waiter = self._waiters.get((msg.datapath, msg.xid))
        if waiter is not None:
            waiter.deliver(msg)
        elif _is_error(msg):
            LOG.warning("switch %s: unsolicited error: %s",
                        _dpid_str(getattr(msg.datapath, "id", None)), ofctl.describe_error(msg))

    def _fail_waiters(self, dp, reason):
        for key in [k for k in self._waiters if k[0] is dp]:
            self._waiters.pop(key).fail(reason)

    # -- sending -----------------------------------------------------------------------
    def _send(self, dp, msg, waiter=None, on_xid=None):
        """Give *msg* a fresh xid, route its replies to *waiter*, queue it. Returns the xid.

        *on_xid*(xid) is called once the xid is known, before the message leaves."""
        with self._lock:
            xid_lock = self._xid_locks.get(dp)
        if xid_lock is None:
            raise SouthboundError("switch disconnected")
        with xid_lock:
            xid = dp.set_xid(msg)
            if on_xid is not None:
                on_xid(xid)
            if waiter is not None:
                with self._lock:
                    self._waiters[(dp, xid)] = waiter
        if not dp.send_msg(msg):
            raise SouthboundError("switch disconnected while sending")
        return xid

    def _send_many(self, dp, items, waiter, encode):
        """Send one message per item, encode(item, xid) giving its bytes with a fresh
        xid, packed into large socket writes; their replies go to *waiter*. Returns the
        xids, in order."""
        with self._lock:
            xid_lock = self._xid_locks.get(dp)
        if xid_lock is None:
            raise SouthboundError("switch disconnected")
        n = len(items)
        max_xid = dp.ofproto.MAX_XID
        with xid_lock:                       # a block of n xids, as n set_xid() calls
            first = dp.xid
            dp.xid = (first + n) & max_xid
            xids = [(first + 1 + i) & max_xid for i in range(n)]
            with self._lock:
                self._waiters.update(((dp, x), waiter) for x in xids)
        try:
            chunk, size = [], 0
            for item, xid in zip(items, xids):
                data = encode(item, xid)
                chunk.append(data)
                size += len(data)
                if size >= WRITE_SIZE:
                    self._write(dp, b"".join(chunk))
                    chunk, size = [], 0
            if chunk:
                self._write(dp, b"".join(chunk))
        except BaseException:
            self._forget(dp, xids)
            raise
        return xids

    @staticmethod
    def _write(dp, data):
        if not dp.send(data):
            raise SouthboundError("switch disconnected while sending")

    def _forget(self, dp, xids):
        with self._lock:
            for xid in xids:
                self._waiters.pop((dp, xid), None)

    # -- operations --------------------------------------------------------------------
    def installed_cookies(self, dpid, timeout=10, cookie_prefix=COOKIE_PREFIX):
        """Set of cookies of every flow on *dpid* carrying *cookie_prefix* (ours)."""
        dp = self.datapath(dpid)
        return self._installed_cookies(dp, time.monotonic() + timeout, _dpid_str(dpid),
                                       cookie_prefix)

    def _installed_cookies(self, dp, deadline, name, prefix=COOKIE_PREFIX):
        waiter = _Waiter(f"switch {name}: flow dump")
        req = ofctl.our_flow_stats_request(dp, prefix)
        sent = []

        def cookies_only(xid):                    # the replies: read for cookies only
            sent.append(xid)
            if ofdump.hook(dp.ofproto_parser):
                ofdump.want_cookies_only(dp, xid)
        try:
            self._send(dp, req, waiter, on_xid=cookies_only)
            more = dp.ofproto.OFPMPF_REPLY_MORE
            msgs = waiter.wait_for(
                lambda ms: any(_is_error(m) or not (m.flags & more) for m in ms), deadline)
        finally:
            for xid in sent:
                ofdump.done(dp, xid)
            self._forget(dp, sent)
        cookies = set()
        for m in msgs:
            if _is_error(m):
                raise SouthboundError(f"switch {name}: flow dump refused: "
                                      f"{ofctl.describe_error(m)}")
            for stat in m.body:
                cookies.add(stat.cookie)
        return cookies

    def port_map(self, dpid, timeout=10):
        """{port name: port number} as the switch itself reports them (port-desc).

        A tenant's controller has no OVSDB access: this is how it learns the numbers."""
        dp = self.datapath(dpid)
        name = _dpid_str(dpid)
        waiter = _Waiter(f"switch {name}: port description")
        req = dp.ofproto_parser.OFPPortDescStatsRequest(dp, 0)
        xid = self._send(dp, req, waiter)
        more = dp.ofproto.OFPMPF_REPLY_MORE
        try:
            msgs = waiter.wait_for(
                lambda ms: any(_is_error(m) or not (m.flags & more) for m in ms),
                time.monotonic() + timeout)
        finally:
            self._forget(dp, [xid])
        ports = {}
        for m in msgs:
            if _is_error(m):
                raise SouthboundError(f"switch {name}: port description refused: "
                                      f"{ofctl.describe_error(m)}")
            for port in m.body:
                pname = port.name.decode() if isinstance(port.name, bytes) else port.name
                if port.port_no < dp.ofproto.OFPP_MAX:
                    ports[pname.rstrip("\0")] = port.port_no
        return ports

    def disconnect(self, dpid):
        """Close the connection of *dpid* (a switch we refuse to serve)."""
        dp = self.datapath(dpid)
        try:
            dp.close()
        except Exception as exc:  # noqa: BLE001 -- already gone is fine
            LOG.debug("closing %s: %s", _dpid_str(dpid), exc)

    def barrier(self, dpid, timeout=10):
        dp = self.datapath(dpid)
        waiter = _Waiter(f"switch {_dpid_str(dpid)}: barrier")
        xid = self._send(dp, dp.ofproto_parser.OFPBarrierRequest(dp), waiter)
        try:
            waiter.wait_for(lambda ms: bool(ms), time.monotonic() + timeout)
        finally:
            self._forget(dp, [xid])

    def _sync_lock(self, dpid):
        with self._lock:
            return self._sync_locks.setdefault(dpid, threading.Lock())

    def sync(self, dpid, flows, portmap, timeout=10, use_bundle=None, installed=None,
             cookie_prefix=COOKIE_PREFIX):
        """Make *dpid* hold exactly *flows* (ours; flows with other cookies are untouched).

        *cookie_prefix* says whose flows these are (default tenantnet's): only installed
        flows carrying it are dumped and may be deleted.

        flows: Flow objects with port names; portmap: name -> ofport. Resolves, dumps our
        installed cookies, plans, and — if anything differs — sends all adds then all
        deletes in ONE atomic+ordered ONF bundle and waits for the commit reply.
        Returns dict(added=n, removed=n, mode="bundle"|"flowmod"|None).
        Raises SouthboundError (switch refused, disconnected or timed out; with a bundle
        nothing was changed) or a SouthboundError naming a port missing from *portmap*.
        *installed*: our cookies the caller knows to be on the switch (it installed them on
        this connection); the dump is then skipped. An ADD of a flow already there
        overwrites it and a DELETE of a cookie not there matches nothing, so a stale belief
        costs at most a redundant message."""
        name = _dpid_str(dpid)
        deadline = time.monotonic() + timeout
        resolved = []
        for flow in flows:
            try:
                resolved.append(flow.resolve(portmap))
            except KeyError as exc:
                raise SouthboundError(f"switch {name}: port {exc.args[0]!r} of flow "
                                      f"{flow} is not on the bridge") from exc
        with self._sync_lock(dpid):
            dp = self.datapath(dpid)
            if installed is None:
                installed = self._installed_cookies(dp, deadline, name, cookie_prefix)
            try:
                to_add, to_delete = ofctl.plan_sync(resolved, installed, cookie_prefix)
            except ValueError as exc:
                raise SouthboundError(f"switch {name}: {exc}") from exc
            if not to_add and not to_delete:
                return dict(added=0, removed=0, mode=None)
            # what each message does: a Flow to add or a cookie to delete; encoded while
            # being sent (ofctl.message_bytes), so the switch starts on the first ones early
            msgs = list(to_add) + list(to_delete)
            bundles = self.use_bundles if use_bundle is None else use_bundle
            mode = MODE_FLOWMOD
            if bundles and dpid not in self._no_bundles:
                if self._send_bundle(dp, msgs, deadline, name, cookie_prefix):
                    mode = MODE_BUNDLE
                else:
                    self._no_bundles.add(dpid)
                    LOG.warning("switch %s refused ONF bundles: falling back to NON-ATOMIC "
                                "flow-mods + barrier", name)
            if mode == MODE_FLOWMOD:
                self._send_flowmods(dp, msgs, deadline, name, cookie_prefix)
            LOG.info("switch %s: sync added %d removed %d (%s)", name, len(to_add),
                     len(to_delete), mode)
            return dict(added=len(to_add), removed=len(to_delete), mode=mode)

    # -- bundle / fallback ---------------------------------------------------------------
    def _send_bundle(self, dp, msgs, deadline, name, prefix=COOKIE_PREFIX):
        """OPEN, ADD*, (barrier), COMMIT; False if the switch does not do bundles at all.

        Most validation in Open vSwitch happens when a message is *added* to the bundle,
        and a failed add leaves the bundle open with the other messages in it; so a
        barrier follows the adds, and on any add error the bundle is discarded instead of
        committed. Errors found at commit time make the switch roll the whole bundle back."""
        ofp, parser = dp.ofproto, dp.ofproto_parser
        bundle_id = next(self._bundle_ids) & 0xFFFFFFFF
        waiter = _Waiter(f"switch {name}: bundle {bundle_id}")
        labels = {}
        xids = []
        try:
            open_xid = self._send(dp, ofctl.bundle_ctrl(dp, bundle_id, ofp.ONF_BCT_OPEN_REQUEST),
                                  waiter)
            xids.append(open_xid)
            labels[open_xid] = "bundle open"
            def encode(what, xid):
                return ofctl.bundle_add_bytes(dp, bundle_id,
                                              ofctl.message_bytes(dp, what, prefix), xid)
            try:
                added = self._send_many(dp, msgs, waiter, encode)
            except ValueError as exc:         # a flow that cannot be encoded
                self._discard(dp, bundle_id, time.monotonic() + 2)
                raise SouthboundError(f"switch {name}: {exc} (bundle discarded: nothing "
                                      f"changed)") from None
            xids += added
            labels.update(zip(added, msgs))
            bar_xid = self._send(dp, parser.OFPBarrierRequest(dp), waiter)
            xids.append(bar_xid)
            try:
                got = waiter.wait_for(lambda ms: any(m.xid == bar_xid for m in ms), deadline)
            except SouthboundError as exc:
                self._discard(dp, bundle_id, time.monotonic() + 2)
                raise SouthboundError(f"{exc} (bundle not committed: nothing changed)") from None
            errors = [m for m in got if _is_error(m)]
            if errors:
                if any(m.xid == open_xid for m in errors) and self._unsupported(errors[0]):
                    return False
                self._discard(dp, bundle_id, deadline)
                raise self._bundle_error(name, errors, labels, len(msgs), "rejected")
            commit_xid = self._send(
                dp, ofctl.bundle_ctrl(dp, bundle_id, ofp.ONF_BCT_COMMIT_REQUEST), waiter)
            xids.append(commit_xid)
            labels[commit_xid] = "bundle commit"
            try:
                got = waiter.wait_for(lambda ms: any(m.xid == commit_xid for m in ms),
                                      deadline)
            except SouthboundError as exc:
                raise SouthboundError(f"{exc} (commit sent: all or nothing of it may be "
                                      f"applied; the next sync reconciles)") from None
            errors = [m for m in got if _is_error(m)]
            if errors:
                raise self._bundle_error(name, errors, labels, len(msgs), "commit failed")
            return True
        finally:
            self._forget(dp, xids)

    @staticmethod
    def _unsupported(err):
        ofp = err.datapath.ofproto
        return err.type == ofp.OFPET_BAD_REQUEST and err.code in (
            ofp.OFPBRC_BAD_EXPERIMENTER, ofp.OFPBRC_BAD_EXP_TYPE, ofp.OFPBRC_BAD_TYPE)

    @staticmethod
    def _bundle_error(name, errors, labels, count, how):
        # The first error names the culprit message; the commit error only says "failed".
        def one(err):
            return f"{_label(labels.get(err.xid, f'xid {err.xid}'))}: {ofctl.describe_error(err)}"
        text = one(errors[0])
        if len(errors) > 1:
            text += f" (then {len(errors) - 1} more; last: {one(errors[-1])})"
        return SouthboundError(f"switch {name}: bundle of {count} messages {how}, nothing "
                               f"changed: {text}")

    def _discard(self, dp, bundle_id, deadline):
        waiter = _Waiter("bundle discard")
        xid = None
        try:
            xid = self._send(dp, ofctl.bundle_ctrl(dp, bundle_id,
                                                   dp.ofproto.ONF_BCT_DISCARD_REQUEST), waiter)
            waiter.wait_for(lambda ms: bool(ms), min(deadline, time.monotonic() + 2))
        except SouthboundError as exc:
            LOG.debug("bundle discard: %s", exc)
        finally:
            if xid is not None:
                self._forget(dp, [xid])

    def _send_flowmods(self, dp, msgs, deadline, name, prefix=COOKIE_PREFIX):
        """NON-ATOMIC fallback: every message on its own, then a barrier."""
        waiter = _Waiter(f"switch {name}: flow-mods")
        labels = {}
        xids = []
        try:
            try:
                raws = [ofctl.message_bytes(dp, what, prefix) for what in msgs]
            except ValueError as exc:
                raise SouthboundError(f"switch {name}: {exc} (nothing sent)") from None
            xids = self._send_many(dp, raws, waiter, ofwire.with_xid)
            labels.update(zip(xids, msgs))
            bar_xid = self._send(dp, dp.ofproto_parser.OFPBarrierRequest(dp), waiter)
            xids.append(bar_xid)
            got = waiter.wait_for(lambda ms: any(m.xid == bar_xid for m in ms), deadline)
        finally:
            self._forget(dp, xids)
        errors = [m for m in got if _is_error(m)]
        if errors:
            first = errors[0]
            raise SouthboundError(
                f"switch {name}: {len(errors)} of {len(msgs)} flow-mods refused (no bundle: "
                f"the others were applied): {_label(labels.get(first.xid, f'xid {first.xid}'))}: "
                f"{ofctl.describe_error(first)}")
