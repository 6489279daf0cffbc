"""Running the image build's commands on this machine without leaving anything behind.

`run_logged` runs a command with its output appended to the build log (ImageError naming
the step on failure). `run_in_chroot` runs one in a chroot of the rootfs, inside a private
mount namespace (`unshare -m`) where /proc, /sys and /dev are bind-mounted: the mounts end
with the command, whatever happens to it or to us, and never show in the host's mount
table; processes left in the chroot are stopped and anything still mounted below the
rootfs is unmounted, or the build stops. `safe_rmtree` refuses to descend into a mount."""

import os
import shutil
import subprocess

from tenantnet.node.procs import stop
from tenantnet.vm.imagespec import ImageError

CHROOT_ENV = {"PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
              "LC_ALL": "C", "LANG": "C", "HOME": "/root", "DEBIAN_FRONTEND": "noninteractive",
              "DEBCONF_NONINTERACTIVE_SEEN": "true"}
CHROOT_ENV.update({k: v for k, v in os.environ.items()      # apt's way out, when proxied
                   if k.lower() in ("http_proxy", "https_proxy", "no_proxy")})


def run_logged(cmd, log, what, env=None, timeout=3600, input=None):
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


def run_in_chroot(rootfs, cmd, log, what, timeout=3600, input=None):
    """*cmd* in a chroot of *rootfs* with /proc, /sys and /dev bind-mounted inside a private
    mount namespace (the mounts end with the command)."""
    r = os.path.realpath(rootfs)
    script = (f'set -e; for d in proc sys dev; do mount --bind "/$d" "{r}/$d"; done; '
              f'exec chroot "{r}" "$@"')
    try:
        run_logged(["unshare", "--mount", "--propagation", "private", "sh", "-c", script,
                    "chroot", *cmd], log, what, env=CHROOT_ENV, timeout=timeout, input=input)
    finally:
        left = chroot_pids(r)
        if left:
            log.write(f"\nstopping processes left in the chroot: {left}\n".encode())
            stop([(p, None) for p in left])
        if mounts_under(r):
            unmount_under(r)

