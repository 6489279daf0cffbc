"""`tenantnet bench bulk`: one batch of placements on new networks, tenantnet against the
raw Open vSwitch tools on the same nodes, as deployed (TLS).

On a lab of its own (prefix `tnbb`, tenantnet.bench.labbench: K compute nodes and one
network node), N networks of tenant `bench` with no VM yet. Every VM's device exists
beforehand (tap devices in the nodes' namespaces, the hypervisor's part, off the clock),
for both sides.

  * raw reference (first, so that tenantnet runs on the fuller switches): the same
    bridges, ports, patch ports, `ex-` endpoints and GRE tunnels, for a second tenant
    `raw` with the same VMs on the same nodes, computed by the same pure functions
    (model.desired.node_state, model.flows.node_flows) and made with one `ovs-vsctl`
    transaction per node (it returns once ovs-vswitchd has applied it), then the same
    flows with `ovs-ofctl --bundle add-flows`, one per bridge, side by side; all nodes in
    parallel. Its records are not tenantnet's (`tenantnet-owner=bench-raw`, cookie prefix
    `RAW `) and its bridges have no controller, so the controller leaves them alone. The
    `ex-` addresses and tunnel neighbours (host-side steps tenantnet does on its clock)
    are not part of it.
  * tenantnet: the whole batch sent to the API as one request (POST /v1/vm-batches, at
    most 1000 VMs a request: more go as several requests at once), realised as one group
    (one OVSDB transaction per node, one bundle per bridge); it answers once every VM's
    ports have OpenFlow port numbers and its flows are committed. Per VM, the time from
    the batch's start to the answer of its request: `tenantnet_last_s` (the last) and
    `tenantnet_mean_s` (the same, with one request).
Both sides are checked afterwards: every port has an ofport, every bridge holds its
flows (counted by cookie prefix)."""

import concurrent.futures
import os
import statistics
import time

from tenantnet.bench import labbench
from tenantnet.bench.raw import RAW_COOKIE, RAW_TENANT, RawChange
from tenantnet.controller.wire import MAX_VM_BATCH
from tenantnet.errors import TenantnetError
from tenantnet.model import config as config_mod
from tenantnet.model.desired import node_state
from tenantnet.model.flows import node_flows
from tenantnet.model.flowspec import COOKIE_PREFIX

PREFIX = "tnbb"
BENCH = "bench bulk"
MAX_NETWORKS = 100                 # transport CIDRs: bench 198.19.1-100, raw 198.19.101-200
KEYS = ("tenantnet_last_s", "tenantnet_mean_s", "raw_s", "ratio")


# -- the raw tools' side --------------------------------------------------------------------

def raw_models(config, placements):
    """(before, after): the `raw` tenant's model without and with the VMs *placements*
    [(vm, network index, node)]."""
    before = config_mod.load_file(config)
    after = config_mod.load_file(config)
    for vm, net, node in placements:
        after.add_vm(config_mod.vm_from_spec(after, {
            "name": vm, "network": labbench.network_key(net, RAW_TENANT), "node": node},
            BENCH, "", vm_source="api"))
    return before, after


# -- checks ---------------------------------------------------------------------------------

def verify(bl, model, cookie, what, before=None):
    """Every port of *model* has an ofport on its node; every bridge of *model* holds its
    flows of prefix *cookie* (those *before* has not, when given: the raw side adds its
    flows to the common br-tun). Returns (tenant bridges, ports, flows) counted."""
    bridges, ports, want = [], 0, {}
    for node in bl.node_names():
        ofports = bl.ofports(node)
        state = node_state(model, node)
        for port in state.ports():
            if ofports.get(port, -1) <= 0:
                raise TenantnetError(f"bench bulk: {what}: port {port} on {node} has no "
                                     "OpenFlow port number")
        ports += len(state.ports())
        old = node_flows(before, node) if before is not None else {}
        for bridge, bf in node_flows(model, node).items():
            have = set(old[bridge].flows) if bridge in old else set()
            want[(node, bridge)] = len(set(bf.flows) - have)
    got = bl.flow_counts(sorted(want), cookie)
    wrong = sorted(k for k in want if got.get(k) != want[k])
    if wrong:
        node, bridge = wrong[0]
        raise TenantnetError(f"bench bulk: {what}: {bridge} on {node} holds "
                             f"{got.get(wrong[0])} flows, expected {want[wrong[0]]} "
                             f"({len(wrong)} bridges differ)")
    bridges = [b for b in want if b[1].startswith(("brint", "brtun"))]
    return len(bridges), ports, sum(want.values())


def run(vms=80, networks=8, nodes=5, progress=None, keep_logs=None):
    """(figures, details): KEYS plus the sizes and `tls`; the details for the table."""
    labbench.check_sizes("bulk", vms, networks, nodes)
    if networks > MAX_NETWORKS:
        raise TenantnetError(f"bench bulk: at most {MAX_NETWORKS} networks")
    t_start = time.monotonic()

    def say(msg):
        if progress:
            progress(f"{time.monotonic() - t_start:6.1f} s  {msg}")

    placements = labbench.spread(vms, networks, nodes, prefix="v")
    raw_placements = labbench.spread(vms, networks, nodes, prefix="r")
    with labbench.BenchLab(PREFIX, networks, nodes, progress=say, keep_logs=keep_logs) as bl:
        tls = bl.tls()
        raw_config = labbench.make_config(os.path.join(bl.workdir, "raw.yaml"), networks,
                                          nodes, tenant=RAW_TENANT, segment_base=1000,
                                          transport_base=101)
        raw_before, raw_after = raw_models(raw_config, raw_placements)
        taps = bl.tap_plan(placements)
        for node, names in bl.tap_plan(raw_placements, tenant=RAW_TENANT).items():
            taps[node] += names
        say(f"{sum(len(v) for v in taps.values())} tap devices (both sides)")
        bl.make_taps(taps)
        # the raw bridges get no controller: their flows go in through ovs-ofctl
        raw = [RawChange(raw_before, raw_after, n, bl.ovs(n), bl.workdir, f"raw-{n}", BENCH,
                         timeout=120, controller=False, strict=False)
               for n in bl.node_names()]

        say(f"raw tools: {vms} VMs on {networks} networks, nodes side by side")
        per_node = {}

        def timed(rn):
            t0 = time.perf_counter()
            rn.run()
            per_node[rn.node] = round(time.perf_counter() - t0, 3)
        t0 = time.perf_counter()
        with concurrent.futures.ThreadPoolExecutor(len(raw)) as pool:
            list(pool.map(timed, raw))
        raw_s = time.perf_counter() - t0
        raw_counts = verify(bl, raw_after, RAW_COOKIE, "raw tools", before=raw_before)
        say(f"raw tools: {raw_s:.3f} s")

        time.sleep(2.0)              # let the switches settle (ports, connections)
        say(f"tenantnet: {vms} placements in one batch through the API")
        answers = bl.place(placements, batch=len(placements),
                           requests=-(-len(placements) // MAX_VM_BATCH))
        times = [t for _, t in answers]
        model = bl.lab.topology_from_api()
        tn_counts = verify(bl, model, COOKIE_PREFIX, "tenantnet")
        say(f"tenantnet: last answer after {max(times):.3f} s")
    say("done")
    last = max(times)
    out = {"tenantnet_last_s": round(last, 3),
           "tenantnet_mean_s": round(statistics.mean(times), 3),
           "raw_s": round(raw_s, 3),
           "ratio": round(last / raw_s, 3),
           "vms": vms, "networks": networks, "nodes": nodes, "tls": tls}
    details = {"raw_per_node_s": per_node, "bridges": tn_counts[0], "ports": tn_counts[1],
               "flows": tn_counts[2], "raw_flows": raw_counts[2]}
    if raw_counts[:2] != tn_counts[:2]:
        raise TenantnetError(f"bench bulk: the two sides differ: raw (bridges, ports) "
                             f"{raw_counts[:2]}, tenantnet {tn_counts[:2]}")
    return out, details
