"""python-ovs without eventlet: its poller imports eventlet when eventlet is installed
(os-ken's requirements pull it in), and eventlet warns on import that it is deprecated.
tenantnet.southbound imports the poller with eventlet hidden, so neither the controller nor
any command imports eventlet or prints the warning; where eventlet is already in use (an
app under the real Ryu), it is left alone."""

import subprocess
import sys

from conftest import ROOT

REPORT = "import sys, ovs.poller; print('eventlet:', 'eventlet' in sys.modules, " \
         "ovs.poller.eventlet_patcher is not None)"


def child(code, *argv):
    return subprocess.run([sys.executable, "-W", "default", "-c", code, *argv], cwd=ROOT,
                          capture_output=True, text=True, timeout=120)


def test_python_ovs_alone_imports_eventlet_and_warns():
    """What the package avoids is there to avoid: here python-ovs imports eventlet."""
    proc = child(REPORT)
    assert proc.returncode == 0, proc.stderr
    assert "eventlet: True True" in proc.stdout, proc.stdout + proc.stderr
    assert "Eventlet is deprecated" in proc.stderr, proc.stderr


def test_the_controller_side_imports_no_eventlet_and_prints_no_warning():
    code = ("import tenantnet.controller.core, tenantnet.southbound.ovsdb; " + REPORT +
            "; from tenantnet.cli.main import main; sys.exit(main(sys.argv[1:]))")
    proc = child(code, "check-config", f"{ROOT}/configs/lab/minimal.yaml")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "eventlet: False False" in proc.stdout, proc.stdout + proc.stderr
    assert "Warning" not in proc.stderr, proc.stderr


def test_eventlet_already_in_use_is_left_alone():
    proc = child("import warnings; warnings.simplefilter('ignore'); import eventlet; "
                 "import tenantnet.southbound.ovsdb; " + REPORT)
    assert proc.returncode == 0, proc.stderr
    assert "eventlet: True True" in proc.stdout, proc.stdout + proc.stderr
