"""The node image built into a directory: the five steps of tenantnet.vm.image's list.

`build_into(tmp, inputs, digest, progress)` makes base.qcow2, vmlinuz, initrd.img, the
image's SSH key pair and manifest.json in *tmp* from *inputs* (imagespec.build_inputs):
debootstrap, the packages in the chroot behind an `exit 101` policy-rc.d, the wheelhouse
and the venv (`download_wheels`), the node's configuration (`configure_rootfs`), then the
disk. Every command goes through tenantnet.vm.chroot, its output to tmp/build.log."""

import json
import os
import shutil
import sys
import time

from tenantnet.vm.chroot import (CHROOT_ENV, run_in_chroot, run_logged, safe_rmtree,
                                 unmount_under)
from tenantnet.vm.imagespec import (BASE_INCLUDE, DISK_SIZE_GB, GUEST_PYTHON, KEY_NAME,
                                    NODE_PACKAGES, SUITE, VENV, WHEELHOUSE, ImageError)


def _write(path, text, mode=0o644):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as fh:
        fh.write(text)
    os.chmod(path, mode)


def _say(progress, start, text):
    progress(f"[{time.monotonic() - start:6.1f}s] {text}")


def build_into(tmp, inputs, digest, progress):
    """Build the image of *inputs* (named *digest*) into the directory *tmp*."""
    start = time.monotonic()
    times = {}
    rootfs = os.path.join(tmp, "rootfs")
    with open(os.path.join(tmp, "build.log"), "wb") as log:
        # 1. base system
        _say(progress, start, f"debootstrap {SUITE} (minbase) from {inputs['mirror']}")
        t = time.monotonic()
        run_logged(["debootstrap", "--variant=minbase", f"--include={','.join(BASE_INCLUDE)}",
                    SUITE, rootfs, inputs["mirror"]], log, "debootstrap", env=CHROOT_ENV)
        times["debootstrap_s"] = round(time.monotonic() - t, 1)

        # 2. packages, with services kept from starting on this host
        _write(os.path.join(rootfs, "usr/sbin/policy-rc.d"), "#!/bin/sh\nexit 101\n", 0o755)
        _write(os.path.join(rootfs, "etc/apt/sources.list"),
               "".join(f"deb {uri} {s} main\n" for uri, s in inputs["apt_sources"]))
        resolv = os.path.join(rootfs, "etc/resolv.conf")      # name service for apt only
        if os.path.lexists(resolv):
            os.unlink(resolv)
        shutil.copyfile("/etc/resolv.conf", resolv)
        _say(progress, start, f"installing {len(NODE_PACKAGES)} packages in the chroot "
                              f"({', '.join(NODE_PACKAGES[:4])}, ...)")
        t = time.monotonic()
        apt = ["apt-get", "-q", "-o", "Acquire::Check-Valid-Until=false"]
        run_in_chroot(rootfs, [*apt, "update"], log, "apt-get update in the chroot")
        run_in_chroot(rootfs, [*apt, "install", "-y", "--no-install-recommends", *NODE_PACKAGES],
                      log, "apt-get install in the chroot")
        times["packages_s"] = round(time.monotonic() - t, 1)

        # 3. the node's Python runtime, offline from a wheelhouse made here
        _say(progress, start, f"wheelhouse and {VENV}: {', '.join(inputs['wheels'])}")
        t = time.monotonic()
        wheels = os.path.join(rootfs, WHEELHOUSE.lstrip("/"))
        download_wheels(inputs["wheels"], wheels, log)
        run_in_chroot(rootfs, ["python3", "-m", "venv", VENV], log, f"python3 -m venv {VENV}")
        run_in_chroot(rootfs, [f"{VENV}/bin/python", "-m", "pip", "install", "-q", "--no-index",
                               "--disable-pip-version-check", "--find-links", WHEELHOUSE,
                               *inputs["wheels"]], log, "pip install (offline) in the image")
        _write(os.path.join(wheels, "requirements.txt"), "\n".join(inputs["wheels"]) + "\n")
        times["python_s"] = round(time.monotonic() - t, 1)

        # 4. system configuration
        _say(progress, start, "configuring networkd, sshd, OVS, SSH key")
        key = os.path.join(tmp, KEY_NAME)
        run_logged(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C",
                    f"tenantnet-image-{digest}", "-f", key], log, "ssh-keygen")
        os.chmod(key, 0o600)
        configure_rootfs(rootfs, key + ".pub", log)
        run_in_chroot(rootfs, ["systemctl", "enable", "systemd-networkd.service",
                               "systemd-network-generator.service", "ssh.service",
                               "openvswitch-switch.service"], log, "systemctl enable")
        run_in_chroot(rootfs, ["systemctl", "mask", "systemd-networkd-wait-online.service",
                               "apt-daily.timer", "apt-daily-upgrade.timer", "e2scrub_all.timer",
                               "e2scrub_reap.service", "fstrim.timer"], log, "systemctl mask")
        run_in_chroot(rootfs, ["apt-get", "clean"], log, "apt-get clean")
        os.unlink(os.path.join(rootfs, "usr/sbin/policy-rc.d"))
        unmount_under(rootfs)
        for sub in ("var/lib/apt/lists", "var/cache/apt", "tmp", "var/tmp"):
            d = os.path.join(rootfs, sub)
            for entry in os.listdir(d) if os.path.isdir(d) else ():
                p = os.path.join(d, entry)
                if os.path.isdir(p) and not os.path.islink(p):
                    shutil.rmtree(p)
                else:
                    os.unlink(p)

        # 5. kernel, initrd, disk
        _say(progress, start, "kernel, initrd, ext4 disk image, qcow2")
        t = time.monotonic()
        boot = os.path.join(rootfs, "boot")
        for prefix, name in (("vmlinuz-", "vmlinuz"), ("initrd.img-", "initrd.img")):
            found = sorted(f for f in os.listdir(boot) if f.startswith(prefix))
            if not found:
                raise ImageError(f"no /boot/{prefix}* in the image (linux-image-amd64 "
                                 "or initramfs-tools did not install)")
            shutil.copy(os.path.join(boot, found[-1]), os.path.join(tmp, name))
        kernel_release = sorted(f for f in os.listdir(boot)
                                if f.startswith("vmlinuz-"))[-1][len("vmlinuz-"):]
        rootfs_mb = _du_mb(rootfs)
        raw = os.path.join(tmp, "base.raw")
        with open(raw, "wb") as fh:
            fh.truncate(DISK_SIZE_GB * 1024 ** 3)
        run_logged(["mkfs.ext4", "-q", "-F", "-L", "tenantnet-root", "-d", rootfs, raw], log,
                   "mkfs.ext4 -d")
        run_logged(["qemu-img", "convert", "-O", "qcow2", raw, os.path.join(tmp, "base.qcow2")],
                   log, "qemu-img convert")
        os.unlink(raw)
        safe_rmtree(rootfs)
        times["disk_s"] = round(time.monotonic() - t, 1)
        times["total_s"] = round(time.monotonic() - start, 1)
    manifest = {"digest": digest, "inputs": inputs, "built": time.strftime(
                    "%Y-%m-%dT%H:%M:%S%z"), "times": times, "kernel_release": kernel_release,
                "rootfs_mb": rootfs_mb, "virtual_size_gb": DISK_SIZE_GB,
                "qcow2_mb": round(os.path.getsize(os.path.join(tmp, "base.qcow2")) / 2 ** 20),
                "venv": VENV, "ssh_key": KEY_NAME, "ssh_user": "root"}
    with open(os.path.join(tmp, "manifest.json"), "w") as fh:
        json.dump(manifest, fh, indent=2, sort_keys=True)
    for name in os.listdir(tmp):
        with open(os.path.join(tmp, name), "rb") as fh:
            os.fsync(fh.fileno())
    _say(progress, start, f"built: rootfs {rootfs_mb} MB, qcow2 {manifest['qcow2_mb']} MB, "
                          f"kernel {kernel_release}")


def download_wheels(pins, dest, log):
    """Wheels of *pins* (no dependencies: the pins are the closure) for the guest's Python,
    with this machine's pip and its configured index."""
    os.makedirs(dest, exist_ok=True)
    cmd = [sys.executable, "-m", "pip", "download", "-q", "--disable-pip-version-check",
           "--no-deps", "--only-binary=:all:", "--dest", dest,
           "--python-version", GUEST_PYTHON, "--implementation", "cp",
           "--abi", "cp" + GUEST_PYTHON.replace(".", ""), "--abi", "abi3", "--abi", "none",
           "--platform", "manylinux_2_28_x86_64", "--platform", "manylinux_2_17_x86_64",
           "--platform", "manylinux2014_x86_64", "--platform", "linux_x86_64",
           "--platform", "any", *pins]
    run_logged(cmd, log, "pip download (the node's wheelhouse)", env=dict(os.environ))


def configure_rootfs(rootfs, pubkey_file, log=None):
    """The files that make the rootfs a node image (no chroot needed)."""
    def p(rel):
        return os.path.join(rootfs, rel)

    _write(p("etc/fstab"), "/dev/vda / ext4 rw,errors=remount-ro 0 0\n")
    _write(p("etc/hosts"), "127.0.0.1 localhost\n::1 localhost ip6-localhost ip6-loopback\n")
    _write(p("etc/hostname"), "tenantnet-node\n")
    # Empty: every VM gets its own id from systemd.machine_id= (OVS internal ports take
    # their MAC from it; equal ids break GRE between VMs).
    _write(p("etc/machine-id"), "", 0o444)
    if os.path.lexists(p("var/lib/dbus/machine-id")):
        os.unlink(p("var/lib/dbus/machine-id"))
    os.symlink("/etc/machine-id", p("var/lib/dbus/machine-id"))
    # Each VM creates its own OVS database (and random system-id) at first start.
    for rel in ("etc/openvswitch/conf.db", "etc/openvswitch/system-id.conf",
                "etc/openvswitch/.conf.db.~lock~"):
        if os.path.lexists(p(rel)):
            os.unlink(p(rel))
    # A DHCP fallback for interfaces that get no ip= argument (the Vagrant box's management
    # NIC). systemd-network-generator writes /run/systemd/network/70-*.network, which sort
    # first and win for every interface named on the command line.
    _write(p("etc/systemd/network/90-tenantnet-dhcp.network"),
           "[Match]\nName=eth*\n\n[Network]\nDHCP=ipv4\nLinkLocalAddressing=no\n"
           "IPv6AcceptRA=no\n")
    _write(p("etc/ssh/sshd_config.d/tenantnet.conf"),
           "PermitRootLogin prohibit-password\nPasswordAuthentication no\n"
           "KbdInteractiveAuthentication no\nUseDNS no\n")
    os.makedirs(p("root/.ssh"), mode=0o700, exist_ok=True)
    os.chmod(p("root/.ssh"), 0o700)
    with open(pubkey_file) as fh:
        _write(p("root/.ssh/authorized_keys"), fh.read(), 0o600)
    _write(p("etc/resolv.conf"), "")
    _write(p("etc/profile.d/tenantnet.sh"), f'PATH="$PATH:{VENV}/bin"\n')
    # Kernel modules the nodes use, loaded at boot (the lab still runs modprobe itself).
    _write(p("etc/modules-load.d/tenantnet.conf"), "openvswitch\n")


def _du_mb(path):
    total = 0
    for dirpath, _dirs, files in os.walk(path):
        for f in files:
            try:
                total += os.lstat(os.path.join(dirpath, f)).st_blocks * 512
            except OSError:
                pass
    return round(total / 2 ** 20)
