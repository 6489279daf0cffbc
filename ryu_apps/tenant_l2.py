"""A tenant's L2 forwarding as an ordinary Ryu app: the Table I rules on the tenant's bridges.

    ryu-manager ryu_apps.tenant_l2 [your apps...] --config-file acme.conf

acme.conf (oslo.config, as every Ryu app reads its settings):

    [DEFAULT]
    ofp_listen_host = 198.18.0.201
    # TLS (the default deployment): the files `tenantnet pki tenant acme` made
    ofp_ssl_listen_port = 6653
    ctl_privkey = /etc/acme/pki/key.pem
    ctl_cert = /etc/acme/pki/cert.pem
    ca_certs = /etc/acme/pki/node-ca.pem

    [tenant_l2]
    tenant = acme
    # the provider's API, and the tenant's credential (or: token = ...)
    api = https://198.18.0.1:8080
    api_ca = /etc/acme/pki/api-ca.pem
    token_file = /etc/acme/api.token
    # seconds between placement reads
    # poll_interval = 0.2
    # a file to start from when the provider is down
    # cache = /var/lib/acme/placement.json

It loads under both managers: tenantnet's `ryu-manager` (os-ken, where `ryu` is os-ken) and
the real Ryu's `ryu-manager` (for example the csle-ryu-fork package). It does exactly what
`tenantnet controller --tenant` does, with the same code: tenantnet.controller.tenant's
TenantCore reads the tenant's placement from the provider's API (the tenant's credential
sees only its own networks and VMs), tenantnet.model.flows computes the flows, and
tenantnet.southbound's FlowPusher installs them in ONF bundles. A bridge that is not one of
the tenant's is refused and disconnected.

Other apps next to it (see ryu_apps/README.md):
  * its flows carry cookie 0x544E4E54xxxxxxxx ("TNNT") and its sync deletes only flows with
    that prefix: flows another app installs with a cookie of its own, or with cookie 0,
    are never removed (avoid its (table, priority, match) though: an ADD of the same
    table, priority and match replaces a flow, whoever installed it);
  * EventBridgeSynced(tenant, dpid, node, bridge, topo, portmap) is sent to observers
    after every sync of one of the tenant's bridges: when it connects and whenever the
    placement changes. Subscribe with @set_ev_cls(tenant_l2.EventBridgeSynced);
  * install(dpid, flows, cookie_prefix, portmap) makes a bridge hold exactly *flows*
    (tenantnet.model.flowspec.Flow) under the caller's own 32-bit cookie prefix, through
    the same connection registry and bundles. ryu_apps.tenant_acl uses both.
"""

import logging

try:            # the real Ryu, or tenantnet's ryu-manager (there `ryu` is os-ken)
    from ryu import cfg
    from ryu.base import app_manager
    from ryu.controller import event, handler, ofp_event
    from ryu.controller.handler import set_ev_cls  # noqa: F401 (for ryu_apps.companion)
    from ryu.lib import hub
    from ryu.ofproto import ofproto_v1_3
except ImportError:     # plain os-ken (tenantnet.controller.runner.ControllerRuntime)
    from os_ken import cfg
    from os_ken.base import app_manager
    from os_ken.controller import event, handler, ofp_event
    from os_ken.controller.handler import set_ev_cls  # noqa: F401 (for ryu_apps.companion)
    from os_ken.lib import hub
    from os_ken.ofproto import ofproto_v1_3

from oslo_config import cfg as oslo_cfg

from tenantnet.controller.client import parse_endpoint
from tenantnet.controller.ofapp import pusher_app_base
from tenantnet.controller.tenant import TenantCore
from tenantnet.errors import ConfigError, TenantnetError
from tenantnet.model.flowspec import COOKIE_PREFIX
from tenantnet.southbound.ofswitch import FlowPusher

LOG = logging.getLogger("ryu_apps.tenant_l2")

NAME = "tenant_l2"          # the app's name: Ryu finds this module's events' source by it
SERVICE_NAME = "ryu_apps.tenant_l2"     # apps observing our events load this module
GROUP = "tenant_l2"

BaseApp = getattr(app_manager, "RyuApp", None) or app_manager.OSKenApp
# Under the real Ryu an exception from an app's constructor is a traceback; we end the
# process with one line instead. Under os-ken the manager prints a TenantnetError as one.
REAL_RYU = app_manager.__name__.startswith("ryu.")

OPTS = [
    oslo_cfg.StrOpt("tenant", help="the tenant this controller serves (required)"),
    oslo_cfg.StrOpt("api", help="the provider's API, http://HOST:PORT (required)"),
    oslo_cfg.StrOpt("token", secret=True, help="the tenant's API credential"),
    oslo_cfg.StrOpt("token_file", help="a file holding the tenant's API credential"),
    oslo_cfg.StrOpt("api_ca", help="the CA file that signed the provider's HTTPS API "
                                   "(tenantnet pki: tenant/NAME/api-ca.pem)"),
    oslo_cfg.FloatOpt("poll_interval", default=0.2, min=0.01,
                      help="seconds between reads of the placement"),
    oslo_cfg.StrOpt("cache", help="file keeping the last placement read; the controller "
                                  "starts from it when the provider's API does not answer"),
]
# The manager's CONF (Ryu's and os-ken's each have their own ConfigOpts). It has parsed
# the command line already when apps load: these are config-file options.
cfg.CONF.register_opts(OPTS, group=GROUP)


class SettingsError(TenantnetError):
    """A missing or bad [tenant_l2] (or other app's) setting: one line for the operator."""


def settings_failed(app, exc):
    """End the controller because of a SettingsError, as one clear line under any manager."""
    if REAL_RYU:
        raise SystemExit(f"{app}: {exc}")
    raise exc


def conf_value(conf, group, name):
    """conf.<group>.<name>, a bad value as a SettingsError."""
    try:
        return getattr(getattr(conf, group), name)
    except oslo_cfg.Error as exc:
        text = str(exc).strip()
        if " is not valid: " in text:          # drop oslo's LocationInfo(...) noise
            text = "bad value: " + text.split(" is not valid: ", 1)[1]
        raise SettingsError(f"[{group}] {name}: {text}") from None


def read_settings(conf):
    """{"tenant", "api", "token", "api_ca", "poll_interval", "cache"} from conf's
    [tenant_l2]."""
    s = {k: conf_value(conf, GROUP, k) for k in
         ("tenant", "api", "token", "token_file", "api_ca", "poll_interval", "cache")}
    for key, example in (("tenant", "acme"), ("api", "http://198.18.0.1:8080")):
        if not s[key]:
            raise SettingsError(f"no {key}: set [{GROUP}] {key} = ... (e.g. {example}) in "
                                "the --config-file")
    try:
        parse_endpoint(s["api"])
    except ConfigError as exc:
        raise SettingsError(f"[{GROUP}] api: {exc.problem}") from None
    token_file = s.pop("token_file")
    if token_file:
        try:
            with open(token_file) as fh:
                s["token"] = fh.read().strip()
        except OSError as exc:
            raise SettingsError(f"[{GROUP}] token_file: cannot read {token_file}: "
                                f"{exc.strerror}") from None
    return s


class EventBridgeSynced(event.EventBase):
    """tenant_l2 synced one of the tenant's bridges (connect, or placement change).

    tenant, dpid, node, bridge; topo: the tenant's placement (tenantnet Topology);
    portmap: {port name: ofport} of the bridge, as the switch reported it."""

    def __init__(self, tenant, dpid, node, bridge, topo, portmap):
        super().__init__()
        self.tenant = tenant
        self.dpid = dpid
        self.node = node
        self.bridge = bridge
        self.topo = topo
        self.portmap = dict(portmap)


class TenantL2(pusher_app_base(app_manager, ofp_event, handler, hub, ofproto_v1_3)):
    _EVENTS = [EventBridgeSynced]

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.name = NAME
        try:
            s = read_settings(self.CONF)
        except SettingsError as exc:
            settings_failed(NAME, exc)
        self.tenant = s["tenant"]
        self.pusher = FlowPusher()
        self.core = TenantCore(self.pusher, s["tenant"], s["api"], token=s["token"],
                               api_ca=s["api_ca"],
                               poll_interval=s["poll_interval"], cache=s["cache"],
                               on_synced=self._synced)
        self._stopping = False

    # -- lifecycle -----------------------------------------------------------------
    def start(self):
        thread = super().start()
        self.spawn(self._start_core)
        return thread

    def _start_core(self):
        """Read the placement (or the cache); until the provider answers, try again."""
        delay = 1.0
        while not self._stopping:
            try:
                self.core.start()
                return
            except TenantnetError as exc:
                LOG.error("tenant_l2: %s; trying again in %.0f s", exc, delay)
            hub.sleep(delay)
            delay = min(delay * 2, 10.0)

    def stop(self):
        self._stopping = True
        try:
            self.core.stop()
        finally:
            self.pusher.close()
            super().stop()

    # -- what other apps use ---------------------------------------------------------
    def install(self, dpid, flows, cookie_prefix, portmap=None, timeout=10):
        """Make switch *dpid* hold exactly *flows* with cookie prefix *cookie_prefix*.

        Flows of every other prefix (tenant_l2's own, other apps', cookie 0) stay as they
        are. Blocks until the switch committed the bundle: call it from your own event
        handler or thread, never from a handler of an OpenFlow event (their replies
        arrive through tenant_l2's handlers). Raises tenantnet.errors.SouthboundError."""
        if cookie_prefix == COOKIE_PREFIX:
            raise ValueError("cookie prefix 0x%08x is tenant_l2's own: pick another"
                             % cookie_prefix)
        if portmap is None:
            portmap = self.pusher.port_map(dpid)
        return self.pusher.sync(dpid, flows, portmap, timeout=timeout,
                                cookie_prefix=cookie_prefix)

    def _synced(self, dpid, node, bridge, topo, portmap):
        self.send_event_to_observers(
            EventBridgeSynced(self.tenant, dpid, node, bridge, topo, portmap))
