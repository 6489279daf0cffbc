"""The benches' raw reference: the changes a placement makes, made with the raw Open vSwitch
tools, for `bench placement` and `bench bulk`.

The changes come from a second model (tenant `raw`), before and after its placements,
computed by the same pure functions as tenantnet's (model.desired.node_state,
model.flows.node_flows) and diffed: one `ovs-vsctl` transaction (add-br with the bridge's
columns, add-port with the port's and the interface's columns) and, per bridge whose flows
change, `ovs-ofctl --bundle add-flows` (bridges side by side). Its records are not
tenantnet's (`tenantnet-owner=bench-raw`: the controller's reconcile removes only records it
owns) and its flows carry the cookie prefix `RAW `, which tenantnet's syncs never touch."""

import os
import subprocess

from tenantnet.bench.flows import ofctl_text
from tenantnet.errors import TenantnetError
from tenantnet.model import naming
from tenantnet.model.desired import node_state
from tenantnet.model.flows import node_flows
from tenantnet.model.records import OWNER_KEY

RAW_TENANT = "raw"
RAW_OWNER = "bench-raw"           # external_ids owner of the raw tools' records (not ours)
RAW_COOKIE = 0x52415720           # "RAW ": the raw tools' flows, never touched by tenantnet


def check(proc, bench, what):
    """*proc* (a CompletedProcess) when it succeeded, else a TenantnetError naming *bench*
    and *what*."""
    if proc.returncode != 0:
        raise TenantnetError(f"{bench}: {what} failed: "
                             f"{(proc.stderr or '').strip()[:500] or f'exit {proc.returncode}'}")
    return proc


def _quote(value):
    return '"' + str(value).replace("\\", "\\\\").replace('"', '\\"') + '"'


def _columns(column, values):
    if column == "external_ids" and OWNER_KEY in values:
        # not tenantnet's: its reconcile removes every record it owns and does not want
        values = dict(values, **{OWNER_KEY: RAW_OWNER})
    return [f"{column}:{k}={_quote(v)}" for k, v in sorted(values.items())]


def vsctl_changes(before, after, bench, controller=True, strict=True):
    """ovs-vsctl arguments, one transaction, that add what NodeState *after* has and
    *before* has not: new bridges with their columns (and their controller, with
    *controller*; without, the raw flows go in through the bridge's management socket), new
    ports with their port and interface columns (what NodeOvsdb.plan commits for them).
    *strict*: a TenantnetError naming *bench* when a port would change or anything would
    go (the raw reference only adds); else those are left out."""
    args = []
    for br in after.bridges.values():
        old = before.bridges.get(br.name)
        if old is None:
            args += ["--", "add-br", br.name, "--", "set", "bridge", br.name,
                     f"datapath_type={br.datapath_type or 'netdev'}", "fail_mode=secure",
                     "protocols=OpenFlow13",
                     *_columns("other_config", {"datapath-id": naming.dpid_str(br.dpid),
                                                "disable-in-band": "true"}),
                     *_columns("external_ids", br.external_ids)]
            if controller and br.controller:
                args += ["--", "set-controller", br.name, br.controller]
        for port in br.ports.values():
            if old is not None and port.name in old.ports:
                if strict and old.ports[port.name] != port:
                    raise TenantnetError(f"{bench}: the raw reference does not change ports "
                                         f"({port.name})")
                continue
            args += ["--", "add-port", br.name, port.name]
            if port.tag is not None:
                args.append(f"tag={port.tag}")
            args += _columns("external_ids", port.external_ids)
            iface = [f"type={port.type}"] if port.type else []
            iface += _columns("options", port.options) + _columns("external_ids",
                                                                  port.external_ids)
            if iface:
                args += ["--", "set", "interface", port.name, *iface]
    for name, br in before.bridges.items() if strict else ():
        if name not in after.bridges or any(p not in after.bridges[name].ports
                                            for p in br.ports):
            raise TenantnetError(f"{bench}: the raw reference does not delete ({name})")
    return args[1:]


def flow_changes(before_topo, after_topo, node, bench, strict=True):
    """bridge -> the flows *after_topo* has on *node* and *before_topo* has not, in
    node_flows' order (names, not numbers: ovs-ofctl looks them up). *strict*: a
    TenantnetError naming *bench* when a flow would have to go."""
    old = node_flows(before_topo, node)
    out = {}
    for bridge, bf in node_flows(after_topo, node).items():
        have = set(old[bridge].flows) if bridge in old else set()
        if strict and have - set(bf.flows):
            raise TenantnetError(f"{bench}: the raw reference does not delete flows "
                                 f"({bridge})")
        added = list(dict.fromkeys(f for f in bf.flows if f not in have))
        if added:
            out[bridge] = added
    return out


class RawChange:
    """What *after_topo* adds to *before_topo* on *node*, for the raw tools: the vsctl
    transaction and one flow file per bridge (`<stem>-<bridge>.txt` in *files_dir*),
    prepared off the clock; run() is what is timed. *ovs*: the node's Open vSwitch (env,
    unix_remote); *timeout*: ovs-vsctl's, in seconds."""

    def __init__(self, before_topo, after_topo, node, ovs, files_dir, stem, bench,
                 timeout=20, controller=True, strict=True):
        self.node, self.ovs, self.bench, self.timeout = node, ovs, bench, timeout
        self.vsctl = vsctl_changes(node_state(before_topo, node, "netdev"),
                                   node_state(after_topo, node, "netdev"), bench,
                                   controller=controller, strict=strict)
        self.flows = flow_changes(before_topo, after_topo, node, bench, strict=strict)
        self.files = {}
        for bridge, flows in self.flows.items():
            path = os.path.join(files_dir, f"{stem}-{bridge}.txt")
            with open(path, "w") as fh:
                fh.writelines(ofctl_text(f, RAW_COOKIE) + "\n" for f in flows)
            self.files[bridge] = path

    def run(self):
        """The vsctl transaction (it returns once ovs-vswitchd applied it), then every
        bridge's bundle, side by side."""
        env = self.ovs.env
        if self.vsctl:
            check(subprocess.run(["ovs-vsctl", f"--db={self.ovs.unix_remote}",
                                  f"--timeout={self.timeout}", *self.vsctl], env=env,
                                 capture_output=True, text=True),
                  self.bench, f"ovs-vsctl on {self.node}")
        procs = [(bridge, subprocess.Popen(
            ["ovs-ofctl", "-O", "OpenFlow13", "--bundle", "add-flows", bridge, path], env=env,
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
            for bridge, path in self.files.items()]
        for bridge, proc in procs:
            out, err = proc.communicate()
            check(subprocess.CompletedProcess(proc.args, proc.returncode, out, err),
                  self.bench, f"ovs-ofctl --bundle add-flows {bridge} on {self.node}")
