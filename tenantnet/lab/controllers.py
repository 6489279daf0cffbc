"""The lab's controller processes: the provider's (`ryu-manager tenantnet.app` in the
controller namespace, its oslo.config file written as an operator would) and each
tenant's own (`ryu-manager ryu_apps.tenant_l2 ...` in a management host of its own).

`LabControllers` is the part of tenantnet.lab.lab.Lab that writes their confs, starts,
restarts and stops them, and waits for the provider's API. RemoteLab (a controller that
is a service) overrides how the API is waited for."""

import ipaddress
import json
import os
import sys
import time

from tenantnet.model import config as config_mod
from tenantnet.model import naming
from tenantnet.lab import certs
from tenantnet.errors import ApiError, LabError


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


def ryu_manager_cmd():
    """How to run our `ryu-manager` (the console script beside this interpreter)."""
    script = os.path.join(os.path.dirname(sys.executable), "ryu-manager")
    if os.access(script, os.X_OK):
        return [script]
    return [sys.executable, "-m", "tenantnet.controller.ryumanager"]


class LabControllers:
    """Controller processes of a Lab (uses its `fabric`, `prefix`, `meta()`, `meta_path`,
    `api()`, `api_socket`, `api_endpoint` and `topology()`)."""

    # -- the provider's controller -------------------------------------------------------
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

    def start_controller(self, topo, config_path, extra=()):
        """Start the provider's controller on *config_path* as the lab's `controller`
        process, logging to <state>/controller.log; *extra*: more ryu-manager arguments."""
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
        self.start_controller(topo, path)
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

    # -- waiting for the API ------------------------------------------------------------
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
