"""Network functions and service chains as placements (the core's side of /v1/functions
and /v1/chains).

Each request is a placement job (controller.placement.Placement: prepare, undo, reset,
fail, finish; `.vm` names what it touches), so a chain or function change is realised like
a VM placement: a new model, validated by model.config, then OVSDB (a function's port, the
records of model.records) and one bundle per affected bridge (the steering flows of
model.chains), and only then the current model.

Removing a function takes two placements (Core.del_function): first it is marked
`draining`, which every chain treats as missing (fail-open: skipped; fail-closed: the
chain's traffic dropped), so the bundles that stop steering to it are committed while its
port still exists; then the function and its port go. No packet is ever steered to a port
that is gone."""

import dataclasses

from tenantnet.controller.placement import API_SOURCE, Placement
from tenantnet.errors import PlacementError
from tenantnet.model import config as config_mod


class FunctionPlacement(Placement):
    """kind: add (spec), drain (name: chains stop using it) or del (name)."""

    def reset(self):
        super().reset()
        self.before = None           # drain: the function as it was

    def prepare(self, topo):
        if self.kind == "add":
            self.vm = config_mod.function_from_spec(topo, self.spec, API_SOURCE, "",
                                                    fn_source="api")
            topo.add_function(self.vm)
            return
        fn = topo.function(self.name)
        if fn is None:
            raise PlacementError(f"unknown network function {self.name!r}", status=404)
        self.before = fn
        if self.kind == "drain":
            self.vm = dataclasses.replace(fn, draining=True)
            topo.add_function(self.vm)
        else:
            self.vm = fn
            topo.remove_function(self.name)

    def undo(self, topo):
        if self.kind == "add":
            topo.remove_function(self.vm.name)
        else:
            topo.add_function(self.before)
        self.reset()

    def extra(self, topo):
        return {"chains_affected": sorted(c.name for c in topo.chains_of(self.vm.network)
                                          if self.vm.name in c.through)}


class ChainPlacement(Placement):
    """kind: add (spec) or del (name)."""

    def prepare(self, topo):
        if self.kind == "add":
            self.vm = config_mod.chain_from_spec(topo, self.spec, API_SOURCE, "",
                                                 chain_source="api")
            topo.add_chain(self.vm)
            return
        chain = topo.chain(self.name)
        if chain is None:
            raise PlacementError(f"unknown chain {self.name!r}", status=404)
        self.vm = chain
        topo.remove_chain(self.name)

    def undo(self, topo):
        if self.kind == "add":
            topo.remove_chain(self.vm.name)
        else:
            topo.add_chain(self.vm)
        self.reset()


def topology_extra(topo, mine=None):
    """The functions and chains of GET /v1/topology (*mine*: a network filter)."""
    keep = mine or (lambda key: True)
    return {
        "functions": [f.as_dict() for f in sorted(topo.functions().values(),
                                                  key=lambda f: f.name) if keep(f.network)],
        "chains": [c.as_dict() for c in sorted(topo.chains().values(), key=lambda c: c.name)
                   if keep(c.network)],
    }
