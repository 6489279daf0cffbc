import os
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

CONFIGS = os.path.join(ROOT, "configs", "lab")


def lab_prerequisites():
    """None when lab tests can run here, else the reason they cannot."""
    import shutil
    if os.geteuid() != 0:
        return "needs root (network namespaces)"
    for tool in ("ovsdb-server", "ovs-vsctl", "ip", "ethtool", "ping"):
        if not shutil.which(tool) and not os.path.exists(f"/usr/sbin/{tool}"):
            return f"{tool} is not installed"
    return None


@pytest.fixture
def config_path():
    return lambda name: os.path.join(CONFIGS, name)
