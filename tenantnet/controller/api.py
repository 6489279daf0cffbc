"""The controller's JSON HTTP API: placement of VMs, topology and health.

Standard library only (http.server). One ApiServer listens on TCP and/or on a unix socket
(HTTP over AF_UNIX, mode 0600), serves each request in its own daemon thread and maps the
service's errors onto HTTP status codes:

    ConfigError            400   bad input
    PermissionError        401 / 403 (from the authorizer hook)
    PlacementError         err.status (404 unknown VM, 409 conflict, ...) when it is an
                           int in 400..599, else 409
    other TenantnetError   502   the switches (OVSDB / OpenFlow) refused or timed out
    anything else          500   one-line message; the traceback goes to the log only

Every error body is {"error": "<message>"}. The routes and their schemas are described by
openapi_document(), served at GET /openapi.json and written to docs/openapi.json by
write_openapi().
"""

import http.server
import json
import logging
import os
import socket
import stat
import threading
import time
import traceback
from urllib.parse import quote, unquote, urlsplit

from tenantnet import __version__
from tenantnet.errors import ConfigError, PlacementError, TenantnetError

log = logging.getLogger("tenantnet.controller.api")

MAX_BODY = 1024 * 1024          # bytes; larger request bodies get 413
_DRAIN_LIMIT = 4 * MAX_BODY     # an oversized body up to this size is read and dropped so
                                # the client sees the 413 instead of a connection reset
REQUEST_TIMEOUT = 30            # seconds a client may take to send its request
REQUEST_FIELDS = ("name", "network", "node", "mac", "ip")
REQUIRED_FIELDS = ("name", "network", "node")
SOURCE = "api"                  # ConfigError source for errors found in API input

# (method, route) -> handler method name. A route's "{name}" segment matches one path
# segment (percent-decoded).
ROUTES = {
    ("GET", "/v1/health"): "_health",
    ("GET", "/v1/vms"): "_list_vms",
    ("POST", "/v1/vms"): "_add_vm",
    ("GET", "/v1/vms/{name}"): "_get_vm",
    ("DELETE", "/v1/vms/{name}"): "_del_vm",
    ("GET", "/v1/topology"): "_topology",
    ("GET", "/openapi.json"): "_openapi",
}


class HttpError(Exception):
    """An error answer decided by the API layer itself (not by the service)."""

    def __init__(self, status, message, headers=None):
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers = headers or {}


def match_route(path):
    """Return (route, params) for *path* (no query string), or (None, None)."""
    if len(path) > 1 and path.endswith("/"):
        path = path[:-1]
    raw = path.split("/")
    for route in {r for _, r in ROUTES}:
        parts = route.split("/")
        if len(parts) != len(raw):
            continue
        params = {}
        for want, got in zip(parts, raw):
            if want.startswith("{") and want.endswith("}"):
                value = unquote(got)
                if not value:
                    break
                params[want[1:-1]] = value
            elif want != got:
                break
        else:
            return route, params
    return None, None


def check_vm_request(body):
    """Validate the shape of a POST /v1/vms body (the service checks the meaning)."""
    if not isinstance(body, dict):
        raise ConfigError(SOURCE, None, f"the request body must be a JSON object, "
                                        f"not {type(body).__name__}")
    unknown = sorted(set(body) - set(REQUEST_FIELDS))
    if unknown:
        raise ConfigError(SOURCE, unknown[0], "unknown field (allowed: "
                                              + ", ".join(REQUEST_FIELDS) + ")")
    for key in REQUIRED_FIELDS:
        if key not in body or body[key] in (None, ""):
            raise ConfigError(SOURCE, key, "required")
    for key in REQUEST_FIELDS:
        value = body.get(key)
        if value is not None and not isinstance(value, str):
            raise ConfigError(SOURCE, key, f"must be a string, not {type(value).__name__}")
    return {k: v for k, v in body.items() if v is not None}


def error_status(exc):
    """The HTTP status for an exception raised by the service or the authorizer."""
    if isinstance(exc, ConfigError):
        return 400
    if isinstance(exc, PlacementError):
        status = getattr(exc, "status", None)
        if isinstance(status, int) and not isinstance(status, bool) and 400 <= status <= 599:
            return status
        return 409
    if isinstance(exc, TenantnetError):
        return 502
    return 500


def _one_line(text, limit=300):
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[:limit - 3] + "..."


class _Handler(http.server.BaseHTTPRequestHandler):
    """One request. self.server.api is the ApiServer."""

    protocol_version = "HTTP/1.1"
    server_version = f"tenantnet/{__version__}"
    sys_version = ""
    timeout = REQUEST_TIMEOUT
    error_content_type = "application/json"

    # -- plumbing --------------------------------------------------------------------
    def address_string(self):
        addr = self.client_address
        if isinstance(addr, tuple) and addr:
            return str(addr[0])
        return "unix"

    def log_message(self, format, *args):  # noqa: A002 (signature of the base class)
        log.debug("%s %s", self.address_string(), format % args)

    def log_request(self, code="-", size="-"):
        pass  # one access line per request is written by _dispatch

    def send_error(self, code, message=None, explain=None):
        """Errors detected by BaseHTTPRequestHandler itself (bad request line, headers too
        large, unsupported method, ...): answer them in JSON too."""
        try:
            short = message or self.responses.get(code, ("error",))[0]
        except Exception:
            short = "error"
        self.close_connection = True
        if code == 501:            # an HTTP method no route uses
            code = 405
            short = f"method {self.command} not allowed"
        self._send_json(code, {"error": _one_line(short)})

    def _send_json(self, status, payload, headers=None):
        body = (json.dumps(payload, indent=None, sort_keys=False) + "\n").encode()
        self._status = status
        try:
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Cache-Control", "no-store")
            for key, value in (headers or {}).items():
                self.send_header(key, value)
            # One request per connection: no idle keep-alive threads, clean stop().
            self.send_header("Connection", "close")
            self.close_connection = True
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(body)
            self.wfile.flush()
        except (BrokenPipeError, ConnectionResetError):
            log.debug("client went away before the answer (%d) was sent", status)

    # -- request body ----------------------------------------------------------------
    def _read_body(self):
        """The request body as bytes (b"" when there is none)."""
        if self.headers.get("Transfer-Encoding"):
            raise HttpError(411, "chunked request bodies are not supported; send Content-Length")
        length = self._content_length()
        if length > MAX_BODY:
            raise HttpError(413, f"request body too large: {length} bytes "
                                 f"(limit {MAX_BODY} bytes)")
        self._body_consumed = True
        try:
            data = self.rfile.read(length) if length else b""
        except TimeoutError:
            raise HttpError(408, f"timed out reading the request body "
                                 f"({REQUEST_TIMEOUT} s)") from None
        if len(data) != length:
            raise HttpError(400, f"request body ended after {len(data)} of {length} bytes")
        return data

    def _content_length(self):
        length = self.headers.get("Content-Length")
        if length is None:
            return 0
        try:
            value = int(length)
            if value < 0:
                raise ValueError
        except ValueError:
            self._body_consumed = True      # nothing sensible to drain
            raise HttpError(400, f"invalid Content-Length: {length!r}") from None
        return value

    def _drain(self):
        """After an error answer given before the body was read (404, 405, 401, 413, ...):
        read and drop a not-too-large body, so that closing the connection with unread
        data does not reset it before the client has read the answer."""
        if getattr(self, "_body_consumed", True):
            return
        self._body_consumed = True
        if self.headers.get("Transfer-Encoding"):
            # Unknown length: end our side, then read until the client closes (bounded).
            remaining = _DRAIN_LIMIT
            try:
                self.wfile.flush()
                self.connection.shutdown(socket.SHUT_WR)
            except OSError:
                return
        else:
            try:
                remaining = self._content_length()
            except HttpError:
                return
            if not remaining or remaining > _DRAIN_LIMIT:
                return
        try:
            self.connection.settimeout(2.0)
            while remaining > 0:
                chunk = self.rfile.read1(min(remaining, 65536))
                if not chunk:
                    break
                remaining -= len(chunk)
        except OSError:
            pass

    def _json_body(self):
        data = self._read_body()
        ctype = self.headers.get("Content-Type", "")
        mime = ctype.split(";", 1)[0].strip().lower()
        if mime != "application/json" and not mime.endswith("+json"):
            raise HttpError(400, "Content-Type must be application/json"
                                 + (f" (got {ctype!r})" if ctype else " (none given)"))
        if not data.strip():
            raise HttpError(400, "empty request body: expected a JSON object")
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError:
            raise HttpError(400, "request body is not valid UTF-8") from None
        try:
            return json.loads(text)
        except json.JSONDecodeError as exc:
            raise HttpError(400, f"malformed JSON in request body: {exc.msg} "
                                 f"(line {exc.lineno} column {exc.colno})") from None

    # -- dispatch --------------------------------------------------------------------
    def _dispatch(self):
        started = time.monotonic()
        self._status = None
        self._body_consumed = False
        api = self.server.api
        try:
            path = urlsplit(self.path).path or "/"
            route, params = match_route(path)
            if route is None:
                raise HttpError(404, f"no such route: {path}")
            handler = ROUTES.get((self.command, route))
            if handler is None:
                allowed = sorted(m for m, r in ROUTES if r == route)
                raise HttpError(405, f"method {self.command} not allowed on {route} "
                                     f"(allowed: {', '.join(allowed)})",
                                headers={"Allow": ", ".join(allowed)})
            principal = None
            trusted = api.unix_trusted and isinstance(self.server, _UnixServer)
            if api.authorizer is not None and not trusted:
                try:
                    principal = api.authorizer(self.headers, self.command, path)
                except PermissionError as exc:
                    status = getattr(exc, "status", None)
                    if status not in (401, 403):
                        status = 403 if self.headers.get("Authorization") else 401
                    raise HttpError(status, _one_line(str(exc) or "not authorized")) from None
            body = None
            if self.command == "POST":
                body = self._json_body()
            else:
                self._read_body()   # drain (and size-check) any body sent with GET/DELETE
            service = api.service
            if principal is not None and hasattr(service, "for_principal"):
                service = service.for_principal(principal)   # e.g. one tenant's view
            status, payload, headers = getattr(self, handler)(service, params, body)
            self._send_json(status, payload, headers)
        except HttpError as exc:
            self._send_json(exc.status, {"error": exc.message}, exc.headers)
            self._drain()
        except Exception as exc:  # noqa: BLE001 (every failure becomes one JSON error)
            status = error_status(exc)
            if status == 500:
                log.error("internal error on %s %s:\n%s", self.command, self.path,
                          traceback.format_exc().rstrip())
                message = f"internal error ({type(exc).__name__}: {_one_line(exc, 200)}); " \
                          "see the controller log"
            else:
                message = _one_line(exc, 2000) or type(exc).__name__
            self._send_json(status, {"error": message})
            self._drain()
        finally:
            log.info("%s %s %s -> %s (%.1f ms)", self.address_string(), self.command,
                     self.path, self._status, (time.monotonic() - started) * 1000)

    do_GET = do_POST = do_DELETE = do_PUT = do_PATCH = do_HEAD = do_OPTIONS = _dispatch

    # -- routes: each returns (status, payload, headers) -------------------------------
    @staticmethod
    def _health(service, params, body):
        return 200, service.health(), None

    @staticmethod
    def _list_vms(service, params, body):
        return 200, list(service.list_vms()), None

    @staticmethod
    def _add_vm(service, params, body):
        spec = check_vm_request(body)
        vm = service.add_vm(spec)
        name = vm.get("name", spec["name"]) if isinstance(vm, dict) else spec["name"]
        return 201, vm, {"Location": "/v1/vms/" + quote(str(name), safe="")}

    @staticmethod
    def _get_vm(service, params, body):
        return 200, service.get_vm(params["name"]), None

    @staticmethod
    def _del_vm(service, params, body):
        return 200, service.del_vm(params["name"]), None

    @staticmethod
    def _topology(service, params, body):
        return 200, service.topology(), None

    @staticmethod
    def _openapi(service, params, body):
        return 200, openapi_document(), None


class _TcpServer(http.server.ThreadingHTTPServer):
    # A batch of placements arrives at once (the experiment sends 80): the default listen
    # backlog of 5 would refuse most of them.
    request_queue_size = 128
    daemon_threads = True
    allow_reuse_address = True


class _Tcp6Server(_TcpServer):
    address_family = socket.AF_INET6


class _UnixServer(http.server.ThreadingHTTPServer):
    request_queue_size = 128
    """HTTP over a unix stream socket; the socket file is mode 0600 before it listens."""

    address_family = socket.AF_UNIX
    daemon_threads = True
    allow_reuse_address = False

    def server_bind(self):
        self.socket.bind(self.server_address)
        # listen() has not been called yet, so nobody can connect before the chmod.
        os.chmod(self.server_address, 0o600)
        st = os.stat(self.server_address)
        self.socket_identity = (st.st_dev, st.st_ino)
        self.server_name = "localhost"
        self.server_port = 0

    def get_request(self):
        conn, _ = self.socket.accept()
        return conn, ("unix", 0)


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
    authorizer: whoever can open it is the controller's own user."""

    poll_interval = 0.05    # seconds; how soon stop() is noticed by the accept loops

    def __init__(self, service, tcp=None, unix_path=None, authorizer=None, unix_trusted=False):
        if tcp is None and unix_path is None:
            raise ValueError("ApiServer needs tcp=(host, port) and/or unix_path")
        self.service = service
        self.tcp = tuple(tcp) if tcp is not None else None
        self.unix_path = os.path.abspath(unix_path) if unix_path is not None else None
        self.authorizer = authorizer
        self.unix_trusted = unix_trusted
        self._servers = []
        self._threads = []
        self._lock = threading.Lock()

    # -- lifecycle -------------------------------------------------------------------
    def start(self):
        with self._lock:
            if self._servers:
                raise RuntimeError("ApiServer already started")
            try:
                if self.tcp is not None:
                    self._servers.append(("tcp", self._make_tcp()))
                if self.unix_path is not None:
                    self._servers.append(("unix", self._make_unix()))
            except BaseException:
                self._close_servers()
                raise
            for kind, server in self._servers:
                server.api = self
                thread = threading.Thread(target=server.serve_forever,
                                          kwargs={"poll_interval": self.poll_interval},
                                          name=f"tenantnet-api-{kind}", daemon=True)
                thread.start()
                self._threads.append(thread)
        log.info("API listening on %s", ", ".join(self.endpoints))
        return self

    def stop(self):
        with self._lock:
            for _, server in self._servers:
                server.shutdown()
            for thread in self._threads:
                thread.join(timeout=5)
            self._threads = []
            self._close_servers()

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()

    # -- addresses -------------------------------------------------------------------
    @property
    def tcp_address(self):
        """The bound (host, port) — useful with port 0 — or None."""
        for kind, server in self._servers:
            if kind == "tcp":
                return server.server_address[:2]
        return None

    @property
    def endpoints(self):
        """Endpoint strings for ApiClient, e.g. ["http://127.0.0.1:8080", "unix:/run/x"]."""
        out = []
        addr = self.tcp_address
        if addr is not None:
            host = f"[{addr[0]}]" if ":" in addr[0] else addr[0]
            out.append(f"http://{host}:{addr[1]}")
        if any(kind == "unix" for kind, _ in self._servers):
            out.append(f"unix:{self.unix_path}")
        return out

    # -- internals -------------------------------------------------------------------
    def _make_tcp(self):
        host, port = self.tcp
        cls = _Tcp6Server if ":" in host else _TcpServer
        try:
            return cls((host, int(port)), _Handler)
        except OSError as exc:
            raise TenantnetError(f"cannot listen on {host}:{port}: "
                                 f"{exc.strerror or exc}") from exc

    def _make_unix(self):
        _prepare_unix_path(self.unix_path)
        try:
            return _UnixServer(self.unix_path, _Handler)
        except OSError as exc:
            raise TenantnetError(f"cannot listen on unix socket {self.unix_path}: "
                                 f"{exc.strerror or exc}") from exc

    def _close_servers(self):
        for kind, server in self._servers:
            server.server_close()
            if kind == "unix":
                self._remove_socket(server)
        self._servers = []

    def _remove_socket(self, server):
        """Delete the socket file, unless something else has replaced it meanwhile."""
        try:
            st = os.lstat(self.unix_path)
        except FileNotFoundError:
            return
        if (st.st_dev, st.st_ino) == getattr(server, "socket_identity", None):
            os.unlink(self.unix_path)


# ---------------------------------------------------------------------------------------
# OpenAPI 3.0 description

def _error_response(description):
    return {"description": description,
            "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}}


def _ok(description, schema):
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def openapi_document():
    """The OpenAPI 3.0 document for this API, as a dict."""
    ref = lambda name: {"$ref": f"#/components/schemas/{name}"}  # noqa: E731
    err = lambda name: {"$ref": f"#/components/responses/{name}"}  # noqa: E731
    common = {"401": err("Unauthorized"), "403": err("Forbidden"),
              "500": err("InternalError")}
    name_param = {"$ref": "#/components/parameters/VmName"}
    return {
        "openapi": "3.0.3",
        "info": {
            "title": "tenantnet controller API",
            "version": __version__,
            "description": (
                "Place VMs on tenant networks and inspect the topology. The API listens "
                "on a unix socket (HTTP over AF_UNIX, mode 0600) and/or on TCP. Request "
                "and response bodies are JSON; every error body is {\"error\": "
                "\"<message>\"}. POST /v1/vms answers only once the placement is realised "
                "on the switches, so clients should allow a long timeout."),
        },
        "security": [{"bearer": []}],
        "paths": {
            "/v1/health": {"get": {
                "operationId": "health", "summary": "Controller health",
                "responses": {"200": _ok("Health of the controller and its switches",
                                         ref("Health")), **common}}},
            "/v1/vms": {
                "get": {
                    "operationId": "listVms", "summary": "List placed VMs",
                    "responses": {"200": _ok("All VMs", {"type": "array", "items": ref("VM")}),
                                  **common}},
                "post": {
                    "operationId": "addVm",
                    "summary": "Place a VM (returns once realised on the switches)",
                    "requestBody": {"required": True, "content": {
                        "application/json": {"schema": ref("VMRequest")}}},
                    "responses": {
                        "201": {**_ok("The VM, placed and realised", ref("VM")),
                                "headers": {"Location": {
                                    "description": "URL path of the new VM",
                                    "schema": {"type": "string"}}}},
                        "400": err("BadRequest"),
                        "404": err("NotFound"),
                        "409": err("Conflict"),
                        "411": err("LengthRequired"),
                        "413": err("PayloadTooLarge"),
                        "502": err("SouthboundError"),
                        **common}},
            },
            "/v1/vms/{name}": {
                "parameters": [name_param],
                "get": {
                    "operationId": "getVm", "summary": "One VM",
                    "responses": {"200": _ok("The VM", ref("VM")), "404": err("NotFound"),
                                  **common}},
                "delete": {
                    "operationId": "deleteVm", "summary": "Remove a VM",
                    "responses": {"200": _ok("The VM that was removed", ref("VM")),
                                  "404": err("NotFound"), "409": err("Conflict"),
                                  "502": err("SouthboundError"), **common}},
            },
            "/v1/topology": {"get": {
                "operationId": "topology", "summary": "Nodes, bridges, links and networks",
                "responses": {"200": _ok("The topology", ref("Topology")), **common}}},
            "/openapi.json": {"get": {
                "operationId": "openapi", "summary": "This document",
                "responses": {"200": _ok("OpenAPI 3.0 document", {"type": "object"})}}},
        },
        "components": {
            "parameters": {
                "VmName": {"name": "name", "in": "path", "required": True,
                           "description": "VM name (percent-encoded)",
                           "schema": {"type": "string", "minLength": 1}},
            },
            "schemas": {
                "VMRequest": {
                    "type": "object",
                    "required": list(REQUIRED_FIELDS),
                    "additionalProperties": False,
                    "properties": {
                        "name": {"type": "string", "minLength": 1, "example": "web1"},
                        "network": {"type": "string", "pattern": "^[^/]+/[^/]+$",
                                    "description": "tenant/network", "example": "acme/front"},
                        "node": {"type": "string", "minLength": 1, "example": "node1"},
                        "mac": {"type": "string", "nullable": True,
                                "pattern": "^[0-9A-Fa-f]{2}(:[0-9A-Fa-f]{2}){5}$",
                                "description": "chosen by the controller when omitted",
                                "example": "02:00:00:00:00:01"},
                        "ip": {"type": "string", "nullable": True,
                               "description": "IPv4 address, optionally with /prefix",
                               "example": "10.0.0.11/24"},
                    },
                },
                "VM": {
                    "type": "object",
                    "required": ["name", "network", "node", "mac", "port"],
                    "properties": {
                        "name": {"type": "string"},
                        "network": {"type": "string", "description": "tenant/network"},
                        "node": {"type": "string"},
                        "mac": {"type": "string"},
                        "ip": {"type": "string", "nullable": True},
                        "port": {"type": "string",
                                 "description": "the VM's port on the node's bridge"},
                        "kind": {"type": "string", "enum": ["vm"]},
                        "source": {"type": "string", "enum": ["config", "api"],
                                   "description": "where the VM was declared"},
                        "mode": {"type": "string", "enum": ["dnb", "cnb"],
                                 "description": "the network's mode (placement answers)"},
                        "bridges_created": {
                            "type": "boolean",
                            "description": "placement answers: the VM is its network's first "
                                           "on the node and (DNB) the tenant bridge pair, "
                                           "ex- endpoint and tunnels were created for it"},
                        "network_new_on_node": {"type": "boolean"},
                        "nodes_updated": {"type": "array", "items": {"type": "string"}},
                        "deleted": {"type": "boolean"},
                        "timings": ref("Timings"),
                    },
                },
                "Timings": {
                    "type": "object",
                    "description": "durations of the placement's steps, step name -> "
                                   "milliseconds",
                    "additionalProperties": {"type": "number"},
                },
                "Health": {"type": "object", "additionalProperties": True,
                           "description": "controller and switch status"},
                "Topology": {"type": "object", "additionalProperties": True,
                             "description": "nodes, bridges, links and tenant networks"},
                "Error": {
                    "type": "object", "required": ["error"],
                    "properties": {"error": {"type": "string",
                                             "description": "one-line message"}},
                },
            },
            "securitySchemes": {
                "bearer": {"type": "http", "scheme": "bearer",
                           "description": "on TCP: the provider's token (everything) or a "
                                          "tenant's (only its own networks and VMs); the "
                                          "owner-only unix socket needs none"},
            },
            "responses": {
                "BadRequest": _error_response("Bad input: malformed JSON, wrong Content-Type, "
                                              "missing or invalid field"),
                "Unauthorized": _error_response("No credentials given"),
                "Forbidden": _error_response("Credentials refused"),
                "NotFound": _error_response("Unknown VM, network or node"),
                "Conflict": _error_response("The placement cannot be carried out; nothing "
                                            "was changed"),
                "LengthRequired": _error_response("Chunked body: send Content-Length"),
                "PayloadTooLarge": _error_response(f"Body larger than {MAX_BODY} bytes"),
                "SouthboundError": _error_response("A switch (OVSDB / OpenFlow) refused or "
                                                   "timed out"),
                "InternalError": _error_response("Controller bug; details in its log"),
            },
        },
    }


def write_openapi(path):
    """Write the OpenAPI document to *path* (pretty-printed, stable key order)."""
    text = json.dumps(openapi_document(), indent=2) + "\n"
    parent = os.path.dirname(os.path.abspath(path))
    os.makedirs(parent, exist_ok=True)
    tmp = f"{path}.tmp"
    with open(tmp, "w", encoding="utf-8") as fh:
        fh.write(text)
    os.replace(tmp, path)
    return path


if __name__ == "__main__":  # python -m tenantnet.controller.api [PATH]: regenerate docs/openapi.json
    import sys
    print(write_openapi(sys.argv[1] if len(sys.argv) > 1 else "docs/openapi.json"))
