"""What a node's Open vSwitch saw change, counted on the switch itself (not by the
controller's own account):

  * OVSDB: `ovsdb-client monitor` on the node's unix socket, one process per table, on the
    configuration columns only (what a controller writes: names, ports, types, options,
    tags, external_ids, controller targets...; not the status columns ovs-vswitchd keeps
    up to date, such as ofport, link_state, statistics or is_connected). Every insert,
    delete and modification after the initial contents is a change.
  * OpenFlow: ovs-vswitchd's own report, logged by its connection manager for every
    controller connection that sent flow-mods, `<bridge><->TARGET: N flow_mods in the last
    S s (A adds, ...)`, 10 s after the first of them or when the connection closes. Flow
    mods committed in a bundle are counted there too. Lines appended to the node's
    ovs-vswitchd.log between two marks are summed."""

import os
import re
import subprocess
import threading
import time

from tenantnet.errors import TenantnetError

COLUMNS = {
    "Open_vSwitch": "bridges,manager_options,ssl,external_ids,other_config",
    "Bridge": "name,ports,controller,fail_mode,datapath_type,protocols,mirrors,"
              "external_ids,other_config",
    "Port": "name,interfaces,tag,trunks,vlan_mode,external_ids,other_config",
    "Interface": "name,type,options,ofport_request,mac,mtu_request,external_ids,other_config",
    "Controller": "target,connection_mode,max_backoff,inactivity_probe,external_ids,"
                  "other_config",
}
CHANGE_ACTIONS = ("insert", "delete", "new")
FLOW_MODS = re.compile(r"\|connmgr\|INFO\|(\S+): (\d+) flow_mods ")
#: how long after its first flow-mod ovs-vswitchd reports a connection's flow-mods
REPORT_DELAY = 10.0


class OvsdbWatch:
    """`ovsdb-client monitor` of one node's configuration columns, across a window."""

    def __init__(self, node, ovs):
        self.node, self.ovs = node, ovs
        self.procs = {}
        self.lines = {}
        self.threads = []
        self.ready = {}

    def start(self, timeout=20.0):
        for table, cols in COLUMNS.items():
            proc = subprocess.Popen(
                ["ovsdb-client", "--format=csv", "monitor", self.ovs.unix_remote,
                 "Open_vSwitch", table, cols], env=self.ovs.env, stdout=subprocess.PIPE,
                stderr=subprocess.PIPE, text=True)
            self.procs[table] = proc
            self.lines[table] = []
            self.ready[table] = threading.Event()
            t = threading.Thread(target=self._read, args=(table, proc), daemon=True)
            t.start()
            self.threads.append(t)
        deadline = time.time() + timeout
        for table, ev in self.ready.items():
            if not ev.wait(max(0.0, deadline - time.time())):
                self.stop()
                raise TenantnetError(f"bench: ovsdb-client monitor of {table} on node "
                                     f"{self.node} printed no initial contents in "
                                     f"{timeout:.0f} s")
        return self

    def _read(self, table, proc):
        for line in proc.stdout:
            line = line.rstrip("\n")
            if ",initial," in line:
                self.ready[table].set()
            self.lines[table].append(line)
        self.ready[table].set()

    def stop(self):
        """End the monitors (by their Popen objects); {table: [changed rows]}."""
        for proc in self.procs.values():
            if proc.poll() is None:
                proc.terminate()
        for proc in self.procs.values():
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        for t in self.threads:
            t.join(5)
        out = {}
        for table, lines in self.lines.items():
            changed = [ln for ln in lines if _action(ln) in CHANGE_ACTIONS]
            if changed:
                out[table] = changed
        return out


def _action(line):
    parts = line.split(",", 2)
    return parts[1] if len(parts) > 2 else None


class FlowModLog:
    """The flow-mod reports in the ovs-vswitchd.log of each of *nodes* {name: OvsInstance}."""

    def __init__(self, nodes):
        self.paths = {n: os.path.join(ovs.logdir, "ovs-vswitchd.log") for n, ovs in nodes.items()}

    def mark(self):
        """Where each log ends now."""
        out = {}
        for node, path in self.paths.items():
            try:
                out[node] = os.path.getsize(path)
            except OSError:
                out[node] = 0
        return out

    def count(self, since, until=None):
        """({node: flow-mods reported between the marks *since* and *until* (default:
        the end)}, [the report lines])."""
        counts, lines = {}, []
        for node, path in self.paths.items():
            with open(path, "rb") as fh:
                fh.seek(since.get(node, 0))
                size = None if until is None else until[node] - since.get(node, 0)
                text = fh.read(size if size is not None and size >= 0 else -1)
            n = 0
            for line in text.decode("utf-8", "replace").splitlines():
                m = FLOW_MODS.search(line)
                if m:
                    n += int(m.group(2))
                    lines.append(f"{node}: {line}")
            counts[node] = n
        return counts, lines
