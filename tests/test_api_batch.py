"""POST /v1/vm-batches: many VMs placed in one request, realised as one group, all or none.

The refusals (a bad item named by its index and name, duplicate names, an empty or too
large batch, a tenant's token on another tenant's network, no or a bad credential, a node
that is down) against the real core behind a real ApiServer, with no switch: nothing of a
refused batch may reach the model. The placement itself (one OVSDB transaction per node for
the whole batch, the VMs carrying packets) and a batch a switch refuses (the switches put
back, none of its VMs placed) on the one-machine lab (minimal.yaml)."""

import os
import subprocess

import pytest

from conftest import CONFIGS, lab_prerequisites, run_cli, two_tenant_config
from tenantnet.controller.api import ApiServer
from tenantnet.controller.client import ApiClient
from tenantnet.controller.core import Core
from tenantnet.controller.tenancy import make_authorizer
from tenantnet.controller.wire import MAX_VM_BATCH
from tenantnet.errors import ApiError
from tenantnet.lab.lab import Lab
from tenantnet.model import config, naming


def tenant_config():
    text = two_tenant_config(2, ("web1@compute1", "app1@compute2"),
                             header="controller: {api_token: provider-secret}")
    text = text.replace("  - name: acme\n", "  - name: acme\n    token: acme-secret\n")
    return text.replace("  - name: globex\n", "  - name: globex\n    token: globex-secret\n")


@pytest.fixture
def core_api(tmp_path):
    """(core, provider client, url): the real core (no switch: its nodes are not up)."""
    topo = config.load_text(tenant_config(), "t.yaml")
    core = Core(topo, pusher=None)
    core.started = True
    server = ApiServer(core, tcp=("127.0.0.1", 0), authorizer=make_authorizer(topo)).start()
    url = f"http://127.0.0.1:{server.tcp_address[1]}"
    yield core, ApiClient(url, token="provider-secret"), url
    server.stop()


def vm(name, node="compute1", net="acme/web", **extra):
    return dict(name=name, network=net, node=node, **extra)


def refused(client, body, status=400):
    """The error message of POST /v1/vm-batches *body*, which must answer *status*."""
    with pytest.raises(ApiError) as err:
        client.request("POST", "/v1/vm-batches", body)
    assert err.value.status == status, err.value
    return str(err.value)


@pytest.mark.parametrize("items, words", [
    # the shape (the wire type): the item's index and name, the key, the problem
    ([vm("b1"), vm("b2", node=3)], "api: vms[1] (b2): node: must be a string, not int"),
    ([vm("b1"), vm("b2", colour="red")], "api: vms[1] (b2): colour: unknown field (allowed: "
                                         "name, network, node, mac, ip)"),
    ([vm("b1"), "b2"], "api: vms[1]: must be a JSON object, not string"),
    ([vm("b1"), {"network": "acme/web", "node": "compute1"}], "api: vms[1]: name: required"),
    # the meaning (the model), each item seeing the ones before it
    ([vm("b1"), vm("b2", node="net1")], "API request: vms[1] (b2): node: node 'net1' is a "
                                        "network node"),
    ([vm("b1", ip="10.0.0.50"), vm("b2", ip="10.0.0.50")],
     "API request: vms[1] (b2): ip: 10.0.0.50 is already used by b1"),
    ([vm("b1"), vm("web1")], "API request: vms[1] (web1): name: duplicate VM name 'web1'"),
    ([vm("b1"), vm("b2", net="acme/nowhere")], "API request: vms[1] (b2): network:"),
    ([vm("b1"), vm("b2"), vm("b1", node="compute2")],
     "API request: vms[2] (b1): the name is also vms[0]'s"),
])
def test_a_bad_item_refuses_the_batch_and_is_named(core_api, items, words):
    core, client, _ = core_api
    before = core.topo
    message = refused(client, {"vms": items})
    assert message.startswith(words), message
    if message.startswith("API request"):
        assert message.endswith(f"(none of the batch's {len(items)} VMs was placed)"), message
    assert core.topo is before and set(core.topo.vms()) == {"web1", "app1"}


@pytest.mark.parametrize("body, words", [
    ({"vms": []}, "api: vms: must name at least one VM"),
    ({"vms": [vm(f"b{i}") for i in range(MAX_VM_BATCH + 1)]},
     f"api: vms: at most {MAX_VM_BATCH} VMs in one batch (got {MAX_VM_BATCH + 1}); send "
     "several batches"),
    ({"vms": vm("b1")}, "api: vms: must be a list, not object"),
    ({}, "api: vms: required"),
    ({"vms": [vm("b1")], "dry_run": True}, "api: dry_run: unknown field (allowed: vms)"),
])
def test_the_batch_itself_is_checked(core_api, body, words):
    core, client, _ = core_api
    assert refused(client, body) == words
    assert set(core.topo.vms()) == {"web1", "app1"}


def test_a_tenant_places_on_its_own_networks_only(core_api):
    core, _, url = core_api
    acme = ApiClient(url, token="acme-secret")
    message = refused(acme, {"vms": [vm("b1"), vm("evil", net="globex/app")]}, 403)
    assert message == ("vms[1] (evil): tenant acme has no network 'globex/app' (none of "
                       "the batch's 2 VMs was placed)")
    # its own networks pass the tenant check and go on to the core (whose nodes are down)
    message = refused(acme, {"vms": [vm("b1"), vm("b2", node="compute2")]}, 503)
    assert "none of the batch's 2 VMs was placed" in message
    assert set(core.topo.vms()) == {"web1", "app1"}


def test_credentials_are_needed(core_api):
    core, _, url = core_api
    assert refused(ApiClient(url), {"vms": [vm("b1")]}, 401).startswith(
        "this API needs a credential")
    assert refused(ApiClient(url, token="wrong"), {"vms": [vm("b1")]}, 403) == \
        "the credential is not valid"
    assert set(core.topo.vms()) == {"web1", "app1"}


def test_a_node_down_refuses_the_whole_batch_as_the_single_route_does(core_api):
    core, client, _ = core_api
    with pytest.raises(ApiError) as single:
        client.add_vm("b1", "acme/web", "compute1")
    with pytest.raises(ApiError) as batch:
        client.add_vms([vm("b1"), vm("b2")])         # the same nodes as b1 alone
    assert single.value.status == batch.value.status == 503
    assert str(batch.value) == f"{single.value} (none of the batch's 2 VMs was placed)"
    assert set(core.topo.vms()) == {"web1", "app1"}


# -- on the lab -------------------------------------------------------------------------------
PREFIX = os.environ.get("TENANTNET_BATCH_PREFIX", "tnvb")


@pytest.fixture(scope="module")
def lab():
    lab = Lab(prefix=PREFIX)
    lab.down()                                   # a leftover from an interrupted run
    proc = run_cli(PREFIX, "lab", "up", "-c", os.path.join(CONFIGS, "minimal.yaml"),
                   "--timeout", "120", check=False)
    assert proc.returncode == 0, proc.stderr + proc.stdout
    yield lab
    lab.down()


def ovsdb_transactions(api):
    """The controller's OVSDB transactions so far (all nodes), from GET /metrics."""
    total = 0.0
    for line in api.metrics().splitlines():
        if line.startswith("tenantnet_ovsdb_transaction_seconds_count"):
            total += float(line.rsplit(" ", 1)[1])
    return total


def ports(lab):
    """{node: sorted ports of every bridge}, as the switches have them."""
    out = {}
    for node in ("compute1", "compute2", "net1"):
        ovs = lab.fabric.ovs(node)
        proc = subprocess.run(["ovs-vsctl", f"--db={ovs.unix_remote}", "--format=csv",
                               "--no-headings", "--data=bare", "--columns=name", "list",
                               "port"], env=ovs.env, capture_output=True, text=True, check=True)
        out[node] = sorted(proc.stdout.split())
    return out


def make_vm_endpoints(lab, specs):
    for spec in specs:
        lab.fabric.add_endpoint(spec["name"], spec["node"], naming.vm_port_name(spec["name"]),
                                kind="vm")


@pytest.mark.lab
@pytest.mark.integration
@pytest.mark.skipif(lab_prerequisites() is not None, reason=str(lab_prerequisites()))
def test_a_batch_is_one_group_and_its_vms_carry_packets(lab):
    api = lab.api()
    specs = [vm("b1"), vm("b2"), vm("b3", node="compute2")]
    make_vm_endpoints(lab, specs)
    before = ovsdb_transactions(api)
    answers = api.add_vms(specs)
    try:
        assert [a["name"] for a in answers] == ["b1", "b2", "b3"]
        assert [a["node"] for a in answers] == ["compute1", "compute1", "compute2"]
        for a in answers:
            assert a["port"] == naming.vm_port_name(a["name"]) and a["bridges_created"] is False
            assert a["timings"]["batch_size"] == 3 and a["timings"]["group_size"] == 1
        # one transaction on each node that gets ports (three, one per VM, if realised
        # one at a time)
        assert ovsdb_transactions(api) - before == 2
        topo = lab.topology_from_api()
        for name in ("b1", "b2", "b3"):
            lab.configure_attachment(topo, topo.vm(name))
        ips = {name: topo.vm(name).ip for name in ("b1", "b2", "b3", "web2")}
        assert lab.ping("b1", ips["b3"], count=3, wait=2)       # compute1 -> compute2
        assert lab.ping("b3", ips["b2"], count=3, wait=2)
        assert lab.ping("b2", ips["web2"], count=3, wait=2)     # a VM of the config
    finally:
        for spec in specs:
            lab.del_vm(spec["name"])
    assert {v["name"] for v in api.list_vms()} == {"web1", "web2"}


@pytest.mark.lab
@pytest.mark.integration
@pytest.mark.skipif(lab_prerequisites() is not None, reason=str(lab_prerequisites()))
def test_a_batch_a_switch_refuses_places_none_of_its_vms(lab):
    api = lab.api()
    good, bad = vm("c1"), vm("c2", node="compute2")     # c2 has no device on compute2
    make_vm_endpoints(lab, [good])
    try:
        have = ports(lab)
        with pytest.raises(ApiError) as err:
            api.add_vms([good, bad])
        assert err.value.status == 502, err.value
        assert naming.vm_port_name("c2") in str(err.value)
        assert str(err.value).endswith("(none of the batch's 2 VMs was placed)")
        assert {v["name"] for v in api.list_vms()} == {"web1", "web2"}
        assert ports(lab) == have             # c1's port taken back with c2's
        # the same VM alone is placed: nothing of the failed batch is in its way
        assert api.add_vms([good])[0]["name"] == "c1"
        assert naming.vm_port_name("c1") in ports(lab)["compute1"]
    finally:
        if "c1" in {v["name"] for v in api.list_vms()}:
            api.del_vm("c1")
        lab.fabric.remove_endpoint("c1")
