"""The HTTP API and its client, against a real ApiServer on TCP and on a unix socket.

The service behind it is an in-memory fake: the real one needs a lab (root, Open vSwitch,
namespaces); here we test the HTTP layer — routes, status codes, bodies, sockets."""

import http.client
import json
import logging
import os
import shutil
import socket
import stat
import tempfile
import threading
import time

import pytest

from conftest import two_tenant_config
from tenantnet.controller import api as api_mod
from tenantnet.controller import wire
from tenantnet.controller.api import ApiServer
from tenantnet.controller.apirequest import MAX_BODY, error_status
from tenantnet.controller.apiroutes import openapi_document, routes, write_openapi
from tenantnet.controller.client import ApiClient, decode_response, UnixHTTPConnection
from tenantnet.controller.core import Core
from tenantnet.errors import (ApiError, ConfigError, PlacementError, SouthboundError,
                              TenantnetError)
from tenantnet.model import config

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def placement_error(message):
    """A PlacementError without a status attribute (the API falls back to 409)."""
    err = PlacementError(message)
    del err.status
    return err


class FakeService:
    """In-memory stand-in for the controller's service, with switches for each error."""

    def __init__(self):
        self.vms = {}
        self.lock = threading.Lock()
        self.release = threading.Event()   # add_vm on node "slow" waits for it
        self.release.set()
        self.calls = []

    def add_vm(self, spec):
        self.calls.append(("add_vm", dict(spec)))
        net = spec["network"]
        if net.count("/") != 1:
            raise ConfigError("api", "network", f"must be tenant/network (got {net!r})")
        node = spec["node"]
        if node == "ghost":
            raise PlacementError(f"node {node}: unknown", status=404)
        if node == "teapot":
            raise PlacementError("cannot place on a teapot", status=418)
        if node == "full":
            raise PlacementError(f"node {node}: no free port")         # default status
        if node == "broken-switch":
            raise SouthboundError(f"OVSDB on {node}: timed out after 5 s")
        if node == "crash":
            raise RuntimeError("secret internal detail\nsecond line")
        if node == "unserializable":
            return {"name": spec["name"], "when": object()}
        if node == "slow":
            self.release.wait(10)
        with self.lock:
            if spec["name"] in self.vms:
                raise PlacementError(f"vm {spec['name']}: already exists", status=409)
            vm = {"name": spec["name"], "network": net, "node": node,
                  "mac": spec.get("mac", "02:00:00:00:00:%02x" % (len(self.vms) + 1)),
                  "ip": spec.get("ip"), "port": f"vm-{spec['name']}"[:15],
                  "timings": {"ovsdb_ms": 1.5, "flows_ms": 2.0}}
            self.vms[spec["name"]] = vm
        return vm

    def _known(self, name):
        if name not in self.vms:
            raise PlacementError(f"vm {name}: not placed", status=404)
        return self.vms[name]

    def del_vm(self, name):
        with self.lock:
            vm = self._known(name)
            del self.vms[name]
        return vm

    def list_vms(self):
        return list(self.vms.values())

    def get_vm(self, name):
        return self._known(name)

    def topology(self):
        return {"mode": "dnb", "nodes": [{"name": "node1", "role": "compute"},
                                         {"name": "node2", "role": "compute"}],
                "networks": [], "vms": self.list_vms()}

    def health(self):
        return {"status": "ok", "switches": {"node1": "connected", "node2": "connected"}}


@pytest.fixture
def sockdir():
    # AF_UNIX paths are limited to 108 bytes: pytest's tmp_path can be longer.
    path = tempfile.mkdtemp(prefix="tn-api-")
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def service():
    svc = FakeService()
    yield svc
    svc.release.set()


@pytest.fixture(params=["tcp", "unix"])
def server(request, service, sockdir):
    if request.param == "tcp":
        srv = ApiServer(service, tcp=("127.0.0.1", 0))
    else:
        srv = ApiServer(service, unix_path=os.path.join(sockdir, "api.sock"))
    srv.start()
    yield srv
    srv.stop()


@pytest.fixture
def client(server):
    return ApiClient(server.endpoints[0], timeout=10)


def connection(server, timeout=10):
    if server.tcp_address:
        host, port = server.tcp_address
        return http.client.HTTPConnection(host, port, timeout=timeout)
    return UnixHTTPConnection(server.unix_path, timeout)


def raw(server, method, path, body=None, headers=None):
    """Send one request as given; return (status, headers, decoded JSON body)."""
    conn = connection(server)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        resp = conn.getresponse()
        data = resp.read()
        hdrs = {k.lower(): v for k, v in resp.getheaders()}
    finally:
        conn.close()
    if method == "HEAD":
        return resp.status, hdrs, None
    assert hdrs["content-type"] == "application/json"
    payload = json.loads(data)
    if resp.status >= 400:
        # Every error body is exactly {"error": "<one-line message>"}.
        assert set(payload) == {"error"} and isinstance(payload["error"], str), payload
        assert payload["error"] and "\n" not in payload["error"]
    return resp.status, hdrs, payload


def post_json(server, obj, path="/v1/vms", headers=None):
    body = obj if isinstance(obj, bytes) else json.dumps(obj).encode()
    return raw(server, "POST", path, body,
               {"Content-Type": "application/json", **(headers or {})})


VM = {"name": "web1", "network": "acme/front", "node": "node1"}


# -- every route ----------------------------------------------------------------------

def test_health(client):
    assert client.health()["status"] == "ok"


def test_topology(client):
    assert [n["name"] for n in client.topology()["nodes"]] == ["node1", "node2"]


def test_vm_lifecycle(client, service):
    assert client.list_vms() == []
    vm = client.add_vm("web1", "acme/front", "node1")
    assert vm["name"] == "web1" and vm["port"] == "vm-web1"
    assert vm["timings"]["ovsdb_ms"] == 1.5
    # optional fields left out are not sent at all
    assert service.calls[-1] == ("add_vm", VM)
    assert client.get_vm("web1") == vm
    assert client.list_vms() == [vm]
    assert client.del_vm("web1") == vm
    assert client.list_vms() == []
    with pytest.raises(ApiError) as err:
        client.get_vm("web1")
    assert err.value.status == 404 and "not placed" in str(err.value)


def test_add_vm_with_mac_and_ip(client, service):
    vm = client.add_vm("db1", "acme/back", "node2", mac="02:aa:bb:cc:dd:ee", ip="10.0.1.5/24")
    assert vm["mac"] == "02:aa:bb:cc:dd:ee" and vm["ip"] == "10.0.1.5/24"
    assert service.calls[-1][1] == {"name": "db1", "network": "acme/back", "node": "node2",
                                    "mac": "02:aa:bb:cc:dd:ee", "ip": "10.0.1.5/24"}


def test_post_answers_201_with_location(server):
    status, headers, vm = post_json(server, VM)
    assert status == 201 and vm["name"] == "web1"
    assert headers["location"] == "/v1/vms/web1"
    assert headers["connection"] == "close"


def test_names_are_percent_encoded(client):
    client.add_vm("a b/c", "acme/front", "node1")
    assert client.get_vm("a b/c")["name"] == "a b/c"
    assert client.del_vm("a b/c")["name"] == "a b/c"


def test_trailing_slash_and_query_are_ignored(server):
    assert raw(server, "GET", "/v1/vms/")[0] == 200
    assert raw(server, "GET", "/v1/health?verbose=1")[0] == 200


def test_get_with_small_body_is_fine(server):
    assert raw(server, "GET", "/v1/vms", b"{}", {"Content-Type": "application/json"})[0] == 200


def test_openapi_route_serves_the_document(client):
    assert client.openapi() == json.loads(json.dumps(openapi_document()))


# -- status codes for each error class ---------------------------------------------------

@pytest.mark.parametrize("node, status, words", [
    ("ghost", 404, "unknown"),                 # PlacementError(status=404)
    ("teapot", 418, "teapot"),                 # any PlacementError.status is honoured
    ("full", 409, "no free port"),             # PlacementError's default status
    ("broken-switch", 502, "timed out"),       # other TenantnetError
])
def test_service_errors_map_to_status(client, node, status, words):
    with pytest.raises(ApiError) as err:
        client.add_vm("x", "acme/front", node)
    assert err.value.status == status
    assert words in str(err.value)


def test_duplicate_is_409(client):
    client.add_vm("web1", "acme/front", "node1")
    with pytest.raises(ApiError) as err:
        client.add_vm("web1", "acme/front", "node2")
    assert err.value.status == 409 and "already exists" in err.value.message


def test_config_error_is_400(client):
    with pytest.raises(ApiError) as err:
        client.add_vm("x", "no-slash", "node1")
    assert err.value.status == 400
    assert str(err.value) == "api: network: must be tenant/network (got 'no-slash')"


@pytest.mark.parametrize("mac, words", [
    ("00:00:00:00:00:00", "is the all-zero MAC"),
    ("ff:ff:ff:ff:ff:ff", "is the broadcast MAC"),
    ("01:00:5e:00:00:01", "is a multicast MAC"),
])
def test_non_assignable_mac_is_400_from_the_real_core(mac, words):
    """The controller's own validation (not the fake service): refused before any switch."""
    core = Core(config.load_text(two_tenant_config(), "t.yaml"), pusher=None)
    core.started = True
    srv = ApiServer(core, tcp=("127.0.0.1", 0)).start()
    try:
        status, _, body = post_json(srv, {"name": "web9", "network": "acme/web",
                                          "node": "compute1", "mac": mac})
        assert status == 400
        assert body["error"].startswith("API request: mac: ") and words in body["error"]
        assert "web9" not in {v["name"] for v in ApiClient(srv.endpoints[0]).list_vms()}
    finally:
        srv.stop()


def test_internal_error_is_500_one_line_traceback_only_logged(server, caplog):
    with caplog.at_level(logging.ERROR, logger="tenantnet.controller.api"):
        status, _, body = post_json(server, {**VM, "node": "crash"})
    assert status == 500
    assert "RuntimeError" in body["error"] and "Traceback" not in body["error"]
    assert any("Traceback" in r.getMessage() and "secret internal detail" in r.getMessage()
               for r in caplog.records)


def test_unserializable_answer_is_500(server):
    status, _, body = post_json(server, {**VM, "node": "unserializable"})
    assert status == 500 and "TypeError" in body["error"]


def test_error_status_table():
    es = error_status
    assert es(ConfigError("f", "k", "bad")) == 400
    assert es(PlacementError("vm x: unknown", status=404)) == 404
    assert es(PlacementError("busy")) == 409
    assert es(placement_error("no status attribute at all")) == 409
    assert es(PlacementError("gone", status=410)) == 410
    assert es(PlacementError("weird", status=200)) == 409      # not an error status
    assert es(PlacementError("weird", status="404")) == 409    # not an int
    assert es(SouthboundError("x")) == 502
    assert es(TenantnetError("x")) == 502
    assert es(KeyError("x")) == 500


# -- request bodies ----------------------------------------------------------------------

@pytest.mark.parametrize("body, words", [
    (b"{not json", "malformed JSON"),
    (b'{"name": "x",}', "malformed JSON"),
    (b"", "empty request body"),
    (b"\xff\xfe{}", "not valid UTF-8"),
    (b"[1, 2]", "must be a JSON object"),
    (b'"web1"', "must be a JSON object"),
    (json.dumps({"network": "a/b", "node": "n"}).encode(), "api: name: required"),
    (json.dumps({**VM, "colour": "red"}).encode(), "api: colour: unknown field"),
    (json.dumps({**VM, "node": 7}).encode(), "api: node: must be a string"),
    (json.dumps({**VM, "ip": ["10.0.0.1"]}).encode(), "api: ip: must be a string"),
])
def test_bad_bodies_are_400(server, body, words):
    status, _, payload = post_json(server, body)
    assert status == 400
    assert words in payload["error"]


@pytest.mark.parametrize("ctype", [None, "text/plain", "application/x-www-form-urlencoded"])
def test_wrong_content_type_is_400(server, ctype):
    headers = {"Content-Type": ctype} if ctype else {}
    status, _, payload = raw(server, "POST", "/v1/vms", json.dumps(VM).encode(), headers)
    assert status == 400 and "Content-Type must be application/json" in payload["error"]


def test_json_content_type_with_charset_is_fine(server):
    status, _, _ = raw(server, "POST", "/v1/vms", json.dumps(VM).encode(),
                       {"Content-Type": "application/json; charset=utf-8"})
    assert status == 201


def test_null_optional_fields_are_dropped(server, service):
    assert post_json(server, {**VM, "mac": None, "ip": None})[0] == 201
    assert service.calls[-1][1] == VM


def test_body_of_exactly_the_limit_is_accepted(server):
    text = json.dumps(VM)
    body = (text + " " * (MAX_BODY - len(text))).encode()
    assert len(body) == MAX_BODY
    assert post_json(server, body)[0] == 201


def test_oversized_body_is_413(server, service):
    body = b'{"name": "' + b"x" * MAX_BODY + b'", "network": "a/b", "node": "n"}'
    status, _, payload = post_json(server, body)
    assert status == 413 and "too large" in payload["error"]
    assert service.calls == []


def test_oversized_content_length_is_413_without_reading(server):
    conn = connection(server, timeout=5)
    try:
        conn.putrequest("POST", "/v1/vms")
        conn.putheader("Content-Type", "application/json")
        conn.putheader("Content-Length", str(50 * MAX_BODY))
        conn.endheaders()
        started = time.monotonic()
        resp = conn.getresponse()
        assert resp.status == 413
        assert "too large" in json.loads(resp.read())["error"]
        assert time.monotonic() - started < 2
    finally:
        conn.close()


def test_chunked_body_is_411(server):
    conn = connection(server)
    try:
        conn.request("POST", "/v1/vms", body=iter([json.dumps(VM).encode()]),
                     headers={"Content-Type": "application/json"}, encode_chunked=True)
        resp = conn.getresponse()
        assert resp.status == 411
        assert "Content-Length" in json.loads(resp.read())["error"]
    finally:
        conn.close()


def test_invalid_content_length_is_400(server):
    conn = connection(server)
    try:
        conn.putrequest("POST", "/v1/vms")
        conn.putheader("Content-Type", "application/json")
        conn.putheader("Content-Length", "lots")
        conn.endheaders()
        resp = conn.getresponse()
        assert resp.status == 400
        assert "invalid Content-Length" in json.loads(resp.read())["error"]
    finally:
        conn.close()


# -- routes and methods ------------------------------------------------------------------

@pytest.mark.parametrize("path", ["/", "/v1", "/v2/vms", "/v1/vms/a/b", "/v1/vmsx",
                                  "/v1/health/extra", "/openapi.yaml"])
def test_unknown_route_is_404(server, path):
    status, _, payload = raw(server, "GET", path)
    assert status == 404 and "no such route" in payload["error"]


@pytest.mark.parametrize("method, path, allowed", [
    ("DELETE", "/v1/vms", "GET, POST"),
    ("PUT", "/v1/vms/web1", "DELETE, GET"),
    ("PATCH", "/v1/vms/web1", "DELETE, GET"),
    ("POST", "/v1/health", "GET"),
    ("DELETE", "/v1/topology", "GET"),
    ("OPTIONS", "/openapi.json", "GET"),
])
def test_wrong_method_is_405(server, method, path, allowed):
    status, headers, payload = raw(server, method, path)
    assert status == 405 and "not allowed" in payload["error"]
    assert headers["allow"] == allowed


def test_head_is_405_without_body(server):
    status, headers, _ = raw(server, "HEAD", "/v1/health")
    assert status == 405 and headers["allow"] == "GET"


def test_unheard_of_method_is_405_json(server):
    status, _, payload = raw(server, "BREW", "/v1/vms")
    assert status == 405 and "BREW" in payload["error"]


def test_wrong_method_with_body_still_answers(server):
    status, _, _ = raw(server, "PUT", "/v1/vms/x", b"x" * 200_000,
                       {"Content-Type": "application/json"})
    assert status == 405


def test_routes_are_declared_once():
    """The routes come from FastAPI's decorators (no routing table of our own)."""
    assert routes() == {("GET", "/v1/health"), ("GET", "/v1/vms"), ("POST", "/v1/vms"),
                        ("GET", "/v1/vms/{name}"), ("DELETE", "/v1/vms/{name}"),
                        ("POST", "/v1/vm-batches"),
                        ("GET", "/v1/topology"), ("GET", "/metrics"), ("GET", "/openapi.json"),
                        ("GET", "/v1/functions"), ("POST", "/v1/functions"),
                        ("DELETE", "/v1/functions/{name}"), ("GET", "/v1/chains"),
                        ("POST", "/v1/chains"), ("DELETE", "/v1/chains/{name}")}
    assert not hasattr(api_mod, "ROUTES") and not hasattr(api_mod, "check_vm_request")


# -- OpenAPI ---------------------------------------------------------------------------

def test_openapi_document_is_valid():
    from openapi_spec_validator import validate

    doc = json.loads(json.dumps(openapi_document()))   # exactly what is served
    validate(doc)
    assert doc["openapi"].startswith("3.1.")      # FastAPI generates OpenAPI 3.1
    for name in ("VM", "VMRequest", "Error"):
        assert name in doc["components"]["schemas"]


def test_openapi_describes_every_route():
    paths = openapi_document()["paths"]
    described = {(m.upper(), p) for p, ops in paths.items() for m in ops if m != "parameters"}
    assert described == routes()


def test_openapi_request_schema_is_the_wire_type():
    schema = openapi_document()["components"]["schemas"]["VMRequest"]
    assert tuple(schema["properties"]) == tuple(wire.VMRequest.model_fields) \
        == ("name", "network", "node", "mac", "ip")
    assert tuple(schema["required"]) == ("name", "network", "node")
    assert schema["additionalProperties"] is False


def test_openapi_documents_only_our_error_body():
    doc = openapi_document()
    assert "HTTPValidationError" not in doc["components"]["schemas"]     # no 422 anywhere
    for path, ops in doc["paths"].items():
        for method, op in ops.items():
            assert "422" not in op["responses"], (method, path)
            assert op["responses"]["default"]["content"]["application/json"]["schema"] == \
                {"$ref": "#/components/schemas/Error"}


def test_committed_openapi_json_is_up_to_date(tmp_path):
    out = write_openapi(str(tmp_path / "openapi.json"))
    with open(out) as fh:
        generated = fh.read()
    with open(os.path.join(REPO, "docs", "openapi.json")) as fh:
        committed = fh.read()
    assert committed == generated, \
        "docs/openapi.json is stale: regenerate it with `python -m tenantnet.controller.api`"


# -- the unix socket -------------------------------------------------------------------

def test_unix_socket_is_owner_only_and_removed_on_stop(service, sockdir):
    path = os.path.join(sockdir, "sub", "api.sock")        # parent is created
    srv = ApiServer(service, unix_path=path).start()
    try:
        mode = os.stat(path).st_mode
        assert stat.S_ISSOCK(mode) and stat.S_IMODE(mode) == 0o600
        assert srv.endpoints == [f"unix:{path}"]
        assert ApiClient(f"unix:{path}").health()["status"] == "ok"
    finally:
        srv.stop()
    assert not os.path.exists(path)


def test_stale_unix_socket_is_replaced(service, sockdir):
    path = os.path.join(sockdir, "api.sock")
    stale = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    stale.bind(path)          # bound but never listening, then closed: a leftover file
    stale.close()
    assert os.path.exists(path)
    with ApiServer(service, unix_path=path):
        assert ApiClient(f"unix:{path}").health()["status"] == "ok"
    assert not os.path.exists(path)


def test_live_unix_socket_is_not_stolen(service, sockdir):
    path = os.path.join(sockdir, "api.sock")
    with ApiServer(service, unix_path=path):
        with pytest.raises(TenantnetError, match="already serving"):
            ApiServer(service, unix_path=path).start()
        assert ApiClient(f"unix:{path}").health()["status"] == "ok"


def test_regular_file_at_socket_path_is_refused(service, sockdir):
    path = os.path.join(sockdir, "api.sock")
    with open(path, "w") as fh:
        fh.write("keep me")
    with pytest.raises(TenantnetError, match="not a socket"):
        ApiServer(service, unix_path=path).start()
    with open(path) as fh:
        assert fh.read() == "keep me"


def test_tcp_and_unix_together(service, sockdir):
    path = os.path.join(sockdir, "api.sock")
    with ApiServer(service, tcp=("127.0.0.1", 0), unix_path=path) as srv:
        tcp, unix = srv.endpoints
        assert tcp.startswith("http://127.0.0.1:") and unix == f"unix:{path}"
        ApiClient(tcp).add_vm("web1", "acme/front", "node1")
        assert [vm["name"] for vm in ApiClient(unix).list_vms()] == ["web1"]


def test_tcp_port_in_use_is_a_clear_error(service):
    with ApiServer(service, tcp=("127.0.0.1", 0)) as srv:
        host, port = srv.tcp_address
        with pytest.raises(TenantnetError, match=f"cannot listen on 127.0.0.1:{port}"):
            ApiServer(service, tcp=(host, port)).start()


def test_server_needs_an_address(service):
    with pytest.raises(ValueError):
        ApiServer(service)


# -- concurrency -----------------------------------------------------------------------

def test_requests_are_served_while_add_vm_blocks(client, service):
    service.release.clear()
    result = {}

    def place():
        result["vm"] = client.add_vm("slow1", "acme/front", "slow")

    thread = threading.Thread(target=place)
    thread.start()
    try:
        time.sleep(0.2)
        assert thread.is_alive()                     # still waiting for "the switches"
        assert client.health()["status"] == "ok"     # other requests are not blocked
    finally:
        service.release.set()
        thread.join(10)
    assert result["vm"]["name"] == "slow1"


# -- authorizer hook -------------------------------------------------------------------

def test_authorizer(service, sockdir):
    seen = []

    def authorizer(headers, method, path):
        seen.append((method, path))
        token = headers.get("Authorization")
        if token is None:
            raise PermissionError("credentials required")
        if token != "Bearer good":
            raise PermissionError("bad credentials")

    with ApiServer(service, tcp=("127.0.0.1", 0), authorizer=authorizer) as srv:
        assert raw(srv, "GET", "/v1/vms")[0:3:2] == (401, {"error": "credentials required"})
        assert raw(srv, "GET", "/v1/vms", headers={"Authorization": "Bearer bad"})[0] == 403
        status, _, body = post_json(srv, VM, headers={"Authorization": "Bearer bad"})
        assert status == 403 and service.calls == []
        assert raw(srv, "GET", "/v1/vms/x%20y", headers={"Authorization": "Bearer good"})[0] \
            == 404
        assert seen[-1] == ("GET", "/v1/vms/x%20y")


def test_authorizer_status_attribute_wins(service):
    def authorizer(headers, method, path):
        err = PermissionError("token expired")
        err.status = 401
        raise err

    with ApiServer(service, tcp=("127.0.0.1", 0), authorizer=authorizer) as srv:
        assert raw(srv, "GET", "/v1/health", headers={"Authorization": "Bearer x"})[0] == 401


# -- gate (the controller starting) ----------------------------------------------------

def test_gate_refuses_all_but_health_until_it_opens(service, sockdir):
    why = ["the controller is starting: try again"]
    path = os.path.join(sockdir, "api.sock")
    with ApiServer(service, tcp=("127.0.0.1", 0), unix_path=path, gate=lambda: why[0]) as srv:
        for endpoint in srv.endpoints:
            client = ApiClient(endpoint, timeout=10)
            assert client.health()["status"] == "ok"     # the service's own answer
            with pytest.raises(ApiError) as err:
                client.topology()
            assert err.value.status == 503 and "starting" in str(err.value)
        status, hdrs, body = post_json(srv, VM)
        assert (status, hdrs["retry-after"], body) == (503, "1", {"error": why[0]})
        assert service.calls == []                       # nothing reached the service
        metrics = ApiClient(srv.endpoints[0], timeout=10).metrics()   # open while starting
        assert 'method="POST",status="503"' in metrics, metrics
        why[0] = None
        status, _, body = post_json(srv, VM)
        assert status == 201 and body["name"] == "web1"
        assert raw(srv, "GET", "/v1/vms")[0] == 200


# -- client ----------------------------------------------------------------------------

def test_client_refused_tcp_is_status_0():
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()                                   # a port where nobody listens
    with pytest.raises(ApiError) as err:
        ApiClient(f"http://127.0.0.1:{port}").health()
    assert err.value.status == 0
    assert str(err.value).startswith(f"no controller listening at http://127.0.0.1:{port}")


def test_client_missing_socket_is_status_0(sockdir):
    path = os.path.join(sockdir, "nope.sock")
    with pytest.raises(ApiError) as err:
        ApiClient(f"unix:{path}").list_vms()
    assert err.value.status == 0
    assert str(err.value).startswith(f"no controller listening at unix:{path}")


def test_client_stale_socket_is_status_0(sockdir):
    path = os.path.join(sockdir, "stale.sock")
    stale = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    stale.bind(path)
    stale.close()
    with pytest.raises(ApiError) as err:
        ApiClient(f"unix:{path}").list_vms()
    assert err.value.status == 0 and "no controller listening" in str(err.value)


def test_client_timeout_is_status_0(service, sockdir):
    service.release.clear()
    path = os.path.join(sockdir, "api.sock")
    with ApiServer(service, unix_path=path):
        with pytest.raises(ApiError) as err:
            ApiClient(f"unix:{path}", timeout=0.3).add_vm("s", "acme/front", "slow")
        service.release.set()
    assert err.value.status == 0 and "within 0.3 s" in str(err.value)


@pytest.mark.parametrize("endpoint", ["", "127.0.0.1:8080", "https://host", "http://host",
                                      "http://h:1/prefix", "unix:", "tcp://h:1"])
def test_client_rejects_bad_endpoints(endpoint):
    with pytest.raises(ConfigError, match="endpoint"):
        ApiClient(endpoint)


@pytest.mark.parametrize("endpoint, kind, address", [
    ("http://127.0.0.1:8080", "tcp", ("127.0.0.1", 8080)),
    ("http://[::1]:8080/", "tcp", ("::1", 8080)),
    ("https://ctl.example:8443", "tls", ("ctl.example", 8443)),
    ("unix:/run/tenantnet/api.sock", "unix", "/run/tenantnet/api.sock"),
    ("unix:///run/tenantnet/api.sock", "unix", "/run/tenantnet/api.sock"),
    ("unix:rel.sock", "unix", "rel.sock"),
])
def test_client_endpoints(endpoint, kind, address):
    c = ApiClient(endpoint)
    assert (c.kind, c.address) == (kind, address)


def test_client_decodes_non_json_errors():
    with pytest.raises(ApiError) as err:
        decode_response(502, "Bad Gateway", b"<html><body>proxy says no</body></html>", "GET", "/x")
    assert err.value.status == 502
    assert str(err.value).startswith("HTTP 502 Bad Gateway: <html>")
    with pytest.raises(ApiError, match="not JSON"):
        decode_response(200, "OK", b"<html>", "GET", "/x")
    assert decode_response(200, "OK", b'{"a": 1}', "GET", "/x") == {"a": 1}


def test_client_rejects_empty_names(client):
    with pytest.raises(ConfigError):
        client.get_vm("")
