"""TLS on the one-machine lab (`security: tls`, the default): who may open which channel.

Every probe is a real TLS client (tests/tlsprobe.py, or ovs-vsctl, or the API client)
running in the lab's controller namespace, the management network a tenant's controller
also sits on. Each refusal test has its positive twin (the right certificate is accepted),
so a probe that could never succeed would fail the test.

Needs root and Open vSwitch. Lab prefix: tntls."""

import json
import os
import subprocess
import sys

import pytest

from conftest import (CONFIGS, ROOT, lab_prerequisites, lab_up_and_down, run_cli,
                      wait_for_value)
from tenantnet import pki
from tenantnet.lab import certs
from tenantnet.lab.ovs import OvsInstance
from tenantnet.model import naming

pytestmark = [pytest.mark.lab,
              pytest.mark.skipif(lab_prerequisites() is not None, reason=str(lab_prerequisites()))]

PREFIX = "tntls"
COMPUTE1 = "198.18.0.11"
PROVIDER = "198.18.0.1"
GLOBEX_CTL = "198.18.0.202"


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    with open(os.path.join(CONFIGS, "tenant-controllers.yaml")) as fh:
        text = fh.read()
    assert "security:" not in text            # the default is what is tested
    yield from lab_up_and_down(PREFIX, tmp_path_factory.mktemp("tls") / "lab.yaml", text)


@pytest.fixture(scope="module")
def ids(lab):
    root = certs.pki_dir(lab.fabric.state_dir)
    return {"provider": pki.provider(root), "compute1": pki.node(root, "compute1"),
            "acme": pki.tenant(root, "acme"), "globex": pki.tenant(root, "globex")}


@pytest.fixture(scope="module")
def other_pki(tmp_path_factory):
    """A second, unrelated PKI with the same layout: a wrong CA for everything."""
    root = str(tmp_path_factory.mktemp("other-pki"))
    pki.init(root, [PROVIDER])
    return {"provider": pki.provider(root), "compute1": pki.issue_node(root, "compute1")}


def probe(lab, host, port, proto, ident, cafile):
    """tests/tlsprobe.py in the lab's controller namespace: {"ok": bool, "error": ...}."""
    cert, key = (ident.cert, ident.key) if ident else ("-", "-")
    out = subprocess.run(["ip", "netns", "exec", lab.fabric.controller_netns, sys.executable,
                          os.path.join(ROOT, "tests", "tlsprobe.py"), host, str(port), proto,
                          cert, key, cafile], capture_output=True, text=True, timeout=30)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


def vsctl_over_ssl(lab, host, ident, cafile, *args, port=6640):
    return subprocess.run(["ip", "netns", "exec", lab.fabric.controller_netns, "ovs-vsctl",
                           "--timeout=5", f"--db=ssl:{host}:{port}", f"--private-key={ident.key}",
                           f"--certificate={ident.cert}", f"--ca-cert={cafile}", *args],
                          capture_output=True, text=True, timeout=30)


def test_every_channel_runs_tls(lab):
    ovs = lab.fabric.ovs("compute1")
    assert ovs.vsctl("get-manager").stdout.split() == [f"pssl:6640:{COMPUTE1}"]
    for bridge in ("br-tun", naming.brint_name("globex/app")):
        target = ovs.vsctl("get-controller", bridge).stdout.split()
        assert len(target) == 1 and target[0].startswith("ssl:"), (bridge, target)
    # the connections are up (OVS reports it per Controller record, every few seconds)
    wait_for_value("every Controller record connected", lambda: "is_connected        : false"
                   not in ovs.vsctl("--columns=target,is_connected", "list",
                                    "Controller").stdout, 20)
    status = run_cli(PREFIX, "lab", "status", "--json").stdout
    nodes = json.loads(status)["nodes"]
    assert all(n["ovsdb_remote"].startswith("ssl:") for n in nodes.values()), nodes
    assert "TLS on" in open(lab.controller_log()).read()


def test_ovsdb_needs_a_certificate_from_the_providers_ca(lab, ids, other_pki):
    """Only the provider opens a node's OVSDB: no certificate, another CA's and a node's own
    are refused; plain TCP finds nobody listening."""
    ca = ids["provider"].ca("node")
    assert probe(lab, COMPUTE1, 6640, "ovsdb", ids["provider"], ca)["ok"]
    assert not probe(lab, COMPUTE1, 6640, "ovsdb", None, ca)["ok"]
    assert not probe(lab, COMPUTE1, 6640, "ovsdb", other_pki["provider"], ca)["ok"]
    assert not probe(lab, COMPUTE1, 6640, "ovsdb", ids["compute1"], ca)["ok"]
    plain = subprocess.run(["ip", "netns", "exec", lab.fabric.controller_netns, "ovs-vsctl",
                            "--timeout=3", f"--db=tcp:{COMPUTE1}:6640", "list-br"],
                           capture_output=True, text=True, timeout=30)
    assert plain.returncode != 0


def test_a_tenant_certificate_cannot_open_ovsdb(lab, ids):
    ok = vsctl_over_ssl(lab, COMPUTE1, ids["provider"], ids["provider"].ca("node"), "list-br")
    assert ok.returncode == 0 and "br-tun" in ok.stdout.split(), ok.stderr
    for tenant in ("acme", "globex"):
        res = vsctl_over_ssl(lab, COMPUTE1, ids[tenant], ids[tenant].ca("node"), "list-br")
        assert res.returncode != 0 and "br-tun" not in res.stdout, (tenant, res.stdout)


def test_a_tenant_cannot_take_over_another_tenants_bridge(lab, ids):
    """acme against globex's bridge on compute1: it cannot repoint it over OVSDB, cannot
    pose as a node to globex's controller, nor as a switch to the provider; the bridge
    stays with globex's controller."""
    bridge = naming.brint_name("globex/app")
    acme = ids["acme"]
    res = vsctl_over_ssl(lab, COMPUTE1, acme, acme.ca("node"), "set-controller", bridge,
                         "ssl:198.18.0.201:6653")
    assert res.returncode != 0
    node_ca = ids["compute1"].ca("openflow")
    assert probe(lab, GLOBEX_CTL, 6653, "openflow", ids["compute1"], node_ca)["ok"]
    assert not probe(lab, GLOBEX_CTL, 6653, "openflow", acme, node_ca)["ok"]
    assert not probe(lab, PROVIDER, 6653, "openflow", acme, node_ca)["ok"]
    ovs = lab.fabric.ovs("compute1")
    assert ovs.vsctl("get-controller", bridge).stdout.split() == [f"ssl:{GLOBEX_CTL}:6653"]
    assert lab.ping("app2", lab.api().get_vm("app1")["ip"])


def test_a_wrong_ca_is_refused_by_both_sides(lab, ids, other_pki):
    node_ca = ids["compute1"].ca("openflow")
    # servers refuse clients from another CA: the provider's OpenFlow port, a node's OVSDB
    assert probe(lab, PROVIDER, 6653, "openflow", ids["compute1"], node_ca)["ok"]
    refused = probe(lab, PROVIDER, 6653, "openflow", other_pki["compute1"], node_ca)
    assert not refused["ok"] and "unknown ca" in refused["error"], refused
    assert not probe(lab, COMPUTE1, 6640, "ovsdb", other_pki["provider"],
                     ids["provider"].ca("node"))["ok"]
    # clients refuse servers from another CA: a node's OVSDB (ovs-vsctl with the provider's
    # files), and the provider's HTTPS API
    res = vsctl_over_ssl(lab, COMPUTE1, ids["provider"], other_pki["provider"].ca("node"),
                         "list-br")
    assert res.returncode != 0 and "br-tun" not in res.stdout
    rogue = OvsInstance(os.path.join(lab.fabric.state_dir, "rogue-ovs"),
                        netns=lab.fabric.controller_netns,
                        ovsdb_ca=other_pki["compute1"].ca("ovsdb"))
    try:
        rogue.start()
        c = other_pki["compute1"]
        rogue.vsctl("set-ssl", c.key, c.cert, c.ca("openflow"))
        rogue.vsctl("set-manager", f"pssl:16640:{PROVIDER}")
        rogue.vsctl("add-br", "tntls-rogue", "--", "set", "bridge", "tntls-rogue",
                    "datapath_type=netdev")
        # its own side accepts its own PKI's provider (so it is listening and sound) ...
        good = vsctl_over_ssl(lab, PROVIDER, other_pki["provider"],
                              other_pki["provider"].ca("node"), "list-br", port=16640)
        assert good.returncode == 0 and "tntls-rogue" in good.stdout, good.stderr
        # ... but our provider's files refuse it: its certificate is from another CA
        bad = vsctl_over_ssl(lab, PROVIDER, ids["provider"], ids["provider"].ca("node"),
                             "list-br", port=16640)
        assert bad.returncode != 0 and "tntls-rogue" not in bad.stdout
    finally:
        rogue.stop()
    api = f"https://{PROVIDER}:8080"
    token = lab.topology().controller.api_token

    def health(ca):
        return subprocess.run(
            ["ip", "netns", "exec", lab.fabric.controller_netns, sys.executable, "-c",
             "import sys; from tenantnet.controller.client import ApiClient; "
             "print(ApiClient(sys.argv[1], token=sys.argv[2], ca_file=sys.argv[3], "
             "timeout=10).health()['status'])", api, token, ca],
            capture_output=True, text=True, timeout=30, cwd=ROOT)
    ok = health(ids["provider"].ca("api"))
    assert ok.returncode == 0 and ok.stdout.strip() == "ok", ok.stderr
    bad = health(other_pki["provider"].ca("api"))
    assert bad.returncode != 0 and "ApiError" in bad.stderr, bad.stderr
    assert "TLS with the controller" in bad.stderr and "CERTIFICATE_VERIFY_FAILED" in bad.stderr


def test_the_api_is_https_only_with_tokens(lab, ids):
    """HTTPS with the provider's certificate (checked by host name, as browsers and curl
    do); plain HTTP on the same port gets no API; tenants still need their token."""
    ns = lab.fabric.controller_netns
    base = f"https://{PROVIDER}:8080/v1/health"
    ok = subprocess.run(["ip", "netns", "exec", ns, "curl", "-sS", "--max-time", "5",
                         "--cacert", ids["provider"].ca("api"), base], capture_output=True,
                        text=True, timeout=30)
    assert ok.returncode == 0 and '"status"' in ok.stdout, ok.stderr
    plain = subprocess.run(["ip", "netns", "exec", ns, "curl", "-sS", "--max-time", "5",
                            f"http://{PROVIDER}:8080/v1/health"], capture_output=True,
                           text=True, timeout=30)
    assert '"status"' not in plain.stdout
    anonymous = subprocess.run(["ip", "netns", "exec", ns, "curl", "-s", "-o", "/dev/null",
                                "-w", "%{http_code}", "--max-time", "5", "--cacert",
                                ids["provider"].ca("api"), f"https://{PROVIDER}:8080/v1/vms"],
                               capture_output=True, text=True, timeout=30)
    assert anonymous.stdout == "401"
