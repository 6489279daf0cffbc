"""The one-machine lab's certificates: a PKI of its own under `<state dir>/pki`
(tenantnet.pki), made at `lab up` when the config's `security` is tls (the default), so
that the lab runs every control channel as a deployment does: OVSDB on pssl:, OpenFlow on
ssl:, the API on HTTPS. It goes with the state directory at `lab down`."""

import os

from tenantnet import pki


def pki_dir(state_dir):
    return os.path.join(state_dir, "pki")


def make(topo, state_dir, tenants=()):
    """The CAs, the provider's, every node's and each of *tenants*' identity (tenant ->
    its controller's IP) for *topo*; None when the config is insecure. Idempotent."""
    if not topo.controller.tls:
        return None
    root = pki_dir(state_dir)
    pki.init(root, [topo.controller.management_ip])
    for node in topo.nodes():
        pki.issue_node(root, node.name, [node.management_ip])
    for tenant, ip in dict(tenants).items():
        pki.issue_tenant(root, tenant, [ip])
    return root


def node_dir(topo, state_dir, node):
    """The node's certificate directory, or None (insecure)."""
    return pki.node(pki_dir(state_dir), node).directory if topo.controller.tls else None


def tenant_identity(topo, state_dir, tenant, ip):
    """The tenant controller's Identity (made when missing), or None (insecure)."""
    if not topo.controller.tls:
        return None
    return pki.issue_tenant(pki_dir(state_dir), tenant, [ip])


def provider_identity(topo, state_dir):
    return pki.provider(pki_dir(state_dir)) if topo.controller.tls else None
