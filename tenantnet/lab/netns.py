"""Thin wrappers around `ip netns` and subprocess: every command the lab runs goes through here."""

import os
import subprocess

from tenantnet.errors import LabError


def run(cmd, netns=None, check=True, env=None, timeout=60, capture=True):
    """Run *cmd* (a list), inside *netns* when given; return CompletedProcess.

    With check=True a non-zero exit raises LabError carrying the command and its stderr,
    so callers never have to format subprocess failures themselves."""
    full = (["ip", "netns", "exec", netns] + list(cmd)) if netns else list(cmd)
    try:
        proc = subprocess.run(full, capture_output=capture, text=True, env=env, timeout=timeout)
    except FileNotFoundError as exc:
        raise LabError(f"command not found: {full[0]} (is it installed?)") from exc
    except subprocess.TimeoutExpired as exc:
        raise LabError(f"command timed out after {timeout}s: {' '.join(full)}") from exc
    if check and proc.returncode != 0:
        err = (proc.stderr or proc.stdout or "").strip()
        raise LabError(f"command failed ({proc.returncode}): {' '.join(full)}: {err}")
    return proc


def exists(netns):
    return os.path.exists(f"/run/netns/{netns}")


def list_namespaces():
    try:
        return sorted(os.listdir("/run/netns"))
    except FileNotFoundError:
        return []


def add(netns):
    """Create *netns* with its loopback up (idempotent)."""
    if not exists(netns):
        run(["ip", "netns", "add", netns])
    run(["ip", "link", "set", "lo", "up"], netns=netns)


def delete(netns):
    if exists(netns):
        run(["ip", "netns", "del", netns], check=False)


def link_exists(name, netns=None):
    return run(["ip", "link", "show", "dev", name], netns=netns, check=False).returncode == 0
