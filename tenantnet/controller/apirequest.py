"""The API's request checking and error answers: every route is a CheckedRoute.

Around FastAPI's own handler (which validates the body as the route's wire type and
serialises the answer), CheckedRoute runs the authorizer before the body is read, checks
the body as the server always has (JSON object, Content-Type, UTF-8, MAX_BODY with 413
before reading, 411 for chunked bodies, 408 for a slow client) and turns every failure
into {"error": "<one line>"} (wire.Error) with its status:

    ConfigError            400   bad input (also a body that does not fit the wire type)
    PermissionError        401 / 403 (from the authorizer hook)
    PlacementError         err.status (404 unknown VM, 409 conflict, 503 node down, ...)
                           when it is an int in 400..599, else 409
    other TenantnetError   502   the switches (OVSDB / OpenFlow) refused or timed out
    anything else          500   one-line message; the traceback goes to the log only"""

import asyncio
import json
import logging
import traceback

from fastapi.exceptions import RequestValidationError, ResponseValidationError
from fastapi.responses import JSONResponse
from fastapi.routing import APIRoute

from tenantnet.controller import wire
from tenantnet.errors import ConfigError, PlacementError, TenantnetError

log = logging.getLogger("tenantnet.controller.api")

MAX_BODY = 1024 * 1024          # bytes; larger request bodies get 413
_DRAIN_LIMIT = 4 * MAX_BODY     # an oversized body up to this size is read and dropped so
                                # the client sees the 413 instead of a connection reset
REQUEST_TIMEOUT = 30            # seconds a client may take to send its request
SOURCE = "api"                  # ConfigError source for errors found in API input


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


def one_line(text, limit=300):
    """*text* on one line, at most *limit* characters."""
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[:limit - 3] + "..."


def error_response(status, message, headers=None):
    """The answer {"error": message} with *status*."""
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


async def drain(request):
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


# -- the route class -----------------------------------------------------------------------
class CheckedRoute(APIRoute):
    """Every route: the authorizer, the body checks and the error mapping around FastAPI's
    own handler (which validates with the wire types and serialises the answer). The
    app's state.api (an ApiServer) authorizes and gives the caller's service."""

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
                    await drain(request)
                return error_response(exc.status, exc.message, exc.headers)
            except RequestValidationError as exc:
                return error_response(400, str(_validation_error(exc, self.body_type())))
            except Exception as exc:  # noqa: BLE001 -- every failure becomes one JSON error
                if not body_read:
                    await drain(request)
                return exception_answer(request, exc)

        return guarded

    def body_type(self):
        """The wire type of this route's request body, or None."""
        return self.body_field.field_info.annotation if self.body_field is not None else None


def _validation_error(exc, model):
    errors = exc.errors()
    # FastAPI reports a request body problem at ("body", key, ...), a path parameter at
    # ("path", name).
    body = [e for e in errors if tuple(e.get("loc", ()))[:1] == ("body",)]
    if body:
        return wire.config_error(body, SOURCE, model, strip=1)
    return wire.config_error(errors, SOURCE, strip=1)


def exception_answer(request, exc):
    """The error answer for *exc*, raised while serving *request* (500s are logged with
    their traceback)."""
    if isinstance(exc, PermissionError):
        status = getattr(exc, "status", None)
        if status not in (401, 403):
            status = 403 if request.headers.get("authorization") else 401
        return error_response(status, one_line(str(exc) or "not authorized"))
    status = error_status(exc)
    if status == 500:
        log.error("internal error on %s %s:\n%s", request.method, request.url.path,
                  "".join(traceback.format_exception(exc)).rstrip())
        if isinstance(exc, ResponseValidationError):
            exc = TypeError(f"the answer does not fit the API's types: {exc.errors()[:1]}")
        message = f"internal error ({type(exc).__name__}: {one_line(exc, 200)}); " \
                  "see the controller log"
    else:
        message = one_line(exc, 2000) or type(exc).__name__
    return error_response(status, message)
