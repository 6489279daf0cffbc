"""The chain experiment's pure parts (issue 11 item 4): its spec section, the statistics
over chains.csv rows, the figures and the report, on records made here from a known loss
per hop (with noise), never on hard-coded answers. The lab run is
tests/test_chain_experiment_e2e.py."""

import math
import os
import random
import re
import statistics

import pytest

from conftest import ROOT
from tenantnet.errors import ConfigError
from tenantnet.experiment import chainanalysis as ca
from tenantnet.experiment import chainexp, chainreport, runner
from tenantnet.experiment.chainexp import CHAIN_COLUMNS
from tenantnet.experiment.results import ResultsDir
from tenantnet.experiment.spec import load_spec, load_spec_text

EXPERIMENTS = os.path.join(ROOT, "configs", "experiments")
BASE = """name: t
modes: [dnb]
lab: {compute_nodes: 3, network_nodes: 1}
"""


# -- the spec -------------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["chains.yaml", "chains-quick.yaml"])
def test_shipped_chain_specs_load(name):
    spec = load_spec(os.path.join(EXPERIMENTS, name))
    c = spec.chains
    assert c is not None and not spec.reachability.enabled and not spec.bandwidth.enabled
    assert 0 in c.lengths and len(c.lengths) >= 2 and c.layouts == ["same", "spread"]
    assert {t.protocol for t in c.traffic} == {"tcp", "udp"}
    assert any(t.streams > 1 for t in c.traffic if t.protocol == "tcp")
    assert max(c.firewall.rules) == 1000 and 0 in c.firewall.rules
    assert set(c.firewall.traffic) <= {t.name for t in c.traffic}
    assert spec.to_dict()["chains"]["lengths"] == c.lengths
    if name == "chains.yaml":
        assert c.lengths == list(range(9))


def test_a_paper_spec_has_no_chains():
    assert load_spec(os.path.join(EXPERIMENTS, "quick.yaml")).chains is None


def refused(text, source="exp/chains-x.yaml"):
    with pytest.raises(ConfigError) as info:
        load_spec_text(BASE + text, source=source)
    return info.value


@pytest.mark.parametrize("text,key,words", [
    ("chains: {lengths: [0, 2], colour: red}\n", "chains.colour", "unknown key"),
    ("chains: {firewall: {rules: [0, 10], bogus: 1}}\n", "chains.firewall.bogus", "unknown key"),
    ("chains:\n  traffic:\n    - {name: a}\n    - {name: b, speed: 3}\n",
     "chains.traffic[1].speed", "unknown key"),
    ("chains: {lengths: [3]}\n", "chains.lengths", "at least two"),
    ("chains: {lengths: [0, 17]}\n", "chains.lengths[1]", "from 0 to 16"),
    ("chains: {lengths: [0, 1, 1]}\n", "chains.lengths[2]", "duplicate"),
    ("chains: {layouts: [same, diagonal]}\n", "chains.layouts[1]", "unknown layout"),
    ("chains: {function: router}\n", "chains.function", "unknown function kind"),
    ("chains:\n  traffic: [{name: a, protocol: tcp, rate: 1G}]\n", "chains.traffic[0].rate",
     "UDP only"),
    ("chains:\n  traffic: [{name: a, protocol: udp, rate: fast}]\n", "chains.traffic[0].rate",
     "not a rate"),
    ("chains:\n  traffic: [{name: a, streams: 0}]\n", "chains.traffic[0].streams", "from 1"),
    ("chains:\n  traffic: [{name: a}, {name: a}]\n", "chains.traffic[1].name", "duplicate"),
    ("chains: {firewall: {traffic: [nope]}}\n", "chains.firewall.traffic[0]",
     "unknown traffic name"),
    ("chains: {firewall: {spread_over: 1}}\n", "chains.firewall.spread_over", "from 2"),
    ("chains: {firewall: {stateful: [maybe]}}\n", "chains.firewall.stateful[0]", "unknown"),
    ("chains: {}\nbandwidth: {vms: 1}\n", "bandwidth", "no bandwidth section"),
    ("chains:\n", "chains", "missing"),
    ("chains: [1, 2]\n", "chains", "expected a mapping"),
])
def test_bad_chain_specs_name_file_key_and_problem(text, key, words):
    exc = refused(text)
    assert exc.source == "exp/chains-x.yaml" and exc.key == key, str(exc)
    assert words in exc.problem, str(exc)
    assert str(exc).startswith(f"exp/chains-x.yaml: {key}: ")


def test_chain_spec_needs_emulated_nodes_and_two_computes_to_spread():
    with pytest.raises(ConfigError, match="lab.nodes: the chain experiment runs on emulated"):
        load_spec_text(BASE.replace("network_nodes: 1", "network_nodes: 1, nodes: vm")
                       + "chains: {}\n")
    with pytest.raises(ConfigError, match="chains.layouts: the spread layout needs"):
        load_spec_text(BASE.replace("compute_nodes: 3", "compute_nodes: 1") + "chains: {}\n")
    one = load_spec_text(BASE.replace("compute_nodes: 3", "compute_nodes: 1")
                         + "chains: {layouts: [same]}\n")
    assert one.chains.layouts == ["same"]


def test_max_rate_is_iperf_unlimited_and_points_count_the_runs():
    spec = load_spec_text(BASE + "chains:\n  lengths: [0, 1, 3]\n  repeats: 2\n  traffic:\n"
                          "    - {name: t1}\n    - {name: u, protocol: udp, streams: 2, "
                          "rate: max}\n  firewall: {rules: [0, 5], layouts: [single]}\n")
    c = spec.chains
    assert c.traffic_named("u").rate == "0" and c.traffic_named("t1").protocol == "tcp"
    assert c.firewall.traffic == ["u"]          # the first UDP traffic by default
    chains = 1 + 2 * len(c.layouts)             # n = 0 once, then each layout
    assert c.points() == chains * 2 * 2 + 2 * 1 * 1 * 1 * 2


# -- the runner's pure helpers -----------------------------------------------------------------
@pytest.mark.parametrize("total,parts", [(0, 4), (1000, 4), (7, 3), (100, 1), (3, 5)])
def test_split_rules(total, parts):
    rules = chainexp.split_rules(total, parts)
    assert len(rules) == parts and sum(rules) == total and max(rules) - min(rules) <= 1


@pytest.mark.parametrize("computes", [2, 3, 5])
def test_spread_hops_always_change_node(computes):
    names = [f"compute{i}" for i in range(1, computes + 1)]
    nodes = chainexp.spread_nodes(names, 8)
    path = [names[0]] + nodes
    assert chainexp.node_changes(path) == len(nodes)
    assert chainexp.node_changes([names[0]] * 4) == 0


# -- records with a known loss -----------------------------------------------------------------
def length_rows(mode, layout, loss, t_in=1e9, lengths=(0, 1, 2, 3, 4), repeats=3,
                traffic="tcp-4", protocol="tcp", streams=4, noise=0.01, seed=1):
    rng = random.Random(seed)
    rows = []
    for n in lengths:
        for rep in range(repeats):
            rows.append({"mode": mode, "part": "length", "layout": "direct" if n == 0 else layout,
                         "n": n, "traffic": traffic, "protocol": protocol, "streams": streams,
                         "repeat": rep, "steered": True if n else None,
                         "bits_per_second": t_in * (1 - loss) ** n * math.exp(
                             rng.gauss(0, noise))})
    return rows


def rule_rows(mode, layout, per_rule, hops, totals=(0, 100, 1000), repeats=3, seed=2):
    """Throughput falling by *per_rule* (a fraction) per rule and 5% per firewall hop."""
    rng = random.Random(seed)
    return [{"mode": mode, "part": "rules", "layout": layout, "n": hops, "stateful": False,
             "rules_total": total, "traffic": "udp-4", "protocol": "udp", "streams": 4,
             "repeat": rep, "steered": True,
             "bits_per_second": 8e8 * 0.95 ** hops * (1 - per_rule) ** total
             * math.exp(rng.gauss(0, 0.01))}
            for total in totals for rep in range(repeats)]


def dataset(same_loss=0.11, spread_loss=0.25, modes=("dnb",), single=2e-4, spread_fw=3e-4):
    rows = []
    for i, mode in enumerate(modes):
        rows += length_rows(mode, "same", same_loss, seed=10 + i)
        rows += [r for r in length_rows(mode, "spread", spread_loss, seed=20 + i) if r["n"]]
        rows += length_rows(mode, "same", same_loss / 2, traffic="udp-4", protocol="udp",
                            seed=30 + i)
        rows += rule_rows(mode, "single", single, 1) + rule_rows(mode, "spread", spread_fw, 4)
    return rows


def test_fit_recovers_the_loss_of_the_records():
    rows = dataset(same_loss=0.11, spread_loss=0.25)
    fits = ca.loss_fits(rows)
    assert {(f["traffic"], f["layout"]) for f in fits} == \
        {("tcp-4", "same"), ("tcp-4", "spread"), ("udp-4", "same")}
    for layout, truth in (("same", 0.11), ("spread", 0.25)):
        f = ca.find_fit(fits, "dnb", "tcp-4", layout)
        assert f["loss_low"] < truth < f["loss_high"] and abs(f["loss"] - truth) < 0.02
        assert f["r2"] > 0.95 and f["hops"] == 5 and f["n_max"] == 4
        sel = ca.length_rows(rows, "dnb", "tcp-4", layout)
        assert f["points"] == len(sel) == 15       # n = 0 rows belong to every layout
    # the spread layout loses more per hop, well beyond noise; and the other way round
    spread, same = (ca.length_rows(rows, "dnb", "tcp-4", lay) for lay in ("spread", "same"))
    assert ca.slope_t(spread, same) > 5 and ca.slope_t(same, spread) < -5
    assert ca.headline_traffic(rows) == "tcp-4"


def test_points_and_rule_statistics_match_the_records():
    rows = dataset()
    sel = ca.length_rows(rows, "dnb", "tcp-4", "same")
    for n, mean, std, count in ca.length_points(sel):
        vals = [r["bits_per_second"] for r in sel if r["n"] == n]
        assert (mean, std, count) == (statistics.fmean(vals), statistics.stdev(vals), len(vals))
    eff = ca.rule_effect(rows, "dnb", "udp-4", "single", False)
    at = {t: statistics.fmean(r["bits_per_second"] for r in rows if r["part"] == "rules"
                              and r["layout"] == "single" and r["rules_total"] == t)
          for t in (0, 1000)}
    assert (eff["low_rules"], eff["high_rules"]) == (0, 1000)
    assert eff["low"] == pytest.approx(at[0]) and eff["high"] == pytest.approx(at[1000])
    assert eff["change_pct"] == pytest.approx(100 * (at[1000] - at[0]) / at[0])
    assert eff["t"] > 2
    gap = ca.layout_gap(rows, "dnb", "udp-4", False)
    assert gap["rules"] == 1000 and gap["spread"] < gap["single"] and gap["t"] > 2
    assert ca.rule_keys(rows) == [("dnb", "udp-4", "single", False),
                                  ("dnb", "udp-4", "spread", False)]
    failed = dict(rows[0], bits_per_second=None, error="iperf3: boom")
    assert ca.length_rows([failed], "dnb", "tcp-4", "same") == []


# -- the report ------------------------------------------------------------------------------
def results(tmp_path, rows, modes=("dnb",)):
    rd = ResultsDir(str(tmp_path / "res"))
    rd.write_table("chains", rows, columns=CHAIN_COLUMNS)
    rd.write_json("meta.json", {"name": "t", "experiment": "chains", "status": "complete",
                                "modes": list(modes), "spec": {"name": "t"},
                                "machine": {"cpu_count": 2, "kernel": "6.1-test"},
                                "warnings": [], "errors": []})
    return rd


def headline_of(text):
    m = re.search(r"measured loss per hop l = \*\*([-0-9.]+)%\*\* \(95% interval "
                  r"\[([-0-9.]+)%, ([-0-9.]+)%\]\)", text)
    assert m, text[:800]
    return [float(x) / 100 for x in m.groups()]


@pytest.mark.parametrize("same_loss,c2", [(0.11, "holds"), (0.30, "does not hold"),
                                          (0.03, "does not hold")])
def test_report_sets_the_fitted_loss_beside_seed_000(tmp_path, same_loss, c2):
    rows = dataset(same_loss=same_loss, spread_loss=same_loss + 0.1)
    rd = results(tmp_path, rows)
    runner.render(rd)                    # dispatches a chain results dir to chainreport
    text = open(rd.path("report.md")).read()
    fit = ca.find_fit(ca.loss_fits(rd.read_csv("chains.csv")), "dnb", "tcp-4", "same")
    loss, low, high = headline_of(text)
    assert loss == pytest.approx(fit["loss"], abs=6e-4)
    assert (low, high) == (pytest.approx(fit["loss_low"], abs=6e-4),
                           pytest.approx(fit["loss_high"], abs=6e-4))
    assert "seed 000's ~11% per namespace hop" in text and "| cpu_count | 2 |" in text
    expected = "holds" if abs(fit["loss"] - chainreport.SEED_LOSS) <= 0.05 else "does not hold"
    assert expected == c2
    verdicts = {c["id"]: c["verdict"] for c in chainreport.claims(rd.read_csv("chains.csv"))}
    assert verdicts == {"c1": "holds", "c2": c2, "c3": "holds", "c4": "holds", "c5": "holds"}
    assert f"| c2 | {chainreport.CLAIMS['c2'].split(' [')[0]} | **{c2}** |" in text
    for fig in ("fig_chain_length.png", "fig_chain_rules.png"):
        assert f"![{fig}]({fig})" in text and os.path.getsize(rd.path(fig)) > 5000
    assert not os.path.exists(rd.path("fig4_dnb_reachability.png"))


def test_verdicts_follow_the_data_not_the_seed(tmp_path):
    # throughput that grows with n and with rules: every directional claim fails
    rows = dataset(same_loss=-0.05, spread_loss=-0.1, single=-1e-4, spread_fw=-3e-4)
    verdicts = {c["id"]: c["verdict"] for c in chainreport.claims(rows)}
    assert verdicts == {"c1": "does not hold", "c2": "does not hold", "c3": "does not hold",
                        "c4": "does not hold", "c5": "does not hold"}
    # nothing measured
    assert {c["verdict"] for c in chainreport.claims([])} == {"not measured"}
    only_lengths = [r for r in dataset() if r["part"] == "length"]
    verdicts = {c["id"]: c["verdict"] for c in chainreport.claims(only_lengths)}
    assert verdicts["c4"] == verdicts["c5"] == "not measured"


def test_report_compares_cnb_when_measured(tmp_path):
    rows = dataset(modes=("dnb", "cnb"))
    path = chainreport.write_report(results(tmp_path, rows, modes=("dnb", "cnb")).root)
    text = open(path).read()
    cnb = text.split("## CNB")[1].split("## Figures")[0]
    fits = ca.loss_fits(rows)
    d, c = (ca.find_fit(fits, m, "tcp-4", "same") for m in ("dnb", "cnb"))
    assert f"| same | tcp-4 | {100 * d['loss']:.1f}% | {100 * c['loss']:.1f}% |" in cnb
    only_dnb = open(chainreport.write_report(results(tmp_path / "x", dataset()).root)).read()
    assert "no CNB comparison" in only_dnb
