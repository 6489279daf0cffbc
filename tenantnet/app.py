"""The provider's controller as an os-ken/Ryu app: `ryu-manager tenantnet.app --config-file F`.

A thin app: the OpenFlow plumbing (tenantnet.controller.ofapp) feeds connection events and
replies to the FlowPusher; everything with logic lives in the *core*
(tenantnet.controller.core), which drives FlowPusher.sync() from its own threads.

Its settings are one object (tenantnet.controller.settings.Settings): handed in as the
os-ken context `tenantnet_settings` (tests, with a core_factory of their own), or else read
from oslo.config's [tenantnet] section, as Ryu apps read theirs.
"""

import logging

from os_ken import cfg
from os_ken.base import app_manager
from os_ken.controller import handler, ofp_event
from os_ken.lib import hub
from os_ken.ofproto import ofproto_v1_3

from tenantnet.controller import gcpolicy, runner, settings as settings_mod
from tenantnet.controller.ofapp import pusher_app_base
from tenantnet.southbound.ofswitch import FlowPusher

LOG = logging.getLogger("tenantnet.app")

settings_mod.register(cfg.CONF)


class TenantnetApp(pusher_app_base(app_manager, ofp_event, handler, hub, ofproto_v1_3)):
    """The provider's controller."""

    def __init__(self, *args, **kwargs):
        settings = kwargs.pop(settings_mod.CONTEXT, None)
        super().__init__(*args, **kwargs)
        if settings is None:
            settings = settings_mod.Settings.from_conf(self.CONF)
        settings.apply_to_openflow(self.CONF)
        self.settings = settings
        self.pusher = FlowPusher()
        factory = settings.core_factory
        if factory is None:
            from tenantnet.controller.provider import build_core
            factory = build_core
        gcpolicy.starting()               # until the core has started (_start_core)
        try:
            self.core = factory(self.pusher, self, settings)
        except BaseException:
            gcpolicy.started()
            raise
        # The OpenFlow port opens once the core is ready (see _start_core).
        self._open_listener = runner.hold_listening()

    def start(self):
        thread = super().start()
        self.spawn(self._start_core)
        return thread

    def _start_core(self):
        # Switches connect only once the core has reached and reconciled the nodes: after a
        # restart every bridge reconnects at once, and 1,000 TLS handshakes would compete
        # with the start-up (controller.oflisten). Each bridge is synced when it connects
        # (controller.switchsync); it keeps its flows meanwhile (fail_mode=secure).
        try:
            self.core.start()
        except Exception as exc:  # noqa: BLE001 -- any start-up failure ends the controller
            LOG.error("controller start failed: %s", exc)
            runner.fail(f"start-up failed: {exc}")
        finally:
            gcpolicy.started()
            self._open_listener()

    def stop(self):
        try:
            self.core.stop()
        finally:
            self.pusher.close()
            super().stop()
            gcpolicy.stopped()
