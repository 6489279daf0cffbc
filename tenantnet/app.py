"""The thin os-ken application: connection events in, replies to the FlowPusher.

Everything with logic lives in the *core* object (tenantnet.controller.build_core, or
CORE_FACTORY in tests), which gets switch_connected(dpid) / switch_disconnected(dpid) and
drives FlowPusher.sync() from its own threads.

os-ken (native hub) pitfall handled here: an exception escaping an event handler ends the
app's event loop thread *silently* (hub.TaskExit is `Exception` there), and exceptions
in hub.spawn'ed threads vanish without a log line; so every handler and every spawned
call is wrapped in _guarded().
"""

import functools
import logging

from os_ken.base import app_manager
from os_ken.controller import ofp_event
from os_ken.controller.handler import (CONFIG_DISPATCHER, DEAD_DISPATCHER,
                                       MAIN_DISPATCHER, set_ev_cls)
from os_ken.lib import hub
from os_ken.ofproto import ofproto_v1_3

from tenantnet.southbound.ofswitch import FlowPusher

LOG = logging.getLogger("tenantnet.app")

# callable(pusher, app) -> core with start(), stop(), switch_connected(dpid),
# switch_disconnected(dpid). None: tenantnet.controller.build_core.
CORE_FACTORY = None

_LIVE = [CONFIG_DISPATCHER, MAIN_DISPATCHER]


def _guarded(func):
    @functools.wraps(func)
    def wrapper(*args, **kwargs):
        try:
            return func(*args, **kwargs)
        except Exception:
            LOG.exception("%s failed", getattr(func, "__qualname__", func))
    return wrapper


class TenantnetApp(app_manager.OSKenApp):
    OFP_VERSIONS = [ofproto_v1_3.OFP_VERSION]

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.pusher = FlowPusher()
        factory = CORE_FACTORY
        if factory is None:
            from tenantnet.controller import core as controller
            factory = controller.build_core
        self.core = factory(self.pusher, self)

    def start(self):
        thread = super().start()
        hub.spawn(self._start_core)
        return thread

    def _start_core(self):
        # The core creates bridges that connect to us at once: if the OpenFlow port did not
        # listen yet, Open vSwitch would back off for a second before trying again.
        from tenantnet.controller import runner as ofrunner
        ofrunner.wait_listening(10.0)
        try:
            self.core.start()
        except Exception as exc:  # noqa: BLE001 -- any start-up failure ends the controller
            LOG.error("controller start failed: %s", exc)
            ofrunner.fail(f"start-up failed: {exc}")

    def stop(self):
        try:
            self.core.stop()
        finally:
            self.pusher.close()
            super().stop()

    def _spawn(self, func, *args):
        hub.spawn(_guarded(func), *args)

    # -- connection state ----------------------------------------------------------
    @set_ev_cls(ofp_event.EventOFPSwitchFeatures, CONFIG_DISPATCHER)
    @_guarded
    def _switch_features(self, ev):
        dp = ev.msg.datapath
        dpid = ev.msg.datapath_id          # dp.id may not be set yet (os-ken sets it too)
        self.pusher.register(dp, dpid)
        self._spawn(self.core.switch_connected, dpid)

    @set_ev_cls(ofp_event.EventOFPStateChange, [MAIN_DISPATCHER, DEAD_DISPATCHER])
    @_guarded
    def _state_change(self, ev):
        if ev.state != DEAD_DISPATCHER:
            return
        dpid = self.pusher.unregister(ev.datapath)
        if dpid is not None:           # not a stale connection replaced by a newer one
            self._spawn(self.core.switch_disconnected, dpid)

    # -- replies the pusher waits for --------------------------------------------------
    @set_ev_cls(ofp_event.EventOFPFlowStatsReply, _LIVE)
    @_guarded
    def _flow_stats_reply(self, ev):
        self.pusher.handle_message(ev.msg)

    @set_ev_cls(ofp_event.EventONFBundleCtrlMsg, _LIVE)
    @_guarded
    def _bundle_ctrl_reply(self, ev):
        self.pusher.handle_message(ev.msg)

    @set_ev_cls(ofp_event.EventOFPErrorMsg, _LIVE)
    @_guarded
    def _error(self, ev):
        self.pusher.handle_message(ev.msg)

    @set_ev_cls(ofp_event.EventOFPPortDescStatsReply, _LIVE)
    @_guarded
    def _port_desc_reply(self, ev):
        self.pusher.handle_message(ev.msg)

    @set_ev_cls(ofp_event.EventOFPBarrierReply, _LIVE)
    @_guarded
    def _barrier_reply(self, ev):
        self.pusher.handle_message(ev.msg)
