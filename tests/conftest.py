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


def two_tenant_config(n_compute=2, vms=("web1@compute1",), header=""):
    """YAML text: *n_compute* compute nodes + net1, tenants acme/web and globex/app on the
    same VM CIDR, and VMs given as "name@node" (web* join acme/web, others globex/app).
    The `vms:` list comes last so that tests can append entries to it."""
    lines = [header] if header else []
    lines.append("nodes:")
    for i in range(1, n_compute + 1):
        lines.append(f"  - {{name: compute{i}, role: compute, management_ip: 198.18.0.{10 + i}, "
                     f"transport_ip: 198.19.0.{10 + i}}}")
    lines += [
        "  - {name: net1, role: network, management_ip: 198.18.0.2, transport_ip: 198.19.0.2}",
        "tenants:",
        "  - name: acme",
        "    networks:",
        "      - {name: web, segmentation_id: 100, cidr: 10.0.0.0/24, "
        "transport_cidr: 198.19.100.0/24}",
        "  - name: globex",
        "    networks:",
        "      - {name: app, segmentation_id: 200, cidr: 10.0.0.0/24, "
        "transport_cidr: 198.19.200.0/24}",
        "vms:",
    ]
    for spec in vms:
        name, node = spec.split("@")
        net = "acme/web" if name.startswith("web") else "globex/app"
        lines.append(f"  - {{name: {name}, network: {net}, node: {node}}}")
    return "\n".join(lines) + "\n"
