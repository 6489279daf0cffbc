#!/usr/bin/env python3
"""Manual proof of the tenant data path (design paper, section III), built by hand.

Two emulated compute nodes, each a network namespace with its own private Open vSwitch
(userspace datapath, datapath_type=netdev), joined by a fabric namespace with two Linux
bridges (mgmt, transport). Per node one tenant network (segmentation id 100):

    VM ns eth0 --veth-- tap-vmN [brint-t1, tag=100] pi-t1 <patch> pt-t1 [brtun-t1]
        gre-t1-nX (key=flow, local_ip=ex-t1 address)      -> encapsulated by OVS userspace
    ex-t1 (internal, 198.19.100.1N/24) and eth1 on [br-tun] (standalone, NORMAL) -> fabric

Then: ping vm1 -> vm2, iperf3 TCP for 2 s, and ofproto/trace on n1 brtun-t1.

Usage (as root):  /tmp/venv0/bin/python tests/manual/gre_proof.py [--keep]
Everything created is named tnx-a-*; it is torn down on exit (also on Ctrl-C / SIGTERM)
unless --keep is given (then run it again with --cleanup to tear down).
Exit status 0 when every check passed.
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
from tenantnet.lab.fabric import _alive, _proc_cmdline, _terminate  # noqa: E402
from tenantnet.lab.ovs import OvsInstance  # noqa: E402

PREFIX = "tnx-a"
FAB = f"{PREFIX}-fab"
BASE = f"/run/{PREFIX}-gre"
SEG = 100
VLAN_VID = 0x1000 | SEG          # OFPVID_PRESENT | 100 = 4196

NODES = {
    "n1": dict(mgmt="198.18.0.11", transport="198.19.0.11", ex="198.19.100.11",
               vm="vm1", vm_mac="02:00:00:00:00:01", vm_ip="10.0.0.1", peer="n2"),
    "n2": dict(mgmt="198.18.0.12", transport="198.19.0.12", ex="198.19.100.12",
               vm="vm2", vm_mac="02:00:00:00:00:02", vm_ip="10.0.0.2", peer="n1"),
}

results = []


def log(msg):
    print(msg, flush=True)


def sh(cmd, netns=None, check=True, timeout=60):
    proc = ns.run(cmd, netns=netns, check=check, timeout=timeout)
    return proc


def check(name, ok, detail=""):
    results.append((name, ok, detail))
    log(f"[{'PASS' if ok else 'FAIL'}] {name}" + (f": {detail}" if detail else ""))
    return ok


def node_ns(n):
    return f"{PREFIX}-{n}"


def vm_ns(n):
    return f"{PREFIX}-{NODES[n]['vm']}"


def ovs_for(n):
    cfg = NODES[n]
    return OvsInstance(os.path.join(BASE, n), netns=node_ns(n), ovsdb_tcp=(cfg["mgmt"], 6640),
                       system_id=f"{PREFIX}-{n}")


# ---------------------------------------------------------------------------------------
def cleanup():
    # Stop our daemons by pid (zombie-aware: OvsInstance.stop() would wait 5 s per daemon
    # here because PID 1 reaps detached daemons late).
    for n in NODES:
        inst = ovs_for(n)
        for daemon in ("ovs-vswitchd", "ovsdb-server"):
            pid = inst.pid(daemon)
            if _alive(pid) and inst.base_dir in _proc_cmdline(pid):
                _terminate(pid)
    for n in NODES:
        ns.delete(vm_ns(n))
    for n in NODES:
        ns.delete(node_ns(n))
    ns.delete(FAB)
    shutil.rmtree(BASE, ignore_errors=True)


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


def wait_link(name, netns, timeout=5.0):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if ns.link_exists(name, netns=netns):
            return
        time.sleep(0.05)
    raise LabError(f"interface {name} did not appear in {netns}")


# PITFALL 1 (the one that breaks the data path): br-tun LOCAL (198.19.0.x), ex-t1
# (198.19.100.x) and eth1 share one L2 segment in the node namespace. With Linux defaults
# (arp_ignore=0) the kernel answers an ARP "who-has 198.19.100.12" on *every* interface of
# that segment (ARP flux), so the remote OVS can learn the br-tun MAC for the ex-t1 IP in its
# tunnel neighbour cache (tnl/neigh/show). GRE then arrives with dst MAC = br-tun MAC and
# dst IP = ex-t1 IP; OVS only terminates native tunnels on exact (MAC, IP) pairs of its own
# internal ports (tnl/ports/show -v), so the packet goes up to the kernel and is dropped.
# Fix: arp_ignore=1 (answer only for addresses configured on the receiving interface) and
# arp_announce=2 (use the best local source address for the outgoing interface).
ARP_SYSCTLS = ("net.ipv4.conf.all.arp_ignore=1", "net.ipv4.conf.default.arp_ignore=1",
               "net.ipv4.conf.all.arp_announce=2", "net.ipv4.conf.default.arp_announce=2")
ARP_FIX = True


def build_node(n):
    cfg = NODES[n]
    peer = NODES[cfg["peer"]]
    nsn = node_ns(n)
    ns.add(nsn)
    if ARP_FIX:
        sh(["sysctl", "-q", "-w", *ARP_SYSCTLS], netns=nsn)
    veth_to_fabric(n, "mgmt", "mgmt", f"m-{n}")
    sh(["ip", "addr", "add", f"{cfg['mgmt']}/24", "dev", "mgmt"], netns=nsn)
    veth_to_fabric(n, "eth1", "transport", f"t-{n}")

    ovs = ovs_for(n)
    ovs.start()

    # common tunnel bridge: standalone, default NORMAL flow, eth1 + transport IP on LOCAL.
    ovs.vsctl("add-br", "br-tun", "--", "set", "bridge", "br-tun", "datapath_type=netdev",
              "fail_mode=standalone")
    ovs.vsctl("add-port", "br-tun", "eth1")
    wait_link("br-tun", nsn)
    sh(["ip", "addr", "add", f"{cfg['transport']}/24", "dev", "br-tun"], netns=nsn)
    sh(["ip", "link", "set", "br-tun", "up"], netns=nsn)

    # tenant endpoint ex-t1: internal port on br-tun holding the tenant transport address.
    ovs.vsctl("add-port", "br-tun", "ex-t1", "--", "set", "interface", "ex-t1", "type=internal")
    wait_link("ex-t1", nsn)
    sh(["ip", "addr", "add", f"{cfg['ex']}/24", "dev", "ex-t1"], netns=nsn)
    sh(["ip", "link", "set", "ex-t1", "up"], netns=nsn)

    # tenant bridges
    for br in ("brint-t1", "brtun-t1"):
        ovs.vsctl("add-br", br, "--", "set", "bridge", br, "datapath_type=netdev",
                  "fail_mode=secure", "protocols=OpenFlow13")
    ovs.vsctl("add-port", "brint-t1", "pi-t1", "--", "set", "interface", "pi-t1", "type=patch",
              "options:peer=pt-t1",
              "--", "add-port", "brtun-t1", "pt-t1", "--", "set", "interface", "pt-t1",
              "type=patch", "options:peer=pi-t1")
    gre = f"gre-t1-{cfg['peer']}"
    ovs.vsctl("add-port", "brtun-t1", gre, "--", "set", "interface", gre, "type=gre",
              f"options:remote_ip={peer['ex']}", f"options:local_ip={cfg['ex']}",
              "options:key=flow")

    # VM
    vns = vm_ns(n)
    tap = f"tap-{cfg['vm']}"
    ns.add(vns)
    sh(["ip", "link", "add", tap, "type", "veth", "peer", "name", "eth0", "netns", vns],
       netns=nsn)
    sh(["ip", "link", "set", tap, "up"], netns=nsn)
    sh(["ip", "link", "set", "eth0", "address", cfg["vm_mac"], "mtu", "1400"], netns=vns)
    sh(["ip", "addr", "add", f"{cfg['vm_ip']}/24", "dev", "eth0"], netns=vns)
    sh(["ethtool", "-K", "eth0", "tx", "off"], netns=vns)
    sh(["ip", "link", "set", "eth0", "up"], netns=vns)
    ovs.vsctl("add-port", "brint-t1", tap, "tag=100")

    # flows (what the controller will install)
    ovs.ofctl("add-flow", "brint-t1", "table=0,priority=0,actions=NORMAL")
    flows = [
        "table=0,priority=100,in_port=pt-t1,actions=goto_table:1",
        f"table=0,priority=100,in_port={gre},tun_id={SEG},"
        f"actions=push_vlan:0x8100,set_field:{VLAN_VID}->vlan_vid,output:pt-t1",
        "table=0,priority=0,actions=drop",
        f"table=1,priority=200,dl_vlan={SEG},dl_dst={peer['vm_mac']},"
        f"actions=pop_vlan,set_field:{SEG}->tun_id,output:{gre}",
        f"table=1,priority=100,dl_vlan={SEG},"
        f"actions=pop_vlan,set_field:{SEG}->tun_id,output:{gre}",
        "table=1,priority=0,actions=drop",
    ]
    for f in flows:
        ovs.ofctl("add-flow", "brtun-t1", f)
    return ovs


def dump_state(label):
    for n in NODES:
        ovs = ovs_for(n)
        log(f"--- {label}: {n} ---")
        for args in (("ovs/route/show",), ("tnl/neigh/show",), ("tnl/ports/show", "-v")):
            out = ovs.appctl(*args, check=False)
            log(f"$ ovs-appctl {' '.join(args)}\n{(out.stdout or out.stderr).rstrip()}")
        for br in ("brtun-t1",):
            out = ovs.ofctl("dump-flows", br, "--no-stats", check=False)
            log(f"$ ovs-ofctl -O OpenFlow13 dump-flows {br}\n{out.stdout.rstrip()}")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--keep", action="store_true", help="leave the lab up for inspection")
    ap.add_argument("--cleanup", action="store_true", help="only tear down")
    ap.add_argument("--no-arp-fix", action="store_true",
                    help="leave arp_ignore/arp_announce at Linux defaults (reproduces pitfall 1)")
    args = ap.parse_args()
    global ARP_FIX
    ARP_FIX = not args.no_arp_fix

    if os.geteuid() != 0:
        sys.exit("must run as root")
    cleanup()
    if args.cleanup:
        return 0

    def on_signal(signum, frame):
        raise KeyboardInterrupt
    signal.signal(signal.SIGTERM, on_signal)

    try:
        build_fabric()
        for n in NODES:
            build_node(n)
        log("lab built")

        n1 = ovs_for("n1")
        vm2 = NODES["n2"]

        # Control check + pre-warm: the ex- endpoints reach each other through br-tun (kernel
        # path). The ARP replies cross br-tun, and OVS snoops them into its tunnel neighbour
        # cache, so the first VM packets are not dropped for a cache miss (PITFALL 2: on a
        # miss OVS sends its own ARP request from the ex- port and drops the packet).
        for a, b in (("n1", "n2"), ("n2", "n1")):
            p = sh(["ping", "-c", "2", "-i", "0.2", "-W", "1", "-I", "ex-t1", NODES[b]["ex"]],
                   netns=node_ns(a), check=False)
            check(f"kernel ping ex-t1 {a} -> {b} (tenant transport underlay)", p.returncode == 0)
        for n in NODES:
            out = ovs_for(n).appctl("tnl/neigh/show").stdout
            log(f"{n} tnl/neigh/show after pre-warm:\n{out.rstrip()}")

        # 1. ping vm1 -> vm2 (first packets resolve ARP for the remote ex- endpoint).
        p = sh(["ping", "-c", "5", "-i", "0.2", "-W", "2", vm2["vm_ip"]],
               netns=vm_ns("n1"), check=False)
        loss = re.search(r"(\d+)% packet loss", p.stdout or "")
        check("ping vm1 -> vm2", p.returncode == 0, loss.group(0) if loss else p.stdout)
        if p.returncode != 0:
            dump_state("after failed ping")
        p = sh(["ping", "-c", "3", "-i", "0.2", "-W", "2", NODES["n1"]["vm_ip"]],
               netns=vm_ns("n2"), check=False)
        check("ping vm2 -> vm1", p.returncode == 0)
        p = sh(["ping", "-c", "2", "-i", "0.2", "-W", "2", "-M", "do", "-s", "1372",
                vm2["vm_ip"]], netns=vm_ns("n1"), check=False)
        check("ping vm1 -> vm2 full 1400-byte IP packet, DF set", p.returncode == 0)

        # 2. iperf3 TCP 2 s
        server = subprocess.Popen(["ip", "netns", "exec", vm_ns("n2"), "iperf3", "-s", "-1",
                                   "-B", vm2["vm_ip"]],
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                  start_new_session=True)
        try:
            time.sleep(0.5)
            c = sh(["iperf3", "-c", vm2["vm_ip"], "-t", "2", "-J"], netns=vm_ns("n1"),
                   check=False, timeout=30)
            mbps = None
            try:
                data = json.loads(c.stdout)
                mbps = data["end"]["sum_received"]["bits_per_second"] / 1e6
                retr = data["end"]["sum_sent"].get("retransmits")
            except (ValueError, KeyError):
                retr = None
            check("iperf3 TCP 2 s vm1 -> vm2", bool(mbps and mbps > 10),
                  f"{mbps:.1f} Mbit/s received, {retr} retransmits" if mbps
                  else (c.stdout or c.stderr)[-500:])
        finally:
            if server.poll() is None:
                os.killpg(server.pid, signal.SIGTERM)
            server.wait(timeout=5)

        # 3. ofproto/trace
        trace_args = ("ofproto/trace", "brtun-t1",
                      f"in_port=pt-t1,dl_vlan={SEG},dl_src={NODES['n1']['vm_mac']},"
                      f"dl_dst={vm2['vm_mac']},dl_type=0x0800,nw_src=10.0.0.1,nw_dst=10.0.0.2")
        t = n1.appctl(*trace_args, check=False)
        out = t.stdout or t.stderr
        log("$ ovs-appctl --target=<rundir>/ovs-vswitchd.ctl " + " ".join(
            f"'{a}'" if "," in a else a for a in trace_args))
        log(out)
        gre_ofport = n1.vsctl("get", "interface", "gre-t1-n2", "ofport").stdout.strip()
        ok = ("set_field:0x64->tun_id" in out and f"output:{gre_ofport}" in out
              and "-> output to native tunnel" in out and "tnl_push(" in out
              and "key=0x64" in out)
        check("ofproto/trace shows GRE output with tun_id 100 (native tnl_push)", ok)

        dump_state("final")
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
