"""Config validation: every class of bad input gets a message naming file, key and problem."""

import textwrap

import pytest

from conftest import two_tenant_config
from tenantnet.model import config
from tenantnet.errors import ConfigError

BASE = two_tenant_config()


def load(text, source="test.yaml"):
    return config.load_text(textwrap.dedent(text), source=source)


def error_of(text):
    with pytest.raises(ConfigError) as exc:
        load(text)
    return exc.value


def test_base_config_is_valid_and_allows_overlapping_cidrs():
    topo = load(BASE + "  - {name: app1, network: globex/app, node: compute1}\n")
    vms = topo.vms()
    assert vms["web1"].ip == vms["app1"].ip  # same address, different tenants: allowed
    assert vms["web1"].mac != vms["app1"].mac


def test_shipped_lab_configs_are_valid(config_path):
    for name in ("two-tenants.yaml", "minimal.yaml"):
        topo = config.load_file(config_path(name))
        assert topo.vms()


@pytest.mark.parametrize("snippet,key,words", [
    ("  - {name: web2, network: acme/web, node: compute9}\n", "vms[1].node", "unknown node 'compute9'"),
    ("  - {name: web2, network: acme/nope, node: compute1}\n", "vms[1].network", "unknown network"),
    ("  - {name: web2, network: acme/web, node: net1}\n", "vms[1].node", "network node"),
    ("  - {name: web2, network: acme/web, node: compute1, ip: 10.0.1.5}\n", "vms[1].ip",
     "outside acme/web's CIDR"),
    ("  - {name: web2, network: acme/web, node: compute1, ip: 10.0.0.255}\n", "vms[1].ip",
     "not a host address"),
    ("  - {name: web2, network: acme/web, node: compute1, ip: 10.0.0.1}\n", "vms[1].ip",
     "reserved for acme/web's probe"),
    ("  - {name: web2, network: acme/web, node: compute1, ip: banana}\n", "vms[1].ip",
     "not an IPv4 address"),
    ("  - {name: web1, network: acme/web, node: compute2}\n", "vms[1].name", "duplicate VM name"),
    ("  - {name: web2, network: acme/web, node: compute1, colour: red}\n", "vms[1].colour",
     "unknown key"),
    ("  - {name: " + "w" * 40 + ", network: acme/web, node: compute1}\n", "vms[1].name",
     "too long"),
    ("  - {name: Web2, network: acme/web, node: compute1}\n", "vms[1].name", "lowercase"),
    ("  - {name: web2, network: acme/web, node: compute1, mac: 'zz:00:00:00:00:01'}\n",
     "vms[1].mac", "not a MAC"),
    ("  - {name: web2, network: acme/web, node: compute1, mac: '01:00:00:00:00:01'}\n",
     "vms[1].mac", "multicast"),
    ("  - {name: web2, network: acme/web, node: compute1, mac: '00:00:00:00:00:00'}\n",
     "vms[1].mac", "is the all-zero MAC"),
    ("  - {name: web2, network: acme/web, node: compute1, mac: 'ff:ff:ff:ff:ff:ff'}\n",
     "vms[1].mac", "is the broadcast MAC"),
    ("  - {name: web2, network: acme/web, node: compute1, mac: 'FF:FF:FF:FF:FF:FF'}\n",
     "vms[1].mac", "is the broadcast MAC"),
    ("  - {name: web2, network: acme/web, node: compute1, mac: '33:33:00:00:00:01'}\n",
     "vms[1].mac", "multicast"),
])
def test_bad_vm_entries(snippet, key, words):
    err = error_of(BASE + snippet)
    assert err.source == "test.yaml"
    assert err.key == key
    assert words in err.problem
    assert str(err).startswith(f"test.yaml: {key}: ")


@pytest.mark.parametrize("mac", ["00:00:00:00:00:01", "fe:ff:ff:ff:ff:ff", "02:00:00:00:00:00",
                                 "AA:BB:CC:DD:EE:FF"])
def test_assignable_macs_are_taken(mac):
    text = BASE.replace("node: compute1}", f"node: compute1, mac: '{mac}'}}")
    assert config.load_text(text, "test.yaml").vm("web1").mac == mac.lower()


def test_duplicate_mac():
    text = BASE.replace("node: compute1}", "node: compute1, mac: '02:00:00:00:00:07'}")
    err = error_of(text + "  - {name: web2, network: acme/web, node: compute2, "
                          "mac: '02:00:00:00:00:07'}\n")
    assert err.key == "vms[1].mac" and "already used by web1" in err.problem


def test_duplicate_ip_in_network():
    text = BASE.replace("node: compute1}", "node: compute1, ip: 10.0.0.9}")
    err = error_of(text + "  - {name: web2, network: acme/web, node: compute2, ip: 10.0.0.9}\n")
    assert err.key == "vms[1].ip" and "already used by web1" in err.problem


def test_segmentation_id_clash():
    err = error_of(BASE.replace("segmentation_id: 200", "segmentation_id: 100"))
    assert err.key == "tenants[1].networks[0].segmentation_id"
    assert "already used by acme/web" in err.problem


def test_segmentation_id_range():
    err = error_of(BASE.replace("segmentation_id: 200", "segmentation_id: 4294967296"))
    assert "32-bit GRE key" in err.problem


def test_transport_cidr_overlap():
    err = error_of(BASE.replace("198.19.200.0/24", "198.19.100.128/25"))
    assert err.key == "tenants[1].networks[0].transport_cidr" and "overlaps" in err.problem


def test_malformed_yaml_names_line():
    err = error_of("nodes: [\n  {name: a\n")
    assert err.key == "" and "malformed YAML" in err.problem and "line" in err.problem


def test_unknown_top_level_key():
    err = error_of(BASE + "colour: blue\n")
    assert err.key == "colour" and "unknown key" in err.problem


def test_unknown_node_role_and_missing_network_node():
    err = error_of(BASE.replace("role: network", "role: router"))
    assert err.key == "nodes[2].role"
    err = error_of(BASE.replace("role: network", "role: compute"))
    assert err.key == "nodes" and "role 'network'" in err.problem


def test_duplicate_node_address():
    err = error_of(BASE.replace("198.18.0.12", "198.18.0.11"))
    assert err.key == "nodes[1].management_ip" and "duplicate" in err.problem


def test_wrong_type():
    err = error_of(BASE.replace("segmentation_id: 100", "segmentation_id: hundred"))
    assert err.key == "tenants[0].networks[0].segmentation_id"
    assert "expected an integer" in err.problem


def test_boolean_is_not_an_integer():
    err = error_of(BASE.replace("segmentation_id: 100", "segmentation_id: yes"))
    assert "expected an integer" in err.problem


def test_unsupported_mode():
    err = error_of("mode: magic\n" + BASE)
    assert err.key == "mode" and "unknown mode" in err.problem


def test_missing_file():
    with pytest.raises(ConfigError) as exc:
        config.load_file("/nonexistent/x.yaml")
    assert "cannot read file" in str(exc.value)


def test_tuning_is_validated_and_kept():
    topo = load(BASE + "tuning: {vm_mtu: 1450, tx_checksum_offload: true, "
                       "neigh_gc_thresh: [1024, 4096, 8192]}\n")
    assert topo.tuning.as_dict() == {"vm_mtu": 1450, "tx_checksum_offload": True,
                                     "neigh_gc_thresh": [1024, 4096, 8192]}
    err = error_of(BASE + "tuning: {vm_mtu: 100}\n")
    assert err.key == "tuning.vm_mtu"


def test_allocation_skips_probe_and_used_addresses():
    topo = load(BASE + "  - {name: web2, network: acme/web, node: compute2}\n")
    assert topo.vm("web1").ip == "10.0.0.2"   # 10.0.0.1 is the probe's
    assert topo.vm("web2").ip == "10.0.0.3"
    assert topo.probes("acme/web")[0].ip == "10.0.0.1"


def test_api_spec_validation_uses_same_messages():
    topo = load(BASE)
    with pytest.raises(ConfigError) as exc:
        config.vm_from_spec(topo, {"name": "x1", "network": "acme/web", "node": "nowhere"},
                            "API request", "")
    assert str(exc.value).startswith("API request: node: unknown node 'nowhere'")


def test_cnb_network_needs_no_transport_cidr_but_dnb_does():
    text = BASE.replace("{name: app, segmentation_id: 200, cidr: 10.0.0.0/24, "
                        "transport_cidr: 198.19.200.0/24}",
                        "{name: app, mode: cnb, segmentation_id: 200, cidr: 10.0.0.0/24}")
    assert text != BASE
    topo = load(text)
    assert topo.mode_of("globex/app") == "cnb" and topo.mode_of("acme/web") == "dnb"
    err = error_of(text.replace("mode: cnb, ", ""))
    assert err.key == "tenants[1].networks[0].transport_cidr" and "missing" in err.problem


def test_lab_node_kind_and_vm_memory():
    base = two_tenant_config()
    topo = config.load_text("lab: {nodes: vm, vm_memory_mb: 1024}\n" + base, "t.yaml")
    assert topo.lab.nodes == "vm" and topo.lab.vm_memory_mb == 1024
    assert config.load_text(base, "t.yaml").lab.nodes == "emulated"
    with pytest.raises(ConfigError, match=r"t.yaml: lab.nodes: 'qemu': expected one of "
                                          r"emulated, vm"):
        config.load_text("lab: {nodes: qemu}\n" + base, "t.yaml")
    with pytest.raises(ConfigError, match=r"lab.vm_memory_mb: 64: expected 384 to 16384"):
        config.load_text("lab: {nodes: vm, vm_memory_mb: 64}\n" + base, "t.yaml")
