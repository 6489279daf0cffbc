"""A lab for the benches that need whole nodes (`bench resync`, `bench bulk`): the
one-machine lab (tenantnet.lab.lab.Lab) under a prefix of the bench's own, built from a
generated config, run as deployed (TLS: OVSDB on pssl:, OpenFlow over TLS, HTTPS API,
the lab's own PKI), and removed again by `Lab.down` whatever happens.

    nodes       compute1..computeK plus net1 (the network node, which holds the probes)
    networks    tenant `bench`, n0..n(N-1), DNB, no VM in the config
    VMs         placed through the controller's API (source `api`, so a restarted
                controller relearns them from the nodes), spread by `spread`, in batches
                (POST /v1/vm-batches, `BenchLab.place`)

VM and probe ports are plain tap devices made in the node's namespace beforehand (the
hypervisor's part, off the clock), with no namespace behind them; they go with the node's
namespace at `lab down`. Endpoints that must carry traffic are the lab's own (namespaces
on veths, tenantnet.lab.endpoints)."""

import concurrent.futures
import os
import re
import shutil
import subprocess
import time

import yaml

from tenantnet.controller.wire import MAX_VM_BATCH
from tenantnet.errors import ApiError, LabError, TenantnetError
from tenantnet.lab.lab import Lab
from tenantnet.model import naming
from tenantnet.model.topology import probe_name

TENANT = "bench"
NETWORK_NODE = "net1"
MAX_NETWORKS = 200                 # transport CIDRs 198.19.1.0/24 ... 198.19.200.0/24
MAX_PER_NETWORK = 250              # VMs (and probe) in one /24
BUILD_BATCH = 50                   # VMs per API request in BenchLab.place (a build)


def network_key(i, tenant=TENANT):
    return naming.network_key(tenant, f"n{i}")


def compute_nodes(k):
    return [f"compute{i + 1}" for i in range(k)]


def spread(vms, networks, nodes, prefix="v"):
    """[(vm name, network index, node name)]: VM i on network i mod N, and on compute node
    (i + i div N) mod K, so every network reaches every node once it has K VMs, whatever
    N and K (the plain i mod K would put a network on one node when K divides N)."""
    names = compute_nodes(nodes)
    return [(f"{prefix}{i}", i % networks, names[(i + i // networks) % nodes])
            for i in range(vms)]


def check_sizes(what, vms, networks, nodes):
    if vms < 1 or networks < 1 or nodes < 1:
        raise TenantnetError(f"bench {what}: --vms, --networks and --nodes must be at least 1")
    if networks > MAX_NETWORKS:
        raise TenantnetError(f"bench {what}: at most {MAX_NETWORKS} networks")
    if -(-vms // networks) > MAX_PER_NETWORK:
        raise TenantnetError(f"bench {what}: at most {MAX_PER_NETWORK} VMs per network")
    if nodes > 40:
        raise TenantnetError(f"bench {what}: at most 40 compute nodes")


def make_config(path, networks, nodes, tenant=TENANT, segment_base=100, transport_base=1):
    """Write the lab config: *nodes* compute nodes, one network node, *networks* networks
    of *tenant* (segmentation ids from *segment_base*, transport CIDRs 198.19.B.0/24 from
    B = *transport_base*), TLS (no `security:` key: the default)."""
    cfg = {
        "mode": "dnb",
        "nodes": [{"name": n, "role": "compute", "management_ip": f"198.18.0.{11 + i}",
                   "transport_ip": f"198.19.0.{11 + i}"}
                  for i, n in enumerate(compute_nodes(nodes))]
                 + [{"name": NETWORK_NODE, "role": "network", "management_ip": "198.18.0.2",
                     "transport_ip": "198.19.0.2"}],
        "tenants": [{"name": tenant, "networks": [
            {"name": f"n{i}", "segmentation_id": segment_base + i,
             "cidr": f"10.{i // 256}.{i % 256}.0/24",
             "transport_cidr": f"198.19.{transport_base + i}.0/24"}
            for i in range(networks)]}],
    }
    with open(path, "w") as fh:
        yaml.safe_dump(cfg, fh, sort_keys=False)
    return path


def refuse_lab(lab, what="bench"):
    """TenantnetError when a lab with *lab*'s prefix exists (another bench's, or one left
    by a crash): a bench builds only under a prefix nobody uses."""
    if lab.is_up() or not lab.fabric.is_empty():
        raise TenantnetError(f"{what}: a lab with prefix {lab.prefix!r} exists (another "
                             f"bench, or one that crashed); `tenantnet lab down --prefix "
                             f"{lab.prefix}` removes it")


def remove_lab(lab, say, problems):
    """lab.down(); a failure is added to *problems*, with the command that finishes it."""
    say(f"removing lab {lab.prefix}")
    try:
        lab.down()
    except (TenantnetError, OSError) as exc:
        problems.append(f"lab {lab.prefix}: {exc} (run `tenantnet lab down "
                        f"--prefix {lab.prefix}`)")


class BenchBuild:
    """What a bench builds, as a context manager: `with X(...) as x:` runs check() (refuse
    leftovers; builds nothing), then build(); a failed build and the exit run down(), which
    returns its problems. After a clean run an incomplete cleanup is an error; after an
    error or Ctrl-C the error goes on. *what* names the bench in messages."""
    what = "bench"

    def check(self):
        """Refuse to start (TenantnetError) when leftovers are in the way."""

    def build(self):
        raise NotImplementedError

    def down(self):
        """Remove everything built (safe to repeat); returns a list of problems."""
        raise NotImplementedError

    def __enter__(self):
        self.check()
        try:
            self.build()
        except BaseException:
            self.down()
            raise
        return self

    def __exit__(self, *exc):
        problems = self.down()
        if problems and exc[0] is None:
            raise TenantnetError(f"{self.what}: cleanup incomplete: " + "; ".join(problems))
        return False


class BenchLab(BenchBuild):
    """The bench's lab: `with BenchLab("tnbr", networks, nodes) as bl:` builds it, and the
    exit removes it (also after an error or Ctrl-C; SIGTERM is turned into Ctrl-C by the
    CLI)."""

    def __init__(self, prefix, networks, nodes, progress=None, keep_logs=None):
        self.prefix = prefix
        self.networks, self.nodes = networks, nodes
        self.say = progress or (lambda _msg: None)
        self.lab = Lab(prefix=prefix)
        self.workdir = os.path.join("/tmp", f"{prefix}-bench-{os.getpid()}")
        self.config = os.path.join(self.workdir, "config.yaml")
        self.built = False
        self.keep_logs = keep_logs

    # -- up and down ---------------------------------------------------------------------
    def check(self):
        refuse_lab(self.lab)

    def build(self):
        os.makedirs(self.workdir, exist_ok=True)
        make_config(self.config, self.networks, self.nodes)
        self.built = True
        self.lab.up(self.config, timeout=120, progress=self.say)

    def down(self):
        """Remove the lab (everything its books record) and the work directory."""
        problems = []
        if self.built and self.keep_logs:
            self.copy_logs(self.keep_logs)
        if self.built:
            remove_lab(self.lab, self.say, problems)
            self.built = False
        shutil.rmtree(self.workdir, ignore_errors=True)
        return problems

    def copy_logs(self, dest):
        """The controller's log and every node's OVS logs, copied into *dest*."""
        os.makedirs(dest, exist_ok=True)
        state = self.fabric.state_dir
        pairs = [(os.path.join(state, "controller.log"), "controller.log")]
        for node in self.node_names():
            for daemon in ("ovs-vswitchd", "ovsdb-server"):
                pairs.append((os.path.join(state, "nodes", node, "log", f"{daemon}.log"),
                              f"{node}-{daemon}.log"))
        for src, name in pairs:
            try:
                shutil.copy(src, os.path.join(dest, name))
            except OSError:
                pass

    # -- what it is --------------------------------------------------------------------------
    @property
    def fabric(self):
        return self.lab.fabric

    def node_names(self):
        return compute_nodes(self.nodes) + [NETWORK_NODE]

    def tls(self):
        return self.lab.topology().controller.tls

    def ovs(self, node):
        """The OvsInstance of emulated node *node* (vsctl, ofctl, env, rundir, logdir)."""
        return self.fabric.ovs(node)

    def api(self, timeout=300):
        return self.lab.api(timeout=timeout)

    # -- the hypervisor's part ----------------------------------------------------------------
    def make_taps(self, by_node):
        """Tap devices {node: [port names]} in the nodes' namespaces, one `ip -batch` per
        node, nodes side by side."""
        def one(node):
            names = by_node[node]
            if not names:
                return
            batch = "".join(f"tuntap add dev {n} mode tap\n" for n in names)
            proc = subprocess.run(["ip", "-n", self.fabric.node_netns(node), "-batch", "-"],
                                  input=batch, capture_output=True, text=True)
            if proc.returncode != 0:
                raise LabError(f"bench: tap devices on {node}: {proc.stderr.strip()}")
        with concurrent.futures.ThreadPoolExecutor(8) as pool:
            list(pool.map(one, sorted(by_node)))

    def tap_plan(self, placements, tenant=TENANT, skip=()):
        """{node: [port names]} for *placements* [(vm, network index, node)] and the
        probes of their networks on the network node; names in *skip* are left out (the
        lab's own endpoints)."""
        out = {n: [] for n in self.node_names()}
        for vm, _, node in placements:
            if vm not in skip:
                out[node].append(naming.vm_port_name(vm))
        for net in sorted({i for _, i, _ in placements}):
            key = network_key(net, tenant)
            if probe_name(key, NETWORK_NODE) not in skip:
                out[NETWORK_NODE].append(naming.probe_port_name(key))
        return out

    def place(self, placements, retries=0, batch=BUILD_BATCH, requests=2):
        """Place [(vm, network index, node)] through the API, *batch* VMs per request
        (POST /v1/vm-batches: one request is realised as one group, all or none; at most
        wire.MAX_VM_BATCH), *requests* requests at once (requests that arrive while others
        are realised are realised with them, as one group). Returns [(vm, seconds from the start to the answer
        of its request)] in the order given, and raises on the first failure; a request
        the controller failed (5xx: nothing of it stays) is sent again up to *retries*
        times, each of its VMs counted in self.retried."""
        start = time.perf_counter()
        self.retried = []
        batch = max(1, min(batch, MAX_VM_BATCH))
        chunks = [placements[i:i + batch] for i in range(0, len(placements), batch)]

        def one(chunk):
            specs = [{"name": vm, "network": network_key(net), "node": node}
                     for vm, net, node in chunk]
            for attempt in range(retries + 1):
                try:
                    if len(specs) == 1:
                        self.api().add_vm(**specs[0])
                    else:
                        self.api().add_vms(specs)
                    break
                except ApiError as exc:
                    if attempt == retries or not 500 <= getattr(exc, "status", 0) < 600:
                        raise
                    self.retried += [f"{vm}: {exc}" for vm, _, _ in chunk]
                    time.sleep(0.5)
            t = time.perf_counter() - start
            return [(vm, t) for vm, _, _ in chunk]
        pool = concurrent.futures.ThreadPoolExecutor(max(1, min(requests, len(chunks))))
        try:
            out = [a for answers in pool.map(one, chunks) for a in answers]
        except BaseException:
            # the first failure or Ctrl-C: the requests not yet sent are not sent (those
            # under way end with their requests)
            pool.shutdown(wait=True, cancel_futures=True)
            raise
        pool.shutdown()
        return out

    # -- the lab's own endpoints: a VM and a probe that carry traffic -------------------------
    def real_pair(self, vm, net, node):
        """Make VM *vm* (before it is placed) and the probe of its network as the lab's
        endpoints (namespaces). Returns their names."""
        key = network_key(net)
        probe = probe_name(key, NETWORK_NODE)
        self.fabric.add_endpoint(vm, node, naming.vm_port_name(vm), kind="vm")
        self.fabric.add_endpoint(probe, NETWORK_NODE, naming.probe_port_name(key), "probe")
        return vm, probe

    def configure_pair(self, vm, probe, net, timeout=30.0):
        """Once placed: the addresses the controller gave them, then a ping until the VM
        answers the probe. Returns the VM's IP."""
        topo = self.api().topology(typed=True)
        network = topo.network(network_key(net))
        mtu = self.lab.topology().tuning.vm_mtu
        prefixlen = network.cidr.split("/")[1]
        found = {v.name: v for v in topo.vms}
        found.update({p.name: p for p in network.probes})
        for name in (vm, probe):
            rec = found[name]
            self.fabric.configure_endpoint(name, rec.mac, f"{rec.ip}/{prefixlen}", mtu=mtu)
        ip = found[vm].ip
        deadline = time.time() + timeout
        while time.time() < deadline:
            if self.lab.ping(probe, ip, wait=0.3):
                return ip
            time.sleep(0.05)
        raise TenantnetError(f"bench: VM {vm} ({ip}) does not answer its probe within "
                             f"{timeout:.0f} s; see {self.lab.controller_log()}")

    # -- the controller's own view --------------------------------------------------------------
    def health(self):
        return self.api(timeout=10).health()

    def all_up(self, health):
        states = health.get("node_states") or []
        return (health.get("status") == "ok" and len(states) == len(self.node_names())
                and all(s.get("state") == "up" for s in states))

    def metrics(self):
        """{sample name: summed value} of GET /metrics (labels summed away)."""
        out = {}
        for line in self.api(timeout=30).metrics().splitlines():
            if not line or line.startswith("#"):
                continue
            name, _, value = line.rpartition(" ")
            name = name.split("{", 1)[0]
            try:
                out[name] = out.get(name, 0.0) + float(value)
            except ValueError:
                continue
        return out

    # -- what the switches hold ------------------------------------------------------------------
    def ofports(self, node):
        """{interface name: ofport (-1: none)} of every interface on *node*."""
        ovs = self.ovs(node)
        proc = subprocess.run(["ovs-vsctl", f"--db={ovs.unix_remote}", "--format=csv",
                               "--no-headings", "--data=bare", "--columns=name,ofport",
                               "list", "interface"], env=ovs.env, capture_output=True,
                              text=True)
        if proc.returncode != 0:
            raise TenantnetError(f"bench: ovs-vsctl list interface on {node}: "
                                 f"{proc.stderr.strip()}")
        rows = (line.split(",") for line in proc.stdout.splitlines() if line.strip())
        return {r[0].strip('"'): int(r[1]) if r[1].lstrip("-").isdigit() else -1
                for r in rows}

    def flow_counts(self, bridges, cookie_prefix):
        """{(node, bridge): flows whose cookie has *cookie_prefix* in its high 32 bits} for
        *bridges* [(node, bridge)], asked with `ovs-ofctl dump-aggregate`, side by side."""
        match = f"cookie=0x{cookie_prefix << 32:x}/0xffffffff00000000"
        ovs = {n: self.ovs(n) for n in self.node_names()}

        def one(nb):
            node, bridge = nb
            proc = subprocess.run(["ovs-ofctl", "-O", "OpenFlow13", "dump-aggregate", bridge,
                                   match], env=ovs[node].env, capture_output=True, text=True,
                                  timeout=120)
            m = re.search(r"flow_count=(\d+)", proc.stdout)
            if proc.returncode != 0 or not m:
                raise TenantnetError(f"bench: ovs-ofctl dump-aggregate {bridge} on {node}: "
                                     f"{proc.stderr.strip() or proc.stdout.strip()}")
            return nb, int(m.group(1))
        with concurrent.futures.ThreadPoolExecutor(8) as pool:
            return dict(pool.map(one, bridges))
