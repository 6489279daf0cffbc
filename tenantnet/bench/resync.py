"""`tenantnet bench resync`: a controller restart at scale, as deployed (TLS).

On a lab of its own (prefix `tnbr`, tenantnet.bench.labbench: K compute nodes and one
network node, emulated, userspace Open vSwitch each), N networks of one tenant and V VMs
placed through the API (spread over every node: labbench.spread). VM and probe ports are
tap devices with nothing behind them, except one VM and its network's probe, which are
namespaces, so that traffic can cross the restart.

Then the provider's controller is restarted the way `tenantnet lab stop controller` and
`lab start controller` do it (SIGKILL by recorded pid; the recorded command line again),
and measured:

  ready_s        from the new process's start to GET /v1/health answering `ok` with every
                 node `up` (start-up reached, relearned and reconciled every node);
  ovsdb_changes  rows inserted, deleted or modified in the nodes' OVSDB configuration
                 columns meanwhile, seen by `ovsdb-client monitor` on every node
                 (tenantnet.bench.switchwatch);
  flow_changes   flow-mods the switches received meanwhile, from ovs-vswitchd's own
                 reports (logged up to 10 s late: the window ends 11 s after the last bridge
                 was synced);
  ping_lost      echoes lost by `ping -i 0.01` from the probe to the VM across the restart
                 (icmp_seq gaps up to the last reply; the first reply must come before the
                 kill and the last after every bridge was synced again);
  flows_total    tenantnet's flows on all the switches (cookie prefix TNNT, `ovs-ofctl
                 dump-aggregate` on every bridge), the same before and after.

Beside them: `bridges_synced_s`, until every bridge had reconnected over TLS and been
synced (the core's `switch_resyncs` counter reaches the number of bridges), and the new
controller's own account (its OVSDB transactions and bundles, from GET /metrics)."""

import os
import re
import shutil
import subprocess
import time

from tenantnet.bench import labbench
from tenantnet.bench.switchwatch import REPORT_DELAY, FlowModLog, OvsdbWatch
from tenantnet.errors import TenantnetError
from tenantnet.lab import faults
from tenantnet.model.flows import node_flows
from tenantnet.model.flowspec import COOKIE_PREFIX

PREFIX = "tnbr"
KEYS = ("ready_s", "ovsdb_changes", "flow_changes", "ping_lost", "flows_total")
REPLY = re.compile(r"^\[(\d+\.\d+)\] \d+ bytes from .*icmp_seq=(\d+)", re.M)


class Pinger:
    """`ping -D -i INTERVAL` from a lab endpoint until stopped (by its Popen object). Its
    output goes to the file *out_path*: a pipe nobody reads fills up after some 800
    replies and then stops the ping."""

    def __init__(self, fabric, src, ip, out_path, interval=0.01):
        self.out_path = out_path
        with open(out_path, "w") as fh:
            self.proc = subprocess.Popen(
                ["ip", "netns", "exec", fabric.endpoint_netns(src), "ping", "-n", "-D", "-i",
                 str(interval), ip], stdout=fh, stderr=subprocess.STDOUT)

    def stop(self):
        """([(epoch, icmp_seq)] of the replies, echoes transmitted, epoch of the stop)."""
        stopped = time.time()
        if self.proc.poll() is None:
            self.proc.send_signal(2)            # SIGINT: ping prints its summary and exits
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        with open(self.out_path) as fh:
            out = fh.read()
        m = re.search(r"(\d+) packets transmitted", out or "")
        return ([(float(t), int(s)) for t, s in REPLY.findall(out or "")],
                int(m.group(1)) if m else None, stopped)


def lost_echoes(replies, transmitted, stopped, kill):
    """(echoes lost, facts): icmp_seq gaps up to the last reply, plus the echoes sent after
    it when the last reply came more than 0.5 s before the ping was stopped (the one or two
    in flight when it stops are not losses). TenantnetError unless a reply came before
    the kill (epoch *kill*)."""
    if not replies:
        raise TenantnetError("bench resync: the ping got no reply at all")
    first, last = replies[0][0], replies[-1][0]
    if first >= kill:
        raise TenantnetError("bench resync: the ping's first reply came after the kill")
    seqs = sorted({s for _, s in replies})
    lost = len(set(range(1, seqs[-1] + 1)) - set(seqs))
    tail = 0
    if transmitted is not None and stopped - last > 0.5:
        tail = max(0, transmitted - seqs[-1])
    gaps = [(b[0] - a[0], a[0]) for a, b in zip(replies, replies[1:])]
    gap, at = max(gaps) if gaps else (0.0, first)
    return lost + tail, {"echoes": transmitted, "replies": len(seqs),
                         "last_reply_before_stop_s": round(stopped - last, 3),
                         "longest_gap_s": round(gap, 3),
                         "longest_gap_after_kill_s": round(at - kill, 3)}


def profile_tool():
    """The py-spy command (it samples the controller's process from outside)."""
    path = shutil.which("py-spy")
    if not path:
        raise TenantnetError("bench resync: --profile needs py-spy on PATH "
                             "(pip install py-spy)")
    return path


def run(vms=1000, networks=100, nodes=5, progress=None, profile=None, keep_logs=None):
    """(figures, details): KEYS plus the sizes, `tls` and `bridges_synced_s`; the details
    for the table. *profile*: py-spy samples of the restarted controller, from its start
    to the end of the window, written there (collapsed stacks); *keep_logs*: a directory
    the controller's and the nodes' logs are copied into before the lab goes."""
    labbench.check_sizes("resync", vms, networks, nodes)
    t_start = time.monotonic()

    def say(msg):
        if progress:
            progress(f"{time.monotonic() - t_start:6.1f} s  {msg}")

    placements = labbench.spread(vms, networks, nodes)
    ping_vm, ping_net, ping_node = placements[0]
    watches, pinger, spy = [], None, None
    if profile:
        profile_tool()
    with labbench.BenchLab(PREFIX, networks, nodes, progress=say, keep_logs=keep_logs) as bl:
        try:
            tls = bl.tls()
            vm, probe = bl.real_pair(ping_vm, ping_net, ping_node)
            taps = bl.tap_plan(placements, skip={vm, probe})
            say(f"{sum(len(v) for v in taps.values())} tap devices")
            bl.make_taps(taps)
            say(f"placing {vms} VMs on {networks} networks over {nodes} compute nodes "
                "through the API")
            ovs = {n: bl.ovs(n) for n in bl.node_names()}
            log = FlowModLog(ovs)
            mark_build = log.mark()
            t0 = time.perf_counter()
            bl.place(placements, retries=3)     # the build is off the clock
            build_s = time.perf_counter() - t0
            bl_retried = bl.retried
            say(f"placed in {build_s:.1f} s" + (f" ({len(bl_retried)} placements failed "
                f"and were sent again: {bl_retried[0]})" if bl_retried else ""))
            vm_ip = bl.configure_pair(vm, probe, ping_net)

            model = bl.lab.topology_from_api()
            bridges = [(n, b) for n in bl.node_names() for b in node_flows(model, n)]
            want = sum(len(set(bf.flows)) for n in bl.node_names()
                       for bf in node_flows(model, n).values())
            health = _wait(bl, lambda h: bl.all_up(h), 60, "every node up before the restart")
            before = bl.flow_counts(bridges, COOKIE_PREFIX)
            flows_total = sum(before.values())
            if flows_total != want:
                raise TenantnetError(f"bench resync: the switches hold {flows_total} of "
                                     f"tenantnet's flows, the model {want}")

            say(f"{len(bridges)} bridges, {flows_total} flows; restarting the controller")
            for n in bl.node_names():
                watches.append(OvsdbWatch(n, ovs[n]).start())
            pinger = Pinger(bl.fabric, probe, vm_ip, os.path.join(bl.workdir, "ping.txt"))
            time.sleep(1.0)
            t_kill = time.time()
            faults.stop_controller(bl.fabric, "controller")
            time.sleep(1.0)          # the switches log what the old connections did
            mark = log.mark()
            # the counter's positive control: the build's flow-mods, reported at the latest
            # when the old controller's connections closed
            build_mods = sum(log.count(mark_build, mark)[0].values())
            t_spawn = time.perf_counter()
            pid = faults.start_controller(bl.fabric, "controller")
            if profile:
                spy = subprocess.Popen([profile_tool(), "record", "--pid", str(pid), "--rate",
                                        "100", "--nonblocking", "--idle", "--threads",
                                        "--format", "raw", "--output", profile],
                                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            api_s = None
            while True:
                try:
                    health = bl.health()
                    if api_s is None:
                        api_s = time.perf_counter() - t_spawn
                    if bl.all_up(health):
                        break
                except TenantnetError:
                    pass
                if time.perf_counter() - t_spawn > 300:
                    raise TenantnetError("bench resync: the controller was not ready within "
                                         f"300 s; see {bl.lab.controller_log()}")
                time.sleep(0.02)
            ready_s = time.perf_counter() - t_spawn
            say(f"ready after {ready_s:.2f} s; waiting for every bridge to be synced")
            # Every bridge reconnects (OVS backs off up to 8 s) and is synced by the core's
            # switch-connect path, which counts it. Not reached (a bridge synced by a node
            # reconciliation instead, say): reported as null, and the window ends then.
            synced = _wait(bl, lambda h: (h.get("counters") or {}).get("switch_resyncs", 0)
                           >= len(bridges), 240, "every bridge synced again", interval=0.1,
                           soft=True)
            synced_s = time.perf_counter() - t_spawn if synced else None
            health = synced or bl.health()
            say(f"every bridge synced after {synced_s:.2f} s" if synced else
                f"not every bridge was synced within 240 s ({health.get('counters')})")
            say(f"{REPORT_DELAY + 1:.0f} s for the switches' flow-mod reports")
            time.sleep(REPORT_DELAY + 1)
            if spy is not None:
                spy.send_signal(2)          # SIGINT: py-spy writes its samples and exits
                spy.wait(60)
                spy = None
            replies, transmitted, stopped = pinger.stop()
            pinger = None
            changed = {}
            for w in watches:
                for table, rows in w.stop().items():
                    changed.setdefault(table, []).extend(f"{w.node}: {r}" for r in rows)
            watches = []
            mods, mod_lines = log.count(mark)
            ping_lost, ping = lost_echoes(replies, transmitted, stopped, t_kill)
            metrics = bl.metrics()
            after = bl.flow_counts(bridges, COOKIE_PREFIX)
            if after != before:
                diff = sorted(k for k in before if before[k] != after.get(k))
                raise TenantnetError(f"bench resync: flows per bridge differ after the "
                                     f"restart: {diff[:5]}")
        finally:
            if spy is not None and spy.poll() is None:
                spy.send_signal(2)          # its samples so far are written
                try:
                    spy.wait(30)
                except subprocess.TimeoutExpired:
                    spy.kill()
                    spy.wait()
            if pinger is not None:
                pinger.stop()
            for w in watches:
                w.stop()
    say("done")
    out = {"ready_s": round(ready_s, 3),
           "ovsdb_changes": sum(len(rows) for rows in changed.values()),
           "flow_changes": sum(mods.values()),
           "ping_lost": ping_lost,
           "flows_total": flows_total,
           "bridges_synced_s": round(synced_s, 3) if synced_s is not None else None,
           "vms": vms, "networks": networks, "nodes": nodes, "tls": tls}
    details = {
        "build_s": round(build_s, 1), "bridges": len(bridges),
        "build_retries": list(bl_retried),
        "api_answered_s": round(api_s, 3) if api_s is not None else None,
        "ping": ping, "echoes": transmitted, "build_flow_mods": build_mods,
        "controller_ovsdb_transactions": int(metrics.get(
            "tenantnet_ovsdb_transaction_seconds_count", 0)),
        "controller_bundles": int(metrics.get("tenantnet_flow_bundle_seconds_count", 0)),
        "switch_resyncs": (health.get("counters") or {}).get("switch_resyncs"),
        "ovsdb_changed_rows": {t: rows[:5] for t, rows in changed.items()},
        "flow_mod_reports": mod_lines[:10],
    }
    return out, details


def _wait(bl, cond, timeout, what, interval=0.2, soft=False):
    deadline = time.time() + timeout
    health = {}
    while time.time() < deadline:
        try:
            health = bl.health()
            if cond(health):
                return health
        except TenantnetError:
            pass
        time.sleep(interval)
    if soft:
        return None
    raise TenantnetError(f"bench resync: not reached within {timeout:.0f} s: {what} "
                         f"(health: {health}); see {bl.lab.controller_log()}")
