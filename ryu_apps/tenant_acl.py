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
from ryu_apps.companion import CompanionApp
from ryu_apps.tenant_l2 import SettingsError, cfg, conf_value
from tenantnet.model import naming
from tenantnet.model.flowspec import Flow

LOG = logging.getLogger("ryu_apps.tenant_acl")

GROUP = "tenant_acl"
PRIO_ACL = 500     # above the NORMAL flow (priority 0) of brint-xy
COOKIE_PREFIX = 0x5441434C    # "TACL": this app's flows; tenant_l2's are "TNNT"

# Ryu reads this module attribute: loading tenant_acl loads tenant_l2 as well.
_REQUIRED_APP = [tenant_l2.SERVICE_NAME]

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


class TenantAcl(CompanionApp):
    """Keeps the drop rules of [tenant_acl] pairs on the tenant's bridges."""

    LABEL = "tenant_acl"
    WHAT = "drop rules"
    COOKIE_PREFIX = COOKIE_PREFIX

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

    def flows_for(self, ev):
        return drop_flows(ev.topo, ev.node, ev.bridge, self.pairs)
