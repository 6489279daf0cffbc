"""The one-machine lab: a tenantnet config made real on emulated nodes.

LabFabric (fabric.py, and the modules behind it) knows namespaces, veths, node kinds and
processes; this module knows tenants. `up` builds the fabric and the nodes, creates the VM
and probe namespaces (the hypervisor's part), starts the controller as a process of its own
in the controller namespace, configures the VMs with their addresses and the section III.G
tuning, and returns once every VM answers a ping from its network's probe.

`Lab` is the lab's one face. This module owns its books (lab.json), its API client, and
building it up and tearing it down; the rest comes from one class per concern:
LabControllers (controllers: controller processes and confs), LabHypervisor (hypervisor:
VM and function endpoints, runtime placement), LabReachability (reachability: pings and
the layer-2 matrix) and LabStatus (labstatus: `lab status`)."""

import ipaddress
import json
import os
import time

from tenantnet.model import config as config_mod
from tenantnet.controller.client import ApiClient
from tenantnet.lab import certs
from tenantnet.errors import LabError
from tenantnet.lab.controllers import (LabControllers, ryu_manager_cmd, tenant_apps,
                                       tenant_controllers)
from tenantnet.lab.fabric import LabFabric, check_host
from tenantnet.lab.hypervisor import LabHypervisor
from tenantnet.lab.labstatus import LabStatus
from tenantnet.lab.reachability import LabReachability
from tenantnet.model.topology import NODE_KINDS

# Importers reach these through this module (tenantnet.lab.lab.tenant_controllers, ...).
__all__ = ["Lab", "META", "ryu_manager_cmd", "tenant_apps", "tenant_controllers"]

META = "lab.json"


def _say(progress, text):
    if progress:
        progress(text)


class Lab(LabControllers, LabHypervisor, LabReachability, LabStatus):
    def __init__(self, prefix="tn", state_dir=None):
        self.prefix = prefix
        self.state_dir = state_dir

    @property
    def fabric(self):
        # Read afresh on every use: the CLI, the controller's lab and tests are separate
        # processes sharing one state file, and a stale copy must never be saved over it.
        return LabFabric(prefix=self.prefix, state_dir=self.state_dir)

    # -- metadata ------------------------------------------------------------------
    @property
    def meta_path(self):
        return os.path.join(self.fabric.state_dir, META)

    def meta(self):
        try:
            with open(self.meta_path) as fh:
                return json.load(fh)
        except FileNotFoundError:
            raise LabError(f"no lab is up with prefix {self.prefix!r} (no {self.meta_path}); "
                           "run `tenantnet lab up -c FILE`") from None

    def is_up(self):
        return os.path.exists(self.meta_path)

    @property
    def api_socket(self):
        return os.path.join(self.fabric.state_dir, "api.sock")

    @property
    def api_endpoint(self):
        """The controller's API: the lab's unix socket, or the endpoint recorded by
        tenantnet.lab.remote for a lab on real hosts."""
        try:
            with open(self.meta_path) as fh:
                endpoint = json.load(fh).get("api")
        except (OSError, ValueError):
            endpoint = None
        return endpoint or f"unix:{self.api_socket}"

    def api(self, timeout=120):
        endpoint = self.api_endpoint
        token = None
        if not endpoint.startswith("unix:"):      # the TCP API wants the provider's credential
            token = self.topology().controller.api_token
        return ApiClient(endpoint, timeout=timeout, token=token)

    def topology(self):
        return config_mod.load_file(self.meta()["config"])

    # -- up ------------------------------------------------------------------------
    def up(self, config_path, timeout=90.0, progress=None, controller_args=(), nodes=None):
        """Build the lab of *config_path*. *nodes*: 'emulated' or 'vm' (default: the
        config's `lab: {nodes: ...}`)."""
        topo = config_mod.load_file(config_path)   # bad config: nothing is created
        kind = nodes or topo.lab.nodes
        if kind not in NODE_KINDS:
            raise LabError(f"--nodes {kind!r}: expected one of {', '.join(NODE_KINDS)}")
        if kind == "vm":
            from tenantnet.lab import vmnodes
            vmnodes.check_transport_interfaces(topo)
        check_host()
        if self.is_up() or self.fabric.has_fabric():
            raise LabError(f"a lab with prefix {self.prefix!r} is already up "
                           f"(state in {self.fabric.state_dir}); run `tenantnet lab down` first")
        t0 = time.perf_counter()
        os.makedirs(self.fabric.state_dir, exist_ok=True)
        with open(self.meta_path, "w") as fh:
            json.dump({"config": os.path.abspath(config_path), "prefix": self.prefix,
                       "api_socket": self.api_socket}, fh)
        mgmt = ipaddress.ip_network(topo.lab.management_cidr)
        trans = ipaddress.ip_network(topo.lab.transport_cidr)
        _say(progress, f"fabric {self.fabric.fabric_netns}: management {mgmt}, transport {trans}")
        self.fabric.up_fabric(str(mgmt), str(trans))
        self.fabric.add_controller(topo.controller.management_ip, mgmt.prefixlen)
        if topo.controller.tls:
            _say(progress, f"TLS: the lab's PKI in {certs.pki_dir(self.fabric.state_dir)}")
        else:
            _say(progress, "TLS off (security: insecure): every control channel is plain TCP")
        certs.make(topo, self.fabric.state_dir)
        if kind == "vm":
            self._up_vm_nodes(topo, progress)
        for node in topo.nodes() if kind == "emulated" else ():
            _say(progress, f"node {node.name} ({node.role}): own ovsdb-server + ovs-vswitchd")
            self.fabric.add_node(node.name, node.role, node.management_ip, node.transport_ip,
                                 mgmt_prefix_len=mgmt.prefixlen,
                                 transport_prefix_len=trans.prefixlen,
                                 ovsdb_port=topo.controller.ovsdb_port,
                                 tls_dir=certs.node_dir(topo, self.fabric.state_dir, node.name))
        for vm in topo.vms().values():
            self.fabric.add_endpoint(vm.name, vm.node, vm.port, kind="vm")
        for fn in topo.functions().values():
            self.fabric.add_endpoint(fn.name, fn.node, fn.port, kind="function")
        for key in topo.active_networks():
            for probe in topo.probes(key):
                self.fabric.add_endpoint(probe.name, probe.node, probe.port, kind="probe")
        t_nodes = time.perf_counter()          # the budget below starts once nodes are up
        _say(progress, "controller: starting in " + self.fabric.controller_netns)
        self.start_controller(topo, config_path, controller_args)
        self.wait_api(timeout)
        for tenant, target in tenant_controllers(topo).items():
            _say(progress, f"tenant {tenant}'s own controller: {target}")
            self.start_tenant_controller(tenant, topo=topo, app=tenant_apps(topo, tenant))
        for key in topo.active_networks():
            for att in topo.attachments(key):
                self.configure_attachment(topo, att)
        for fn in sorted(topo.functions().values(), key=lambda f: f.name):
            _say(progress, f"network function {fn.name} ({fn.nf}) on {fn.node}")
            self.function(fn).setup()
        _say(progress, f"waiting until every VM answers its probe (timeout {timeout:.0f}s)")
        result = self.wait_reachable(topo, list(topo.vms()), timeout=max(5.0, timeout -
                                     (time.perf_counter() - t_nodes)))
        result["seconds"] = round(time.perf_counter() - t0, 2)
        return result

    def _up_vm_nodes(self, topo, progress):
        """Every node as a QEMU VM with the kernel datapath (tenantnet.lab.vmnodes)."""
        from tenantnet.lab import vmnodes
        from tenantnet.vm.image import build_image
        _say(progress, "node image: building or reusing it (tenantnet lab image build)")
        image = build_image(progress=lambda text: _say(progress, text))
        specs = vmnodes.plan(topo)
        _say(progress, f"node VMs: {', '.join(s.name for s in specs)} "
                       f"({specs[0].memory_mb} MB each), booting side by side")
        waited = vmnodes.build(self.fabric, specs, image,
                               ovsdb_port=topo.controller.ovsdb_port,
                               progress=lambda text: _say(progress, text))
        _say(progress, "node VMs up: " + ", ".join(f"{n} {s:.0f}s" for n, s in waited.items()))

    # -- exec / down -----------------------------------------------------------------
    def node_exec(self, node, cmd, capture=False):
        """Run *cmd* on lab node *node*, whatever its kind (`tenantnet lab node`)."""
        return self.fabric.node_exec(node, list(cmd), check=False, capture=capture,
                                     timeout=None)

    def exec(self, vm, cmd, capture=False):
        return self.fabric.exec(vm, list(cmd), check=False, capture=capture, timeout=None)

    def down(self):
        self.fabric.down()
        if os.path.exists(self.meta_path):
            os.remove(self.meta_path)
