"""Node VMs described before they are built (tenantnet.lab.vmnodes.plan): pure checks."""

import os

import pytest

from conftest import ROOT, two_tenant_config
from tenantnet.errors import LabError
from tenantnet.experiment.spec import load_spec, load_spec_text
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
    assert c1.security == "tls"                      # the default
    insecure = vmnodes.plan(topo("security: insecure"))
    assert {s.security for s in insecure} == {"insecure"}
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


def test_vm_ci_preset_is_vm_quick_with_a_smaller_grid_and_shorter_runs():
    """tests/test_vm_experiment.py runs vm-ci.yaml: the same lab, modes, protocols,
    baselines and tuning as vm-quick.yaml, only fewer grid points and shorter iperf runs."""
    quick, ci = (load_spec(os.path.join(ROOT, "configs", "experiments", f"{n}.yaml"))
                 for n in ("vm-quick", "vm-ci"))
    assert vars(ci.lab) == vars(quick.lab) and ci.modes == quick.modes
    assert ci.tuning == quick.tuning
    same = ("enabled", "networks", "repeats", "timeout_s", "probe_interval_ms", "prepare_vms")
    assert {k: vars(ci.reachability)[k] for k in same} == \
        {k: vars(quick.reachability)[k] for k in same}
    assert set(ci.reachability.instances) < set(quick.reachability.instances)
    diff = {k for k in vars(quick.bandwidth) if vars(ci.bandwidth)[k] != vars(quick.bandwidth)[k]}
    assert diff == {"duration_s"} and ci.bandwidth.duration_s < quick.bandwidth.duration_s


def test_node_vms_are_provisioned_by_the_vagrant_labs_node_sh(monkeypatch, tmp_path):
    """A node VM is prepared by vagrant/provision/node.sh itself (pushed with the source):
    the key it authorizes and, with TLS, the node's certificate directory are where the
    Vagrantfile puts a node's, and its arguments name the role, the addresses, the
    transport NIC's MAC, the lab's OVSDB port and the security mode."""
    import tarfile
    import io
    from types import SimpleNamespace
    from tenantnet.vm import source
    data, _ = source.source_tar()
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        names = set(tar.getnames())
    assert {"vagrant/provision/node.sh", "vagrant/tenantnet-node.service",
            "vagrant/tenantnet-ex-address@.service", "vagrant/90-tenantnet-ex.rules"} <= names
    assert not any(n.startswith(("vagrant/.cluster", "vagrant/.vagrant")) for n in names)
    key = tmp_path / "id_ed25519"
    (tmp_path / "id_ed25519.pub").write_text("ssh-ed25519 AAAA test\n")
    tls_dir = tmp_path / "pki-node"
    tls_dir.mkdir()
    for f in vmnodes.NODE_PKI_FILES:
        (tls_dir / f).write_text(f"-- {f} --\n")
    monkeypatch.setattr(source, "push_source", lambda v: calls.append(("push", {})))

    def provision(spec, tls=None):
        calls.clear()
        vm = SimpleNamespace(image=SimpleNamespace(ssh_key=str(key)),
                             nics=[SimpleNamespace(mac="52:54:00:aa:bb:cc"),
                                   SimpleNamespace(mac="52:54:00:12:34:56")],
                             ssh=lambda cmd, **kw: calls.append((cmd, kw)))
        vmnodes._provision(vm, spec, 6641, tls)
        assert calls[0][0] == "push"
        assert calls[1][0].endswith("/tmp/tenantnet-cluster/id_ed25519.pub")
        assert calls[1][1]["input"] == b"ssh-ed25519 AAAA test\n"
        argv = calls[-1][0]
        assert argv[:5] == ["env", "TENANTNET_SRC=/opt/tenantnet-src",
                            "TENANTNET_TRANSPORT_IF=eth1",
                            "TENANTNET_CLUSTER_FILES=/tmp/tenantnet-cluster",
                            "TENANTNET_OVSDB_PORT=6641"]
        assert argv[6:] == ["bash", "/opt/tenantnet-src/vagrant/provision/node.sh", spec.role,
                            spec.management_ip, spec.transport, "12:34:56"]
        assert calls[-1][1]["check"] is True
        return argv[5], calls[2:-1]

    calls = []
    # TLS (the default): the node's directory goes where node.sh installs it from
    spec = vmnodes.plan(topo())[0]
    security, uploads = provision(spec, str(tls_dir))
    assert security == "TENANTNET_SECURITY=tls"
    ((cmd, kw),) = uploads
    assert "tar -xf - -C /tmp/tenantnet-cluster/pki/node" in cmd
    with tarfile.open(fileobj=io.BytesIO(kw["input"])) as tar:
        members = {m.name: m for m in tar.getmembers()}
        assert sorted(members) == sorted(vmnodes.NODE_PKI_FILES)
        assert members["key.pem"].mode == 0o600
        assert tar.extractfile("cert.pem").read() == b"-- cert.pem --\n"
    with pytest.raises(LabError, match="no certificate directory"):
        provision(spec)
    # security: insecure: no certificates, and node.sh is told
    spec = vmnodes.plan(topo("security: insecure"))[0]
    security, uploads = provision(spec)
    assert security == "TENANTNET_SECURITY=insecure" and not uploads


def test_node_vms_get_their_identity_from_the_labs_pki(tmp_path):
    """Each TLS node VM's certificate directory in the lab's PKI (<state dir>/pki), made
    when missing and kept when present, naming its management address; none when
    insecure."""
    from types import SimpleNamespace
    from cryptography import x509
    from tenantnet import pki
    fabric = SimpleNamespace(state_dir=str(tmp_path))
    specs = vmnodes.plan(topo())
    dirs = vmnodes.node_identities(fabric, specs)
    assert set(dirs) == {"compute1", "compute2", "net1"}
    assert dirs["compute1"] == str(tmp_path / "pki" / "node" / "compute1")
    cert = pki.load_cert(str(tmp_path / "pki" / "node" / "compute1" / "cert.pem"))
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert "198.18.0.11" in {str(v) for v in san.get_values_for_type(x509.IPAddress)}
    before = (tmp_path / "pki" / "node" / "compute1" / "cert.pem").read_bytes()
    assert vmnodes.node_identities(fabric, specs) == dirs
    assert (tmp_path / "pki" / "node" / "compute1" / "cert.pem").read_bytes() == before
    assert vmnodes.node_identities(fabric, vmnodes.plan(topo("security: insecure"))) == {}
