"""Thin wrappers around `ip netns` and subprocess: every command the lab runs goes through here.

Each function takes an optional *executor* (tenantnet.node.hostexec): the host the command runs
on. None is this host, exactly as before executors existed; an SshExecutor makes the same
calls on another machine (the multi-node lab's nodes)."""

import os

from tenantnet.errors import LabError
from tenantnet.node.hostexec import ExecError, LocalExecutor, NetnsExecutor

_LOCAL = LocalExecutor()


def _on(executor, netns):
    base = executor or _LOCAL
    return NetnsExecutor(netns, base=base) if netns else base


def executor_in(netns=None, base=None):
    """The executor that runs commands in *netns* (None: the host itself) of host *base*."""
    return _on(base, netns)


def run(cmd, netns=None, check=True, env=None, timeout=60, capture=True, executor=None):
    """Run *cmd* (a list), inside *netns* when given; return CompletedProcess.

    With check=True a non-zero exit raises LabError carrying the command and its stderr,
    so callers never have to format subprocess failures themselves."""
    cmd = list(cmd)
    target = _on(executor, netns)
    if netns and len(cmd) > 1 and cmd[0] == "ip" and cmd[1] != "netns":
        # `ip -n NS ...` enters the namespace itself: one process instead of two, and the
        # lab runs thousands of these.
        cmd, target = ["ip", "-n", netns] + cmd[1:], (executor or _LOCAL)
    try:
        return target.run(cmd, check=check, timeout=timeout, env=env, capture=capture)
    except ExecError as exc:
        raise LabError(str(exc)) from exc


def _is_local(executor):
    return executor is None or isinstance(executor, LocalExecutor)


def exists(netns, executor=None):
    if _is_local(executor):
        return os.path.exists(f"/run/netns/{netns}")
    return run(["test", "-e", f"/run/netns/{netns}"], executor=executor,
               check=False).returncode == 0


def list_namespaces(executor=None):
    if _is_local(executor):
        try:
            return sorted(os.listdir("/run/netns"))
        except FileNotFoundError:
            return []
    out = run(["ls", "-1", "/run/netns"], executor=executor, check=False)
    return sorted(out.stdout.split()) if out.returncode == 0 else []


def add(netns, executor=None):
    """Create *netns* with its loopback up (idempotent)."""
    if not exists(netns, executor=executor):
        run(["ip", "netns", "add", netns], executor=executor)
    run(["ip", "link", "set", "lo", "up"], netns=netns, executor=executor)


def delete(netns, executor=None):
    if exists(netns, executor=executor):
        run(["ip", "netns", "del", netns], check=False, executor=executor)


def link_exists(name, netns=None, executor=None):
    return run(["ip", "link", "show", "dev", name], netns=netns, check=False,
               executor=executor).returncode == 0
