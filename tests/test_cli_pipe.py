"""A `tenantnet` command piped into `head` exits quietly (no BrokenPipeError traceback)."""

import subprocess
import sys

from conftest import ROOT


def many_vms_config(n):
    lines = ["nodes:",
             "  - {name: compute1, role: compute, management_ip: 198.18.0.11, "
             "transport_ip: 198.19.0.11}",
             "  - {name: net1, role: network, management_ip: 198.18.0.2, transport_ip: 198.19.0.2}",
             "tenants:",
             "  - name: acme",
             "    networks:",
             "      - {name: web, segmentation_id: 100, cidr: 10.0.0.0/16, "
             "transport_cidr: 198.19.100.0/24}",
             "vms:"]
    lines += [f"  - {{name: vm{i}, network: acme/web, node: compute1}}" for i in range(n)]
    return "\n".join(lines) + "\n"


def test_check_config_into_a_closed_pipe_is_quiet(tmp_path):
    path = tmp_path / "many.yaml"
    path.write_text(many_vms_config(1500))     # ~100 KB of output: more than a pipe holds
    proc = subprocess.Popen([sys.executable, "-m", "tenantnet.cli", "check-config", str(path)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=ROOT)
    first = proc.stdout.readline()
    proc.stdout.close()                        # what `| head -1` does after one line
    err = proc.stderr.read().decode()
    rc = proc.wait(60)
    assert b"OK" in first
    assert err == "", err
    assert rc == 141
