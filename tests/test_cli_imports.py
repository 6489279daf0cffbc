"""The `tenantnet` command line and node bootstrap import neither the model nor networkx.

Node commands (`tenantnet node bootstrap`, ...) run inside node VMs, under TCG software
emulation here, where importing networkx alone took 6.5 s before the first ovs-vsctl. Each
command imports what it needs when it runs."""

import subprocess
import sys

from conftest import ROOT

HEAVY = ("networkx", "tenantnet.model.config", "tenantnet.experiment.runner")


def loaded_after(code):
    """The HEAVY modules loaded after running *code* in a fresh interpreter."""
    report = f"; import sys; print(sorted(m for m in {HEAVY!r} if m in sys.modules))"
    proc = subprocess.run([sys.executable, "-c", code + report], cwd=ROOT,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout.strip()


def test_building_the_command_line_and_node_bootstrap_import_no_model():
    argv = ["node", "bootstrap", "--role", "compute", "--transport-interface", "eth1",
            "--transport-ip", "198.19.0.11/24", "--management-ip", "198.18.0.11"]
    code = (f"from tenantnet.cli.main import build_parser; build_parser().parse_args({argv!r}); "
            "import tenantnet.node.bootstrap")
    assert loaded_after(code) == "[]"


def test_the_check_sees_them_where_they_are_imported():
    assert loaded_after("import tenantnet.experiment.runner") == str(sorted(HEAVY))
