"""The API's routes, each declared once with its wire types (tenantnet.controller.wire), the
FastAPI application made of them, and the OpenAPI document generated from them (served at
GET /openapi.json; docs/openapi.json: `python -m tenantnet.controller.api`).

VMs, network functions and chains are collections of named things with the same routes
(collection_routes): list, add (the body is the collection's wire request type; 201 with
Location once realised), remove, and for VMs get one. POST /v1/vm-batches places many VMs
in one request, realised as one group (all or none). Every route is an
apirequest.CheckedRoute; the service a route calls is the caller's
(request.state.service)."""

import json
import os
from typing import Any
from urllib.parse import quote, unquote

from fastapi import APIRouter, Depends, FastAPI, Path, Request, Response
from fastapi.openapi.utils import get_openapi
from fastapi.routing import APIRoute
from starlette.exceptions import HTTPException as StarletteHTTPException

from tenantnet import __version__
from tenantnet.controller import wire
from tenantnet.controller.apirequest import (MAX_BODY, CheckedRoute, drain, error_response,
                                             exception_answer, one_line)
from tenantnet.errors import PlacementError

DESCRIPTION = (
    "Place VMs on tenant networks and inspect the topology. The API listens on a unix socket "
    "(HTTP over AF_UNIX, mode 0600, trusted) and/or on TCP (HTTPS when configured), where "
    "every route but the health and this document needs a Bearer token: the provider's "
    "(everything) or a tenant's (its own networks and VMs only). Request and response "
    "bodies are JSON; every error body is {\"error\": \"<message>\"}. POST /v1/vms and "
    "POST /v1/vm-batches answer only once the placement is realised on the switches, so "
    f"clients should allow a long timeout. Request bodies are limited to {MAX_BODY} bytes.")


async def _service(request: Request):
    return request.state.service


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
router = APIRouter(route_class=CheckedRoute)


@router.get("/v1/health", response_model=wire.Health, response_model_exclude_unset=True, operation_id="health",
            summary="Controller health", responses=_responses(*_AUTH), openapi_extra=_OPEN)
def health(svc=Depends(_service)):
    return svc.health()


# -- collections of named things ------------------------------------------------------------
def collection_routes(router, path, request_type, answer_type, one, what, summaries,
                      described=None):
    """Declare the routes of the collection of *one*s at *path* on *router*, each calling
    the caller's service (`svc`):

        GET path            list<One>s   svc.list_<one>s()             [answer_type]
        POST path           add<One>     svc.add_<one>(body.spec())     answer_type, 201
        GET path/{name}     get<One>     svc.get_<one>(name)            (when summaries has "get")
        DELETE path/{name}  delete<One>  svc.del_<one>(name)            answer_type

    The POST body is a *request_type*; its answer's Location is the new thing's URL path.
    *what* names one thing in the name parameter's description ("VM"); *summaries* and
    *described* (response descriptions) are by operation: list, add, get, delete."""
    described = described or {}
    noun = one.capitalize()

    def name_param(name: str = Path(min_length=1, description=f"{what} name (percent-encoded)")):
        value = unquote(name)
        if not value:
            raise PlacementError(f"unknown {what} {value!r}", status=404)
        return value

    def common(op, responses):
        extra = {"response_description": described[op]} if op in described else {}
        return dict(response_model_exclude_unset=True, summary=summaries[op],
                    responses=_responses(*responses), **extra)

    @router.get(path, response_model=list[answer_type], operation_id=f"list{noun}s",
                **common("list", _AUTH))
    def listing(svc=Depends(_service)):
        return list(getattr(svc, f"list_{one}s")())

    @router.post(path, response_model=answer_type, status_code=201, operation_id=f"add{noun}",
                 **common("add", (400, *_AUTH, 404, 409, 411, 413, 502, 503)))
    def add(spec: request_type, response: Response, svc=Depends(_service)):
        out = getattr(svc, f"add_{one}")(spec.spec())
        name = out.get("name", spec.name) if isinstance(out, dict) else spec.name
        response.headers["Location"] = f"{path}/" + quote(str(name), safe="")
        return out

    if "get" in summaries:
        @router.get(path + "/{name}", response_model=answer_type, operation_id=f"get{noun}",
                    **common("get", (*_AUTH, 404)))
        def get(name: str = Depends(name_param), svc=Depends(_service)):
            return getattr(svc, f"get_{one}")(name)

    @router.delete(path + "/{name}", response_model=answer_type, operation_id=f"delete{noun}",
                   **common("delete", (*_AUTH, 404, 409, 502, 503)))
    def delete(name: str = Depends(name_param), svc=Depends(_service)):
        return getattr(svc, f"del_{one}")(name)


collection_routes(router, "/v1/vms", wire.VMRequest, wire.VM, "vm", "VM", {
    "list": "List placed VMs", "add": "Place a VM (returns once realised on the switches)",
    "get": "One VM", "delete": "Remove a VM"}, described={
    "add": "The VM, placed and realised; Location: its URL path",
    "delete": "The VM that was removed"})


@router.post("/v1/vm-batches", response_model=list[wire.VM], status_code=201,
             response_model_exclude_unset=True, operation_id="addVmBatch",
             summary="Place many VMs in one request (all or none; returns once realised)",
             description=(
                 "Places every VM of `vms` (each a VMRequest, as POST /v1/vms takes it) as "
                 "one change: one OVSDB transaction per node and one OpenFlow bundle per "
                 "bridge for the whole batch, however many VMs and networks it has. The "
                 "items are validated in order (each against the model with the ones "
                 "before it); any problem refuses the whole batch and names the item "
                 "(`vms[3] (web9): mac: ...`): a bad item, two items with the same name, "
                 f"an empty list, more than {wire.MAX_VM_BATCH} VMs, and (a tenant's token) "
                 "a network not the tenant's (403). It answers 201 with the VMs in the "
                 "order given, once every VM's ports have OpenFlow port numbers and its "
                 "flows are committed. If the switches refuse or time out (502) or a node "
                 "the batch touches is down (503), the switches are put back and none of "
                 "the VMs is placed; the error says so."),
             response_description="The VMs, placed and realised, in the order given",
             responses=_responses(400, *_AUTH, 404, 409, 411, 413, 502, 503))
def add_vm_batch(batch: wire.VMBatchRequest, svc=Depends(_service)):
    return svc.add_vms(batch.specs())


collection_routes(router, "/v1/functions", wire.FunctionRequest, wire.Function, "function",
                  "function", {
                      "list": "List network functions",
                      "add": "Add a network function (returns once realised on the switches)",
                      "delete": "Remove a network function (chains stop using it first)"})
collection_routes(router, "/v1/chains", wire.ChainRequest, wire.Chain, "chain", "chain", {
    "list": "List service chains", "add": "Add a service chain (returns once its flows are "
                                          "installed)",
    "delete": "Remove a service chain (plain forwarding again)"})


# -- the rest ---------------------------------------------------------------------------------
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
    await drain(request)
    if exc.status_code == 405:
        allowed = _allowed_methods(request.app, path)
        route = next((r.path for r in request.app.routes
                      if isinstance(r, APIRoute) and r.path_regex.match(path)), path)
        return error_response(405, f"method {request.method} not allowed on {route} "
                                   f"(allowed: {', '.join(allowed)})",
                              {"Allow": ", ".join(allowed)})
    if exc.status_code == 404:
        return error_response(404, f"no such route: {path}")
    return error_response(exc.status_code, one_line(exc.detail), getattr(exc, "headers", None))


async def _unexpected(request, exc):
    return exception_answer(request, exc)


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


def routes():
    """{(method, path)} of every route."""
    return {(m, r.path) for r in build_app().routes if isinstance(r, APIRoute)
            for m in r.methods}


# -- docs/openapi.json ------------------------------------------------------------------------
def openapi_document():
    """The OpenAPI document of this API, as a dict (generated from the routes' types)."""
    return json.loads(json.dumps(build_app().openapi()))


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
