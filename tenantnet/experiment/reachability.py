"""Reachability time (section IV.A): from a VM's spawn request to its first ICMP echo reply.

One *sub-experiment* = (mode, instances, networks, repeat), on a fresh lab that is up with
its nodes and networks but no VM:

1. Before the clock starts: the placements are fixed (Spec.placements: name, network,
   node, MAC, IP); every used network's probe (the network node's interface on it, the
   DHCP-namespace analogue) is created and given its address, and one prober per network
   is started in it (python -m tenantnet.experiment.prober) and has said "ready".
2. The batch: every instance's spawn request is sent at once from a thread pool. Per
   instance, as the hypervisor and the cloud API would: create the VM's namespace and link
   (``request_time`` is taken just before), send the placement to the controller API
   (``sent_time``), which answers once bridges, ports, tunnels and flows are realised
   (``ready_time``), then configure the VM's interface: MAC, IP, MTU, offloads
   (``configured_time``). The controller serialises placements, as a real one does.
3. The probers send an echo request every probe_interval_ms to every target whose
   placement was answered (earlier ones could not answer: their interface is down) and
   record the first reply's kernel timestamp (``reachable_time``). They stop when every
   target answered, or timeout_s after the batch started.

With ``reachability.prepare_vms: true`` the VMs' namespaces and interfaces (step 2's
hypervisor part) are made and configured *before* the batch, one after the other, and the
batch is only the placement requests: they then reach the controller at once, as the
paper's one-batch boot requests do, and the metric is the networking part alone (the lab's
namespace and interface set-up is serialised by the lab's state lock, so at 80 instances it
otherwise dominates the figures). ``sent_time`` = ``request_time`` and ``configured_time``
is empty then; the probers still arm a target when its placement is answered (probing a
target whose port is not wired yet would only flood the network), so a reply is never
recorded before ``ready_time``.

Row status: ``success`` (a reply), ``failed`` (the placement or the VM's set-up erred: see
``error``), ``missing`` (placed, no reply before the timeout).
``reachability_ms = (reachable_time - request_time) * 1000``.

Why the probe is made before the batch (and not by the first placement of its network, as
Lab.add_vm does it): the prober must listen before the first request, else the first VM of
every network would be measured against a late prober; and Lab.add_vm's create-probe-if-
none check is not safe for concurrent first placements of one network. Everything here is
derived from the model (config.vm_from_spec, Topology.probes), so it is mode-agnostic.

The probers are driven by tenantnet.experiment.proberproc; the run's errors and interrupt
guard are tenantnet.experiment.interrupts'.
"""

import concurrent.futures
import ipaddress
import threading
import time

from tenantnet.model import config as config_mod
from tenantnet.errors import ApiError, TenantnetError
from tenantnet.experiment.interrupts import ExperimentError, Interrupted, shield_interrupts
from tenantnet.experiment.proberproc import ProberProcess

INSTANCE_FIELDS = (
    "mode", "instances", "networks", "repeat", "vm", "index", "node", "network", "mac", "ip",
    "bridges_existed", "network_new_on_node", "prepared", "batch_time", "request_time", "sent_time",
    "ready_time", "configured_time", "reachable_time", "ready_ms", "configured_ms",
    "reachability_ms", "api_total_ms", "api_ovsdb_ms", "api_openflow_ms", "api_retries",
    "status", "error")

MAX_WORKERS = 128


class _NullProgress:
    """What reachability uses when no reporter is given."""

    def log(self, text):
        pass

    def task(self, description, total=None):
        return self

    def update(self, **kwargs):
        pass

    def advance(self, n=1):
        pass

    def remove(self):
        pass

    def __bool__(self):
        return False


# -- the model side -------------------------------------------------------------------
def attachments_for(lab, placements):
    """(vm attachments by name, probe attachments by network) as the model computes them
    for *placements* on *lab*'s topology: names, ports, MACs and IPs, validated exactly as
    the controller will (a bad placement raises ConfigError before anything is made)."""
    topo = lab.topology_from_api()
    if topo.vms():
        raise ExperimentError(f"lab {lab.prefix!r} already has VMs "
                              f"({', '.join(sorted(topo.vms()))}); a sub-experiment needs an "
                              "empty lab")
    vms = {}
    for p in placements:
        att = config_mod.vm_from_spec(topo, {"name": p.name, "network": p.network,
                                             "node": p.node, "mac": p.mac, "ip": p.ip},
                                      "experiment placement", f"vm {p.name}", vm_source="api")
        topo.add_vm(att)
        vms[p.name] = att
    probes = {key: topo.probes(key) for key in sorted({p.network for p in placements})}
    return topo, vms, probes


def _prefixlen(topo, net_key):
    return ipaddress.ip_network(topo.network(net_key).cidr).prefixlen


def _configure(lab, topo, att):
    t = topo.tuning
    return lab.fabric.configure_endpoint(att.name, att.mac,
                                         f"{att.ip}/{_prefixlen(topo, att.network)}",
                                         mtu=t.vm_mtu, tx_offload=t.tx_checksum_offload,
                                         neigh_gc_thresh=t.neigh_gc_thresh)


def prepare_probes(lab, topo, probes):
    """Create and configure every probe endpoint of the used networks (what Lab.add_vm
    does for a network's first VM), before any placement request."""
    for key, atts in probes.items():
        for att in atts:
            if not lab.fabric.has_endpoint(att.name):
                lab.fabric.add_endpoint(att.name, att.node, att.port, kind="probe")
            _configure(lab, topo, att)


# -- one sub-experiment ---------------------------------------------------------------
def _refused_connect(exc):
    """An API error that means the request never reached the controller: a full listen
    backlog (EAGAIN on a unix socket connect). Safe to send again."""
    return exc.status == 0 and "temporarily unavailable" in str(exc)


def add_vm_retrying(lab, att, timeout, stop):
    """api.add_vm, sent again while the controller's socket refuses new connections (its
    listen backlog is full when a whole batch connects at once). Returns (record, retries)."""
    deadline = time.time() + timeout
    delay, retries = 0.005, 0
    while True:
        try:
            return lab.api(timeout=timeout).add_vm(att.name, att.network, att.node,
                                                   mac=att.mac, ip=att.ip), retries
        except ApiError as exc:
            if not _refused_connect(exc) or time.time() + delay > deadline or stop.is_set():
                raise
        retries += 1
        time.sleep(delay)
        delay = min(delay * 2, 0.05)


def _ms(a, b):
    return None if a is None or b is None else round((b - a) * 1000.0, 3)


def run_batch(lab, spec, mode, instances, networks, repeat, progress=None, stop=None):
    """Run one sub-experiment on *lab* (up, no VMs). Returns the per-instance rows.

    *stop*: a threading.Event; when set (or on KeyboardInterrupt) workers start nothing
    new, the controller is stopped so that requests in flight end, and Interrupted (or the
    KeyboardInterrupt) propagates. The caller tears the lab down."""
    progress = _NullProgress() if progress is None else progress
    stop = stop or threading.Event()
    r = spec.reachability
    placements = spec.placements(instances, networks)
    topo, vms, probes = attachments_for(lab, placements)
    prepare_probes(lab, topo, probes)
    if r.prepare_vms:
        for p in placements:
            if stop.is_set():
                raise Interrupted("stopped")
            att = vms[p.name]
            lab.fabric.add_endpoint(att.name, att.node, att.port, kind="vm")
            _configure(lab, topo, att)

    probers = {}
    pool = None
    label = f"{mode} n={instances} k={networks} #{repeat}"
    try:
        for key, atts in probes.items():
            probe = atts[0]
            targets = {vms[p.name].ip: vms[p.name].mac for p in placements if p.network == key}
            probers[key] = ProberProcess(lab.fabric, probe.name, "eth0", probe.ip,
                                         probe.mac, targets, r.probe_interval_ms,
                                         r.timeout_s + 60)
        for pr in probers.values():
            pr.wait_ready()

        api_timeout = max(30.0, r.timeout_s + 30.0)
        base = {"mode": mode, "instances": instances, "networks": networks, "repeat": repeat}
        rows = {}

        def place(p):
            att = vms[p.name]
            row = dict.fromkeys(INSTANCE_FIELDS)
            row.update(base, vm=p.name, index=p.index, node=p.node, network=p.network,
                       mac=att.mac, ip=att.ip, batch_time=batch_time,
                       prepared=r.prepare_vms)
            rows[p.name] = row
            prober = probers[p.network]
            if stop.is_set():
                row.update(status="failed", error="interrupted before the request")
                prober.drop(att.ip)
                return row
            row["request_time"] = time.time()
            try:
                # The hypervisor's part: the VM and its link (the controller waits for the
                # port to exist when it realises the placement).
                if not r.prepare_vms:
                    lab.fabric.add_endpoint(att.name, att.node, att.port, kind="vm")
                if stop.is_set():
                    raise Interrupted("interrupted before the API request")
                row["sent_time"] = time.time()
                rec, row["api_retries"] = add_vm_retrying(lab, att, api_timeout, stop)
                row["ready_time"] = time.time()
                prober.arm(att.ip)
                created = rec.get("bridges_created")
                row["bridges_existed"] = None if created is None else not created
                row["network_new_on_node"] = rec.get("network_new_on_node")
                t = rec.get("timings") or {}
                row.update(api_total_ms=t.get("total_ms"), api_ovsdb_ms=t.get("ovsdb_ms"),
                           api_openflow_ms=t.get("openflow_ms"))
                if not r.prepare_vms:
                    if stop.is_set():
                        raise Interrupted("interrupted before the VM was configured")
                    _configure(lab, topo, att)    # the VM "boots": MAC, IP, MTU, offloads
                    row["configured_time"] = time.time()
            except TenantnetError as exc:
                row.update(status="failed", error=str(exc).splitlines()[0][:500])
                prober.drop(att.ip)
            return row

        task = progress.task(f"{label}: placing", total=instances)
        batch_time = time.time()
        deadline = batch_time + r.timeout_s
        for pr in probers.values():
            pr.set_deadline(deadline)
        pool = concurrent.futures.ThreadPoolExecutor(
            max_workers=min(instances, MAX_WORKERS), thread_name_prefix="place")
        futures = [pool.submit(place, p) for p in placements]
        pending = set(futures)
        while pending:
            if stop.is_set():
                raise Interrupted("stopped")
            _, pending = concurrent.futures.wait(pending, timeout=0.2)
            task.update(completed=instances - len(pending),
                        description=f"{label}: placed {instances - len(pending)}/{instances}, "
                                    f"reachable {sum(p.answered() for p in probers.values())}")
        for f in futures:
            f.result()                       # re-raise anything unexpected in a worker
        pool.shutdown(wait=True)
        pool = None
        task.update(total=instances, completed=0,
                    description=f"{label}: reachable")
        results = {}
        while True:
            answered = sum(p.answered() for p in probers.values())
            task.update(completed=answered)
            if all(p.proc.poll() is not None for p in probers.values()):
                break
            if time.time() > deadline + 15:
                break
            if stop.is_set():
                raise Interrupted("stopped")
            time.sleep(0.05)
        for key, pr in probers.items():
            results.update(pr.finish(timeout=max(1.0, deadline + 15 - time.time())))
        task.remove()
    except BaseException:
        stop.set()
        with shield_interrupts():
            if pool is not None:
                # Requests in flight end once the controller is gone; nothing new starts.
                try:
                    lab.fabric.stop_process("controller")
                except TenantnetError:
                    pass
                pool.shutdown(wait=True, cancel_futures=True)
            for pr in probers.values():
                pr.kill()
        raise
    finally:
        for pr in probers.values():
            pr.kill()

    out = []
    for p in placements:
        row = rows[p.name]
        reached = results.get(row["ip"])
        if row["status"] is None:
            if reached is not None and reached <= deadline:
                row.update(status="success", reachable_time=reached)
            else:
                row["status"] = "missing"
                if reached is not None:
                    row["error"] = f"reply {reached - deadline:.3f}s after the timeout"
        row["ready_ms"] = _ms(row["request_time"], row["ready_time"])
        row["configured_ms"] = _ms(row["request_time"], row["configured_time"])
        row["reachability_ms"] = _ms(row["request_time"], row["reachable_time"])
        out.append(row)
    return out


def run_reachability(lab_factory, spec, mode, progress=None, on_rows=None, stop=None):
    """Every (instances, networks, repeat) of *spec* in *mode*, each on a fresh lab.

    *lab_factory(networks=K, label=...)* is a context manager giving an up lab with K
    networks and no VM (torn down on exit). *on_rows(rows)* is called after every
    sub-experiment (the runner saves as it goes). Returns all rows."""
    progress = _NullProgress() if progress is None else progress
    all_rows = []
    r = spec.reachability
    for instances, networks in r.grid():
        for repeat in range(1, r.repeats + 1):
            label = f"reachability {mode} n={instances} k={networks} #{repeat}"
            progress.log(f"{label}: getting a lab (fresh or reset)")
            with lab_factory(networks=networks, label=label) as lab:
                rows = run_batch(lab, spec, mode, instances, networks, repeat,
                                 progress=progress, stop=stop)
            ok = [x for x in rows if x["status"] == "success"]
            mean = (sum(x["reachability_ms"] for x in ok) / len(ok)) if ok else None
            progress.log(f"{label}: {len(ok)}/{len(rows)} reachable"
                         + (f", mean {mean:.1f} ms" if mean is not None else "")
                         + "".join(f", {s} {sum(1 for x in rows if x['status'] == s)}"
                                   for s in ("failed", "missing")
                                   if any(x["status"] == s for x in rows)))
            all_rows.extend(rows)
            if on_rows is not None:
                on_rows(rows)
            if hasattr(progress, "step"):
                progress.step()
    return all_rows

