"""End to end: the `chains-ci` experiment spec (configs/experiments/chains-ci.yaml) run by
`tenantnet experiment run` on the real lab, DNB and CNB: every run crossed the functions of
its chain (their own counters say so), and the figures and the report with the fitted loss
per hop exist and agree with chains.csv. Run it under the lab lock:

    flock /tmp/tenantnet-lab.lock .venv/bin/python -m pytest -x -q \
        tests/test_chain_experiment_e2e.py
"""

import os
import re
import subprocess
import sys

import pytest

from conftest import ROOT, lab_namespaces, lab_prerequisites
from tenantnet.experiment import chainanalysis as ca
from tenantnet.experiment import chainexp, chainreport
from tenantnet.experiment.chainexp import CHAIN_COLUMNS
from tenantnet.experiment.results import ResultsDir
from tenantnet.experiment.spec import load_spec

pytestmark = [pytest.mark.lab,
              pytest.mark.skipif(lab_prerequisites() is not None, reason=str(lab_prerequisites()))]

PREFIX = "tnce"
SPEC = os.path.join(ROOT, "configs", "experiments", "chains-ci.yaml")
PNG = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    from tenantnet.lab.lab import Lab
    Lab(prefix=PREFIX).down()                   # a leftover of an interrupted run
    out = tmp_path_factory.mktemp("chains") / "results"
    try:
        proc = subprocess.run([sys.executable, "-m", "tenantnet.cli", "experiment", "run",
                               "-c", SPEC, "--out", str(out), "--prefix", PREFIX,
                               "--no-progress"], capture_output=True, text=True, timeout=400,
                              cwd=ROOT)
    finally:
        Lab(prefix=PREFIX).down()
    assert proc.returncode == 0, proc.stderr[-3000:] + proc.stdout[-2000:]
    return proc, ResultsDir(str(out), create=False)


def test_the_run_is_complete_and_leaves_nothing(run):
    proc, rd = run
    assert not lab_namespaces(PREFIX)
    meta = rd.read_json("meta.json")
    assert meta["status"] == "complete" and meta["experiment"] == "chains"
    assert meta["modes"] == ["dnb", "cnb"] and not meta["errors"]
    for key in ("cpu_count", "kernel", "ovs_version", "iperf3_version", "tenantnet_version"):
        assert meta["machine"][key], key
    for mode in ("dnb", "cnb"):
        assert os.path.exists(rd.path(f"labs/{mode}-k1.yaml"))
    assert "chains.csv" in proc.stdout and "report.md" in proc.stdout


def test_every_run_crossed_its_chain(run):
    _, rd = run
    spec = load_spec(SPEC)
    rows = rd.read_csv("chains.csv")
    with open(rd.path("chains.csv")) as fh:
        assert fh.readline().strip().split(",") == CHAIN_COLUMNS
    assert len(rows) == 2 * spec.chains.points() == len(rd.read_json("chains.json"))
    for r in rows:
        assert r["error"] is None and r["bits_per_second"] > 0, r
        assert r["node_changes"] == chainexp.node_changes(r["nodes"]), r
        assert len(r["nodes"]) == r["n"] + 2
        if r["n"] == 0:
            assert r["forwarded"] == [] and r["steered"] is None
            continue
        # each function's own counter saw this run's packets: the chain was steered
        assert r["steered"] is True and len(r["forwarded"]) == r["n"], r
        assert min(r["forwarded"]) == r["forwarded_min"] > 100, r
        if r["part"] == "length":
            assert (r["node_changes"] == 0) == (r["layout"] == "same"), r
        else:
            assert sum(r["rules"]) == r["rules_total"] and r["function"] == "firewall"
            assert r["n"] == (1 if r["layout"] == "single" else 2)


def test_figures_and_report_agree_with_the_records(run):
    proc, rd = run
    rows = rd.read_csv("chains.csv")
    for fig in ("fig_chain_length.png", "fig_chain_rules.png"):
        with open(rd.path(fig), "rb") as fh:
            assert fh.read(8) == PNG
        assert os.path.getsize(rd.path(fig)) > 10000
    assert sorted(rd.read_json("figures.json")["written"]) == ["fig_chain_length.png",
                                                               "fig_chain_rules.png"]
    text = open(rd.path("report.md")).read()
    fits = ca.loss_fits(rows)
    # two modes x two layouts x two traffics, each fitted over n = 0, 1, 2
    assert len(fits) == 8 and all(f["hops"] == 3 and f["points"] == 3 for f in fits)
    head = ca.find_fit(fits, "dnb", ca.headline_traffic(rows), "same")
    m = re.search(r"measured loss per hop l = \*\*([-0-9.]+)%\*\*", text)
    assert m and float(m.group(1)) == pytest.approx(100 * head["loss"], abs=0.051)
    for f in fits:                              # each fit is in the loss table
        row = (f"| {f['mode'].upper()} | {f['layout']} | {f['traffic']} | 3 | 3 | "
               f"{f['t_in'] / 1e6:.1f} | **{100 * f['loss']:.1f}%** |")
        assert row in text, row
        assert f"{100 * f['loss']:.1f}%" in proc.stdout
    for c in chainreport.claims(rows):          # the verdicts are the records'
        assert f"| {c['id']} | {c['claim'].split(' [')[0]} | **{c['verdict']}** |" in text
    assert "## CNB" in text and "| same | tcp-2 |" in text.split("## CNB")[1]
    assert "seed 000's ~11% per namespace hop" in text
