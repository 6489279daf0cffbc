"""iperf3 JSON parsing (real iperf3 3.12 output captured here), bandwidth statistics, and
figures + report rendered from small synthetic results directories."""

import copy
import json
import math
import os
import random
import re
import statistics

import pytest

from tenantnet.experiment import bandwidth as bw
from tenantnet.experiment import analysis, claims, iperf, plots, report
from tenantnet.experiment.results import ResultsDir

DATA = os.path.join(os.path.dirname(os.path.abspath(__file__)), "data")


def fixture(name):
    with open(os.path.join(DATA, name)) as fh:
        return json.load(fh)


# -- iperf3 JSON ---------------------------------------------------------------------------
def test_parse_tcp_real_output():
    doc = fixture("iperf3_tcp.json")
    rec = iperf.parse(doc)
    end = doc["end"]
    assert rec["protocol"] == "tcp"
    assert rec["bits_per_second"] == end["sum_received"]["bits_per_second"]
    assert rec["sender_bits_per_second"] == end["sum_sent"]["bits_per_second"]
    assert rec["retransmits"] == end["sum_sent"]["retransmits"]
    assert rec["tcp_congestion"] == end["sender_tcp_congestion"]
    assert rec["iperf_version"] == "iperf 3.12"
    assert rec["duration_s"] == 1.0 and rec["streams"] == 1
    assert rec["bits_per_second"] > 1e6


def test_parse_udp_real_output_with_loss():
    doc = fixture("iperf3_udp_loss.json")
    rec = iperf.parse(doc)
    end = doc["end"]
    assert rec["protocol"] == "udp"
    # received rate, not the sent one that 3.12 puts into "sum"
    assert rec["bits_per_second"] == end["sum_received"]["bits_per_second"]
    assert rec["sender_bits_per_second"] == end["sum_sent"]["bits_per_second"]
    assert rec["bits_per_second"] < rec["sender_bits_per_second"]
    assert rec["packets"] == end["sum"]["packets"]
    assert rec["lost_packets"] == end["sum"]["lost_packets"] > 0
    assert rec["lost_percent"] == pytest.approx(end["sum"]["lost_percent"])
    assert rec["jitter_ms"] == pytest.approx(end["sum"]["jitter_ms"])
    # 3.12 has no out_of_order in "sum": it comes from the per-stream records
    assert "out_of_order" not in end["sum"]
    assert rec["out_of_order"] == sum(s["udp"]["out_of_order"] for s in end["streams"])


def test_udp_out_of_order_sources():
    doc = fixture("iperf3_udp_loss.json")
    streams = copy.deepcopy(doc)
    streams["end"]["streams"][0]["udp"]["out_of_order"] = 7
    assert iperf.parse(streams)["out_of_order"] == 7
    # only the embedded server output has it
    srv = copy.deepcopy(doc)
    del srv["end"]["streams"][0]["udp"]["out_of_order"]
    srv["server_output_json"]["end"]["streams"][0]["udp"]["out_of_order"] = 3
    assert iperf.parse(srv)["out_of_order"] == 3
    # a version that reports it in "sum" wins
    summed = copy.deepcopy(doc)
    summed["end"]["sum"]["out_of_order"] = 11
    assert iperf.parse(summed)["out_of_order"] == 11
    # nowhere: unknown, not zero
    none = copy.deepcopy(doc)
    del none["end"]["streams"][0]["udp"]["out_of_order"]
    del none["server_output_json"]
    assert iperf.parse(none)["out_of_order"] is None


def test_error_output_raises_with_iperf_text():
    doc = fixture("iperf3_error.json")
    with pytest.raises(iperf.IperfError, match="Connection refused"):
        iperf.parse(doc)
    with pytest.raises(iperf.IperfError, match="not JSON"):
        iperf.load_json("iperf3: error - unable to connect")
    with pytest.raises(iperf.IperfError, match="no output"):
        iperf.load_json("")
    srv = fixture("iperf3_tcp.json")
    srv["server_output_json"] = {"error": "the server is busy"}
    with pytest.raises(iperf.IperfError, match="server: the server is busy"):
        iperf.parse(srv)


def test_load_json_tolerates_text_around_json():
    text = "warning: something\n" + json.dumps(fixture("iperf3_tcp.json")) + "\n"
    assert iperf.protocol_of(iperf.load_json(text)) == "tcp"


# -- summarise (analysis) -----------------------------------------------------------------------------
def _row(mode, proto, direction, bps, **kw):
    r = {"mode": mode, "protocol": proto, "direction": direction, "bits_per_second": bps}
    r.update(kw)
    return r


def test_summarise_stats():
    rows = [_row("dnb", "tcp", "probe->vm", 100.0), _row("dnb", "tcp", "probe->vm", 200.0),
            _row("dnb", "tcp", "vm->probe", 300.0), _row("dnb", "tcp", "vm->probe", 500.0),
            _row("dnb", "udp", "probe->vm", 1.0, jitter_ms=0.1, packets=90, lost_packets=0,
                 lost_percent=0.0, out_of_order=0),
            _row("dnb", "udp", "vm->probe", 3.0, jitter_ms=0.3, packets=110, lost_packets=2,
                 lost_percent=2.0, out_of_order=None),
            _row("veth", "tcp", "probe->vm", "1000.0")]           # raw CSV strings work too
    s = analysis.summarise(rows)
    assert list(s) == ["dnb", "veth"]
    t = s["dnb"]["tcp"]
    assert t["probe->vm"]["mean"] == 150.0
    assert t["probe->vm"]["std"] == pytest.approx(statistics.stdev([100, 200]))
    assert t["vm->probe"]["mean"] == 400.0
    assert t["combined"]["n"] == 4
    assert t["combined"]["mean"] == 275.0
    assert t["combined"]["std"] == pytest.approx(statistics.stdev([100, 200, 300, 500]))
    u = s["dnb"]["udp"]
    assert u["bits_per_second"]["combined"]["mean"] == 2.0
    assert u["jitter_ms"]["combined"]["std"] == pytest.approx(statistics.stdev([0.1, 0.3]))
    assert u["packets"]["combined"]["mean"] == 100.0
    assert u["lost_packets"]["combined"]["mean"] == 1.0
    assert u["out_of_order"]["combined"] == {"n": 1, "mean": 0.0, "std": None, "min": 0.0,
                                             "max": 0.0}
    assert u["bits_per_second"]["probe->vm"]["std"] is None          # one value: no spread
    assert s["veth"]["tcp"]["probe->vm"]["mean"] == 1000.0
    assert s["veth"]["udp"] == {}
    flat = analysis.summary_rows(s)
    assert {"mode": "dnb", "protocol": "tcp", "metric": "bits_per_second",
            "direction": "combined", "n": 4, "mean": 275.0,
            "std": pytest.approx(statistics.stdev([100, 200, 300, 500]))} in flat


def test_settings_defaults_and_checks():
    cfg = bw.settings({"bandwidth": {"duration_s": 2.5, "udp_rate": "1M", "vms": 3,
                                     "protocols": ["TCP"]}})
    assert cfg["duration_s"] == 3 and cfg["vms"] == 3 and cfg["protocols"] == ["tcp"]

    class Spec:
        class bandwidth:
            duration_s, udp_rate, vms, protocols = 1.0, "100M", 2, ["tcp", "udp"]
    assert bw.settings(Spec)["udp_rate"] == "100M"
    with pytest.raises(bw.BandwidthError, match="protocols"):
        bw.settings({"bandwidth": {"protocols": ["sctp"]}})
    with pytest.raises(bw.BandwidthError, match="vms"):
        bw.settings({"bandwidth": {"vms": 0}})


# -- synthetic results directories ------------------------------------------------------------
RECORD_KEYS = ("mode", "instances", "networks", "total", "success", "failed", "missing",
               "mean_ms", "std_ms")


def _instances(rng, mode, n, k, compute=3, repeat=0, creator_ms=900.0, other_ms=300.0,
               slope_ms=0.0):
    """n instances over k networks, round robin over nodes; the first VM of a network on a
    node creates its bridges (DNB only)."""
    rows, seen, t0 = [], set(), 1000.0
    for i in range(n):
        net, m = i % k, i // k
        node = f"compute{(m + net) % compute + 1}"
        first = (net, node) not in seen
        seen.add((net, node))
        existed = not (mode == "dnb" and first)
        base = creator_ms if not existed else other_ms
        ms = max(1.0, rng.gauss(base, base * 0.1)) + slope_ms * i     # queueing in a batch
        status = "success"
        if mode == "cnb" and i == n - 1 and n >= 8:
            status = "missing"
        req = t0 + i * 0.001
        rows.append({"mode": mode, "instances": n, "networks": k, "repeat": repeat,
                     "vm": f"vm{i + 1}", "node": node, "network": f"t{net + 1}/net{net + 1}",
                     "bridges_existed": existed, "request_time": req, "ready_time": req + 0.05,
                     "reachable_time": req + ms / 1000 if status == "success" else None,
                     "reachability_ms": ms if status == "success" else None,
                     "status": status})
    return rows


def _records(inst_rows):
    groups = {}
    for r in inst_rows:
        groups.setdefault((r["mode"], r["instances"], r["networks"]), []).append(r)
    out = []
    for (mode, n, k), rs in groups.items():
        ok = [r["reachability_ms"] for r in rs if r["status"] == "success"]
        out.append({"mode": mode, "instances": n, "networks": k, "total": len(rs),
                    "success": len(ok), "failed": 0,
                    "missing": sum(r["status"] == "missing" for r in rs),
                    "mean_ms": statistics.fmean(ok),
                    "std_ms": statistics.stdev(ok) if len(ok) > 1 else 0.0})
    return out


def _bandwidth(rng, mode, tcp_down, tcp_up, udp, vms=2, repeats=3):
    rows = []
    for v in range(vms):
        for rep in range(repeats):
            for proto in ("tcp", "udp"):
                for d in bw.DIRECTIONS:
                    mean = (tcp_down if d == "probe->vm" else tcp_up) if proto == "tcp" else udp
                    bps = rng.gauss(mean, mean * 0.01)
                    rec = {"protocol": proto, "bits_per_second": bps,
                           "sender_bits_per_second": bps * 1.001, "iperf_version": "iperf 3.12",
                           "port": 15201, "cpu_sender_pct": 50.0, "cpu_receiver_pct": 40.0}
                    if proto == "tcp":
                        rec.update(retransmits=rng.randint(0, 50), mean_rtt_us=80.0,
                                   tcp_congestion="cubic")
                    else:
                        rec.update(jitter_ms=rng.uniform(0.01, 0.05), packets=1000,
                                   lost_packets=rng.randint(0, 3), lost_percent=0.1,
                                   out_of_order=0)
                    rows.append(bw.measurement_row(
                        mode, rec, vm=f"bw{v + 1}", node=f"compute{v + 1}", network="t1/net1",
                        n_vms=vms, direction=d, repeat=rep, duration_s=1, udp_rate="1M",
                        tuning={"mtu": 1400, "tx_offload": False, "neigh_gc_thresh": None,
                                "tcp_congestion": "cubic"}))
    return rows


def synthetic(path, variant="A", with_cnb=True, seed=1, baselines="host"):
    """A results dir. Variant A: TCP DNB 30% below CNB (claim 2 fails: outside ~8%),
    vm->probe slower than probe->vm (claim 4 fails), UDP equal (3 holds), DNB slower and
    bridge creators slower (1a, 1b hold). Variant B: DNB 8% below CNB and vm->probe faster
    (2 and 4 hold), UDP 20% apart (3 fails), no bridge effect (1b fails)."""
    rng = random.Random(seed)
    rd = ResultsDir(path)
    inst = []
    for mode in (("dnb", "cnb") if with_cnb else ("dnb",)):
        for k in (1, 2):
            for n in (4, 8, 12):
                if variant == "A":
                    cm, om = (900.0, 300.0) if mode == "dnb" else (250.0, 250.0)
                else:
                    cm, om = (300.0, 300.0)
                inst += _instances(rng, mode, n, k, creator_ms=cm, other_ms=om)
    rd.write_csv("reachability_instances.csv", inst)
    rd.write_csv("reachability.csv", _records(inst), columns=RECORD_KEYS)
    if variant == "A":
        rows = _bandwidth(rng, "dnb", 800e6, 600e6, 1e6)
        cnb = _bandwidth(rng, "cnb", 1150e6, 850e6, 1e6)
    else:
        rows = _bandwidth(rng, "dnb", 920e6, 1100e6, 1.2e6)
        cnb = _bandwidth(rng, "cnb", 1000e6, 1200e6, 1e6)
    if with_cnb:
        rows += cnb
    if baselines == "host":
        rows += _bandwidth(rng, "veth", 3000e6, 3100e6, 1e6, vms=1)
        rows += _bandwidth(rng, "ovs-flat", 1500e6, 1550e6, 1e6, vms=1)
    elif baselines == "vm":
        rows += _bandwidth(rng, "vm-transport", 1600e6, 1650e6, 1e6, vms=1)
        rows += _bandwidth(rng, "vm-ovs-flat", 1300e6, 1350e6, 1e6, vms=1)
    rd.write_csv("bandwidth.csv", rows, columns=bw.BANDWIDTH_COLUMNS)
    rd.write_json("spec.json", {"name": f"synthetic-{variant}", "modes": ["dnb", "cnb"],
                                "tuning": {"vm_mtu": 1400, "tx_checksum_offload": False}})
    return rd


def verdicts(text):
    found = dict(re.findall(r"### Claim (\w+):.*?\*\*verdict: ([a-z ]+)\*\*", text, re.S))
    return found


@pytest.fixture
def rdir(tmp_path):
    return lambda *a, **kw: synthetic(str(tmp_path / "run"), *a, **kw)


def _png_ok(path):
    with open(path, "rb") as fh:
        head = fh.read(8)
    return head == b"\x89PNG\r\n\x1a\n" and os.path.getsize(path) > 5000


def test_render_writes_every_figure(rdir):
    rd = rdir("A")
    out = plots.render(rd.root)
    assert sorted(out["written"]) == sorted(plots.FIGURES), out["skipped"]
    for name in plots.FIGURES:
        assert _png_ok(rd.path(name)), name
    assert rd.read_json("figures.json")["skipped"] == {}


def test_render_skips_missing_cnb_and_never_crashes(rdir, tmp_path):
    rd = rdir("A", with_cnb=False)
    out = plots.render(rd.root)
    assert set(out["skipped"]) == {"fig5_reachability_dnb_vs_cnb.png", "fig8_tcp_dnb_vs_cnb.png"}
    assert all("CNB" in why for why in out["skipped"].values())
    for name in out["written"]:
        assert _png_ok(rd.path(name))
    empty = tmp_path / "empty"
    empty.mkdir()
    out = plots.render(str(empty))
    assert out["written"] == {} and set(out["skipped"]) == set(plots.FIGURES)
    text = open(report.write_report(str(empty))).read()
    assert set(verdicts(text).values()) == {claims.NOT_MEASURED}


def test_report_variant_a(rdir):
    rd = rdir("A")
    text = open(report.write_report(rd.root)).read()
    v = verdicts(text)
    assert v == {"1a": "holds", "1b": "holds", "2": "does not hold", "3": "holds",
                 "4": "does not hold"}, v
    for cid, claim in claims.CLAIMS.items():
        assert claim in text
    for name in plots.FIGURES:
        assert f"![{name}]({name})" in text
    # the eight fields of every record, and the ratios to the baselines
    assert "| mode | instances | networks | total | success | failed | missing |" in text
    assert text.count("| DNB |") >= 6 and "% of veth" in text
    assert re.search(r"DNB is 3\d\.\d% lower", text)
    assert "synthetic-A" in text


def test_report_variant_b_flips_verdicts(rdir):
    rd = rdir("B")
    os.remove(rd.path("spec.json"))                 # the runner's meta.json instead
    rd.write_json("meta.json", {"name": "synthetic-B", "status": "complete",
                                "spec": {"name": "synthetic-B"},
                                "tuning": {"vm_mtu": 1400},
                                "machine": {"cpu_model": "TestCPU 9000"}})
    text = open(report.write_report(rd.root)).read()
    assert "TestCPU 9000" in text and "synthetic-B" in text and "status complete" in text
    v = verdicts(text)
    assert v == {"1a": "does not hold", "1b": "does not hold", "2": "holds",
                 "3": "does not hold", "4": "holds"}, v


def test_report_names_the_vm_baselines(rdir):
    """Node VMs: the ratios are to the same path without tenantnet on the node VMs, and
    the report says so (meta.json `baselines`, as runner.run records it)."""
    from tenantnet.experiment import baseline
    rd = rdir("A", baselines="vm")
    rd.write_json("meta.json", {"name": "synthetic-A", "status": "complete",
                                "baselines": {"kind": "vm", "nodes": ["net1", "compute1"],
                                              "modes": baseline.describe("x", "vm",
                                                                         ("net1", "compute1"))}})
    out = plots.render(rd.root)
    assert sorted(out["written"]) == sorted(plots.FIGURES), out["skipped"]
    text = open(report.write_report(rd.root)).read()
    assert "% of VM-VM transport" in text and "% of flat OVS in a VM" in text
    assert "% of veth" not in text
    assert "on the lab's node VMs: the same path without tenantnet" in text
    assert "- `vm-transport` (VM-VM transport (ceiling)): VM to VM over the plain " \
           "transport network: a namespace in node VM net1 and one in node VM compute1" in text
    assert "- `vm-ovs-flat` (flat OVS in a VM (reference)): a flat Open vSwitch " \
           "bridge in node VM compute1" in text
    # TCP DNB 800/600 Mbit/s against 1600/1650: 50% and 36% of the transport ceiling
    assert re.search(r"\| DNB \| probe->vm \| 6 \| 8\d\d\.\d \| [0-9.]+ \| 50% \| 6\d% \|", text)
    no_base = rdir("A", baselines=None)
    text = open(report.write_report(no_base.root)).read()
    assert "No baselines in this run" in text and "% of" not in text.split("## Figures")[0]


def test_report_collects_machine_facts_when_the_run_has_none(rdir):
    """No machine.json and no meta.json: the report collects machine.machine_info(), the
    runner's keys."""
    rd = rdir("A")
    text = open(report.write_report(rd.root, render_figures=False)).read()
    assert "collected when this report was written" in text
    for key in ("cpu_count", "kernel", "ovs_version", "scipy_version", "tenantnet_version"):
        assert f"| {key} |" in text, key
    assert "| hostname |" not in text


def test_report_without_cnb(rdir):
    rd = rdir("A", with_cnb=False)
    text = open(report.write_report(rd.root)).read()
    v = verdicts(text)
    assert v["1a"] == v["2"] == v["3"] == claims.NOT_MEASURED
    assert v["1b"] == "holds" and v["4"] == "does not hold"
    assert "fig5_reachability_dnb_vs_cnb.png`: skipped" in text


def test_welch_and_pooling():
    assert analysis.welch_t_from_stats(1, 5.0, None, 3, 1.0, 1.0) is None
    t = analysis.welch_t_from_stats(10, 2.0, 1.0, 10, 1.0, 1.0)
    assert t == pytest.approx(1.0 / math.sqrt(0.2))
    vals_a, vals_b = [1.0, 2.0, 3.0], [10.0, 20.0]
    m, s, n = analysis.pooled([{"success": 3, "mean_ms": 2.0, "std_ms": statistics.stdev(vals_a)},
                            {"success": 2, "mean_ms": 15.0, "std_ms": statistics.stdev(vals_b)}])
    assert n == 5
    assert m == pytest.approx(statistics.fmean(vals_a + vals_b))
    assert s == pytest.approx(statistics.stdev(vals_a + vals_b))


def test_bridge_claim_is_paired_by_arrival_position(tmp_path):
    """Creators pay +250 ms, but every later request of a batch also waits 150 ms more (in
    both modes): raw times make the creators (the early ones) look faster; the DNB-CNB
    overhead at the same position shows their cost."""
    rng = random.Random(7)
    inst = []
    for mode in ("dnb", "cnb"):
        for n in (6, 9, 12):
            for rep in range(3):
                inst += _instances(rng, mode, n, 1, repeat=rep, creator_ms=550.0,
                                   other_ms=300.0, slope_ms=150.0)
    rd = ResultsDir(str(tmp_path / "q"))
    rd.write_csv("reachability_instances.csv", inst)
    _, data = plots.load(rd.root)
    verdict, measured, _ = claims.claim_1b(data)
    assert verdict == claims.HOLDS, measured
    assert "same arrival position" in measured
    dnb_only = ResultsDir(str(tmp_path / "q-dnb"))
    dnb_only.write_csv("reachability_instances.csv", [r for r in inst if r["mode"] == "dnb"])
    _, data = plots.load(dnb_only.root)
    verdict, measured, why = claims.claim_1b(data)
    assert verdict == claims.FAILS and "NOT adjusted" in measured and "unadjusted" in why
