"""The lab with the longest and strangest names `check-config` accepts (conftest.LONG_*):
whatever the config validation takes must work in the lab, with every derived name (lab
endpoints, namespaces, interfaces) shortened deterministically and distinct."""

import json
import os

import pytest

from conftest import (LONG_COMPUTES, LONG_NETS, LONG_TENANTS, LONG_VMS, at_limit,
                      lab_prerequisites, longest_names_config, run_cli)
from tenantnet.lab.lab import Lab
from tenantnet.model import naming

pytestmark = [pytest.mark.lab,
              pytest.mark.skipif(lab_prerequisites() is not None, reason=str(lab_prerequisites()))]

PREFIX = os.environ.get("TENANTNET_NAMES_PREFIX", "tnnm")


def cli(*args, check=True):
    return run_cli(PREFIX, *args, check=check, timeout=300)


def ours():
    return sorted(n for n in os.listdir("/run/netns") if n.startswith(PREFIX + "-")) \
        if os.path.isdir("/run/netns") else []


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    lab = Lab(prefix=PREFIX)
    lab.down()                                   # a leftover from an interrupted run
    path = tmp_path_factory.mktemp("names") / "longest.yaml"
    path.write_text(longest_names_config())
    try:
        cli("check-config", str(path))
        # `lab up` returns (0) only once every VM answers its network's probe.
        proc = cli("lab", "up", "-c", str(path), "--timeout", "120", check=False)
        assert proc.returncode == 0, proc.stderr + proc.stdout
        lab.up_output = proc.stdout + proc.stderr
        yield lab
    finally:
        lab.down()
    assert not ours()
    assert not os.path.exists(lab.fabric.state_dir)


def test_every_vm_answered_before_lab_up_returned(lab):
    for vm in LONG_VMS:
        assert f"{vm} reachable" in lab.up_output


def test_lab_names_are_distinct_and_valid(lab):
    st = lab.status()
    assert set(st["vms"]) == set(LONG_VMS)
    assert len(st["probes"]) == 4 and all(len(p) <= naming.LAB_NAME_MAX for p in st["probes"])
    spaces = [st["controller"]["namespace"]] + [n["namespace"] for n in st["nodes"].values()] \
        + [e["namespace"] for e in (*st["vms"].values(), *st["probes"].values())]
    assert len(set(spaces)) == len(spaces) == 1 + 4 + 8 + 4
    assert set(spaces) | {f"{PREFIX}-fabric"} == set(ours())
    # the nodes named like the lab's own namespaces got namespaces of their own
    assert st["nodes"]["ctl"]["namespace"] != st["controller"]["namespace"]
    vm_x, node_x = LONG_VMS[-1], LONG_COMPUTES[-1]
    assert st["nodes"][node_x]["namespace"] != st["vms"][vm_x]["namespace"]
    assert all(n["ovs_running"] for n in st["nodes"].values())
    ports = [e["port"] for e in (*st["vms"].values(), *st["probes"].values())]
    assert len(set(ports)) == len(ports) and all(len(p) <= naming.IFNAMSIZ for p in ports)


def test_matrix_same_network_reaches_nothing_else_does(lab):
    m = lab.matrix()
    assert len(m["names"]) == 8 + 4
    same = [r for r in m["rows"] if r["same_network"]]
    cross = [r for r in m["rows"] if not r["same_network"]]
    assert len(same) == 4 * 3 * 2 and len(cross) == 12 * 11 - 4 * 3 * 2
    for r in same:
        assert r["ping"] and r["unicast"] and r["broadcast"], r
    for r in cross:
        assert not r["unicast"] and not r["broadcast"], r


def test_runtime_vm_with_a_long_name(lab):
    name = at_limit("vm_", "9")
    net = f"{LONG_TENANTS[1]}/{LONG_NETS[1]}"           # the CNB network
    rec = json.loads(cli("vm", "add", name, "--network", net, "--node", LONG_COMPUTES[2],
                         "--json").stdout)
    try:
        topo = lab.topology_from_api()
        lab.wait_reachable(topo, [name], timeout=30)
        netns = lab.fabric.endpoint_netns(name)
        assert netns == naming.endpoint_netns(PREFIX, "vm", name) and netns in ours()
        assert lab.ping(name, topo.vm(LONG_VMS[-1]).ip)
    finally:
        cli("vm", "del", name)
    assert rec["name"] == name and netns not in ours()

