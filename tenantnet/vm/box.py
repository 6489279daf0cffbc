"""The node image as a libvirt Vagrant box (`tenantnet lab image box`).

A box is a tar of box.img (the image's qcow2), metadata.json, and a Vagrantfile that boots the
kernel and initrd shipped next to it (the disk has no boot loader) and logs in as root with
the image's key. Packing does not change the image, so it is not part of the image's hash."""

import io
import json
import os
import tarfile
import tempfile
import time

from tenantnet.vm.imagespec import DISK_SIZE_GB, KEY_NAME

BOX_VAGRANTFILE = """\
# The box's own Vagrantfile (tenantnet lab image box): the disk has no boot loader, so
# vagrant-libvirt boots the kernel and initrd shipped in the box (libvirt's QEMU must be
# able to read them in VAGRANT_HOME). Where /dev/kvm does not run a stock kernel (PVM), set
# `libvirt.driver = "qemu"` (tenantnet's Vagrantfile: TENANTNET_LIBVIRT_DRIVER=qemu).
box_dir = File.dirname(File.expand_path(__FILE__))
Vagrant.configure("2") do |config|
  config.ssh.username = "root"
  config.ssh.private_key_path = File.join(box_dir, "id_ed25519")
  config.ssh.insert_key = false
  config.ssh.sudo_command = "%c"
  config.vm.provider :libvirt do |libvirt|
    libvirt.kernel = File.join(box_dir, "vmlinuz")
    libvirt.initrd = File.join(box_dir, "initrd.img")
    libvirt.cmd_line = "root=/dev/vda rw console=ttyS0 net.ifnames=0"
    libvirt.disk_bus = "virtio"
  end
end
"""


def box_metadata():
    return {"provider": "libvirt", "format": "qcow2", "virtual_size": DISK_SIZE_GB}


def build_box(image, out=None, progress=print):
    """Pack *image* as a libvirt Vagrant box (a tar); return its path."""
    out = os.path.abspath(out or os.path.join(image.path, "tenantnet-node.box"))
    if os.path.isfile(out) and os.path.getmtime(out) >= os.path.getmtime(image.disk) \
            and _packed_vagrantfile(out) == BOX_VAGRANTFILE:
        progress(f"box is up to date: {out}")
        return out
    progress(f"packing {image.digest} as a libvirt box: {out}")
    os.makedirs(os.path.dirname(out), exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".box-", dir=os.path.dirname(out))
    os.close(fd)
    try:
        with tarfile.open(tmp, "w") as tar:
            _tar_bytes(tar, "metadata.json", json.dumps(box_metadata()).encode())
            _tar_bytes(tar, "Vagrantfile", BOX_VAGRANTFILE.encode())
            tar.add(image.disk, "box.img")
            tar.add(image.kernel, "vmlinuz")
            tar.add(image.initrd, "initrd.img")
            tar.add(image.ssh_key, KEY_NAME)
        os.chmod(tmp, 0o600)          # it holds the image's private key
        os.rename(tmp, out)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    progress(f"box ready ({os.path.getsize(out) // 2 ** 20} MB): vagrant box add --name "
             f"tenantnet-node {out}")
    return out


def _packed_vagrantfile(path):
    """The Vagrantfile inside the box at *path* (packed second: read without the disk),
    or None."""
    try:
        with tarfile.open(path, "r:") as tar:
            for _ in range(2):
                member = tar.next()
                if member is not None and member.name == "Vagrantfile":
                    return tar.extractfile(member).read().decode()
    except (OSError, tarfile.TarError, UnicodeDecodeError):
        return None
    return None


def _tar_bytes(tar, name, data):
    info = tarfile.TarInfo(name)
    info.size = len(data)
    info.mtime = int(time.time())
    info.mode = 0o644
    tar.addfile(info, io.BytesIO(data))
