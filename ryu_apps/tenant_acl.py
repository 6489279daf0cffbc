"""A tenant network function on top of tenant L2 forwarding: drop rules between VMs.

Run it as the tenant's controller:
    TENANTNET_ACL="web1>web2,web3>web1" \\
    tenantnet controller --tenant acme --api http://198.18.0.1:8080 --token-file acme.token \\
        --app ryu_apps.tenant_acl --listen-host 198.18.0.201

Every pair "a>b" drops a's frames to b's MAC on a's brint- bridge, where they enter the
network, before L2 forwarding (NORMAL) sees them. A per-pair counter comes for free: the
drop flow's n_packets (`ovs-ofctl dump-flows brint-...`). Everything else is forwarded
exactly as tenantnet's own tenant controller does, since the base rules are its rules.
"""

import os

from tenantnet.model import naming
from tenantnet.model.flowspec import Flow

PRIO_ACL = 500     # above the NORMAL flow (priority 0) of brint-xy


def acl_pairs(text=None):
    text = os.environ.get("TENANTNET_ACL", "") if text is None else text
    pairs = []
    for item in filter(None, (p.strip() for p in text.split(","))):
        src, sep, dst = item.partition(">")
        if not sep or not src or not dst:
            raise ValueError(f"TENANTNET_ACL: {item!r} is not 'src_vm>dst_vm'")
        pairs.append((src.strip(), dst.strip()))
    return pairs


def extra_flows(topo, node, bridge, pairs=None):
    """Flows added to the tenant's own rules on *bridge* of *node* (tenantnet.controller.tenant hook)."""
    flows = []
    for src, dst in (acl_pairs() if pairs is None else pairs):
        a, b = topo.vm(src), topo.vm(dst)
        if a is None or b is None or a.node != node or a.network != b.network:
            continue
        if bridge != naming.brint_name(a.network):
            continue
        flows.append(Flow.make(0, PRIO_ACL, {"in_port": a.port, "eth_dst": b.mac}, [],
                               rule=f"acl-drop {src}>{dst}"))
    return flows
