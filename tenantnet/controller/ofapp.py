"""The OpenFlow plumbing every tenantnet app shares: connection events in, replies to the
FlowPusher, the core told of switches that come and go.

`pusher_app_base(...)` makes the base class for a framework's modules, so the same code
serves os-ken (tenantnet.app, and ryu_apps under tenantnet's ryu-manager) and a real
Ryu (ryu_apps under its own ryu-manager). A subclass sets `self.pusher` (a FlowPusher)
and `self.core` (switch_connected(dpid) / switch_disconnected(dpid)) in its constructor.
The core's two calls run in the app's event thread and must return at once (queue the
work): every switch's receive loop waits when that thread's queue is full, echo replies
included, so a core that blocks there makes the switches look dead. (A thread per event
was no answer: with 1,000 bridges reconnecting, starting one took seconds.)

os-ken (native hub) pitfall handled here: an exception escaping an event handler ends the
app's event loop thread *silently* (hub.TaskExit is `Exception` there), and exceptions in
hub.spawn'ed threads vanish without a log line; so every handler and every spawned call
is wrapped in guarded().
"""

import functools
import logging

LOG = logging.getLogger("tenantnet.ofapp")


def guarded(func):
    """Log, rather than lose, an exception of an event handler or a spawned call."""
    @functools.wraps(func)
    def wrapper(*args, **kwargs):
        try:
            return func(*args, **kwargs)
        except Exception:
            LOG.exception("%s failed", getattr(func, "__qualname__", func))
    return wrapper


def pusher_app_base(app_manager, ofp_event, handler, hub, ofproto_v1_3):
    """The base app class for one framework: pass its modules (os_ken.* or ryu.*)."""
    base = getattr(app_manager, "OSKenApp", None) or app_manager.RyuApp
    live = [handler.CONFIG_DISPATCHER, handler.MAIN_DISPATCHER]
    replies = [ofp_event.EventOFPFlowStatsReply, ofp_event.EventONFBundleCtrlMsg,
               ofp_event.EventOFPErrorMsg, ofp_event.EventOFPPortDescStatsReply,
               ofp_event.EventOFPBarrierReply]

    class PusherApp(base):
        OFP_VERSIONS = [ofproto_v1_3.OFP_VERSION]

        def spawn(self, func, *args):
            """Run func(*args) in a hub thread of its own, its exceptions logged."""
            hub.spawn(guarded(func), *args)

        @handler.set_ev_cls(ofp_event.EventOFPSwitchFeatures, handler.CONFIG_DISPATCHER)
        @guarded
        def _switch_features(self, ev):
            dpid = ev.msg.datapath_id          # dp.id may not be set yet
            self.pusher.register(ev.msg.datapath, dpid)
            self.core.switch_connected(dpid)

        @handler.set_ev_cls(ofp_event.EventOFPStateChange,
                            [handler.MAIN_DISPATCHER, handler.DEAD_DISPATCHER])
        @guarded
        def _state_change(self, ev):
            if ev.state != handler.DEAD_DISPATCHER:
                return
            dpid = self.pusher.unregister(ev.datapath)
            if dpid is not None:           # not a stale connection replaced by a newer one
                self.core.switch_disconnected(dpid)

        @handler.set_ev_cls(replies, live)
        @guarded
        def _reply(self, ev):
            """Flow stats, bundle control, errors, port descriptions, barriers: the replies
            the pusher waits for."""
            self.pusher.handle_message(ev.msg)

    return PusherApp
