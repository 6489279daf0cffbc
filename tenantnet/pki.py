"""The deployment's PKI (`tenantnet pki init|node|tenant|show`), made with `cryptography`.

Three certificate authorities, so that each channel trusts exactly the party it serves:

  ca/provider   signs the provider's controller only. A node's ovsdb-server trusts only it,
                so no other certificate (a tenant's, another node's) opens a node's OVSDB.
  ca/node       signs the nodes. The provider (OVSDB client, OpenFlow listener) and the
                tenants' controllers (OpenFlow listeners) trust only it: nobody but a node
                can pose as a switch.
  ca/tenant     signs the tenants' controllers. A node's ovs-vswitchd trusts ca/provider
                and ca/tenant for its bridges' `ssl:` controller targets.

Every role gets a self-contained directory, ready to be copied to the machine that uses it:

  provider/                 key.pem cert.pem node-ca.pem (verify nodes) api-ca.pem (its own
                            CA, for API clients)
  node/NAME/                key.pem cert.pem ovsdb-ca.pem (= ca/provider, for
                            ovsdb-server --ca-cert) openflow-ca.pem (ca/provider + ca/tenant,
                            for `ovs-vsctl set-ssl`)
  tenant/NAME/              key.pem cert.pem node-ca.pem (verify nodes) api-ca.pem (verify
                            the provider's HTTPS API)

Keys are EC P-256, written owner-only (0600). Issuing again keeps what exists: a
certificate is re-made only with --force, or when it no longer matches its CA."""

import datetime
import ipaddress
import os
import re
from dataclasses import dataclass

from tenantnet.errors import TenantnetError

DEFAULT_DIR = "/etc/tenantnet/pki"
CA_ROLES = ("provider", "node", "tenant")
NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$")
DNS_RE = re.compile(r"^[A-Za-z0-9]([A-Za-z0-9.-]{0,251}[A-Za-z0-9])?$")
CA_DAYS = 3650
LEAF_DAYS = 825
ORG = "tenantnet"
# the CA bundles each party trusts: its file `<what>-ca.pem` -> the CAs it holds
PROVIDER_BUNDLES = TENANT_BUNDLES = {"node": ["node"], "api": ["provider"]}
NODE_BUNDLES = {"ovsdb": ["provider"], "openflow": ["provider", "tenant"]}


class PkiError(TenantnetError):
    pass


@dataclass(frozen=True)
class Identity:
    """One party's files: its key and certificate and the CA bundles it trusts."""
    directory: str

    @property
    def key(self):
        return os.path.join(self.directory, "key.pem")

    @property
    def cert(self):
        return os.path.join(self.directory, "cert.pem")

    def ca(self, what):
        """node-ca.pem, api-ca.pem, ovsdb-ca.pem or openflow-ca.pem."""
        return os.path.join(self.directory, f"{what}-ca.pem")

    def check(self, *cas):
        """PkiError naming the first missing file (its key, cert and the named CAs)."""
        for path in (self.key, self.cert, *(self.ca(c) for c in cas)):
            if not os.path.isfile(path):
                raise PkiError(f"{path} is missing: make it with `tenantnet pki` (see "
                               "docs/operations.md, TLS)")
        return self


def provider(root=DEFAULT_DIR):
    return Identity(os.path.join(root, "provider"))


def node(root, name):
    return Identity(os.path.join(root, "node", _check_name(name, "node")))


def tenant(root, name):
    return Identity(os.path.join(root, "tenant", _check_name(name, "tenant")))


def _check_name(name, what):
    if not isinstance(name, str) or not NAME_RE.match(name):
        raise PkiError(f"{what} name {name!r}: expected 1-63 letters, digits, '_', '.' or '-'")
    return name


# -- making keys and certificates -------------------------------------------------------
def _x509():
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
    return x509, hashes, serialization, ec, ExtendedKeyUsageOID, NameOID


def _write(path, data, private=False):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    tmp = f"{path}.tmp{os.getpid()}"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600 if private else 0o644)
    with os.fdopen(fd, "wb") as fh:
        fh.write(data)
    os.replace(tmp, path)


def _new_key(path):
    _, _, serialization, ec, _, _ = _x509()
    key = ec.generate_private_key(ec.SECP256R1())
    _write(path, key.private_bytes(serialization.Encoding.PEM,
                                   serialization.PrivateFormat.PKCS8,
                                   serialization.NoEncryption()), private=True)
    return key


def _load_key(path):
    from cryptography.hazmat.primitives import serialization
    try:
        with open(path, "rb") as fh:
            return serialization.load_pem_private_key(fh.read(), password=None)
    except (OSError, ValueError) as exc:
        raise PkiError(f"{path}: cannot read the key: {exc}") from None


def load_cert(path):
    from cryptography import x509
    try:
        with open(path, "rb") as fh:
            return x509.load_pem_x509_certificate(fh.read())
    except (OSError, ValueError) as exc:
        raise PkiError(f"{path}: cannot read the certificate: {exc}") from None


def _name(common_name, unit):
    x509, _, _, _, _, NameOID = _x509()
    return x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, ORG),
                      x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, unit),
                      x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _builder(subject, issuer, public_key, days):
    x509 = _x509()[0]
    now = datetime.datetime.now(datetime.timezone.utc)
    return (x509.CertificateBuilder().subject_name(subject).issuer_name(issuer)
            .public_key(public_key).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=days)))


def _ca_paths(root, role):
    base = os.path.join(root, "ca", role)
    return base + ".pem", base + ".key"


def _make_ca(root, role):
    x509, hashes, serialization, _, _, _ = _x509()
    cert_path, key_path = _ca_paths(root, role)
    key = _new_key(key_path)
    subject = _name(f"tenantnet {role} CA", role)
    cert = (_builder(subject, subject, key.public_key(), CA_DAYS)
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(x509.KeyUsage(digital_signature=False, content_commitment=False,
                                         key_encipherment=False, data_encipherment=False,
                                         key_agreement=False, key_cert_sign=True,
                                         crl_sign=True, encipher_only=False,
                                         decipher_only=False), critical=True)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()),
                           critical=False)
            .sign(key, hashes.SHA256()))
    _write(cert_path, cert.public_bytes(serialization.Encoding.PEM))


def _ca(root, role):
    cert_path, key_path = _ca_paths(root, role)
    if not (os.path.isfile(cert_path) and os.path.isfile(key_path)):
        raise PkiError(f"{root}: no {role} CA ({cert_path}): run `tenantnet pki init "
                       f"--dir {root}` first")
    return load_cert(cert_path), _load_key(key_path)


def _issue(root, role, ident, common_name, addresses=()):
    """A key and a certificate for *ident*, signed by the *role* CA; SANs from *addresses*
    (IP addresses or DNS names) and the common name."""
    x509, hashes, serialization, _, EKU, _ = _x509()
    ca_cert, ca_key = _ca(root, role)
    key = _new_key(ident.key)
    sans, seen = [], set()
    # the common name too, when it is a host name (a node name with '_' is not)
    names = ([common_name] if DNS_RE.match(common_name) else []) + list(addresses)
    for item in names:
        if item in seen:
            continue
        seen.add(item)
        if _is_ip(item):
            sans.append(x509.IPAddress(ipaddress.ip_address(item)))
        elif DNS_RE.match(item):
            sans.append(x509.DNSName(item))
        else:
            raise PkiError(f"{item!r} is neither an IP address nor a DNS name")
    cert = (_builder(_name(common_name, role), ca_cert.subject, key.public_key(), LEAF_DAYS)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage([EKU.SERVER_AUTH, EKU.CLIENT_AUTH]),
                           critical=False)
            .add_extension(x509.SubjectAlternativeName(sans), critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(
                ca_key.public_key()), critical=False)
            .sign(ca_key, hashes.SHA256()))
    _write(ident.cert, cert.public_bytes(serialization.Encoding.PEM))


def _bundle(root, ident, what, roles):
    """Write *ident*'s `<what>-ca.pem`: the named CAs' certificates, concatenated."""
    data = b""
    for role in roles:
        with open(_ca_paths(root, role)[0], "rb") as fh:
            data += fh.read()
    _write(ident.ca(what), data)


def _current(root, role, ident, addresses=()):
    """True when *ident* has a key and a certificate signed by today's *role* CA that
    names every address in *addresses*."""
    if not (os.path.isfile(ident.key) and os.path.isfile(ident.cert)):
        return False
    from cryptography import x509
    ca_cert, _ = _ca(root, role)
    cert = load_cert(ident.cert)
    if cert.issuer != ca_cert.subject:
        return False
    from cryptography.exceptions import InvalidSignature
    try:
        cert.verify_directly_issued_by(ca_cert)
    except (ValueError, TypeError, InvalidSignature):
        return False
    if addresses:
        try:
            san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        except x509.ExtensionNotFound:
            return False
        have = {str(v) for v in san.get_values_for_type(x509.IPAddress)} | \
            set(san.get_values_for_type(x509.DNSName))
        if not all(str(ipaddress.ip_address(a)) in have if _is_ip(a) else a in have
                   for a in addresses):
            return False
    return True


def _is_ip(text):
    try:
        ipaddress.ip_address(text)
        return True
    except ValueError:
        return False


# -- the commands -------------------------------------------------------------------------
def init(root=DEFAULT_DIR, addresses=(), force=False):
    """The three CAs (kept when they exist, unless *force*) and the provider's identity,
    whose certificate names *addresses* (the API's and OpenFlow's addresses: clients that
    check the host name, as HTTPS clients do, need it). Returns the provider Identity."""
    root = os.path.abspath(root)
    made = []
    for role in CA_ROLES:
        cert_path, key_path = _ca_paths(root, role)
        if force or not (os.path.isfile(cert_path) and os.path.isfile(key_path)):
            _make_ca(root, role)
            made.append(role)
    addresses = tuple(addresses) + ("127.0.0.1", "localhost")
    return _identity(root, "provider", provider(root), "provider", addresses,
                     bool(made) or force, PROVIDER_BUNDLES)


def _identity(root, role, ident, common_name, addresses, force, bundles):
    """*ident*'s key and certificate (issued by the *role* CA unless current and not
    *force*) and its CA bundles {what: [CA roles]}."""
    if force or not _current(root, role, ident, addresses):
        _issue(root, role, ident, common_name, addresses)
    for what, roles in bundles.items():
        _bundle(root, ident, what, roles)
    return ident


def issue_node(root, name, addresses=(), force=False):
    return _identity(root, "node", node(root, name), name, addresses, force, NODE_BUNDLES)


def issue_tenant(root, name, addresses=(), force=False):
    return _identity(root, "tenant", tenant(root, name), name, addresses, force,
                     TENANT_BUNDLES)


def describe(root=DEFAULT_DIR):
    """[{role, name, subject, issuer, not_after, directory}] for what *root* holds."""
    root = os.path.abspath(root)
    out = []

    def add(role, name, ident):
        if os.path.isfile(ident.cert):
            cert = load_cert(ident.cert)
            out.append({"role": role, "name": name, "subject": cert.subject.rfc4514_string(),
                        "issuer": cert.issuer.rfc4514_string(),
                        "not_after": cert.not_valid_after_utc.isoformat(),
                        "directory": ident.directory})
    add("provider", "provider", provider(root))
    for role, make in (("node", node), ("tenant", tenant)):
        base = os.path.join(root, role)
        for name in sorted(os.listdir(base)) if os.path.isdir(base) else ():
            add(role, name, make(root, name))
    return out
