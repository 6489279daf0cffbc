"""tenantnet.node.procs: processes by pid and start time, stopped and waited for until gone."""

import os
import platform
import signal
import subprocess
import sys
import time

import pytest

from tenantnet.node import procs

# A process whose main thread exits (SYS_exit, not exit_group) while another thread runs on:
# its main thread is a zombie, the process is not gone.
ZOMBIE_LEADER = """
import ctypes, threading, time
threading.Thread(target=time.sleep, args=(60,)).start()
print("ready", flush=True)
ctypes.CDLL(None, use_errno=True).syscall(60, 0)
"""


def spawn(code):
    return subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)


def state(pid):
    with open(f"/proc/{pid}/stat") as fh:
        return fh.read().rsplit(")", 1)[1].split()[0]


def test_alive_only_with_its_own_start_time():
    proc = spawn("import time; time.sleep(60)")
    try:
        started = procs.start_time(proc.pid)
        assert started is not None and procs.pid_alive(proc.pid, started)
        assert not procs.pid_alive(proc.pid, started + 1)       # a reused pid is not ours
        assert proc.pid in [p for p, _ in procs.group_members(os.getpgrp(), started)]
    finally:
        assert procs.stop([(proc.pid, started)], timeout=5) == []
    assert not procs.pid_alive(proc.pid, started) and proc.wait(5) == -signal.SIGTERM


def test_a_zombie_is_gone_but_not_while_a_thread_still_runs():
    proc = spawn("pass")
    while state(proc.pid) != "Z":                              # ended, not yet reaped
        time.sleep(0.01)
    assert not procs.pid_alive(proc.pid) and procs.start_time(proc.pid) is None
    proc.wait()

    if platform.machine() != "x86_64":                         # 60 is SYS_exit on x86_64
        pytest.skip("the zombie-leader case uses the x86_64 syscall number")
    proc = spawn(ZOMBIE_LEADER)
    try:
        assert proc.stdout.readline().strip() == "ready"
        deadline = time.time() + 5
        while state(proc.pid) != "Z" and time.time() < deadline:
            time.sleep(0.01)
        assert state(proc.pid) == "Z"
        assert procs.pid_alive(proc.pid)                       # its other thread runs on
    finally:
        left = procs.stop([(proc.pid, None)], timeout=5, poll=proc.poll)
    assert left == [] and not procs.pid_alive(proc.pid)


def test_sigkill_follows_an_ignored_sigterm():
    proc = spawn("import signal, time\nsignal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
                 "print('ready', flush=True)\ntime.sleep(60)")
    assert proc.stdout.readline().strip() == "ready"
    t0 = time.monotonic()
    left = procs.stop([(proc.pid, None)], timeout=0.3, kill_timeout=5)   # SIGKILL wins
    assert left == [] and time.monotonic() - t0 < 5
    assert proc.wait(5) == -signal.SIGKILL
    # what is not alive is nothing to stop
    assert procs.stop([(proc.pid, None), (None, None)]) == [] and procs.terminate_pid(0)
