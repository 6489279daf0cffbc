"""The same-run ceilings when the lab's nodes are VMs (``lab: {nodes: vm}``): the same path
without tenantnet, measured on the lab's own node VMs (``run_vm_baselines(lab, spec,
prefix)``), iperf3 over

- ``vm-transport``: namespace ``<prefix>-tr-a`` in the network node VM and ``<prefix>-tr-b``
  in a compute node VM, each holding a VLAN device (id ``baseline.TRANSPORT_VLAN``) on its
  VM's transport NIC: VM to VM over the plain transport network, no Open vSwitch on the way
  (the kernel hands tagged frames to the VLAN device before the NIC's Open vSwitch
  ``rx_handler`` sees them). The lab's probe and VM sit on the same two node VMs.
- ``vm-ovs-flat``: namespaces ``<prefix>-of-a`` and ``<prefix>-of-b`` in the compute node VM
  on one plain bridge ``<prefix>-flat`` of that VM's kernel-datapath Open vSwitch
  (``datapath_type=system``, one NORMAL flow, no controller; tenantnet leaves bridges it does
  not own alone).

Endpoints, rows and modes are as in ``baseline`` (mode "vm-transport" / "vm-ovs-flat").
Addresses 10.254.2.0/24 and 10.254.3.0/24, only inside these namespaces. Everything is
removed from every node VM afterwards (``cleanup_vm_baselines``), also on errors and Ctrl-C.
"""

import shlex

from tenantnet.errors import TenantnetError
from tenantnet.experiment.baseline import (TRANSPORT_VLAN, VM_MODES, BaselineError,
                                           check_prefix, configure_endpoint, measure,
                                           run_settings, wait_ping)
from tenantnet.lab import netns as ns

VM_NETS = {"vm-transport": ("10.254.2.1", "10.254.2.2", 24),
           "vm-ovs-flat": ("10.254.3.1", "10.254.3.2", 24)}


def vm_names(prefix):
    """Every name a VM baseline run with *prefix* uses inside the node VMs."""
    return {"vm-transport": (f"{prefix}-tr-a", f"{prefix}-tr-b"),
            "vm-ovs-flat": (f"{prefix}-of-a", f"{prefix}-of-b"),
            "bridge": f"{prefix}-flat", "vlan": f"{prefix}-vl",
            "ports": (f"{prefix}-pa", f"{prefix}-pb")}


def vm_nodes(lab):
    """(probe side, VM side) of the VM baselines: the lab's first network node and first
    compute node, where the bandwidth part puts its probe and its first VM."""
    topo = lab.topology()
    nets = [n.name for n in topo.nodes() if n.role == "network"]
    computes = [n.name for n in topo.nodes() if n.role == "compute"]
    if not nets or not computes:
        raise BaselineError("VM baselines need a network node and a compute node")
    for node in (nets[0], computes[0]):
        if lab.fabric.node_kind(node) != "vm":
            raise BaselineError(f"node {node} is not a node VM ({lab.fabric.node_kind(node)}): "
                                "the VM baselines run on node VMs only")
    return nets[0], computes[0]


def _vm_cleanup_script(prefix):
    n = vm_names(prefix)
    spaces = " ".join(shlex.quote(x) for x in (*n["vm-transport"], *n["vm-ovs-flat"]))
    links = " ".join(shlex.quote(x) for x in (n["vlan"], *n["ports"]))
    br = shlex.quote(n["bridge"])
    return (f"for n in {spaces}; do if [ -e /run/netns/$n ]; then ip netns del $n && "
            f"echo $n; fi; done; "
            f"if ovs-vsctl --timeout=30 br-exists {br}; then "
            f"ovs-vsctl --timeout=30 del-br {br} && echo {br}; fi; "
            f"for l in {links}; do if ip link show dev $l >/dev/null 2>&1; then "
            f"ip link del $l && echo $l; fi; done; true")


def cleanup_vm_baselines(lab, prefix):
    """Remove whatever a VM baseline run with *prefix* left on any node VM of *lab* (by
    exact names; safe to repeat). Returns what was removed, as 'node: name'."""
    check_prefix(prefix)
    removed, problems = [], []
    script = _vm_cleanup_script(prefix)
    fabric = lab.fabric
    for node in fabric.node_names():
        if fabric.node_kind(node) != "vm":
            continue
        try:
            proc = fabric.node_exec(node, ["sh", "-c", script], timeout=90)
        except TenantnetError as exc:
            problems.append(f"{node}: {exc}")
            continue
        if proc.returncode != 0:
            problems.append(f"{node}: {(proc.stderr or proc.stdout).strip()[:200]}")
        removed += [f"{node}: {x}" for x in proc.stdout.split()]
    if problems:
        raise BaselineError("VM baselines: clean-up failed on " + "; ".join(problems))
    return removed


def _build_vm_transport(prefix, ends, ifname, mtu, tx_offload):
    """*ends*: [(node, executor), (node, executor)] for sides a and b."""
    n = vm_names(prefix)
    ip_a, ip_b, plen = VM_NETS["vm-transport"]
    out = []
    for (node, ex), netns, ip in zip(ends, n["vm-transport"], (ip_a, ip_b)):
        ns.add(netns, executor=ex)
        ns.run(["ip", "link", "add", "link", ifname, "name", n["vlan"], "type", "vlan", "id",
                str(TRANSPORT_VLAN)], executor=ex)
        ns.run(["ip", "link", "set", n["vlan"], "netns", netns], executor=ex)
        # a VLAN device inherits its NIC's flags, and the node's transport NIC is NOARP
        # (its address lives on br-tun): this end needs ARP
        ns.run(["ip", "link", "set", n["vlan"], "name", "eth0", "arp", "on"], netns=netns,
               executor=ex)
        configure_endpoint(netns, "eth0", ip, plen, mtu, tx_offload, executor=ex)
        out.append((ns.executor_in(netns, base=ex), ip))
    wait_ping(n["vm-transport"][0], ip_b, timeout=30, executor=ends[0][1],
              where=f" on {ends[0][0]}")
    return out


def _build_vm_flat(prefix, node, ex, mtu, tx_offload):
    n = vm_names(prefix)
    br = n["bridge"]
    ip_a, ip_b, plen = VM_NETS["vm-ovs-flat"]

    def run(cmd):
        return ns.run(cmd, executor=ex, timeout=90)
    run(["ovs-vsctl", "--timeout=30", "add-br", br, "--", "set", "bridge", br,
         "datapath_type=system", "fail_mode=secure", f"external_ids:tenantnet-baseline={prefix}"])
    out = []
    for netns, port, ip in zip(n["vm-ovs-flat"], n["ports"], (ip_a, ip_b)):
        ns.add(netns, executor=ex)
        run(["ip", "link", "add", port, "type", "veth", "peer", "name", "eth0", "netns", netns])
        run(["ip", "link", "set", port, "up"])
        run(["ovs-vsctl", "--timeout=30", "add-port", br, port])
        configure_endpoint(netns, "eth0", ip, plen, mtu, tx_offload, executor=ex)
        out.append((ns.executor_in(netns, base=ex), ip))
    run(["ovs-ofctl", "del-flows", br])
    run(["ovs-ofctl", "add-flow", br, "table=0,priority=0,actions=NORMAL"])
    wait_ping(n["vm-ovs-flat"][0], ip_b, timeout=30, executor=ex, where=f" on {node}")
    flows = [f.strip() for f in run(["ovs-ofctl", "dump-flows", br, "--no-stats"]).stdout
             .splitlines() if "actions=" in f]
    if len(flows) != 1 or "actions=NORMAL" not in flows[0]:
        raise BaselineError(f"{br} on {node}: expected one NORMAL flow, found {flows}")
    dp = run(["ovs-vsctl", "get", "bridge", br, "datapath_type"]).stdout.strip().strip('"')
    if dp != "system":
        raise BaselineError(f"{br} on {node}: datapath_type is {dp!r}, not system")
    return out


def run_vm_baselines(lab, spec, prefix, progress=None, tuning=None, modes=VM_MODES,
                     nodes=None):
    """The VM baselines (module docstring) on *lab*, whose nodes are VMs and which has no
    tenant VM running traffic. *nodes*: (probe side, VM side) node names (default
    vm_nodes(lab)). Returns the rows (mode "vm-transport" / "vm-ovs-flat"); always cleans
    up, even on Ctrl-C."""
    from tenantnet.lab.vmnodes import TRANSPORT_IF
    say = progress or (lambda _text: None)
    cfg, mtu, tx_offload = run_settings(prefix, spec, tuning, modes, VM_MODES,
                                        what="VM baseline")
    a_node, b_node = nodes or vm_nodes(lab)
    fabric = lab.fabric
    ends = [(a_node, fabric.node_executor(a_node)), (b_node, fabric.node_executor(b_node))]
    left = cleanup_vm_baselines(lab, prefix)
    if left:
        say(f"VM baselines: removed leftovers {', '.join(left)}")
    rows = []
    setting = f"mtu {mtu}, tx offload {'on' if tx_offload else 'off'}"
    for mode in modes:
        try:
            if mode == "vm-transport":
                say(f"baseline vm-transport: {a_node} <-> {b_node} over the plain "
                    f"transport network (VLAN {TRANSPORT_VLAN} on {TRANSPORT_IF}, {setting})")
                a, b = _build_vm_transport(prefix, ends, TRANSPORT_IF, mtu, tx_offload)
                where = f"{a_node}<->{b_node}"
            else:
                say(f"baseline vm-ovs-flat: bridge {vm_names(prefix)['bridge']} "
                    f"(kernel datapath, NORMAL) in {b_node} ({setting})")
                a, b = _build_vm_flat(prefix, b_node, ends[1][1], mtu, tx_offload)
                where = b_node
            label = vm_names(prefix)[mode][1]
            for row in measure(mode, a, b, cfg, mtu, tx_offload, progress, label=label):
                row["node"] = where
                rows.append(row)
        except BaseException:
            try:
                cleanup_vm_baselines(lab, prefix)
            except TenantnetError:
                pass                     # never mask the original error
            raise
        cleanup_vm_baselines(lab, prefix)
    return rows
