"""Section IV.B: TCP and UDP bandwidth between a network's probe and its VMs (iperf3).

``run_bandwidth(lab, spec, mode)`` takes a lab that is up, in whatever mode the caller set,
places ``spec.bandwidth.vms`` VMs of one network on different compute nodes (round robin
when there are more VMs than compute nodes), waits until each answers its probe, then
measures each VM in turn, for each protocol, in both directions individually:

    probe->vm   iperf3 client in the probe namespace, server in the VM  (paper: controller to VM)
    vm->probe   iperf3 client in the VM, server in the probe            (paper: VM to controller)

The VMs it placed are deleted afterwards, also on errors and Ctrl-C.

Rows (one per measurement; ``BANDWIDTH_COLUMNS`` is the column order of bandwidth.csv):

    mode, vm, node, network, n_vms, protocol ("tcp"/"udp"), direction, repeat,
    duration_s, udp_rate (UDP only), bits_per_second (received), sender_bits_per_second,
    retransmits (TCP), mean_rtt_us (TCP), jitter_ms, packets (datagrams sent),
    lost_packets, lost_percent, out_of_order (UDP), cpu_sender_pct, cpu_receiver_pct,
    mtu, tx_offload, neigh_gc_thresh, tcp_congestion, iperf_version, port

The statistics of these rows are ``analysis.summarise``'s; the defaults of every setting
are ``spec.BANDWIDTH_DEFAULTS``.
"""

import math
import time

from tenantnet.errors import TenantnetError
from tenantnet.experiment import iperf
from tenantnet.experiment.analysis import DIRECTIONS
from tenantnet.experiment.spec import BANDWIDTH_DEFAULTS, PROTOCOLS

BANDWIDTH_COLUMNS = [
    "mode", "vm", "node", "network", "n_vms", "protocol", "direction", "repeat",
    "duration_s", "udp_rate", "bits_per_second", "sender_bits_per_second", "retransmits",
    "mean_rtt_us", "jitter_ms", "packets", "lost_packets", "lost_percent", "out_of_order",
    "cpu_sender_pct", "cpu_receiver_pct", "mtu", "tx_offload", "neigh_gc_thresh",
    "tcp_congestion", "iperf_version", "port",
]


class BandwidthError(TenantnetError):
    """The bandwidth experiment could not be carried out."""


def _say(progress, text):
    if progress:
        progress(text)


def field(obj, name, default=None):
    if obj is None:
        return default
    if isinstance(obj, dict):
        return obj.get(name, default)
    return getattr(obj, name, default)


def settings(spec):
    """spec.bandwidth (a dict or an object with attributes) merged over
    spec.BANDWIDTH_DEFAULTS, checked."""
    bw = field(spec, "bandwidth", None)
    if bw is None and isinstance(spec, dict) and "duration_s" in spec:
        bw = spec                      # a bare bandwidth section
    out = dict(BANDWIDTH_DEFAULTS)
    for key in BANDWIDTH_DEFAULTS:
        value = field(bw, key, None)
        if value is not None:
            out[key] = value
    protos = out["protocols"]
    if isinstance(protos, str):
        protos = [protos]
    protos = [str(p).lower() for p in protos]
    bad = [p for p in protos if p not in PROTOCOLS]
    if bad or not protos:
        raise BandwidthError(f"bandwidth.protocols {out['protocols']!r}: use tcp and/or udp")
    out["protocols"] = protos
    for key in ("duration_s", "vms", "repeats"):
        try:
            # iperf3 -t takes whole seconds: a fractional duration is rounded up
            out[key] = int(math.ceil(float(out[key]))) if key == "duration_s" else int(out[key])
        except (TypeError, ValueError):
            raise BandwidthError(f"bandwidth.{key} {out[key]!r}: expected an integer") from None
        if out[key] < 1:
            raise BandwidthError(f"bandwidth.{key} {out[key]}: must be at least 1")
    out["udp_rate"] = str(out["udp_rate"])
    return out


def _wait_reachable(lab, probe, ip, timeout):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if lab.ping(probe, ip, count=1, wait=1):
            return True
        time.sleep(0.05)
    return False


def measurement_row(mode, rec, *, vm, node, network, n_vms, direction, repeat, duration_s,
                    udp_rate, tuning):
    """One bandwidth.csv row from an iperf record (iperf.run_iperf) and the context."""
    udp = rec["protocol"] == "udp"
    row = {"mode": mode, "vm": vm, "node": node, "network": network, "n_vms": n_vms,
           "protocol": rec["protocol"], "direction": direction, "repeat": repeat,
           "duration_s": duration_s, "udp_rate": udp_rate if udp else None}
    for key in ("bits_per_second", "sender_bits_per_second", "cpu_sender_pct",
                "cpu_receiver_pct", "iperf_version", "port"):
        row[key] = rec.get(key)
    for key in ("retransmits", "mean_rtt_us"):
        row[key] = None if udp else rec.get(key)
    for key in ("jitter_ms", "packets", "lost_packets", "lost_percent", "out_of_order"):
        row[key] = rec.get(key) if udp else None
    row["tcp_congestion"] = rec.get("tcp_congestion") or tuning.get("tcp_congestion")
    row.update(mtu=tuning.get("mtu"), tx_offload=tuning.get("tx_offload"),
               neigh_gc_thresh=tuning.get("neigh_gc_thresh"))
    return {key: row.get(key) for key in BANDWIDTH_COLUMNS}


def run_bandwidth(lab, spec, mode, progress=None):
    """Measure as described in the module docstring; returns the rows."""
    cfg = settings(spec)
    api = lab.api()
    topo = api.topology()
    computes = [n["name"] for n in topo["nodes"] if n["role"] == "compute"]
    if not computes:
        raise BandwidthError("the lab has no compute node to place bandwidth VMs on")
    keys = [n["key"] for n in topo["networks"]]
    network = cfg["network"] or (keys[0] if keys else None)
    if network not in keys:
        raise BandwidthError(f"bandwidth network {network!r} is not in the lab "
                             f"(known: {', '.join(keys) or 'none'})")
    existing = {v["name"] for v in api.list_vms()}
    names = [f"{cfg['vm_prefix']}{i + 1}" for i in range(cfg["vms"])]
    clash = sorted(set(names) & existing)
    if clash:
        raise BandwidthError(f"VM name(s) {', '.join(clash)} already placed: remove them or "
                             "set bandwidth.vm_prefix")
    if cfg["vms"] > len(computes):
        _say(progress, f"bandwidth: {cfg['vms']} VMs on {len(computes)} compute nodes: "
                       "some nodes get more than one")
    placed, rows, finished = [], [], False
    try:
        vms = []
        for i, name in enumerate(names):
            node = computes[i % len(computes)]
            _say(progress, f"bandwidth [{mode}]: placing {name} on {node} ({network})")
            rec = lab.add_vm(name, network, node)
            placed.append(name)
            vms.append((name, node, rec["ip"], rec.get("tuning_applied") or {}))
        net = next(n for n in api.topology()["networks"] if n["key"] == network)
        if not net["probes"]:
            raise BandwidthError(f"network {network} has no probe")
        probe = net["probes"][0]
        # where each end runs: a namespace here, or inside a node VM / host over SSH
        probe_ns = lab.fabric.endpoint_executor(probe["name"])
        for name, node, ip, _ in vms:
            if not _wait_reachable(lab, probe["name"], ip, cfg["reach_timeout_s"]):
                raise BandwidthError(f"{name} ({ip}) did not answer its probe within "
                                     f"{cfg['reach_timeout_s']:.0f}s")
        for name, node, ip, applied in vms:
            vm_ns = lab.fabric.endpoint_executor(name)
            tuning = {"mtu": applied.get("mtu"), "tx_offload": applied.get("tx_offload"),
                      "neigh_gc_thresh": applied.get("neigh_gc_thresh"),
                      "tcp_congestion": iperf.tcp_congestion_control(vm_ns)}
            ends = {"probe": (probe_ns, probe["ip"]), "vm": (vm_ns, ip)}
            for repeat in range(cfg["repeats"]):
                for proto in cfg["protocols"]:
                    for direction in DIRECTIONS:
                        src, dst = direction.split("->")
                        _say(progress, f"bandwidth [{mode}]: {proto} {direction} {name} "
                                       f"({cfg['duration_s']}s)")
                        rec = iperf.run_iperf(ends[dst][0], ends[dst][1], ends[src][0],
                                              ends[src][1], protocol=proto,
                                              duration=cfg["duration_s"],
                                              udp_rate=cfg["udp_rate"], omit=cfg["omit_s"])
                        rows.append(measurement_row(
                            mode, rec, vm=name, node=node, network=network,
                            n_vms=cfg["vms"], direction=direction, repeat=repeat,
                            duration_s=cfg["duration_s"], udp_rate=cfg["udp_rate"],
                            tuning=tuning))
        finished = True
    finally:
        problems = []
        for name in reversed(placed):
            try:
                lab.del_vm(name)
            except Exception as exc:  # noqa: BLE001 -- remove the others too
                problems.append(f"{name}: {exc}")
        if problems:
            msg = "bandwidth: could not remove VM(s): " + "; ".join(problems)
            _say(progress, msg)
            if finished:        # never mask the original error
                raise BandwidthError(msg)
    return rows
