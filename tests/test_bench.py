"""`tenantnet bench flows` and `tenantnet bench placement` for real, at a small size: every
key, sane values, nothing left behind. No timing assertions: the speed targets live in the
bench's own output.

"Nothing left behind" is checked per bench process, by what carries its pid (the switch is
`tnbench-<pid>`) and by the temporary directory it was given, so a bench run by hand at the
same time does not disturb these tests."""

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile

import pytest

from conftest import ROOT

pytestmark = [pytest.mark.lab, pytest.mark.integration, pytest.mark.skipif(
    os.geteuid() != 0 or (not shutil.which("ovs-vswitchd") and
                          not os.path.exists("/usr/sbin/ovs-vswitchd")),
    reason="needs root and Open vSwitch")]

PLACEMENT_KEYS = {"p50_ms", "p95_ms", "raw_p50_ms", "ratio", "first_on_node_p50_ms",
                  "raw_first_on_node_p50_ms"}
KEYS = {"flows", "tenantnet_install_s", "ofctl_install_s", "install_ratio",
        "tenantnet_delete_s", "ofctl_delete_s", "noop_resync_s"}


def left_by(pid):
    """What the bench process *pid* left: its `tnbench-<pid>` namespace and /tmp directory,
    and processes running from that directory."""
    from tenantnet.bench.switch import PREFIX, leftovers
    tag = f"{PREFIX}{pid}"
    found = [name for name in leftovers() if os.path.basename(name) == tag]
    out = subprocess.run(["ps", "-eo", "pid,args"], capture_output=True, text=True).stdout
    found += [line for line in out.splitlines() if f"/tmp/{tag}/" in line]
    return found


def bench(*args, timeout=300, columns=None):
    """`tenantnet bench ARGS` as a child process with a temporary directory of its own
    (TMPDIR); asserts that the bench left nothing behind."""
    with tempfile.TemporaryDirectory(prefix="tntest-bench-") as tmp:
        env = dict(os.environ, TMPDIR=tmp)
        if columns:
            env["COLUMNS"] = str(columns)
        child = subprocess.Popen([sys.executable, "-m", "tenantnet.cli", "bench", *args],
                                 cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                 text=True, env=env)
        try:
            out, err = child.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            child.send_signal(signal.SIGTERM)        # the bench cleans up on SIGTERM
            try:
                child.communicate(timeout=60)
            except subprocess.TimeoutExpired:
                child.kill()
                child.communicate()
            raise
        assert not left_by(child.pid), (args, left_by(child.pid))
        assert not os.listdir(tmp), (args, os.listdir(tmp))
    return subprocess.CompletedProcess(child.args, child.returncode, out, err)


def test_bench_flows_json():
    proc = bench("flows", "--flows", "2000", "--repeat", "1", "--json")
    assert proc.returncode == 0, proc.stderr + proc.stdout
    result = json.loads(proc.stdout)
    assert set(result) == KEYS
    assert result["flows"] == 2000
    for key in KEYS - {"flows"}:
        assert isinstance(result[key], float) and result[key] > 0, (key, result)
    assert result["install_ratio"] == pytest.approx(
        result["ofctl_install_s"] / result["tenantnet_install_s"], rel=0.02)


def test_bench_flows_table_and_errors():
    proc = bench("flows", "--flows", "300", "--repeat", "2")
    assert proc.returncode == 0, proc.stderr + proc.stdout
    assert "300 flows" in proc.stdout and "no-op resync" in proc.stdout
    bad = bench("flows", "--flows", "0")
    assert bad.returncode == 1 and bad.stderr.startswith("tenantnet: bench flows:")
    assert "Traceback" not in bad.stderr


def test_bench_placement_json(tmp_path):
    plot = tmp_path / "curve.png"
    proc = bench("placement", "--vms", "3", "--existing", "25", "--levels", "15",
                 "--plot", str(plot), "--json")
    assert proc.returncode == 0, proc.stderr + proc.stdout
    # the core imports python-ovs, which imports eventlet: its warning is silenced
    assert "DeprecationWarning" not in proc.stderr, proc.stderr
    result = json.loads(proc.stdout)
    levels = {f"{side}p50_ms_at_{m}" for side in ("", "raw_", "floor_") for m in (10, 15, 25)}
    assert set(result) == PLACEMENT_KEYS | levels
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    rows = (tmp_path / "curve.csv").read_text().split()
    assert rows[0] == "existing_vms,p50_ms,p95_ms,raw_p50_ms,floor_p50_ms"
    assert [r.split(",")[0] for r in rows[1:]] == ["10", "15", "25"]
    assert float(rows[-1].split(",")[1]) == result["p50_ms_at_25"]
    assert float(rows[-1].split(",")[4]) == result["floor_p50_ms_at_25"]
    for key, value in result.items():
        assert isinstance(value, float) and value > 0, (key, result)
    assert result["p50_ms"] == result["p50_ms_at_25"]
    assert result["raw_p50_ms"] == result["raw_p50_ms_at_25"]
    assert result["p95_ms"] >= result["p50_ms"]
    assert result["ratio"] == pytest.approx(result["p50_ms"] / result["raw_p50_ms"], rel=0.02)


def test_bench_placement_table_and_errors():
    proc = bench("placement", "--vms", "2", "--existing", "12", columns=240)  # a line per row
    assert proc.returncode == 0, proc.stderr + proc.stdout
    assert "2 VMs placed one at a time" in proc.stdout
    assert "existing bridges, after 10 VMs" in proc.stdout
    assert "existing bridges, after 12 VMs" in proc.stdout
    assert "first on the node, after 12 VMs" in proc.stdout
    growth = re.search(r"p50 after 12 VMs / p50 after 10: tenantnet ([0-9.]+), raw tools "
                       r"([0-9.]+); tenantnet above the floor: (-?[0-9.]+) ms after 12, "
                       r"(-?[0-9.]+) ms after 10", proc.stdout)
    assert growth, proc.stdout
    assert float(growth.group(1)) > 0 and float(growth.group(2)) > 0
    plain = bench("placement", "--vms", "2", "--json")
    assert plain.returncode == 0, plain.stderr + plain.stdout
    assert set(json.loads(plain.stdout)) == PLACEMENT_KEYS     # no M given: no p50_ms_at_*
    for bad_args in (("--vms", "0"), ("--existing", "0")):
        bad = bench("placement", *bad_args)
        assert bad.returncode == 1 and bad.stderr.startswith("tenantnet: bench placement:")
        assert "Traceback" not in bad.stderr
    for levels in ("0,10", "ten"):
        bad = bench("placement", "--levels", levels)
        assert bad.returncode != 0 and "--levels" in bad.stderr and levels in bad.stderr
        assert "Traceback" not in bad.stderr
