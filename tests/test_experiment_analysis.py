"""tenantnet.experiment.analysis: the per-hop loss fit on synthetic chains with a known
loss, Welch's t, and the single homes of the bandwidth defaults and the machine facts.
Pure: no root, no lab."""

import math
import random
import statistics

import pytest

from tenantnet.experiment import analysis, machine
from tenantnet.experiment import bandwidth as bw
from tenantnet.experiment.spec import BANDWIDTH_DEFAULTS, BandwidthSpec, spec_from_dict


def chain_rows(loss, t_in=1e9, hops=range(9), repeats=1, noise=0.0, rng=None):
    """Throughput rows of chains n = 0..8 hops losing *loss* per hop, with multiplicative
    log-normal noise of *noise* (standard deviation of log throughput)."""
    rows = []
    for n in hops:
        for _ in range(repeats):
            t = t_in * (1 - loss) ** n
            if noise:
                t *= math.exp(rng.gauss(0.0, noise))
            rows.append({"n": n, "bits_per_second": t})
    return rows


# -- per-hop loss --------------------------------------------------------------------------
@pytest.mark.parametrize("loss", [0.11, 0.3, 0.0])
def test_exact_chain_gives_its_loss_back(loss):
    fit = analysis.per_hop_loss(chain_rows(loss, t_in=2.5e9))
    assert fit["loss"] == pytest.approx(loss, abs=1e-9)
    assert fit["t_in"] == pytest.approx(2.5e9, rel=1e-9)
    assert fit["loss_low"] == pytest.approx(loss, abs=1e-9)
    assert fit["loss_high"] == pytest.approx(loss, abs=1e-9)
    assert (fit["points"], fit["hops"], fit["confidence"]) == (9, 9, 0.95)
    assert analysis.chain_throughput(fit, 4) == pytest.approx(2.5e9 * (1 - loss) ** 4)


def test_noisy_chain_interval_holds_the_true_loss():
    rng = random.Random(11)
    fit = analysis.per_hop_loss(chain_rows(0.11, repeats=5, noise=0.03, rng=rng))
    assert fit["loss"] == pytest.approx(0.11, abs=0.01)
    assert fit["loss_low"] < 0.11 < fit["loss_high"]
    assert fit["loss_high"] - fit["loss_low"] < 0.02
    assert fit["loss_low"] < fit["loss"] < fit["loss_high"]
    wider = analysis.per_hop_loss(chain_rows(0.11, repeats=5, noise=0.03,
                                             rng=random.Random(11)), confidence=0.99)
    assert wider["loss"] == pytest.approx(fit["loss"])
    assert wider["loss_low"] < fit["loss_low"] and wider["loss_high"] > fit["loss_high"]


def test_interval_covers_the_true_loss_as_often_as_it_claims():
    """1,000 small chains (n = 0..4, one run each: 3 degrees of freedom). A 95% interval must
    hold the true loss about 95% of the time; a normal quantile instead of Student's t would
    give about 86%, and ignoring the slope's error almost never."""
    rng = random.Random(2026)
    trials, covered = 1000, 0
    for _ in range(trials):
        fit = analysis.per_hop_loss(chain_rows(0.2, hops=range(5), noise=0.05, rng=rng))
        covered += fit["loss_low"] <= 0.2 <= fit["loss_high"]
    assert 0.93 <= covered / trials <= 0.97, covered


def test_growing_throughput_is_a_negative_loss():
    fit = analysis.per_hop_loss(chain_rows(-0.05))
    assert fit["loss"] == pytest.approx(-0.05)


def test_fit_reads_csv_cells_and_other_keys_and_skips_missing_ones():
    rows = [{"hops": str(n), "tput": repr(1e9 * 0.9 ** n)} for n in range(4)]
    rows += [{"hops": "5", "tput": ""}, {"hops": None, "tput": "1e9"}]
    fit = analysis.per_hop_loss(rows, hops="hops", throughput="tput")
    assert fit["loss"] == pytest.approx(0.1) and fit["points"] == 4


def test_too_little_data():
    assert analysis.per_hop_loss([]) is None
    assert analysis.per_hop_loss(chain_rows(0.1, hops=[3], repeats=4)) is None
    two = analysis.per_hop_loss(chain_rows(0.1, hops=[0, 2]))
    assert two["loss"] == pytest.approx(0.1)
    assert two["loss_low"] is None and two["loss_high"] is None
    with pytest.raises(ValueError, match="above zero"):
        analysis.per_hop_loss([{"n": 0, "bits_per_second": 1e9},
                               {"n": 1, "bits_per_second": 0.0}])
    with pytest.raises(ValueError, match="confidence"):
        analysis.per_hop_loss(chain_rows(0.1), confidence=95)


# -- Welch's t -------------------------------------------------------------------------------
def test_welch_t_matches_the_formula():
    a, b = [10.0, 12.0, 11.0, 13.0], [8.0, 9.5, 9.0]
    se = math.sqrt(statistics.variance(a) / len(a) + statistics.variance(b) / len(b))
    want = (statistics.fmean(a) - statistics.fmean(b)) / se
    assert analysis.welch_t(a, b) == pytest.approx(want)
    assert analysis.welch_t(b, a) == pytest.approx(-want)
    assert analysis.welch_t_from_stats(len(a), statistics.fmean(a), statistics.stdev(a),
                                       len(b), statistics.fmean(b), statistics.stdev(b)) \
        == pytest.approx(want)
    assert analysis.welch_t(["10", "12", None, "x"], ["8", "9"]) == \
        pytest.approx(analysis.welch_t([10, 12], [8, 9]))


def test_welch_t_without_enough_values_or_spread():
    assert analysis.welch_t([1.0], [1.0, 2.0]) is None
    assert analysis.welch_t([3.0, 3.0], [1.0, 1.0]) == math.inf
    assert analysis.welch_t([1.0, 1.0], [3.0, 3.0]) == -math.inf
    assert analysis.welch_t([2.0, 2.0], [2.0, 2.0]) == 0.0
    assert analysis.welch_t_from_stats(5, 2.0, 0.0, 5, 1.0, 0.0) == math.inf


def test_describe_is_the_statistics_module():
    vals = [3.0, "4.5", 7.25, None, "nan", True]
    d = analysis.describe(vals)
    assert d == {"n": 3, "mean": statistics.fmean([3.0, 4.5, 7.25]),
                 "std": statistics.stdev([3.0, 4.5, 7.25]), "min": 3.0, "max": 7.25}
    assert analysis.describe([1.0])["std"] is None
    assert analysis.describe([])["mean"] is None


# -- one home each -----------------------------------------------------------------------------
def test_bandwidth_defaults_have_one_home():
    spec = spec_from_dict({"name": "x"}).bandwidth
    cfg = bw.settings({"bandwidth": {}})
    for key in ("duration_s", "udp_rate", "vms", "protocols", "repeats"):
        assert getattr(spec, key) == getattr(BandwidthSpec(), key)
        assert cfg[key] == bw.settings(spec)[key]
    assert cfg["udp_rate"] == BANDWIDTH_DEFAULTS["udp_rate"] == spec.udp_rate
    assert cfg["duration_s"] == math.ceil(BANDWIDTH_DEFAULTS["duration_s"])
    assert cfg["vm_prefix"] == BANDWIDTH_DEFAULTS["vm_prefix"]


MACHINE_KEYS = {"cpu_count", "cpu_model", "memory_mb", "kernel", "system", "machine",
                "hostname", "python", "matplotlib_version", "scipy_version", "ovs_version",
                "iperf3_version", "tcp_congestion_control", "tenantnet_version",
                "tenantnet_commit", "tenantnet_dirty", "loadavg"}


def test_machine_info_has_one_set_of_keys():
    info = machine.machine_info()
    assert set(info) == MACHINE_KEYS
    assert info["cpu_count"] and info["kernel"] and info["python"]
    assert info["scipy_version"]
