"""The lab's node kinds, one class each with one interface (nodes/base.LabNode):

    emulated   a namespace of this machine with its own ovsdb-server + ovs-vswitchd
               (userspace datapath), made and bootstrapped by the lab (nodes/emulated)
    vm         a QEMU node VM of the lab (kernel datapath), reached over SSH from the
               fabric namespace; booted and provisioned by tenantnet.lab.vmnodes (nodes/vm)
    host       a machine that exists already (the Vagrant lab's), reached through its
               executor; the lab only makes endpoints there (nodes/host)

A node is described first, as a NodeRec (tenantnet.lab.state), and built second."""

from tenantnet.errors import LabError
from tenantnet.lab.nodes.base import LabNode
from tenantnet.lab.nodes.emulated import EmulatedNode
from tenantnet.lab.nodes.host import HostNode
from tenantnet.lab.nodes.vm import VmNode

KINDS = {cls.kind: cls for cls in (EmulatedNode, VmNode, HostNode)}


def node_of(name, rec, store):
    """The node object of record *rec* (a NodeRec) in the books *store* keeps."""
    return KINDS[rec.kind](name, rec, store)


def node_named(store, name):
    """The node object of node *name* (LabError naming the known ones)."""
    nodes = store.read().nodes
    rec = nodes.get(name)
    if not rec:
        raise LabError(f"unknown node {name!r} (known: {sorted(nodes)})")
    return node_of(name, rec, store)


__all__ = ["LabNode", "EmulatedNode", "HostNode", "VmNode", "KINDS", "node_of", "node_named"]
