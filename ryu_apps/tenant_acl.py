"""A tenant network function next to tenant_l2: drop rules between VMs, as a Ryu app.

    ryu-manager ryu_apps.tenant_l2 ryu_apps.tenant_acl --config-file acme.conf ...

acme.conf, next to the [tenant_l2] section:

    [tenant_acl]
    pairs = web1>web2, web3>web1

Every pair "a>b" drops a's frames to b's MAC on a's brint- bridge, where they enter the
network, before L2 forwarding (NORMAL) sees them. A per-pair counter comes for free: the
drop flow's n_packets (`ovs-ofctl dump-flows brint-...`).

How it composes with tenant_l2 (it needs it; loading this app alone loads tenant_l2 too):
  * it observes tenant_l2's EventBridgeSynced, sent after every sync of one of the
    tenant's bridges: when a bridge connects, and whenever the placement changes. So the
    drop rules follow the VMs: a VM that is added, moved or deleted gets, keeps or loses
    its rules, with the MAC and the port number the bridge has now;
  * it installs its flows through tenant_l2.install() with a cookie prefix of its own,
    0x5441434C ("TACL"). tenant_l2's sync deletes only "TNNT" flows and this app's sync
    only "TACL" flows, so neither ever removes the other's (nor anybody's cookie-0 flows).
"""

import logging

from oslo_config import cfg as oslo_cfg

from ryu_apps import tenant_l2
from ryu_apps.tenant_l2 import (BaseApp, SettingsError, app_manager, cfg, conf_value,
                                set_ev_cls)
from tenantnet.controller.ofapp import guarded
from tenantnet.errors import TenantnetError
from tenantnet.model import naming
from tenantnet.model.flowspec import Flow

LOG = logging.getLogger("ryu_apps.tenant_acl")

GROUP = "tenant_acl"
PRIO_ACL = 500     # above the NORMAL flow (priority 0) of brint-xy
COOKIE_PREFIX = 0x5441434C    # "TACL": this app's flows; tenant_l2's are "TNNT"

# Ryu reads this module attribute: loading tenant_acl loads tenant_l2 as well.
_REQUIRED_APP = [tenant_l2._SERVICE_NAME]

cfg.CONF.register_opts([
    oslo_cfg.ListOpt("pairs", default=[],
                     help="drop rules, src_vm>dst_vm, comma separated (e.g. web1>web2)"),
], group=GROUP)


def acl_pairs(text):
    """[(src, dst)] from "a>b,c>d"; ValueError names a bad item."""
    pairs = []
    for item in filter(None, (p.strip() for p in text.split(","))):
        src, sep, dst = item.partition(">")
        if not sep or not src.strip() or not dst.strip():
            raise ValueError(f"{item!r} is not 'src_vm>dst_vm'")
        pairs.append((src.strip(), dst.strip()))
    return pairs


def drop_flows(topo, node, bridge, pairs):
    """The drop flows of *bridge* on *node* for *pairs* [(src VM, dst VM)] (pure)."""
    flows = []
    for src, dst in pairs:
        a, b = topo.vm(src), topo.vm(dst)
        if a is None or b is None or a.node != node or a.network != b.network:
            continue
        if bridge != naming.brint_name(a.network):
            continue
        flows.append(Flow.make(0, PRIO_ACL, {"in_port": a.port, "eth_dst": b.mac}, [],
                               rule=f"acl-drop {src}>{dst}"))
    return flows


class TenantAcl(BaseApp):
    """Keeps the drop rules of [tenant_acl] pairs on the tenant's bridges."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        try:
            self.pairs = acl_pairs(",".join(conf_value(self.CONF, GROUP, "pairs")))
        except ValueError as exc:
            tenant_l2.settings_failed(GROUP, SettingsError(f"[{GROUP}] pairs: {exc}"))
        except SettingsError as exc:
            tenant_l2.settings_failed(GROUP, exc)
        if not self.pairs:
            LOG.warning("tenant_acl: no [%s] pairs: no drop rule to keep", GROUP)
        self._l2 = None

    @property
    def l2(self):
        if self._l2 is None:
            self._l2 = app_manager.lookup_service_brick(tenant_l2.NAME)
        return self._l2

    @set_ev_cls(tenant_l2.EventBridgeSynced)
    @guarded
    def _bridge_synced(self, ev):
        # Our own event loop: blocking here until the switch answers is fine (the replies
        # come through tenant_l2's handlers), and it keeps our syncs in order.
        flows = drop_flows(ev.topo, ev.node, ev.bridge, self.pairs)
        try:
            res = self.l2.install(ev.dpid, flows, COOKIE_PREFIX, ev.portmap)
        except TenantnetError as exc:
            LOG.error("tenant_acl: %s/%s: drop rules not installed: %s", ev.node, ev.bridge,
                      exc)
            return
        if res["added"] or res["removed"]:
            LOG.info("tenant_acl: %s/%s +%d -%d drop rules", ev.node, ev.bridge,
                     res["added"], res["removed"])
