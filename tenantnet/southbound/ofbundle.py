"""How the messages of one flow sync reach a switch: one atomic, ordered ONF bundle, or
(for a switch without bundles) flow-mods one by one and a barrier.

`send_bundle()` and `send_flowmods()` send a sync's messages, given as what each does (a
resolved Flow to add or an int cookie to delete) and a function giving its bytes (xid 0),
called while the messages are being sent so the switch starts on the first ones early.
They wait for the switch's answer and raise SouthboundError naming the first message the
switch refused. The caller (ofswitch.FlowPusher.sync) decides what to send; this module
neither plans nor resolves. Nothing here imports os-ken or Ryu."""

import logging
import time

from tenantnet.errors import SouthboundError
from tenantnet.southbound import ofctl, ofwire
from tenantnet.southbound.ofreplies import Waiter, is_error

LOG = logging.getLogger("tenantnet.southbound.ofbundle")


def label(what):
    """What a message of a sync does, in words: a Flow is added, an int cookie deleted."""
    if isinstance(what, int):
        return f"delete cookie=0x{what:x}"
    if isinstance(what, str):
        return what
    return f"add {what}"


class Labels:
    """What the message of each xid of a sync does: a few single xids, and the blocks."""

    def __init__(self):
        self.single = {}
        self.blocks = []              # (XidBlock, the messages it carried)

    def add_block(self, block, msgs):
        self.blocks.append((block, msgs))

    def of(self, xid):
        if xid in self.single:
            return label(self.single[xid])
        for block, msgs in self.blocks:
            i = block.index(xid)
            if i is not None:
                return label(msgs[i])
        return f"xid {xid}"


def unsupported(err):
    """True for the error a switch without ONF bundles answers a bundle open with."""
    ofp = err.datapath.ofproto
    return err.type == ofp.OFPET_BAD_REQUEST and err.code in (
        ofp.OFPBRC_BAD_EXPERIMENTER, ofp.OFPBRC_BAD_EXP_TYPE, ofp.OFPBRC_BAD_TYPE)


def bundle_error(name, errors, labels, count, how):
    # The first error names the culprit message; the commit error only says "failed".
    def one(err):
        return f"{labels.of(err.xid)}: {ofctl.describe_error(err)}"
    text = one(errors[0])
    if len(errors) > 1:
        text += f" (then {len(errors) - 1} more; last: {one(errors[-1])})"
    return SouthboundError(f"switch {name}: bundle of {count} messages {how}, nothing "
                           f"changed: {text}")


def discard(router, dp, bundle_id, deadline):
    waiter = Waiter("bundle discard")
    xid = None
    try:
        xid = router.send(dp, ofctl.bundle_ctrl(dp, bundle_id,
                                                dp.ofproto.ONF_BCT_DISCARD_REQUEST), waiter)
        waiter.wait_for(lambda ms: bool(ms), min(deadline, time.monotonic() + 2))
    except SouthboundError as exc:
        LOG.debug("bundle discard: %s", exc)
    finally:
        if xid is not None:
            router.forget(dp, [xid])


class BundleStream:
    """One ONF bundle sent in parts: OPEN with the first part (send()), ADDs as they come,
    then finish(): barrier, COMMIT (or DISCARD on any refused add); abort() discards it.

    Most validation in Open vSwitch happens when a message is *added* to the bundle, and
    a failed add leaves the bundle open with the other messages in it; so a barrier
    follows the adds, and on any add error the bundle is discarded instead of committed.
    Errors found at commit time make the switch roll the whole bundle back."""

    def __init__(self, router, dp, bundle_id, to_bytes, deadline, name):
        self.router, self.dp, self.bundle_id = router, dp, bundle_id
        self.to_bytes, self.deadline, self.name = to_bytes, deadline, name
        self.flags = ofctl.bundle_flags(dp)
        self.waiter = Waiter(f"switch {name}: bundle {bundle_id}")
        self.labels = Labels()
        self.xids = []
        self.blocks = []
        self.open_xid = None
        self.count = 0

    def _ctrl(self, ctrl_type, what):
        xid = self.router.send(self.dp, ofctl.bundle_ctrl(self.dp, self.bundle_id, ctrl_type),
                               self.waiter)
        self.xids.append(xid)
        self.labels.single[xid] = what
        return xid

    def send(self, msgs):
        """ADD *msgs* (opening the bundle first, once). SouthboundError if one cannot be
        encoded (the bundle is then discarded)."""
        if not msgs:
            return
        if self.open_xid is None:
            self.open_xid = self._ctrl(self.dp.ofproto.ONF_BCT_OPEN_REQUEST, "bundle open")

        def encode(what, xid):
            return ofwire.bundle_add(self.bundle_id, self.flags, self.to_bytes(what), xid)
        try:
            block = self.router.send_block(self.dp, msgs, self.waiter, encode)
        except ValueError as exc:         # a flow that cannot be encoded
            self.abort()
            raise SouthboundError(f"switch {self.name}: {exc} (bundle discarded: nothing "
                                  f"changed)") from None
        self.blocks.append(block)
        self.labels.add_block(block, msgs)
        self.count += len(msgs)

    def abort(self):
        """Discard the bundle if it was opened (nothing of it is applied)."""
        if self.open_xid is not None:
            discard(self.router, self.dp, self.bundle_id, time.monotonic() + 2)
        self.close()

    def close(self):
        self.router.forget(self.dp, self.xids)
        for block in self.blocks:
            self.router.forget_block(self.dp, block)
        self.xids, self.blocks = [], []

    def finish(self):
        """Barrier, then COMMIT; True once committed, False if the switch does not do
        bundles at all. SouthboundError (nothing changed) when it refused any message."""
        name, dp, waiter = self.name, self.dp, self.waiter
        if self.open_xid is None:         # nothing was sent: nothing to commit
            return True
        try:
            bar_xid = self.router.send(dp, dp.ofproto_parser.OFPBarrierRequest(dp), waiter)
            self.xids.append(bar_xid)
            try:
                got = waiter.wait_for(lambda ms: any(m.xid == bar_xid for m in ms),
                                      self.deadline)
            except SouthboundError as exc:
                discard(self.router, dp, self.bundle_id, time.monotonic() + 2)
                raise SouthboundError(f"{exc} (bundle not committed: nothing changed)") \
                    from None
            errors = [m for m in got if is_error(m)]
            if errors:
                if any(m.xid == self.open_xid for m in errors) and unsupported(errors[0]):
                    return False
                discard(self.router, dp, self.bundle_id, self.deadline)
                raise bundle_error(name, errors, self.labels, self.count, "rejected")
            commit_xid = self._ctrl(dp.ofproto.ONF_BCT_COMMIT_REQUEST, "bundle commit")
            try:
                got = waiter.wait_for(lambda ms: any(m.xid == commit_xid for m in ms),
                                      self.deadline)
            except SouthboundError as exc:
                raise SouthboundError(f"{exc} (commit sent: all or nothing of it may be "
                                      f"applied; the next sync reconciles)") from None
            errors = [m for m in got if is_error(m)]
            if errors:
                raise bundle_error(name, errors, self.labels, self.count, "commit failed")
            return True
        finally:
            self.close()


def send_bundle(router, dp, bundle_id, msgs, to_bytes, deadline, name):
    """All *msgs* as one bundle (BundleStream); False if the switch does not do bundles."""
    stream = BundleStream(router, dp, bundle_id, to_bytes, deadline, name)
    try:
        stream.send(msgs)
    except BaseException:
        stream.close()
        raise
    return stream.finish()


def send_flowmods(router, dp, msgs, to_bytes, deadline, name):
    """NON-ATOMIC fallback: every message on its own, then a barrier."""
    waiter = Waiter(f"switch {name}: flow-mods")
    labels = Labels()
    bar_xid = None
    block = None
    try:
        try:
            raws = [to_bytes(what) for what in msgs]
        except ValueError as exc:
            raise SouthboundError(f"switch {name}: {exc} (nothing sent)") from None
        block = router.send_block(dp, raws, waiter, ofwire.with_xid)
        labels.add_block(block, msgs)
        bar_xid = router.send(dp, dp.ofproto_parser.OFPBarrierRequest(dp), waiter)
        got = waiter.wait_for(lambda ms: any(m.xid == bar_xid for m in ms), deadline)
    finally:
        if bar_xid is not None:
            router.forget(dp, [bar_xid])
        if block is not None:
            router.forget_block(dp, block)
    errors = [m for m in got if is_error(m)]
    if errors:
        first = errors[0]
        raise SouthboundError(
            f"switch {name}: {len(errors)} of {len(msgs)} flow-mods refused (no bundle: "
            f"the others were applied): {labels.of(first.xid)}: "
            f"{ofctl.describe_error(first)}")
