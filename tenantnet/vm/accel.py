"""How QEMU runs node VMs on this host: KVM or TCG (software emulation).

detect_accel() boots the image's kernel briefly under KVM; a KVM guest that does not reach a
kernel marker within a few seconds is unusable (on PVM hosts /dev/kvm hangs stock kernels),
and TCG is used instead. The probe's result is cached per host kernel, QEMU version and
guest kernel (ACCEL_CACHE). TENANTNET_VM_ACCEL=kvm|tcg forces one. tenantnet.vm.qemu runs
the VMs with what it finds; the Vagrant lab's test asks it too."""

import hashlib
import json
import os
import select
import shutil
import subprocess
import time
from dataclasses import asdict, dataclass, field

from tenantnet.errors import VmError
from tenantnet.node import procs

QEMU = "qemu-system-x86_64"
ACCEL_CACHE = os.environ.get("TENANTNET_ACCEL_CACHE", "/var/cache/tenantnet/accel.json")
KVM_PROBE_TIMEOUT = 15.0
TCG_PROBE_TIMEOUT = 120.0
# Printed by the kernel late in its start (or when it finds no root, as in the probe).
PROBE_MARKERS = (b"Kernel panic", b"VFS: Cannot open root device", b"Run /init",
                 b"Freeing unused kernel")
TCG_ARGS = ["-machine", "q35", "-accel", "tcg,thread=multi,tb-size=256", "-cpu", "max"]
KVM_CPUS = ("host", "host,-arch-capabilities")


@dataclass(frozen=True)
class Accel:
    """How QEMU runs guests here: 'kvm' or 'tcg', its arguments, and why."""
    name: str
    args: list = field(default_factory=list)
    detail: str = ""


def _qemu_version():
    try:
        out = subprocess.run([QEMU, "--version"], capture_output=True, text=True,
                             timeout=10).stdout
    except (OSError, subprocess.TimeoutExpired):
        return None
    return out.splitlines()[0].strip() if out else None


def probe_boot(accel_args, kernel, timeout):
    """(True, seconds) when *kernel* under *accel_args* prints a PROBE_MARKERS line within
    *timeout* s, else (False, reason). The probe QEMU has no NIC and no disk, and is killed
    by its pid."""
    cmd = [QEMU, *accel_args, "-m", "256", "-smp", "1", "-nodefaults", "-no-user-config",
           "-display", "none", "-nic", "none", "-no-reboot", "-serial", "stdio",
           "-kernel", kernel, "-append", "console=ttyS0 panic=-1 loglevel=7"]
    start = time.monotonic()
    try:
        proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT)
    except OSError as exc:
        return False, f"cannot run {QEMU}: {exc.strerror}"
    buf = b""
    try:
        while True:
            left = timeout - (time.monotonic() - start)
            if left <= 0:
                return False, f"no kernel output marker within {timeout:.0f}s (guest hangs)"
            ready, _, _ = select.select([proc.stdout], [], [], min(left, 0.5))
            if ready:
                chunk = os.read(proc.stdout.fileno(), 65536)
                if not chunk:
                    proc.wait(timeout=5)
                    if any(m in buf for m in PROBE_MARKERS):
                        return True, time.monotonic() - start
                    last = [ln for ln in buf.decode(errors="replace").splitlines() if ln]
                    return False, (f"qemu exited {proc.returncode}: "
                                   f"{last[-1].strip() if last else 'no output'}")
                buf += chunk
                if any(m in buf for m in PROBE_MARKERS):
                    return True, time.monotonic() - start
    finally:
        if proc.poll() is None:
            procs.stop([(proc.pid, None)], timeout=2.0, poll=proc.poll)
        proc.wait()
        proc.stdout.close()


def detect_accel(image, use_cache=True, progress=None, kvm_timeout=KVM_PROBE_TIMEOUT):
    """The Accel to run node VMs with: KVM when a guest kernel boots under it within
    *kvm_timeout* s, else TCG (when that boots). TENANTNET_VM_ACCEL=kvm|tcg forces one."""
    say = progress or (lambda text: None)
    forced = os.environ.get("TENANTNET_VM_ACCEL")
    if forced == "tcg":
        return Accel("tcg", list(TCG_ARGS), "forced by TENANTNET_VM_ACCEL=tcg")
    if forced == "kvm":
        return Accel("kvm", ["-machine", "q35", "-accel", "kvm", "-cpu", KVM_CPUS[0]],
                     "forced by TENANTNET_VM_ACCEL=kvm")
    if not shutil.which(QEMU):
        raise VmError(f"{QEMU} is not installed: apt-get install qemu-system-x86 qemu-utils")
    key = json.dumps([os.uname().release, _qemu_version(), _file_id(image.kernel),
                      os.path.exists("/dev/kvm")])
    acc = _cached(key) if use_cache else None
    if acc is not None:
        say(f"acceleration: {acc.name} (cached probe: {acc.detail})")
        return acc
    notes = []
    found = None
    if os.path.exists("/dev/kvm") and os.access("/dev/kvm", os.R_OK | os.W_OK):
        for cpu in KVM_CPUS:
            args = ["-machine", "q35", "-accel", "kvm", "-cpu", cpu]
            say(f"probing KVM (-cpu {cpu}, {kvm_timeout:.0f}s at most)")
            ok, info = probe_boot(args, image.kernel, kvm_timeout)
            if ok:
                found = Accel("kvm", args, f"KVM boots a kernel in {info:.1f}s (-cpu {cpu})")
                break
            notes.append(f"KVM -cpu {cpu}: {info}")
    else:
        notes.append("no usable /dev/kvm")
    if found is None:
        say("probing TCG (software emulation)")
        ok, info = probe_boot(TCG_ARGS, image.kernel, TCG_PROBE_TIMEOUT)
        if not ok:
            raise VmError("neither KVM nor TCG boots the node kernel: "
                          + "; ".join(notes + [f"TCG: {info}"]))
        found = Accel("tcg", list(TCG_ARGS),
                      f"TCG boots a kernel in {info:.1f}s; " + "; ".join(notes))
    say(f"acceleration: {found.name} ({found.detail})")
    try:
        os.makedirs(os.path.dirname(ACCEL_CACHE), exist_ok=True)
        tmp = ACCEL_CACHE + f".{os.getpid()}"
        with open(tmp, "w") as fh:
            json.dump({"key": key, "accel": asdict(found)}, fh, indent=2)
        os.replace(tmp, ACCEL_CACHE)
    except OSError:
        pass
    return found


def _file_id(path):
    """The content's digest: an image rebuilt with the same kernel keeps the probe."""
    with open(path, "rb") as fh:
        return hashlib.sha256(fh.read()).hexdigest()[:16]


def _cached(key):
    """The Accel the probe found for *key* (ACCEL_CACHE), or None."""
    try:
        with open(ACCEL_CACHE) as fh:
            cache = json.load(fh)
        return Accel(**cache["accel"]) if cache.get("key") == key else None
    except (OSError, ValueError, KeyError, TypeError):
        return None
