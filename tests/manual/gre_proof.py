#!/usr/bin/env python3
"""Manual proof of the tenant data path (design paper, section III), built by hand.

Two emulated compute nodes, each a network namespace with its own private Open vSwitch
(userspace datapath, datapath_type=netdev), joined by a fabric namespace with two Linux
bridges (mgmt, transport). Per node and tenant network (t1: segmentation id 100):

    VM ns eth0 --veth-- tap-vmN [brint-t1, tag=100] pi-t1 <patch> pt-t1 [brtun-t1]
        gre-t1-nX (key=flow, local_ip = ex-t1 address)     -> encapsulated by OVS userspace
    ex-t1 (internal, 198.19.100.1N/24) and eth1 on [br-tun] (standalone, NORMAL) -> fabric

Checks: ping vm1 <-> vm2, iperf3 TCP for 2 s, ofproto/trace on n1 brtun-t1.
With --two-tenants a second tenant t2 (segmentation id 200, ex-t2 198.19.200.1N, VMs vm3/vm4
with the *same* IPs 10.0.0.1/2 as t1) is added and isolation is checked too.

Usage (as root):  /tmp/venv0/bin/python tests/manual/gre_proof.py [--keep] [--two-tenants]
                  [--no-arp-fix]  (reproduces the ARP-flux failure)   [--cleanup]
Everything created is named tnx-a-*; it is torn down on exit (also on Ctrl-C / SIGTERM /
SIGHUP) unless --keep is given (then run again with --cleanup). Exit 0 when all checks pass.
"""

import argparse
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.abspath(os.path.join(HERE, "..", "..")))

from tenantnet.errors import LabError  # noqa: E402
from tenantnet.lab import netns as ns  # noqa: E402
from tenantnet.node.procs import pid_alive, proc_cmdline, terminate_pid  # noqa: E402
from tenantnet.lab.ovs import OvsInstance  # noqa: E402

PREFIX = "tnx-a"
FAB = f"{PREFIX}-fab"
BASE = f"/run/{PREFIX}-gre"

NODES = {
    "n1": dict(mgmt="198.18.0.11", transport="198.19.0.11", peer="n2"),
    "n2": dict(mgmt="198.18.0.12", transport="198.19.0.12", peer="n1"),
}
# tenant -> segmentation id, ex- address per node, VM (name, mac, ip) per node
TENANTS = {
    "t1": dict(seg=100, ex={"n1": "198.19.100.11", "n2": "198.19.100.12"},
               vms={"n1": ("vm1", "02:00:00:00:00:01", "10.0.0.1"),
                    "n2": ("vm2", "02:00:00:00:00:02", "10.0.0.2")}),
    "t2": dict(seg=200, ex={"n1": "198.19.200.11", "n2": "198.19.200.12"},
               vms={"n1": ("vm3", "02:00:00:00:00:03", "10.0.0.1"),
                    "n2": ("vm4", "02:00:00:00:00:04", "10.0.0.2")}),
}
ACTIVE = ["t1"]

# PITFALL 1 (the one that breaks the data path): br-tun LOCAL (198.19.0.x), every ex-xy
# (198.19.100.x) and eth1 share one L2 segment in the node namespace. With Linux defaults
# (arp_ignore=0) the kernel answers an ARP "who-has 198.19.100.12" on *every* interface of
# that segment (ARP flux), so the remote OVS can learn the br-tun MAC for the ex-t1 IP in its
# tunnel neighbour cache (tnl/neigh/show). GRE then arrives with dst MAC = br-tun MAC and
# dst IP = ex-t1 IP; OVS only terminates native tunnels on exact (MAC, IP) pairs of its
# local interfaces (tnl/ports/show -v), so the packet goes up to the kernel and is dropped.
# Fix: arp_ignore=1 (answer only for addresses configured on the receiving interface) and
# arp_announce=2 (pick the ARP source address of the outgoing interface).
ARP_SYSCTLS = ("net.ipv4.conf.all.arp_ignore=1", "net.ipv4.conf.default.arp_ignore=1",
               "net.ipv4.conf.all.arp_announce=2", "net.ipv4.conf.default.arp_announce=2")
ARP_FIX = True

results = []


def log(msg):
    print(msg, flush=True)


def sh(cmd, netns=None, check=True, timeout=60):
    return ns.run(cmd, netns=netns, check=check, timeout=timeout)


def check(name, ok, detail=""):
    results.append((name, ok, detail))
    log(f"[{'PASS' if ok else 'FAIL'}] {name}" + (f": {detail}" if detail else ""))
    return ok


def node_ns(n):
    return f"{PREFIX}-{n}"


def vm_ns(t, n):
    return f"{PREFIX}-{TENANTS[t]['vms'][n][0]}"


def ovs_for(n):
    return OvsInstance(os.path.join(BASE, n), netns=node_ns(n),
                       ovsdb_tcp=(NODES[n]["mgmt"], 6640), system_id=f"{PREFIX}-{n}")


# ---------------------------------------------------------------------------------------
def cleanup():
    # Our daemons by pid, zombie-aware (OvsInstance.stop() waits 5 s per daemon on this
    # machine, where PID 1 reaps detached daemons late).
    for n in NODES:
        inst = ovs_for(n)
        for daemon in ("ovs-vswitchd", "ovsdb-server"):
            pid = inst.pid(daemon)
            if pid_alive(pid) and inst.base_dir in proc_cmdline(pid):
                terminate_pid(pid)
    for t in TENANTS:
        for n in NODES:
            ns.delete(vm_ns(t, n))
    for n in NODES:
        ns.delete(node_ns(n))
    ns.delete(FAB)
    shutil.rmtree(BASE, ignore_errors=True)


def wait_link(name, netns, timeout=5.0):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if ns.link_exists(name, netns=netns):
            return
        time.sleep(0.05)
    raise LabError(f"interface {name} did not appear in {netns}")


def build_fabric():
    ns.add(FAB)
    for br in ("mgmt", "transport"):
        sh(["ip", "link", "add", br, "type", "bridge"], netns=FAB)
        sh(["ip", "link", "set", br, "up"], netns=FAB)


def veth_to_fabric(n, ifname, fab_bridge, peer):
    """veth <ifname> in the node namespace, <peer> in the fabric enslaved to <fab_bridge>."""
    sh(["ip", "link", "add", ifname, "netns", node_ns(n), "type", "veth", "peer", "name", peer],
       netns=FAB)
    sh(["ip", "link", "set", peer, "master", fab_bridge, "up"], netns=FAB)
    sh(["ip", "link", "set", ifname, "up"], netns=node_ns(n))


def build_node(n):
    cfg = NODES[n]
    nsn = node_ns(n)
    ns.add(nsn)
    if ARP_FIX:
        sh(["sysctl", "-q", "-w", *ARP_SYSCTLS], netns=nsn)
    veth_to_fabric(n, "mgmt", "mgmt", f"m-{n}")
    # the management IP must exist before ovsdb-server binds ptcp:6640:<ip>
    sh(["ip", "addr", "add", f"{cfg['mgmt']}/24", "dev", "mgmt"], netns=nsn)
    veth_to_fabric(n, "eth1", "transport", f"t-{n}")

    ovs = ovs_for(n)
    ovs.start()
    # common tunnel bridge: standalone (default NORMAL flow), eth1 + transport IP on LOCAL.
    ovs.vsctl("add-br", "br-tun", "--", "set", "bridge", "br-tun", "datapath_type=netdev",
              "fail_mode=standalone", "--", "add-port", "br-tun", "eth1")
    wait_link("br-tun", nsn)
    sh(["ip", "addr", "add", f"{cfg['transport']}/24", "dev", "br-tun"], netns=nsn)
    sh(["ip", "link", "set", "br-tun", "up"], netns=nsn)
    return ovs


def build_tenant(n, t):
    ten = TENANTS[t]
    seg, peer_node = ten["seg"], NODES[n]["peer"]
    nsn = node_ns(n)
    ovs = ovs_for(n)
    ex, brint, brtun, pi, pt = f"ex-{t}", f"brint-{t}", f"brtun-{t}", f"pi-{t}", f"pt-{t}"
    gre = f"gre-{t}-{peer_node}"

    # tenant endpoint ex-xy: internal port on the common br-tun with the tenant transport IP
    ovs.vsctl("add-port", "br-tun", ex, "--", "set", "interface", ex, "type=internal")
    wait_link(ex, nsn)                      # OVS creates the tap asynchronously
    sh(["ip", "addr", "add", f"{ten['ex'][n]}/24", "dev", ex], netns=nsn)
    sh(["ip", "link", "set", ex, "up"], netns=nsn)

    for br in (brint, brtun):
        ovs.vsctl("add-br", br, "--", "set", "bridge", br, "datapath_type=netdev",
                  "fail_mode=secure", "protocols=OpenFlow13")
    ovs.vsctl("add-port", brint, pi, "--", "set", "interface", pi, "type=patch",
              f"options:peer={pt}",
              "--", "add-port", brtun, pt, "--", "set", "interface", pt, "type=patch",
              f"options:peer={pi}")
    ovs.vsctl("add-port", brtun, gre, "--", "set", "interface", gre, "type=gre",
              f"options:remote_ip={ten['ex'][peer_node]}", f"options:local_ip={ten['ex'][n]}",
              "options:key=flow")

    # VM
    vm, mac, ip = ten["vms"][n]
    vns, tap = vm_ns(t, n), f"tap-{vm}"
    ns.add(vns)
    sh(["ip", "link", "add", tap, "type", "veth", "peer", "name", "eth0", "netns", vns],
       netns=nsn)
    sh(["ip", "link", "set", tap, "up"], netns=nsn)
    sh(["ip", "link", "set", "eth0", "address", mac, "mtu", "1400"], netns=vns)
    sh(["ip", "addr", "add", f"{ip}/24", "dev", "eth0"], netns=vns)
    # PITFALL 3: without this, TCP from the VM leaves with partial (unfilled) checksums
    # that the userspace datapath forwards as they are: ping works, TCP never connects.
    sh(["ethtool", "-K", "eth0", "tx", "off"], netns=vns)
    sh(["ip", "link", "set", "eth0", "up"], netns=vns)
    ovs.vsctl("add-port", brint, tap, f"tag={seg}")

    # flows (what the controller will install)
    vid = 0x1000 | seg                      # OFPVID_PRESENT | seg (100 -> 4196)
    remote_mac = ten["vms"][peer_node][1]
    ovs.ofctl("add-flow", brint, "table=0,priority=0,actions=NORMAL")
    for f in (
        f"table=0,priority=100,in_port={pt},actions=goto_table:1",
        f"table=0,priority=100,in_port={gre},tun_id={seg},"
        f"actions=push_vlan:0x8100,set_field:{vid}->vlan_vid,output:{pt}",
        "table=0,priority=0,actions=drop",
        f"table=1,priority=200,dl_vlan={seg},dl_dst={remote_mac},"
        f"actions=pop_vlan,set_field:{seg}->tun_id,output:{gre}",
        f"table=1,priority=100,dl_vlan={seg},"
        f"actions=pop_vlan,set_field:{seg}->tun_id,output:{gre}",
        "table=1,priority=0,actions=drop",
    ):
        ovs.ofctl("add-flow", brtun, f)


def dump_state(label):
    for n in NODES:
        ovs = ovs_for(n)
        log(f"--- {label}: {n} ---")
        for args in (("ovs/route/show",), ("tnl/neigh/show",), ("tnl/ports/show", "-v")):
            out = ovs.appctl(*args, check=False)
            log(f"$ ovs-appctl {' '.join(args)}\n{(out.stdout or out.stderr).rstrip()}")
        for t in ACTIVE:
            out = ovs.ofctl("dump-flows", f"brtun-{t}", "--no-stats", check=False)
            log(f"$ ovs-ofctl -O OpenFlow13 dump-flows brtun-{t}\n{out.stdout.rstrip()}")


def ping(src_ns, dst_ip, *extra, count=3):
    return sh(["ping", "-c", str(count), "-i", "0.2", "-W", "2", *extra, dst_ip],
              netns=src_ns, check=False)


def iperf(t):
    srv_ns, cli_ns = vm_ns(t, "n2"), vm_ns(t, "n1")
    dst = TENANTS[t]["vms"]["n2"][2]
    server = subprocess.Popen(["ip", "netns", "exec", srv_ns, "iperf3", "-s", "-1", "-B", dst],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                              start_new_session=True)
    try:
        time.sleep(0.5)
        c = sh(["iperf3", "-c", dst, "-t", "2", "-J"], netns=cli_ns, check=False, timeout=30)
        try:
            data = json.loads(c.stdout)
            mbps = data["end"]["sum_received"]["bits_per_second"] / 1e6
            retr = data["end"]["sum_sent"].get("retransmits")
            detail = f"{mbps:.1f} Mbit/s received, {retr} retransmits"
        except (ValueError, KeyError, TypeError):
            mbps, detail = None, (c.stdout or c.stderr)[-500:]
        check(f"iperf3 TCP 2 s {t} n1 -> n2", bool(mbps and mbps > 10), detail)
    finally:
        if server.poll() is None:
            os.killpg(server.pid, signal.SIGTERM)
        server.wait(timeout=5)


def run_checks():
    n1 = ovs_for("n1")
    # Control check + pre-warm: the ex- endpoints reach each other through br-tun (kernel
    # path). The ARP replies cross br-tun, OVS snoops them into its tunnel neighbour cache,
    # and the first VM packets are not lost to a cache miss (PITFALL 2: on a miss OVS sends
    # its own ARP request out of the ex- port and drops the packet that needed it).
    for t in ACTIVE:
        for a, b in (("n1", "n2"), ("n2", "n1")):
            p = ping(node_ns(a), TENANTS[t]["ex"][b], "-I", f"ex-{t}", count=2)
            check(f"kernel ping ex-{t} {a} -> {b} (tenant transport underlay)",
                  p.returncode == 0)
    for n in NODES:
        log(f"{n} tnl/neigh/show after pre-warm:\n"
            + ovs_for(n).appctl("tnl/neigh/show").stdout.rstrip())

    for t in ACTIVE:
        vms = TENANTS[t]["vms"]
        p = ping(vm_ns(t, "n1"), vms["n2"][2], count=5)
        loss = re.search(r"\d+% packet loss", p.stdout or "")
        check(f"ping {vms['n1'][0]} -> {vms['n2'][0]}", p.returncode == 0,
              loss.group(0) if loss else p.stdout)
        if p.returncode != 0:
            dump_state("after failed ping")
        p = ping(vm_ns(t, "n2"), vms["n1"][2])
        check(f"ping {vms['n2'][0]} -> {vms['n1'][0]}", p.returncode == 0)
        p = ping(vm_ns(t, "n1"), vms["n2"][2], "-M", "do", "-s", "1372", count=2)
        check(f"ping {vms['n1'][0]} -> {vms['n2'][0]} full 1400-byte IP packet, DF set",
              p.returncode == 0)
        # Isolation: the neighbour learned for 10.0.0.2 must be this tenant's VM.
        neigh = sh(["ip", "neigh", "show", vms["n2"][2]], netns=vm_ns(t, "n1")).stdout
        check(f"{t}: 10.0.0.2 resolved to its own tenant's VM ({vms['n2'][1]})",
              vms["n2"][1] in neigh, neigh.strip())
        iperf(t)

    seg = TENANTS["t1"]["seg"]
    vm1, vm2 = TENANTS["t1"]["vms"]["n1"], TENANTS["t1"]["vms"]["n2"]
    trace_args = ("ofproto/trace", "brtun-t1",
                  f"in_port=pt-t1,dl_vlan={seg},dl_src={vm1[1]},dl_dst={vm2[1]},"
                  f"dl_type=0x0800,nw_src={vm1[2]},nw_dst={vm2[2]}")
    out = n1.appctl(*trace_args, check=False)
    text = out.stdout or out.stderr
    log(f"$ OVS_RUNDIR={n1.rundir} ovs-appctl --target={n1.rundir}/ovs-vswitchd.ctl "
        f"{trace_args[0]} {trace_args[1]} '{trace_args[2]}'")
    log(text)
    gre_ofport = n1.vsctl("get", "interface", "gre-t1-n2", "ofport").stdout.strip()
    ok = (f"set_field:{seg:#x}->tun_id" in text and f"output:{gre_ofport}" in text
          and "-> output to native tunnel" in text and "tnl_push(" in text
          and f"key={seg:#x}" in text)
    check("ofproto/trace brtun-t1: GRE output with tun_id 100 (native tnl_push)", ok)
    dump_state("final")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--keep", action="store_true", help="leave the lab up for inspection")
    ap.add_argument("--cleanup", action="store_true", help="only tear down")
    ap.add_argument("--two-tenants", action="store_true",
                    help="add tenant t2 (seg 200, same VM IPs) and check isolation")
    ap.add_argument("--no-arp-fix", action="store_true",
                    help="leave arp_ignore/arp_announce at Linux defaults (reproduces pitfall 1)")
    args = ap.parse_args()
    global ARP_FIX
    ARP_FIX = not args.no_arp_fix
    if args.two_tenants:
        ACTIVE.append("t2")

    if os.geteuid() != 0:
        sys.exit("must run as root")
    cleanup()
    if args.cleanup:
        return 0

    def on_signal(signum, frame):
        raise KeyboardInterrupt
    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, on_signal)

    try:
        build_fabric()
        for n in NODES:
            build_node(n)
            for t in ACTIVE:
                build_tenant(n, t)
        log("lab built")
        run_checks()
    except KeyboardInterrupt:
        log("interrupted")
        args.keep = False
        return 130
    except LabError as exc:
        check("build", False, str(exc))
        try:
            dump_state("after error")
        except Exception:  # noqa: BLE001
            pass
    finally:
        if not args.keep:
            cleanup()
            log("cleaned up")
        else:
            log(f"kept; tear down with: {sys.executable} {__file__} --cleanup")

    failed = [r for r in results if not r[1]]
    log(f"{len(results) - len(failed)}/{len(results)} checks passed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
