"""`tenantnet bench resync` and `tenantnet bench bulk` for real, at a small size, each on
a lab of its own (prefixes tnbr, tnbb): every key the issue names, sane values, and nothing
of the lab left afterwards. No timing assertions: the speed targets live in the benches'
own output (docs/performance.md)."""

import json
import os
import subprocess
import sys

import pytest

from conftest import ROOT, lab_namespaces, lab_prerequisites

pytestmark = [pytest.mark.lab, pytest.mark.integration,
              pytest.mark.skipif(lab_prerequisites() is not None,
                                 reason=lab_prerequisites() or "")]

RESYNC_KEYS = {"ready_s", "ovsdb_changes", "flow_changes", "ping_lost", "flows_total"}
BULK_KEYS = {"tenantnet_last_s", "tenantnet_mean_s", "raw_s", "ratio"}


def bench(*args, timeout=400):
    return subprocess.run([sys.executable, "-m", "tenantnet.cli", "bench", *args], cwd=ROOT,
                          capture_output=True, text=True, timeout=timeout)


def left(prefix):
    """What of the bench's lab *prefix* exists now: namespaces, its books."""
    found = lab_namespaces(prefix)
    if os.path.exists(os.path.join("/run/tenantnet", prefix, "state.json")):
        found.append(f"/run/tenantnet/{prefix}/state.json")
    return found


def test_bench_resync_json():
    assert left("tnbr") == []
    proc = bench("resync", "--vms", "12", "--networks", "3", "--nodes", "2", "--json")
    assert proc.returncode == 0, proc.stderr + proc.stdout
    result = json.loads(proc.stdout)
    assert RESYNC_KEYS <= set(result), result
    assert isinstance(result["ready_s"], float) and result["ready_s"] > 0
    for key in ("ovsdb_changes", "flow_changes", "ping_lost"):
        assert isinstance(result[key], int) and result[key] >= 0, (key, result)
    assert isinstance(result["flows_total"], int) and result["flows_total"] > 0
    assert result["tls"] is True                   # the lab's default, as deployed
    assert left("tnbr") == []


def test_bench_bulk_table():
    assert left("tnbb") == []
    proc = bench("bulk", "--vms", "8", "--networks", "2", "--nodes", "2")
    assert proc.returncode == 0, proc.stderr + proc.stdout
    for key in BULK_KEYS:
        assert key in proc.stdout, (key, proc.stdout)
    assert "TLS on every control channel" in proc.stdout
    assert left("tnbb") == []


def test_bench_bulk_json_and_errors():
    proc = bench("bulk", "--vms", "6", "--networks", "3", "--nodes", "2", "--json")
    assert proc.returncode == 0, proc.stderr + proc.stdout
    result = json.loads(proc.stdout)
    assert BULK_KEYS <= set(result), result
    for key in BULK_KEYS:
        assert isinstance(result[key], float) and result[key] > 0, (key, result)
    assert result["tenantnet_mean_s"] <= result["tenantnet_last_s"]
    assert result["ratio"] == pytest.approx(result["tenantnet_last_s"] / result["raw_s"],
                                            rel=0.02)
    bad = bench("bulk", "--vms", "0")
    assert bad.returncode == 1 and bad.stderr.startswith("tenantnet: bench bulk:"), bad.stderr
    assert left("tnbb") == []
