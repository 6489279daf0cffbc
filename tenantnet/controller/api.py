"""The controller's JSON HTTP API, served: placement of VMs, functions and chains, topology,
health and metrics.

FastAPI on uvicorn. The routes and their wire types are declared once, in
tenantnet.controller.apiroutes (with the OpenAPI document generated from them: `python -m
tenantnet.controller.api` writes docs/openapi.json); every route checks its request and maps
errors to statuses through tenantnet.controller.apirequest. This module serves them: one
ApiServer listens on TCP (optionally TLS) and/or on a unix socket (plain HTTP over AF_UNIX,
mode 0600 before it listens), in one event-loop thread of its own next to os-ken's native
threads; the service's blocking calls (a placement waits for the switches) run in a worker
thread each. Every error body is {"error": "<message>"} (wire.Error)."""

import asyncio
import json
import logging
import os
import socket
import stat
import threading
import time
import traceback

from tenantnet import __version__
from tenantnet.controller.apirequest import MAX_BODY, REQUEST_TIMEOUT, error_status, one_line
from tenantnet.controller.apiroutes import (build_app, openapi_document, openapi_text, routes,
                                            write_openapi)
from tenantnet.controller.metrics import Metrics
from tenantnet.errors import TenantnetError

# Users of the API import these from here too (they live where named above).
__all__ = ["ApiServer", "MAX_BODY", "error_status", "openapi_document", "openapi_text",
           "routes", "write_openapi"]

log = logging.getLogger("tenantnet.controller.api")

WORKER_THREADS = 200            # concurrent blocking calls (a batch of 80 placements at once)
LISTEN_BACKLOG = 128
# Answered while the gate is closed (the controller starting); everything else is 503.
OPEN_WHILE_STARTING = frozenset({"/v1/health", "/metrics", "/openapi.json"})


class _Frame:
    """ASGI wrapper of one listener: routing on the raw (percent-encoded) path with a
    trailing slash ignored, Connection: close and no-store on every answer, one access line
    and the API metrics per request, a JSON 503 (with Retry-After) while the server's gate is
    closed, except for OPEN_WHILE_STARTING, and a JSON 500 for anything that escaped."""

    def __init__(self, app, api, trusted):
        self.app, self.api, self.trusted = app, api, trusted

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.monotonic()
        raw = (scope.get("raw_path") or scope["path"].encode()).decode("latin-1")
        scope["tenantnet.path"] = raw
        scope["tenantnet.trusted"] = self.trusted
        scope["path"] = raw[:-1] if len(raw) > 1 and raw.endswith("/") else raw
        scope["raw_path"] = scope["path"].encode("latin-1")
        status = None

        async def framed(message):
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                headers = [(k, v) for k, v in message.get("headers", [])
                           if k.lower() not in (b"connection", b"cache-control")]
                # One request per connection: no idle keep-alive connections, clean stop().
                headers += [(b"connection", b"close"), (b"cache-control", b"no-store")]
                message = dict(message, headers=headers)
            await send(message)

        try:
            closed = None if scope["path"] in OPEN_WHILE_STARTING else self.api.gate_closed()
            if closed is not None:
                await _answer(framed, 503, {"error": closed}, [(b"retry-after", b"1")])
            else:
                await self.app(scope, receive, framed)
        except Exception as exc:  # noqa: BLE001
            if status is None:
                log.error("internal error on %s %s:\n%s", scope.get("method"), raw,
                          "".join(traceback.format_exception(exc)).rstrip())
                await _answer(framed, 500, {"error": f"internal error ({type(exc).__name__}); "
                                                     "see the controller log"})
        finally:
            elapsed = time.monotonic() - started
            client = scope.get("client")
            who = client[0] if client else "unix"
            query = scope.get("query_string", b"").decode("latin-1")
            log.info("%s %s %s%s -> %s (%.1f ms)", who, scope.get("method"), raw,
                     "?" + query if query else "", status, elapsed * 1000)
            if status is not None:
                self.api.metrics.api_answer(scope.get("method", "?"), status, elapsed)


async def _answer(send, status, body, headers=()):
    """Send one JSON answer of the frame's own (503 while starting, 500)."""
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"), *headers]})
    await send({"type": "http.response.body", "body": json.dumps(body).encode()})


# -- the server ----------------------------------------------------------------------------
def _prepare_unix_path(path):
    """Remove a stale socket file at *path*; refuse when it is live or not a socket."""
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        parent = os.path.dirname(path)
        if parent:
            os.makedirs(parent, mode=0o755, exist_ok=True)
        return
    if not stat.S_ISSOCK(st.st_mode):
        raise TenantnetError(f"{path} exists and is not a socket; refusing to replace it")
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    probe.settimeout(1.0)
    try:
        probe.connect(path)
    except OSError:
        os.unlink(path)     # nobody listens there: a leftover of a previous run
        log.info("removed stale API socket %s", path)
        return
    finally:
        probe.close()
    raise TenantnetError(f"another process is already serving the API on {path}")


class ApiServer:
    """Serve *service* over HTTP on *tcp* = (host, port) and/or the unix socket *unix_path*.

    *authorizer*, when given, is called as authorizer(headers, method, path) before each
    routed request; it returns None (or a principal) to allow it or raises
    PermissionError(message) to refuse it: 401 when the request carried no Authorization
    header, else 403 (an exception attribute `status` of 401 or 403 takes precedence).
    A principal is handed to service.for_principal(principal), which returns the view of
    the service that this caller may see and change.
    *unix_trusted*: requests on the unix socket (owner-only, mode 0600) skip the
    authorizer: whoever can open it is the controller's own user.
    *tls*: {"certfile", "keyfile", and optionally "ca_certs" (then a client certificate
    signed by it is required)}: the TCP listener serves HTTPS. The unix socket stays plain.
    *metrics*: a metrics.Metrics to serve at /metrics and count answers in; default the
    service's own (`service.metrics`), else a new one.
    *gate*: a callable that returns None while the service serves, or why it does not yet
    (the controller starting): then every request but OPEN_WHILE_STARTING's is answered 503
    with that message and Retry-After: 1. So the server can listen before the service is
    ready, and health says "starting" meanwhile."""

    def __init__(self, service, tcp=None, unix_path=None, authorizer=None, unix_trusted=False,
                 tls=None, metrics=None, gate=None):
        if tcp is None and unix_path is None:
            raise ValueError("ApiServer needs tcp=(host, port) and/or unix_path")
        self.service = service
        self.tcp = tuple(tcp) if tcp is not None else None
        self.unix_path = os.path.abspath(unix_path) if unix_path is not None else None
        self.authorizer = authorizer
        self.unix_trusted = unix_trusted
        self.tls = dict(tls) if tls else None
        self.metrics = metrics or getattr(service, "metrics", None) or Metrics()
        self.gate = gate
        self.app = build_app(self)
        self._sockets = []          # (kind, socket, identity)
        self._servers = []
        self._thread = None
        self._loop = None
        self._lock = threading.Lock()

    # -- used by the frame and the routes ------------------------------------------------
    def gate_closed(self):
        """None when requests are served, else why not (see *gate*)."""
        return None if self.gate is None else self.gate()

    def authorize(self, request):
        if self.authorizer is None:
            return None
        if self.unix_trusted and request.scope.get("tenantnet.trusted"):
            return None
        return self.authorizer(request.headers, request.method,
                               request.scope.get("tenantnet.path", request.url.path))

    def service_for(self, principal):
        service = self.service
        if principal is not None and hasattr(service, "for_principal"):
            service = service.for_principal(principal)   # e.g. one tenant's view
        return service

    # -- lifecycle -------------------------------------------------------------------
    def start(self):
        import uvicorn
        with self._lock:
            if self._thread is not None:
                raise RuntimeError("ApiServer already started")
            try:
                if self.tcp is not None:
                    self._sockets.append(("tcp", self._make_tcp(), None))
                if self.unix_path is not None:
                    sock, identity = self._make_unix()
                    self._sockets.append(("unix", sock, identity))
                for kind, sock, _ in self._sockets:
                    tls = self.tls if kind == "tcp" else None
                    config = uvicorn.Config(
                        _Frame(self.app, self, trusted=kind == "unix"), http=_protocol(),
                        lifespan="off", log_config=None, access_log=False,
                        backlog=LISTEN_BACKLOG, timeout_graceful_shutdown=2,
                        timeout_keep_alive=REQUEST_TIMEOUT, server_header=False,
                        headers=[("server", f"tenantnet/{__version__}")], log_level="warning",
                        **_tls_options(tls))
                    try:
                        config.load()
                    except (OSError, ValueError) as exc:   # ssl.SSLError is an OSError
                        raise TenantnetError(f"API TLS: cannot load the certificate or key "
                                             f"({one_line(exc)})") from exc
                    self._servers.append((uvicorn.Server(config), sock))
            except BaseException:
                self._close_sockets()
                self._servers = []
                raise
            ready = threading.Event()
            failure = []
            self._thread = threading.Thread(target=self._run, args=(ready, failure),
                                            name="tenantnet-api", daemon=True)
            self._thread.start()
            ready.wait(30)
            if failure or not all(s.started for s, _ in self._servers):
                self._stop_locked()
                raise TenantnetError(f"the API did not start: {failure[0] if failure else 'timeout'}")
        log.info("API listening on %s", ", ".join(self.endpoints))
        return self

    def _run(self, ready, failure):
        async def main():
            import anyio.to_thread
            anyio.to_thread.current_default_thread_limiter().total_tokens = WORKER_THREADS
            self._loop = asyncio.get_running_loop()
            tasks = [asyncio.create_task(server.serve(sockets=[sock]))
                     for server, sock in self._servers]

            async def announce():
                while not all(s.started for s, _ in self._servers):
                    if any(t.done() for t in tasks):
                        return
                    await asyncio.sleep(0.01)
                ready.set()
            await asyncio.gather(announce(), *tasks)
        try:
            asyncio.run(main())
        except BaseException as exc:  # noqa: BLE001 (SystemExit from uvicorn included)
            failure.append(one_line(exc) or type(exc).__name__)
            log.error("the API server stopped: %s", failure[-1])
        finally:
            ready.set()

    def stop(self):
        with self._lock:
            self._stop_locked()

    def _stop_locked(self):
        for server, _ in self._servers:
            server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout=10)
            self._thread = None
        self._servers = []
        self._close_sockets()

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()

    # -- addresses -------------------------------------------------------------------
    @property
    def tcp_address(self):
        """The bound (host, port) — useful with port 0 — or None."""
        for kind, sock, _ in self._sockets:
            if kind == "tcp":
                return sock.getsockname()[:2]
        return None

    @property
    def endpoints(self):
        """Endpoint strings for ApiClient, e.g. ["http://127.0.0.1:8080", "unix:/run/x"]."""
        out = []
        addr = self.tcp_address
        if addr is not None:
            host = f"[{addr[0]}]" if ":" in addr[0] else addr[0]
            out.append(f"{'https' if self.tls else 'http'}://{host}:{addr[1]}")
        if any(kind == "unix" for kind, _, _ in self._sockets):
            out.append(f"unix:{self.unix_path}")
        return out

    # -- internals -------------------------------------------------------------------
    def _make_tcp(self):
        host, port = self.tcp
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind((host, int(port)))
            sock.listen(LISTEN_BACKLOG)
        except OSError as exc:
            sock.close()
            raise TenantnetError(f"cannot listen on {host}:{port}: "
                                 f"{exc.strerror or exc}") from exc
        return sock

    def _make_unix(self):
        _prepare_unix_path(self.unix_path)
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.bind(self.unix_path)
            # listen() has not been called yet, so nobody can connect before the chmod.
            os.chmod(self.unix_path, 0o600)
            st = os.stat(self.unix_path)
            sock.listen(LISTEN_BACKLOG)
        except OSError as exc:
            sock.close()
            raise TenantnetError(f"cannot listen on unix socket {self.unix_path}: "
                                 f"{exc.strerror or exc}") from exc
        return sock, (st.st_dev, st.st_ino)

    def _close_sockets(self):
        for kind, sock, identity in self._sockets:
            sock.close()
            if kind == "unix":
                self._remove_socket(identity)
        self._sockets = []

    def _remove_socket(self, identity):
        """Delete the socket file, unless something else has replaced it meanwhile."""
        try:
            st = os.lstat(self.unix_path)
        except FileNotFoundError:
            return
        if (st.st_dev, st.st_ino) == identity:
            os.unlink(self.unix_path)


def _protocol():
    """uvicorn's h11 protocol, answering the requests it cannot parse itself (bad request
    line, headers, Content-Length) in JSON like every other error."""
    import sys
    from uvicorn.protocols.http.h11_impl import H11Protocol

    class Protocol(H11Protocol):
        def send_400_response(self, msg):
            import h11
            exc = sys.exc_info()[1]
            detail = str(exc) if isinstance(exc, h11.RemoteProtocolError) and str(exc) else msg
            if detail.startswith("bad "):
                detail = "invalid " + detail[4:]
            body = json.dumps({"error": one_line(f"invalid HTTP request: {detail}")}).encode()
            headers = [(b"content-type", b"application/json"), (b"connection", b"close"),
                       (b"content-length", str(len(body)).encode())]
            try:
                for event in (h11.Response(status_code=400, headers=headers, reason=b"Bad Request"),
                              h11.Data(data=body), h11.EndOfMessage()):
                    self.transport.write(self.conn.send(event))
            except h11.LocalProtocolError:
                pass
            self.transport.close()
    return Protocol


def _tls_options(tls):
    if not tls:
        return {}
    import ssl
    opts = {"ssl_certfile": tls["certfile"], "ssl_keyfile": tls.get("keyfile")}
    if tls.get("ca_certs"):
        opts.update(ssl_ca_certs=tls["ca_certs"], ssl_cert_reqs=ssl.CERT_REQUIRED)
    return opts


if __name__ == "__main__":  # python -m tenantnet.controller.api [PATH]: regenerate docs/openapi.json
    import sys
    print(write_openapi(sys.argv[1] if len(sys.argv) > 1 else "docs/openapi.json"))
