"""The `tenantnet` command prints no DeprecationWarning: python-ovs imports eventlet, which
warns on import that it is deprecated; the command's entry point (cli.main.main) silences
exactly that warning. (tests/test_bench.py checks a real command that reaches python-ovs,
`bench placement`, which needs root and Open vSwitch.)"""

import os
import subprocess
import sys

from conftest import CONFIGS, ROOT

CONFIG = os.path.join(CONFIGS, "minimal.yaml")

# A command through the console script's entry point, then python-ovs imported as a command
# that reaches the switches does (`controller`, `bench placement`: controller.core).
THROUGH_MAIN = ("import sys; from tenantnet.cli.main import main; code = main(sys.argv[1:]); "
                "import ovs.poller; print('eventlet imported:', 'eventlet' in sys.modules); "
                "sys.exit(code)")
WITHOUT_MAIN = ("import sys; import ovs.poller; "
                "print('eventlet imported:', 'eventlet' in sys.modules)")


def child(code, *argv):
    return subprocess.run([sys.executable, "-c", code, *argv], cwd=ROOT, capture_output=True,
                          text=True, timeout=120)


def test_python_ovs_warns_without_the_entry_point():
    """The warning the entry point silences is there to silence: python-ovs imports
    eventlet here, and eventlet warns."""
    proc = child(WITHOUT_MAIN)
    assert proc.returncode == 0, proc.stderr
    assert "eventlet imported: True" in proc.stdout, proc.stdout + proc.stderr
    assert "Eventlet is deprecated" in proc.stderr, proc.stderr


def test_a_command_prints_no_deprecation_warning():
    proc = child(THROUGH_MAIN, "check-config", CONFIG)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert f"{CONFIG}: OK" in proc.stdout
    assert "eventlet imported: True" in proc.stdout, proc.stdout + proc.stderr
    assert "DeprecationWarning" not in proc.stderr, proc.stderr
    assert "Eventlet is deprecated" not in proc.stderr, proc.stderr


def test_other_warnings_still_show():
    """The filter is that warning's only: another DeprecationWarning raised after the entry
    point's filter still reaches stderr."""
    code = ("import warnings; from tenantnet.cli.main import quiet_eventlet_warning; "
            "quiet_eventlet_warning(); warnings.warn('tntest: still shown', "
            "DeprecationWarning)")
    proc = subprocess.run([sys.executable, "-W", "default", "-c", code], cwd=ROOT,
                          capture_output=True, text=True, timeout=60)
    assert "DeprecationWarning: tntest: still shown" in proc.stderr, proc.stderr
