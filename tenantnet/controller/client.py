"""Python client of the controller's HTTP API (standard library only).

    from tenantnet.controller.client import ApiClient
    api = ApiClient("unix:/run/tenantnet/api.sock")        # or "http://127.0.0.1:8080"
    vm = api.add_vm("web1", "acme/front", "node1", ip="10.0.0.11/24")
    api.del_vm("web1")

Every failure is raised as tenantnet.errors.ApiError(status, message): the HTTP status and
the server's {"error": ...} message, or status 0 when no controller answered."""

import http.client
import json
import socket
from urllib.parse import quote, urlsplit

from tenantnet.errors import ApiError, ConfigError

DEFAULT_TIMEOUT = 120.0   # seconds; add_vm answers only once the placement is realised


class UnixHTTPConnection(http.client.HTTPConnection):
    """HTTP over a unix stream socket."""

    def __init__(self, path, timeout):
        super().__init__("localhost", timeout=timeout)
        self.unix_path = path

    def connect(self):
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.settimeout(self.timeout)
            sock.connect(self.unix_path)
        except BaseException:
            sock.close()
            raise
        self.sock = sock


def parse_endpoint(endpoint):
    """("tcp", (host, port)) or ("unix", path) for "http://HOST:PORT" or "unix:/PATH"."""
    text = str(endpoint or "").strip()
    if text.startswith("unix:"):
        path = text[len("unix:"):]
        if path.startswith("//"):          # unix:///run/x.sock
            path = path[2:]
        if path:
            return "unix", path
    elif text.startswith("http://"):
        parts = urlsplit(text)
        try:
            port = parts.port
        except ValueError:
            port = None
        if parts.hostname and port and parts.path in ("", "/") and not parts.query:
            return "tcp", (parts.hostname, port)
    raise ConfigError("api client", "endpoint",
                      f"must be http://HOST:PORT or unix:/PATH/TO/SOCKET (got {text!r})")


class ApiClient:
    """Client of one controller at *endpoint* ("http://host:port" or "unix:/path")."""

    def __init__(self, endpoint, timeout=DEFAULT_TIMEOUT, token=None):
        """*token*: the provider's or a tenant's credential (sent as a Bearer token)."""
        self.endpoint = str(endpoint)
        self.kind, self.address = parse_endpoint(endpoint)
        self.timeout = timeout
        self.token = token

    def __repr__(self):
        return f"ApiClient({self.endpoint!r})"

    # -- the API ---------------------------------------------------------------------
    def add_vm(self, name, network, node, mac=None, ip=None):
        """Place VM *name* on *network* ("tenant/net") at *node*; returns the VM record once
        the placement is realised on the switches."""
        spec = {"name": name, "network": network, "node": node}
        if mac is not None:
            spec["mac"] = mac
        if ip is not None:
            spec["ip"] = ip
        return self.request("POST", "/v1/vms", spec)

    def del_vm(self, name):
        return self.request("DELETE", "/v1/vms/" + _segment(name))

    def list_vms(self):
        return self.request("GET", "/v1/vms")

    def get_vm(self, name):
        return self.request("GET", "/v1/vms/" + _segment(name))

    def topology(self):
        return self.request("GET", "/v1/topology")

    def health(self):
        return self.request("GET", "/v1/health")

    def openapi(self):
        return self.request("GET", "/openapi.json")

    # -- transport -------------------------------------------------------------------
    def _connection(self):
        if self.kind == "unix":
            return UnixHTTPConnection(self.address, self.timeout)
        return http.client.HTTPConnection(*self.address, timeout=self.timeout)

    def request(self, method, path, body=None):
        """Send one request; return the decoded JSON answer or raise ApiError."""
        headers = {"Accept": "application/json"}
        if self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        data = None
        if body is not None:
            data = json.dumps(body).encode()
            headers["Content-Type"] = "application/json"
        conn = self._connection()
        try:
            try:
                conn.request(method, path, body=data, headers=headers)
                resp = conn.getresponse()
                raw = resp.read()
            except (ConnectionRefusedError, FileNotFoundError) as exc:
                raise ApiError(0, f"no controller listening at {self.endpoint} "
                                  f"({exc.strerror or exc})") from None
            except PermissionError:
                raise ApiError(0, f"no access to the controller socket {self.address}: it is "
                                  "owner-only (mode 0600); run as the controller's user, "
                                  "e.g. with sudo") from None
            except socket.gaierror as exc:
                raise ApiError(0, f"no controller listening at {self.endpoint} "
                                  f"(cannot resolve host: {exc.strerror or exc})") from None
            except TimeoutError:
                raise ApiError(0, f"no answer from the controller at {self.endpoint} within "
                                  f"{self.timeout:g} s ({method} {path}); the request may "
                                  "still complete: check with list_vms()") from None
            except (http.client.HTTPException, ConnectionError) as exc:
                raise ApiError(0, f"the controller at {self.endpoint} dropped the connection "
                                  f"({method} {path}): {type(exc).__name__}: {exc}") from None
            except OSError as exc:
                raise ApiError(0, f"no controller listening at {self.endpoint} "
                                  f"({exc.strerror or exc})") from None
        finally:
            conn.close()
        return decode_response(resp.status, resp.reason, raw, method, path)


def _segment(name):
    if not isinstance(name, str) or not name:
        raise ConfigError("api client", "name", "must be a non-empty string")
    return quote(name, safe="")


def decode_response(status, reason, raw, method, path):
    try:
        payload = json.loads(raw.decode("utf-8")) if raw.strip() else None
    except (UnicodeDecodeError, json.JSONDecodeError):
        payload = _NOT_JSON
    if 200 <= status < 300:
        if payload is _NOT_JSON:
            raise ApiError(status, f"the controller answered {method} {path} with a body "
                                   "that is not JSON")
        return payload
    if isinstance(payload, dict) and isinstance(payload.get("error"), str):
        message = payload["error"]
    else:
        snippet = " ".join(raw.decode("utf-8", "replace").split())[:200]
        message = f"HTTP {status} {reason}" + (f": {snippet}" if snippet else "")
    raise ApiError(status, message)


_NOT_JSON = object()
