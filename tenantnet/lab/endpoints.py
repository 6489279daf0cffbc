"""Endpoints: the tenants' "VMs" and the networks' probes, as namespaces

    <prefix>-v-<name>   (<prefix>-p-<name> for probes) with `eth0`, whose veth peer (named
                        by the caller) sits in the node's namespace, on the node's host

made on whatever kind of node they are placed (tenantnet.lab.nodes: the node makes the
namespace and the veth, on its own host), configured (MAC, MTU, IP, offloads: the section
III.G tuning), made again after a node rebooted, and removed. Only the bookkeeping holds
the books' lock; the commands run outside it, so a batch of endpoints is made in parallel
(everything is recorded before it exists)."""

import ipaddress
import re
import sys

from tenantnet.errors import LabError
from tenantnet.lab import hosts
from tenantnet.lab import netns as ns
from tenantnet.lab.nodes import node_named, node_of
from tenantnet.lab.state import EndpointRec, check_ifname, check_name
from tenantnet.model import naming

KINDS = ("vm", "probe", "function")


def configure_interface(host, netns, mac, ip_cidr, mtu=1400, tx_offload=False,
                        neigh_gc_thresh=None, what="configure_endpoint", ifname="eth0"):
    """Set MAC, MTU, IP and offloads of *ifname* in *netns* on *host* (an executor) and
    bring it up. Returns a dict of what was applied."""
    try:
        iface = ipaddress.ip_interface(ip_cidr)
    except ValueError as exc:
        raise LabError(f"{what}: {exc}") from exc
    if not re.match(r"^[0-9a-fA-F]{2}(:[0-9a-fA-F]{2}){5}$", mac or ""):
        raise LabError(f"{what}: bad MAC {mac!r}")
    applied = {"netns": netns, "ifname": ifname, "mac": mac.lower(),
               "ip": str(iface), "mtu": int(mtu), "tx_offload": bool(tx_offload)}

    def run(cmd, **kw):
        return ns.run(cmd, netns=netns, executor=host, **kw)

    # No down/up here (see LabNode.make_endpoint): a veth takes a new MAC and MTU while up.
    run(["ip", "link", "set", ifname, "address", mac, "mtu", str(int(mtu))])
    run(["ip", "addr", "flush", "dev", ifname])
    run(["ip", "addr", "add", str(iface), "dev", ifname])
    run(["ethtool", "-K", ifname, "tx", "on" if tx_offload else "off"])
    if neigh_gc_thresh is not None:
        if isinstance(neigh_gc_thresh, int):
            t = (neigh_gc_thresh, 2 * neigh_gc_thresh, 4 * neigh_gc_thresh)
        else:
            t = tuple(int(x) for x in neigh_gc_thresh)
            if len(t) != 3:
                raise LabError(f"{what}: neigh_gc_thresh needs 3 values")
        fam = "ipv6" if iface.version == 6 else "ipv4"
        probe = run(["test", "-e", f"/proc/sys/net/{fam}/neigh/default/gc_thresh1"],
                    check=False)
        if probe.returncode == 0:
            run(["sysctl", "-q", "-w"] + [f"net.{fam}.neigh.default.gc_thresh{i + 1}={v}"
                                          for i, v in enumerate(t)])
            applied["neigh_gc_thresh"] = list(t)
        else:
            # Linux keeps the neighbour table (and its GC thresholds) global: outside the
            # initial namespace net.*.neigh.default does not exist. We never change the
            # host's own sysctls, so report instead of pretending.
            applied["neigh_gc_thresh"] = None
            applied["neigh_gc_thresh_skipped"] = (
                f"requested {list(t)}: this kernel has no net.{fam}.neigh.default.gc_thresh* "
                "inside network namespaces (the neighbour table is host-global); "
                "set them on the host if needed")
    run(["ip", "link", "set", "lo", "up"])
    run(["ip", "link", "set", ifname, "up"])
    return applied


class Endpoints:
    """The endpoints of the lab whose books *store* keeps."""

    def __init__(self, store):
        self.store = store

    def get(self, name):
        """The EndpointRec of *name* (LabError naming the known ones)."""
        eps = self.store.read().endpoints
        rec = eps.get(name)
        if not rec:
            raise LabError(f"unknown endpoint {name!r} (known: {sorted(eps)})")
        return rec

    def host(self, rec):
        """The executor of the host endpoint *rec* lives on."""
        state = self.store.state
        node = state.nodes.get(rec.node)
        if node is not None and node.exec == rec.exec:
            return hosts.node_host(node)
        return hosts.spec_host(state, rec.exec)

    def executor(self, name):
        """Executor running commands inside endpoint *name* wherever it lives (a
        NetnsExecutor on this host, or on a host node's machine over SSH)."""
        rec = self.get(name)
        return ns.executor_in(rec.netns, base=self.host(rec))

    def python(self, name):
        """The Python with tenantnet on the endpoint's host (sys.executable here)."""
        rec = self.get(name)
        node = self.store.state.nodes.get(rec.node)
        return (node.python if node else None) or sys.executable

    def run(self, name, cmd_list, check=False, timeout=60, capture=True):
        rec = self.get(name)
        return ns.run(list(cmd_list), netns=rec.netns, check=check, timeout=timeout,
                      capture=capture, executor=self.host(rec))

    # -- making and removing -----------------------------------------------------------------
    def add(self, name, node, port_name, kind="vm"):
        """Endpoint *name* of *kind* on *node*, its veth peer *port_name* in the node's
        namespace, set up (not attached to any bridge: that is the caller's business).
        Returns its namespace."""
        check_name("endpoint", name)
        check_ifname(port_name)
        if kind not in KINDS:
            raise LabError(f"endpoint {name}: kind {kind!r} must be one of {', '.join(KINDS)}")
        with self.store.txn() as state:
            if name in state.endpoints:
                raise LabError(f"endpoint {name!r} already exists in this lab")
            where = node_named(self.store, node)
            if where.has_port(port_name):
                raise LabError(f"endpoint {name}: interface {port_name} already exists on node "
                               f"{node}")
            netns = naming.endpoint_netns(self.store.prefix, kind, name)
            hosts.check_free(state, netns, where.spec, where.host)
            state.endpoints[name] = EndpointRec(netns=netns, node=node, port_name=port_name,
                                                kind=kind, exec=where.spec)
            hosts.claim_namespace(self.store, netns, where.spec, where.host, create=False)
        try:
            where.make_endpoint(netns, port_name)
        except Exception:
            with self.store.txn():
                self.forget(name)
                self.store.save()
            raise
        return netns

    def configure(self, name, mac, ip_cidr, mtu=1400, tx_offload=False, neigh_gc_thresh=None):
        """Set MAC, MTU, IP and offloads of the endpoint's eth0 and bring it up.

        tx_offload=False runs `ethtool -K eth0 tx off` (the userspace datapath does not
        complete partial checksums of veth traffic). neigh_gc_thresh: None, an int N
        (gc_thresh1/2/3 = N, 2N, 4N) or a 3-tuple. Returns a dict of what was applied."""
        with self.store.txn():
            rec = self.get(name)
            host = self.host(rec)
        applied = {"endpoint": name}          # the commands run outside the books' lock
        applied.update(configure_interface(host, rec.netns, mac, ip_cidr, mtu=mtu,
                                           tx_offload=tx_offload,
                                           neigh_gc_thresh=neigh_gc_thresh,
                                           what=f"configure_endpoint {name}"))
        with self.store.txn():
            self.get(name).config = applied
            self.store.save()
        return dict(applied)

    def restore(self, node):
        """Make again, as recorded, every endpoint of *node* whose namespace is gone (a
        node VM or host that rebooted: what a hypervisor does when it restarts its VMs).
        Returns {name: its recorded configuration} of the endpoints it made."""
        with self.store.txn() as state:
            where = node_named(self.store, node)
            mine = {n: r for n, r in state.endpoints.items() if r.node == node}
            hosts_of = {n: self.host(r) for n, r in mine.items()}
        made = {}
        for name, rec in sorted(mine.items()):
            if not where.remake_endpoint(rec.netns, rec.port_name):
                continue
            cfg = rec.config
            if cfg:
                configure_interface(hosts_of[name], rec.netns, cfg["mac"], cfg["ip"],
                                    mtu=cfg.get("mtu", 1400),
                                    tx_offload=cfg.get("tx_offload", False),
                                    neigh_gc_thresh=cfg.get("neigh_gc_thresh"),
                                    what=f"restore_endpoint {name}")
            made[name] = cfg or {}
        return made

    def remove(self, name):
        """Delete the endpoint (its veth pair disappears with it). OVS port records
        referring to the node-side port are the caller's to remove."""
        with self.store.txn():
            self.get(name)
            self.forget(name)
            self.store.save()

    def forget(self, name):
        """Remove endpoint *name* and its record (the caller holds the lock and saves)."""
        state = self.store.state
        rec = state.endpoints.get(name)
        if not rec:
            return
        node = state.nodes.get(rec.node)
        if node is not None and rec.port_name:
            node_of(rec.node, node, self.store).del_port(rec.port_name)
        if state.owns_namespace(rec.netns, rec.exec):
            # on this host the veth pair (and the node-side port) goes with the namespace
            ns.delete(rec.netns, executor=self.host(rec))
        state.forget_namespace(rec.netns, rec.exec)
        del state.endpoints[name]
