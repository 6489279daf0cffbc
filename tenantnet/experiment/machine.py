"""The machine an experiment ran on, as kept with its results (meta.json ``machine``, or
machine.json): ``machine_info()``, one set of keys for the runner and the report.

    cpu_count, cpu_model, memory_mb, kernel, system, machine, hostname, python,
    matplotlib_version, scipy_version, ovs_version, iperf3_version, tcp_congestion_control,
    tenantnet_version, tenantnet_commit, tenantnet_dirty, loadavg

Each value is None when it cannot be found out. ``loadavg`` is the load average when the
facts were collected (at the start of a run).
"""

import os
import platform
import shutil
import subprocess
from importlib import metadata

import tenantnet


def machine_info():
    """Facts about this machine worth keeping with the results (module docstring)."""
    uname = platform.uname()
    mem_kb = _proc_field("/proc/meminfo", "MemTotal:")
    try:
        load = os.getloadavg()
    except OSError:
        load = None
    root = os.path.dirname(os.path.dirname(os.path.abspath(tenantnet.__file__)))
    dirty = _git(root, "status", "--porcelain", "--untracked-files=no")
    return {
        "cpu_count": os.cpu_count(),
        "cpu_model": _proc_field("/proc/cpuinfo", "model name"),
        "memory_mb": int(mem_kb.split()[0]) // 1024 if mem_kb else None,
        "kernel": uname.release,
        "system": f"{uname.system} {uname.version}",
        "machine": uname.machine,
        "hostname": uname.node,
        "python": platform.python_version(),
        "matplotlib_version": _version("matplotlib"),
        "scipy_version": _version("scipy"),
        "ovs_version": _first_line(["ovs-vswitchd", "--version"])
        or _first_line(["/usr/sbin/ovs-vswitchd", "--version"]),
        "iperf3_version": _first_line(["iperf3", "--version"]),
        "tcp_congestion_control": _read("/proc/sys/net/ipv4/tcp_congestion_control"),
        "tenantnet_version": tenantnet.__version__,
        "tenantnet_commit": _git(root, "rev-parse", "HEAD"),
        "tenantnet_dirty": bool(dirty) if dirty is not None else None,
        "loadavg": list(load) if load else None,
    }


def _proc_field(path, name):
    """The value after the colon of the first line of *path* that starts with *name*."""
    try:
        with open(path) as fh:
            for line in fh:
                if line.startswith(name):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return None


def _read(path):
    try:
        with open(path) as fh:
            return fh.read().strip()
    except OSError:
        return None


def _version(dist):
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return None


def _first_line(cmd):
    if not shutil.which(cmd[0]):
        return None
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return None
    lines = (out.stdout or out.stderr or "").strip().splitlines()
    return lines[0] if lines else None


def _git(root, *args):
    if not shutil.which("git") or not os.path.isdir(os.path.join(root, ".git")):
        return None
    try:
        out = subprocess.run(["git", "-C", root, *args], capture_output=True, text=True,
                             timeout=10)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() if out.returncode == 0 else None
