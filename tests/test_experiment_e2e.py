"""End to end: the `ci` experiment spec on the real lab, in every mode this tenantnet
accepts, plus an interrupted run. Checks that the results directory is complete and well
formed, never the figures themselves."""

import os
import signal
import subprocess
import sys
import time

import pytest

from conftest import ROOT, lab_namespaces, lab_prerequisites
from tenantnet.experiment import analysis, runner
from tenantnet.experiment.reachability import INSTANCE_FIELDS
from tenantnet.experiment.results import ResultsDir
from tenantnet.experiment.spec import load_spec, mode_unsupported

pytestmark = [pytest.mark.lab,
              pytest.mark.skipif(lab_prerequisites() is not None, reason=str(lab_prerequisites()))]

PREFIX = "tnd2"
SPEC = os.path.join(ROOT, "configs", "experiments", "ci.yaml")


def leftover_namespaces(prefix=PREFIX):
    return lab_namespaces(prefix)


@pytest.fixture
def clean_lab():
    from tenantnet.lab.lab import Lab
    Lab(prefix=PREFIX).down()                 # a leftover of an interrupted run
    yield
    Lab(prefix=PREFIX).down()
    assert not leftover_namespaces()


@pytest.mark.parametrize("mode,prepare_vms", [("dnb", False), ("cnb", False), ("dnb", True)],
                         ids=["dnb", "cnb", "dnb-prepared"])
def test_ci_spec_end_to_end(mode, prepare_vms, tmp_path, clean_lab):
    spec = load_spec(SPEC)
    why = mode_unsupported(spec, mode)
    if why:
        pytest.skip(f"mode {mode} is not accepted by tenantnet.model.config yet: {why}")
    spec.reachability.prepare_vms = prepare_vms
    if prepare_vms:
        spec.bandwidth.enabled = False          # covered by the other runs
    out = tmp_path / "results"
    rd = runner.run(spec, str(out), modes=[mode], progress=False, prefix=PREFIX)
    assert not leftover_namespaces()

    meta = rd.read_json("meta.json")
    assert meta["status"] == "complete" and meta["modes"] == [mode]
    assert meta["spec"]["name"] == "ci" and meta["tuning"]["vm_mtu"] == 1400
    for key in ("cpu_count", "kernel", "ovs_version", "tenantnet_version"):
        assert meta["machine"][key], key
    assert meta["started"] and meta["finished"]
    assert os.path.exists(rd.path(f"labs/{mode}-k1.yaml"))

    r = spec.reachability
    expected_rows = sum(r.instances) * len(r.networks) * r.repeats
    rows = rd.read_csv("reachability_instances.csv")
    with open(rd.path("reachability_instances.csv")) as fh:
        assert fh.readline().strip().split(",") == list(INSTANCE_FIELDS)
    assert len(rows) == expected_rows == len(rd.read_json("reachability_instances.json"))
    for row in rows:
        assert row["mode"] == mode and row["prepared"] is prepare_vms
        assert row["status"] in analysis.STATUSES, row
        if row["status"] == "success":
            assert row["reachability_ms"] > 0
            assert row["request_time"] <= row["ready_time"] <= row["reachable_time"]
            assert isinstance(row["bridges_existed"], bool)
        if row["status"] == "failed":
            assert row["error"]
    # the first instance of a network on a node makes that network's bridges there (DNB)
    if mode == "dnb":
        assert any(row["bridges_existed"] is False for row in rows)
    for (n, k) in r.grid():
        group = [x for x in rows if x["instances"] == n and x["networks"] == k]
        assert len(group) == n * r.repeats
        assert sorted(x["vm"] for x in group) == sorted(f"vm{i}" for i in range(1, n + 1)
                                                        for _ in range(r.repeats))

    recs = rd.read_csv("reachability.csv")
    with open(rd.path("reachability.csv")) as fh:
        header = fh.readline().strip().split(",")
    assert header[:len(analysis.RECORD_FIELDS)] == list(analysis.RECORD_FIELDS)
    assert len(recs) == len(r.grid()) == len(rd.read_json("reachability.json"))
    for rec in recs:
        assert rec["total"] == rec["instances"] * r.repeats
        assert rec["success"] + rec["failed"] + rec["missing"] == rec["total"]
        assert (rec["mean_ms"] is None) == (rec["success"] == 0)
    # on this tiny lab every instance should answer
    assert sum(rec["success"] for rec in recs) == expected_rows, recs

    if runner.optional_module("bandwidth") is not None and spec.bandwidth.enabled:
        bw = rd.read_csv("bandwidth.csv")
        lab_rows = [x for x in bw if x["mode"] == mode]
        assert lab_rows and {x["mode"] for x in bw} <= {mode, "veth", "ovs-flat"}
        assert {x["protocol"] for x in lab_rows} == set(spec.bandwidth.protocols)
        if spec.bandwidth.baselines:            # the same-run references
            assert {"veth", "ovs-flat"} <= {x["mode"] for x in bw}
        for x in lab_rows:
            assert x["direction"] in ("probe->vm", "vm->probe") and x["bits_per_second"] > 0


def test_interrupted_run_tears_the_lab_down(tmp_path, clean_lab):
    """Ctrl-C (SIGINT to the whole process group, as a terminal sends it) while a
    sub-experiment runs, then a second one during the teardown: nothing is left behind."""
    out = tmp_path / "results"
    # tenantnet.cli.main's main() in miniature (the lead hooks the commands into it)
    code = ("import argparse, sys\n"
            "from tenantnet.errors import TenantnetError\n"
            "from tenantnet.cli.experiment import add_experiment_commands\n"
            "p = argparse.ArgumentParser()\n"
            "add_experiment_commands(p.add_subparsers(dest='c', required=True))\n"
            "a = p.parse_args()\n"
            "try:\n    sys.exit(a.func(a))\n"
            "except TenantnetError as e:\n    print(f'tenantnet: {e}'); sys.exit(1)\n"
            "except KeyboardInterrupt:\n    print('tenantnet: interrupted'); sys.exit(130)\n")
    proc = subprocess.Popen([sys.executable, "-c", code, "experiment", "run", "-c", SPEC,
                             "--out", str(out), "--modes", "dnb", "--prefix", PREFIX,
                             "--no-progress"], cwd=ROOT, start_new_session=True,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            env=dict(os.environ, PYTHONPATH=ROOT))
    try:
        deadline = time.time() + 60
        while time.time() < deadline and not any("-v-vm" in n for n in leftover_namespaces()):
            time.sleep(0.05)
        assert proc.poll() is None, proc.stdout.read()
        os.killpg(proc.pid, signal.SIGINT)
        time.sleep(0.3)
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGINT)          # the impatient second Ctrl-C
        output, _ = proc.communicate(timeout=90)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    assert proc.returncode == 130, output
    assert "interrupted" in output
    assert "Traceback" not in output, output
    assert not leftover_namespaces()
    meta = ResultsDir(str(out), create=False).read_json("meta.json")
    assert meta["status"] == "interrupted"
