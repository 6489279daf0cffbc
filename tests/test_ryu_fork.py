"""A tenant's controller under the real Ryu: `ryu-manager ryu_apps.tenant_l2 ryu.app.ofctl_rest`.

The lab (prefix tnr) hands acme/web's bridges to acme's controller. This test runs that
controller with the ryu-manager of the csle-ryu-fork package (.venv-ryu, made by
scripts/setup-ryu-fork): tenant_l2 next to Ryu's stock ofctl_rest, whose REST API listens
only on the tenant host's lab address (--wsapi-host 198.18.0.201, inside the lab's
namespace). The tenant adds a flow of its own through that API (cookie 0, as ofctl_rest's
users usually do); the flow takes effect (pings stop, its packet counter counts); and
tenant_l2's syncs, after a placement change and after a restart of the controller (a full
dump-and-diff sync), leave it alone.

Skipped, saying why, only when the Ryu fork cannot be installed on this machine.
"""

import json
import os
import subprocess
import sys
import threading
import time
import urllib.request

import pytest

from conftest import ROOT, lab_prerequisites
from tenantnet.controller import runner as ofrunner
from tenantnet.lab.lab import Lab
from tenantnet.model import naming
from tenantnet.model.flowspec import COOKIE_PREFIX

pytestmark = [pytest.mark.lab,
              pytest.mark.skipif(lab_prerequisites() is not None, reason=str(lab_prerequisites()))]

PREFIX = os.environ.get("TENANTNET_TEST_PREFIX_RYU_FORK", "tnr")
SETUP = os.path.join(ROOT, "scripts", "setup-ryu-fork")
FORK_MANAGER = os.path.join(ROOT, ".venv-ryu", "bin", "ryu-manager")
TENANT_IP = "198.18.0.201"
WSAPI_PORT = 8080
DROP_PRIORITY = 600

CONFIG = f"""
mode: dnb
controller:
  management_ip: 198.18.0.1
  api_token: provider-lab-token
nodes:
  - {{name: compute1, role: compute, management_ip: 198.18.0.11, transport_ip: 198.19.0.11}}
  - {{name: compute2, role: compute, management_ip: 198.18.0.12, transport_ip: 198.19.0.12}}
  - {{name: net1, role: network, management_ip: 198.18.0.2, transport_ip: 198.19.0.2}}
tenants:
  - name: acme
    token: acme-lab-token
    networks:
      - {{name: web, segmentation_id: 100, cidr: 10.0.0.0/24, transport_cidr: 198.19.100.0/24,
         controller: "ssl:{TENANT_IP}:6653"}}
vms:
  - {{name: web1, network: acme/web, node: compute1}}
  - {{name: web2, network: acme/web, node: compute2}}
"""


def fork_manager():
    """The fork's ryu-manager, set up if needed (quick when done); skip if it cannot be."""
    proc = subprocess.run(["bash", SETUP], capture_output=True, text=True, timeout=900)
    if proc.returncode != 0 or not os.access(FORK_MANAGER, os.X_OK):
        lines = [ln for ln in proc.stderr.splitlines() if "is ignored" not in ln]
        pytest.skip("the Ryu fork (csle-ryu-fork) cannot be installed here: "
                    + (lines[-1] if lines else f"scripts/setup-ryu-fork exited {proc.returncode}"))
    return FORK_MANAGER


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    manager = fork_manager()
    config = tmp_path_factory.mktemp("ryu-fork") / "acme-ryu.yaml"
    config.write_text(CONFIG)
    lab = Lab(prefix=PREFIX)
    lab.down()
    proc = subprocess.run([sys.executable, "-m", "tenantnet.cli", "lab", "up", "-c", str(config),
                           "--prefix", PREFIX, "--timeout", "120"],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr + proc.stdout
    lab.fork_manager = manager
    try:
        yield lab
    finally:
        lab.down()
    assert not [n for n in os.listdir("/run/netns") if n.startswith(PREFIX + "-")]


def start_under_fork(lab):
    """acme's controller: the fork's ryu-manager running tenant_l2 and ofctl_rest.
    Returns the offset of the tenant log where this run's output begins."""
    log = lab.tenant_log("acme")
    offset = os.path.getsize(log) if os.path.exists(log) else 0
    lab.start_tenant_controller("acme", app="ryu.app.ofctl_rest", manager=lab.fork_manager,
                                args=["--wsapi-host", TENANT_IP,
                                      "--wsapi-port", str(WSAPI_PORT)])
    return offset


def log_since(lab, offset):
    with open(lab.tenant_log("acme")) as fh:
        fh.seek(offset)
        return fh.read()


def rest(lab, method, path, body=None, timeout=5):
    """A call to ofctl_rest, made from inside acme's controller host (the lab namespace)."""
    out = {}

    def call():
        try:
            ofrunner.enter_netns(f"{lab.prefix}-tc-acme")
            data = None if body is None else json.dumps(body).encode()
            req = urllib.request.Request(f"http://{TENANT_IP}:{WSAPI_PORT}{path}", data=data,
                                         method=method)
            with urllib.request.urlopen(req, timeout=timeout) as resp:
                text = resp.read().decode()
                out["value"] = json.loads(text) if text.strip() else None
        except Exception as exc:  # noqa: BLE001 -- handed to the caller
            out["error"] = exc

    t = threading.Thread(target=call)
    t.start()
    t.join(timeout + 5)
    if "error" in out:
        raise out["error"]
    return out.get("value")


def wait_for(cond, timeout=30.0):
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            if cond():
                return True
        except OSError:
            pass
        time.sleep(0.2)
    return False


def ip_of(lab, vm):
    return {v["name"]: v for v in lab.api().list_vms()}[vm]["ip"]


def tenant_flow(lab, dpid):
    """The tenant's own drop flow as ofctl_rest reports it (or None)."""
    flows = rest(lab, "GET", f"/stats/flow/{dpid}")[str(dpid)]
    mine = [f for f in flows if f["priority"] == DROP_PRIORITY and f["cookie"] == 0]
    return mine[0] if mine else None


def test_tenant_flow_through_ofctl_rest_survives_tenant_l2(lab):
    bridge = naming.brint_name("acme/web")
    dpid = naming.datapath_id("compute1", bridge)
    lab.stop_tenant_controller("acme")
    offset = start_under_fork(lab)
    try:
        # ofctl_rest answers, and tenant_l2 (under the fork's ryu-manager) has synced the
        # reconnected bridge: a full sync, dump and diff
        assert wait_for(lambda: dpid in rest(lab, "GET", "/stats/switches")), \
            log_since(lab, offset)
        assert wait_for(lambda: f"compute1/{bridge} +" in log_since(lab, offset)), \
            log_since(lab, offset)
        text = log_since(lab, offset)
        assert "loading app ryu.app.ofctl_rest" in text and "Traceback" not in text, text
        web2_ip = ip_of(lab, "web2")
        assert lab.ping("web1", web2_ip)

        # The tenant's own flow, through Ryu's REST API: drop IPv4 from web1 to web2.
        ports = {p["name"]: p["port_no"]
                 for p in rest(lab, "GET", f"/stats/portdesc/{dpid}")[str(dpid)]}
        web1_port = ports[lab.topology().vm("web1").port]
        rest(lab, "POST", "/stats/flowentry/add", {
            "dpid": dpid, "cookie": 0, "table_id": 0, "priority": DROP_PRIORITY,
            "match": {"in_port": web1_port, "dl_type": 0x0800, "nw_dst": web2_ip},
            "actions": []})
        assert wait_for(lambda: tenant_flow(lab, dpid) is not None, 10)
        # it takes effect: web1 no longer reaches web2, and the flow counts what it dropped
        assert not lab.ping("web1", web2_ip, count=3, wait=1)
        dropped = tenant_flow(lab, dpid)["packet_count"]
        assert dropped >= 3

        # A placement change: tenant_l2 syncs every acme bridge and programs the new VM ...
        rec = lab.add_vm("web9", "acme/web", "compute1")
        lab.wait_reachable(lab.topology_from_api(), ["web9"], timeout=30)
        assert lab.ping("web1", rec["ip"].split("/")[0])
        # ... and leaves the tenant's flow alone: still there, still dropping
        assert not lab.ping("web1", web2_ip, count=2, wait=1)
        assert tenant_flow(lab, dpid)["packet_count"] >= dropped + 2
        ours = lab.fabric.ovs("compute1").ofctl("dump-flows", bridge).stdout
        assert f"cookie=0x{COOKIE_PREFIX:08x}" in ours

        # A restart of the controller: every bridge reconnects and tenant_l2 dumps its
        # flows ("TNNT" cookies) and diffs. The cookie-0 flow is not among them.
        lab.stop_tenant_controller("acme")
        offset = start_under_fork(lab)
        assert wait_for(lambda: f"compute1/{bridge} +" in log_since(lab, offset)), \
            log_since(lab, offset)
        assert wait_for(lambda: dpid in rest(lab, "GET", "/stats/switches"))
        assert tenant_flow(lab, dpid) is not None
        assert not lab.ping("web1", web2_ip, count=1, wait=1)

        # The tenant removes it again, through the same API: web1 reaches web2.
        rest(lab, "POST", "/stats/flowentry/delete_strict", {
            "dpid": dpid, "table_id": 0, "priority": DROP_PRIORITY,
            "match": {"in_port": web1_port, "dl_type": 0x0800, "nw_dst": web2_ip}})
        assert wait_for(lambda: lab.ping("web1", web2_ip), 10)
        lab.del_vm("web9")
    finally:
        lab.stop_tenant_controller("acme")
        lab.start_tenant_controller("acme")       # back to our ryu-manager
    assert wait_for(lambda: lab.ping("web1", ip_of(lab, "web2")), 30)
