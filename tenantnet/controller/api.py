"""The controller's JSON HTTP API: placement of VMs, topology, health and metrics.

FastAPI on uvicorn. The routes and their wire types (tenantnet.controller.wire) are declared
once, below; the OpenAPI document is generated from them (openapi_document(), served at
GET /openapi.json and written to docs/openapi.json by write_openapi(): `python -m
tenantnet.controller.api`). One ApiServer listens on TCP (optionally TLS) and/or on a unix
socket (plain HTTP over AF_UNIX, mode 0600 before it listens), in one event-loop thread of
its own next to os-ken's native threads; the service's blocking calls (a placement waits for
the switches) run in a worker thread each.

The service's errors map onto HTTP status codes:

    ConfigError            400   bad input (also a body that does not fit wire.VMRequest)
    PermissionError        401 / 403 (from the authorizer hook)
    PlacementError         err.status (404 unknown VM, 409 conflict, 503 node down, ...)
                           when it is an int in 400..599, else 409
    other TenantnetError   502   the switches (OVSDB / OpenFlow) refused or timed out
    anything else          500   one-line message; the traceback goes to the log only

Every error body is {"error": "<message>"} (wire.Error)."""

import asyncio
import json
import logging
import os
import socket
import stat
import threading
import time
import traceback
from typing import Any
from urllib.parse import quote, unquote

from fastapi import APIRouter, Depends, FastAPI, Path, Request, Response
from fastapi.exceptions import RequestValidationError, ResponseValidationError
from fastapi.openapi.utils import get_openapi
from fastapi.responses import JSONResponse
from fastapi.routing import APIRoute
from starlette.exceptions import HTTPException as StarletteHTTPException

from tenantnet import __version__
from tenantnet.controller import wire
from tenantnet.controller.metrics import Metrics
from tenantnet.errors import ConfigError, PlacementError, TenantnetError

log = logging.getLogger("tenantnet.controller.api")

MAX_BODY = 1024 * 1024          # bytes; larger request bodies get 413
_DRAIN_LIMIT = 4 * MAX_BODY     # an oversized body up to this size is read and dropped so
                                # the client sees the 413 instead of a connection reset
REQUEST_TIMEOUT = 30            # seconds a client may take to send its request
SOURCE = "api"                  # ConfigError source for errors found in API input
WORKER_THREADS = 200            # concurrent blocking calls (a batch of 80 placements at once)
LISTEN_BACKLOG = 128

DESCRIPTION = (
    "Place VMs on tenant networks and inspect the topology. The API listens on a unix socket "
    "(HTTP over AF_UNIX, mode 0600, trusted) and/or on TCP (HTTPS when configured), where "
    "every route but the health and this document needs a Bearer token: the provider's "
    "(everything) or a tenant's (its own networks and VMs only). Request and response "
    "bodies are JSON; every error body is {\"error\": \"<message>\"}. POST /v1/vms answers "
    "only once the placement is realised on the switches, so clients should allow a long "
    f"timeout. Request bodies are limited to {MAX_BODY} bytes.")


class HttpError(Exception):
    """An error answer decided by the API layer itself (not by the service)."""

    def __init__(self, status, message, headers=None):
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers = headers or {}


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


def _error(status, message, headers=None):
    return JSONResponse({"error": message}, status_code=status, headers=headers)


# -- request bodies ------------------------------------------------------------------------
def _content_length(request):
    length = request.headers.get("content-length")
    if length is None:
        return 0
    try:
        value = int(length)
        if value < 0:
            raise ValueError
    except ValueError:
        raise HttpError(400, f"invalid Content-Length: {length!r}") from None
    return value


async def _read_body(request):
    """The request body as bytes, after the checks the old server made (411, 413, 408)."""
    if request.headers.get("transfer-encoding"):
        raise HttpError(411, "chunked request bodies are not supported; send Content-Length")
    length = _content_length(request)
    if length > MAX_BODY:
        raise HttpError(413, f"request body too large: {length} bytes (limit {MAX_BODY} bytes)")
    try:
        async with asyncio.timeout(REQUEST_TIMEOUT):
            return await request.body()
    except TimeoutError:
        raise HttpError(408, f"timed out reading the request body ({REQUEST_TIMEOUT} s)") \
            from None


async def _json_body(request):
    """Check that the body is one JSON object; FastAPI then validates it as the route's
    wire type (its errors become ConfigErrors naming the key path)."""
    data = await _read_body(request)
    ctype = request.headers.get("content-type", "")
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
        body = json.loads(text)
    except json.JSONDecodeError as exc:
        raise HttpError(400, f"malformed JSON in request body: {exc.msg} "
                             f"(line {exc.lineno} column {exc.colno})") from None
    if not isinstance(body, dict):
        raise ConfigError(SOURCE, None, "the request body must be a JSON object, not "
                                        + wire.json_type(body))
    return body


async def _drain(request):
    """After an error answer given before the body was read (404, 405, 401, 413, ...):
    read and drop a not-too-large body, so that closing the connection with unread data
    does not reset it before the client has read the answer."""
    chunked = bool(request.headers.get("transfer-encoding"))
    try:
        length = _content_length(request)
    except HttpError:
        return
    if not chunked and (not length or length > _DRAIN_LIMIT):
        return
    seen = 0
    try:
        async with asyncio.timeout(2.0):
            async for chunk in request.stream():
                seen += len(chunk)
                if seen > _DRAIN_LIMIT:
                    break
    except Exception:  # noqa: BLE001 -- consumed already, client gone, timeout: all fine
        pass


# -- the routes ---------------------------------------------------------------------------
class _Route(APIRoute):
    """Every route: the authorizer, the body checks and the error mapping around FastAPI's
    own handler (which validates with the wire types and serialises the answer)."""

    def get_route_handler(self):
        handler = super().get_route_handler()

        async def guarded(request):
            api = request.app.state.api
            body_read = False
            try:
                principal = api.authorize(request)
                if request.method == "POST":
                    body_read = True
                    await _json_body(request)
                elif request.headers.get("transfer-encoding") or _content_length(request):
                    body_read = True
                    await _read_body(request)      # size-checked, then ignored
                request.state.service = api.service_for(principal)
                return await handler(request)
            except HttpError as exc:
                if not body_read or exc.status in (411, 413):
                    await _drain(request)
                return _error(exc.status, exc.message, exc.headers)
            except RequestValidationError as exc:
                err = _validation_error(exc, _BODY_MODELS.get(
                    request.url.path.rstrip("/"), wire.VMRequest))
                return _error(400, str(err))
            except Exception as exc:  # noqa: BLE001 -- every failure becomes one JSON error
                if not body_read:
                    await _drain(request)
                return _exception_answer(request, exc)

        return guarded


def _validation_error(exc, model=wire.VMRequest):
    errors = exc.errors()
    # FastAPI reports a request body problem at ("body", key, ...), a path parameter at
    # ("path", name).
    body = [e for e in errors if tuple(e.get("loc", ()))[:1] == ("body",)]
    if body:
        return wire.config_error(body, SOURCE, model, strip=1)
    return wire.config_error(errors, SOURCE, strip=1)


def _exception_answer(request, exc):
    if isinstance(exc, PermissionError):
        status = getattr(exc, "status", None)
        if status not in (401, 403):
            status = 403 if request.headers.get("authorization") else 401
        return _error(status, _one_line(str(exc) or "not authorized"))
    status = error_status(exc)
    if status == 500:
        log.error("internal error on %s %s:\n%s", request.method, request.url.path,
                  "".join(traceback.format_exception(exc)).rstrip())
        if isinstance(exc, ResponseValidationError):
            exc = TypeError(f"the answer does not fit the API's types: {exc.errors()[:1]}")
        message = f"internal error ({type(exc).__name__}: {_one_line(exc, 200)}); " \
                  "see the controller log"
    else:
        message = _one_line(exc, 2000) or type(exc).__name__
    return _error(status, message)


async def _service(request: Request):
    return request.state.service


def _vm_name(name: str = Path(min_length=1, description="VM name (percent-encoded)")):
    value = unquote(name)
    if not value:
        raise PlacementError(f"unknown VM {value!r}", status=404)
    return value


def _responses(*statuses):
    meaning = {
        400: "Bad input: malformed JSON, wrong Content-Type, missing or invalid field",
        401: "No credentials given",
        403: "Credentials refused, or not allowed for this caller",
        404: "Unknown VM, network or node",
        409: "The placement cannot be carried out; nothing was changed",
        411: "Chunked body: send Content-Length",
        413: f"Body larger than {MAX_BODY} bytes",
        502: "A switch (OVSDB / OpenFlow) refused or timed out",
        503: "A node the placement needs is down; nothing was changed",
    }
    out = {s: {"model": wire.Error, "description": meaning[s]} for s in statuses}
    out["default"] = {"model": wire.Error, "description": "Any other error (500: a controller "
                                                         "bug; details in its log)"}
    return out


_AUTH = (401, 403)
_OPEN = {"security": []}
router = APIRouter(route_class=_Route)


@router.get("/v1/health", response_model=wire.Health, response_model_exclude_unset=True, operation_id="health",
            summary="Controller health", responses=_responses(*_AUTH), openapi_extra=_OPEN)
def health(svc=Depends(_service)):
    return svc.health()


@router.get("/v1/vms", response_model=list[wire.VM], response_model_exclude_unset=True, operation_id="listVms",
            summary="List placed VMs", responses=_responses(*_AUTH))
def list_vms(svc=Depends(_service)):
    return list(svc.list_vms())


@router.post("/v1/vms", response_model=wire.VM, response_model_exclude_unset=True, status_code=201, operation_id="addVm",
             summary="Place a VM (returns once realised on the switches)",
             response_description="The VM, placed and realised; Location: its URL path",
             responses=_responses(400, *_AUTH, 404, 409, 411, 413, 502, 503))
def add_vm(spec: wire.VMRequest, response: Response, svc=Depends(_service)):
    vm = svc.add_vm(spec.spec())
    name = vm.get("name", spec.name) if isinstance(vm, dict) else spec.name
    response.headers["Location"] = "/v1/vms/" + quote(str(name), safe="")
    return vm


@router.get("/v1/vms/{name}", response_model=wire.VM, response_model_exclude_unset=True, operation_id="getVm", summary="One VM",
            responses=_responses(*_AUTH, 404))
def get_vm(name: str = Depends(_vm_name), svc=Depends(_service)):
    return svc.get_vm(name)


@router.delete("/v1/vms/{name}", response_model=wire.VM, response_model_exclude_unset=True, operation_id="deleteVm",
               summary="Remove a VM", response_description="The VM that was removed",
               responses=_responses(*_AUTH, 404, 409, 502, 503))
def delete_vm(name: str = Depends(_vm_name), svc=Depends(_service)):
    return svc.del_vm(name)


_BODY_MODELS = {"/v1/vms": wire.VMRequest, "/v1/functions": wire.FunctionRequest,
                "/v1/chains": wire.ChainRequest}


def _fn_name(name: str = Path(min_length=1, description="function name (percent-encoded)")):
    return unquote(name)


def _chain_name(name: str = Path(min_length=1, description="chain name (percent-encoded)")):
    return unquote(name)


@router.get("/v1/functions", response_model=list[wire.Function],
            response_model_exclude_unset=True, operation_id="listFunctions",
            summary="List network functions", responses=_responses(*_AUTH))
def list_functions(svc=Depends(_service)):
    return list(svc.list_functions())


@router.post("/v1/functions", response_model=wire.Function, response_model_exclude_unset=True,
             status_code=201, operation_id="addFunction",
             summary="Add a network function (returns once realised on the switches)",
             responses=_responses(400, *_AUTH, 404, 409, 411, 413, 502, 503))
def add_function(spec: wire.FunctionRequest, response: Response, svc=Depends(_service)):
    fn = svc.add_function(spec.spec())
    response.headers["Location"] = "/v1/functions/" + quote(str(spec.name), safe="")
    return fn


@router.delete("/v1/functions/{name}", response_model=wire.Function,
               response_model_exclude_unset=True, operation_id="deleteFunction",
               summary="Remove a network function (chains stop using it first)",
               responses=_responses(*_AUTH, 404, 409, 502, 503))
def delete_function(name: str = Depends(_fn_name), svc=Depends(_service)):
    return svc.del_function(name)


@router.get("/v1/chains", response_model=list[wire.Chain], response_model_exclude_unset=True,
            operation_id="listChains", summary="List service chains",
            responses=_responses(*_AUTH))
def list_chains(svc=Depends(_service)):
    return list(svc.list_chains())


@router.post("/v1/chains", response_model=wire.Chain, response_model_exclude_unset=True,
             status_code=201, operation_id="addChain",
             summary="Add a service chain (returns once its flows are installed)",
             responses=_responses(400, *_AUTH, 404, 409, 411, 413, 502, 503))
def add_chain(spec: wire.ChainRequest, response: Response, svc=Depends(_service)):
    chain = svc.add_chain(spec.spec())
    response.headers["Location"] = "/v1/chains/" + quote(str(spec.name), safe="")
    return chain


@router.delete("/v1/chains/{name}", response_model=wire.Chain,
               response_model_exclude_unset=True, operation_id="deleteChain",
               summary="Remove a service chain (plain forwarding again)",
               responses=_responses(*_AUTH, 404, 409, 502, 503))
def delete_chain(name: str = Depends(_chain_name), svc=Depends(_service)):
    return svc.del_chain(name)


@router.get("/v1/topology", response_model=wire.Topology, response_model_exclude_unset=True, operation_id="topology",
            summary="Nodes, networks and VMs", responses=_responses(*_AUTH))
def topology(svc=Depends(_service)):
    return svc.topology()


@router.get("/metrics", operation_id="metrics", summary="Prometheus metrics",
            response_class=Response, responses={
                200: {"description": "Prometheus text format",
                      "content": {"text/plain": {"schema": {"type": "string"}}}},
                **_responses(*_AUTH)})
def metrics(request: Request, svc=Depends(_service)):
    api = request.app.state.api
    if svc is not api.service:
        raise PermissionError("the metrics are the provider's: use its token or the "
                              "unix socket")
    body, ctype = api.metrics.exposition()
    return Response(body, media_type=ctype)


@router.get("/openapi.json", response_model=dict[str, Any], operation_id="openapi",
            summary="This document", responses=_responses(*_AUTH), openapi_extra=_OPEN)
def openapi(request: Request):
    return request.app.openapi()


# -- the application ------------------------------------------------------------------------
def _allowed_methods(app, path):
    return sorted({m for r in app.routes if isinstance(r, APIRoute) and r.path_regex.match(path)
                   for m in r.methods})


async def _http_error(request, exc):
    """404 and 405 found by the router (no route, or a route without this method)."""
    path = request.scope.get("path", "")
    await _drain(request)
    if exc.status_code == 405:
        allowed = _allowed_methods(request.app, path)
        route = next((r.path for r in request.app.routes
                      if isinstance(r, APIRoute) and r.path_regex.match(path)), path)
        return _error(405, f"method {request.method} not allowed on {route} "
                           f"(allowed: {', '.join(allowed)})", {"Allow": ", ".join(allowed)})
    if exc.status_code == 404:
        return _error(404, f"no such route: {path}")
    return _error(exc.status_code, _one_line(exc.detail), getattr(exc, "headers", None))


async def _unexpected(request, exc):
    return _exception_answer(request, exc)


def build_app(api=None):
    """The FastAPI application; *api* (an ApiServer) holds the service and authorizer."""
    app = FastAPI(title="tenantnet controller API", version=__version__,
                  description=DESCRIPTION, openapi_url=None, docs_url=None, redoc_url=None,
                  redirect_slashes=False, separate_input_output_schemas=False,
                  telemetry={"tracing": False, "metrics": False, "logs": False},
                  exception_handlers={StarletteHTTPException: _http_error,
                                      Exception: _unexpected},
                  routes=list(router.routes))
    app.state.api = api
    app.openapi = lambda: _openapi(app)
    return app


def _openapi(app):
    if app.openapi_schema is None:
        doc = get_openapi(title=app.title, version=app.version, description=app.description,
                          routes=app.routes)
        doc.setdefault("components", {})["securitySchemes"] = {"bearer": {
            "type": "http", "scheme": "bearer",
            "description": "on TCP: the provider's token (everything) or a tenant's (only its "
                           "own networks and VMs); the owner-only unix socket needs none"}}
        doc["security"] = [{"bearer": []}]
        app.openapi_schema = doc
    return app.openapi_schema


def openapi_document():
    """The OpenAPI document of this API, as a dict (generated from the routes' types)."""
    return json.loads(json.dumps(build_app().openapi()))


def routes():
    """{(method, path)} of every route."""
    return {(m, r.path) for r in build_app().routes if isinstance(r, APIRoute)
            for m in r.methods}


class _Frame:
    """ASGI wrapper of one listener: routing on the raw (percent-encoded) path with a
    trailing slash ignored, Connection: close and no-store on every answer, one access line
    and the API metrics per request, and a JSON 500 for anything that escaped."""

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
            await self.app(scope, receive, framed)
        except Exception as exc:  # noqa: BLE001
            if status is None:
                log.error("internal error on %s %s:\n%s", scope.get("method"), raw,
                          "".join(traceback.format_exception(exc)).rstrip())
                await framed({"type": "http.response.start", "status": 500,
                              "headers": [(b"content-type", b"application/json")]})
                await framed({"type": "http.response.body", "body": json.dumps(
                    {"error": f"internal error ({type(exc).__name__}); see the controller "
                              "log"}).encode()})
        finally:
            elapsed = time.monotonic() - started
            client = scope.get("client")
            who = client[0] if client else "unix"
            query = scope.get("query_string", b"").decode("latin-1")
            log.info("%s %s %s%s -> %s (%.1f ms)", who, scope.get("method"), raw,
                     "?" + query if query else "", status, elapsed * 1000)
            if status is not None:
                self.api.metrics.api_answer(scope.get("method", "?"), status, elapsed)


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
    service's own (`service.metrics`), else a new one."""

    def __init__(self, service, tcp=None, unix_path=None, authorizer=None, unix_trusted=False,
                 tls=None, metrics=None):
        if tcp is None and unix_path is None:
            raise ValueError("ApiServer needs tcp=(host, port) and/or unix_path")
        self.service = service
        self.tcp = tuple(tcp) if tcp is not None else None
        self.unix_path = os.path.abspath(unix_path) if unix_path is not None else None
        self.authorizer = authorizer
        self.unix_trusted = unix_trusted
        self.tls = dict(tls) if tls else None
        self.metrics = metrics or getattr(service, "metrics", None) or Metrics()
        self.app = build_app(self)
        self._sockets = []          # (kind, socket, identity)
        self._servers = []
        self._thread = None
        self._loop = None
        self._lock = threading.Lock()

    # -- used by the routes --------------------------------------------------------------
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
                                             f"({_one_line(exc)})") from exc
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
            failure.append(_one_line(exc) or type(exc).__name__)
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
            body = json.dumps({"error": _one_line(f"invalid HTTP request: {detail}")}).encode()
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


# -- docs/openapi.json ------------------------------------------------------------------------
def openapi_text():
    return json.dumps(openapi_document(), indent=2) + "\n"


def write_openapi(path):
    """Write the OpenAPI document to *path* (pretty-printed, stable key order)."""
    text = openapi_text()
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
