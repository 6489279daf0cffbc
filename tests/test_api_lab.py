"""The API and its metrics against a live controller on the one-machine lab (minimal.yaml):
GET /metrics scraped while placements run, and a property-based fuzz test driven by the
OpenAPI document the controller serves, which must leave no trace on the switches."""

import os
import re

import pytest

from apifuzz import UnixForwarder, fuzz
from conftest import CONFIGS, lab_prerequisites, run_cli
from tenantnet.errors import ApiError
from tenantnet.lab.lab import Lab

pytestmark = [pytest.mark.lab, pytest.mark.integration,
              pytest.mark.skipif(lab_prerequisites() is not None, reason=str(lab_prerequisites()))]

PREFIX = os.environ.get("TENANTNET_API_PREFIX", "tna")
CONFIG = os.path.join(CONFIGS, "minimal.yaml")


@pytest.fixture(scope="module")
def lab():
    lab = Lab(prefix=PREFIX)
    lab.down()                                   # a leftover from an interrupted run
    proc = run_cli(PREFIX, "lab", "up", "-c", CONFIG, "--timeout", "120", check=False)
    assert proc.returncode == 0, proc.stderr + proc.stdout
    yield lab
    lab.down()


def on_node(node, *cmd):
    return run_cli(PREFIX, "lab", "node", node, "--", *cmd).stdout


def switches(lab):
    """Everything the controller could have changed on the nodes: bridges, ports and
    interfaces (with their options and external_ids) and every flow."""
    out = {}
    for node in sorted(n.name for n in lab.topology().nodes()):
        bridges = on_node(node, "ovs-vsctl", "list-br").split()
        rows = on_node(node, "ovs-vsctl", "--format=csv", "--data=json", "--no-headings",
                       "--columns=name,type,options,external_ids", "list", "Interface")
        flows = {}
        for br in bridges:
            dump = on_node(node, "ovs-ofctl", "-O", "OpenFlow13", "dump-flows", br,
                           "--no-stats")
            flows[br] = sorted(line.strip() for line in dump.splitlines()
                               if line.strip() and "_FLOW" not in line)
        out[node] = {"bridges": {br: sorted(on_node(node, "ovs-vsctl", "list-ports", br)
                                            .split()) for br in bridges},
                     "interfaces": sorted(rows.splitlines()), "flows": flows}
    return out


def samples(text, name):
    out = {}
    for line in text.splitlines():
        m = re.match(rf"{name}(\{{.*\}})? (\S+)$", line)
        if m:
            out[m.group(1) or ""] = float(m.group(2))
    return out


def test_metrics_move_with_placements(lab):
    api = lab.api()
    before = api.metrics()
    assert samples(before, "tenantnet_nodes").get('{state="up"}', 3) == 3
    flows = samples(before, "tenantnet_flows")
    assert any("brint-" in k for k in flows) and all(v > 0 for v in flows.values()), flows
    rec = lab.add_vm("web7", "acme/web", "compute2")       # compute2 hosts acme/web already
    assert rec["bridges_created"] is False
    with pytest.raises(ApiError):
        api.add_vm("web8", "acme/web", "net1")              # a network node: 400
    lab.del_vm("web7")
    after = api.metrics()

    def grew(name, labels):
        return samples(after, name).get(labels, 0) - samples(before, name).get(labels, 0)

    assert grew("tenantnet_placements_total", '{kind="add",result="ok"}') == 1
    assert grew("tenantnet_placements_total", '{kind="delete",result="ok"}') == 1
    assert grew("tenantnet_placement_seconds_count", '{bridges="existing",kind="add"}') == 1
    assert grew("tenantnet_api_errors_total", '{status="400"}') == 1
    assert sum(samples(after, "tenantnet_ovsdb_transaction_seconds_count").values()) > \
        sum(samples(before, "tenantnet_ovsdb_transaction_seconds_count").values())
    assert sum(samples(after, "tenantnet_flow_bundle_seconds_count").values()) > \
        sum(samples(before, "tenantnet_flow_bundle_seconds_count").values())


def test_fuzz_the_live_api_leaves_no_trace(lab):
    api = lab.api()
    vms_before = {v["name"] for v in api.list_vms()}
    state_before = switches(lab)
    with UnixForwarder(lab.api_socket) as fwd:
        seen = fuzz(fwd.url, max_examples=int(os.environ.get("TENANTNET_FUZZ_EXAMPLES", 200)))
    statuses = {s for _, _, s in seen}
    assert {200, 400, 404}.issubset(statuses), statuses
    # Deeper than the schema: requests that pass it and fail the model's validation.
    for body in ({"name": "fz1", "network": "acme/web", "node": "net1"},
                 {"name": "fz1", "network": "acme/web", "node": "compute1", "ip": "10.9.9.9"},
                 {"name": "fz1", "network": "acme/web", "node": "compute1",
                  "mac": "ff:ff:ff:ff:ff:ff"},
                 {"name": "web1", "network": "acme/web", "node": "compute2"}):
        with pytest.raises(ApiError) as err:
            api.request("POST", "/v1/vms", body)
        assert err.value.status == 400, err.value
    for name in sorted({v["name"] for v in api.list_vms()} - vms_before):
        api.del_vm(name)         # a generated placement that was valid (none expected)
    assert {v["name"] for v in api.list_vms()} == vms_before
    assert switches(lab) == state_before
