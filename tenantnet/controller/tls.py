"""The provider controller's side of TLS (`security: tls`, the default).

One identity, the PKI's provider/ directory (tenantnet.pki), on three channels:
  * OVSDB: the controller is the client of every node's `pssl:` remote. The ovs library's
    SSL settings are process-wide (ovs.stream.Stream), so they are set once, here. The
    nodes' certificates are checked against node-ca.pem.
  * OpenFlow: os-ken listens for TLS only (ofp_ssl_listen_port; when only
    ofp_tcp_listen_port is given, that port) and requires a client certificate from
    node-ca.pem: nobody but a node can pose as a switch.
  * The API: HTTPS on its TCP address with the same certificate; tenants keep their Bearer
    tokens. The unix socket stays plain and owner-only.

With `security: insecure`, all three are plain TCP and the controller says so at start."""

import logging
from dataclasses import dataclass

from tenantnet import pki

LOG = logging.getLogger("tenantnet.controller.tls")
INSECURE_WARNING = ("security: insecure: OVSDB, OpenFlow and the API are plain TCP; anyone "
                    "on the management network can reconfigure every node's bridges")


@dataclass(frozen=True)
class ProviderTls:
    identity: pki.Identity

    @property
    def api(self):
        """ApiServer's tls= argument."""
        return {"certfile": self.identity.cert, "keyfile": self.identity.key}

    def apply_ovsdb(self):
        """The ovs library's process-wide SSL settings, for every `ssl:` OVSDB remote."""
        from ovs import stream
        stream.Stream.ssl_set_private_key_file(self.identity.key)
        stream.Stream.ssl_set_certificate_file(self.identity.cert)
        stream.Stream.ssl_set_ca_cert_file(self.identity.ca("node"))

    def apply_openflow(self, conf, default_port):
        """os-ken's CONF: listen for TLS only, with our certificate, requiring a node's.
        Files an operator set in CONF ([DEFAULT] ctl_privkey, ...) are kept."""
        port = conf.ofp_ssl_listen_port or conf.ofp_tcp_listen_port or default_port
        for name, value in (("ctl_privkey", self.identity.key),
                            ("ctl_cert", self.identity.cert),
                            ("ca_certs", self.identity.ca("node"))):
            if getattr(conf, name) is None:
                conf.set_override(name, value)
        conf.set_override("ofp_ssl_listen_port", int(port))
        return int(port)


def for_controller(controller_settings, pki_dir):
    """ProviderTls for a topology's ControllerSettings, or None (with the warning) when the
    deployment is insecure. PkiError naming the missing file otherwise."""
    if not controller_settings.tls:
        LOG.warning("%s", INSECURE_WARNING)
        return None
    return ProviderTls(pki.provider(pki_dir).check("node", "api"))
