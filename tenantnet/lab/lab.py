"""The one-machine lab: a tenantnet config made real on emulated nodes.

LabFabric (fabric.py, and the modules behind it) knows namespaces, veths, node kinds and
processes; this module knows tenants. `up` builds the fabric and the nodes, creates the VM
and probe namespaces (the hypervisor's part), starts the controller as a process of its own
in the controller namespace, configures the VMs with their addresses and the section III.G
tuning, and returns once every VM answers a ping from its network's probe."""

import concurrent.futures
import ipaddress
import json
import os
import shlex
import subprocess
import sys
import time

from tenantnet.model import config as config_mod
from tenantnet.model import naming
from tenantnet.controller.client import ApiClient
from tenantnet.lab import certs
from tenantnet.errors import ApiError, LabError, TenantnetError
from tenantnet.lab.fabric import LabFabric, check_host
from tenantnet.lab.functions import for_function
from tenantnet.model.topology import NODE_KINDS, probe_name

META = "lab.json"


def tenant_controllers(topo):
    """tenant -> its own OpenFlow controller target (config validation makes it unique)."""
    out = {}
    for net in topo.networks().values():
        if net.controller:
            out[net.tenant] = net.controller
    return out


def tenant_apps(topo, tenant):
    """The apps a tenant's own controller runs next to tenant_l2 in the lab: its chain app
    when one of its own-controller networks has a chain."""
    own = {k for k, n in topo.networks().items() if n.tenant == tenant and n.controller}
    return ["ryu_apps.tenant_chain"] if any(c.network in own for c in topo.chains().values()) \
        else []


def _say(progress, text):
    if progress:
        progress(text)


def ryu_manager_cmd():
    """How to run our `ryu-manager` (the console script beside this interpreter)."""
    script = os.path.join(os.path.dirname(sys.executable), "ryu-manager")
    if os.access(script, os.X_OK):
        return [script]
    return [sys.executable, "-m", "tenantnet.controller.ryumanager"]


class Lab:
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
        self._start_controller(topo, config_path, controller_args)
        self._wait_api(timeout)
        for tenant, target in tenant_controllers(topo).items():
            _say(progress, f"tenant {tenant}'s own controller: {target}")
            self.start_tenant_controller(tenant, topo=topo, app=tenant_apps(topo, tenant))
        for key in topo.active_networks():
            for att in topo.attachments(key):
                self._configure(topo, att)
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

    def _controller_conf(self, topo, config_path):
        """The provider controller's oslo.config file, as an operator would write it."""
        fab = self.fabric
        c = topo.controller
        # host-side steps through `ip netns` for emulated nodes; node VMs and hosts do
        # their own (the udev rule), as real nodes do
        netns = ",".join(f"{n.name}:{fab.node_netns(n.name)}@{fab.ovs(n.name).rundir}"
                         for n in topo.nodes() if fab.node_kind(n.name) == "emulated")
        path = os.path.join(fab.state_dir, "controller.conf")
        port = "ssl" if c.tls else "tcp"
        text = (f"# written by `tenantnet lab up` (prefix {self.prefix})\n"
                "[DEFAULT]\n"
                f"ofp_listen_host = {c.management_ip}\n"
                f"ofp_{port}_listen_port = {c.openflow_port}\n\n"
                "[tenantnet]\n"
                f"config = {os.path.abspath(config_path)}\n"
                f"api_listen = {c.management_ip}:{c.api_port}\n"
                f"api_socket = {self.api_socket}\n"
                + (f"pki_dir = {certs.pki_dir(fab.state_dir)}\n" if c.tls else "")
                + (f"node_netns = {netns}\n" if netns else ""))
        with open(path, "w") as fh:
            fh.write(text)
        return path

    def _controller_cmd(self, topo, config_path, extra=()):
        return [*ryu_manager_cmd(), "tenantnet.app", "--config-file",
                self._controller_conf(topo, config_path), *extra]

    def _start_controller(self, topo, config_path, extra=()):
        log = os.path.join(self.fabric.state_dir, "controller.log")
        self.fabric.start_process("controller", self._controller_cmd(topo, config_path, extra),
                                  self.fabric.controller_netns, log)

    def restart_controller(self, config_path=None, timeout=90.0):
        """Stop the provider's controller and start it on *config_path* (default: the lab's
        own config), which must describe the same nodes: the same lab in another mode, say
        (the experiment runs its modes on one lab of node VMs). The lab must have no VM.
        Returns once the API answers."""
        meta = self.meta()
        path = os.path.abspath(config_path or meta["config"])
        topo = config_mod.load_file(path)

        def nodes(t):
            return sorted((n.name, n.role, n.management_ip, n.transport_ip) for n in t.nodes())
        if nodes(topo) != nodes(self.topology()):
            raise LabError(f"{path}: other nodes than lab {self.prefix!r}; the controller "
                           "can only be restarted on the same nodes")
        if topo.vms() or self.api(timeout=10).list_vms():
            raise LabError(f"lab {self.prefix!r}: the controller is restarted on a new config "
                           "only without VMs")
        self.fabric.stop_process("controller")
        meta["config"] = path
        with open(self.meta_path, "w") as fh:
            json.dump(meta, fh)
        self._start_controller(topo, path)
        self._wait_api(timeout)

    # -- tenants' own controllers -----------------------------------------------------
    def _tenant_host(self, tenant, ip, prefix_len):
        """A namespace on the management network for *tenant*'s controller."""
        return self.fabric.add_management_host(
            naming.tenant_netns(self.prefix, tenant),
            naming.fabric_peer_name("m", "tenant", tenant), ip, prefix_len)

    def start_tenant_controller(self, tenant, topo=None, app=None, env=None, conf=None,
                                manager=None, args=()):
        """Run *tenant*'s own controller where its networks' `controller:` target points:
        `ryu-manager ryu_apps.tenant_l2 [APP...] --config-file <state>/tenant-T.conf`.

        The generated conf (tenant_conf()) holds the OpenFlow listen address and the
        [tenant_l2] section: the tenant, the provider's API, the tenant's token file and
        the placement cache. *app*: further app module(s) to run next to tenant_l2 (a
        name or a list); *conf*: further settings, {section: {key: value}} (e.g.
        {"tenant_acl": {"pairs": "web1>web2"}}); *env*: environment variables;
        *manager*: the ryu-manager command to use (a path or an argv list; default ours,
        beside this interpreter; e.g. the real Ryu's in .venv-ryu); *args*: more
        ryu-manager arguments (e.g. ["--wsapi-host", ip] for ryu.app.ofctl_rest)."""
        topo = topo or self.topology()
        target = tenant_controllers(topo).get(tenant)
        if target is None:
            raise LabError(f"tenant {tenant} has no network with a controller of its own")
        _, ip, port = target.split(":")
        mgmt = ipaddress.ip_network(topo.lab.management_cidr)
        if ipaddress.ip_address(ip) not in mgmt:
            raise LabError(f"tenant {tenant}'s controller {target} is outside the lab's "
                           f"management network {mgmt}: run it yourself")
        netns = self._tenant_host(tenant, ip, mgmt.prefixlen)
        conf_path = self.tenant_conf(tenant, topo, conf)
        apps = [app] if isinstance(app, str) else list(app or ())
        if manager is None:
            cmd = ryu_manager_cmd()
        else:
            cmd = [manager] if isinstance(manager, str) else list(manager)
        cmd += ["ryu_apps.tenant_l2", *apps, "--config-file", conf_path, *args]
        if env:
            cmd = ["env"] + [f"{k}={v}" for k, v in env.items()] + cmd
        self.fabric.start_process(self.tenant_process(tenant), cmd, netns,
                                  self.tenant_log(tenant))
        return netns

    def tenant_conf(self, tenant, topo=None, extra=None):
        """Write *tenant*'s controller conf (oslo.config, as the tenant would write it) into
        the lab's state directory; return its path. *extra*: {section: {key: value}}."""
        topo = topo or self.topology()
        target = tenant_controllers(topo).get(tenant)
        if target is None:
            raise LabError(f"tenant {tenant} has no network with a controller of its own")
        _, ip, port = target.split(":")
        token = topo.tenant_tokens.get(tenant)
        if token is None:
            raise LabError(f"tenant {tenant} has no API token in the config (tenants[].token)")
        state = self.fabric.state_dir
        token_file = os.path.join(state, f"token-{tenant}")
        fd = os.open(token_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write(token)
        c = topo.controller
        ident = certs.tenant_identity(topo, state, tenant, ip)
        sections = {
            "DEFAULT": {"ofp_listen_host": ip, "echo_request_interval": 1,
                        "maximum_unreplied_echo_requests": 3},
            "tenant_l2": {"tenant": tenant,
                          "api": f"{'https' if ident else 'http'}://{c.management_ip}:"
                                 f"{c.api_port}",
                          "token_file": token_file,
                          "cache": os.path.join(state, f"placement-{tenant}.json")},
        }
        if ident is None:
            sections["DEFAULT"]["ofp_tcp_listen_port"] = port
        else:          # TLS: its own certificate; only a node's is accepted (node-ca.pem)
            sections["DEFAULT"].update(ofp_ssl_listen_port=port, ctl_privkey=ident.key,
                                       ctl_cert=ident.cert, ca_certs=ident.ca("node"))
            sections["tenant_l2"]["api_ca"] = ident.ca("api")
        for section, values in (extra or {}).items():
            sections.setdefault(section, {}).update(values)
        lines = [f"# written by the lab (prefix {self.prefix}) for tenant {tenant}'s "
                 "controller: ryu-manager ryu_apps.tenant_l2 ... --config-file THIS"]
        for section, values in sections.items():
            lines += ["", f"[{section}]"] + [f"{k} = {v}" for k, v in values.items()]
        path = os.path.join(state, f"tenant-{tenant}.conf")
        with open(path, "w") as fh:
            fh.write("\n".join(lines) + "\n")
        return path

    @staticmethod
    def tenant_process(tenant):
        """The lab's process name for *tenant*'s controller."""
        return f"tenant-{tenant}"

    def stop_tenant_controller(self, tenant):
        self.fabric.stop_process(f"tenant-{tenant}")

    def tenant_log(self, tenant):
        return os.path.join(self.fabric.state_dir, f"tenant-{tenant}.log")

    def controller_log(self):
        return os.path.join(self.fabric.state_dir, "controller.log")

    # How _wait_api polls and what it says; RemoteLab (a controller service) overrides them.
    api_poll_interval = 0.1

    def _controller_exited(self):
        if not self.fabric.process_alive("controller"):
            return ("the controller exited during start-up; last lines of "
                    f"{self.controller_log()}:\n{self._log_tail()}")
        return None

    def _api_hint(self):
        return f"see {self.controller_log()}"

    def wait_api(self, timeout=90.0):
        """Return once the controller's API answers and the controller is ready."""
        self._wait_api(timeout)

    def _wait_api(self, timeout):
        deadline = time.time() + timeout
        last = None
        while time.time() < deadline:
            exited = self._controller_exited()
            if exited:
                raise LabError(exited)
            try:
                if self.api(timeout=5).health().get("status") == "ok":
                    return
            except ApiError as exc:
                last = exc
            time.sleep(self.api_poll_interval)
        raise LabError(f"the controller's API at {self.api_endpoint} did not answer within "
                       f"{timeout:.0f}s ({last}); {self._api_hint()}")

    def _log_tail(self, lines=15):
        try:
            with open(self.controller_log()) as fh:
                return "".join(fh.readlines()[-lines:])
        except OSError:
            return "(no log)"

    def _configure(self, topo, att):
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

    # -- reachability --------------------------------------------------------------
    def _probe_of(self, topo_dict, net_key):
        for net in topo_dict["networks"]:
            if net["key"] == net_key and net["probes"]:
                return net["probes"][0]["name"]
        raise LabError(f"network {net_key} has no probe")

    def ping(self, src_endpoint, ip, count=1, wait=1.0):
        proc = self.fabric.exec(src_endpoint, ["ping", "-n", "-q", "-c", str(count), "-W",
                                               str(max(1, int(wait))), ip], timeout=wait + 10)
        return proc.returncode == 0

    def wait_reachable(self, topo, vm_names, timeout=60.0, interval=0.01):
        """Ping each VM from its network's probe until it answers. Returns per-VM seconds."""
        deadline = time.time() + timeout
        start = time.perf_counter()

        def one(name):
            vm = topo.vm(name)
            probe = topo.probes(vm.network)[0].name
            while time.time() < deadline:
                # A short wait per echo: a lost first echo must not cost a whole second.
                proc = self.fabric.exec(probe, ["ping", "-n", "-q", "-c", "1", "-W", "0.2",
                                                vm.ip], timeout=10)
                if proc.returncode == 0:
                    return round(time.perf_counter() - start, 3)
                time.sleep(interval)
            return None

        with concurrent.futures.ThreadPoolExecutor(max_workers=16) as pool:
            times = dict(zip(vm_names, pool.map(one, vm_names)))
        failed = sorted(n for n, t in times.items() if t is None)
        if failed:
            raise LabError(f"not reachable from their probes within {timeout:.0f}s: "
                           f"{', '.join(failed)}; see {self.controller_log()}")
        return {"reachable_after_s": times}

    def matrix(self, listen=1.0, limit=120.0):
        """Layer-2 reachability between every pair of endpoints (VMs and probes), plus an
        IP ping for every same-network pair. Returns {rows: [...], names: [...]}.

        Receivers listen until every sender is done plus *listen* seconds (at most
        *limit* in all): senders started over SSH on slow nodes take their time."""
        topo_api = self.api().topology(typed=True)          # a controller.wire.Topology
        atts = {v.name: v.model_dump() for v in topo_api.vms}
        for net in topo_api.networks:
            for p in net.probes:
                atts[p.name] = p.model_dump()
        names = sorted(atts, key=lambda n: (atts[n]["network"], atts[n]["kind"] != "vm", n))
        fabric = self.fabric
        receivers = {}
        for name in names:
            receivers[name] = fabric.endpoint_executor(name).popen(
                [fabric.endpoint_python(name), "-m", "tenantnet.lab.l2probe", "recv", "eth0",
                 str(limit), "--until-stdin"], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                text=True)
        for proc in receivers.values():
            proc.stdout.readline()          # "ready"
        senders = []
        for name in names:
            dsts = ",".join(atts[o]["mac"] for o in names if o != name)
            senders.append(fabric.endpoint_executor(name).popen(
                [fabric.endpoint_python(name), "-m", "tenantnet.lab.l2probe", "send", "eth0",
                 dsts]))
        for proc in senders:
            proc.wait(timeout=limit)
        time.sleep(listen)                  # frames in flight, flooded copies
        for proc in receivers.values():
            proc.stdin.write("done\n")
            proc.stdin.close()
        heard = {}
        for name, proc in receivers.items():
            out = proc.stdout.read()
            proc.wait(timeout=30)
            heard[name] = json.loads(out.strip().splitlines()[-1]) if out.strip() else {}
        by_mac = {atts[n]["mac"]: n for n in names}

        pairs = [(a, b) for a in names for b in names if a != b
                 and atts[a]["network"] == atts[b]["network"]]
        with concurrent.futures.ThreadPoolExecutor(max_workers=16) as pool:
            pings = dict(zip(pairs, pool.map(lambda p: self.ping(p[0], atts[p[1]]["ip"]), pairs)))
        rows = []
        for a in names:
            for b in names:
                if a == b:
                    continue
                got = heard[b].get(atts[a]["mac"], [])
                rows.append({"src": a, "dst": b, "same_network": atts[a]["network"] ==
                             atts[b]["network"], "unicast": "unicast" in got,
                             "broadcast": "broadcast" in got, "ping": pings.get((a, b)),
                             "src_network": atts[a]["network"], "dst_network": atts[b]["network"]})
        del by_mac
        return {"names": names, "networks": {n: atts[n]["network"] for n in names},
                "rows": rows}

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
        applied = self._configure(topo, topo.vm(name))
        for probe in topo.probes(network):
            if probe.name in created:
                self._configure(topo, probe)
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
        self._configure(topo, fn)
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

    # -- status / exec / down ------------------------------------------------------
    def status(self):
        st = self.fabric.status()
        vms = {}
        try:
            api = self.api(timeout=10)
            live = {v["name"]: v for v in api.list_vms()}
            health = {s["node"]: s for s in api.health().get("node_states", [])}
            api_ok = True
        except ApiError:
            live, health, api_ok = {}, {}, False
        for name, ep in st["endpoints"].items():
            entry = {"namespace": ep["netns"], "node": ep["node"], "kind": ep["kind"],
                     "port": ep["port_name"]}
            cfg = ep.get("config") or {}
            v = live.get(name, {})
            entry.update(network=v.get("network"), mac=v.get("mac") or cfg.get("mac"),
                         ip=v.get("ip") or (cfg.get("ip", "").split("/")[0] or None),
                         tuning={k: cfg.get(k) for k in ("mtu", "tx_offload", "neigh_gc_thresh")
                                 if k in cfg})
            vms[name] = entry
        nodes = {name: {"namespace": n["netns"], "role": n["role"], "kind": n["kind"],
                        "accel": n.get("accel"), "exec": n.get("exec"),
                        "ovsdb_remote": n["ovsdb_remote"], "ovsdb_unix": n["unix_remote"],
                        "management_ip": n["management_ip"], "transport_ip": n["transport_ip"],
                        "ovs_running": n["ovs_running"], "bridges": n["bridges"],
                        # as the controller sees it (GET /v1/health); None: no answer
                        "state": health.get(name, {}).get("state"),
                        "state_since": health.get(name, {}).get("since"),
                        "state_reason": health.get(name, {}).get("reason")}
                 for name, n in st["nodes"].items()}
        ctl = st["processes"].get("controller")
        # On real hosts (tenantnet.lab.remote) the controller is a service, not our process.
        alive = ctl.get("alive", False) if ctl else (api_ok and st["controller"] is None)
        ctl = ctl or {}
        return {"prefix": self.prefix, "state_dir": st["state_dir"],
                "controllers": self._controllers(),
                "controller": {"namespace": (st["controller"] or {}).get("netns"),
                               "pid": ctl.get("pid"), "alive": alive,
                               "api": self.api_endpoint, "api_ok": api_ok,
                               "log": self.controller_log()},
                "nodes": nodes,
                "vms": {k: v for k, v in vms.items() if v["kind"] == "vm"},
                "probes": {k: v for k, v in vms.items() if v["kind"] == "probe"},
                "functions": {k: v for k, v in vms.items() if v["kind"] == "function"}}

    def _controllers(self):
        """Every controller process the lab runs: the provider's and each tenant's, with
        its command line, pid, namespace and OpenFlow listen address."""
        try:
            topo = self.topology()
        except TenantnetError:
            topo = None
        wanted = [("provider", None, "controller")]
        if topo is not None:
            wanted += [("tenant", t, self.tenant_process(t)) for t in tenant_controllers(topo)]
        out = []
        fabric = self.fabric
        for role, tenant, pname in wanted:
            proc = fabric.process(pname)
            if proc is None:
                continue
            if topo is None:
                listen = None
            elif tenant is None:
                listen = f"{topo.controller.management_ip}:{topo.controller.openflow_port}"
            else:
                listen = tenant_controllers(topo)[tenant].partition(":")[2]
            out.append({"role": role, "tenant": tenant, "process": pname, "pid": proc.pid,
                        "alive": fabric.process_alive(pname), "namespace": proc.netns,
                        "command_line": shlex.join(proc.cmd), "argv": list(proc.cmd),
                        "listen": listen, "log": proc.log})
        return out

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
