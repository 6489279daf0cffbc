"""Node bootstrap (tenantnet.node.bootstrap, `tenantnet node bootstrap`) against a real private
Open vSwitch in its own namespace: bridges, uplink, flows, manager, system-id, addresses,
an idempotent second run, and a clear error for every unmet prerequisite.

Needs root and Open vSwitch (userspace datapath); skipped otherwise. Namespaces: tnf-boot*.
"""

import json
import os
import shutil
import subprocess
import sys
import tempfile

import pytest

from conftest import ROOT, lab_prerequisites
from tenantnet.node.bootstrap import ARP_SYSCTLS, BootstrapError, bootstrap_node
from tenantnet.node.exaddresses import apply_endpoint_addresses
from tenantnet.node.hostops import ExecHost
from tenantnet.node import tls
from tenantnet.node.hostexec import NetnsExecutor
from tenantnet.lab import netns as ns
from tenantnet.lab.ovs import OvsInstance
from tenantnet import pki

pytestmark = [pytest.mark.lab,
              pytest.mark.skipif(lab_prerequisites() is not None, reason=str(lab_prerequisites()))]

NETNS = "tnf-boot"
MGMT_IP = "198.18.77.2"
TRANSPORT = "198.19.77.2/24"


def _setup_ns(netns):
    ns.delete(netns)
    ns.add(netns)
    for cmd in (["ip", "link", "add", "mgmt", "type", "veth", "peer", "name", "mgmt-peer"],
                ["ip", "link", "set", "mgmt-peer", "up"],
                ["ip", "addr", "add", f"{MGMT_IP}/24", "dev", "mgmt"],
                ["ip", "link", "set", "mgmt", "up"],
                ["ip", "link", "add", "eth1", "type", "veth", "peer", "name", "eth1-peer"],
                ["ip", "link", "set", "eth1-peer", "up"]):
        ns.run(cmd, netns=netns)


@pytest.fixture
def node():
    base = tempfile.mkdtemp(prefix="tnf-boot-", dir="/tmp")
    ovs = OvsInstance(os.path.join(base, "ovs"), netns=NETNS)
    try:
        _setup_ns(NETNS)
        ovs.start()
        yield ovs, ExecHost(NetnsExecutor(NETNS))
    finally:
        ovs.stop()
        ns.delete(NETNS)
        shutil.rmtree(base, ignore_errors=True)


def _boot(ovs, host, role="compute", **kw):
    kw.setdefault("system_id", "tnf-node1")
    return bootstrap_node(ovs.vsctl, role, "eth1", TRANSPORT, MGMT_IP, datapath="netdev",
                          host=host, ofctl=ovs.ofctl, **kw)


def _get(ovs, *args):
    return ovs.vsctl("get", *args).stdout.strip().strip('"')


def test_bootstrap_creates_everything_then_changes_nothing(node):
    ovs, host = node
    steps = _boot(ovs, host, role="network")
    assert any(s.changed for s in steps)
    assert set(ovs.vsctl("list-br").stdout.split()) == {"br-int", "br-tun", "br-ex"}
    for br, kind in (("br-int", "common-int"), ("br-tun", "common-tun"), ("br-ex", "common-ex")):
        assert _get(ovs, "bridge", br, "datapath_type") == "netdev"
        assert _get(ovs, "bridge", br, "external_ids:tenantnet-kind") == kind
        assert _get(ovs, "bridge", br, "external_ids:tenantnet-owner") == "bootstrap"
    assert ovs.vsctl("port-to-br", "eth1").stdout.strip() == "br-tun"
    assert ovs.vsctl("get-fail-mode", "br-tun").stdout.strip() == "standalone"
    flows = ovs.ofctl("dump-flows", "br-tun").stdout
    assert "priority=0 actions=NORMAL" in flows
    # identity
    assert _get(ovs, "Open_vSwitch", ".", "external_ids:system-id") == "tnf-node1"
    assert _get(ovs, "Open_vSwitch", ".", "external_ids:tenantnet-role") == "network"
    assert _get(ovs, "Open_vSwitch", ".", "external_ids:tenantnet-transport-ip") == TRANSPORT
    # OVSDB open to the controller, through the manager (ovsdb-server serves manager_options)
    assert ovs.vsctl("get-manager").stdout.split() == [f"ptcp:6640:{MGMT_IP}"]
    assert _get(ovs, "Manager", f"ptcp:6640:{MGMT_IP}", "inactivity_probe") == \
        str(tls.MANAGER_PROBE_MS)
    res = ns.run(["ovs-vsctl", f"--db=tcp:{MGMT_IP}:6640", "--timeout=10", "list-br"],
                 netns=NETNS, check=False)
    assert res.returncode == 0 and "br-tun" in res.stdout.split(), res.stderr
    # host side: transport IP on br-tun's LOCAL port, uplink up without ARP, sysctls
    assert TRANSPORT in host.addresses("br-tun")
    link = ns.run(["ip", "-o", "link", "show", "eth1"], netns=NETNS).stdout
    assert "NOARP" in link and ",UP" in link
    for item in ARP_SYSCTLS:
        key, _, value = item.partition("=")
        assert ns.run(["sysctl", "-n", key], netns=NETNS).stdout.strip() == value

    again = _boot(ovs, host, role="network")
    assert [s for s in again if s.changed] == [], "\n".join(map(str, again))
    assert ovs.vsctl("get-manager").stdout.split() == [f"ptcp:6640:{MGMT_IP}"]
    assert ovs.vsctl("list-ports", "br-tun").stdout.split() == ["eth1"]


def test_missing_transport_interface_is_a_clear_error(node):
    ovs, host = node
    with pytest.raises(BootstrapError, match=r"transport interface eth9 does not exist"):
        bootstrap_node(ovs.vsctl, "compute", "eth9", TRANSPORT, MGMT_IP, datapath="netdev",
                       host=host, ofctl=ovs.ofctl)
    assert ovs.vsctl("list-br").stdout.split() == []           # nothing was changed
    # the same check through a plain link_exists callable (no host object)
    with pytest.raises(BootstrapError, match="does not exist"):
        bootstrap_node(ovs.vsctl, "compute", "eth9", TRANSPORT, MGMT_IP, datapath="netdev",
                       link_exists=lambda ifname: False)


def test_prerequisite_errors(node, tmp_path):
    ovs, host = node
    with pytest.raises(BootstrapError, match="openvswitch kernel module"):
        bootstrap_node(ovs.vsctl, "compute", "eth1", TRANSPORT, MGMT_IP, datapath="system",
                       host=host, module_dir=str(tmp_path))
    with pytest.raises(BootstrapError, match="carries the management address"):
        bootstrap_node(ovs.vsctl, "compute", "mgmt", TRANSPORT, MGMT_IP, datapath="netdev",
                       host=host)
    ovs.vsctl("add-br", "br-other", "--", "set", "bridge", "br-other", "datapath_type=netdev",
              "--", "add-port", "br-other", "eth1")
    with pytest.raises(BootstrapError, match="already a port of bridge br-other"):
        _boot(ovs, host)
    ovs.vsctl("del-br", "br-other")
    for bad, match in ((dict(role="storage"), "role"), (dict(transport="198.19.77.2"), "prefix"),
                       (dict(mgmt="198.19.77.2"), "both")):
        with pytest.raises(BootstrapError, match=match):
            bootstrap_node(ovs.vsctl, bad.get("role", "compute"), "eth1",
                           bad.get("transport", TRANSPORT), bad.get("mgmt", MGMT_IP),
                           datapath="netdev", host=host)
    unreachable = OvsInstance(str(tmp_path / "none"))
    with pytest.raises(BootstrapError, match="Open vSwitch is not reachable"):
        bootstrap_node(lambda *a: unreachable.vsctl("--timeout=2", *a), "compute", "eth1",
                       TRANSPORT, MGMT_IP, datapath="netdev", host=host)


def test_rerun_leaves_a_controller_managed_br_tun_alone_and_applies_ex_addresses(node):
    ovs, host = node
    _boot(ovs, host)
    # the controller takes br-tun over: secure, its own controller and priority-0 flow
    ovs.vsctl("set-controller", "br-tun", "tcp:127.0.0.1:1", "--",
              "set-fail-mode", "br-tun", "secure")
    ovs.ofctl("add-flow", "br-tun", "table=0,priority=0,actions=drop")
    # ... and an ex- endpoint whose kernel address is gone (as after a reboot)
    ovs.vsctl("add-port", "br-tun", "ex-tnf", "--", "set", "interface", "ex-tnf",
              "type=internal", "--", "set", "port", "ex-tnf",
              "external_ids:tenantnet-kind=ex", "external_ids:tenantnet-address=198.19.100.2/24")
    steps = _boot(ovs, host)
    assert ovs.vsctl("get-fail-mode", "br-tun").stdout.strip() == "secure"
    assert "actions=NORMAL" not in ovs.ofctl("dump-flows", "br-tun").stdout
    assert any("ex- endpoint" in s.what and "ex-tnf 198.19.100.2/24" in s.detail for s in steps)
    assert "198.19.100.2/24" in host.addresses("ex-tnf")
    assert [s for s in _boot(ovs, host) if s.changed] == []      # and then nothing to do
    ns.run(["ip", "addr", "flush", "dev", "ex-tnf"], netns=NETNS)
    assert apply_endpoint_addresses(ovs.vsctl, host.set_address, only="ex-tnf") == \
        {"ex-tnf": "198.19.100.2/24"}
    assert "198.19.100.2/24" in host.addresses("ex-tnf")


def test_moves_an_address_off_the_transport_interface(node):
    ovs, host = node
    ns.run(["ip", "addr", "add", TRANSPORT, "dev", "eth1"], netns=NETNS)
    steps = _boot(ovs, host)
    assert host.addresses("eth1") == []
    assert TRANSPORT in host.addresses("br-tun")
    assert any("removed" in s.detail for s in steps if s.what == "eth1 link")


def test_cli_on_a_host(node):
    """`tenantnet node bootstrap` as on a real host (plain ovs-vsctl/ovs-ofctl, `ip`), here
    run inside the node's namespace against its database."""
    ovs, _ = node
    cmd = ["ip", "netns", "exec", NETNS, sys.executable, "-m", "tenantnet.cli.node", "node",
           "bootstrap", "--role", "compute", "--transport-interface", "eth1",
           "--transport-ip", TRANSPORT, "--management-ip", MGMT_IP, "--datapath", "netdev",
           "--system-id", "tnf-cli", "--security", "insecure", "--db", ovs.unix_remote]
    env = dict(ovs.env, PYTHONPATH=ROOT)
    first = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=120)
    assert first.returncode == 0, first.stderr
    assert "bridge br-tun" in first.stdout and "change(s)" in first.stdout
    assert _get(ovs, "Open_vSwitch", ".", "external_ids:system-id") == "tnf-cli"
    again = subprocess.run(cmd + ["--json"], capture_output=True, text=True, env=env,
                           timeout=120)
    assert again.returncode == 0, again.stderr
    assert not [s for s in json.loads(again.stdout) if s["changed"]]
    bad = subprocess.run(cmd[:-2] + ["--db", ovs.unix_remote, "--transport-interface", "eth7"],
                         capture_output=True, text=True, env=env, timeout=120)
    assert bad.returncode == 1
    assert "transport interface eth7 does not exist" in bad.stderr
    assert "Traceback" not in bad.stderr
    # TLS is the default: without the node's certificates it says what to do
    tls = subprocess.run([c for c in cmd if c not in ("--security", "insecure")],
                         capture_output=True, text=True, env=env, timeout=120)
    assert tls.returncode == 1 and "Traceback" not in tls.stderr
    assert "/etc/tenantnet/pki/node/key.pem is missing" in tls.stderr
    assert "tenantnet pki node NAME" in tls.stderr


@pytest.fixture
def tls_node(tmp_path):
    """A node whose ovsdb-server trusts only the provider's CA, as the lab and a
    bootstrapped host start it, with a PKI in tmp_path."""
    root = str(tmp_path / "pki")
    pki.init(root, [MGMT_IP])
    ids = {"provider": pki.provider(root), "node": pki.issue_node(root, "n1"),
           "tenant": pki.issue_tenant(root, "acme")}
    ovs = OvsInstance(str(tmp_path / "ovs"), netns=NETNS,
                      ovsdb_ca=ids["node"].ca("ovsdb"))
    try:
        _setup_ns(NETNS)
        ovs.start()
        yield ovs, ExecHost(NetnsExecutor(NETNS)), ids
    finally:
        ovs.stop()
        ns.delete(NETNS)


def _ssl_list_br(ident, ca):
    return ns.run(["ovs-vsctl", f"--db=ssl:{MGMT_IP}:6640", "--timeout=5",
                   f"--private-key={ident.key}", f"--certificate={ident.cert}",
                   f"--ca-cert={ca}", "list-br"], netns=NETNS, check=False)


def test_tls_bootstrap_opens_ovsdb_on_pssl_for_the_provider_only(tls_node):
    ovs, host, ids = tls_node
    node_dir = ids["node"].directory
    steps = _boot(ovs, host, tls_dir=node_dir, ovsdb_pidfile=ovs.pidfile("ovsdb-server"))
    assert ovs.vsctl("get-manager").stdout.split() == [f"pssl:6640:{MGMT_IP}"]
    ssl = ovs.vsctl("get-ssl").stdout
    assert ids["node"].key in ssl and ids["node"].ca("openflow") in ssl
    assert [s for s in steps if s.what == "ovsdb-server CA"][0].detail.startswith("trusts only")
    ok = _ssl_list_br(ids["provider"], ids["provider"].ca("node"))
    assert ok.returncode == 0 and "br-tun" in ok.stdout.split(), ok.stderr
    refused = _ssl_list_br(ids["tenant"], ids["tenant"].ca("node"))
    assert refused.returncode != 0 and "br-tun" not in refused.stdout
    plain = ns.run(["ovs-vsctl", f"--db=tcp:{MGMT_IP}:6640", "--timeout=3", "list-br"],
                   netns=NETNS, check=False)
    assert plain.returncode != 0
    again = _boot(ovs, host, tls_dir=node_dir, ovsdb_pidfile=ovs.pidfile("ovsdb-server"))
    assert [s for s in again if s.changed] == [], "\n".join(map(str, again))


def test_tls_bootstrap_refuses_an_ovsdb_server_that_trusts_more_than_the_provider(node, tmp_path):
    """ovsdb-server started as ovs-ctl does (its CA from the SSL table, which also holds the
    tenants' CA): without systemd to fix it, bootstrap stops before opening OVSDB."""
    ovs, host = node
    root = str(tmp_path / "pki")
    pki.init(root)
    ident = pki.issue_node(root, "n1")
    with pytest.raises(BootstrapError) as err:
        _boot(ovs, host, tls_dir=ident.directory, ovsdb_pidfile=ovs.pidfile("ovsdb-server"))
    assert f"--ca-cert={ident.ca('ovsdb')}" in str(err.value)
    assert ovs.vsctl("get-manager").stdout.split() == []
