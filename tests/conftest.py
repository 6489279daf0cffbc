import os
import time
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


def nodes_yaml(n_compute=2):
    """YAML text: a `nodes:` list of *n_compute* compute nodes (compute1 on 198.18.0.11,
    ...) and the network node net1 (198.18.0.2)."""
    lines = ["nodes:"]
    for i in range(1, n_compute + 1):
        lines.append(f"  - {{name: compute{i}, role: compute, management_ip: 198.18.0.{10 + i}, "
                     f"transport_ip: 198.19.0.{10 + i}}}")
    lines.append("  - {name: net1, role: network, management_ip: 198.18.0.2, "
                 "transport_ip: 198.19.0.2}")
    return "\n".join(lines) + "\n"


def two_tenant_config(n_compute=2, vms=("web1@compute1",), header=""):
    """YAML text: *n_compute* compute nodes + net1, tenants acme/web and globex/app on the
    same VM CIDR, and VMs given as "name@node" (web* join acme/web, others globex/app).
    The `vms:` list comes last so that tests can append entries to it."""
    lines = [header] if header else []
    lines.append(nodes_yaml(n_compute).rstrip("\n"))
    lines += [
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



def at_limit(head, last, size=32):
    """A name of *size* characters (32: the longest a config takes): *head*, '-' up to
    *size*, then *last*, so names with the same head share all but their last characters."""
    return head + "-" * (size - len(head) - len(last)) + last


# The longest and strangest names `check-config` accepts: every one of them at the limit
# (but the network node "ctl"), pairs differing in their last character only (naive
# truncation would merge them), names ending in '-' or '_', and node names shaped like the
# lab's own namespaces: "ctl" (the controller's) and "v-" + a VM's name (that VM's).
LONG_TENANTS = [at_limit("tenant_a", "1"), at_limit("tenant_a", "_")]
LONG_NETS = [at_limit("net_", "a"), at_limit("net_", "-")]
LONG_VMS = [at_limit("vm_", last) for last in ("1", "2", "3", "4", "5", "6", "_")] + \
    [at_limit("vm_", "x", size=30)]
LONG_COMPUTES = [at_limit("compute_", "1"), at_limit("compute_", "2"), "v-" + LONG_VMS[-1]]


def longest_names_config():
    """YAML text for LONG_*: network node "ctl", three compute nodes, two tenants with two
    networks each (the second tenant's second one CNB; both first ones on 10.0.0.0/24),
    and two VMs per network spread over the compute nodes."""
    lines = ["nodes:", "  - {name: ctl, role: network, management_ip: 198.18.0.2, "
                       "transport_ip: 198.19.0.2}"]
    for i, node in enumerate(LONG_COMPUTES, start=1):
        lines.append(f"  - {{name: '{node}', role: compute, management_ip: 198.18.0.{10 + i}, "
                     f"transport_ip: 198.19.0.{10 + i}}}")
    lines.append("tenants:")
    keys = []
    for tenant in LONG_TENANTS:
        lines += [f"  - name: '{tenant}'", "    networks:"]
        for net in LONG_NETS:
            keys.append(f"{tenant}/{net}")
            k = len(keys)
            cidr = "10.0.0.0/24" if net == LONG_NETS[0] else f"10.{k}.0.0/24"
            mode = "cnb" if k == 4 else "dnb"
            tcidr = "" if mode == "cnb" else f", transport_cidr: 198.19.{100 + k}.0/24"
            lines.append(f"      - {{name: '{net}', mode: {mode}, segmentation_id: {100 + k}, "
                         f"cidr: {cidr}{tcidr}}}")
    lines.append("vms:")
    for i, vm in enumerate(LONG_VMS):
        lines.append(f"  - {{name: '{vm}', network: '{keys[i // 2]}', "
                     f"node: '{LONG_COMPUTES[i % 3]}'}}")
    return "\n".join(lines) + "\n"


def run_cli(prefix, *args, check=True, timeout=300):
    """`tenantnet ARGS` in a fresh process, for the lab with *prefix*; AssertionError with
    its output when it fails and *check*."""
    import subprocess
    proc = subprocess.run([sys.executable, "-m", "tenantnet.cli", *args], cwd=ROOT,
                          capture_output=True, text=True, timeout=timeout,
                          env=dict(os.environ, TENANTNET_LAB_PREFIX=prefix))
    if check and proc.returncode != 0:
        raise AssertionError(f"tenantnet {' '.join(args)} failed: {proc.stderr}{proc.stdout}")
    return proc


def lab_namespaces(prefix):
    """The network namespaces of the lab *prefix* that exist now, sorted."""
    try:
        return sorted(n for n in os.listdir("/run/netns") if n.startswith(prefix + "-"))
    except FileNotFoundError:
        return []


def wait_for_value(what, check, timeout):
    """The first truthy value of *check()*, polled every 0.1 s; AssertionError naming *what*
    after *timeout* seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not within {timeout:.0f}s")
        time.sleep(0.1)


def lab_up_and_down(prefix, config_file, config_text=None):
    """A generator for a module fixture: the lab *prefix* up from *config_file* (written
    first from *config_text*, when given) through the CLI, yielded as a Lab, then down,
    with no namespace left."""
    from tenantnet.lab.lab import Lab
    lab = Lab(prefix=prefix)
    lab.down()                                   # a leftover from an interrupted run
    if config_text is not None:
        config_file.write_text(config_text)
    proc = run_cli(prefix, "lab", "up", "-c", str(config_file), "--timeout", "120",
                   check=False)
    assert proc.returncode == 0, proc.stderr + proc.stdout
    yield lab
    lab.down()
    assert not lab_namespaces(prefix)
