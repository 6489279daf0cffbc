"""Who may do what through the API: bearer tokens mapped to the provider or one tenant
(make_authorizer), and the placement service as one tenant sees it (TenantView: its own
networks and VMs only, with the same answer for a foreign VM as for a missing one)."""

from tenantnet.controller.wire import batch_item
from tenantnet.errors import PlacementError

PROVIDER = "provider"
OPEN_ROUTES = {("GET", "/v1/health"), ("GET", "/openapi.json")}


class TenantView:
    """The placement service as one tenant sees it: its own networks and VMs only."""

    def __init__(self, core, tenant):
        self.core = core
        self.tenant = tenant

    def _mine(self, net_key):
        net = self.core.topo.network(net_key)
        return net is not None and net.tenant == self.tenant

    def _own_vm(self, name):
        vm = self.core.topo.vm(name)
        if vm is None or not self._mine(vm.network):
            # the same answer as for a VM that does not exist: nothing leaks
            raise PlacementError(f"unknown VM {name!r}", status=404)
        return vm

    def add_vm(self, spec):
        net = spec.get("network") if isinstance(spec, dict) else None
        if not isinstance(net, str) or not self._mine(net):
            raise PlacementError(f"tenant {self.tenant} has no network {net!r}", status=403)
        return self.core.add_vm(spec)

    def add_vms(self, specs):
        """A batch: refused (403, nothing placed) when any item names a network that is
        not the tenant's."""
        for i, spec in enumerate(specs if isinstance(specs, list) else ()):
            net = spec.get("network") if isinstance(spec, dict) else None
            if not isinstance(net, str) or not self._mine(net):
                name = spec.get("name") if isinstance(spec, dict) else None
                raise PlacementError(f"{batch_item(i, name)}: tenant {self.tenant} has no "
                                     f"network {net!r} (none of the batch's {len(specs)} "
                                     "VMs was placed)", status=403)
        return self.core.add_vms(specs)

    def del_vm(self, name):
        self._own_vm(name)
        return self.core.del_vm(name)

    def get_vm(self, name):
        return self._own_vm(name).as_dict()

    def list_vms(self):
        return [v for v in self.core.list_vms() if self._mine(v["network"])]

    def topology(self):
        topo = self.core.topology()
        return {"mode": topo["mode"], "tenant": self.tenant,
                "nodes": [{"name": n["name"], "role": n["role"]} for n in topo["nodes"]],
                "networks": [n for n in topo["networks"] if n["tenant"] == self.tenant],
                "vms": [v for v in topo["vms"] if self._mine(v["network"])],
                "functions": [f for f in topo.get("functions", ()) if self._mine(f["network"])],
                "chains": [c for c in topo.get("chains", ()) if self._mine(c["network"])]}

    def health(self):
        return self.core.health()

    # -- network functions and chains: the tenant's own networks only -----------------
    def _own(self, what, obj, name):
        if obj is None or not self._mine(obj.network):
            raise PlacementError(f"unknown {what} {name!r}", status=404)

    def _spec_network(self, spec):
        net = spec.get("network") if isinstance(spec, dict) else None
        if not isinstance(net, str) or not self._mine(net):
            raise PlacementError(f"tenant {self.tenant} has no network {net!r}", status=403)

    def add_function(self, spec):
        self._spec_network(spec)
        return self.core.add_function(spec)

    def del_function(self, name):
        self._own("network function", self.core.topo.function(name), name)
        return self.core.del_function(name)

    def list_functions(self):
        return [f for f in self.core.list_functions() if self._mine(f["network"])]

    def add_chain(self, spec):
        # model.config.chain_from_spec accepts only VMs and functions of the chain's own
        # network, so a chain on one of ours names nothing of another tenant's.
        self._spec_network(spec)
        return self.core.add_chain(spec)

    def del_chain(self, name):
        self._own("chain", self.core.topo.chain(name), name)
        return self.core.del_chain(name)

    def list_chains(self):
        return [c for c in self.core.list_chains() if self._mine(c["network"])]


def make_authorizer(topo):
    """Bearer tokens: the provider's (controller.api_token) sees everything, a tenant's
    (tenants[].token) only that tenant. No or unknown credential: refused."""
    by_token = {tok: f"tenant:{t}" for t, tok in topo.tenant_tokens.items()}
    if topo.controller.api_token:
        by_token[topo.controller.api_token] = PROVIDER

    def authorize(headers, method, path):
        if (method, path.rstrip("/") or "/") in OPEN_ROUTES:
            return None
        auth = headers.get("Authorization") or ""
        if not auth:
            raise PermissionError("this API needs a credential: send 'Authorization: Bearer "
                                  "TOKEN' (the provider's or your tenant's token)")
        scheme, _, token = auth.partition(" ")
        principal = by_token.get(token.strip()) if scheme.lower() == "bearer" else None
        if principal is None:
            raise PermissionError("the credential is not valid")
        return principal
    return authorize
