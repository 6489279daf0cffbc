"""A host node: a machine that exists already and was bootstrapped on its own (a machine
of the multi-node lab), reached through an executor (default ssh:root@MANAGEMENT_IP).
Its Open vSwitch lives on that machine, in its own namespace or in *netns* there.

The lab only makes endpoints on it; `lab down` removes those and leaves the node."""

import ipaddress

from tenantnet.errors import LabError
from tenantnet.lab import hosts
from tenantnet.lab import netns as ns
from tenantnet.lab.nodes.base import LabNode
from tenantnet.lab.state import NodeRec


class HostNode(LabNode):
    kind = "host"

    @classmethod
    def describe(cls, name, role, management_ip, transport_ip, executor=None, netns=None,
                 ovsdb_port=6640, python=None, ssh_identity=None, ssh_options=None,
                 ssh_via=None, ovs_db=None, vm=None, tls=True):
        """The NodeRec of host node *name*. *executor*: a spec ('ssh:root@198.18.0.21';
        default ssh:root@MANAGEMENT_IP; 'local' for this host). *netns*: the namespace
        its Open vSwitch lives in on that host (None: the host's own). *python*: the
        interpreter with tenantnet there (for l2probe). *ssh_via*: where the ssh client
        runs ('netns:NAME'; default here). *ovs_db*: the OVSDB remote to check the host
        with (default: tcp:MANAGEMENT_IP:OVSDB_PORT, as the controller reaches it).
        A bad executor spec fails here."""
        for what, ip in (("management_ip", management_ip), ("transport_ip", transport_ip)):
            try:
                ipaddress.ip_address(ip)
            except ValueError as exc:
                raise LabError(f"node {name} {what}: {exc}") from exc
        rec = NodeRec(kind=cls.kind, netns=netns, role=role, management_ip=management_ip,
                      transport_ip=transport_ip, ovsdb_port=int(ovsdb_port),
                      ovsdb_remote=f"{'ssl' if tls else 'tcp'}:{management_ip}:"
                                   f"{int(ovsdb_port)}",
                      exec=executor or f"ssh:root@{management_ip}",
                      ssh_identity=ssh_identity, ssh_options=dict(ssh_options or {}),
                      ssh_via=ssh_via, ovs_db=ovs_db, python=python, vm=vm)
        hosts.node_host(rec)
        return rec

    def run(self, cmd_list, check=False, timeout=60, capture=True):
        # on the machine itself, as `vagrant ssh -c` does
        return ns.run(list(cmd_list), check=check, timeout=timeout, capture=capture,
                      executor=self.host)

    def bridges(self):
        """Reach the host and its OVSDB: its bridges (LabError naming the host when the
        executor or Open vSwitch there fails). By default through the OVSDB remote the
        controller uses (tcp:MANAGEMENT_IP:6640, opened by bootstrap), from the host
        itself: that checks the manager too. With TLS, the host's own OVSDB and its
        manager (the remote needs the provider's key, which no node holds)."""
        rec = self.rec
        if rec.ovs_db or not rec.ovsdb_remote.startswith("ssl:"):
            db = ["--db=" + (rec.ovs_db or rec.ovsdb_remote)]
        else:
            db = []         # TLS: the host's own OVSDB; the manager shows the remote is open
            want = f"pssl:{rec.ovsdb_port}:{rec.management_ip}"
            managers = ns.run(["ovs-vsctl", "--timeout=10", "get-manager"], netns=self.netns,
                              executor=self.host).stdout.split()
            if want not in managers:
                raise LabError(f"node {self.name}: OVSDB is not open to the controller: its "
                               f"manager is {', '.join(managers) or 'none'}, not {want} "
                               "(run tenantnet node bootstrap there)")
        out = ns.run(["ovs-vsctl", *db, "--timeout=10", "list-br"], netns=self.netns,
                     executor=self.host)
        return out.stdout.split()
