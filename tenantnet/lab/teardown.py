"""`lab down`: remove everything the books record, in an order that lets nothing hold on
to anything else, from this process or another, after a crash too. Safe to repeat: what
could not be removed stays recorded, named in one error, for the next try."""

import contextlib
import os
import shutil

from tenantnet.errors import LabError, TenantnetError
from tenantnet.lab import hosts
from tenantnet.lab import netns as ns
from tenantnet.lab.nodes import EmulatedNode, node_of
from tenantnet.lab.nodes.base import stop_nodes
from tenantnet.lab.processes import stop_namespace_processes


def down(store, supervisor):
    """Tear down the lab of *store* (the caller holds store.txn()); *supervisor* ends
    its processes. LabError listing what is left, which stays recorded."""
    state = store.state
    # 1. processes: controllers, node VMs' QEMU (their records stay when one survives)
    problems = supervisor.stop_all()
    # 2. the nodes' daemons (emulated nodes' Open vSwitch), all at once: they would keep a
    #    deleted namespace alive; also those of OVS directories without a node record (a
    #    crash between mkdir and save). Then the nodes' files (directories, VM disks).
    nodes = {name: node_of(name, rec, store) for name, rec in state.nodes.items()}
    known = {n.rec.base_dir for n in nodes.values()}
    try:
        problems += stop_nodes([*nodes.values(), *EmulatedNode.orphans(store, known)])
    except Exception as exc:  # noqa: BLE001 -- keep tearing down
        problems.append(f"nodes: {exc}")
    # 3. endpoints on host nodes, on their machines; those inside node VMs went with them
    gone_with = {n.spec for n in nodes.values() if n.endpoints_go_with_node}
    for spec, name in list(state.remote_namespaces):
        if spec not in gone_with:
            try:
                host = hosts.spec_host(state, spec)
                ns.delete(name, executor=host)
                if ns.exists(name, executor=host):
                    problems.append(f"namespace {name} on {spec} could not be deleted")
                    continue
            except TenantnetError as exc:
                problems.append(f"namespace {name} on {spec}: {exc}")
                continue
        state.forget_namespace(name, spec)
        for ep, rec in list(state.endpoints.items()):
            if rec.exec == spec and rec.netns == name:
                del state.endpoints[ep]
    # 4. this machine's namespaces: endpoints, nodes, controller, fabric, then anything
    #    else recorded with our prefix
    mine = store.prefix + "-"
    order = [r.netns for r in state.endpoints.values() if r.local]
    order += [n.netns for n in nodes.values() if n.owns_netns]
    order += [r.netns for r in (state.controller, state.fabric) if r]
    order += [n for n in state.namespaces if n not in order]
    order = [n for n in order if n and n.startswith(mine)]
    # Whatever still runs in them (an `iperf3 -s -D` started with `lab exec`, say) would
    # outlive `ip netns del`: end it, by pid, and wait until it is gone.
    problems += stop_namespace_processes(order)
    for name in order:
        ns.delete(name)
        if ns.exists(name):
            problems.append(f"namespace {name} could not be deleted")
    if problems:
        store.save()
        raise LabError("lab down incomplete: " + "; ".join(problems))
    _remove_files(store)
    supervisor.forget_popens()
    store.reset()


def _remove_files(store):
    if store.state.owns_state_dir or store.default_dir:
        shutil.rmtree(store.state_dir, ignore_errors=True)
        return
    # a directory the caller made: remove our files, and the directory if then empty
    shutil.rmtree(os.path.join(store.state_dir, "nodes"), ignore_errors=True)
    for f in (store.state_file, store.state_file + ".tmp", store.lock_file):
        with contextlib.suppress(FileNotFoundError):
            os.remove(f)
    with contextlib.suppress(OSError):
        os.rmdir(store.state_dir)
