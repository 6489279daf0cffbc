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
the suite and mirror, the wheel pins and this file's own text. A build goes to a temporary
directory that is renamed into place at the end; builds hold a lock, so a second concurrent
build waits and then finds the image ready."""

import fcntl
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass

from tenantnet.errors import TenantnetError

SUITE = "bookworm"
BASE_INCLUDE = ("systemd-sysv", "udev", "kmod", "dbus", "ca-certificates")
NODE_PACKAGES = ("linux-image-amd64", "initramfs-tools", "zstd", "openvswitch-switch",
                 "iproute2", "iputils-ping", "openssh-server", "python3", "python3-venv",
                 "iperf3", "procps", "ethtool", "tcpdump",
                 # Vagrant's rsync synced folders (the box): rsync, and `sudo rsync`
                 # on the guest side, which Vagrant runs whatever the SSH user
                 "rsync", "sudo")
# What a node runs of tenantnet: `node bootstrap`, `node addresses`, the lab's endpoints
# (l2probe, prober: standard library only). The CLI parser imports the config model, which
# needs PyYAML and networkx; nothing else of requirements.txt is imported on a node.
NODE_REQUIREMENTS = ("PyYAML", "networkx")
GUEST_PYTHON = "3.11"            # bookworm's python3: the wheels are chosen for it
DISK_SIZE_GB = 4
VENV = "/opt/tenantnet-venv"
WHEELHOUSE = "/opt/tenantnet-wheelhouse"
CACHE_DIR = os.environ.get("TENANTNET_IMAGE_CACHE", "/var/cache/tenantnet/images")
KEY_NAME = "id_ed25519"
INSTALL_HINT = "apt-get install debootstrap qemu-system-x86 qemu-utils (or run scripts/setup)"
REQUIRED_TOOLS = {"debootstrap": INSTALL_HINT, "qemu-img": INSTALL_HINT,
                  "mkfs.ext4": "apt-get install e2fsprogs",
                  "ssh-keygen": "apt-get install openssh-client",
                  "unshare": "apt-get install util-linux", "chroot": "apt-get install coreutils"}
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
REQUIREMENTS = os.path.join(ROOT, "requirements.txt")
CHROOT_ENV = {"PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
              "LC_ALL": "C", "LANG": "C", "HOME": "/root", "DEBIAN_FRONTEND": "noninteractive",
              "DEBCONF_NONINTERACTIVE_SEEN": "true"}
CHROOT_ENV.update({k: v for k, v in os.environ.items()      # apt's way out, when proxied
                   if k.lower() in ("http_proxy", "https_proxy", "no_proxy")})


class ImageError(TenantnetError):
    """The node image could not be built or packed."""


@dataclass(frozen=True)
class Image:
    """A built image: the directory and the files in it."""
    path: str

    @property
    def digest(self):
        return os.path.basename(self.path)

    @property
    def disk(self):
        return os.path.join(self.path, "base.qcow2")

    @property
    def kernel(self):
        return os.path.join(self.path, "vmlinuz")

    @property
    def initrd(self):
        return os.path.join(self.path, "initrd.img")

    @property
    def ssh_key(self):
        return os.path.join(self.path, KEY_NAME)

    def manifest(self):
        with open(os.path.join(self.path, "manifest.json")) as fh:
            return json.load(fh)


# -- inputs ----------------------------------------------------------------------------
def parse_apt_sources(files):
    """[(type, uri, suite, components)] of the enabled entries of *files*: {path: text},
    one-line (.list) or deb822 (.sources) format."""
    out = []
    for path, text in files.items():
        if path.endswith(".sources"):
            for stanza in re.split(r"\n\s*\n", text):
                fields, key = {}, None
                for line in stanza.splitlines():
                    if not line.strip() or line.lstrip().startswith("#"):
                        continue
                    if line[0] in " \t" and key:
                        fields[key] += " " + line.strip()
                        continue
                    key, _, value = line.partition(":")
                    key = key.strip().lower()
                    fields[key] = value.strip()
                if fields.get("enabled", "yes").lower() == "no":
                    continue
                for typ in fields.get("types", "").split():
                    for uri in fields.get("uris", "").split():
                        for suite in fields.get("suites", "").split():
                            out.append((typ, uri, suite, tuple(fields.get("components",
                                                                          "").split())))
        else:
            for line in text.splitlines():
                line = line.split("#", 1)[0].strip()
                if not line:
                    continue
                words = line.split()
                if len(words) > 1 and words[1].startswith("["):        # [arch=... signed-by=...]
                    while len(words) > 1 and not words[1].endswith("]"):
                        del words[1]
                    del words[1]
                if len(words) >= 3:
                    out.append((words[0], words[1], words[2], tuple(words[3:])))
    return out


def read_apt_sources(root="/etc/apt"):
    files = {}
    main = os.path.join(root, "sources.list")
    candidates = [main] if os.path.isfile(main) else []
    d = os.path.join(root, "sources.list.d")
    if os.path.isdir(d):
        candidates += [os.path.join(d, f) for f in sorted(os.listdir(d))
                       if f.endswith((".list", ".sources"))]
    for path in candidates:
        try:
            with open(path) as fh:
                files[path] = fh.read()
        except OSError:
            continue
    return parse_apt_sources(files)


def image_sources(entries, suite=SUITE):
    """(mirror, [(uri, suite)]) for the image: the first Debian mirror with *suite* main,
    and every entry of *suite*, *suite*-updates and *suite*-security."""
    wanted = (suite, f"{suite}-updates", f"{suite}-security")
    picked = []
    for typ, uri, s, comps in entries:
        if typ == "deb" and s in wanted and "main" in comps \
                and uri.split(":", 1)[0] in ("http", "https", "file") \
                and (uri, s) not in picked:
            picked.append((uri, s))
    override = os.environ.get("TENANTNET_DEBIAN_MIRROR")
    if override:
        return override, [(override, suite)] + [p for p in picked if p[1] != suite]
    mirror = next((uri for uri, s in picked if s == suite), None)
    if not mirror:
        raise ImageError(f"no Debian '{suite} main' entry in /etc/apt/sources.list(.d): "
                         "the image is built from the mirror apt uses here "
                         "(or set TENANTNET_DEBIAN_MIRROR=URL)")
    return mirror, picked


def node_pins(path=REQUIREMENTS, names=NODE_REQUIREMENTS):
    """['PyYAML==6.0.4', ...]: the pins of requirements.txt for *names*."""
    try:
        with open(path) as fh:
            lines = fh.read().splitlines()
    except OSError as exc:
        raise ImageError(f"cannot read {path}: {exc.strerror}") from None
    pins = {}
    for line in lines:
        line = line.split("#", 1)[0].strip()
        m = re.match(r"^([A-Za-z0-9_.\-]+)\s*==\s*(\S+)$", line)
        if m:
            pins[_canon(m.group(1))] = f"{m.group(1)}=={m.group(2)}"
    missing = [n for n in names if _canon(n) not in pins]
    if missing:
        raise ImageError(f"{path}: no '==' pin for {', '.join(missing)} (the node's runtime)")
    return [pins[_canon(n)] for n in names]


def _canon(name):
    return re.sub(r"[-_.]+", "-", name).lower()


def build_inputs(sources=None):
    """Everything the image depends on, as a JSON-able dict (its hash names the image)."""
    mirror, entries = image_sources(read_apt_sources() if sources is None else sources)
    with open(os.path.abspath(__file__), "rb") as fh:
        code = hashlib.sha256(fh.read()).hexdigest()
    return {"suite": SUITE, "mirror": mirror, "apt_sources": [list(e) for e in entries],
            "base_include": list(BASE_INCLUDE), "packages": list(NODE_PACKAGES),
            "wheels": node_pins(), "guest_python": GUEST_PYTHON,
            "disk_size_gb": DISK_SIZE_GB, "build_code": code}


def inputs_digest(inputs):
    return hashlib.sha256(json.dumps(inputs, sort_keys=True).encode()).hexdigest()[:16]


# -- helpers ---------------------------------------------------------------------------
def check_tools(tools=REQUIRED_TOOLS):
    if os.geteuid() != 0:
        raise ImageError("building the node image needs root (debootstrap, chroot)")
    for tool, hint in tools.items():
        if not shutil.which(tool):
            raise ImageError(f"{tool} is not installed: {hint}")


def _run(cmd, log, what, env=None, timeout=3600, input=None):
    """Run *cmd* with its output appended to *log*; ImageError naming *what* on failure."""
    log.write(f"\n$ {' '.join(cmd)}\n".encode())
    log.flush()
    try:
        res = subprocess.run(cmd, stdout=log, stderr=subprocess.STDOUT, env=env,
                             timeout=timeout, input=input)
    except subprocess.TimeoutExpired:
        raise ImageError(f"{what}: timed out after {timeout}s (log: {log.name})") from None
    except OSError as exc:
        raise ImageError(f"{what}: cannot run {cmd[0]}: {exc.strerror}") from None
    if res.returncode != 0:
        raise ImageError(f"{what} failed (exit {res.returncode}); last lines of {log.name}:"
                         f" {_tail(log.name)}")


def _tail(path, n=3):
    try:
        with open(path, errors="replace") as fh:
            lines = [ln.strip() for ln in fh.read().splitlines() if ln.strip()]
    except OSError:
        return "?"
    return " | ".join(lines[-n:])


def mounts_under(path):
    """Mount points at or below *path* in our mount namespace, deepest first."""
    path = os.path.realpath(path)
    found = []
    with open("/proc/self/mounts") as fh:
        for line in fh:
            target = line.split()[1].replace("\\040", " ")
            if target == path or target.startswith(path + "/"):
                found.append(target)
    return sorted(found, key=len, reverse=True)


def unmount_under(path):
    """Unmount whatever is mounted below *path*; raise if something stays."""
    for target in mounts_under(path):
        subprocess.run(["umount", target], capture_output=True)
    for target in mounts_under(path):
        subprocess.run(["umount", "-l", target], capture_output=True)
    left = mounts_under(path)
    if left:
        raise ImageError(f"cannot unmount {', '.join(left)}: remove them by hand")


def chroot_pids(rootfs):
    """Pids of processes whose root directory is *rootfs* (daemons a chroot left behind)."""
    rootfs = os.path.realpath(rootfs)
    pids = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                if os.readlink(f"/proc/{entry}/root") == rootfs:
                    pids.append(int(entry))
            except OSError:
                continue
    return pids


def safe_rmtree(path):
    """rmtree that refuses to descend into mounts (a leftover /dev or /sys bind)."""
    if not os.path.lexists(path):
        return
    unmount_under(path)
    shutil.rmtree(path)


def _chroot(rootfs, cmd, log, what, timeout=3600, input=None):
    """*cmd* in a chroot of *rootfs* with /proc, /sys and /dev bind-mounted inside a private
    mount namespace (the mounts end with the command)."""
    r = os.path.realpath(rootfs)
    script = (f'set -e; for d in proc sys dev; do mount --bind "/$d" "{r}/$d"; done; '
              f'exec chroot "{r}" "$@"')
    try:
        _run(["unshare", "--mount", "--propagation", "private", "sh", "-c", script, "chroot",
              *cmd], log, what, env=CHROOT_ENV, timeout=timeout, input=input)
    finally:
        from tenantnet.node.procs import stop
        left = chroot_pids(r)
        if left:
            log.write(f"\nstopping processes left in the chroot: {left}\n".encode())
            stop([(p, None) for p in left])
        if mounts_under(r):
            unmount_under(r)


def _write(path, text, mode=0o644):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as fh:
        fh.write(text)
    os.chmod(path, mode)


def _say(progress, start, text):
    progress(f"[{time.monotonic() - start:6.1f}s] {text}")


# -- the build -------------------------------------------------------------------------
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
            _build_into(tmp, inputs, digest, progress)
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


def _build_into(tmp, inputs, digest, progress):
    start = time.monotonic()
    times = {}
    rootfs = os.path.join(tmp, "rootfs")
    with open(os.path.join(tmp, "build.log"), "wb") as log:
        # 1. base system
        _say(progress, start, f"debootstrap {SUITE} (minbase) from {inputs['mirror']}")
        t = time.monotonic()
        _run(["debootstrap", "--variant=minbase", f"--include={','.join(BASE_INCLUDE)}",
              SUITE, rootfs, inputs["mirror"]], log, "debootstrap",
             env=CHROOT_ENV)
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
        _chroot(rootfs, [*apt, "update"], log, "apt-get update in the chroot")
        _chroot(rootfs, [*apt, "install", "-y", "--no-install-recommends", *NODE_PACKAGES],
                log, "apt-get install in the chroot")
        times["packages_s"] = round(time.monotonic() - t, 1)

        # 3. the node's Python runtime, offline from a wheelhouse made here
        _say(progress, start, f"wheelhouse and {VENV}: {', '.join(inputs['wheels'])}")
        t = time.monotonic()
        wheels = os.path.join(rootfs, WHEELHOUSE.lstrip("/"))
        download_wheels(inputs["wheels"], wheels, log)
        _chroot(rootfs, ["python3", "-m", "venv", VENV], log, f"python3 -m venv {VENV}")
        _chroot(rootfs, [f"{VENV}/bin/python", "-m", "pip", "install", "-q", "--no-index",
                         "--disable-pip-version-check", "--find-links", WHEELHOUSE,
                         *inputs["wheels"]], log, "pip install (offline) in the image")
        _write(os.path.join(wheels, "requirements.txt"), "\n".join(inputs["wheels"]) + "\n")
        times["python_s"] = round(time.monotonic() - t, 1)

        # 4. system configuration
        _say(progress, start, "configuring networkd, sshd, OVS, SSH key")
        key = os.path.join(tmp, KEY_NAME)
        _run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", f"tenantnet-image-{digest}",
              "-f", key], log, "ssh-keygen")
        os.chmod(key, 0o600)
        configure_rootfs(rootfs, key + ".pub", log)
        _chroot(rootfs, ["systemctl", "enable", "systemd-networkd.service",
                         "systemd-network-generator.service", "ssh.service",
                         "openvswitch-switch.service"], log, "systemctl enable")
        _chroot(rootfs, ["systemctl", "mask", "systemd-networkd-wait-online.service",
                         "apt-daily.timer", "apt-daily-upgrade.timer", "e2scrub_all.timer",
                         "e2scrub_reap.service", "fstrim.timer"], log, "systemctl mask")
        _chroot(rootfs, ["apt-get", "clean"], log, "apt-get clean")
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
        _run(["mkfs.ext4", "-q", "-F", "-L", "tenantnet-root", "-d", rootfs, raw], log,
             "mkfs.ext4 -d")
        _run(["qemu-img", "convert", "-O", "qcow2", raw, os.path.join(tmp, "base.qcow2")],
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
    _run(cmd, log, "pip download (the node's wheelhouse)", env=dict(os.environ))


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
