"""The node VM image: Debian bookworm with kernel-datapath Open vSwitch, built offline-ready.

    build_image(force=False, progress=print) -> Image      (tenantnet lab image build)
    (tenantnet.vm.box packs it as a Vagrant box: tenantnet lab image box)

How it is built (every step runs as root, on this machine):

1. `debootstrap --variant=minbase` bookworm from the Debian mirror this machine's apt uses
   (/etc/apt/sources.list and sources.list.d; TENANTNET_DEBIAN_MIRROR overrides it).
2. In a chroot: an `exit 101` policy-rc.d first (maintainer scripts must not start OVS or sshd
   on the host), then NODE_PACKAGES with --no-install-recommends. Every chroot command runs in
   a private mount namespace (`unshare -m`) where /proc, /sys and /dev are bind-mounted: the
   mounts end with the command, whatever happens to it or to us, and never show in the host's
   mount table. A check afterwards refuses to go on if anything is mounted below the rootfs.
3. /opt/tenantnet-venv, a virtualenv holding tenantnet's node runtime (NODE_REQUIREMENTS at
   the pins of requirements.txt), installed offline from a wheelhouse downloaded here with pip;
   the wheelhouse stays in the image (/opt/tenantnet-wheelhouse). tenantnet's own source is
   not in the image: tenantnet.vm.source pushes it into a running VM.
4. systemd-networkd + systemd-network-generator (addresses from the kernel's `ip=`
   arguments), systemd-networkd-wait-online masked, an SSH key pair made for this image
   (root's authorized key; sshd takes root by key only), no /etc/machine-id content (each VM
   gets systemd.machine_id= on its command line), no OVS database (each VM makes its own).
5. `mkfs.ext4 -d` into a raw disk, converted to qcow2; vmlinuz and initrd.img copied out.

The result lives in CACHE_DIR/<hash>/, where the hash covers every input: the package lists,
the suite and mirror, the wheel pins and the text of the modules that build the image. A
build goes to a temporary directory that is renamed into place at the end; builds hold a
lock, so a second concurrent build waits and then finds the image ready.

This module is the way in and the cache (tools checked, lock, temporary directory, rename).
What the image is made of, its `Image` files and its inputs' digest: tenantnet.vm.imagespec.
The steps above: tenantnet.vm.imagebuild; the chroot and the build's commands:
tenantnet.vm.chroot."""

import fcntl
import os
import shutil
import tempfile

from tenantnet.vm.chroot import safe_rmtree
from tenantnet.vm.imagebuild import build_into
from tenantnet.vm.imagespec import Image, ImageError, build_inputs, inputs_digest

CACHE_DIR = os.environ.get("TENANTNET_IMAGE_CACHE", "/var/cache/tenantnet/images")
INSTALL_HINT = "apt-get install debootstrap qemu-system-x86 qemu-utils (or run scripts/setup)"
REQUIRED_TOOLS = {"debootstrap": INSTALL_HINT, "qemu-img": INSTALL_HINT,
                  "mkfs.ext4": "apt-get install e2fsprogs",
                  "ssh-keygen": "apt-get install openssh-client",
                  "unshare": "apt-get install util-linux", "chroot": "apt-get install coreutils"}


def check_tools(tools=REQUIRED_TOOLS):
    if os.geteuid() != 0:
        raise ImageError("building the node image needs root (debootstrap, chroot)")
    for tool, hint in tools.items():
        if not shutil.which(tool):
            raise ImageError(f"{tool} is not installed: {hint}")


# -- the cache -------------------------------------------------------------------------
def image_path(digest, cache_dir=None):
    return os.path.join(cache_dir or CACHE_DIR, digest)


def find_image(cache_dir=None, inputs=None):
    """The cached image for the current inputs, or None."""
    inputs = inputs or build_inputs()
    path = image_path(inputs_digest(inputs), cache_dir)
    return Image(path) if os.path.isfile(os.path.join(path, "manifest.json")) else None


def build_image(force=False, progress=print, cache_dir=None):
    """The image for the current inputs: the cached one, or a new build (*force*: always)."""
    cache_dir = cache_dir or CACHE_DIR
    inputs = build_inputs()
    digest = inputs_digest(inputs)
    final = image_path(digest, cache_dir)
    if not force and os.path.isfile(os.path.join(final, "manifest.json")):
        progress(f"image {digest} is cached: {final}")
        return Image(final)
    check_tools()
    os.makedirs(cache_dir, exist_ok=True)
    with open(os.path.join(cache_dir, ".lock"), "w") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            progress("another image build is running: waiting for it")
            fcntl.flock(lock, fcntl.LOCK_EX)
            if os.path.isfile(os.path.join(final, "manifest.json")):
                progress(f"image {digest} was built meanwhile: {final}")
                return Image(final)
        # Under the lock no other build runs: earlier builds' leftovers are stale.
        for entry in os.listdir(cache_dir):
            if entry.startswith((".build-", ".old-")):
                progress(f"removing a stale build directory: {entry}")
                safe_rmtree(os.path.join(cache_dir, entry))
        if not force and os.path.isfile(os.path.join(final, "manifest.json")):
            return Image(final)
        tmp = tempfile.mkdtemp(prefix=f".build-{digest}-", dir=cache_dir)
        try:
            build_into(tmp, inputs, digest, progress)
            if os.path.exists(final):
                old = tempfile.mkdtemp(prefix=".old-", dir=cache_dir)
                os.rename(final, os.path.join(old, digest))
                os.rename(tmp, final)
                safe_rmtree(old)
            else:
                os.rename(tmp, final)
        except BaseException as exc:
            log = os.path.join(tmp, "build.log")
            kept = os.path.join(cache_dir, f"failed-{digest}.log")
            if os.path.exists(log):
                shutil.copy(log, kept)
            safe_rmtree(tmp)
            if isinstance(exc, ImageError):
                raise ImageError(f"{str(exc).replace(log, kept)} (full log: {kept})") from None
            raise
    progress(f"image {digest} is ready: {final}")
    return Image(final)

