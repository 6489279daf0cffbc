"""The labs an experiment runs on (runner.run builds them through a LabFactory).

Emulated nodes (namespaces on this host): every sub-experiment, and each mode's bandwidth
part, gets a lab of its own, built for it and torn down after it, as the paper did.

Node VMs (``lab: {nodes: vm}``): booting and provisioning the node VMs takes minutes under
TCG, so the whole run shares **one** lab (``SharedLab``). It is built on first use, with
the largest network count of the grid. After every use it is reset to the state it had
when it came up, and that is checked before the next use:

- every VM is deleted through the controller's API, then every endpoint (VMs, probes)
  left in the lab (failed placements included): in DNB the tenant bridges, patch ports,
  ``ex-`` endpoints and tunnels go with the last VM of a network on a node, as they do
  in operation;
- the node VMs' neighbour entries on the transport networks are flushed, so the first
  packets of the next batch resolve their tunnel peers as in a fresh lab;
- ``lab_state()`` of every node (bridges, ports, flows without cookies or counters, the
  namespaces) must again equal the reference taken when the lab (or the mode) came up,
  within ``RESET_TIMEOUT``. If it does not, or anything fails, the lab is torn down and the
  next use builds a fresh one: reuse never changes what is measured.

A sub-experiment with fewer networks than the lab has uses the first ones: a network with
no VM has no bridge, port, tunnel or flow anywhere (DNB), and no flow on the common bridges
(CNB), so the others are invisible to it. Modes switch on the same node VMs: once the lab
is reset, the controller is restarted on the other mode's lab config
(Lab.restart_controller) and a new reference state is taken; DNB and CNB run side by side
on the same nodes in operation too. The reference states are kept in the results
directory (``labs/<mode>-state.txt``).
"""

import concurrent.futures
import contextlib
import difflib
import ipaddress
import os
import signal
import subprocess
import sys
import threading
import time

from tenantnet.errors import LabError, TenantnetError
from tenantnet.experiment import DEFAULT_PREFIX
from tenantnet.experiment.interrupts import GUARD, ExperimentError
from tenantnet.experiment.proberproc import package_env

RESET_TIMEOUT = 30.0
SETTLE_TIMEOUT = 30.0

# What a node looks like, for the reset check: its bridges, their ports and flows (no
# cookies or counters), and its network namespaces (the lab's endpoints live there).
_STATE_SCRIPT = r"""
for b in $(ovs-vsctl --timeout=30 list-br | sort); do
  echo "bridge $b"
  ovs-vsctl --timeout=30 list-ports "$b" | sort | sed 's/^/  port /'
  ovs-ofctl -O OpenFlow13 dump-flows --no-stats "$b" 2>&1 | grep -v 'OFPST_FLOW\|reply (' |
    sed -e 's/cookie=[^,]*, *//' -e 's/^ *//' | sort | sed 's/^/  flow /'
done
for n in $(ip netns list | cut -d' ' -f1 | sort); do echo "netns $n"; done
"""


def on_every_node(lab, script, what, nodes=None):
    """{node: stdout} of `sh -c SCRIPT` run on every node of *lab* side by side."""
    fabric = lab.fabric
    nodes = sorted(nodes or fabric.node_names())

    def one(node):
        proc = fabric.node_exec(node, ["sh", "-c", script], timeout=120)
        if proc.returncode != 0:
            raise LabError(f"node {node}: cannot {what}: "
                           f"{(proc.stderr or proc.stdout).strip()[:200]}")
        return proc.stdout
    with concurrent.futures.ThreadPoolExecutor(max_workers=max(1, len(nodes))) as pool:
        return dict(zip(nodes, pool.map(one, nodes)))


def lab_state(lab, nodes=None):
    """{node: text} describing each node VM's (or node's) bridges, ports, flows and
    namespaces, for comparing a reset lab with its fresh self."""
    return on_every_node(lab, _STATE_SCRIPT, "read its state", nodes)


def state_text(state):
    return "".join(f"== {node}\n{text}" for node, text in sorted(state.items()))


def state_diff(ref, now, limit=4):
    """A short description of how *now* differs from *ref* ('' when equal)."""
    parts = []
    for node in sorted(set(ref) | set(now)):
        a, b = (ref.get(node) or "").splitlines(), (now.get(node) or "").splitlines()
        if a == b:
            continue
        lines = [ln for ln in difflib.unified_diff(a, b, lineterm="", n=0)
                 if ln[:1] in "+-" and not ln.startswith(("+++", "---"))]
        more = f" (+{len(lines) - limit} more)" if len(lines) > limit else ""
        parts.append(f"{node}: " + "; ".join(x.strip() for x in lines[:limit]) + more)
    return " | ".join(parts)


def settled_state(lab, timeout=SETTLE_TIMEOUT):
    """lab_state() once two readings a second apart agree (the controller may still be
    programming a node right after it answered its API)."""
    deadline = time.time() + timeout
    last = lab_state(lab)
    while True:
        time.sleep(1.0)
        now = lab_state(lab)
        if now == last or time.time() > deadline:
            return now
        last = now


def transport_prefixes(topo):
    """The transport CIDRs of *topo*: the lab's and every network's own."""
    nets = [topo.lab.transport_cidr] + [n.transport_cidr for n in topo.networks().values()
                                        if getattr(n, "transport_cidr", None)]
    return sorted({str(ipaddress.ip_network(c, strict=False)) for c in nets})


def reset_lab(lab, reference, timeout=RESET_TIMEOUT):
    """Back to the state *reference* (lab_state of the fresh lab): VMs deleted through the
    API, every endpoint removed, transport neighbours flushed. LabError when the lab does
    not come back to it within *timeout*."""
    names = [vm["name"] for vm in lab.api().list_vms()]
    if names:        # all at once, as a batch of placements arrives: realised together
        with concurrent.futures.ThreadPoolExecutor(max_workers=len(names)) as pool:
            list(pool.map(lambda name: lab.api().del_vm(name), names))
    fabric = lab.fabric
    for name in fabric.endpoint_names():      # VMs, probes, failed placements' namespaces
        fabric.remove_endpoint(name)
    flush = "; ".join(f"ip neigh flush to {p}" for p in transport_prefixes(lab.topology()))
    on_every_node(lab, flush + "; true", "flush its transport neighbours")
    deadline = time.time() + timeout
    while True:
        now = lab_state(lab)
        if now == reference:
            return
        if time.time() > deadline:
            raise LabError(f"lab {lab.prefix!r} did not come back to its fresh state within "
                           f"{timeout:.0f}s: {state_diff(reference, now)}")
        time.sleep(1.0)


class LabFactory:
    """``factory(networks=K, label=...)``: a context manager giving a Lab that is up with
    the spec's nodes, K networks (t1/net1 .. tK/netK) in this factory's mode and no VM,
    and torn down (or, with a *shared* lab, reset) when the block ends, however it ends.
    Passed to reachability.run_reachability and bandwidth.run_bandwidth as *lab_factory*.
    Attributes: spec, mode, prefix, shared."""

    def __init__(self, spec, mode, prefix=DEFAULT_PREFIX, state_dir=None, config_dir=".",
                 reporter=None, on_vm_accel=None, shared=None):
        self.spec, self.mode, self.prefix = spec, mode, prefix
        self.state_dir = state_dir
        self.on_vm_accel = on_vm_accel      # callable(accel) once node VMs are up
        self.config_dir = config_dir
        self.reporter = reporter
        self.shared = shared                # a SharedLab: one lab for the whole run

    def config_path(self, networks):
        return os.path.join(self.config_dir, f"{self.mode}-k{networks}.yaml")

    def _say(self, text):
        if self.reporter is not None:
            self.reporter.log(text)

    @contextlib.contextmanager
    def __call__(self, networks=1, label=None):
        if self.shared is not None:
            lab = self.shared.acquire(self, networks, label)
            ok = False
            try:
                yield lab
                ok = True
            finally:
                self.shared.release(ok, label)
            return
        from tenantnet.lab.lab import Lab
        path = self.spec.write_lab_config(self.config_path(networks), self.mode, networks)
        lab = Lab(prefix=self.prefix, state_dir=self.state_dir)
        refuse_busy(lab)
        try:
            t0 = time.perf_counter()
            lab.up(path, timeout=self.spec.lab.up_timeout_s)
            self._vm_accel(lab)
            self._say(f"{label or 'lab'}: up in {time.perf_counter() - t0:.1f}s "
                      f"({self.mode}, {networks} network(s), "
                      f"{self.spec.lab.compute_nodes} compute node(s))")
            yield lab
        finally:
            teardown(lab)

    def _vm_accel(self, lab):
        if self.spec.lab.nodes == "vm" and self.on_vm_accel is not None:
            accel = {n.get("accel") for n in lab.status()["nodes"].values()}
            self.on_vm_accel(", ".join(sorted(a for a in accel if a)) or None)


def refuse_busy(lab):
    if lab.is_up() or not lab.fabric.is_empty():
        raise ExperimentError(
            f"a lab with prefix {lab.prefix!r} is already up ({lab.fabric.state_dir}); "
            f"tear it down with `tenantnet lab down --prefix {lab.prefix}` or run the "
            "experiment with another --prefix")


class SharedLab:
    """One lab for a whole run (see the module docstring). ``acquire(factory, networks,
    label)`` gives it, up in the factory's mode with no VM; ``release(ok, label)`` resets it
    (ok) or tears it down (an error or Ctrl-C in the block); ``close()`` tears it down.
    ``events`` lists what happened (for meta.json): builds, mode switches, resets, their
    seconds, and why a lab was rebuilt."""

    def __init__(self, spec, networks, state_dir_for_results=None):
        self.spec = spec
        self.networks = int(networks)
        self.results_labs = state_dir_for_results   # where labs/<mode>-state.txt go
        self.lab = None
        self.mode = None
        self.reference = None
        self.events = []
        self.builds = 0
        self.factory = None

    def _event(self, factory, kind, t0, **extra):
        ev = {"event": kind, "mode": factory.mode,
              "seconds": round(time.perf_counter() - t0, 1), **extra}
        self.events.append(ev)
        return ev

    def _keep_reference(self, mode):
        if self.results_labs:
            os.makedirs(self.results_labs, exist_ok=True)
            with open(os.path.join(self.results_labs, f"{mode}-state.txt"), "w") as fh:
                fh.write(state_text(self.reference))

    def acquire(self, factory, networks, label=None):
        from tenantnet.lab.lab import Lab
        if networks > self.networks:
            raise ExperimentError(f"the shared lab has {self.networks} network(s); "
                                  f"{label or 'a part'} asks for {networks}")
        path = factory.spec.write_lab_config(factory.config_path(self.networks),
                                             factory.mode, self.networks)
        what = label or "lab"
        self.factory = factory
        try:
            if self.lab is None:
                lab = Lab(prefix=factory.prefix, state_dir=factory.state_dir)
                refuse_busy(lab)
                self.lab, self.mode = lab, None
                t0 = time.perf_counter()
                lab.up(path, timeout=self.spec.lab.up_timeout_s)
                factory._vm_accel(lab)
                self.mode = factory.mode
                self.reference = settled_state(lab)
                self._keep_reference(factory.mode)
                self.builds += 1
                ev = self._event(factory, "built", t0, networks=self.networks)
                factory._say(f"{what}: lab up in {ev['seconds']:.1f}s ({factory.mode}, "
                             f"{self.networks} network(s), {self.spec.lab.compute_nodes} "
                             "compute node VM(s)); it is reused for the rest of the run")
            elif self.mode != factory.mode:
                t0 = time.perf_counter()
                old = self.mode
                self.mode = None
                self.lab.restart_controller(path, timeout=self.spec.lab.up_timeout_s)
                self.mode = factory.mode
                self.reference = settled_state(self.lab)
                self._keep_reference(factory.mode)
                ev = self._event(factory, "mode switched", t0, previous=old)
                factory._say(f"{what}: same node VMs, controller restarted in "
                             f"{factory.mode} mode in {ev['seconds']:.1f}s")
            else:
                factory._say(f"{what}: reusing the lab ({factory.mode}, reset and checked)")
        except BaseException:
            self.close()
            raise
        return self.lab

    def release(self, ok, label=None):
        if self.lab is None:
            return
        if not ok:
            self.close()
            return
        t0 = time.perf_counter()
        try:
            with GUARD.shield():
                reset_lab(self.lab, self.reference)
        except TenantnetError as exc:
            self.events.append({"event": "torn down after a failed reset", "mode": self.mode,
                                "after": label, "why": str(exc)})
            if self.factory is not None:
                self.factory._say(f"{label or 'lab'}: the lab could not be reset ({exc}); "
                                  "the next part builds a fresh one")
            self.close()
            return
        self.events.append({"event": "reset", "mode": self.mode, "after": label,
                            "seconds": round(time.perf_counter() - t0, 1)})

    def close(self):
        lab, self.lab, self.mode, self.reference = self.lab, None, None, None
        if lab is not None:
            t0 = time.perf_counter()
            teardown(lab)
            self.events.append({"event": "torn down",
                                "seconds": round(time.perf_counter() - t0, 1)})


_TEARDOWN = """
import sys
from tenantnet.errors import TenantnetError
from tenantnet.lab.lab import Lab
try:
    Lab(sys.argv[1], sys.argv[2] or None).down()
except TenantnetError as exc:
    print(exc, file=sys.stderr)
    sys.exit(1)
"""


def teardown(lab):
    """Lab.down() in a child process of its own session (immune to the terminal's Ctrl-C),
    under GUARD.shield(); a second attempt when the first was incomplete."""
    with GUARD.shield():
        error = None
        for _ in range(2):
            try:
                proc = subprocess.run([sys.executable, "-c", _TEARDOWN, lab.prefix,
                                       lab.state_dir or ""], env=package_env(),
                                      start_new_session=True, capture_output=True, text=True,
                                      timeout=600)
            except (OSError, subprocess.SubprocessError) as exc:
                error = f"cannot run the teardown process ({exc})"
                try:                       # in this process then, signals ignored
                    with shield_ignoring():
                        lab.down()
                    return
                except LabError as exc2:
                    error = str(exc2)
                    continue
            if proc.returncode == 0:
                return
            error = (proc.stderr or proc.stdout or "").strip().splitlines()[-1:] or ["?"]
            error = error[0]
            time.sleep(0.5)
        raise LabError(f"lab {lab.prefix!r} could not be torn down: {error}; "
                       f"try `tenantnet lab down --prefix {lab.prefix}`")


@contextlib.contextmanager
def shield_ignoring():
    old = {}
    if threading.current_thread() is threading.main_thread():
        old = {s: signal.signal(s, signal.SIG_IGN) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for s, h in old.items():
            signal.signal(s, h if h is not None else signal.SIG_DFL)


