"""Host-side operations on a node: addresses, links, sysctls, and (lab nodes) static tunnel
neighbours, through an executor (tenantnet.node.hostexec).

`ExecHost` is what node bootstrap uses for its host-side steps; `NetnsNodeHost` is a lab
node as the controller sees it: it sets `ex-` endpoint addresses (the paper does this with
a udev rule on the node) and, on a userspace node, static tunnel neighbours."""

import os
import re
import socket
import time

from tenantnet.errors import TenantnetError
from tenantnet.model.desired import USERSPACE_DATAPATH
from tenantnet.node.bootstrap import BootstrapError
from tenantnet.node.hostexec import LocalExecutor, NetnsExecutor


class ExecHost:
    """Host-side operations (addresses, links, sysctls) through an executor
    (tenantnet.node.hostexec): LocalExecutor on a real host, NetnsExecutor for a lab node,
    SshExecutor for another machine. `set_address` has the signature the controller's
    host objects use: the controller sets `ex-` addresses through one (NetnsNodeHost)."""

    def __init__(self, executor=None):
        self.executor = executor or LocalExecutor()

    @property
    def description(self):
        return self.executor.description

    def link_exists(self, ifname):
        return self.executor.ok(["ip", "link", "show", "dev", ifname])

    def wait_link(self, ifname, timeout=5.0):
        deadline = time.time() + timeout
        while not self.link_exists(ifname):
            if time.time() >= deadline:
                raise BootstrapError(f"interface {ifname} did not appear on "
                                     f"{self.description} within {timeout:.0f}s")
            time.sleep(0.05)

    def addresses(self, ifname):
        """IPv4 addresses on *ifname* as 'IP/PREFIX' (empty when it has none or is absent)."""
        out = self.executor.run(["ip", "-o", "-4", "addr", "show", "dev", ifname], check=False)
        if out.returncode != 0:
            return []
        return re.findall(r"\sinet\s+(\S+)", out.stdout)

    def all_addresses(self):
        """{interface: ['IP/PREFIX', ...]} for every interface with an IPv4 address, in one
        `ip` call (a node with hundreds of ex- endpoints is checked in one process)."""
        out = self.executor.run(["ip", "-o", "-4", "addr", "show"], check=False)
        found = {}
        for line in out.stdout.splitlines() if out.returncode == 0 else ():
            m = re.match(r"\d+:\s+([^\s@]+)\S*\s+inet\s+(\S+)", line)
            if m:
                found.setdefault(m.group(1), []).append(m.group(2))
        return found

    def set_address(self, ifname, cidr, timeout=5.0):
        """`ip addr replace` *cidr* on *ifname* (waiting for it to appear) and set it up."""
        self.wait_link(ifname, timeout)
        self.executor.run(["ip", "addr", "replace", cidr, "dev", ifname])
        self.executor.run(["ip", "link", "set", ifname, "up"])

    def set_addresses(self, addresses, timeout=5.0):
        """set_address for every {interface: cidr} of *addresses*, in one `ip -batch`
        process (tried again, whole, until *timeout* while an interface is not there yet:
        `addr replace` and `link set up` are idempotent)."""
        if not addresses:
            return
        script = "".join(f"addr replace {cidr} dev {ifname}\nlink set {ifname} up\n"
                         for ifname, cidr in addresses.items())
        deadline = time.time() + timeout
        while True:
            out = self.executor.run(["ip", "-batch", "-"], input=script, check=False)
            if out.returncode == 0:
                return
            if time.time() >= deadline:
                why = " ".join((out.stderr or "").split()) or f"exit status {out.returncode}"
                raise BootstrapError(f"setting {len(addresses)} endpoint address(es) on "
                                     f"{self.description} failed: {why}")
            time.sleep(0.05)

    def del_address(self, ifname, cidr):
        self.executor.run(["ip", "addr", "del", cidr, "dev", ifname], check=False)

    def link_up(self, ifname, arp=None):
        cmd = ["ip", "link", "set", ifname, "up"]
        if arp is not None:
            cmd += ["arp", "on" if arp else "off"]
        self.executor.run(cmd)

    def sysctls(self, settings):
        """Apply 'key=value' settings; return the ones that were not already so."""
        changed = []
        for item in settings:
            key, _, value = item.partition("=")
            cur = self.executor.run(["sysctl", "-n", key], check=False).stdout.strip()
            if cur != value:
                changed.append(item)
        if changed:
            self.executor.run(["sysctl", "-q", "-w", *changed])
        return changed

    def path_exists(self, path):
        if isinstance(self.executor, LocalExecutor):
            return os.path.exists(path)
        # /sys and /proc are the host's even inside `ip netns exec` (it remounts /sys).
        return self.executor.ok(["test", "-e", path])

    def hostname(self):
        if isinstance(self.executor, LocalExecutor):
            return socket.gethostname()
        return self.executor.run(["hostname"]).stdout.strip()


class NetnsNodeHost(ExecHost):
    """A lab node: its namespace *netns* (`ip netns exec`) and its Open vSwitch, whose run
    directory is *rundir* and whose datapath is *datapath* (the lab's nodes: userspace).
    The controller's host-side steps on it: `ex-` endpoint addresses (the paper does this
    with a udev rule on the node) and, on a userspace node, static tunnel neighbours."""

    def __init__(self, netns, rundir=None, datapath=USERSPACE_DATAPATH):
        super().__init__(NetnsExecutor(netns))
        self.netns = netns
        self.rundir = rundir
        self.datapath = datapath

    def set_tunnel_neighbor(self, ip, mac, bridge="br-tun"):
        """A static entry in the node's userspace tunnel neighbour cache.

        The userspace datapath drops the packet that finds a tunnel endpoint unresolved
        while it resolves it; if that packet is a VM's first ARP request, the VM retries
        only a second later. (The kernel datapath queues it instead, so this is a step of
        userspace-datapath nodes only.) None when the run directory is not known or the
        node's datapath is not userspace: nothing was done."""
        return self.set_tunnel_neighbors([(ip, mac)], bridge)

    def set_tunnel_neighbors(self, entries, bridge="br-tun"):
        """set_tunnel_neighbor for every (ip, mac) of *entries* that the cache does not hold
        yet, over one connection to ovs-vswitchd's control socket (what `ovs-appctl
        tnl/neigh/show` and `tnl/neigh/set` send, without a process each). Returns how many
        were set: after a controller restart the node's cache still holds them all (500 on
        a node at 1,000 VMs), and setting each again cost a round trip to ovs-vswitchd's
        main thread. None when nothing could be done (see set_tunnel_neighbor)."""
        if not self.rundir or self.datapath != USERSPACE_DATAPATH:
            return None
        from ovs.unixctl.client import UnixctlClient
        target = f"{self.rundir}/ovs-vswitchd.ctl"
        error, client = UnixctlClient.create(target)
        if error:
            raise TenantnetError(f"{self.netns}: cannot reach ovs-vswitchd at {target}: "
                                 f"{os.strerror(error)}")
        try:
            have = tunnel_neighbors(self._transact(client, "tnl/neigh/show"))
            todo = [(ip, mac) for ip, mac in entries
                    if (ip, mac.lower(), bridge) not in have]
            for ip, mac in todo:
                self._transact(client, "tnl/neigh/set", bridge, ip, mac)
        finally:
            client.close()
        return len(todo)

    def _transact(self, client, command, *args):
        error, failed, answer = client.transact(command, list(args))
        if error or failed:
            why = os.strerror(error) if error else " ".join(str(failed).split())
            raise TenantnetError(f"{self.netns}: {' '.join((command,) + args)} failed: {why}")
        return answer or ""


def tunnel_neighbors(shown):
    """{(ip, mac, bridge)} of `tnl/neigh/show`'s answer *shown* (a header, a rule, then one
    line per entry: IP, MAC, bridge)."""
    out = set()
    for line in shown.splitlines():
        fields = line.split()
        if len(fields) >= 3 and fields[1].count(":") == 5 and fields[0][0].isalnum() \
                and fields[0] != "IP":
            out.add((fields[0], fields[1].lower(), fields[2]))
    return out
