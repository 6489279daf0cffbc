"""The same-run ceilings (veth pair, flat OVS bridge) measured with 1 s of iperf3, and
their clean-up, also after an interruption."""

import os
import shutil

import pytest

from tenantnet.experiment import bandwidth as bw
from tenantnet.experiment import analysis, baseline, iperf
from tenantnet.lab import netns as ns

from conftest import lab_prerequisites

PREFIX = "tnb-t"
_PROBLEM = lab_prerequisites() or (None if shutil.which("iperf3") else "iperf3 is not installed")
pytestmark = [pytest.mark.lab,
              pytest.mark.skipif(_PROBLEM is not None, reason=f"baseline unavailable: {_PROBLEM}")]

SPEC = {"bandwidth": {"duration_s": 1, "udp_rate": "10M", "protocols": ["tcp", "udp"]},
        "tuning": {"vm_mtu": 1400, "tx_checksum_offload": False}}


def _ours():
    return {n for n in ns.list_namespaces() if n.startswith(PREFIX + "-")}


@pytest.fixture(autouse=True)
def clean():
    baseline.cleanup_baselines(PREFIX)
    yield
    baseline.cleanup_baselines(PREFIX)
    assert not _ours()


def test_run_baselines_rows_are_well_formed():
    rows = baseline.run_baselines(PREFIX, SPEC)
    assert not _ours(), "namespaces left behind"
    assert not os.path.exists(os.path.join(baseline.BASE_ROOT, PREFIX))
    assert len(rows) == 2 * 2 * 2                    # modes x protocols x directions
    seen = {(r["mode"], r["protocol"], r["direction"]) for r in rows}
    assert seen == {(m, p, d) for m in baseline.MODES for p in ("tcp", "udp")
                    for d in bw.DIRECTIONS}
    for r in rows:
        assert set(r) == set(bw.BANDWIDTH_COLUMNS), set(r) ^ set(bw.BANDWIDTH_COLUMNS)
        assert r["duration_s"] == 1 and r["mtu"] == 1400 and r["tx_offload"] is False
        assert r["bits_per_second"] > 0 and r["iperf_version"].startswith("iperf 3")
        if r["protocol"] == "tcp":
            assert r["retransmits"] is not None and r["udp_rate"] is None
            assert r["jitter_ms"] is None and r["packets"] is None
        else:
            assert r["udp_rate"] == "10M" and r["retransmits"] is None
            assert r["packets"] > 0 and r["lost_packets"] is not None
            assert r["jitter_ms"] is not None and r["out_of_order"] is not None
            # 10 Mbit/s fits through either path: nearly all of it arrives
            assert r["bits_per_second"] > 0.9 * 10e6
    summary = analysis.summarise(rows)
    assert set(summary) == set(baseline.MODES)
    assert summary["veth"]["tcp"]["combined"]["n"] == 2


def test_interrupted_run_cleans_up(monkeypatch):
    def interrupted(*args, **kwargs):
        assert _ours(), "the baseline should exist while it is measured"
        raise KeyboardInterrupt
    monkeypatch.setattr(iperf, "run_iperf", interrupted)
    with pytest.raises(KeyboardInterrupt):
        baseline.run_baselines(PREFIX, SPEC, modes=("ovs-flat",))
    assert not _ours()
    assert not os.path.exists(baseline.ovs_base_dir(PREFIX))


def test_leftovers_are_refused_then_cleaned():
    name = baseline.names(PREFIX)["veth"][0]
    ns.add(name)
    with pytest.raises(baseline.BaselineError, match="left over"):
        baseline.run_baselines(PREFIX, SPEC)
    assert name in baseline.cleanup_baselines(PREFIX)
    assert not _ours()
