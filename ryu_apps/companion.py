"""The plumbing every app next to tenant_l2 shares (tenant_acl, tenant_chain).

A companion app keeps flows of its own on the tenant's bridges: it observes tenant_l2's
EventBridgeSynced, sent after every sync of one of the tenant's bridges (on connect, and
whenever the placement changes), computes the flows that bridge should hold now
(`flows_for(ev)`, pure), and has tenant_l2.install() make the bridge hold exactly those
under the app's own cookie prefix, in one bundle. tenant_l2's sync deletes only its own
("TNNT") flows and the app's only its own prefix, so neither removes the other's.

This module holds no app of its own: Ryu makes apps only of the classes a loaded module
defines itself, so a subclass in tenant_acl.py or tenant_chain.py is the app.
"""

import logging

from ryu_apps import tenant_l2
from ryu_apps.tenant_l2 import BaseApp, app_manager, set_ev_cls
from tenantnet.controller.ofapp import guarded
from tenantnet.errors import TenantnetError


class CompanionApp(BaseApp):
    """Base of an app that follows tenant_l2's syncs with flows of its own.

    A subclass sets LABEL (its name in log lines), WHAT (its flows, in log lines),
    COOKIE_PREFIX (32 bits of its own) and defines flows_for(ev) -> [Flow]."""

    LABEL = "companion"
    WHAT = "flows"
    COOKIE_PREFIX = None

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.log = logging.getLogger(type(self).__module__)
        self._l2 = None

    @property
    def l2(self):
        """The tenant_l2 app running next to this one."""
        if self._l2 is None:
            self._l2 = app_manager.lookup_service_brick(tenant_l2.NAME)
        return self._l2

    def flows_for(self, ev):
        """The flows bridge *ev.bridge* on *ev.node* should hold (ev: EventBridgeSynced)."""
        raise NotImplementedError

    @set_ev_cls(tenant_l2.EventBridgeSynced)
    @guarded
    def bridge_synced(self, ev):
        # Our own event loop: blocking here until the switch answers is fine (the replies
        # come through tenant_l2's handlers), and it keeps our syncs in order.
        flows = self.flows_for(ev)
        try:
            res = self.l2.install(ev.dpid, flows, self.COOKIE_PREFIX, ev.portmap)
        except TenantnetError as exc:
            self.log.error("%s: %s/%s: %s not installed: %s", self.LABEL, ev.node, ev.bridge,
                           self.WHAT, exc)
            return
        if res["added"] or res["removed"]:
            self.log.info("%s: %s/%s +%d -%d %s", self.LABEL, ev.node, ev.bridge,
                          res["added"], res["removed"], self.WHAT)
