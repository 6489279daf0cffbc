"""Tenant-run controllers, provider side, and per-tenant API credentials."""

import pytest

from conftest import two_tenant_config
from tenantnet.model import config, naming
from tenantnet.controller.api import ApiServer
from tenantnet.controller.client import ApiClient
from tenantnet.controller.core import Core
from tenantnet.controller.tenancy import make_authorizer
from tenantnet.model.desired import node_state
from tenantnet.errors import ApiError, ConfigError
from tenantnet.model.flows import node_flows
from tenantnet.controller.tenant import topology_from_api

ACME_CTL = "ssl:198.18.0.201:6653"


def tenant_config(extra_vms=()):
    text = two_tenant_config(2, ("web1@compute1", "web2@compute2", "app1@compute1") + extra_vms,
                             header="controller: {api_token: provider-secret}")
    text = text.replace("  - name: acme\n", "  - name: acme\n    token: acme-secret\n")
    text = text.replace("  - name: globex\n", "  - name: globex\n    token: globex-secret\n")
    return text.replace("transport_cidr: 198.19.100.0/24}",
                        f"transport_cidr: 198.19.100.0/24, controller: '{ACME_CTL}'}}")


def test_provider_points_tenant_bridges_at_tenant_controller_and_never_programs_them():
    topo = config.load_text(tenant_config(), "t.yaml")
    state = node_state(topo, "compute1")
    assert state.bridges[naming.brint_name("acme/web")].controller == ACME_CTL
    assert state.bridges[naming.brtun_name("acme/web")].controller == ACME_CTL
    assert state.bridges[naming.brint_name("globex/app")].controller == "ssl:198.18.0.1:6653"
    provider = node_flows(topo, "compute1")
    assert naming.brtun_name("acme/web") not in provider
    assert naming.brtun_name("globex/app") in provider and "br-tun" in provider
    acme = node_flows(topo, "compute1", tenant="acme")
    assert set(acme) == {naming.brint_name("acme/web"), naming.brtun_name("acme/web")}
    assert node_flows(topo, "compute1", tenant="globex") == {}
    # the provider still carries acme's endpoint on the common br-tun (underlay)
    underlay = [f for f in provider["br-tun"].flows if f.rule == "underlay"]
    assert any(f.match_dict.get("in_port") == naming.ex_port_name("acme/web") for f in underlay)
    dpid = naming.datapath_id("compute1", naming.brtun_name("acme/web"))
    assert naming.dpid_owner(topo, dpid) is None
    assert naming.dpid_owner(topo, dpid, tenant="acme") == ("compute1",
                                                            naming.brtun_name("acme/web"))
    assert naming.dpid_owner(topo, dpid, tenant="globex") is None


@pytest.mark.parametrize("edit,key,words", [
    (lambda t: t.replace(ACME_CTL, "ssl:nowhere:6653"), "tenants[0].networks[0].controller",
     "not an IPv4 address"),
    (lambda t: t.replace(ACME_CTL, "http://198.18.0.201"), "tenants[0].networks[0].controller",
     "not an OpenFlow controller target"),
    (lambda t: t.replace("transport_cidr: 198.19.200.0/24}",
                         f"transport_cidr: 198.19.200.0/24, controller: '{ACME_CTL}'}}"),
     "tenants[1].networks[0].controller", "never share"),
    (lambda t: t.replace(", controller: '", ", mode: cnb, controller: '"),
     "tenants[0].networks[0].controller", "only a DNB network"),
    (lambda t: t.replace(ACME_CTL, "tcp:198.18.0.201:6653"), "tenants[0].networks[0].controller",
     "with TLS (the default) a tenant's controller is ssl:IP:PORT"),
    (lambda t: "security: insecure\n" + t, "tenants[0].networks[0].controller",
     "nodes have no certificates"),
    (lambda t: "security: plaintext\n" + t, "security", "expected one of: tls, insecure"),
    (lambda t: t.replace("token: globex-secret", "token: acme-secret"), "tenants[1].token",
     "already used"),
    (lambda t: t.replace("token: globex-secret", "token: short"), "tenants[1].token",
     "at least 8"),
])
def test_bad_tenant_controller_and_token_config(edit, key, words):
    with pytest.raises(ConfigError) as exc:
        config.load_text(edit(tenant_config()), "t.yaml")
    assert exc.value.key == key and words in exc.value.problem


def test_tenant_rebuilds_the_same_flows_from_its_api_view():
    topo = config.load_text(tenant_config(), "t.yaml")
    core = Core(topo, pusher=None)
    view = core.for_principal("tenant:acme").topology()
    assert {n["key"] for n in view["networks"]} == {"acme/web"}
    assert {v["name"] for v in view["vms"]} == {"web1", "web2"}
    assert all(set(n) == {"name", "role"} for n in view["nodes"])    # no provider addresses
    rebuilt = topology_from_api(view)
    for node in ("compute1", "compute2", "net1"):
        mine = node_flows(rebuilt, node, tenant="acme")
        theirs = node_flows(topo, node, tenant="acme")
        assert {b: bf.flows for b, bf in mine.items()} == {b: bf.flows for b, bf in theirs.items()}


@pytest.fixture
def api(tmp_path):
    topo = config.load_text(tenant_config(), "t.yaml")
    core = Core(topo, pusher=None)
    core.started = True
    server = ApiServer(core, tcp=("127.0.0.1", 0), unix_path=str(tmp_path / "api.sock"),
                       authorizer=make_authorizer(topo), unix_trusted=True).start()
    url = f"http://127.0.0.1:{server.tcp_address[1]}"
    yield core, url, f"unix:{tmp_path / 'api.sock'}"
    server.stop()


def test_credentials_scope_what_each_caller_sees(api):
    core, url, sock = api
    with pytest.raises(ApiError) as exc:
        ApiClient(url).list_vms()
    assert exc.value.status == 401 and "credential" in str(exc.value)
    with pytest.raises(ApiError) as exc:
        ApiClient(url, token="wrong-secret").list_vms()
    assert exc.value.status == 403
    assert ApiClient(url).health()["status"] == "ok"            # health needs none
    everything = {v["name"] for v in ApiClient(url, token="provider-secret").list_vms()}
    assert everything == {"web1", "web2", "app1"}
    assert {v["name"] for v in ApiClient(url, token="acme-secret").list_vms()} == {"web1", "web2"}
    assert {v["name"] for v in ApiClient(url, token="globex-secret").list_vms()} == {"app1"}
    assert {v["name"] for v in ApiClient(sock).list_vms()} == everything   # owner-only socket
    with pytest.raises(ApiError) as exc:
        ApiClient(url, token="acme-secret").get_vm("app1")
    assert exc.value.status == 404                              # not even its existence


def test_a_tenant_cannot_change_another_tenants_network(api):
    core, url, _ = api
    acme = ApiClient(url, token="acme-secret")
    before = core.list_vms()
    with pytest.raises(ApiError) as exc:
        acme.add_vm("evil", "globex/app", "compute2")
    assert exc.value.status == 403 and "no network" in str(exc.value)
    with pytest.raises(ApiError) as exc:
        acme.del_vm("app1")
    assert exc.value.status == 404
    with pytest.raises(ApiError) as exc:
        ApiClient(url).del_vm("app1")
    assert exc.value.status == 401
    assert core.list_vms() == before
