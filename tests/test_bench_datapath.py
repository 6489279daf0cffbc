"""`tenantnet bench datapath` for real, at a small size (1 s per iperf3 run): every key the
issue names, sane values, each path's datapath flows, and nothing it built left afterwards
(prefixes tnbdb, tnbdc, tnbdd). No speed assertions: the targets live in the bench's own
output (docs/performance.md). The parser of the datapath's dumps is checked on its own
first, on text in the format ovs-appctl prints."""

import json
import os
import subprocess
import sys

import pytest

from conftest import ROOT, lab_namespaces, lab_prerequisites
from tenantnet.bench import dpflows

KEYS = {"veth_gbps", "flat_ovs_gbps", "cnb_gbps", "dnb_gbps", "dnb_over_cnb"}
PATHS = ("veth", "flat_ovs", "cnb", "dnb")

BEFORE = """flow-dump from the main thread:
ufid:aaaa, skb_priority(0/0),recirc_id(0),dp_hash(0/0),in_port(eth1),packet_type(ns=0,id=0),\
eth(src=32:35:c6:4e:7f:4e/00:00:00:00:00:00,dst=de:14:c2:21:dc:40),eth_type(0x0800),\
ipv4(src=198.19.0.11/0.0.0.0,dst=198.19.0.2,proto=47,frag=no), packets:100, bytes:1000, \
used:0.018s, dp:ovs, actions:tnl_pop(gre_sys), dp-extra-info:miniflow_bits(5,2)
"""
AFTER = BEFORE.replace("packets:100, bytes:1000", "packets:250, bytes:2500") + """\
ufid:bbbb, skb_priority(0/0),tunnel(tun_id=0x64,src=198.19.0.11,dst=198.19.0.2,\
flags(-df-csum+key)),recirc_id(0),in_port(gre_sys),eth_type(0x0800),ipv4(frag=no), \
packets:150, bytes:1400, used:0.018s, flags:SFPR., dp:ovs, actions:prb-x, \
dp-extra-info:miniflow_bits(9,1)
ufid:cccc, recirc_id(0),in_port(prb-x),eth_type(0x0800),ipv4(frag=no), packets:400, \
bytes:560000, used:0.010s, flags:SFP., dp:ovs, actions:push_vlan(vid=1,pcp=0),pop_vlan,\
tnl_push(tnl_port(gre_sys),header(size=42,type=3,eth(dst=32:35:c6:4e:7f:4e,\
src=de:14:c2:21:dc:40,dl_type=0x0800),ipv4(src=198.19.0.2,dst=198.19.0.11,proto=47,tos=0,\
ttl=64,frag=0x4000),gre((flags=0x2000,proto=0x6558),key=0x64)),out_port(br-tun)),eth1
ufid:dddd, recirc_id(0),in_port(eth1),eth_type(0x86dd),ipv6(frag=no), packets:0, bytes:0, \
used:never, dp:ovs, actions:drop
"""
PMD = """main thread:
  packets received: 300
  packet recirculations: 150
  avg. datapath passes per packet: 1.50
  emc hits: 440
  megaflow hits: 8
  avg. subtable lookups per megaflow hit: 1.25
  miss with success upcall: 2
  miss with failed upcall: 0
"""


def test_dump_parsing_and_summary():
    flows = dpflows.delta(BEFORE, AFTER)
    assert [(f.in_port, f.packets) for f in flows] == [("eth1", 150), ("gre_sys", 150),
                                                        ("prb-x", 400)]
    s = dpflows.summary({"net1": flows})
    assert (s["flows"], s["recirc_flows"], s["recirculations"], s["packets"]) == \
        (3, 1, 150, 700)
    top = s["hops"][0]
    assert top["in_port"] == "prb-x" and top["n_actions"] == 4
    assert top["actions"] == ["push_vlan", "pop_vlan", "tnl_push", "output:eth1"]
    assert [h["second_pass"] for h in s["hops"]] == [False, False, True]
    stats = dpflows.pmd_summary({"net1": PMD})["net1"]
    assert stats["passes_per_packet"] == 1.5 and stats["upcalls"] == 2
    assert stats["lookups_per_megaflow_hit"] == 1.25


def bench(*args, timeout=600):
    return subprocess.run([sys.executable, "-m", "tenantnet.cli", "bench", "datapath", *args],
                          cwd=ROOT, capture_output=True, text=True, timeout=timeout)


def left():
    found = []
    for prefix in ("tnbdb", "tnbdc", "tnbdd"):
        found += lab_namespaces(prefix)
        if os.path.exists(os.path.join("/run/tenantnet", prefix, "state.json")):
            found.append(f"/run/tenantnet/{prefix}/state.json")
    if os.path.exists("/run/tenantnet-baseline/tnbdb"):
        found.append("/run/tenantnet-baseline/tnbdb")
    return found


def test_bad_arguments_are_one_line():
    proc = bench("--seconds", "0")
    assert proc.returncode == 1
    assert proc.stderr.startswith("tenantnet: bench datapath: --seconds 0"), proc.stderr
    assert "Traceback" not in proc.stderr


@pytest.mark.lab
@pytest.mark.integration
@pytest.mark.skipif(lab_prerequisites() is not None, reason=lab_prerequisites() or "")
def test_bench_datapath_json():
    assert left() == []
    proc = bench("--seconds", "1", "--json")
    assert proc.returncode == 0, proc.stderr + proc.stdout
    r = json.loads(proc.stdout)
    assert KEYS <= set(r), r
    for path in PATHS:
        for key in (f"{path}_gbps", f"{path}_1stream_gbps"):
            assert isinstance(r[key], float) and 0.001 < r[key] < 1000, (key, r[key])
    assert r["dnb_over_cnb"] == pytest.approx(r["dnb_gbps"] / r["cnb_gbps"], rel=0.01)
    assert r["dnb_over_cnb_1stream"] == pytest.approx(
        r["dnb_1stream_gbps"] / r["cnb_1stream_gbps"], rel=0.01)
    assert all(len(v) == 1 and v[0] > 0 for v in r["rounds"].values()), r["rounds"]
    flows = r["datapath_flows"]
    assert set(flows) == set(PATHS)
    assert flows["veth"]["flows"] == 0                     # no switch on that path
    assert flows["flat_ovs"]["flows"] >= 2 and flows["flat_ovs"]["recirc_flows"] == 0
    for mode in ("cnb", "dnb"):
        f = flows[mode]
        # GRE over the userspace datapath: encapsulation on the way out, and a second pass
        # (tnl_pop) on the way in, on both nodes
        actions = {a for hop in f["hops"] for a in hop["actions"]}
        assert {"tnl_push", "tnl_pop"} <= actions, (mode, f["hops"])
        assert f["recirc_flows"] >= 2 and 0 < f["recirculations"] < f["packets"], (mode, f)
        assert {h["where"] for h in f["hops"]} == {"compute1", "net1"}
        assert all(h["n_actions"] == len(h["actions"]) >= 1 for h in f["hops"])
        stats = r["pmd_stats"][mode]
        assert set(stats) == {"compute1", "net1"}
        for node, s in stats.items():
            assert s["packets"] > 0 and 1.0 < s["passes_per_packet"] < 3.0, (mode, node, s)
    assert r["pmd_stats"]["flat_ovs"]["flat"]["passes_per_packet"] == 1.0
    assert left() == []
