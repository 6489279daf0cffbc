"""A lab on real hosts: "VMs" as network namespaces on the machines of a multi-node
cluster (the Vagrant lab), made from the controller node over SSH.

The hosts exist already and were prepared by `tenantnet node bootstrap`; the controller
runs as a service. RemoteLab records every node as a *host node* of a LabFabric, reached
through an executor (default `ssh:root@MANAGEMENT_IP`), so the VM and probe namespaces
are made by the same code as in the one-machine lab (tenantnet.lab.endpoints and the
host node kind, tenantnet.lab.nodes.host), only through SshExecutor instead of local
`ip netns`.
Everything else is Lab's: `tenantnet vm add|del`, `lab status|matrix|exec|down
--prefix P` work unchanged once `tenantnet cluster up` has recorded the cluster.

    lab = RemoteLab(prefix="tn")
    lab.up("/etc/tenantnet/config.yaml", identity="/root/.ssh/tenantnet_cluster")
    lab.add_vm("web1", "acme/web", "compute1")     # namespace on compute1, then the API
    lab.matrix()
    lab.down()                                      # removes the namespaces; hosts stay
"""

import concurrent.futures
import json
import os
import time

from tenantnet.model import config as config_mod
from tenantnet.errors import LabError, TenantnetError
from tenantnet.lab.lab import Lab

DEFAULT_PYTHON = "/opt/tenantnet-venv/bin/python"
REQUIRED_BRIDGES = ("br-int", "br-tun")


def default_api(topo):
    """The controller's API from the config: https:// (TLS, the default) or http://
    (`security: insecure`) on its management address."""
    c = topo.controller
    return f"{'https' if c.tls else 'http'}://{c.management_ip}:{c.api_port}"


def _say(progress, text):
    if progress:
        progress(text)


class RemoteLab(Lab):
    """Lab whose nodes are real hosts. *state_dir* defaults to /run/tenantnet/PREFIX on
    the machine this runs on (the controller node)."""

    def up(self, config_path, api=None, timeout=120.0, progress=None, node_exec=None,
           identity=None, ssh_options=None, python=DEFAULT_PYTHON, node_netns=None,
           api_ca=None):
        """Record the cluster described by *config_path*, check every host, wait for the
        controller's API, and make the namespaces of the config's VMs (and probes).

        *api*: the controller's API endpoint (default https://MANAGEMENT_IP:API_PORT from
        the config; http:// with `security: insecure`). *api_ca*: the CA file that
        verifies an https:// API (default: the client's, $TENANTNET_API_CA or
        /etc/tenantnet/pki/provider/api-ca.pem); recorded, so later commands on this
        cluster use it too. *node_exec*: {node: executor spec} overriding ssh:root@MANAGEMENT_IP.
        *identity*, *ssh_options*: for the SSH executors. *python*: the interpreter with
        tenantnet on the hosts (the Vagrant provisioning's venv). *node_netns*: {node:
        namespace} for a node whose Open vSwitch lives in a namespace of its host (a
        one-machine lab's node seen as a host: how the tests use it)."""
        topo = config_mod.load_file(config_path)        # bad config: nothing is recorded
        node_exec = dict(node_exec or {})
        node_netns = dict(node_netns or {})
        unknown = sorted((set(node_exec) | set(node_netns)) - {n.name for n in topo.nodes()})
        if unknown:
            raise LabError(f"unknown nodes in the executor settings: {', '.join(unknown)} "
                           f"(known: {', '.join(n.name for n in topo.nodes())})")
        fabric = self.fabric
        if self.is_up() or fabric.node_names() or fabric.has_fabric():
            raise LabError(f"a lab with prefix {self.prefix!r} is already recorded here "
                           f"(state in {fabric.state_dir}); run `tenantnet cluster down "
                           f"--prefix {self.prefix}` first")
        t0 = time.perf_counter()
        endpoint = api or default_api(topo)
        if api_ca and not os.path.isfile(api_ca):
            raise LabError(f"the API's CA file {api_ca} does not exist")
        os.makedirs(fabric.state_dir, exist_ok=True)
        meta = {"config": os.path.abspath(config_path), "prefix": self.prefix,
                "api": endpoint, "remote": True}
        if api_ca:
            meta["api_ca"] = os.path.abspath(api_ca)
        with open(self.meta_path, "w") as fh:
            json.dump(meta, fh)
        try:
            for node in topo.nodes():
                fabric.add_host_node(node.name, node.role, node.management_ip,
                                     node.transport_ip, executor=node_exec.get(node.name),
                                     netns=node_netns.get(node.name),
                                     ovsdb_port=topo.controller.ovsdb_port, python=python,
                                     ssh_identity=identity, ssh_options=ssh_options,
                                     tls=topo.controller.tls)
            self.check_hosts(progress)
            _say(progress, f"controller API at {endpoint}")
            self.wait_api(timeout)
            for vm in topo.vms().values():
                fabric.add_endpoint(vm.name, vm.node, vm.port, kind="vm")
            for key in topo.active_networks():
                for probe in topo.probes(key):
                    fabric.add_endpoint(probe.name, probe.node, probe.port, kind="probe")
            topo_now = self.topology_from_api()
            for key in topo_now.active_networks():
                for att in topo_now.attachments(key):
                    if fabric.has_endpoint(att.name):
                        self.configure_attachment(topo_now, att)
            result = {"reachable_after_s": {}}
            if topo.vms():
                _say(progress, "waiting until every VM answers its probe")
                result = self.wait_reachable(topo, list(topo.vms()), timeout=max(
                    5.0, timeout - (time.perf_counter() - t0)))
        except BaseException:
            self.down()
            raise
        result["seconds"] = round(time.perf_counter() - t0, 2)
        result["nodes"] = {n: fabric.node(n).spec for n in fabric.node_names()}
        return result

    def check_hosts(self, progress=None):
        """Reach every host in parallel; each must have Open vSwitch with the bootstrap
        bridges. Returns {node: bridges}; LabError names every host that fails."""
        fabric = self.fabric
        names = fabric.node_names()

        def one(name):
            try:
                return name, fabric.check_host_node(name), None
            except TenantnetError as exc:
                return name, None, str(exc)
        with concurrent.futures.ThreadPoolExecutor(max_workers=min(16, len(names) or 1)) as p:
            results = list(p.map(one, names))
        problems = []
        found = {}
        for name, bridges, err in results:
            spec = fabric.node(name).spec
            if err:
                problems.append(f"{name} ({spec}): {err}")
                continue
            missing = [b for b in REQUIRED_BRIDGES if b not in bridges]
            if missing:
                problems.append(f"{name} ({spec}): no {', '.join(missing)}: run "
                                f"`tenantnet node bootstrap` there first")
                continue
            found[name] = bridges
            _say(progress, f"host {name} ({spec}): {' '.join(bridges)}")
        if problems:
            raise LabError("cannot use every host: " + "; ".join(problems))
        return found

    def api(self, timeout=120):
        """Lab.api, with the API's CA recorded by up() (https:// endpoints)."""
        client = super().api(timeout=timeout)
        try:
            api_ca = self.meta().get("api_ca")
        except LabError:
            api_ca = None
        if api_ca:
            client.ca_file = api_ca
        return client

    api_poll_interval = 0.5

    def _controller_exited(self):
        return None          # a systemd service on the controller node, not our process

    def _api_hint(self):
        return "on the controller node see `journalctl -u tenantnet-controller`"

    def controller_log(self):
        return "`journalctl -u tenantnet-controller` on the controller node"
