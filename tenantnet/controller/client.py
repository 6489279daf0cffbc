"""Python client of the controller's HTTP API (http.client, and the API's wire types).

    from tenantnet.controller.client import ApiClient
    api = ApiClient("unix:/run/tenantnet/api.sock")        # or "http://127.0.0.1:8080",
                                                           # "https://..." (ca_file=...)
    vm = api.add_vm("web1", "acme/front", "node1", ip="10.0.0.11/24")
    vms = api.add_vms([{"name": "web2", "network": "acme/front", "node": "node1"},
                       {"name": "web3", "network": "acme/front", "node": "node2"}])
    topo = api.topology(typed=True)                        # a wire.Topology
    api.del_vm("web1")

Every answer is parsed with the wire type of its route (tenantnet.controller.wire): methods
return the JSON as dicts, or the wire objects with typed=True. An answer that does not fit
its type is an error, like a failure. Every failure is raised as
tenantnet.errors.ApiError(status, message): the HTTP status and the server's {"error": ...}
message, or status 0 when no controller answered."""

import http.client
import os
import json
import socket
import ssl
from urllib.parse import quote, urlsplit

from pydantic import TypeAdapter, ValidationError

from tenantnet.controller import wire
from tenantnet.errors import ApiError, ConfigError

DEFAULT_TIMEOUT = 120.0   # seconds; add_vm answers only once the placement is realised
# The CA of an https:// controller when none is given: $TENANTNET_API_CA, else this file
# when it exists (the provider's own, from `tenantnet pki init`), else the system's CAs.
DEFAULT_CA = "/etc/tenantnet/pki/provider/api-ca.pem"


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
    """("tcp", (host, port)), ("tls", (host, port)) or ("unix", path) for
    "http://HOST:PORT", "https://HOST:PORT" or "unix:/PATH"."""
    text = str(endpoint or "").strip()
    if text.startswith("unix:"):
        path = text[len("unix:"):]
        if path.startswith("//"):          # unix:///run/x.sock
            path = path[2:]
        if path:
            return "unix", path
    elif text.startswith(("http://", "https://")):
        parts = urlsplit(text)
        try:
            port = parts.port
        except ValueError:
            port = None
        if parts.hostname and port and parts.path in ("", "/") and not parts.query:
            return ("tls" if parts.scheme == "https" else "tcp"), (parts.hostname, port)
    raise ConfigError("api client", "endpoint",
                      "must be http://HOST:PORT, https://HOST:PORT or unix:/PATH/TO/SOCKET "
                      f"(got {text!r})")


_VMS = TypeAdapter(list[wire.VM])
_FUNCTIONS = TypeAdapter(list[wire.Function])
_CHAINS = TypeAdapter(list[wire.Chain])


class ApiClient:
    """Client of one controller at *endpoint* ("http://host:port" or "unix:/path")."""

    def __init__(self, endpoint, timeout=DEFAULT_TIMEOUT, token=None, ca_file=None,
                 cert=None):
        """*token*: the provider's or a tenant's credential (sent as a Bearer token).
        https:// only: *ca_file* the CA that signed the controller's certificate (default:
        $TENANTNET_API_CA, else DEFAULT_CA when it exists, else the system's), *cert* (certfile, keyfile) a client certificate."""
        self.endpoint = str(endpoint)
        self.kind, self.address = parse_endpoint(endpoint)
        self.timeout = timeout
        self.token = token
        if ca_file is None and self.kind == "tls":
            ca_file = os.environ.get("TENANTNET_API_CA") or (
                DEFAULT_CA if os.path.isfile(DEFAULT_CA) else None)
        self.ca_file = ca_file
        self.cert = cert

    def __repr__(self):
        return f"ApiClient({self.endpoint!r})"

    # -- the API ---------------------------------------------------------------------
    def add_vm(self, name, network, node, mac=None, ip=None, typed=False):
        """Place VM *name* on *network* ("tenant/net") at *node*; returns the VM record once
        the placement is realised on the switches."""
        spec = wire.VMRequest.model_construct(name=name, network=network, node=node, mac=mac,
                                              ip=ip).spec()
        return self._typed(wire.VM, typed, "POST", "/v1/vms", spec)

    def add_vms(self, specs, typed=False):
        """Place the VMs *specs* (dicts with add_vm's keys: name, network, node, and
        optionally mac and ip) in one request, realised together: all of them or none
        (POST /v1/vm-batches). Returns their records in the order given, once realised;
        an error names the item it is about (`vms[3] (web9): ...`)."""
        body = {"vms": [{k: v for k, v in dict(spec).items() if v is not None}
                        for spec in specs]}
        return self._typed(_VMS, typed, "POST", "/v1/vm-batches", body)

    def del_vm(self, name, typed=False):
        return self._typed(wire.VM, typed, "DELETE", "/v1/vms/" + _segment(name))

    def list_vms(self, typed=False):
        return self._typed(_VMS, typed, "GET", "/v1/vms")

    def get_vm(self, name, typed=False):
        return self._typed(wire.VM, typed, "GET", "/v1/vms/" + _segment(name))

    def add_function(self, name, network, node, kind, typed=False, **options):
        """A network function; *options*: its kind's settings (rules, stateful, rate)."""
        spec = dict(options, name=name, network=network, node=node, kind=kind)
        return self._typed(wire.Function, typed, "POST", "/v1/functions", spec)

    def del_function(self, name, typed=False):
        return self._typed(wire.Function, typed, "DELETE", "/v1/functions/" + _segment(name))

    def list_functions(self, typed=False):
        return self._typed(_FUNCTIONS, typed, "GET", "/v1/functions")

    def add_chain(self, name, network, src, dst, through, on_failure=None, typed=False):
        spec = {"name": name, "network": network, "from": src, "to": dst,
                "through": list(through)}
        if on_failure is not None:
            spec["on_failure"] = on_failure
        return self._typed(wire.Chain, typed, "POST", "/v1/chains", spec)

    def del_chain(self, name, typed=False):
        return self._typed(wire.Chain, typed, "DELETE", "/v1/chains/" + _segment(name))

    def list_chains(self, typed=False):
        return self._typed(_CHAINS, typed, "GET", "/v1/chains")

    def topology(self, typed=False):
        return self._typed(wire.Topology, typed, "GET", "/v1/topology")

    def health(self, typed=False):
        return self._typed(wire.Health, typed, "GET", "/v1/health")

    def openapi(self):
        return self.request("GET", "/openapi.json")

    def metrics(self):
        """The Prometheus exposition (text) of GET /metrics."""
        return self.request("GET", "/metrics", raw=True).decode("utf-8", "replace")

    def _typed(self, model, typed, method, path, body=None):
        """Send; parse the answer as *model* (a wire type or a TypeAdapter). Return the wire
        object when *typed*, else the JSON as it came."""
        data = self.request(method, path, body)
        try:
            if isinstance(model, TypeAdapter):
                obj = model.validate_python(data)
            else:
                obj = model.model_validate(data)
        except ValidationError as exc:
            err = wire.config_error(exc, "answer")
            raise ApiError(200, f"the controller's answer to {method} {path} does not fit "
                                f"the API's types ({err.key or 'body'}: {err.problem}); "
                                "client and controller versions differ?") from None
        return obj if typed else data

    # -- transport -------------------------------------------------------------------
    def _connection(self):
        if self.kind == "unix":
            return UnixHTTPConnection(self.address, self.timeout)
        if self.kind == "tls":
            ctx = ssl.create_default_context(cafile=self.ca_file)
            if self.cert:
                ctx.load_cert_chain(*self.cert)
            return http.client.HTTPSConnection(*self.address, timeout=self.timeout,
                                               context=ctx)
        return http.client.HTTPConnection(*self.address, timeout=self.timeout)

    def request(self, method, path, body=None, raw=False):
        """Send one request; return the decoded JSON answer (the bytes with *raw*) or raise
        ApiError."""
        want_raw = raw
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
            except ssl.SSLError as exc:
                raise ApiError(0, f"TLS with the controller at {self.endpoint} failed: "
                                  f"{exc.reason or exc}") from None
            except socket.gaierror as exc:
                raise ApiError(0, f"no controller listening at {self.endpoint} "
                                  f"(cannot resolve host: {exc.strerror or exc})") from None
            except TimeoutError:
                raise ApiError(0, f"no answer from the controller at {self.endpoint} within "
                                  f"{self.timeout:g} s ({method} {path}); the request may "
                                  "still complete: check with list_vms()") from None
            except (http.client.HTTPException, ConnectionError) as exc:
                hint = ("; a controller with TLS (the default) serves https://"
                        if self.kind == "tcp" else "")
                raise ApiError(0, f"the controller at {self.endpoint} dropped the connection "
                                  f"({method} {path}): {type(exc).__name__}: {exc}{hint}") \
                    from None
            except OSError as exc:
                raise ApiError(0, f"no controller listening at {self.endpoint} "
                                  f"({exc.strerror or exc})") from None
        finally:
            conn.close()
        if want_raw and 200 <= resp.status < 300:
            return raw
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
