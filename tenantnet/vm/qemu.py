"""Node VMs as QEMU processes inside a lab network namespace.

    vm = QemuVm("c1", netns="tn-fabric", nics=[("tn-c1-0", "tn-mgmt", MAC, "198.18.0.11/24")],
                image=build_image(), prefix="tn")
    vm.start(); vm.wait_ssh(300); vm.ssh("ovs-vsctl show"); vm.stop()

- QEMU runs in *netns* (`ip netns exec NS qemu-system-x86_64 ...`): its tap devices are
  created there and attached to the Linux bridges the caller made there (create_bridge). The
  host's own namespace is never touched. Userspace virtio-net (there may be no vhost-net).
- Each VM boots the image's kernel and initrd (`-kernel/-initrd`) on a qcow2 overlay of the
  cached base disk. Its addresses are kernel `ip=` arguments, turned into networkd files by
  systemd-network-generator in the guest; its machine id is `systemd.machine_id=`, unique and
  deterministic per (lab prefix, VM name): OVS takes internal ports' MACs from it.
- `-daemonize -pidfile`, `-serial file:`, `-monitor unix:`. stop() sends `quit` on the
  monitor (else SIGTERM, then SIGKILL, always by the recorded pid and start time) and returns
  once the process is gone.
- Acceleration (KVM or TCG) is tenantnet.vm.accel's: a VM started without one asks it
  (detect_accel)."""

import hashlib
import ipaddress
import json
import os
import shlex
import shutil
import signal
import socket
import subprocess
import time
from dataclasses import asdict, dataclass

from tenantnet.errors import VmError
from tenantnet.node import procs
from tenantnet.vm.accel import QEMU, detect_accel

LAB_NET = ipaddress.ip_network("198.18.0.0/15")
STATE_DIR = os.environ.get("TENANTNET_VM_STATE", "/var/lib/tenantnet/vms")
SSH_OPTIONS = ["-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null",
               "-o", "LogLevel=ERROR", "-o", "BatchMode=yes", "-o", "ServerAliveInterval=5",
               "-o", "ServerAliveCountMax=6"]


@dataclass(frozen=True)
class Nic:
    """One NIC: the tap QEMU creates in the VM's namespace, the Linux bridge it joins there,
    the guest's MAC, and its address (IP/prefix, in 198.18.0.0/15; ethN in order)."""
    tap: str
    bridge: str
    mac: str
    ip: str
    gateway: str = ""


# -- names and arguments ---------------------------------------------------------------
def machine_id(prefix, name):
    """32 hex digits, unique and stable per (lab prefix, VM name)."""
    return hashlib.sha256(f"tenantnet-vm:{prefix}:{name}".encode()).hexdigest()[:32]


def vm_mac(prefix, name, index):
    """A stable guest MAC for NIC *index* of VM *name* (QEMU's 52:54:00 range)."""
    h = hashlib.sha256(f"tenantnet-vm-mac:{prefix}:{name}:{index}".encode()).digest()
    return "52:54:00:" + ":".join(f"{b:02x}" for b in h[:3])


def tap_name(prefix, name, index):
    """The tap of NIC *index*, at most 15 characters (a hash ends a shortened name)."""
    from tenantnet.model.naming import fit
    return fit(f"{prefix}-{name}-{index}", 15)


def kernel_ip_arg(nic, index):
    """`ip=ADDR::GW:MASK::ethN:off` for *nic* as eth*index*."""
    iface = ipaddress.ip_interface(nic.ip)
    return f"ip={iface.ip}::{nic.gateway}:{iface.netmask}::eth{index}:off"


def kernel_cmdline(hostname, mid, nics, extra=""):
    parts = ["root=/dev/vda", "rw", "console=ttyS0", "net.ifnames=0",
             f"systemd.hostname={hostname}", f"systemd.machine_id={mid}"]
    parts += [kernel_ip_arg(nic, i) for i, nic in enumerate(nics)]
    return " ".join(parts + ([extra] if extra else []))


def _read_json(path):
    try:
        with open(path) as fh:
            return json.load(fh)
    except (OSError, ValueError):
        return {}


# -- namespaces' bridges ---------------------------------------------------------------
def _ip(netns, *args, check=True):
    res = subprocess.run(["ip", "-n", netns, *args], capture_output=True, text=True,
                         timeout=30)
    if check and res.returncode != 0:
        raise VmError(f"ip -n {netns} {' '.join(args)}: {res.stderr.strip()}")
    return res


def create_bridge(netns, name, address=None):
    """A Linux bridge *name* in *netns*, up, with *address* (IP/prefix in 198.18.0.0/15,
    for SSH from the namespace) when given. Repeating it changes nothing."""
    if address:
        _check_address(address, f"bridge {name}")
    if _ip(netns, "link", "show", name, check=False).returncode != 0:
        _ip(netns, "link", "add", name, "type", "bridge", "stp_state", "0",
            "forward_delay", "0")
    _ip(netns, "link", "set", name, "up")
    if address:
        res = _ip(netns, "addr", "add", address, "dev", name, check=False)
        if res.returncode != 0 and "File exists" not in res.stderr:
            raise VmError(f"bridge {name} in {netns}: address {address}: {res.stderr.strip()}")


def delete_bridge(netns, name):
    _ip(netns, "link", "del", name, check=False)


def _check_address(cidr, what):
    try:
        iface = ipaddress.ip_interface(cidr)
    except ValueError:
        raise VmError(f"{what}: {cidr!r} is not IP/PREFIX") from None
    if iface.ip not in LAB_NET:
        raise VmError(f"{what}: {cidr} is outside the lab's {LAB_NET}")


# -- the VM ----------------------------------------------------------------------------
class QemuVm:
    """One node VM. *nics*: Nic records or (tap, bridge, mac, ip[, gateway]) tuples; eth0 is
    the first. *image*: a tenantnet.vm.image.Image. SSH goes to *ssh_ip* (default: the first
    NIC's address) from inside *netns*."""

    def __init__(self, name, netns, nics, image, memory_mb=768, cpus=1, prefix="tn",
                 state_dir=None, accel=None, ssh_ip=None, extra_append=""):
        self.name = name
        self.netns = netns
        self.nics = [n if isinstance(n, Nic) else Nic(*n) for n in nics]
        self.image = image
        self.memory_mb = int(memory_mb)
        self.cpus = int(cpus)
        self.prefix = prefix
        self.accel = accel
        self.extra_append = extra_append
        self.dir = state_dir or os.path.join(STATE_DIR, prefix, name)
        if not self.nics:
            raise VmError(f"vm {name}: give at least one NIC")
        if not netns.startswith(prefix):
            raise VmError(f"vm {name}: namespace {netns!r} does not carry the lab prefix "
                          f"{prefix!r}")
        for i, nic in enumerate(self.nics):
            if len(nic.tap) > 15 or not nic.tap.startswith(prefix):
                raise VmError(f"vm {name}: tap {nic.tap!r} must start with {prefix!r} and "
                              "have at most 15 characters (see tap_name)")
            _check_address(nic.ip, f"vm {name} eth{i}")
        self.ssh_ip = ssh_ip or str(ipaddress.ip_interface(self.nics[0].ip).ip)
        self.machine_id = machine_id(prefix, name)

    # files
    def _path(self, name):
        return os.path.join(self.dir, name)

    @property
    def disk(self):
        return self._path("disk.qcow2")

    @property
    def serial_log(self):
        return self._path("serial.log")

    @property
    def monitor(self):
        return self._path("monitor.sock")

    @property
    def pidfile(self):
        return self._path("qemu.pid")

    def _record(self):
        return _read_json(self._path("vm.json"))

    @property
    def pid(self):
        return self._record().get("pid")

    def kernel_cmdline(self):
        return kernel_cmdline(self.name, self.machine_id, self.nics, self.extra_append)

    def command(self, accel):
        """The qemu-system-x86_64 argv (run inside the namespace)."""
        cmd = [QEMU, "-name", f"{self.prefix}-{self.name},process={self.prefix}-{self.name}",
               *accel.args, "-m", str(self.memory_mb), "-smp", str(self.cpus),
               "-nodefaults", "-no-user-config", "-display", "none", "-vga", "none",
               "-kernel", self.image.kernel, "-initrd", self.image.initrd,
               "-append", self.kernel_cmdline(),
               "-drive", f"file={self.disk},if=virtio,format=qcow2,discard=unmap",
               "-device", "virtio-rng-pci",
               "-serial", f"file:{self.serial_log}",
               "-monitor", f"unix:{self.monitor},server,nowait",
               "-pidfile", self.pidfile, "-daemonize"]
        for i, nic in enumerate(self.nics):
            cmd += ["-netdev", f"tap,id=n{i},ifname={nic.tap},script=no,downscript=no",
                    "-device", f"virtio-net-pci,netdev=n{i},mac={nic.mac}"]
        return cmd

    def running(self):
        rec = self._record()
        return procs.pid_alive(rec.get("pid"), rec.get("start_time"))

    def start(self, fresh=True, progress=None):
        """Boot the VM (a new overlay when *fresh* or none exists); returns once QEMU runs
        and its taps are on their bridges (not when the guest is up: see wait_ssh)."""
        say = progress or (lambda text: None)
        if self.running():
            raise VmError(f"vm {self.name} is already running (pid {self.pid})")
        for tool in (QEMU, "qemu-img"):
            if not shutil.which(tool):
                raise VmError(f"{tool} is not installed: apt-get install qemu-system-x86 "
                              "qemu-utils")
        os.makedirs(self.dir, exist_ok=True)
        if fresh or not os.path.exists(self.disk):
            if os.path.exists(self.disk):
                os.unlink(self.disk)
            res = subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", "-F", "qcow2",
                                  "-b", self.image.disk, self.disk], capture_output=True,
                                 text=True, timeout=60)
            if res.returncode != 0:
                raise VmError(f"vm {self.name}: qemu-img create: {res.stderr.strip()}")
        accel = self.accel or detect_accel(self.image, progress=say)
        self.accel = accel
        for stale in (self.pidfile, self.monitor, self.serial_log):
            if os.path.exists(stale):
                os.unlink(stale)
        cmd = ["ip", "netns", "exec", self.netns, *self.command(accel)]
        say(f"vm {self.name}: starting QEMU ({accel.name}, {self.memory_mb} MB) in "
            f"{self.netns}")
        res = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
        if res.returncode != 0:
            msg = (res.stderr or res.stdout).strip().splitlines()
            raise VmError(f"vm {self.name}: QEMU did not start: "
                          f"{msg[-1] if msg else f'exit {res.returncode}'}")
        try:
            with open(self.pidfile) as fh:
                pid = int(fh.read().strip())
        except (OSError, ValueError):
            raise VmError(f"vm {self.name}: QEMU wrote no pid to {self.pidfile}") from None
        rec = {"name": self.name, "prefix": self.prefix, "netns": self.netns, "pid": pid,
               "start_time": procs.start_time(pid), "accel": accel.name,
               "machine_id": self.machine_id, "nics": [asdict(n) for n in self.nics],
               "ssh_ip": self.ssh_ip, "image": self.image.path, "command": cmd}
        with open(self._path("vm.json"), "w") as fh:
            json.dump(rec, fh, indent=2)
        try:
            for nic in self.nics:
                _ip(self.netns, "link", "set", nic.tap, "master", nic.bridge)
                _ip(self.netns, "link", "set", nic.tap, "up")
        except BaseException:
            self.stop()
            raise
        return pid

    # SSH
    def ssh_argv(self, cmd, connect_timeout=10):
        """The argv that runs *cmd* (a string for the remote shell, or a list) in the VM."""
        remote = cmd if isinstance(cmd, str) else shlex.join(cmd)
        return ["ip", "netns", "exec", self.netns, "ssh", "-i", self.image.ssh_key,
                *SSH_OPTIONS, "-o", f"ConnectTimeout={connect_timeout}",
                f"root@{self.ssh_ip}", remote]

    def ssh(self, cmd, check=False, timeout=120, input=None, capture=True, text=True):
        """Run *cmd* in the VM as root; the CompletedProcess (check: VmError on failure)."""
        if text and isinstance(input, bytes):
            text = False
        try:
            res = subprocess.run(self.ssh_argv(cmd), input=input, timeout=timeout,
                                 capture_output=capture, text=text)
        except subprocess.TimeoutExpired:
            raise VmError(f"vm {self.name}: `{cmd}` timed out after {timeout}s") from None
        if check and res.returncode != 0:
            err = res.stderr if capture else ""
            if isinstance(err, bytes):
                err = err.decode(errors="replace")
            raise VmError(f"vm {self.name}: `{cmd}` failed (exit {res.returncode}): "
                          f"{(err or '').strip()[-300:]}")
        return res

    def wait_ssh(self, timeout=300.0):
        """Wait until SSH answers; return the seconds waited. VmError (with the serial
        console's last line) when QEMU dies or *timeout* passes."""
        start = time.monotonic()
        while True:
            if not self.running():
                raise VmError(f"vm {self.name}: QEMU is not running; console: "
                              f"{self.console_tail()}")
            try:
                res = subprocess.run(self.ssh_argv("true", connect_timeout=5),
                                     capture_output=True, timeout=30)
                if res.returncode == 0:
                    return time.monotonic() - start
            except subprocess.TimeoutExpired:
                pass
            if time.monotonic() - start > timeout:
                raise VmError(f"vm {self.name}: no SSH on {self.ssh_ip} after {timeout:.0f}s; "
                              f"console: {self.console_tail()}")
            time.sleep(1.0)

    def console_tail(self, n=1):
        try:
            with open(self.serial_log, errors="replace") as fh:
                lines = [ln.strip() for ln in fh.read().splitlines() if ln.strip()]
        except OSError:
            return "(no console log)"
        return " | ".join(lines[-n:]) or "(empty)"

    # stopping
    def stop(self, timeout=30.0):
        """Stop QEMU: `quit` on its monitor, else SIGTERM by pid (SIGKILL after *timeout*);
        returns once the process is gone. Safe to repeat."""
        rec = self._record()
        pid, started = rec.get("pid"), rec.get("start_time")
        if not procs.pid_alive(pid, started):
            return
        if os.path.exists(self.monitor):
            try:
                with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
                    s.settimeout(5)
                    s.connect(self.monitor)
                    s.sendall(b"quit\n")
                    try:
                        while s.recv(4096):
                            pass
                    except OSError:
                        pass
            except OSError:
                pass
            if not procs.wait_gone([(pid, started)], timeout):
                return
        left = procs.stop([(pid, started)], timeout=timeout, kill_timeout=10.0)
        if left:
            raise VmError(f"vm {self.name}: QEMU {procs.describe(pid)} does not exit")

    def kill(self):
        """SIGKILL by pid (for tests of crash handling); waits until it is gone."""
        rec = self._record()
        if procs.pid_alive(rec.get("pid"), rec.get("start_time")):
            os.kill(rec["pid"], signal.SIGKILL)
            procs.wait_gone([(rec["pid"], rec.get("start_time"))], 10.0)

    def destroy(self):
        """stop() and remove the VM's files (overlay, logs, sockets)."""
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)
