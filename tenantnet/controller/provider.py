"""Building the provider's controller core from its Settings (tenantnet.controller.settings):
the model from the config file, the lab nodes' host steps, TLS on OVSDB, OpenFlow and the
API, the Core and its API server. tenantnet.app calls `build_core` unless the settings
carry a core_factory of their own (tests)."""

import logging

from tenantnet.controller import tls as controller_tls
from tenantnet.controller.core import Core
from tenantnet.controller.tenancy import make_authorizer
from tenantnet.errors import TenantnetError
from tenantnet.model import config as config_mod
from tenantnet.node.hostops import NetnsNodeHost

# The core's logger: build_core was part of controller.core.
LOG = logging.getLogger("tenantnet.controller.core")


def build_core(pusher, app, settings):
    """The provider's core from its Settings (tenantnet.controller.settings)."""
    topo = config_mod.load_file(settings.config)
    if settings.api_token:
        topo.controller.api_token = settings.api_token
    hosts = {node: NetnsNodeHost(where.netns, where.rundir)
             for node, where in settings.node_netns.items()}
    unknown = sorted(set(settings.ovsdb_remotes) - {n.name for n in topo.nodes()})
    if unknown:
        raise TenantnetError(f"ovsdb_remote names unknown node(s) {', '.join(unknown)} "
                             f"(the config has {', '.join(n.name for n in topo.nodes())})")
    tls = controller_tls.for_controller(topo.controller, settings.pki_dir)
    if tls is not None:
        tls.apply_ovsdb()
        port = tls.apply_openflow(app.CONF, topo.controller.openflow_port)
        LOG.info("TLS on: OVSDB ssl:, OpenFlow TLS on port %d, HTTPS API (%s)", port,
                 tls.identity.directory)
    core = Core(topo, pusher, ovsdb_remotes=settings.ovsdb_remotes, hosts=hosts,
                source=settings.config, audit_interval=settings.audit_interval,
                retry_max=settings.node_retry_max)
    core.reach_nodes()
    if settings.api_socket or settings.api_listen:
        from tenantnet.controller.api import ApiServer
        core.api_server = ApiServer(core, tcp=settings.api_tcp, unix_path=settings.api_socket,
                                    authorizer=make_authorizer(topo), unix_trusted=True,
                                    tls=tls.api if tls is not None else None,
                                    gate=core.not_serving)
    return core
