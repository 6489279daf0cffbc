"""Thread dumps of a running controller on a signal: what a controller of thousands of
connection threads is doing (faulthandler stops at 100 threads; py-spy could not read the
controller at 1,000 VMs here). Identical stacks are written once, with their count."""

import collections
import logging
import os
import signal
import sys
import threading
import time
import traceback

LOG = logging.getLogger("tenantnet.controller.runner")


def dump_threads_on(signum, path=None):
    """`kill -USR1 <pid>` (for *signum* SIGUSR1) appends every thread's Python stack to
    *path* (default $TENANTNET_THREAD_DUMP, else /tmp/tenantnet-threads-<pid>.txt),
    without stopping the controller. Returns the path."""
    path = path or os.environ.get("TENANTNET_THREAD_DUMP") or \
        f"/tmp/tenantnet-threads-{os.getpid()}.txt"

    def on_signal(_signum, _frame):
        threading.Thread(target=write_thread_dump, args=(path,), name="tenantnet-dump",
                         daemon=True).start()
    signal.signal(signum, on_signal)
    LOG.info("thread dumps: kill -%s %d appends them to %s",
             signal.Signals(signum).name[3:], os.getpid(), path)
    return path


def write_thread_dump(path):
    """Append the stacks of every thread to *path*, the most common first."""
    stacks = collections.Counter("".join(traceback.format_stack(frame))
                                 for frame in sys._current_frames().values())
    try:
        with open(path, "a") as out:
            out.write(f"=== {time.strftime('%Y-%m-%d %H:%M:%S')}: "
                      f"{sum(stacks.values())} threads, {len(stacks)} distinct stacks\n")
            for stack, count in stacks.most_common():
                out.write(f"--- {count} thread(s):\n{stack}")
    except OSError as exc:
        LOG.warning("thread dump to %s failed: %s", path, exc)
