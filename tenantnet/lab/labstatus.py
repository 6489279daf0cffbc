"""`tenantnet lab status`: what the lab's books record (nodes, endpoints, processes)
joined with what the controller answers (its VMs, node states), and every controller
process with its command line. `LabStatus` is that part of tenantnet.lab.lab.Lab."""

import shlex

from tenantnet.errors import ApiError, TenantnetError
from tenantnet.lab.controllers import tenant_controllers


class LabStatus:
    """A Lab's status report (uses its `fabric`, `prefix`, `api()`, `topology()`,
    `api_endpoint`, `controller_log()` and `tenant_process()`)."""

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
