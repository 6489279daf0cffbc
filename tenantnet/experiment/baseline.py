"""The machine's own ceilings, measured in the same run as the lab: iperf3 over

- ``veth``: one plain veth pair between namespaces ``<prefix>-veth-a`` and
  ``<prefix>-veth-b``;
- ``ovs-flat``: one flat Open vSwitch bridge (userspace datapath, a single NORMAL flow) in
  namespace ``<prefix>-ovs``, run by its own OvsInstance (own ovsdb-server and
  ovs-vswitchd), with endpoint namespaces ``<prefix>-ovs-a`` and ``<prefix>-ovs-b``
  attached by veth pairs.

Endpoint interfaces get the same MTU and TX checksum offload setting as the lab's VMs, so
every lab figure can be read as a ratio to these. Side "a" plays the probe and side "b" the
VM: rows use the lab's direction names ("probe->vm" = a to b) and the row schema of
bandwidth.BANDWIDTH_COLUMNS, with mode "veth" or "ovs-flat".

Everything is created under names derived from *prefix* and removed again in a finally
block (Ctrl-C included); ``cleanup_baselines(prefix)`` removes what a killed run left.
Addresses: 10.254.0.0/24 (veth) and 10.254.1.0/24 (ovs-flat), only inside these namespaces.

When the lab's nodes are VMs (``lab: {nodes: vm}``), the ceilings are the same path without
tenantnet, measured on the lab's own node VMs (``run_vm_baselines(lab, spec, prefix)``):

- ``vm-transport``: namespace ``<prefix>-tr-a`` in the network node VM and ``<prefix>-tr-b``
  in a compute node VM, each holding a VLAN device (id ``TRANSPORT_VLAN``) on its VM's
  transport NIC: VM to VM over the plain transport network, no Open vSwitch on the way
  (the kernel hands tagged frames to the VLAN device before the NIC's Open vSwitch
  ``rx_handler`` sees them). The lab's probe and VM sit on the same two node VMs.
- ``vm-ovs-flat``: namespaces ``<prefix>-of-a`` and ``<prefix>-of-b`` in the compute node VM
  on one plain bridge ``<prefix>-flat`` of that VM's kernel-datapath Open vSwitch
  (``datapath_type=system``, one NORMAL flow, no controller; tenantnet leaves bridges it does
  not own alone).

Addresses 10.254.2.0/24 and 10.254.3.0/24, only inside these namespaces. Everything is
removed from every node VM afterwards (``cleanup_vm_baselines``), also on errors and Ctrl-C.
"""

import os
import re
import shlex
import shutil
import time

from tenantnet.errors import TenantnetError
from tenantnet.experiment import bandwidth as bw
from tenantnet.experiment import iperf
from tenantnet.lab import netns as ns
from tenantnet.lab import ovs as ovsmod
from tenantnet.node.procs import pid_alive, proc_cmdline, terminate_pid
from tenantnet.lab.ovs import OvsInstance
from tenantnet.model.topology import Tuning

BASE_ROOT = "/run/tenantnet-baseline"
MODES = ("veth", "ovs-flat")
VM_MODES = ("vm-transport", "vm-ovs-flat")
TRANSPORT_VLAN = 3999
VM_NETS = {"vm-transport": ("10.254.2.1", "10.254.2.2", 24),
           "vm-ovs-flat": ("10.254.3.1", "10.254.3.2", 24)}
_PREFIX_RE = re.compile(r"^[a-z][a-z0-9-]{0,15}$")
BRIDGE = "br-flat"
NETS = {"veth": ("10.254.0.1", "10.254.0.2", 24), "ovs-flat": ("10.254.1.1", "10.254.1.2", 24)}


class BaselineError(TenantnetError):
    """A baseline could not be built or measured."""


def _say(progress, text):
    if progress:
        progress(text)


def names(prefix):
    """Every namespace name a baseline run with *prefix* uses."""
    return {"veth": (f"{prefix}-veth-a", f"{prefix}-veth-b"),
            "ovs": f"{prefix}-ovs",
            "ovs-flat": (f"{prefix}-ovs-a", f"{prefix}-ovs-b")}


def _all_namespaces(prefix):
    n = names(prefix)
    return [*n["veth"], *n["ovs-flat"], n["ovs"]]


def ovs_base_dir(prefix):
    return os.path.join(BASE_ROOT, prefix, "ovs")


def _tuning_of(spec, tuning):
    """(mtu, tx_offload) from *tuning* (Tuning, dict or None), spec.tuning, else defaults."""
    t = tuning if tuning is not None else bw.field(spec, "tuning", None)
    default = Tuning()
    if t is None:
        return default.vm_mtu, default.tx_checksum_offload
    mtu = bw.field(t, "vm_mtu", None) or bw.field(t, "mtu", None) or default.vm_mtu
    off = bw.field(t, "tx_checksum_offload", None)
    if off is None:
        off = bw.field(t, "tx_offload", default.tx_checksum_offload)
    return int(mtu), bool(off)


def _check_prefix(prefix):
    if not isinstance(prefix, str) or not _PREFIX_RE.match(prefix):
        raise BaselineError(f"baseline prefix {prefix!r}: use lowercase letters, digits and "
                            "'-', starting with a letter (at most 16 characters)")


def _endpoint(netns, ifname, ip, plen, mtu, tx_offload, executor=None):
    def run(cmd):
        ns.run(cmd, netns=netns, executor=executor)
    run(["ip", "link", "set", ifname, "mtu", str(mtu)])
    run(["ip", "addr", "replace", f"{ip}/{plen}", "dev", ifname])
    run(["ethtool", "-K", ifname, "tx", "on" if tx_offload else "off"])
    run(["ip", "link", "set", "lo", "up"])
    run(["ip", "link", "set", ifname, "up"])


def _wait_ping(netns, ip, timeout=10, executor=None, where=""):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if ns.run(["ping", "-n", "-q", "-c", "1", "-W", "1", ip], netns=netns,
                  check=False, executor=executor).returncode == 0:
            return
        time.sleep(0.1)
    raise BaselineError(f"{ip} does not answer ping from {netns}{where} within {timeout}s")


def cleanup_baselines(prefix):
    """Remove whatever a baseline run with *prefix* created (safe to repeat): the private
    OVS daemons (by pidfile, only when that pid really runs from our directory), then the
    namespaces by exact name, then the OVS directory. Returns what was removed."""
    _check_prefix(prefix)
    removed = []
    base = ovs_base_dir(prefix)
    if os.path.isdir(base):
        inst = OvsInstance(base, netns=names(prefix)["ovs"])
        for daemon in ("ovs-vswitchd", "ovsdb-server"):
            pid = inst.pid(daemon)
            if pid_alive(pid) and base in proc_cmdline(pid):
                terminate_pid(pid)
                removed.append(f"{daemon} pid {pid}")
    for name in _all_namespaces(prefix):
        if ns.exists(name):
            ns.delete(name)
            removed.append(name)
    if os.path.isdir(os.path.join(BASE_ROOT, prefix)):
        shutil.rmtree(os.path.join(BASE_ROOT, prefix), ignore_errors=True)
        removed.append(os.path.join(BASE_ROOT, prefix))
    try:
        os.rmdir(BASE_ROOT)          # only when no other prefix uses it
    except OSError:
        pass
    return removed


def _refuse_leftovers(prefix):
    left = [n for n in _all_namespaces(prefix) if ns.exists(n)]
    if os.path.isdir(ovs_base_dir(prefix)):
        left.append(ovs_base_dir(prefix))
    if left:
        raise BaselineError(f"left over from an earlier baseline run: {', '.join(left)}; "
                            "remove them with `python -m tenantnet.experiment.baseline "
                            f"--cleanup {prefix}`")


def build_veth(prefix, mtu, tx_offload):
    a, b = names(prefix)["veth"]
    ip_a, ip_b, plen = NETS["veth"]
    ns.add(a)
    ns.add(b)
    ns.run(["ip", "link", "add", "eth0", "type", "veth", "peer", "name", "eth0", "netns", b],
           netns=a)
    _endpoint(a, "eth0", ip_a, plen, mtu, tx_offload)
    _endpoint(b, "eth0", ip_b, plen, mtu, tx_offload)
    _wait_ping(a, ip_b)
    return (a, ip_a), (b, ip_b)


def build_ovs(prefix, mtu, tx_offload):
    sw = names(prefix)["ovs"]
    a, b = names(prefix)["ovs-flat"]
    ip_a, ip_b, plen = NETS["ovs-flat"]
    ns.add(sw)
    inst = OvsInstance(ovs_base_dir(prefix), netns=sw, system_id=f"{prefix}-flat")
    inst.start()
    inst.vsctl("add-br", BRIDGE, "--", "set", "bridge", BRIDGE, "datapath_type=netdev",
               "fail_mode=secure")
    for end, port in ((a, "pa"), (b, "pb")):
        ns.add(end)
        ns.run(["ip", "link", "add", port, "type", "veth", "peer", "name", "eth0",
                "netns", end], netns=sw)
        ns.run(["ip", "link", "set", port, "up"], netns=sw)
        inst.vsctl("add-port", BRIDGE, port)
    inst.ofctl("del-flows", BRIDGE)
    inst.ofctl("add-flow", BRIDGE, "table=0,priority=0,actions=NORMAL")
    _endpoint(a, "eth0", ip_a, plen, mtu, tx_offload)
    _endpoint(b, "eth0", ip_b, plen, mtu, tx_offload)
    _wait_ping(a, ip_b)
    flows = [f.strip() for f in inst.ofctl("dump-flows", BRIDGE, "--no-stats").stdout
             .splitlines() if "actions=" in f]
    if len(flows) != 1 or "actions=NORMAL" not in flows[0]:
        raise BaselineError(f"{BRIDGE} in {sw}: expected one NORMAL flow, found {flows}")
    return (a, ip_a), (b, ip_b)


def _measure(mode, a, b, cfg, tuning, progress, label):
    rows = []
    ends = {"probe": a, "vm": b}
    for repeat in range(cfg["repeats"]):
        for proto in cfg["protocols"]:
            for direction in bw.DIRECTIONS:
                src, dst = direction.split("->")
                _say(progress, f"baseline [{mode}]: {proto} {direction} ({cfg['duration_s']}s)")
                rec = iperf.run_iperf(ends[dst][0], ends[dst][1], ends[src][0], ends[src][1],
                                      protocol=proto, duration=cfg["duration_s"],
                                      udp_rate=cfg["udp_rate"], omit=cfg["omit_s"])
                rows.append(bw.measurement_row(
                    mode, rec, vm=label, node=None, network=None, n_vms=1,
                    direction=direction, repeat=repeat, duration_s=cfg["duration_s"],
                    udp_rate=cfg["udp_rate"], tuning=tuning))
    return rows


def run_baselines(prefix, spec, progress=None, tuning=None, modes=MODES):
    """Build, measure and remove each baseline in turn; returns the rows (see the module
    docstring). *tuning*: the lab's Tuning (or a dict with vm_mtu/tx_checksum_offload);
    default spec.tuning, else the lab defaults. Always cleans up, even on Ctrl-C."""
    _check_prefix(prefix)
    for m in modes:
        if m not in MODES:
            raise BaselineError(f"baseline mode {m!r}: use {', '.join(MODES)}")
    cfg = bw.settings(spec)
    mtu, tx_offload = _tuning_of(spec, tuning)
    iperf.check_installed()
    ovsmod.check_prerequisites()
    if os.geteuid() != 0:
        raise BaselineError("baselines need root (network namespaces)")
    _refuse_leftovers(prefix)
    rows = []
    for mode in modes:
        try:
            if mode == "veth":
                _say(progress, f"baseline veth: {' <-> '.join(names(prefix)['veth'])} "
                               f"(mtu {mtu}, tx offload {'on' if tx_offload else 'off'})")
                a, b = build_veth(prefix, mtu, tx_offload)
            else:
                _say(progress, f"baseline ovs-flat: bridge {BRIDGE} (netdev, NORMAL) in "
                               f"{names(prefix)['ovs']} (mtu {mtu}, tx offload "
                               f"{'on' if tx_offload else 'off'})")
                a, b = build_ovs(prefix, mtu, tx_offload)
            t = {"mtu": mtu, "tx_offload": tx_offload, "neigh_gc_thresh": None,
                 "tcp_congestion": iperf.tcp_congestion_control(b[0])}
            rows.extend(_measure(mode, a, b, cfg, t, progress, label=b[0]))
        finally:
            cleanup_baselines(prefix)
    return rows


# -- on the lab's node VMs ---------------------------------------------------------------
def vm_names(prefix):
    """Every name a VM baseline run with *prefix* uses inside the node VMs."""
    return {"vm-transport": (f"{prefix}-tr-a", f"{prefix}-tr-b"),
            "vm-ovs-flat": (f"{prefix}-of-a", f"{prefix}-of-b"),
            "bridge": f"{prefix}-flat", "vlan": f"{prefix}-vl",
            "ports": (f"{prefix}-pa", f"{prefix}-pb")}


def vm_nodes(lab):
    """(probe side, VM side) of the VM baselines: the lab's first network node and first
    compute node, where the bandwidth part puts its probe and its first VM."""
    topo = lab.topology()
    nets = [n.name for n in topo.nodes() if n.role == "network"]
    computes = [n.name for n in topo.nodes() if n.role == "compute"]
    if not nets or not computes:
        raise BaselineError("VM baselines need a network node and a compute node")
    for node in (nets[0], computes[0]):
        if lab.fabric.node_kind(node) != "vm":
            raise BaselineError(f"node {node} is not a node VM ({lab.fabric.node_kind(node)}): "
                                "the VM baselines run on node VMs only")
    return nets[0], computes[0]


def describe(prefix, kind, nodes=None):
    """{baseline mode: what it is}, for meta.json and the report. *kind*: 'host' (this
    machine's veth and flat OVS) or 'vm' (*nodes* = (probe side, VM side) node VMs)."""
    if kind == "vm":
        a, b = nodes or ("the network node VM", "a compute node VM")
        return {"vm-transport": f"VM to VM over the plain transport network: a namespace in "
                                f"node VM {a} and one in node VM {b}, each on a VLAN device "
                                f"(id {TRANSPORT_VLAN}) of its VM's transport NIC; no Open "
                                "vSwitch, no tenantnet (the lab's path without tenantnet)",
                "vm-ovs-flat": f"a flat Open vSwitch bridge in node VM {b}: two namespaces on "
                               "one plain bridge of that VM's kernel datapath "
                               "(datapath_type=system, one NORMAL flow), no tenantnet"}
    return {"veth": "a plain veth pair between two namespaces on this host (the machine's "
                    "ceiling)",
            "ovs-flat": "a flat Open vSwitch bridge on this host (userspace datapath, one "
                        "NORMAL flow) between two namespaces"}


def _vm_cleanup_script(prefix):
    n = vm_names(prefix)
    spaces = " ".join(shlex.quote(x) for x in (*n["vm-transport"], *n["vm-ovs-flat"]))
    links = " ".join(shlex.quote(x) for x in (n["vlan"], *n["ports"]))
    br = shlex.quote(n["bridge"])
    return (f"for n in {spaces}; do if [ -e /run/netns/$n ]; then ip netns del $n && "
            f"echo $n; fi; done; "
            f"if ovs-vsctl --timeout=30 br-exists {br}; then "
            f"ovs-vsctl --timeout=30 del-br {br} && echo {br}; fi; "
            f"for l in {links}; do if ip link show dev $l >/dev/null 2>&1; then "
            f"ip link del $l && echo $l; fi; done; true")


def cleanup_vm_baselines(lab, prefix):
    """Remove whatever a VM baseline run with *prefix* left on any node VM of *lab* (by
    exact names; safe to repeat). Returns what was removed, as 'node: name'."""
    _check_prefix(prefix)
    removed, problems = [], []
    script = _vm_cleanup_script(prefix)
    fabric = lab.fabric
    for node in fabric.node_names():
        if fabric.node_kind(node) != "vm":
            continue
        try:
            proc = fabric.node_exec(node, ["sh", "-c", script], timeout=90)
        except TenantnetError as exc:
            problems.append(f"{node}: {exc}")
            continue
        if proc.returncode != 0:
            problems.append(f"{node}: {(proc.stderr or proc.stdout).strip()[:200]}")
        removed += [f"{node}: {x}" for x in proc.stdout.split()]
    if problems:
        raise BaselineError("VM baselines: clean-up failed on " + "; ".join(problems))
    return removed


def _build_vm_transport(prefix, ends, ifname, mtu, tx_offload):
    """*ends*: [(node, executor), (node, executor)] for sides a and b."""
    n = vm_names(prefix)
    ip_a, ip_b, plen = VM_NETS["vm-transport"]
    out = []
    for (node, ex), netns, ip in zip(ends, n["vm-transport"], (ip_a, ip_b)):
        ns.add(netns, executor=ex)
        ns.run(["ip", "link", "add", "link", ifname, "name", n["vlan"], "type", "vlan", "id",
                str(TRANSPORT_VLAN)], executor=ex)
        ns.run(["ip", "link", "set", n["vlan"], "netns", netns], executor=ex)
        # a VLAN device inherits its NIC's flags, and the node's transport NIC is NOARP
        # (its address lives on br-tun): this end needs ARP
        ns.run(["ip", "link", "set", n["vlan"], "name", "eth0", "arp", "on"], netns=netns,
               executor=ex)
        _endpoint(netns, "eth0", ip, plen, mtu, tx_offload, executor=ex)
        out.append((ns.executor_in(netns, base=ex), ip))
    _wait_ping(n["vm-transport"][0], ip_b, timeout=30, executor=ends[0][1],
               where=f" on {ends[0][0]}")
    return out


def _build_vm_flat(prefix, node, ex, mtu, tx_offload):
    n = vm_names(prefix)
    br = n["bridge"]
    ip_a, ip_b, plen = VM_NETS["vm-ovs-flat"]

    def run(cmd):
        return ns.run(cmd, executor=ex, timeout=90)
    run(["ovs-vsctl", "--timeout=30", "add-br", br, "--", "set", "bridge", br,
         "datapath_type=system", "fail_mode=secure", f"external_ids:tenantnet-baseline={prefix}"])
    out = []
    for netns, port, ip in zip(n["vm-ovs-flat"], n["ports"], (ip_a, ip_b)):
        ns.add(netns, executor=ex)
        run(["ip", "link", "add", port, "type", "veth", "peer", "name", "eth0", "netns", netns])
        run(["ip", "link", "set", port, "up"])
        run(["ovs-vsctl", "--timeout=30", "add-port", br, port])
        _endpoint(netns, "eth0", ip, plen, mtu, tx_offload, executor=ex)
        out.append((ns.executor_in(netns, base=ex), ip))
    run(["ovs-ofctl", "del-flows", br])
    run(["ovs-ofctl", "add-flow", br, "table=0,priority=0,actions=NORMAL"])
    _wait_ping(n["vm-ovs-flat"][0], ip_b, timeout=30, executor=ex, where=f" on {node}")
    flows = [f.strip() for f in run(["ovs-ofctl", "dump-flows", br, "--no-stats"]).stdout
             .splitlines() if "actions=" in f]
    if len(flows) != 1 or "actions=NORMAL" not in flows[0]:
        raise BaselineError(f"{br} on {node}: expected one NORMAL flow, found {flows}")
    dp = run(["ovs-vsctl", "get", "bridge", br, "datapath_type"]).stdout.strip().strip('"')
    if dp != "system":
        raise BaselineError(f"{br} on {node}: datapath_type is {dp!r}, not system")
    return out


def run_vm_baselines(lab, spec, prefix, progress=None, tuning=None, modes=VM_MODES,
                     nodes=None):
    """The VM baselines (module docstring) on *lab*, whose nodes are VMs and which has no
    tenant VM running traffic. *nodes*: (probe side, VM side) node names (default
    vm_nodes(lab)). Returns the rows (mode "vm-transport" / "vm-ovs-flat"); always cleans
    up, even on Ctrl-C."""
    from tenantnet.lab.vmnodes import TRANSPORT_IF
    _check_prefix(prefix)
    for m in modes:
        if m not in VM_MODES:
            raise BaselineError(f"VM baseline mode {m!r}: use {', '.join(VM_MODES)}")
    cfg = bw.settings(spec)
    mtu, tx_offload = _tuning_of(spec, tuning)
    iperf.check_installed()
    a_node, b_node = nodes or vm_nodes(lab)
    fabric = lab.fabric
    ends = [(a_node, fabric.node_executor(a_node)), (b_node, fabric.node_executor(b_node))]
    left = cleanup_vm_baselines(lab, prefix)
    if left:
        _say(progress, f"VM baselines: removed leftovers {', '.join(left)}")
    rows = []
    setting = f"mtu {mtu}, tx offload {'on' if tx_offload else 'off'}"
    for mode in modes:
        try:
            if mode == "vm-transport":
                _say(progress, f"baseline vm-transport: {a_node} <-> {b_node} over the plain "
                               f"transport network (VLAN {TRANSPORT_VLAN} on "
                               f"{TRANSPORT_IF}, {setting})")
                a, b = _build_vm_transport(prefix, ends, TRANSPORT_IF, mtu, tx_offload)
                where = f"{a_node}<->{b_node}"
            else:
                _say(progress, f"baseline vm-ovs-flat: bridge {vm_names(prefix)['bridge']} "
                               f"(kernel datapath, NORMAL) in {b_node} ({setting})")
                a, b = _build_vm_flat(prefix, b_node, ends[1][1], mtu, tx_offload)
                where = b_node
            t = {"mtu": mtu, "tx_offload": tx_offload, "neigh_gc_thresh": None,
                 "tcp_congestion": iperf.tcp_congestion_control(b[0])}
            for row in _measure(mode, a, b, cfg, t, progress, label=vm_names(prefix)[mode][1]):
                row["node"] = where
                rows.append(row)
        except BaseException:
            try:
                cleanup_vm_baselines(lab, prefix)
            except TenantnetError:
                pass                     # never mask the original error
            raise
        cleanup_vm_baselines(lab, prefix)
    return rows


def main(argv=None):
    import argparse
    import json
    p = argparse.ArgumentParser(description="iperf3 baselines (veth, flat OVS) or clean-up")
    p.add_argument("prefix", nargs="?", default="tnb")
    p.add_argument("--cleanup", action="store_true", help="only remove leftovers of PREFIX")
    p.add_argument("--duration", type=int, help="seconds per run (default: the spec's)")
    p.add_argument("--udp-rate", help="iperf3 -b for UDP (default: the spec's)")
    a = p.parse_args(argv)
    if a.cleanup:
        print(json.dumps({"removed": cleanup_baselines(a.prefix)}))
        return 0
    given = {"duration_s": a.duration, "udp_rate": a.udp_rate}
    rows = run_baselines(a.prefix, {"bandwidth": {k: v for k, v in given.items()
                                                  if v is not None}}, progress=print)
    print(json.dumps(rows, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
