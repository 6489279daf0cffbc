"""tenantnet.pki and `tenantnet pki`: who signs what, what each directory holds, idempotent
issuing, clear errors; the controller's insecure warning. No switch needed (the refusals on
real Open vSwitch are in test_tls.py and test_bootstrap.py)."""

import logging
import os
import ssl
import stat
import subprocess
import sys

import pytest
from cryptography import x509

from conftest import ROOT
from tenantnet import pki
from tenantnet.controller import tls as controller_tls
from tenantnet.model import config
from tenantnet.model.topology import ControllerSettings


def tenantnet(*args):
    return subprocess.run([sys.executable, "-m", "tenantnet.cli", *args], cwd=ROOT,
                          capture_output=True, text=True, timeout=60)


def verifies(cafile, certfile):
    """True when *certfile* chains to a CA in *cafile* (OpenSSL, as OVS and os-ken check)."""
    return subprocess.run(["openssl", "verify", "-CAfile", cafile, certfile],
                          capture_output=True, text=True).returncode == 0


@pytest.fixture
def root(tmp_path):
    r = str(tmp_path / "pki")
    pki.init(r, ["198.18.0.1"])
    pki.issue_node(r, "compute1", ["198.18.0.11"])
    pki.issue_tenant(r, "acme", ["198.18.0.201"])
    return r


def test_each_channel_trusts_exactly_its_peer(root):
    prov, node, acme = pki.provider(root), pki.node(root, "compute1"), pki.tenant(root, "acme")
    # ovsdb-server: the provider only
    assert verifies(node.ca("ovsdb"), prov.cert)
    assert not verifies(node.ca("ovsdb"), acme.cert)
    assert not verifies(node.ca("ovsdb"), node.cert)
    # ovs-vswitchd's controllers: the provider and tenants
    assert verifies(node.ca("openflow"), prov.cert) and verifies(node.ca("openflow"), acme.cert)
    # the provider and tenants accept nodes only as switches / OVSDB servers
    for ident in (prov, acme):
        assert verifies(ident.ca("node"), node.cert)
        assert not verifies(ident.ca("node"), acme.cert)
        assert not verifies(ident.ca("node"), prov.cert)
    # API clients trust the provider
    assert verifies(acme.ca("api"), prov.cert) and verifies(prov.ca("api"), prov.cert)


def test_files_keys_private_and_names_in_the_certificates(root):
    prov = pki.provider(root)
    for ident in (prov, pki.node(root, "compute1"), pki.tenant(root, "acme")):
        assert stat.S_IMODE(os.stat(ident.key).st_mode) == 0o600
        assert stat.S_IMODE(os.stat(ident.cert).st_mode) == 0o644
    for role in pki.CA_ROLES:
        assert stat.S_IMODE(os.stat(os.path.join(root, "ca", role + ".key")).st_mode) == 0o600
    san = pki.load_cert(prov.cert).extensions.get_extension_for_class(
        x509.SubjectAlternativeName).value
    assert {str(a) for a in san.get_values_for_type(x509.IPAddress)} >= {"198.18.0.1",
                                                                      "127.0.0.1"}
    # an HTTPS client that checks the host name accepts it for that address
    ctx = ssl.create_default_context(cafile=prov.ca("api"))
    assert ctx.check_hostname
    cert = pki.load_cert(pki.node(root, "compute1").cert)
    assert cert.subject.rfc4514_string() == "CN=compute1,OU=node,O=tenantnet"


def test_issuing_again_keeps_valid_certificates_and_replaces_stale_ones(root, tmp_path):
    node = pki.node(root, "compute1")
    before = open(node.cert, "rb").read()
    pki.init(root, ["198.18.0.1"])
    pki.issue_node(root, "compute1", ["198.18.0.11"])
    assert open(node.cert, "rb").read() == before
    # a new address, or --force, re-issues; a new CA (init --force) invalidates the old one
    pki.issue_node(root, "compute1", ["198.18.0.99"])
    assert open(node.cert, "rb").read() != before
    pki.init(root, ["198.18.0.1"], force=True)
    assert not verifies(pki.provider(root).ca("node"), node.cert)
    pki.issue_node(root, "compute1")
    assert verifies(pki.provider(root).ca("node"), node.cert)


def test_cli_and_its_errors(tmp_path):
    d = str(tmp_path / "p")
    cfg = os.path.join(ROOT, "configs", "lab", "two-tenants.yaml")
    missing = tenantnet("pki", "node", "compute1", "--dir", d)
    assert missing.returncode == 1 and "run `tenantnet pki init --dir" in missing.stderr
    assert "Traceback" not in missing.stderr
    assert tenantnet("pki", "init", "--dir", d, "-c", cfg).returncode == 0
    made = tenantnet("pki", "node", "compute1", "--dir", d, "-c", cfg)
    assert made.returncode == 0, made.stderr
    san = pki.load_cert(pki.node(d, "compute1").cert).extensions.get_extension_for_class(
        x509.SubjectAlternativeName).value
    assert "198.18.0.11" in {str(a) for a in san.get_values_for_type(x509.IPAddress)}
    for args, words in ((("node", "nowhere", "-c", cfg), "no node 'nowhere'"),
                        (("tenant", "bad name"), "tenant name 'bad name'"),
                        (("tenant", "acme", "--address", "not an address!"),
                         "neither an IP address nor a DNS name")):
        bad = tenantnet("pki", *args, "--dir", d)
        assert bad.returncode == 1 and words in bad.stderr, bad.stderr
        assert "Traceback" not in bad.stderr
    shown = tenantnet("pki", "show", "--dir", d)
    assert "provider" in shown.stdout and "compute1" in shown.stdout
    # the same from a checkout, as the Vagrant host runs it: `python3 -m tenantnet.cli.pki`
    alone = subprocess.run([sys.executable, "-m", "tenantnet.cli.pki", "show", "--dir", d],
                           cwd=str(tmp_path), capture_output=True, text=True, timeout=60,
                           env=dict(os.environ, PYTHONPATH=ROOT))
    assert alone.returncode == 0 and "compute1" in alone.stdout, alone.stderr


def test_the_controller_warns_when_insecure_and_needs_its_files_when_not(tmp_path, caplog):
    with caplog.at_level(logging.WARNING, logger="tenantnet.controller.tls"):
        assert controller_tls.for_controller(ControllerSettings(security="insecure"),
                                             str(tmp_path)) is None
    assert "plain TCP" in caplog.text
    with pytest.raises(pki.PkiError) as err:
        controller_tls.for_controller(ControllerSettings(), str(tmp_path))
    assert "provider/key.pem is missing" in str(err.value)
    pki.init(str(tmp_path))
    tls = controller_tls.for_controller(ControllerSettings(), str(tmp_path))
    assert tls.api["certfile"].endswith("provider/cert.pem")


def test_security_in_the_config(tmp_path):
    text = open(os.path.join(ROOT, "configs", "lab", "two-tenants.yaml")).read()
    topo = config.load_text(text, "t.yaml")
    assert topo.security == "tls" and topo.controller.openflow_target.startswith("ssl:")
    insecure = config.load_text("security: insecure\n" + text, "t.yaml")
    assert insecure.controller.openflow_target.startswith("tcp:")
    path = tmp_path / "insecure.yaml"
    path.write_text("security: insecure\n" + text)
    out = tenantnet("check-config", str(path))
    assert out.returncode == 0 and "WARNING: security: insecure" in out.stdout
