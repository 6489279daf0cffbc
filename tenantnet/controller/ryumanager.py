"""`ryu-manager`: the classic Ryu manager's usage, on os-ken's AppManager.

    ryu-manager [--config-file F ...] [--ofp-listen-host H] [--ofp-tcp-listen-port P]
                [--verbose] [--default-log-level N] [--log-file F] [--app-lists A,B]
                APP [APP ...]

APP is a module by dotted name (tenantnet.app, ryu_apps.tenant_l2) or a file path
(./my_app.py). `ryu.` imports are served by os-ken (tenantnet.controller.ryucompat), so an
app written for Ryu loads unchanged. Options are oslo.config options, as in Ryu: every
command-line option can also be set in a --config-file ([DEFAULT] for os-ken's, the app's
own section for an app's, e.g. [tenantnet]); the command line wins.

The process runs until SIGTERM or SIGINT, then closes every switch connection. Failures
are one line on stderr and a non-zero exit, never a traceback.
"""

import logging
import os
import sys

from oslo_config import cfg as oslo_cfg

import tenantnet
from tenantnet.errors import TenantnetError

LOG = logging.getLogger("tenantnet.ryumanager")
PROG = "ryu-manager"
DEFAULT_APP = "os_ken.controller.ofp_handler"   # Ryu's default: just the OpenFlow handler


def version():
    from tenantnet.controller.runner import os_ken_version
    return f"{PROG} (tenantnet {tenantnet.__version__}, os-ken {os_ken_version()})"


def _register(conf):
    import os_ken.base.app_manager  # noqa: F401  first: os-ken's modules import it circularly
    import os_ken.controller.controller  # noqa: F401  --ofp-* options
    import os_ken.controller.ofp_handler  # noqa: F401
    import os_ken.log  # noqa: F401  --verbose, --default-log-level, --log-file, ...
    from tenantnet.controller import settings
    settings.register(conf)              # [tenantnet] (--tenantnet-config, ...)
    conf.register_cli_opts([
        oslo_cfg.ListOpt("app-lists", default=[],
                         help="application module names to run (comma separated)"),
        oslo_cfg.MultiStrOpt("app", positional=True, default=[],
                             help="application module name (dotted) or file path to run"),
    ])


def parse(argv):
    """Parse *argv* into os-ken's CONF (once per process); return the app list."""
    from os_ken import cfg
    conf = cfg.CONF
    _register(conf)
    try:
        conf(args=list(argv), prog=PROG, project="ryu", version=version(),
             default_config_files=[])
    except oslo_cfg.ConfigFilesNotFoundError as exc:
        raise TenantnetError(f"config file not found: {', '.join(exc.config_files)}") from None
    except oslo_cfg.ConfigFileParseError as exc:
        raise TenantnetError(f"{exc.config_file}: {exc.msg}") from None
    except oslo_cfg.Error as exc:
        raise TenantnetError(str(exc).strip()) from None
    apps = list(conf.app_lists) + list(conf.app)
    return apps or [DEFAULT_APP]


def _init_logging():
    from os_ken import cfg, log
    conf = cfg.CONF
    log.early_init_log(logging.DEBUG if conf.verbose else logging.INFO)
    log.init_log()
    if conf.default_log_level is None and not conf.verbose:
        logging.getLogger().setLevel(logging.INFO)
    fmt = logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s")
    for handler in logging.getLogger().handlers:
        handler.setFormatter(fmt)


def check_apps(apps):
    """Import every app module now, so that a missing one is one clear line."""
    from os_ken import utils
    from tenantnet.controller import ryucompat
    for app in apps:
        if app.endswith(".py") and not os.path.exists(app):
            raise TenantnetError(f"app {app}: no such file")
        try:
            utils.import_module(app)
        except ryucompat.MissingRyuModule as exc:
            raise TenantnetError(f"app {app} cannot be loaded: {exc}") from None
        except ImportError as exc:
            raise TenantnetError(f"app {app} cannot be loaded: {exc}") from None
        except SyntaxError as exc:
            raise TenantnetError(f"app {app}: syntax error in {exc.filename} line "
                                 f"{exc.lineno}: {exc.msg}") from None
        except Exception as exc:  # noqa: BLE001 -- whatever the app's import raised
            import traceback
            where = traceback.extract_tb(exc.__traceback__)[-1]
            raise TenantnetError(f"app {app} failed to import: {type(exc).__name__}: {exc} "
                                 f"({where.filename} line {where.lineno})") from None


def run(argv, contexts=None):
    """Parse *argv*, load the apps and run them until SIGTERM/SIGINT."""
    from tenantnet.controller import ryucompat, runner
    ryucompat.install()
    apps = parse(argv)
    _init_logging()
    check_apps(apps)
    LOG.info("%s: loading %s", version(), ", ".join(apps))
    try:
        runner.run_controller(apps, contexts=contexts)
    except RuntimeError as exc:
        raise TenantnetError(f"stopped: {exc}") from None
    except TenantnetError:
        raise
    return 0


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    try:
        return run(argv)
    except TenantnetError as exc:
        print(f"{PROG}: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
