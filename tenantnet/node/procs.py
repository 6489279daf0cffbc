"""Processes the lab owns, by pid: liveness, start times, stopping and waiting.

The lab signals processes by pid only, never by name, and only the processes it recorded.
A pid is identified together with its start time (/proc/PID/stat field 22, clock ticks
since boot): a pid reused by another process has another start time and is left alone.

A process is *gone* when no thread of it runs any more: its /proc entry is absent, the pid
belongs to a later process, or it is a zombie all of whose threads have exited. A SIGKILLed
multi-threaded daemon (ovs-vswitchd) stays in state R while it exits, and its main thread
can be a zombie while other threads are still exiting: both count as alive, and teardown
waits for them. A complete zombie holds nothing but its exit status for its parent (for
detached daemons PID 1, which may reap a second later), so waiting for the reap would only
stall teardown."""

import os
import signal
import time

_DEAD = ("Z", "X", "x")       # zombie, dead
POLL = 0.02


def _stat(pid):
    """(state, ppid, pgrp, start_time) of *pid*, or None when there is no such process."""
    try:
        with open(f"/proc/{int(pid)}/stat") as fh:
            data = fh.read()
    except (OSError, ValueError):
        return None
    # comm may contain spaces and parentheses: split after the last ')'.
    fields = data[data.rfind(")") + 2:].split()
    try:
        return fields[0], int(fields[1]), int(fields[2]), int(fields[19])
    except (IndexError, ValueError):
        return None


def _threads_running(pid):
    """True while a thread of *pid* (whose main thread may be a zombie) has not exited."""
    try:
        tids = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return False
    for tid in tids:
        try:
            with open(f"/proc/{pid}/task/{tid}/stat") as fh:
                data = fh.read()
        except OSError:
            continue
        state = data[data.rfind(")") + 2:].split()[:1]
        if state and state[0] not in _DEAD:
            return True
    return False


def start_time(pid):
    """Start time of *pid* while it is alive (see pid_alive), else None."""
    st = _stat(pid) if pid else None
    if st is None or not _alive(pid, st):
        return None
    return st[3]


def _alive(pid, st):
    return st[0] not in _DEAD or _threads_running(pid)


def pid_alive(pid, start_time=None):
    """True while *pid* (the process started at *start_time*, when given) is not gone."""
    if not pid:
        return False
    st = _stat(pid)
    if st is None or (start_time is not None and st[3] != start_time):
        return False
    return _alive(pid, st)


def proc_cmdline(pid):
    """*pid*'s command line as one string ('' when gone, or exiting with its memory freed)."""
    try:
        with open(f"/proc/{int(pid)}/cmdline", "rb") as fh:
            return fh.read().replace(b"\0", b" ").decode(errors="replace")
    except (OSError, ValueError):
        return ""


def group_members(pgid, min_start):
    """[(pid, start_time)] of the live processes of process group *pgid* started no earlier
    than *min_start* (so that a reused pgid is never taken for ours)."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        st = _stat(entry)
        if st and st[2] == pgid and st[3] >= min_start and _alive(entry, st):
            found.append((int(entry), st[3]))
    return found


def describe(pid):
    st = _stat(pid)
    state = st[0] if st else "gone"
    return f"pid {pid} (state {state}: {proc_cmdline(pid)[:80] or '?'})"


def signal_all(procs, sig):
    """Send *sig* to each live (pid, start_time) of *procs*."""
    for pid, started in procs:
        if pid_alive(pid, started):
            try:
                os.kill(pid, sig)
            except ProcessLookupError:
                pass


def wait_gone(procs, timeout, poll=None):
    """Wait up to *timeout* s until every (pid, start_time) of *procs* is gone; return the
    ones still alive. *poll*: called on every round (e.g. to reap our own children)."""
    procs = list(procs)
    deadline = time.monotonic() + timeout
    while True:
        if poll:
            poll()
        left = [p for p in procs if pid_alive(*p)]
        if not left or time.monotonic() >= deadline:
            return left
        time.sleep(POLL)


def stop(procs, timeout=5.0, kill_timeout=5.0, poll=None):
    """SIGTERM every (pid, start_time) of *procs*, SIGKILL those left after *timeout* s, and
    wait up to *kill_timeout* s more until they are gone. Returns the survivors ([] when
    every one is gone)."""
    # Pin every pid to its start time now, so that a pid reused while we wait is not ours.
    procs = [(int(pid), started if started is not None else start_time(pid))
             for pid, started in procs if pid]
    procs = [p for p in procs if p[1] is not None]
    signal_all(procs, signal.SIGTERM)
    left = wait_gone(procs, timeout, poll)
    if left:
        signal_all(left, signal.SIGKILL)
        left = wait_gone(left, kill_timeout, poll)
    return left


def terminate_pid(pid, timeout=5.0, start_time=None):
    """stop() for one pid; True when it is gone."""
    return not stop([(pid, start_time)], timeout=timeout)
