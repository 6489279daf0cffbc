"""The API on FastAPI/uvicorn beyond tests/test_api.py: the wire types, GET /metrics, HTTPS,
and a property-based fuzz test driven by the generated OpenAPI document, against a real
controller core whose nodes are all unreachable (every placement is then refused with the
documented 503 before anything is touched). No switches, no root."""

import datetime
import os
import re

import pytest

from apifuzz import fuzz
from conftest import two_tenant_config
from tenantnet.controller import metrics as metrics_mod
from tenantnet.controller import wire
from tenantnet.controller.api import ApiServer
from tenantnet.controller.apiroutes import openapi_text
from tenantnet.controller.client import ApiClient
from tenantnet.controller.core import Core
from tenantnet.controller.tenancy import make_authorizer
from tenantnet.controller.tenant import topology_from_api
from tenantnet.errors import ApiError, ConfigError
from tenantnet.model import config

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PROVIDER_TOKEN = "provider-secret"
ACME_TOKEN = "acme-secret"


def core_without_switches():
    text = two_tenant_config(vms=("web1@compute1", "app1@compute2"))
    topo = config.load_text(text, "t.yaml")
    topo.controller.api_token = PROVIDER_TOKEN
    topo.tenant_tokens["acme"] = ACME_TOKEN
    core = Core(topo, pusher=None)
    core.started = True          # serving, with every node down (never reached)
    return core


@pytest.fixture
def core_api():
    core = core_without_switches()
    server = ApiServer(core, tcp=("127.0.0.1", 0), authorizer=make_authorizer(core.topo))
    server.start()
    yield core, server
    server.stop()


def samples(text, name):
    """{labels: value} of metric *name* in an exposition."""
    out = {}
    for line in text.splitlines():
        m = re.match(rf"{name}(\{{.*\}})? (\S+)$", line)
        if m:
            out[m.group(1) or ""] = float(m.group(2))
    return out


# -- wire types ---------------------------------------------------------------------------

@pytest.mark.parametrize("body, message", [
    ({"network": "a/b", "node": "n"}, "api: name: required"),
    ({"name": "", "network": "a/b", "node": "n"}, "api: name: required"),
    ({"name": None, "network": "a/b", "node": "n"}, "api: name: required"),
    ({"name": "x", "network": "a/b", "node": "n", "colour": "red"},
     "api: colour: unknown field (allowed: name, network, node, mac, ip)"),
    ({"name": "x", "network": "a/b", "node": 7}, "api: node: must be a string, not int"),
    ({"name": "x", "network": "a/b", "node": "n", "ip": ["1"]},
     "api: ip: must be a string, not array"),
    ([1, 2], "api: the request body must be a JSON object, not array"),
])
def test_vm_request_errors_read_like_config_errors(body, message):
    with pytest.raises(ConfigError) as err:
        wire.parse(wire.VMRequest, body, "api")
    assert str(err.value) == message


def test_vm_request_drops_null_optionals():
    req = wire.parse(wire.VMRequest, {"name": "x", "network": "a/b", "node": "n", "mac": None},
                     "api")
    assert req.spec() == {"name": "x", "network": "a/b", "node": "n"}


def test_a_starting_core_answers_health_and_refuses_the_rest():
    """The provider's API listens while its core starts (Core.not_serving is the gate):
    health says "starting", a placement is refused with 503 and why, and once the core
    serves, the same request reaches it (here: 503 again, for the node that is down)."""
    core = core_without_switches()
    core.started = False
    with ApiServer(core, tcp=("127.0.0.1", 0), gate=core.not_serving) as server:
        client = ApiClient(server.endpoints[0], timeout=10, token=PROVIDER_TOKEN)
        health = client.health()
        assert health["status"] == "starting" and len(health["node_states"]) == 3
        with pytest.raises(ApiError) as starting:
            client.add_vm("web9", "acme/web", "compute1")
        assert starting.value.status == 503 and "is starting" in str(starting.value)
        core.started = True
        assert client.health()["status"] == "ok"
        with pytest.raises(ApiError) as down:
            client.add_vm("web9", "acme/web", "compute1")
        assert down.value.status == 503 and "compute1" in str(down.value)
        assert "starting" not in str(down.value)


def test_topology_answer_parses_into_the_model(core_api):
    core, server = core_api
    data = ApiClient(server.endpoints[0], token=PROVIDER_TOKEN).topology(typed=True)
    assert isinstance(data, wire.Topology)
    assert data.network("acme/web").segmentation_id == core.topo.network("acme/web").segmentation_id
    rebuilt = topology_from_api(data)
    assert sorted(rebuilt.vms()) == ["app1", "web1"]
    # A tenant sees its own network and VMs, nodes by name and role.
    mine = ApiClient(server.endpoints[0], token=ACME_TOKEN).topology(typed=True)
    assert mine.tenant == "acme" and [v.name for v in mine.vms] == ["web1"]
    assert mine.nodes[0].management_ip is None


def test_answer_that_does_not_fit_is_an_error():
    with pytest.raises(ConfigError, match=r"t: nodes.0.role: must be one of"):
        wire.parse(wire.Topology, {"nodes": [{"name": "a", "role": "toaster"}],
                                   "networks": [], "vms": []}, "t")


def test_docs_openapi_json_is_generated():
    with open(os.path.join(REPO, "docs", "openapi.json")) as fh:
        assert fh.read() == openapi_text(), \
            "docs/openapi.json is stale: regenerate it with `python -m tenantnet.controller.api`"


# -- health with node states --------------------------------------------------------------

def test_health_shows_node_states(core_api):
    _, server = core_api
    health = ApiClient(server.endpoints[0]).health(typed=True)        # open route
    assert health.status == "ok"
    if health.node_states is not None:      # Core.node_states (node-loss handling)
        assert {s.node for s in health.node_states} == {"compute1", "compute2", "net1"}


# -- GET /metrics -------------------------------------------------------------------------

def test_metrics_count_answers_placements_and_nodes(core_api):
    core, server = core_api
    client = ApiClient(server.endpoints[0], token=PROVIDER_TOKEN)
    before = client.metrics()
    assert "tenantnet_placement_seconds" in before and "tenantnet_nodes" in before
    with pytest.raises(ApiError) as err:
        client.get_vm("nope")
    assert err.value.status == 404
    with pytest.raises(ApiError) as err:
        client.add_vm("web9", "acme/web", "compute1")
    assert err.value.status == 503 and "compute" in err.value.message
    with pytest.raises(ApiError):
        client.add_vm("web9", "acme/nope", "compute1")                # 400
    after = client.metrics()
    errors = samples(after, "tenantnet_api_errors_total")
    assert errors['{status="404"}'] >= 1 and errors['{status="503"}'] >= 1
    assert errors['{status="400"}'] >= 1
    placements = samples(after, "tenantnet_placements_total")
    assert placements['{kind="add",result="error"}'] == 2
    if hasattr(core, "node_states"):
        nodes = samples(after, "tenantnet_nodes")
        assert sum(nodes.values()) == 3 and nodes['{state="up"}'] == 0
        assert samples(after, "tenantnet_placements_refused_node_down_total")[""] == 1
    assert after.startswith("# HELP") and "text/plain" in metrics_mod.CONTENT_TYPE


def test_metrics_are_the_providers_only(core_api):
    _, server = core_api
    with pytest.raises(ApiError) as err:
        ApiClient(server.endpoints[0]).metrics()
    assert err.value.status == 401
    with pytest.raises(ApiError) as err:
        ApiClient(server.endpoints[0], token=ACME_TOKEN).metrics()
    assert err.value.status == 403 and "provider" in err.value.message


def test_metrics_observe_the_southbound():
    m = metrics_mod.Metrics()
    m.ovsdb_transaction("compute1", 0.02)
    m.flow_sync("compute1", "brint-acme-web", 7, 0.01, bundle=True)
    m.flow_sync("compute1", "br-tun", 3)
    m.placement("add", 0.3, bridges_created=True)
    m.placement("add", 0.05, bridges_created=False)
    text = m.exposition()[0].decode()
    assert samples(text, "tenantnet_flows") == {
        '{bridge="brint-acme-web",node="compute1"}': 7.0,
        '{bridge="br-tun",node="compute1"}': 3.0}
    assert samples(text, "tenantnet_flow_bundle_seconds_count") == {'{node="compute1"}': 1}
    assert samples(text, "tenantnet_ovsdb_transaction_seconds_count") == {'{node="compute1"}': 1}
    assert samples(text, "tenantnet_placement_seconds_count") == {
        '{bridges="created",kind="add"}': 1, '{bridges="existing",kind="add"}': 1}


# -- HTTPS --------------------------------------------------------------------------------

def make_cert(directory):
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID
    import ipaddress
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "tenantnet test")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName(
                [x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256()))
    certfile, keyfile = os.path.join(directory, "api.crt"), os.path.join(directory, "api.key")
    with open(certfile, "wb") as fh:
        fh.write(cert.public_bytes(serialization.Encoding.PEM))
    with open(keyfile, "wb") as fh:
        fh.write(key.private_bytes(serialization.Encoding.PEM,
                                   serialization.PrivateFormat.PKCS8,
                                   serialization.NoEncryption()))
    return certfile, keyfile


def test_https(tmp_path):
    certfile, keyfile = make_cert(str(tmp_path))
    core = core_without_switches()
    sock = os.path.join(str(tmp_path), "api.sock")
    with ApiServer(core, tcp=("127.0.0.1", 0), unix_path=sock, unix_trusted=True,
                   authorizer=make_authorizer(core.topo),
                   tls={"certfile": certfile, "keyfile": keyfile}) as server:
        https, unix = server.endpoints
        assert https.startswith("https://127.0.0.1:")
        client = ApiClient(https, token=PROVIDER_TOKEN, ca_file=certfile)
        assert [v["name"] for v in client.list_vms()] == ["app1", "web1"]
        with pytest.raises(ApiError) as err:          # the system CAs do not know it
            ApiClient(https, token=PROVIDER_TOKEN).list_vms()
        assert err.value.status == 0 and "TLS" in err.value.message
        with pytest.raises(ApiError) as err:          # plain HTTP to the TLS port
            ApiClient(https.replace("https", "http"), token=PROVIDER_TOKEN).list_vms()
        assert err.value.status == 0
        assert len(ApiClient(unix).list_vms()) == 2   # the unix socket stays plain, trusted


def test_tls_with_a_missing_certificate_is_a_clear_error(tmp_path):
    server = ApiServer(core_without_switches(), tcp=("127.0.0.1", 0),
                       tls={"certfile": str(tmp_path / "nope.crt")})
    with pytest.raises(Exception) as err:
        server.start()
    assert "API TLS: cannot load" in str(err.value) and "\n" not in str(err.value)


# -- fuzzing -------------------------------------------------------------------------------

def test_fuzz_the_api_from_its_openapi_document(core_api):
    """schemathesis: generated requests, valid and invalid, on every route. Every placement
    that passes validation meets nodes that are down: 503, and nothing changes."""
    core, server = core_api
    vms_before = sorted(core.topo.vms())
    seen = fuzz(server.endpoints[0], token=PROVIDER_TOKEN, max_examples=120)
    statuses = {s for _, _, s in seen}
    assert {200, 400}.issubset(statuses), statuses
    assert sorted(core.topo.vms()) == vms_before


def test_fuzz_as_a_tenant(core_api):
    core, server = core_api
    seen = fuzz(server.endpoints[0], token=ACME_TOKEN, max_examples=120)
    assert any(s == 403 for _, p, s in seen if p == "/metrics")
    assert sorted(core.topo.vms()) == ["app1", "web1"]


def test_metrics_labels_stay_bounded(core_api):
    """Any token is an HTTP method: a client sending odd ones must not grow the label set."""
    import http.client
    _, server = core_api
    host, port = server.tcp_address
    for method in ("BREW", "X-ANYTHING"):
        conn = http.client.HTTPConnection(host, port, timeout=10)
        conn.request(method, "/v1/vms")
        assert conn.getresponse().status == 405
        conn.close()
    text = ApiClient(server.endpoints[0], token=PROVIDER_TOKEN).metrics()
    assert samples(text, "tenantnet_api_requests_total")['{method="other",status="405"}'] == 2
    assert "BREW" not in text
