"""Placement jobs: one request (add or delete a VM, a network function or a chain) on its
way through PlacementService.submit (controller.service).

It collects the requests that arrive while another group is being realised and
realises them together. For each it calls `prepare(topo)` on the group's model copy
(validate with model.config, then apply), `undo(topo)` when the request is refused after
all (a node it touches is down), `reset()` before retrying it alone, and finally `fail(exc)`
or `finish(topo, affected, timings)`, which wakes the caller. `.vm` is the object the
request touches (its `.network` says which switches are affected).

`Placement` holds what every job shares (timing, the answer, the wake-up); a subclass says
how it changes the model (`prepare`, `undo`) and what its answer adds (`extra(topo)`).
VmPlacement is here; the function and chain jobs are in controller.nfv."""

import threading
import time

from tenantnet.errors import ConfigError, PlacementError
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
