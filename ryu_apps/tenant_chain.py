"""Service chains on a tenant's own bridges, next to tenant_l2, as a Ryu app.

    ryu-manager ryu_apps.tenant_l2 ryu_apps.tenant_chain --config-file acme.conf ...

The chains and network functions are the tenant's placement, as the provider's API shows it
to the tenant (`GET /v1/topology` with its credential: `functions` and `chains`, declared in
the provider's config or with POST /v1/functions and /v1/chains). The provider creates the
functions' ports; this app installs the steering flows, computed by the same code as the
provider's (tenantnet.model.chains: eth_dst rewritten to the next function's MAC, in their
own priority band of brint-xy's table 0, fail-open or fail-closed per chain).

How it composes (as ryu_apps.tenant_acl does):
  * it observes tenant_l2's EventBridgeSynced, sent after every sync of one of the tenant's
    bridges: on connect and whenever the placement (VMs, functions, chains) changes. So a
    chain that is added or deleted, or a function that goes, changes the flows at once;
  * it installs its flows through tenant_l2.install() with a cookie prefix of its own,
    0x5443484E ("TCHN"): tenant_l2's sync never removes them, nor this app's anybody
    else's. A chain deleted: its flows are deleted, plain forwarding (NORMAL) is back.
"""

from ryu_apps import tenant_l2
from ryu_apps.companion import CompanionApp
from tenantnet.model.chains import bridge_chain_flows

COOKIE_PREFIX = 0x5443484E    # "TCHN": this app's flows; tenant_l2's are "TNNT"

# Ryu reads this module attribute: loading tenant_chain loads tenant_l2 as well.
_REQUIRED_APP = [tenant_l2.SERVICE_NAME]


class TenantChain(CompanionApp):
    """Keeps the steering flows of the tenant's chains on its bridges."""

    LABEL = "tenant_chain"
    WHAT = "steering flows"
    COOKIE_PREFIX = COOKIE_PREFIX

    def flows_for(self, ev):
        return bridge_chain_flows(ev.topo, ev.node, ev.bridge)
