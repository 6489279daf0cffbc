"""`tenantnet bench flows` for real, at a small size: every key, sane values, nothing left
behind. No timing assertions: the speed targets live in the bench's own output."""

import json
import os
import shutil
import subprocess
import sys

import pytest

from conftest import ROOT

pytestmark = [pytest.mark.integration, pytest.mark.skipif(
    os.geteuid() != 0 or (not shutil.which("ovs-vswitchd") and
                          not os.path.exists("/usr/sbin/ovs-vswitchd")),
    reason="needs root and Open vSwitch")]

KEYS = {"flows", "tenantnet_install_s", "ofctl_install_s", "install_ratio",
        "tenantnet_delete_s", "ofctl_delete_s", "noop_resync_s"}


def ours():
    """tnbench- namespaces, /tmp directories and processes that exist now."""
    from tenantnet.bench.switch import leftovers
    found = leftovers()
    out = subprocess.run(["ps", "-eo", "pid,args"], capture_output=True, text=True).stdout
    found += [line for line in out.splitlines() if "/tmp/tnbench-" in line]
    return found


def bench(*args, timeout=300):
    return subprocess.run([sys.executable, "-m", "tenantnet.cli", "bench", *args], cwd=ROOT,
                          capture_output=True, text=True, timeout=timeout)


def test_bench_flows_json():
    before = ours()
    proc = bench("flows", "--flows", "2000", "--repeat", "1", "--json")
    assert proc.returncode == 0, proc.stderr + proc.stdout
    result = json.loads(proc.stdout)
    assert set(result) == KEYS
    assert result["flows"] == 2000
    for key in KEYS - {"flows"}:
        assert isinstance(result[key], float) and result[key] > 0, (key, result)
    assert result["install_ratio"] == pytest.approx(
        result["ofctl_install_s"] / result["tenantnet_install_s"], rel=0.02)
    assert ours() == before


def test_bench_flows_table_and_errors():
    before = ours()
    proc = bench("flows", "--flows", "300", "--repeat", "2")
    assert proc.returncode == 0, proc.stderr + proc.stdout
    assert "300 flows" in proc.stdout and "no-op resync" in proc.stdout
    bad = bench("flows", "--flows", "0")
    assert bad.returncode == 1 and bad.stderr.startswith("tenantnet: bench flows:")
    assert "Traceback" not in bad.stderr
    assert ours() == before
