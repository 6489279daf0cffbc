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
"""

import concurrent.futures
import contextlib
import ipaddress
import json
import os
import signal
import subprocess
import sys
import threading
import time

import tenantnet
from tenantnet.model import config as config_mod
from tenantnet.errors import ApiError, TenantnetError

INSTANCE_FIELDS = (
    "mode", "instances", "networks", "repeat", "vm", "index", "node", "network", "mac", "ip",
    "bridges_existed", "network_new_on_node", "prepared", "batch_time", "request_time", "sent_time",
    "ready_time", "configured_time", "reachable_time", "ready_ms", "configured_ms",
    "reachability_ms", "api_total_ms", "api_ovsdb_ms", "api_openflow_ms", "api_retries",
    "status", "error")

PROBER_READY_TIMEOUT = 30.0
MAX_WORKERS = 128


class ExperimentError(TenantnetError):
    """An experiment that could not be carried out."""


class Interrupted(ExperimentError):
    """The run was stopped (Ctrl-C or SIGTERM); the lab was torn down."""


# -- interrupt handling ---------------------------------------------------------------
class InterruptGuard:
    """What Ctrl-C (SIGINT) and SIGTERM do while an experiment runs (runner.run installs it).

    - Outside a shield, the first signal raises KeyboardInterrupt: the run stops and tears
      its lab down.
    - Inside a shield (a teardown) a signal is only noted: the teardown always completes.
      If it was the first one, KeyboardInterrupt is raised when the shield ends, so a
      Ctrl-C during the routine teardown between two sub-experiments is not lost either.
    - Once the interrupt is raised, further signals are noted and ignored until run() ends.

    The teardown itself runs in a child process of its own session (runner.teardown), so
    the terminal's SIGINT, which goes to the whole foreground process group, cannot kill
    a half-done `ip netns del` or `ovs-appctl exit` either. Without an installed guard
    (library use, other threads) a shield falls back to ignoring the signals (SIG_IGN,
    inherited by the children it starts)."""

    SIGNALS = (signal.SIGINT, signal.SIGTERM)

    def __init__(self):
        self.installed = False
        self.count = 0
        self.raised = False
        self.pending = False
        self.depth = 0
        self._old = {}

    def install(self):
        if threading.current_thread() is not threading.main_thread() or self.installed:
            return self
        self.count, self.raised, self.pending, self.depth = 0, False, False, 0
        for s in self.SIGNALS:
            self._old[s] = signal.signal(s, self._handle)
        self.installed = True
        return self

    def uninstall(self):
        if not self.installed:
            return
        for s, h in self._old.items():
            signal.signal(s, h if h is not None else signal.SIG_DFL)
        self._old.clear()
        self.installed = False

    def _handle(self, signum, frame):
        self.count += 1
        if self.depth or self.raised:
            if not self.raised:
                self.pending = True
            print("tenantnet: tearing the lab down, please wait", file=sys.stderr, flush=True)
            return
        self.raised = True
        raise KeyboardInterrupt

    @contextlib.contextmanager
    def shield(self):
        if threading.current_thread() is not threading.main_thread():
            yield
            return
        if not self.installed:
            old = {s: signal.signal(s, signal.SIG_IGN) for s in self.SIGNALS}
            try:
                yield
            finally:
                for s, h in old.items():
                    signal.signal(s, h if h is not None else signal.SIG_DFL)
            return
        self.depth += 1
        try:
            yield
        finally:
            self.depth -= 1
            if not self.depth and self.pending and not self.raised:
                self.pending = False
                self.raised = True
                raise KeyboardInterrupt


GUARD = InterruptGuard()
shield_interrupts = GUARD.shield


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


# -- probers --------------------------------------------------------------------------
def package_env():
    """Environment for `python -m tenantnet...` children: this tenantnet on sys.path."""
    root = os.path.dirname(os.path.dirname(os.path.abspath(tenantnet.__file__)))
    env = dict(os.environ)
    env["PYTHONPATH"] = root + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    return env


class ProberProcess:
    """One prober in one probe endpoint, driven over stdin (arm/drop/deadline/stop).

    Started through the fabric's endpoint executor when it has one (the endpoint may live
    on another host), else with `ip netns exec` here; in a session of its own either way,
    so that a terminal Ctrl-C is the runner's to handle, not the prober's."""

    def __init__(self, fabric, endpoint, iface, src_ip, src_mac, targets, interval_ms,
                 timeout_s):
        self.netns = fabric.endpoint_netns(endpoint)
        self.targets = dict(targets)                   # ip -> mac
        self.replies = {}                              # ip -> time, as they come in
        self.result = None
        self.error = None
        self._lock = threading.Lock()
        python = sys.executable
        if hasattr(fabric, "endpoint_python"):
            python = fabric.endpoint_python(endpoint)
        args = ["-m", "tenantnet.experiment.prober", "--iface", iface, "--src-ip", src_ip,
                "--src-mac", src_mac, "--interval-ms", str(interval_ms),
                "--timeout", str(timeout_s), "--stdin", "--live"]
        for ip, mac in self.targets.items():
            args += ["--target", f"{ip}={mac}"]
        kwargs = dict(stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                      text=True, bufsize=1, start_new_session=True)
        if python == sys.executable:                   # this host: this tenantnet
            kwargs["env"] = package_env()
        if hasattr(fabric, "endpoint_executor"):
            self.proc = fabric.endpoint_executor(endpoint).popen([python] + args, **kwargs)
        else:
            self.proc = subprocess.Popen(["ip", "netns", "exec", self.netns, python] + args,
                                         **kwargs)
        self._stderr = []
        self._ready = threading.Event()
        self._reader = threading.Thread(target=self._read, daemon=True,
                                        name=f"prober-{self.netns}")
        self._reader.start()
        self._err_reader = threading.Thread(target=self._read_err, daemon=True)
        self._err_reader.start()

    def _read(self):
        for line in self.proc.stdout:
            line = line.strip()
            if line == "ready":
                self._ready.set()
            elif line.startswith("reply "):
                parts = line.split()
                if len(parts) == 3:
                    with self._lock:
                        self.replies.setdefault(parts[1], float(parts[2]))
            elif line.startswith("{"):
                try:
                    self.result = json.loads(line)
                except ValueError:
                    self.error = f"unreadable prober output: {line[:200]}"
        self._ready.set()

    def _read_err(self):
        for line in self.proc.stderr:
            self._stderr.append(line.rstrip())

    def wait_ready(self, timeout=PROBER_READY_TIMEOUT):
        if not self._ready.wait(timeout) or self.proc.poll() is not None:
            self.kill()
            raise ExperimentError(f"the prober in {self.netns} did not start: "
                                  + (" ".join(self._stderr[-3:]) or "no output"))

    def send(self, line):
        with self._lock:
            if self.proc.poll() is not None:
                return
            try:
                self.proc.stdin.write(line + "\n")
                self.proc.stdin.flush()
            except (BrokenPipeError, ValueError, OSError):
                pass

    def arm(self, ip):
        self.send(f"arm {ip}")

    def drop(self, ip):
        self.send(f"drop {ip}")

    def set_deadline(self, epoch):
        self.send(f"deadline {epoch:.6f}")

    def answered(self):
        with self._lock:
            return len(self.replies)

    def finish(self, timeout):
        """Wait for the prober's end (it stops by itself); return {ip: time or None}."""
        try:
            self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.send("stop")
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.kill()
        self._reader.join(timeout=5)
        self._err_reader.join(timeout=1)
        if self.result is None:
            # No final line (killed): what was reported live is still true.
            with self._lock:
                return {ip: self.replies.get(ip) for ip in self.targets}
        return {ip: self.result.get(ip) for ip in self.targets}

    def kill(self):
        if self.proc.poll() is None:
            try:
                self.proc.kill()
            except ProcessLookupError:
                pass
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                pass
        for stream in (self.proc.stdin,):
            try:
                stream.close()
            except (OSError, ValueError, BrokenPipeError):
                pass


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

