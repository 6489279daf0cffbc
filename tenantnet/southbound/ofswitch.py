"""FlowPusher: the connected datapaths and the blocking "make the switch hold exactly these
flows" operation.

Threading model (os-ken native hub = plain threads):
  * the os-ken app calls register()/unregister() and forwards every reply we may wait for
    (flow-stats replies, ONF bundle control replies, error messages, barrier replies) to
    handle_message() from its event-loop thread; handle_message() never blocks;
  * sync(), installed_cookies() and barrier() block the *calling* thread (never call them
    from an os-ken event handler: the reply they wait for is delivered by that very
    thread) until the answer arrives, the switch disconnects, or the timeout passes.

Replies are routed to waiters by (datapath object, xid) (southbound.ofreplies); the
messages of a sync go out as one bundle (southbound.ofbundle); each switch's flows are
remembered resolved (southbound.flowcache), so a resync of flows seen before neither
resolves nor hashes them again.

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

from tenantnet.errors import SouthboundError
from tenantnet.model.flowspec import COOKIE_PREFIX
from tenantnet.southbound import ofbundle, ofctl, ofdump
from tenantnet.southbound.flowcache import FlowCache
from tenantnet.southbound.ofreplies import ReplyRouter, Waiter, is_error

LOG = logging.getLogger("tenantnet.southbound.ofswitch")

MODE_BUNDLE = "bundle"
MODE_FLOWMOD = "flowmod"
STREAM_PART = 1000               # flows to add sent in one part of a bundle


def _dpid_str(dpid):
    return f"{dpid:016x}" if isinstance(dpid, int) else str(dpid)


class FlowPusher:
    """Thread-safe registry of connected datapaths plus the blocking flow sync.

    use_bundles=False forces the non-atomic fallback (flow-mods + barrier) everywhere."""

    def __init__(self, use_bundles=True):
        self.use_bundles = use_bundles
        self._lock = threading.Condition(threading.RLock())
        self._dps = {}                # dpid -> Datapath
        self._router = ReplyRouter()  # xids and who waits for their replies
        self._cache = FlowCache()     # resolved flows and their bytes, per switch
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
                self._router.detach(old, "switch reconnected")
            self._dps[dpid] = dp
            self._router.attach(dp)
            self._lock.notify_all()
        LOG.info("switch %s connected from %s", _dpid_str(dpid), getattr(dp, "address", "?"))

    def unregister(self, dp):
        """Forget *dp*; returns its dpid if it was the live connection, else None.

        Waiters on that connection fail with SouthboundError."""
        with self._lock:
            dpid = next((k for k, v in self._dps.items() if v is dp), None)
            if dpid is not None:
                del self._dps[dpid]
            self._router.detach(dp, "switch disconnected")
            self._lock.notify_all()
        if dpid is not None:
            self._cache.forget(dpid)
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
            self._router.fail_all("controller stopping")
            self._dps.clear()
            self._lock.notify_all()

    # -- replies from the app ----------------------------------------------------------
    def handle_message(self, msg):
        """Route one reply (flow stats, bundle ctrl, error, barrier) to its waiter."""
        if not self._router.route(msg) and is_error(msg):
            LOG.warning("switch %s: unsolicited error: %s",
                        _dpid_str(getattr(msg.datapath, "id", None)), ofctl.describe_error(msg))

    # -- operations --------------------------------------------------------------------
    def installed_cookies(self, dpid, timeout=10, cookie_prefix=COOKIE_PREFIX):
        """Set of cookies of every flow on *dpid* carrying *cookie_prefix* (ours)."""
        dp = self.datapath(dpid)
        return self._installed_cookies(dp, time.monotonic() + timeout, _dpid_str(dpid),
                                       cookie_prefix)

    def _installed_cookies(self, dp, deadline, name, prefix=COOKIE_PREFIX):
        waiter = Waiter(f"switch {name}: flow dump")
        req = ofctl.our_flow_stats_request(dp, prefix)
        sent = []

        def cookies_only(xid):                    # the replies: read for cookies only
            sent.append(xid)
            if ofdump.hook(dp.ofproto_parser):
                ofdump.want_cookies_only(dp, xid)
        try:
            self._router.send(dp, req, waiter, on_xid=cookies_only)
            more = dp.ofproto.OFPMPF_REPLY_MORE
            msgs = waiter.wait_for(
                lambda ms: any(is_error(m) or not (m.flags & more) for m in ms), deadline)
        finally:
            for xid in sent:
                ofdump.done(dp, xid)
            self._router.forget(dp, sent)
        cookies = set()
        for m in msgs:
            if is_error(m):
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
        waiter = Waiter(f"switch {name}: port description")
        req = dp.ofproto_parser.OFPPortDescStatsRequest(dp, 0)
        xid = self._router.send(dp, req, waiter)
        more = dp.ofproto.OFPMPF_REPLY_MORE
        try:
            msgs = waiter.wait_for(
                lambda ms: any(is_error(m) or not (m.flags & more) for m in ms),
                time.monotonic() + timeout)
        finally:
            self._router.forget(dp, [xid])
        ports = {}
        for m in msgs:
            if is_error(m):
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
        waiter = Waiter(f"switch {_dpid_str(dpid)}: barrier")
        xid = self._router.send(dp, dp.ofproto_parser.OFPBarrierRequest(dp), waiter)
        try:
            waiter.wait_for(lambda ms: bool(ms), time.monotonic() + timeout)
        finally:
            self._router.forget(dp, [xid])

    def _sync_lock(self, dpid):
        with self._lock:
            return self._sync_locks.setdefault(dpid, threading.Lock())

    def sync(self, dpid, flows, portmap, timeout=10, use_bundle=None, installed=None,
             cookie_prefix=COOKIE_PREFIX):
        """Make *dpid* hold exactly *flows* (ours; flows with other cookies are untouched).

        *cookie_prefix* says whose flows these are (default tenantnet's): only installed
        flows carrying it are dumped and may be deleted.

        flows: Flow objects with port names; portmap: name -> ofport. Dumps our installed
        cookies, resolves and plans, and — if anything differs — sends all adds then all
        deletes in ONE atomic+ordered ONF bundle and waits for the commit reply. The adds
        go out in parts while the later flows are still resolved (_plan); a missing port or
        conflicting flows found late discard the bundle, so nothing changes.
        Returns dict(added=n, removed=n, mode="bundle"|"flowmod"|None).
        Raises SouthboundError (switch refused, disconnected or timed out; with a bundle
        nothing was changed) or a SouthboundError naming a port missing from *portmap*.
        *installed*: our cookies the caller knows to be on the switch (it installed them on
        this connection); the dump is then skipped. An ADD of a flow already there
        overwrites it and a DELETE of a cookie not there matches nothing, so a stale belief
        costs at most a redundant message."""
        name = _dpid_str(dpid)
        deadline = time.monotonic() + timeout
        with self._sync_lock(dpid):
            dp = self.datapath(dpid)
            if installed is None:
                installed = self._installed_cookies(dp, deadline, name, cookie_prefix)

            def to_bytes(what):               # a Flow to add, or a cookie to delete
                return ofctl.message_bytes(dp, what, cookie_prefix)
            stream = None
            if (self.use_bundles if use_bundle is None else use_bundle) and \
                    dpid not in self._no_bundles:
                stream = ofbundle.BundleStream(self._router, dp,
                                               next(self._bundle_ids) & 0xFFFFFFFF,
                                               to_bytes, deadline, name)
            try:
                to_add, to_delete = self._plan(dpid, flows, portmap, installed,
                                               cookie_prefix, name, stream)
                if stream is not None:
                    stream.send(to_delete)
            except BaseException:
                if stream is not None:
                    stream.abort()
                raise
            if not to_add and not to_delete:
                return dict(added=0, removed=0, mode=None)
            mode = MODE_FLOWMOD
            if stream is not None:
                if stream.finish():
                    mode = MODE_BUNDLE
                else:
                    self._no_bundles.add(dpid)
                    LOG.warning("switch %s refused ONF bundles: falling back to NON-ATOMIC "
                                "flow-mods + barrier", name)
            if mode == MODE_FLOWMOD:
                ofbundle.send_flowmods(self._router, dp, to_add + to_delete, to_bytes,
                                       deadline, name)
            LOG.info("switch %s: sync added %d removed %d (%s)", name, len(to_add),
                     len(to_delete), mode)
            return dict(added=len(to_add), removed=len(to_delete), mode=mode)

    def _plan(self, dpid, flows, portmap, installed, prefix, name, stream):
        """Resolve and plan *flows* (to_add, to_delete). With a bundle *stream*, the flows
        to add go out in parts of STREAM_PART as they are found, so the switch takes the
        first ones while the others are still resolved and hashed; a SouthboundError
        (a missing port, conflicting flows) leaves the caller to discard the bundle."""
        resolver = self._cache.resolver(dpid, prefix, portmap)
        plan = ofctl.SyncPlan(installed, prefix)
        to_add, sent = [], 0
        for flow in flows:
            try:
                resolved = resolver.resolve(flow)
            except KeyError as exc:
                raise SouthboundError(f"switch {name}: port {exc.args[0]!r} of flow "
                                      f"{exc.args[1]} is not on the bridge") from None
            try:
                new = plan.add(resolved)
            except ValueError as exc:
                raise SouthboundError(f"switch {name}: {exc}") from None
            if new:
                to_add.append(resolved)
                if stream is not None and len(to_add) - sent >= STREAM_PART:
                    stream.send(to_add[sent:])
                    sent = len(to_add)
        if stream is not None:
            stream.send(to_add[sent:])
        resolver.keep()
        return to_add, plan.to_delete()
