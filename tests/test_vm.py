"""Node VMs (tenantnet.vm): the image's inputs and build lock, QEMU's command line and names,
the source tar, the box's metadata. Plain unit tests.

The node VMs themselves are booted once, by tests/test_vm_lab.py (2 compute + 1 network VM
in a lab): it checks what a pair of bare VMs was booted here for before (a unique machine id
per VM, the source pushed and a second push only compared, the node CLI in the venv, the
kernel datapath, GRE with key = segmentation id carrying ping, and no QEMU left after)."""

import json
import os
import tarfile
import threading
import time

import pytest

from tenantnet.vm import image as image_mod
from tenantnet.vm import imagespec
from tenantnet.errors import VmError
from tenantnet.vm import accel, qemu
from tenantnet.vm.source import source_tar

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
    with pytest.raises(VmError, match="outside"):
        qemu.QemuVm("c1", "tn-fabric", [ok[:3] + ("10.0.0.1/24",)], img)
    with pytest.raises(VmError, match="lab prefix"):
        qemu.QemuVm("c1", "fabric", [ok], img)
    with pytest.raises(VmError, match="tap"):
        qemu.QemuVm("c1", "tn-fabric", [("eth7",) + ok[1:]], img)
    vm = qemu.QemuVm("c1", "tn-fabric", [ok], img, state_dir="/nonexistent/c1")
    cmd = vm.command(accel.Accel("tcg", accel.TCG_ARGS))
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
