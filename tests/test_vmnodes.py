"""Node VMs described before they are built (tenantnet.lab.vmnodes.plan): pure checks."""

import pytest

from conftest import two_tenant_config
from tenantnet.errors import LabError
from tenantnet.experiment.spec import load_spec_text
from tenantnet.lab import vmnodes
from tenantnet.model import config


def topo(header="", n_compute=2):
    return config.load_text(two_tenant_config(n_compute=n_compute, header=header), "t.yaml")


def test_plan_puts_each_node_on_the_management_and_transport_networks():
    specs = {s.name: s for s in vmnodes.plan(topo("lab: {nodes: vm, vm_memory_mb: 1024}"))}
    assert set(specs) == {"compute1", "compute2", "net1"}
    c1 = specs["compute1"]
    assert (c1.role, c1.management, c1.transport) == ("compute", "198.18.0.11/24",
                                                      "198.19.0.11/24")
    assert c1.memory_mb == 1024 and specs["net1"].role == "network"
    # the fabric's own address (SSH to the VMs) is free: no node or controller has it
    assert c1.ssh_from == "198.18.0.254/24"
    assert len({s.ssh_from for s in specs.values()}) == 1


def test_fabric_address_skips_every_used_one():
    t = topo("controller: {management_ip: 198.18.0.254}")
    assert vmnodes.fabric_ssh_address(t) == "198.18.0.253/24"


def test_node_vms_have_their_transport_nic_as_eth1():
    text = two_tenant_config().replace("transport_ip: 198.19.0.11}",
                                       "transport_ip: 198.19.0.11, transport_interface: ens4}")
    t = config.load_text(text, "t.yaml")
    with pytest.raises(LabError, match="eth1.*compute1"):
        vmnodes.check_transport_interfaces(t)
    vmnodes.check_transport_interfaces(topo())


def test_experiment_spec_passes_the_node_kind_to_its_labs():
    spec = load_spec_text("name: v\nlab: {compute_nodes: 2, nodes: vm, vm_memory_mb: 512}\n",
                          "v.yaml")
    cfg = spec.lab_config("dnb", 1)
    assert cfg["lab"]["nodes"] == "vm" and cfg["lab"]["vm_memory_mb"] == 512
    assert config.load_text(spec.lab_config_text("dnb", 1), "gen.yaml").lab.nodes == "vm"
    with pytest.raises(Exception, match="lab.nodes"):
        load_spec_text("name: v\nlab: {nodes: docker}\n", "v.yaml")
