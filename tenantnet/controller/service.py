"""The placement service of the controller core (used by tenantnet.controller.api through
`Core`): the queue of placement requests, their application as one group, the refusal of a
placement that touches a node that is not up, and the model as the API reads it.

Placements that arrive while another is being realised are realised together: one OVSDB
transaction per node and one bundle per bridge for the whole group, instead of one round of
each per VM. A batch of spawn requests (the paper's experiment) then costs about two
rounds, not one per request. A batch of VMs sent as one request (`add_vms`, POST
/v1/vm-batches) is one job of a group (placement.VmBatch): one round, all or none. A group
is realised under the core's lock (`Core.lock`) by `Core.realise`; only when that
succeeded does its model replace the core's."""

import logging
import threading
import time

from tenantnet.controller import nfv
from tenantnet.controller.placement import VmBatch, VmPlacement
from tenantnet.errors import PlacementError, TenantnetError

# The core's logger: placements were logged as the core's before they had a module.
LOG = logging.getLogger("tenantnet.controller.core")


class PlacementService:
    def __init__(self, core):
        """*core*: the Core whose model the placements change (its topo, lock, states,
        metrics, counters and realise)."""
        self.core = core
        self._queue = []                  # placements waiting to be realised (see submit)
        self._queue_lock = threading.Lock()

    # -- the queue -----------------------------------------------------------------
    def submit(self, req):
        """Queue placement *req* and realise it, together with whatever else is queued
        by then; its answer, or its error raised."""
        core = self.core
        with self._queue_lock:
            self._queue.append(req)
        while not req.done.is_set():
            with core.lock:
                with self._queue_lock:
                    group, self._queue = self._queue, []
                if group:
                    self.apply(group)
        elapsed = time.perf_counter() - req.t0
        for kind, created in req.outcomes():
            core.metrics.placement(kind, elapsed, ok=req.error is None,
                                   bridges_created=created)
        if req.error is not None:
            raise req.error
        return req.result

    def apply(self, group):
        """Realise the placements *group* as one change (under the core's lock)."""
        new = self.core.topo.copy()
        accepted = []
        for req in group:
            try:
                req.prepare(new)
            except TenantnetError as exc:
                req.fail(exc)
                continue
            try:
                self._refuse_if_down(req, new)
            except PlacementError as exc:
                req.undo(new)
                self.core.count("refused_node_down")
                req.fail(exc)
                continue
            accepted.append(req)
        if not accepted:
            return
        try:
            affected, timings = self._change(new, set().union(
                *(r.networks() for r in accepted)))
        except TenantnetError as exc:
            if len(accepted) == 1:
                accepted[0].fail(exc)
                return
            # One bad placement must not sink the others: realise them one by one.
            for req in accepted:
                req.reset()
                self.apply([req])
            return
        for req in accepted:
            req.finish(new, affected, dict(timings, group_size=len(accepted)))

    def _change(self, new_topo, nets):
        """Realise *new_topo* for the networks *nets*; on success it becomes the model."""
        core = self.core
        affected = sorted({n for key in nets for n in core.topo.hosting_nodes(key)}
                          | {n for key in nets for n in new_topo.hosting_nodes(key)})
        try:
            timings = core.realise(new_topo, affected, nets=set(nets), since=core.topo)
        except TenantnetError:
            # Put the switches back the way the current model says.
            LOG.error("placement failed; restoring %s", ", ".join(affected))
            try:
                core.realise(core.topo, affected, nets=set(nets))
            except TenantnetError as exc:
                LOG.error("restore failed too: %s", exc)
            raise
        core.topo = new_topo
        return affected, timings

    def _refuse_if_down(self, req, new):
        """PlacementError 503 when a node *req* would touch (its network's nodes, before
        and after) is not up: nothing anywhere is changed for it."""
        affected = sorted({n for net in req.networks()
                           for n in set(self.core.topo.hosting_nodes(net))
                           | set(new.hosting_nodes(net))})
        down = self.core.states.down_among(affected)
        if down:
            node, state, reason = down[0]
            others = f" (and {', '.join(n for n, _, _ in down[1:])})" if down[1:] else ""
            raise PlacementError(
                f"node {node} is {state}{others}: {reason}; placements that touch it are "
                f"refused until it is back (nothing was changed)", status=503)

    # -- VMs -----------------------------------------------------------------------
    def add_vm(self, spec):
        out = self.submit(VmPlacement("add", spec=spec))
        LOG.info("placed %s on %s in %.1f ms", out["name"], out["node"],
                 out["timings"]["total_ms"])
        return out

    def add_vms(self, specs):
        """Place the VMs *specs* as one job (placement.VmBatch): all of them or none."""
        batch = VmBatch(specs)
        out = self.submit(batch)
        LOG.info("placed a batch of %d VMs in %.1f ms", len(out),
                 (time.perf_counter() - batch.t0) * 1000)
        return out

    def del_vm(self, name):
        return self.submit(VmPlacement("del", name=name))

    def list_vms(self):
        return [vm.as_dict() for vm in sorted(self.core.topo.vms().values(),
                                              key=lambda v: v.name)]

    def get_vm(self, name):
        vm = self.core.topo.vm(name)
        if vm is None:
            raise PlacementError(f"unknown VM {name!r}", status=404)
        return vm.as_dict()

    def topology(self):
        topo = self.core.topo
        return {
            "mode": topo.mode,
            "nodes": [{"name": n.name, "role": n.role, "management_ip": n.management_ip,
                       "transport_ip": n.transport_ip,
                       "networks": topo.networks_on(n.name)} for n in topo.nodes()],
            "networks": [{"key": k, "tenant": n.tenant, "name": n.name,
                          "segmentation_id": n.segmentation_id, "cidr": n.cidr,
                          "transport_cidr": n.transport_cidr, "mode": n.mode,
                          "controller": n.controller,
                          "hosting_nodes": topo.hosting_nodes(k),
                          "probes": [p.as_dict() for p in topo.probes(k)]}
                         for k, n in sorted(topo.networks().items())],
            "vms": self.list_vms(),
            **nfv.topology_extra(topo),
        }

    # -- network functions and chains (controller.nfv) -----------------------------
    def add_function(self, spec):
        return self.submit(nfv.FunctionPlacement("add", spec=spec))

    def del_function(self, name):
        """Chains stop steering to it first (one round of bundles), then it goes."""
        self.submit(nfv.FunctionPlacement("drain", name=name))
        return self.submit(nfv.FunctionPlacement("del", name=name))

    def list_functions(self):
        return nfv.topology_extra(self.core.topo)["functions"]

    def add_chain(self, spec):
        return self.submit(nfv.ChainPlacement("add", spec=spec))

    def del_chain(self, name):
        return self.submit(nfv.ChainPlacement("del", name=name))

    def list_chains(self):
        return nfv.topology_extra(self.core.topo)["chains"]
