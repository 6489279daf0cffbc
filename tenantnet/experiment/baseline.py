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

When the lab's nodes are VMs (``lab: {nodes: vm}``), ``vmbaseline`` measures the same path
without tenantnet on the lab's own node VMs instead (modes ``VM_MODES``). What both kinds
share is here: a run's checked settings (``run_settings``: prefix, modes, iperf3 settings,
the endpoints' tuning), an endpoint's configuration, the ping wait, the iperf3 rows
(``measure``) and what each mode is (``describe``).
"""

import os
import re
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

MODES = ("veth", "ovs-flat")                    # on this host
VM_MODES = ("vm-transport", "vm-ovs-flat")      # on the lab's node VMs (vmbaseline)
TRANSPORT_VLAN = 3999                           # vm-transport's VLAN id
_PREFIX_RE = re.compile(r"^[a-z][a-z0-9-]{0,15}$")
BASE_ROOT = "/run/tenantnet-baseline"           # this host's: the flat OVS's directories
BRIDGE = "br-flat"
NETS = {"veth": ("10.254.0.1", "10.254.0.2", 24), "ovs-flat": ("10.254.1.1", "10.254.1.2", 24)}


# -- what both kinds of baseline share -------------------------------------------------
class BaselineError(TenantnetError):
    """A baseline could not be built or measured."""


def _say(progress, text):
    if progress:
        progress(text)


def check_prefix(prefix):
    if not isinstance(prefix, str) or not _PREFIX_RE.match(prefix):
        raise BaselineError(f"baseline prefix {prefix!r}: use lowercase letters, digits and "
                            "'-', starting with a letter (at most 16 characters)")


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


def run_settings(prefix, spec, tuning, modes, known, what="baseline"):
    """(cfg, mtu, tx_offload) of a baseline run: bw.settings(spec) and the endpoints' MTU
    and TX checksum offload from *tuning* (the lab's Tuning, or a dict with
    vm_mtu/tx_checksum_offload), else spec.tuning, else the lab defaults; once *prefix* and
    *modes* (each one of *known*) are checked and iperf3 is found."""
    check_prefix(prefix)
    for m in modes:
        if m not in known:
            raise BaselineError(f"{what} mode {m!r}: use {', '.join(known)}")
    cfg = bw.settings(spec)
    mtu, tx_offload = _tuning_of(spec, tuning)
    iperf.check_installed()
    return cfg, mtu, tx_offload


def configure_endpoint(netns, ifname, ip, plen, mtu, tx_offload, executor=None):
    def run(cmd):
        ns.run(cmd, netns=netns, executor=executor)
    run(["ip", "link", "set", ifname, "mtu", str(mtu)])
    run(["ip", "addr", "replace", f"{ip}/{plen}", "dev", ifname])
    run(["ethtool", "-K", ifname, "tx", "on" if tx_offload else "off"])
    run(["ip", "link", "set", "lo", "up"])
    run(["ip", "link", "set", ifname, "up"])


def wait_ping(netns, ip, timeout=10, executor=None, where=""):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if ns.run(["ping", "-n", "-q", "-c", "1", "-W", "1", ip], netns=netns,
                  check=False, executor=executor).returncode == 0:
            return
        time.sleep(0.1)
    raise BaselineError(f"{ip} does not answer ping from {netns}{where} within {timeout}s")


def measure(mode, a, b, cfg, mtu, tx_offload, progress, label):
    """iperf3 between the ends *a* (the probe's side) and *b* (the VM's), both (executor,
    ip), per repeat, protocol and direction of *cfg* (bw.settings): rows in the bandwidth
    schema, mode *mode*, vm *label*, with the endpoints' tuning."""
    tuning = {"mtu": mtu, "tx_offload": tx_offload, "neigh_gc_thresh": None,
              "tcp_congestion": iperf.tcp_congestion_control(b[0])}
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


# -- on this host ----------------------------------------------------------------------
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


def cleanup_baselines(prefix):
    """Remove whatever a baseline run with *prefix* created (safe to repeat): the private
    OVS daemons (by pidfile, only when that pid really runs from our directory), then the
    namespaces by exact name, then the OVS directory. Returns what was removed."""
    check_prefix(prefix)
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
    configure_endpoint(a, "eth0", ip_a, plen, mtu, tx_offload)
    configure_endpoint(b, "eth0", ip_b, plen, mtu, tx_offload)
    wait_ping(a, ip_b)
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
    configure_endpoint(a, "eth0", ip_a, plen, mtu, tx_offload)
    configure_endpoint(b, "eth0", ip_b, plen, mtu, tx_offload)
    wait_ping(a, ip_b)
    flows = [f.strip() for f in inst.ofctl("dump-flows", BRIDGE, "--no-stats").stdout
             .splitlines() if "actions=" in f]
    if len(flows) != 1 or "actions=NORMAL" not in flows[0]:
        raise BaselineError(f"{BRIDGE} in {sw}: expected one NORMAL flow, found {flows}")
    return (a, ip_a), (b, ip_b)


def run_baselines(prefix, spec, progress=None, tuning=None, modes=MODES):
    """Build, measure and remove each baseline in turn; returns the rows (see the module
    docstring). *tuning*: the lab's Tuning (or a dict with vm_mtu/tx_checksum_offload);
    default spec.tuning, else the lab defaults. Always cleans up, even on Ctrl-C."""
    cfg, mtu, tx_offload = run_settings(prefix, spec, tuning, modes, MODES)
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
            rows.extend(measure(mode, a, b, cfg, mtu, tx_offload, progress, label=b[0]))
        finally:
            cleanup_baselines(prefix)
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
