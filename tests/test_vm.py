"""Node VMs (tenantnet.vm): the image, QEMU, kernel-datapath OVS with GRE between two VMs.

The tests marked `vm` build the node image (or reuse the cached one: CI pays the build once
per machine, about 2 minutes), boot two VMs of 768 MB side by side in a test namespace whose
Linux bridge is their transport network, and run a kernel GRE tunnel between them. They are
skipped, with the reason, when QEMU or debootstrap is missing or neither KVM nor TCG boots
the node kernel. The other tests here are plain unit tests."""

import ipaddress
import json
import os
import shutil
import subprocess
import tarfile
import threading
import time

import pytest

from tenantnet.vm import image as image_mod
from tenantnet.vm import imagespec
from tenantnet.vm import qemu
from tenantnet.vm.source import push_tar, source_tar

PREFIX = "tnvt"
NETNS = "tnvt-net"
BRIDGE = "tnvt-br0"
TRANSPORT = "198.19.250"     # .1 is the namespace's, VMs from .11
GRE_NET = "198.19.251"       # the internal ports joined by the GRE tunnel
TOOLS = ("qemu-system-x86_64", "qemu-img", "debootstrap", "mkfs.ext4", "ssh", "ssh-keygen",
         "unshare", "ip")


# -- unit tests ------------------------------------------------------------------------
def test_apt_sources_both_formats():
    entries = imagespec.parse_apt_sources({
        "/etc/apt/sources.list": "deb [arch=amd64 signed-by=/k.gpg] http://m/debian bookworm "
                                 "main contrib # x\n# deb http://no bookworm main\n",
        "/etc/apt/sources.list.d/debian.sources":
            "Types: deb\nURIs: http://deb.debian.org/debian\nSuites: bookworm "
            "bookworm-updates\nComponents: main\n\nTypes: deb\nURIs: http://off\n"
            "Suites: bookworm\nComponents: main\nEnabled: no\n\n"
            "Types: deb\nURIs: http://sec/debian-security\nSuites: bookworm-security\n"
            "Components: main\n"})
    assert ("deb", "http://m/debian", "bookworm", ("main", "contrib")) in entries
    assert not any(e[1] in ("http://no", "http://off") for e in entries)
    mirror, picked = imagespec.image_sources(entries)
    assert mirror == "http://m/debian"
    assert ("http://sec/debian-security", "bookworm-security") in picked
    with pytest.raises(imagespec.ImageError, match="TENANTNET_DEBIAN_MIRROR"):
        imagespec.image_sources([("deb", "http://archive.ubuntu.com/ubuntu", "jammy",
                                  ("main",))])


def test_image_digest_covers_inputs(monkeypatch):
    sources = [("deb", "http://m/debian", "bookworm", ("main",))]
    base = imagespec.build_inputs(sources)
    assert base["wheels"] == imagespec.node_pins()
    assert not any(w.lower().startswith(("matplotlib", "numpy")) for w in base["wheels"])
    d0 = imagespec.inputs_digest(base)
    assert d0 == imagespec.inputs_digest(imagespec.build_inputs(sources))
    monkeypatch.setattr(imagespec, "NODE_PACKAGES", imagespec.NODE_PACKAGES + ("vim",))
    assert imagespec.inputs_digest(imagespec.build_inputs(sources)) != d0
    assert imagespec.inputs_digest({**base, "wheels": ["PyYAML==1"]}) != d0
    assert imagespec.inputs_digest({**base, "build_code": "x"}) != d0


def _fake_build(monkeypatch, calls, fail=False, delay=0.3):
    monkeypatch.setattr(image_mod, "check_tools", lambda *a: None)
    monkeypatch.setattr(image_mod, "build_inputs",
                        lambda: {"suite": "bookworm", "packages": ["x"]})

    def build_into(tmp, inputs, digest, progress):
        calls.append(tmp)
        with open(os.path.join(tmp, "build.log"), "w") as fh:
            fh.write("step 1\nstep 2 broke\n")
        time.sleep(delay)
        if fail:
            raise imagespec.ImageError(f"debootstrap failed; see {tmp}/build.log")
        with open(os.path.join(tmp, "manifest.json"), "w") as fh:
            json.dump({"digest": digest}, fh)

    monkeypatch.setattr(image_mod, "build_into", build_into)


def test_concurrent_builds_wait_and_build_once(tmp_path, monkeypatch):
    calls, said, results = [], [], []
    _fake_build(monkeypatch, calls)
    threads = [threading.Thread(target=lambda: results.append(image_mod.build_image(
        progress=said.append, cache_dir=str(tmp_path)))) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(calls) == 1 and len(results) == 2 and results[0] == results[1]
    assert any("waiting" in line for line in said), said
    assert sorted(os.listdir(tmp_path)) == [".lock", results[0].digest]
    image_mod.build_image(progress=said.append, cache_dir=str(tmp_path))
    assert len(calls) == 1                       # cached
    image_mod.build_image(force=True, progress=said.append, cache_dir=str(tmp_path))
    assert len(calls) == 2 and sorted(os.listdir(tmp_path)) == [".lock", results[0].digest]


def test_failed_build_leaves_no_directory(tmp_path, monkeypatch):
    calls = []
    _fake_build(monkeypatch, calls, fail=True, delay=0)
    with pytest.raises(imagespec.ImageError, match="full log: .*failed-"):
        image_mod.build_image(progress=lambda t: None, cache_dir=str(tmp_path))
    left = sorted(os.listdir(tmp_path))
    assert left[0] == ".lock" and left[1].startswith("failed-") and len(left) == 2


def test_missing_debootstrap_says_what_to_install(monkeypatch):
    monkeypatch.setattr(image_mod.os, "geteuid", lambda: 0)
    monkeypatch.setattr(image_mod.shutil, "which", lambda tool: None)
    with pytest.raises(imagespec.ImageError,
                       match="apt-get install debootstrap qemu-system-x86 qemu-utils"):
        image_mod.check_tools()


def test_kernel_cmdline_and_names():
    nics = [qemu.Nic("tn-c1-0", "tn-mgmt", "52:54:00:00:00:01", "198.18.0.11/24"),
            qemu.Nic("tn-c1-1", "tn-tr", "52:54:00:00:00:02", "198.19.0.11/16", "198.19.0.1")]
    line = qemu.kernel_cmdline("c1", qemu.machine_id("tn", "c1"), nics)
    assert "root=/dev/vda rw console=ttyS0 net.ifnames=0 systemd.hostname=c1" in line
    assert "ip=198.18.0.11:::255.255.255.0::eth0:off" in line
    assert "ip=198.19.0.11::198.19.0.1:255.255.0.0::eth1:off" in line
    ids = {qemu.machine_id(p, n) for p in ("tn", "tn2") for n in ("c1", "c2")}
    assert len(ids) == 4 and all(len(i) == 32 and int(i, 16) for i in ids)
    assert qemu.machine_id("tn", "c1") == qemu.machine_id("tn", "c1")
    long_tap = qemu.tap_name("tn", "compute-with-a-long-name", 1)
    assert len(long_tap) <= 15 and long_tap.startswith("tn-")
    assert qemu.vm_mac("tn", "c1", 0) != qemu.vm_mac("tn", "c1", 1)


def test_vm_refuses_names_and_addresses_outside_the_lab():
    img = imagespec.Image("/nonexistent")
    ok = ("tn-c1-0", "tn-br", "52:54:00:00:00:01", "198.18.0.11/24")
    with pytest.raises(qemu.VmError, match="outside"):
        qemu.QemuVm("c1", "tn-fabric", [ok[:3] + ("10.0.0.1/24",)], img)
    with pytest.raises(qemu.VmError, match="lab prefix"):
        qemu.QemuVm("c1", "fabric", [ok], img)
    with pytest.raises(qemu.VmError, match="tap"):
        qemu.QemuVm("c1", "tn-fabric", [("eth7",) + ok[1:]], img)
    vm = qemu.QemuVm("c1", "tn-fabric", [ok], img, state_dir="/nonexistent/c1")
    cmd = vm.command(qemu.Accel("tcg", qemu.TCG_ARGS))
    assert cmd[0] == "qemu-system-x86_64" and "-daemonize" in cmd
    assert "tap,id=n0,ifname=tn-c1-0,script=no,downscript=no" in cmd
    assert not vm.running()
    vm.stop()                                   # nothing to stop: no error


def test_source_tar_is_deterministic():
    data1, d1 = source_tar()
    data2, d2 = source_tar()
    assert d1 == d2
    with tarfile.open(fileobj=__import__("io").BytesIO(data1)) as tar:
        names = tar.getnames()
    assert "tenantnet/vm/source.py" in names
    assert not any("__pycache__" in n for n in names)


def test_box_metadata():
    from tenantnet.vm.box import box_metadata
    assert box_metadata() == {"provider": "libvirt", "format": "qcow2",
                              "virtual_size": imagespec.DISK_SIZE_GB}


# -- VMs -------------------------------------------------------------------------------
def vm_prerequisites():
    if os.geteuid() != 0:
        return "needs root (debootstrap, network namespaces, taps)"
    for tool in TOOLS:
        if not shutil.which(tool):
            return (f"{tool} is not installed (apt-get install debootstrap qemu-system-x86 "
                    "qemu-utils e2fsprogs openssh-client, or scripts/setup)")
    return None


@pytest.fixture(scope="module")
def node_image():
    reason = vm_prerequisites()
    if reason:
        pytest.skip(reason)
    start = time.monotonic()
    img = image_mod.build_image(progress=print)
    print(f"image ready after {time.monotonic() - start:.1f}s: {img.path}")
    return img


@pytest.fixture(scope="module")
def accel(node_image):
    try:
        return qemu.detect_accel(node_image, progress=print)
    except qemu.VmError as exc:
        pytest.skip(str(exc))


def _cleanup_namespace():
    """Stop VMs a previous (crashed) run left, by their recorded pids; remove the netns."""
    base = os.path.join(qemu.STATE_DIR, PREFIX)
    for name in (os.listdir(base) if os.path.isdir(base) else ()):
        rec_file = os.path.join(base, name, "vm.json")
        try:
            with open(rec_file) as fh:
                rec = json.load(fh)
        except (OSError, ValueError):
            continue
        from tenantnet.node import procs
        procs.stop([(rec["pid"], rec.get("start_time"))], timeout=5.0)
    shutil.rmtree(base, ignore_errors=True)
    subprocess.run(["ip", "netns", "del", NETNS], capture_output=True)


@pytest.fixture
def two_vms(node_image, accel):
    _cleanup_namespace()
    subprocess.run(["ip", "netns", "add", NETNS], check=True)
    vms = []
    try:
        subprocess.run(["ip", "-n", NETNS, "link", "set", "lo", "up"], check=True)
        qemu.create_bridge(NETNS, BRIDGE, f"{TRANSPORT}.1/24")
        for i, name in enumerate(("a", "b")):
            nic = qemu.Nic(qemu.tap_name(PREFIX, name, 0), BRIDGE, qemu.vm_mac(PREFIX, name, 0),
                           f"{TRANSPORT}.{11 + i}/24")
            vms.append(qemu.QemuVm(name, NETNS, [nic], node_image, memory_mb=768,
                                   prefix=PREFIX, accel=accel))
        start = time.monotonic()
        for vm in vms:                      # daemonized: both boot at the same time
            vm.start(progress=print)
        waited = {}

        def wait(vm):
            try:
                waited[vm.name] = vm.wait_ssh(timeout=300)
            except Exception as exc:        # reported below, in the test's thread
                waited[vm.name] = exc

        threads = [threading.Thread(target=wait, args=(vm,)) for vm in vms]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        for name, result in waited.items():
            if isinstance(result, Exception):
                raise result
        print(f"boot to SSH ({accel.name}, 2 VMs in parallel): "
              f"{time.monotonic() - start:.1f}s")
        yield vms
    finally:
        pids = [(vm.pid, vm._record().get("start_time")) for vm in vms if vm.pid]
        for vm in vms:
            vm.destroy()
        subprocess.run(["ip", "netns", "del", NETNS], capture_output=True)
        from tenantnet.node import procs
        assert not [p for p in pids if procs.pid_alive(*p)], "a QEMU process survived"
        assert subprocess.run(["ip", "netns", "pids", NETNS], capture_output=True,
                              text=True).stdout.strip() == ""


def _gre_script(local_ip, remote_ip, inner_cidr):
    return f"""set -e
for i in $(seq 60); do ovs-vsctl --timeout=2 show >/dev/null 2>&1 && break; sleep 1; done
modprobe openvswitch
ovs-vsctl --may-exist add-br tnvt-gre -- set bridge tnvt-gre datapath_type=system \\
  -- --may-exist add-port tnvt-gre gre0 -- set interface gre0 type=gre \\
     options:remote_ip={remote_ip} options:local_ip={local_ip} options:key=100 \\
  -- --may-exist add-port tnvt-gre in0 -- set interface in0 type=internal
ip addr add {inner_cidr} dev in0
ip link set in0 up
ovs-vsctl get bridge tnvt-gre datapath_type
"""


@pytest.mark.vm
def test_kernel_gre_between_two_vms(two_vms):
    a, b = two_vms
    t0 = time.monotonic()

    def lap(what):
        print(f"  {time.monotonic() - t0:6.1f}s {what}")

    # Distinct machine ids (OVS internal ports take their MACs from them).
    ids = {vm.ssh("cat /etc/machine-id", check=True).stdout.strip() for vm in two_vms}
    assert ids == {a.machine_id, b.machine_id}

    # tenantnet's source, pushed: the node's CLI runs from /opt/tenantnet-venv.
    tar = source_tar()
    for vm in two_vms:
        assert push_tar(vm, *tar) == "installed"
    assert push_tar(a, *tar) == "unchanged"
    out = a.ssh("/opt/tenantnet-venv/bin/tenantnet node bootstrap --help", check=True)
    assert "--transport-ip" in out.stdout
    lap("machine ids checked, source pushed, node CLI runs")

    ips = {vm.name: str(ipaddress.ip_interface(vm.nics[0].ip).ip) for vm in two_vms}
    for i, (vm, peer) in enumerate(((a, b), (b, a))):
        res = vm.ssh(_gre_script(ips[vm.name], ips[peer.name], f"{GRE_NET}.{i + 1}/24"),
                     check=True, timeout=120)
        assert res.stdout.strip().splitlines()[-1].strip('"') == "system"
    assert "system@ovs-system" in a.ssh("ovs-dpctl show", check=True).stdout
    lap("OVS up, GRE bridges with datapath_type=system")

    ping = None
    for _ in range(10):
        ping = a.ssh(f"ping -c 3 -i 0.2 -W 2 {GRE_NET}.2")
        if ping.returncode == 0:
            break
        time.sleep(1)
    assert ping.returncode == 0, ping.stdout + ping.stderr
    lap("ping across the GRE tunnel: " + ping.stdout.strip().splitlines()[-1])

    flows = a.ssh("ovs-dpctl dump-flows", check=True).stdout
    assert "set(tunnel(" in flows, flows
    assert "key=0x64" in flows or "tun_id=0x64" in flows, flows
