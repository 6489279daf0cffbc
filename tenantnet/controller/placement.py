"""Placement jobs: one request (add or delete a VM, a network function or a chain) on its
way through PlacementService.submit (controller.service).

It collects the requests that arrive while another group is being realised and
realises them together. For each it calls `prepare(topo)` on the group's model copy
(validate with model.config, then apply), `undo(topo)` when the request is refused after
all (a node it touches is down), `reset()` before retrying it alone, and finally `fail(exc)`
or `finish(topo, affected, timings)`, which wakes the caller. `.vm` is the object the
request touches; `networks()` (by default its `.network`) says which switches are affected,
and `outcomes()` what the metrics count.

`Placement` holds what every job shares (timing, the answer, the wake-up); a subclass says
how it changes the model (`prepare`, `undo`) and what its answer adds (`extra(topo)`).
VmPlacement and VmBatch (many VMs as one job: all placed, or none) are here; the function
and chain jobs are in controller.nfv."""

import threading
import time

from tenantnet.controller.wire import MAX_VM_BATCH, batch_item
from tenantnet.errors import ConfigError, PlacementError, TenantnetError
from tenantnet.model import config as config_mod

API_SOURCE = "API request"        # the source named by the ConfigErrors of a request


class Placement:
    """The common part of a job. *kind*: "add" (*spec*: the request's JSON object) or a
    removal ("del", and "drain" for functions; *name*: what to remove)."""

    def __init__(self, kind, spec=None, name=None):
        if kind == "add" and not isinstance(spec, dict):
            raise ConfigError(API_SOURCE, "", "expected a JSON object")
        self.kind, self.spec, self.name = kind, spec, name
        self.t0 = time.perf_counter()
        self.done = threading.Event()
        self.result = self.error = None
        self.reset()

    def prepare(self, topo):
        """Validate against *topo* (the group's model so far) and apply to it."""
        raise NotImplementedError

    def undo(self, topo):
        """Take back what prepare() did to *topo* (then reset())."""
        raise NotImplementedError

    def reset(self):
        """Forget what prepare() found (before it runs again)."""
        self.vm = None

    def extra(self, topo):
        """What the answer adds to the object's own fields, given the new model *topo*."""
        return {}

    def networks(self):
        """The networks the job changes (their nodes are the switches it touches); valid
        after prepare()."""
        return {self.vm.network}

    def outcomes(self):
        """[(metric kind, bridges created)], one per object placed or removed (metrics)."""
        return [("add" if self.kind == "add" else "delete",
                 bool((self.result or {}).get("bridges_created")))]

    def fail(self, exc):
        self.error = exc
        self.done.set()

    def finish(self, topo, affected, timings):
        timings["total_ms"] = round((time.perf_counter() - self.t0) * 1000, 2)
        out = self.vm.as_dict()
        out.update(nodes_updated=affected, timings=timings)
        if self.kind != "add":
            out["deleted"] = self.kind == "del"
        out.update(self.extra(topo))
        self.result = out
        self.done.set()


class VmPlacement(Placement):
    """Add a VM (spec) or delete one (name)."""

    def reset(self):
        super().reset()
        self.new_on_node = None      # add: the VM's node did not host its network before

    def prepare(self, topo):
        if self.kind == "add":
            vm = config_mod.vm_from_spec(topo, self.spec, API_SOURCE, "", vm_source="api")
            self.new_on_node = vm.node not in topo.hosting_nodes(vm.network)
            topo.add_vm(vm)
        else:
            vm = topo.vm(self.name)
            if vm is None:
                raise PlacementError(f"unknown VM {self.name!r}", status=404)
            topo.remove_vm(self.name)
        self.vm = vm

    def undo(self, topo):
        if self.kind == "add":
            topo.remove_vm(self.vm.name)
        else:
            topo.add_vm(self.vm)
        self.reset()

    def extra(self, topo):
        if self.kind != "add":
            return {}
        mode = topo.mode_of(self.vm.network)
        return {"bridges_created": self.new_on_node and mode == "dnb",
                "network_new_on_node": self.new_on_node, "mode": mode}


class VmBatch(Placement):
    """Add the VMs *specs* (the requests' JSON objects) as one job: they are validated in
    order against the model (each sees the ones before it), and then realised together, in
    one OVSDB transaction per node and one bundle per bridge; all of them, or none. The
    answer is the list of the VMs' answers. Every error names the item (`vms[i] (name)`)
    and says that none was placed."""

    def __init__(self, specs):
        if not isinstance(specs, list):
            raise ConfigError(API_SOURCE, "vms", "must be a list of VM placements")
        if not specs:
            raise ConfigError(API_SOURCE, "vms", "must name at least one VM")
        if len(specs) > MAX_VM_BATCH:
            raise ConfigError(API_SOURCE, "vms", f"at most {MAX_VM_BATCH} VMs in one batch "
                                                 f"(got {len(specs)}); send several batches")
        seen = {}
        for i, spec in enumerate(specs):
            if not isinstance(spec, dict):
                raise ConfigError(API_SOURCE, f"vms[{i}]", "expected a JSON object")
            name = spec.get("name")
            if isinstance(name, str) and name in seen:
                raise ConfigError(API_SOURCE, batch_item(i, name),
                                  f"the name is also vms[{seen[name]}]'s: each VM of a "
                                  "batch needs a name of its own" + nothing_placed(len(specs)))
            if isinstance(name, str):
                seen[name] = i
        self.items = [VmPlacement("add", spec=spec) for spec in specs]
        super().__init__("batch")

    def prepare(self, topo):
        done = []
        try:
            for i, item in enumerate(self.items):
                try:
                    item.prepare(topo)
                except ConfigError as exc:
                    key = batch_item(i, item.spec.get("name"))
                    raise ConfigError(exc.source, f"{key}: {exc.key}" if exc.key else key,
                                      exc.problem) from None
                except PlacementError as exc:
                    raise PlacementError(f"{batch_item(i, item.spec.get('name'))}: {exc}",
                                         status=exc.status) from None
                done.append(item)
        except TenantnetError:
            for item in reversed(done):
                item.undo(topo)
            raise
        self.vm = self.items[-1].vm

    def undo(self, topo):
        for item in reversed(self.items):
            if item.vm is not None:
                item.undo(topo)
        self.reset()

    def reset(self):
        super().reset()
        for item in getattr(self, "items", ()):
            item.reset()

    def networks(self):
        return {item.vm.network for item in self.items}

    def outcomes(self):
        return [out for item in self.items for out in item.outcomes()]

    def fail(self, exc):
        super().fail(none_placed(exc, len(self.items)))

    def finish(self, topo, affected, timings):
        for item in self.items:
            item.finish(topo, affected, dict(timings, batch_size=len(self.items)))
        self.result = [item.result for item in self.items]
        self.done.set()


def nothing_placed(n):
    return " (the batch's VM was not placed)" if n == 1 else \
        f" (none of the batch's {n} VMs was placed)"


def none_placed(exc, n):
    """*exc* (same type and status), saying that none of the batch's *n* VMs was placed."""
    note = nothing_placed(n)
    if isinstance(exc, ConfigError):
        return ConfigError(exc.source, exc.key, exc.problem + note)
    if isinstance(exc, PlacementError):
        return PlacementError(f"{exc}{note}", status=exc.status)
    try:
        return type(exc)(f"{exc}{note}")
    except TypeError:
        return TenantnetError(f"{exc}{note}")
