"""tenantnet.lab.remote (`tenantnet cluster`) end to end, with a one-machine lab standing in
for the Vagrant machines: its nodes are recorded as *host nodes* (reached through an
executor, their Open vSwitch checked through the OVSDB remote the controller uses), its
controller's API is the cluster's, and VMs placed at runtime get their namespaces on their
nodes, then reach each other within their network and never across tenants.

Needs root and Open vSwitch; skipped otherwise. Prefix tnf, temporary state dirs."""

import os
import shutil
import sys
import tempfile

import pytest

from conftest import lab_prerequisites, two_tenant_config
from tenantnet.errors import LabError
from tenantnet.lab import netns as ns
from tenantnet.lab.lab import Lab
from tenantnet.lab.remote import RemoteLab

pytestmark = [pytest.mark.lab, pytest.mark.integration,
              pytest.mark.skipif(lab_prerequisites() is not None, reason=str(lab_prerequisites()))]

PREFIX = "tnf"


@pytest.fixture(scope="module")
def machines():
    """The "machines": a one-machine lab with 2 compute nodes, net1, a controller, no VMs."""
    base = tempfile.mkdtemp(prefix="tnf-rl-", dir="/tmp")
    cfg = os.path.join(base, "cluster.yaml")
    with open(cfg, "w") as fh:
        # plain TCP: the "hosts" are emulated nodes whose Open vSwitch is private to their
        # namespace, reached over the management network; cluster up with TLS runs on real
        # machines in test_vagrant_lab.py
        fh.write(two_tenant_config(2, (), header="security: insecure"))
    lab = Lab(prefix=PREFIX, state_dir=os.path.join(base, "m"))
    try:
        lab.up(cfg, timeout=120)
        yield lab, cfg, base
    finally:
        lab.down()
        shutil.rmtree(base, ignore_errors=True)


def _cluster(machines, **kw):
    lab, cfg, base = machines
    cluster = RemoteLab(prefix=PREFIX, state_dir=os.path.join(base, "c"))
    nodes = lab.fabric.node_names()
    cluster.up(cfg, api=f"unix:{lab.api_socket}", timeout=60, python=sys.executable,
               node_exec={n: "local" for n in nodes},
               node_netns={n: lab.fabric.node_netns(n) for n in nodes}, **kw)
    return cluster


def test_cluster_up_places_vms_and_isolates_tenants(machines):
    lab = machines[0]
    cluster = _cluster(machines)
    try:
        st = cluster.status()
        assert set(st["nodes"]) == {"compute1", "compute2", "net1"}
        assert all({"br-int", "br-tun"} <= set(n["bridges"]) for n in st["nodes"].values())
        assert st["controller"]["api_ok"] and st["controller"]["alive"]
        assert st["controller"]["api"] == f"unix:{lab.api_socket}"
        assert cluster.fabric.node_kind("compute1") == "host"

        for name, net, node in (("web1", "acme/web", "compute1"), ("web2", "acme/web", "compute2"),
                                ("app1", "globex/app", "compute1"),
                                ("app2", "globex/app", "compute2")):
            rec = cluster.add_vm(name, net, node)
            assert rec["node"] == node and rec["tuning_applied"]["mtu"] == 1400
        topo = cluster.topology_from_api()
        cluster.wait_reachable(topo, ["web1", "web2", "app1", "app2"], timeout=60)
        # the namespaces are the cluster's, on the nodes' host; the machines lab has none
        assert set(cluster.fabric.state.endpoints) >= {"web1", "web2", "app1", "app2"}
        assert not lab.fabric.state.endpoints
        assert ns.link_exists("eth0", netns=f"{PREFIX}-v-web1")

        m = cluster.matrix(listen=1.5)
        bad = [r for r in m["rows"] if r["unicast"] != r["same_network"]
               or (r["same_network"] and not r["ping"])]
        assert not bad, bad
        assert any(r["same_network"] and r["src"] == "web1" and r["dst"] == "web2"
                   for r in m["rows"])

        cluster.del_vm("app2")
        assert not cluster.fabric.has_endpoint("app2")
        assert not ns.exists(f"{PREFIX}-v-app2")
    finally:
        cluster.down()
    for name in ("web1", "web2", "app1"):
        assert not ns.exists(f"{PREFIX}-v-{name}")
    # the "machines" are untouched by the cluster's teardown
    assert set(lab.fabric.status()["nodes"]["compute1"]["bridges"]) >= {"br-int", "br-tun"}
    assert not cluster.is_up()


def test_cluster_up_names_the_host_it_cannot_use(machines):
    lab, cfg, base = machines
    cluster = RemoteLab(prefix=PREFIX, state_dir=os.path.join(base, "bad"))
    nodes = lab.fabric.node_names()
    netns = {n: lab.fabric.node_netns(n) for n in nodes}
    netns["compute2"] = "tnf-no-such-node"
    with pytest.raises(LabError, match=r"cannot use every host: compute2 \(local\)"):
        cluster.up(cfg, api=f"unix:{lab.api_socket}", timeout=10, python=sys.executable,
                   node_exec={n: "local" for n in nodes}, node_netns=netns)
    assert not cluster.is_up() and not cluster.fabric.node_names()
    with pytest.raises(LabError, match="unknown nodes"):
        cluster.up(cfg, node_exec={"compute9": "local"})
