"""The provider controller's settings: one object, built once, handed to the core.

Two ways build it, and both end in `Settings`:
  * oslo.config, as Ryu apps do: the `[tenantnet]` section of `--config-file` files, or the
    same options on `ryu-manager`'s command line (`--tenantnet-config FILE`, ...);
  * `tenantnet controller -c FILE ...`, which is a front on `ryu-manager tenantnet.app`
    and passes its flags through as those options.

The app (tenantnet.app) reads `Settings.from_conf(CONF)` unless one was handed to it as
the os-ken context `tenantnet_settings` (tests inject a core that way, with core_factory).

Example `tenantnet.conf`:

    [DEFAULT]
    ofp_listen_host = 198.18.0.1
    ofp_ssl_listen_port = 6653      # with `security: tls` (the default); else ofp_tcp_...

    [tenantnet]
    config = /etc/tenantnet/config.yaml
    api_listen = 198.18.0.1:8080
    api_socket = /run/tenantnet/api.sock
    pki_dir = /etc/tenantnet/pki
    echo_interval = 1
    echo_max_unreplied = 3
    audit_interval = 30
    node_retry_max = 8
"""

import dataclasses
from typing import Callable, Optional

from oslo_config import cfg

from tenantnet.errors import TenantnetError

GROUP = "tenantnet"
CONTEXT = "tenantnet_settings"      # the os-ken context name a Settings travels under

OPTS = [
    cfg.StrOpt("config", help="the provider's YAML config (nodes, tenants, networks, VMs)"),
    cfg.StrOpt("api-listen", help="HOST:PORT for the JSON HTTP API (Bearer tokens)"),
    cfg.StrOpt("api-socket", help="unix socket path for the JSON HTTP API (owner only)"),
    cfg.StrOpt("api-token", secret=True,
               help="the provider's API token (overrides controller.api_token of the YAML)"),
    cfg.StrOpt("api-token-file", help="a file holding the provider's API token"),
    cfg.FloatOpt("echo-interval", default=1.0, min=0.05,
                 help="seconds between OpenFlow echo requests to each switch"),
    cfg.IntOpt("echo-max-unreplied", default=3, min=1,
               help="unanswered echoes before a switch is declared dead"),
    cfg.DictOpt("ovsdb-remote", default={},
                help="NODE:REMOTE,... e.g. compute1:unix:/run/x/db.sock (default for every "
                     "node: tcp:MANAGEMENT_IP:OVSDB_PORT)"),
    cfg.FloatOpt("audit-interval", default=30.0, min=0,
                 help="seconds between audits that repair drift in every reachable node's "
                      "OVSDB and flow tables (0: no audit)"),
    cfg.FloatOpt("node-retry-max", default=8.0, min=0.5,
                 help="the longest wait, in seconds, between attempts to reach a node that "
                      "is down (the wait starts at 0.5 s and doubles)"),
    cfg.StrOpt("pki-dir", default="/etc/tenantnet/pki",
               help="the PKI directory (tenantnet pki init): with `security: tls` (the "
                    "default) the controller uses its provider/ key, certificate and CAs "
                    "for OVSDB, OpenFlow and the HTTPS API"),
    cfg.DictOpt("node-netns", default={},
                help="NODE:NETNS[@OVS_RUNDIR],... run node-side steps through `ip netns` "
                     "(the one-machine lab)"),
]


def register(conf):
    """Register the [tenantnet] options on *conf* (an oslo ConfigOpts); idempotent.

    Before the command line is parsed they are CLI options too (`--tenantnet-config`...);
    afterwards (an app loaded by a manager that already parsed it) config-file options."""
    try:
        conf.register_cli_opts(OPTS, group=GROUP)
    except cfg.ArgsAlreadyParsedError:
        conf.register_opts(OPTS, group=GROUP)


def check_unknown_keys(conf):
    """oslo.config ignores keys it does not know; a typo in [tenantnet] would be lost
    silently. Refuse it, naming the file and the key."""
    import configparser
    known = {o.dest for o in OPTS} | {o.name for o in OPTS}
    for path in conf.config_file or []:
        parser = configparser.RawConfigParser(strict=False)
        try:
            parser.read(path)
        except configparser.Error:
            continue                 # oslo.config reports unparsable files itself
        if not parser.has_section(GROUP):
            continue
        for key in parser.options(GROUP):
            if key not in known and key not in parser.defaults():
                raise TenantnetError(f"{path}: [{GROUP}] {key}: unknown option (known: "
                                     f"{', '.join(sorted(o.dest for o in OPTS))})")


def _read_secret(path, what):
    try:
        with open(path) as fh:
            return fh.read().strip()
    except OSError as exc:
        raise TenantnetError(f"{what}: cannot read {path}: {exc.strerror}") from None


@dataclasses.dataclass(frozen=True)
class NodeNetns:
    """Where a lab node's host-side steps run: its namespace and OVS run directory."""
    netns: str
    rundir: Optional[str] = None


@dataclasses.dataclass(frozen=True)
class Settings:
    """Everything the provider's controller is started with."""
    config: str
    api_listen: Optional[str] = None
    api_socket: Optional[str] = None
    api_token: Optional[str] = None
    echo_interval: float = 1.0
    echo_max_unreplied: int = 3
    ovsdb_remotes: dict = dataclasses.field(default_factory=dict)
    node_netns: dict = dataclasses.field(default_factory=dict)   # node -> NodeNetns
    audit_interval: float = 30.0      # seconds between drift audits; 0: none
    node_retry_max: float = 8.0       # cap of the back-off between reconnect attempts
    pki_dir: str = "/etc/tenantnet/pki"   # tenantnet.pki layout; its provider/ is ours
    # callable(pusher, app, settings) -> core; None: tenantnet.controller.provider.build_core
    core_factory: Optional[Callable] = None

    @property
    def api_tcp(self):
        """(host, port) of api_listen, or None."""
        if not self.api_listen:
            return None
        host, sep, port = self.api_listen.rpartition(":")
        if not sep or not port.isdigit() or not 0 < int(port) < 65536:
            raise TenantnetError(f"api_listen {self.api_listen!r}: expected HOST:PORT")
        return (host.strip("[]") or "127.0.0.1", int(port))

    @classmethod
    def from_conf(cls, conf):
        """From oslo.config's [tenantnet] section (file or command line)."""
        register(conf)
        check_unknown_keys(conf)
        group = conf[GROUP]
        if not group.config:
            raise TenantnetError("no provider config: set [tenantnet] config = FILE in the "
                                 "--config-file, or pass --tenantnet-config FILE")
        token = group.api_token
        if group.api_token_file:
            token = _read_secret(group.api_token_file, "[tenantnet] api_token_file")
        hosts = {}
        for node, where in (group.node_netns or {}).items():
            netns, _, rundir = where.partition("@")
            if not netns:
                raise TenantnetError(f"[tenantnet] node_netns {node}: expected NETNS[@RUNDIR]")
            hosts[node] = NodeNetns(netns, rundir or None)
        settings = cls(config=group.config, api_listen=group.api_listen,
                       api_socket=group.api_socket, api_token=token,
                       echo_interval=group.echo_interval,
                       echo_max_unreplied=group.echo_max_unreplied,
                       ovsdb_remotes=dict(group.ovsdb_remote or {}), node_netns=hosts,
                       audit_interval=group.audit_interval,
                       node_retry_max=group.node_retry_max, pki_dir=group.pki_dir)
        settings.api_tcp     # refuse a malformed api_listen now, not when the API starts
        return settings

    def apply_to_openflow(self, conf):
        """Set os-ken's echo options from ours (read by every new switch connection).

        os-ken's own default never declares a silent switch dead."""
        conf.set_override("echo_request_interval", float(self.echo_interval))
        conf.set_override("maximum_unreplied_echo_requests", int(self.echo_max_unreplied))
