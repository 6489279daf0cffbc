"""The hypervisor's side of the lab: the namespaces of VMs and network functions made
before the controller is asked to place them (`tenantnet vm add|del`, /v1/functions),
configured (MAC, IP, MTU, offloads, a gratuitous ARP) once it has, removed after it let
them go, and made again after a node rebooted.

`LabHypervisor` is that part of tenantnet.lab.lab.Lab (it uses the Lab's `fabric`,
`api()` and `topology()`)."""

import ipaddress
import time

from tenantnet.model import config as config_mod
from tenantnet.model import naming
from tenantnet.errors import LabError, TenantnetError
from tenantnet.lab.functions import for_function
from tenantnet.model.topology import probe_name


class LabHypervisor:
    """VM and network function endpoints of a Lab."""

    def configure_attachment(self, topo, att):
        """Give endpoint *att* (a VM, probe or function of *topo*) its MAC, IP and the
        config's tuning, and announce it; returns the tuning applied."""
        net = topo.network(att.network)
        prefix = ipaddress.ip_network(net.cidr).prefixlen
        t = topo.tuning
        applied = self.fabric.configure_endpoint(att.name, att.mac, f"{att.ip}/{prefix}",
                                                 mtu=t.vm_mtu, tx_offload=t.tx_checksum_offload,
                                                 neigh_gc_thresh=t.neigh_gc_thresh)
        fabric = self.fabric
        fabric.exec(att.name, [fabric.endpoint_python(att.name), "-m", "tenantnet.lab.l2probe",
                               "garp", "eth0", att.ip])
        return applied

    def restore_node(self, node, timeout=300.0):
        """After node *node* rebooted: wait until it answers again, then make its VMs and
        probes again as they were (a hypervisor restarting its VMs) and announce them.
        Returns the endpoints made again."""
        deadline = time.time() + timeout
        while True:
            try:
                if self.fabric.node_exec(node, ["true"], timeout=30).returncode == 0:
                    break
            except TenantnetError:          # SSH refused or timed out: not up yet
                pass
            if time.time() > deadline:
                raise LabError(f"node {node} did not answer within {timeout:.0f}s")
            time.sleep(2)
        made = self.fabric.restore_endpoints(node)
        fabric = self.fabric
        for name, cfg in made.items():
            if cfg.get("ip"):
                fabric.exec(name, [fabric.endpoint_python(name), "-m",
                                   "tenantnet.lab.l2probe", "garp", "eth0",
                                   cfg["ip"].split("/")[0]])
        return sorted(made)

    # -- runtime placement (the hypervisor's side of `vm add` / `vm del`) -------------
    def add_vm(self, name, network, node, mac=None, ip=None):
        topo_before = self.api().topology(typed=True)       # a controller.wire.Topology
        net = topo_before.network(network)
        created = []
        # Create namespaces only for names the controller will accept; it validates again.
        if net is not None and naming.valid_name(name) and self.fabric.has_node(node):
            try:
                if not self.fabric.has_endpoint(name):
                    self.fabric.add_endpoint(name, node, naming.vm_port_name(name), kind="vm")
                    created.append(name)
                if not net.probes:
                    for n in topo_before.nodes:
                        if n.role == "network":
                            pname = probe_name(network, n.name)
                            self.fabric.add_endpoint(pname, n.name,
                                                     naming.probe_port_name(network), "probe")
                            created.append(pname)
            except LabError:
                for c in created:
                    self.fabric.remove_endpoint(c)
                raise
        try:
            rec = self.api().add_vm(name, network, node, mac=mac, ip=ip)
        except Exception:
            for c in created:
                self.fabric.remove_endpoint(c)
            raise
        topo = self.topology_from_api()
        applied = self.configure_attachment(topo, topo.vm(name))
        for probe in topo.probes(network):
            if probe.name in created:
                self.configure_attachment(topo, probe)
        rec["tuning_applied"] = applied
        return rec

    def del_vm(self, name):
        rec = self.api().del_vm(name)
        if self.fabric.has_endpoint(name):
            self.fabric.remove_endpoint(name)
        topo = self.api().topology(typed=True)
        net = topo.network(rec["network"])
        if net is not None and not net.probes:   # the network has no VM left: its probes go too
            for n in topo.nodes:
                pname = probe_name(rec["network"], n.name)
                if self.fabric.has_endpoint(pname):
                    self.fabric.remove_endpoint(pname)
        return rec

    # -- network functions and chains (the hypervisor's side of /v1/functions) -----------
    def function(self, fn):
        """The lab object (lab.functions) of function *fn* (a model Function or an API
        dict), running its commands in the function's namespace."""
        name = fn["name"] if isinstance(fn, dict) else fn.name
        return for_function(fn, lambda cmd: self.fabric.exec(name, cmd, check=True))

    def add_function(self, name, network, node, kind, **options):
        """Make function *name*'s namespace, place it through the API, then configure it
        as its kind says. Returns the API's answer."""
        created = False
        if naming.valid_name(name) and self.fabric.has_node(node) and \
                not self.fabric.has_endpoint(name):
            self.fabric.add_endpoint(name, node, naming.function_port_name(name),
                                     kind="function")
            created = True
        try:
            rec = self.api().add_function(name, network, node, kind, **options)
        except Exception:
            if created:
                self.fabric.remove_endpoint(name)
            raise
        topo = self.topology_from_api()
        fn = topo.function(name)
        self.configure_attachment(topo, fn)
        self.function(fn).setup()
        return rec

    def del_function(self, name):
        rec = self.api().del_function(name)
        if self.fabric.has_endpoint(name):
            self.fabric.remove_endpoint(name)
        return rec

    def function_counters(self, name):
        """What function *name* saw (its kind's counters)."""
        fn = next((f for f in self.api().list_functions() if f["name"] == name), None)
        if fn is None:
            raise LabError(f"no network function {name!r}")
        return self.function(fn).counters()

    def topology_from_api(self):
        """The controller's current model (config VMs plus API placements) as a Topology."""
        topo = self.topology()
        live = {v.name: v for v in self.api().list_vms(typed=True)}     # controller.wire.VM
        for name in list(topo.vms()):
            if name not in live:
                topo.remove_vm(name)
        for name, v in live.items():
            if topo.vm(name) is None:
                topo.add_vm(config_mod.vm_from_spec(
                    topo, v.model_dump(include={"name", "network", "node", "mac", "ip"}),
                    "controller", "", vm_source=v.source or "api"))
        data = self.api().topology(typed=True)
        for name in list(topo.chains()):
            topo.remove_chain(name)
        for name in list(topo.functions()):
            topo.remove_function(name)
        for f in data.functions:
            topo.add_function(f.to_model())
        for c in data.chains:
            topo.add_chain(c.to_model())
        return topo
