"""The lab with real node VMs (QEMU, Debian, kernel-datapath Open vSwitch): `lab up --nodes vm`.

2 compute VMs + 1 network VM, two tenants on the same CIDR, GRE in the kernel. The node
image is built once per machine (cached under /var/cache/tenantnet/images)."""

import json
import os
import re
import shutil
import subprocess
import sys
import time

import pytest

from conftest import lab_prerequisites, run_cli, two_tenant_config
from tenantnet.lab.lab import Lab
from tenantnet.model import naming

PREFIX = os.environ.get("TENANTNET_VM_PREFIX", "tnm")


def _vm_problem():
    problem = lab_prerequisites()
    if problem:
        return problem
    for tool in ("qemu-system-x86_64", "qemu-img", "debootstrap"):
        if not shutil.which(tool):
            return f"{tool} is not installed (scripts/setup installs it)"
    return None


pytestmark = [pytest.mark.vm, pytest.mark.lab,
              pytest.mark.skipif(_vm_problem() is not None, reason=str(_vm_problem()))]


def cli(*args, check=True, timeout=900):
    return run_cli(PREFIX, *args, check=check, timeout=timeout)


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    path = tmp_path_factory.mktemp("vmlab") / "vm-two-tenants.yaml"
    path.write_text(two_tenant_config(n_compute=2, vms=("web1@compute1", "web2@compute2",
                                                        "app1@compute1", "app2@compute2")))
    lab = Lab(prefix=PREFIX)
    lab.down()
    t0 = time.perf_counter()
    up = cli("lab", "up", "-c", str(path), "--nodes", "vm", "--timeout", "240")
    print(f"lab up with node VMs: {time.perf_counter() - t0:.0f}s\n{up.stdout}")
    try:
        yield lab
    finally:
        lab.down()
        assert not [n for n in os.listdir("/run/netns") if n.startswith(PREFIX + "-")]
        assert not os.path.exists(f"/var/lib/tenantnet/vms/{PREFIX}")


def node(lab, name, script, check=True):
    proc = cli("lab", "node", name, "--", "sh", "-c", script, check=check)
    return proc.stdout


def vms(lab):
    return {v["name"]: v for v in lab.api().list_vms()}


def test_status_names_the_node_vms(lab):
    st = json.loads(cli("lab", "status", "--json").stdout)
    assert {n: v["kind"] for n, v in st["nodes"].items()} == \
        {"compute1": "vm", "compute2": "vm", "net1": "vm"}
    assert all(v["accel"] in ("kvm", "tcg") for v in st["nodes"].values())


def test_matrix_isolation_with_overlapping_cidrs(lab):
    m = lab.matrix()
    for r in m["rows"]:
        assert r["unicast"] == r["same_network"], r
        assert r["broadcast"] == r["same_network"], r
        if r["same_network"]:
            assert r["ping"], r


def test_kernel_datapath_and_gre_key(lab):
    brint = naming.brint_name("acme/web")
    assert node(lab, "compute1", f"ovs-vsctl get bridge {brint} datapath_type").strip() == \
        "system"
    assert node(lab, "compute1", "ovs-vsctl get bridge br-tun datapath_type").strip() == \
        "system"
    # a flow toward web2 (compute2) leaves through GRE with key = segmentation id 100
    lab.ping("web1", vms(lab)["web2"]["ip"], count=3)
    flows = node(lab, "compute1", "ovs-dpctl dump-flows")
    assert re.search(r"set\(tunnel\(tun_id=0x64,", flows), flows


def _outage(lab, src, dst_ip, action, seconds=40):
    """Ping every 10 ms from *src* while *action* runs; (longest gap in s, received)."""
    count = int(seconds / 0.01)
    proc = subprocess.Popen(_exec_argv(src, ["ping", "-n", "-D", "-i", "0.01", "-W", "1",
                                             "-c", str(count), dst_ip]),
                            stdout=subprocess.PIPE, text=True)
    time.sleep(2)
    action()
    out, _ = proc.communicate(timeout=seconds + 120)
    stamps = [float(m.group(1)) for m in re.finditer(r"^\[(\d+\.\d+)\]", out, re.M)]
    assert len(stamps) > 100, out[-2000:]
    gap = max(b - a for a, b in zip(stamps, stamps[1:]))
    return gap, stamps, out


def _exec_argv(endpoint, cmd):
    """argv that runs *cmd* in *endpoint* (a namespace inside its node VM) from here."""
    return [sys.executable, "-m", "tenantnet.cli", "lab", "exec", "--prefix", PREFIX,
            endpoint, "--", *cmd]


def test_ovs_restart_on_a_node_recovers_the_data_plane(lab):
    """`systemctl restart openvswitch-switch` on compute1: bridges, br-tun's and the ex-
    endpoints' addresses and the flows come back without operator action."""
    v = vms(lab)
    gap, stamps, out = _outage(lab, "web2", v["web1"]["ip"], lambda: node(
        lab, "compute1", "systemctl restart openvswitch-switch"))
    print(f"OVS restart on compute1: longest gap between replies {gap * 1000:.0f} ms")
    assert time.time() - stamps[-1] < 5, "no reply in the last seconds of the run"
    assert lab.ping("web2", v["web1"]["ip"], count=3)
    assert lab.ping("app2", v["app1"]["ip"], count=3)
    assert "198.19.0.11/" in node(lab, "compute1", "ip -br addr show br-tun")


def test_reboot_of_a_node_vm_recovers_the_data_plane(lab):
    """`systemctl reboot` of compute2: the node comes back with its bridges (kernel
    datapath), br-tun's and the ex- endpoints' addresses and the controller's flows, with no
    operator action. Its tenant VMs are then made again, as a hypervisor restarts its VMs
    (lab.restore_node), and traffic flows."""
    v = vms(lab)
    boot_id = "cat /proc/sys/kernel/random/boot_id"
    before = node(lab, "compute2", boot_id).strip()
    t0 = time.monotonic()
    node(lab, "compute2", "systemd-run --on-active=1 systemctl reboot", check=False)
    deadline = time.monotonic() + 400
    while True:                     # until it answers with another boot id: it rebooted
        try:
            now = cli("lab", "node", "compute2", "--", "sh", "-c", boot_id, check=False,
                      timeout=60).stdout.strip()
        except subprocess.TimeoutExpired:
            now = ""
        if now and now != before:
            break
        assert time.monotonic() < deadline, "compute2 did not come back from its reboot"
        time.sleep(2)
    made = lab.restore_node("compute2", timeout=60)
    assert set(made) == {"web2", "app2"}
    back = time.monotonic() - t0
    assert "198.19.0.12/" in node(lab, "compute2", "ip -br addr show br-tun")
    ex = naming.ex_port_name("acme/web")
    deadline = time.monotonic() + 60
    while "198.19.100.12/" not in node(lab, "compute2", f"ip -br addr show {ex}", check=False):
        assert time.monotonic() < deadline, "the ex- endpoint got no address (udev rule)"
        time.sleep(1)
    brtun = naming.brtun_name("acme/web")
    assert node(lab, "compute2", f"ovs-vsctl get bridge {brtun} datapath_type").strip() == \
        "system"
    deadline = time.monotonic() + 60
    while "cookie=0x544e4e54" not in node(lab, "compute2",
                                          f"ovs-ofctl -O OpenFlow13 dump-flows {brtun}"):
        assert time.monotonic() < deadline, "the controller did not resync the flows"
        time.sleep(1)
    deadline = time.monotonic() + 60
    while not (lab.ping("web1", v["web2"]["ip"]) and lab.ping("app1", v["app2"]["ip"])):
        assert time.monotonic() < deadline, "no traffic to the rebooted node's VMs"
    print(f"reboot of compute2: node and VMs back, traffic flowing "
          f"{time.monotonic() - t0:.0f}s after the reboot (node answered after {back:.0f}s)")
