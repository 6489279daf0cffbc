"""Run os-ken apps without osken-manager (os-ken 4.x ships none), with clean shutdown.

run_controller() is the foreground entry point (returns on SIGTERM/SIGINT);
ControllerRuntime is the same thing startable in a background thread (tests, lab).

os-ken pitfalls handled here (native hub):
  * oslo CONF must be parsed exactly once, after every module that registers CLI options
    is imported (os_ken.controller.controller does so at import) and with an explicit
    empty argv -- CONF() with no args parses sys.argv (e.g. pytest's).
  * maximum_unreplied_echo_requests defaults to 0 = no echo at all: a switch that hangs
    or silently drops off is never declared DEAD. We always enable echo.
  * The listening socket is private to OpenFlowController.server_loop and its accept
    loop never ends; hub threads are non-daemon and hub.kill() is a no-op, so a plain
    run_apps() can neither be stopped nor let the process exit. We install our own
    StreamServer (controller.oflisten) whose accept loop stops when asked, which binds
    only when the runtime's listen gate is open (hold_listening), and we keep the
    Datapath objects so their sockets can be shut down.
  * A connection's send thread sleeps in send_q.get() and is only woken by a message
    to send: when the switch closes the TCP connection, serve() waits for that thread
    forever before declaring DEAD (no DEAD event at all with echo off; with echo on, up
    to two echo intervals late), and after an echo timeout the send and receive threads
    of the dead connection leak. Our Datapath subclass declares DEAD as soon as the
    receive loop ends and wakes the send thread.
  * run_apps() ends with `t.kill()` on its service threads; native HubThread has no
    kill(), so it raises AttributeError after everything was already closed: we run the
    same steps without it (ControllerRuntime._run_apps), which also hands our contexts
    (the tenantnet Settings) to the apps.
"""

import contextlib
import ctypes
import logging
import os
import signal
import socket
import threading

from tenantnet.controller import ofconn, oflisten, threaddump
from tenantnet.errors import TenantnetError

LOG = logging.getLogger("tenantnet.controller.runner")

DEFAULT_APPS = ("tenantnet.app",)
CLONE_NEWNET = 0x40000000

_ACTIVE = None                     # the ControllerRuntime whose apps are running
_ACTIVE_LOCK = threading.Lock()


def os_ken_version():
    """The installed os-ken's version string."""
    from importlib import metadata
    try:
        return metadata.version("os-ken")
    except metadata.PackageNotFoundError:
        return "(unknown version)"


def configure(listen_host=None, listen_port=None, echo_interval=None,
              echo_max_unreplied=None):
    """Parse os-ken's CONF once (empty argv, unless a manager parsed it already) and
    override the OpenFlow options that are given (None: leave as parsed)."""
    from os_ken import cfg
    import os_ken.base.app_manager  # noqa: F401  first: os-ken's modules import it circularly
    import os_ken.controller.controller  # noqa: F401  registers ofp-* CLI options
    import os_ken.controller.ofp_handler  # noqa: F401
    conf = cfg.CONF
    if getattr(conf, "_namespace", None) is None:
        conf([], project="os_ken", default_config_files=[])
    for name, value in (("ofp_listen_host", listen_host), ("ofp_tcp_listen_port", listen_port),
                        ("echo_request_interval", echo_interval),
                        ("maximum_unreplied_echo_requests", echo_max_unreplied)):
        if value is not None:
            conf.set_override(name, value)
    return conf


def raise_open_files_limit():
    """Raise this process's soft limit of open files to its hard limit, and return it.

    Every bridge is one OpenFlow connection and every node one OVSDB connection: a
    controller of a few hundred tenant bridges passes the common soft limit of 1,024, and
    then an accept() fails with EMFILE (OVS, which backs off, would retry forever). The
    hard limit is the administrator's bound and stays as it is."""
    import resource
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or soft < hard:
        want = hard if hard != resource.RLIM_INFINITY else max(soft, 1 << 20)
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))
            soft = want
        except (ValueError, OSError) as exc:
            LOG.warning("could not raise the open files limit from %d to %d: %s",
                        soft, want, exc)
    return soft


def enter_netns(name):
    """Move the *calling thread* into network namespace /run/netns/<name>.

    Threads it creates afterwards inherit the namespace; other threads are unaffected."""
    libc = ctypes.CDLL(None, use_errno=True)
    fd = os.open(f"/run/netns/{name}", os.O_RDONLY)
    try:
        if libc.setns(fd, CLONE_NEWNET) != 0:
            err = ctypes.get_errno()
            raise OSError(err, f"setns({name}): {os.strerror(err)}")
    finally:
        os.close(fd)


def _connections():
    """The running runtime's number of switch connections (1 without one)."""
    runtime = _ACTIVE
    return runtime.connections() if runtime is not None else 1


class ControllerRuntime:
    """os-ken AppManager.run_apps(app_modules) with start/stop.

    start() runs it in a daemon thread (entering *netns* first when given) and returns
    once the OpenFlow port listens; run() runs it in the calling thread; stop() (or
    request_stop(), safe from a signal handler) ends it and closes switch connections."""

    def __init__(self, app_modules=DEFAULT_APPS, listen_host=None, listen_port=None,
                 echo_interval=None, echo_max_unreplied=None, netns=None, contexts=None):
        """*contexts*: extra keyword arguments for every app's constructor (os-ken
        contexts), e.g. {"tenantnet_settings": Settings(...)}. Listen and echo options
        left at None keep what os-ken's CONF holds (a manager's command line, or the
        defaults)."""
        self.app_modules = list(app_modules)
        self.contexts = dict(contexts or {})
        self.listen_host = listen_host
        self.listen_port = listen_port
        self.echo_interval = echo_interval
        self.echo_max_unreplied = echo_max_unreplied
        self.netns = netns
        self.stopping = False
        self.listen_gate = oflisten.ListenGate()   # see hold_listening()
        self._lock = threading.Lock()
        self._servers = []
        self._datapaths = set()
        self._listening = threading.Event()
        self._finished = threading.Event()
        self._error = None
        self._thread = None

    # -- hooks called from the tracked server -------------------------------------------
    def listening_on(self, server):
        with self._lock:
            self._servers.append(server)
            stop_now = self.stopping
        self._listening.set()
        if stop_now:
            self._shutdown_servers()

    def listen_failed(self, listen_info, exc):
        self._error = f"cannot listen on {listen_info[0]}:{listen_info[1]}: {exc}"
        LOG.error("%s", self._error)

    def handle_connection(self, sock, address):
        # os_ken.controller.controller.datapath_connection_factory, keeping the Datapath.
        dp = ofconn.datapath_class(_connections)(sock, address)
        with self._lock:
            self._datapaths.add(dp)
        try:
            with contextlib.closing(dp):
                dp.serve()
        except Exception:
            LOG.exception("connection from %s failed", address)
        finally:
            with self._lock:
                self._datapaths.discard(dp)

    # -- lifecycle ---------------------------------------------------------------------
    def _prepare(self):
        global _ACTIVE
        with _ACTIVE_LOCK:
            if _ACTIVE is not None and not _ACTIVE._finished.is_set():
                raise RuntimeError("an os-ken controller is already running in this process")
            _ACTIVE = self
        configure(self.listen_host, self.listen_port, self.echo_interval,
                  self.echo_max_unreplied)
        raise_open_files_limit()
        oflisten.install(lambda: _ACTIVE)

    def run(self):
        """Run the apps in this thread until request_stop()/stop()."""
        from os_ken.base.app_manager import AppManager
        if _ACTIVE is not self:
            self._prepare()
        try:
            if self.netns:
                enter_netns(self.netns)
            self._run_apps(AppManager.get_instance())
        except TenantnetError as exc:     # a setting or start-up problem: one clear line
            self._error = self._error or str(exc)
            LOG.error("%s", exc)
            raise
        except Exception as exc:
            self._error = self._error or f"controller failed: {exc}"
            LOG.exception("controller failed")
            raise
        finally:
            if self._error is None and not self._listening.is_set() and not self.stopping:
                self._error = "controller stopped before listening"
            self._close_datapaths()
            self._finished.set()
            self._listening.set()

    def _run_apps(self, app_mgr):
        """AppManager.run_apps with our contexts, minus its final t.kill() (see above)."""
        import gc
        from os_ken.lib import hub
        # AppManager is a process-wide singleton whose close() keeps the classes it loaded:
        # an earlier runtime's apps would be started again next to ours.
        app_mgr.applications_cls.clear()
        app_mgr.contexts_cls.clear()
        app_mgr.load_apps(self.app_modules)
        contexts = app_mgr.create_contexts()
        contexts.update(self.contexts)
        services = app_mgr.instantiate_apps(**contexts)
        try:
            hub.joinall(services)
        finally:
            app_mgr.close()
            hub.joinall(services)
            gc.collect()

    def start(self, timeout=30):
        """Run in a background thread; return once the OpenFlow port listens (RuntimeError
        if it fails). An app that holds the listen gate (tenantnet.app, until its core
        reached and reconciled the nodes) makes that later."""
        self._prepare()
        self._thread = threading.Thread(target=self._run_quietly, name="tenantnet-of",
                                        daemon=True)
        self._thread.start()
        if not self._listening.wait(timeout):
            self.stop()
            raise RuntimeError("controller did not start listening in time")
        if self._error:
            self.stop()
            raise RuntimeError(self._error)
        return self

    def _run_quietly(self):
        try:
            self.run()
        except Exception:
            pass                      # already logged and kept in self._error

    def request_stop(self):
        """Ask the controller to stop (non-blocking; safe from a signal handler)."""
        self.stopping = True
        self.listen_gate.force_open()     # a server waiting to bind goes on, and stops
        self._shutdown_servers()

    def _shutdown_servers(self):
        with self._lock:
            servers = list(self._servers)
        for server in servers:
            with contextlib.suppress(OSError):
                server.server.shutdown(socket.SHUT_RDWR)   # wakes the blocked accept()
            with contextlib.suppress(OSError):
                server.server.close()

    def _close_datapaths(self):
        with self._lock:
            dps = list(self._datapaths)
        for dp in dps:
            with contextlib.suppress(OSError):
                dp.socket.shutdown(socket.SHUT_RDWR)
            with contextlib.suppress(Exception):
                dp._wake_send_loop()

    def stop(self, timeout=10):
        self.request_stop()
        if self._thread is not None:
            self._thread.join(timeout)
        self._close_datapaths()

    @property
    def running(self):
        return self._listening.is_set() and not self._finished.is_set()

    @staticmethod
    def app(name):
        """The running app instance by class name, e.g. "TenantnetApp"."""
        from os_ken.base.app_manager import AppManager
        return AppManager.get_instance().applications.get(name)

    def connections(self):
        with self._lock:
            return len(self._datapaths)


def hold_listening():
    """Keep the running controller's OpenFlow port closed until the returned function is
    called (controller.oflisten.ListenGate): an app that must be ready before switches
    connect holds it from its constructor. Without our runtime (another manager loaded the
    app): a no-op."""
    runtime = _ACTIVE
    if runtime is None:
        return lambda: None
    return runtime.listen_gate.hold()


def fail(error):
    """Stop the running controller because of *error* (reported by run_controller)."""
    runtime = _ACTIVE
    if runtime is None:
        return
    runtime._error = runtime._error or error
    runtime.request_stop()


def run_controller(app_modules=DEFAULT_APPS, contexts=None, **options):
    """Run the os-ken apps in the foreground; return after SIGTERM or SIGINT.

    *options* are ControllerRuntime's listen and echo options. A switch that stops
    answering echo requests is declared dead after
    echo_interval * (echo_max_unreplied + 1) to echo_interval * (echo_max_unreplied + 2)
    seconds; a closed TCP connection is seen at once. Above ECHO_BUDGET * echo_interval
    connections (200 at 1 s) the interval grows with their number (ofconn.echo_interval)."""
    runtime = ControllerRuntime(app_modules, contexts=contexts, **options)

    def on_signal(signum, _frame):
        LOG.info("signal %s: stopping", signal.Signals(signum).name)
        runtime.request_stop()

    old = {s: signal.signal(s, on_signal) for s in (signal.SIGTERM, signal.SIGINT)}
    threaddump.dump_threads_on(signal.SIGUSR1)
    try:
        runtime.run()
    finally:
        for s, handler in old.items():
            signal.signal(s, handler)
    if runtime._error:
        raise RuntimeError(runtime._error)
    return runtime
