"""Pure tests of the experiment framework: the eight-field records, the spec, the results
directory and the prober's packet code. No root, no lab."""

import math
import os
import struct

import pytest

from tenantnet.errors import ConfigError
from tenantnet.experiment import analysis, prober
from tenantnet.experiment.results import ResultsDir
from tenantnet.experiment.spec import (check_mode, load_spec, load_spec_text, parse_modes,
                                       spec_from_dict)

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def row(status, ms=None, repeat=1, existed=None, mode="dnb", n=4, k=1):
    return {"mode": mode, "instances": n, "networks": k, "repeat": repeat, "status": status,
            "reachability_ms": ms, "ready_ms": None if ms is None else ms / 2,
            "bridges_existed": existed, "vm": "vm"}


# -- records --------------------------------------------------------------------------
def test_std_ms_uses_n_minus_1_zero_for_one_none_for_none():
    assert analysis.record([row("failed")])["std_ms"] is None
    assert analysis.record([row("success", 42.0)])["std_ms"] == 0.0
    assert analysis.record([row("success", v) for v in (1.0, 3.0)])["std_ms"] == \
        pytest.approx(math.sqrt(2.0), abs=1e-3)
    values = [2, 4, 4, 4, 5, 5, 7, 9]          # population std 2, sample std sqrt(32/7)
    assert analysis.record([row("success", v) for v in values])["std_ms"] == \
        pytest.approx(math.sqrt(32 / 7), abs=1e-3)


def test_record_counts_failed_and_missing_and_averages_successes_only():
    rows = [row("success", 100.0, existed=False), row("success", 300.0, existed=True),
            row("failed"), row("missing"), row("missing")]
    rec = analysis.record(rows)
    assert tuple(rec)[:9] == analysis.RECORD_FIELDS
    assert (rec["mode"], rec["instances"], rec["networks"]) == ("dnb", 4, 1)
    assert (rec["total"], rec["success"], rec["failed"], rec["missing"]) == (5, 2, 1, 2)
    assert rec["mean_ms"] == 200.0
    assert rec["std_ms"] == pytest.approx(math.sqrt(20000.0), abs=1e-3)
    assert rec["median_ms"] == 200.0 and rec["min_ms"] == 100.0 and rec["max_ms"] == 300.0
    assert rec["mean_ms_bridges_created"] == 100.0 and rec["mean_ms_bridges_existed"] == 300.0
    assert rec["mean_ready_ms"] == 100.0


def test_record_with_one_success_has_zero_std():
    rec = analysis.record([row("success", 123.4), row("failed")])
    assert rec["success"] == 1 and rec["mean_ms"] == 123.4 and rec["std_ms"] == 0.0


def test_record_without_success_has_no_mean_and_no_std():
    rec = analysis.record([row("failed"), row("missing")])
    assert (rec["total"], rec["success"], rec["failed"], rec["missing"]) == (2, 0, 1, 1)
    assert rec["mean_ms"] is None and rec["std_ms"] is None and rec["median_ms"] is None


def test_record_of_nothing():
    rec = analysis.record([], mode="cnb", instances=5, networks=2)
    assert rec["total"] == 0 and rec["mean_ms"] is None and rec["mode"] == "cnb"


def test_record_refuses_unknown_status():
    with pytest.raises(ValueError, match="status"):
        analysis.record([row("lost")])


def test_records_pool_repeats_and_keep_groups_apart():
    rows = [row("success", 10.0, repeat=1), row("success", 30.0, repeat=2),
            row("success", 50.0, mode="cnb"), row("missing", n=8, k=2)]
    recs = analysis.records(rows)
    assert [(r["mode"], r["instances"], r["networks"]) for r in recs] == \
        [("dnb", 4, 1), ("cnb", 4, 1), ("dnb", 8, 2)]
    assert recs[0]["total"] == 2 and recs[0]["mean_ms"] == 20.0 and recs[0]["repeats"] == 2
    assert recs[2]["missing"] == 1 and recs[2]["mean_ms"] is None


# -- spec ---------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["quick", "paper", "ci"])
def test_shipped_specs_load(name):
    spec = load_spec(os.path.join(ROOT, "configs", "experiments", f"{name}.yaml"))
    assert spec.name == name and spec.modes == ["dnb", "cnb"]
    check_mode(spec, "dnb")


def test_paper_preset():
    spec = load_spec(os.path.join(ROOT, "configs", "experiments", "paper.yaml"))
    assert spec.lab.compute_nodes == 5
    assert spec.reachability.instances == [5, 10, 20, 40, 80]
    assert spec.reachability.networks == [1, 2, 4, 8]
    assert spec.bandwidth.udp_rate == "1M" and spec.bandwidth.duration_s == 20


def test_defaults():
    spec = spec_from_dict({"name": "x"})
    assert spec.modes == ["dnb", "cnb"] and spec.lab.compute_nodes == 5
    assert spec.reachability.probe_interval_ms == 5 and spec.bandwidth.udp_rate == "100M"
    assert spec.reachability.prepare_vms is False
    assert spec_from_dict({"name": "x", "reachability": {"prepare_vms": True}}) \
        .reachability.prepare_vms is True


@pytest.mark.parametrize("text,key,problem", [
    ("name: x\nbogus: 1\n", "bogus", "unknown key"),
    ("name: x\nlab: {compute_nodes: 0}\n", "lab.compute_nodes", ">= 1"),
    ("name: x\nreachability: {instances: [2, 0]}\n", "reachability.instances[1]",
     "positive integer"),
    ("name: x\nreachability: {instances: []}\n", "reachability.instances", "empty"),
    ("name: x\nreachability: {networks: [1, 1]}\n", "reachability.networks[1]", "duplicate"),
    ("name: x\nreachability: {instances: [500], networks: [1]}\n", "reachability.instances",
     "/24"),
    ("name: x\nreachability: {repeats: two}\n", "reachability.repeats", "expected an integer"),
    ("name: x\nreachability: {speed: 1}\n", "reachability.speed", "unknown key"),
    ("name: x\nreachability: {prepare_vms: 1}\n", "reachability.prepare_vms",
     "expected a boolean"),
    ("name: x\nmodes: [dnb, xnb]\n", "modes[1]", "unknown mode"),
    ("name: x\nbandwidth: {protocols: [tcp, sctp]}\n", "bandwidth.protocols[1]",
     "unknown protocol"),
    ("name: x\nbandwidth: {udp_rate: fast}\n", "bandwidth.udp_rate", "not a rate"),
    ("name: x\ntuning: {vm_mtu: 100}\n", "tuning.vm_mtu", "576..9000"),
    ("lab: {}\n", "name", "missing required key"),
    ("name: [x\n", "", "malformed YAML"),
])
def test_bad_specs_name_file_key_and_problem(text, key, problem):
    with pytest.raises(ConfigError) as err:
        load_spec_text(text, source="spec.yaml")
    msg = str(err.value)
    assert msg.startswith("spec.yaml: ") and problem in msg
    assert err.value.key == key


def test_missing_file_is_a_config_error(tmp_path):
    with pytest.raises(ConfigError, match="cannot read file"):
        load_spec(str(tmp_path / "nope.yaml"))


def test_udp_rate_preset_and_modes_option():
    assert spec_from_dict({"name": "x", "bandwidth": {"udp_rate": "paper"}}).bandwidth.udp_rate \
        == "1M"
    assert parse_modes("dnb, cnb,dnb") == ["dnb", "cnb"]
    with pytest.raises(ConfigError, match="unknown mode"):
        parse_modes("dnb,foo")


def test_generated_lab_config_is_valid_and_has_no_vms():
    from tenantnet.model import config
    spec = spec_from_dict({"name": "x", "lab": {"compute_nodes": 3},
                           "tuning": {"vm_mtu": 1300}})
    topo = config.load_text(spec.lab_config_text("dnb", 4), source="gen")
    assert [n.name for n in topo.compute_nodes()] == ["compute1", "compute2", "compute3"]
    assert [n.name for n in topo.network_nodes()] == ["net1"]
    assert sorted(topo.networks()) == ["t1/net1", "t2/net2", "t3/net3", "t4/net4"]
    net = topo.network("t3/net3")
    assert (net.segmentation_id, net.cidr, net.transport_cidr) == \
        (103, "10.3.0.0/24", "198.19.103.0/24")
    assert topo.mode == "dnb" and not topo.vms() and topo.tuning.vm_mtu == 1300
    assert topo.node("compute2").management_ip == "198.18.0.12"
    assert topo.node("net1").transport_ip == "198.19.0.2"


def test_placements_round_robin_over_networks_and_nodes():
    from tenantnet.model import config
    spec = spec_from_dict({"name": "x", "lab": {"compute_nodes": 3}})
    ps = spec.placements(12, 2)
    assert [p.name for p in ps] == [f"vm{i}" for i in range(1, 13)]
    assert [p.network_index for p in ps] == [1, 2] * 6
    for k in (1, 2):                            # every network cycles over all nodes
        nodes = [p.node for p in ps if p.network_index == k]
        assert sorted(nodes[:3]) == ["compute1", "compute2", "compute3"]
    per_node = {n: sum(1 for p in ps if p.node == n) for n in spec.compute_node_names()}
    assert set(per_node.values()) == {4}
    assert len({p.mac for p in ps}) == 12 and len({(p.network, p.ip) for p in ps}) == 12
    # every placement is acceptable to the config checks (none takes the probe's address)
    topo = config.load_text(spec.lab_config_text("dnb", 2), source="gen")
    for p in ps:
        topo.add_vm(config.vm_from_spec(topo, {"name": p.name, "network": p.network,
                                               "node": p.node, "mac": p.mac, "ip": p.ip},
                                        "test", p.name))


# -- results directory ------------------------------------------------------------------
def test_results_dir_round_trips_json_and_csv(tmp_path):
    rd = ResultsDir(str(tmp_path / "out"))
    rows = [{"a": 1, "b": None, "c": True, "d": 1.5},
            {"a": 2, "e": "x,y", "f": [1, 2], "c": False}]
    rd.write_csv("t.csv", rows)
    with open(rd.path("t.csv")) as fh:
        assert fh.readline().strip() == "a,b,c,d,e,f"      # stable: first-seen order
    back = rd.read_csv("t")
    assert back[0] == {"a": 1, "b": None, "c": True, "d": 1.5, "e": None, "f": None}
    assert back[1]["e"] == "x,y" and back[1]["f"] == [1, 2] and back[1]["c"] is False
    rd.write_csv("u", rows, columns=["f", "a"])
    assert list(rd.read_csv("u")[0]) == ["f", "a", "b", "c", "d", "e"]
    rd.write_json("m", {"k": [1, {"x": None}]})
    assert rd.read_json("m.json") == {"k": [1, {"x": None}]}
    assert rd.read_json("absent", default=None) is None
    rd.write_csv("empty", [], columns=["x", "y"])
    assert rd.read_csv("empty") == []


# -- prober packets -----------------------------------------------------------------
def test_echo_frame_checksums_and_reply_parsing():
    src_mac = prober._mac_bytes("02:00:00:00:00:01")
    dst_mac = prober._mac_bytes("02:00:00:00:00:02")
    src_ip, dst_ip = prober._ip_bytes("10.1.0.1"), prober._ip_bytes("10.1.0.11")
    frame = prober.echo_frame(src_mac, dst_mac, src_ip, dst_ip, 0x1234, 7)
    assert frame[:6] == dst_mac and frame[6:12] == src_mac and frame[12:14] == b"\x08\x00"
    ip = frame[14:34]
    assert prober.checksum(ip) == 0                           # valid IPv4 header checksum
    icmp = frame[34:]
    assert prober.checksum(icmp) == 0 and icmp[0] == 8
    assert struct.unpack("!HH", icmp[4:8]) == (0x1234, 7)
    # turn it into the reply the target would send
    reply_ip = ip[:12] + dst_ip + src_ip
    reply = src_mac + dst_mac + b"\x08\x00" + reply_ip + b"\x00" + icmp[1:]
    assert prober.parse_reply(reply, 0x1234, src_ip) == dst_ip
    assert prober.parse_reply(reply, 0x9999, src_ip) is None           # not our identifier
    assert prober.parse_reply(frame, 0x1234, src_ip) is None           # a request
    assert prober.parse_reply(reply[:30], 0x1234, src_ip) is None


def test_prober_targets(tmp_path):
    path = tmp_path / "t.json"
    path.write_text('[{"ip": "10.0.0.2", "mac": "02:00:00:00:00:02"}]')
    got = prober.load_targets(str(path), ["10.0.0.3=02:00:00:00:00:03"])
    assert got == [("10.0.0.2", "02:00:00:00:00:02"), ("10.0.0.3", "02:00:00:00:00:03")]
    with pytest.raises(prober.ProberError, match="twice"):
        prober.load_targets(None, ["10.0.0.3=02:00:00:00:00:03", "10.0.0.3=02:00:00:00:00:04"])
    with pytest.raises(prober.ProberError, match="IP=MAC"):
        prober.load_targets(None, ["10.0.0.3"])
