"""ryu_apps.tenant_l2 + ryu_apps.tenant_acl, composed, against a real Open vSwitch.

Harness (like tests/test_ofswitch.py): a namespace tnx-a-<pid> with a private OvsInstance
holding the tenant's brint- bridge of acme/web on compute1, a stand-in for the provider's
API (GET /v1/topology as a tenant sees it) on the namespace's 127.0.0.1, and the two apps
under os-ken in this process (tenantnet.controller.runner.ControllerRuntime), configured
through oslo.config as `ryu-manager ... --config-file` would.

What it shows: each app's sync deletes only flows with its own cookie prefix ("TNNT" for
tenant_l2, "TACL" for tenant_acl); flows another app installed (another cookie, or cookie 0)
survive tenant_l2's full sync (dump + delete) and tenant_acl's; and the drop rules follow
placement changes through tenant_l2's EventBridgeSynced.
"""

import http.server
import importlib
import json
import os
import re
import shutil
import subprocess
import sys
import threading
import time

import pytest

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from tenantnet.controller import runner as ofrunner  # noqa: E402
from tenantnet.lab import netns as ns  # noqa: E402
from tenantnet.lab.ovs import OvsInstance  # noqa: E402
from tenantnet.model import config, naming  # noqa: E402
from tenantnet.model.flowspec import COOKIE_PREFIX, Flow  # noqa: E402
from tenantnet.southbound import ofctl  # noqa: E402

TAG = f"tnx-a-{os.getpid()}"
BASE = f"/tmp/{TAG}"
ACL_PREFIX = 0x5441434C
NEAR_PREFIX = COOKIE_PREFIX ^ 1      # one bit away from ours: not ours

ROOT_ONLY = pytest.mark.skipif(
    os.geteuid() != 0 or (not shutil.which("ovs-vswitchd") and
                          not os.path.exists("/usr/sbin/ovs-vswitchd")),
    reason="needs root and Open vSwitch")


def topology_yaml(of_port):
    return f"""
mode: dnb
security: insecure         # the apps' composition on a plain-TCP switch; TLS: test_tls.py
controller: {{management_ip: 198.18.0.1}}
nodes:
  - {{name: compute1, role: compute, management_ip: 198.18.0.11, transport_ip: 198.19.0.11}}
  - {{name: net1, role: network, management_ip: 198.18.0.2, transport_ip: 198.19.0.2}}
tenants:
  - name: acme
    token: acme-test-token
    networks:
      - {{name: web, segmentation_id: 100, cidr: 10.0.0.0/24, transport_cidr: 198.19.100.0/24,
         controller: "tcp:127.0.0.1:{of_port}"}}
vms:
  - {{name: web1, network: acme/web, node: compute1}}
  - {{name: web2, network: acme/web, node: compute1}}
  - {{name: web3, network: acme/web, node: compute1}}
"""


# -- pure: the sync plan of each owner ----------------------------------------------------

def test_plan_sync_deletes_only_its_own_prefix():
    flows = [Flow.make(0, 0, {}, [("output", "NORMAL")]),
             Flow.make(0, 500, {"in_port": 1, "eth_dst": "02:00:00:00:00:02"}, [])]
    stale_ours = (COOKIE_PREFIX << 32) | 7
    stale_acl = (ACL_PREFIX << 32) | 7
    foreign = {0, 0x1234, (NEAR_PREFIX << 32) | 7, stale_acl, stale_ours}
    add, delete = ofctl.plan_sync(flows, foreign)
    assert add == flows and delete == [stale_ours]
    add, delete = ofctl.plan_sync(flows, foreign | {f.cookie(ACL_PREFIX) for f in flows},
                                  ACL_PREFIX)
    assert add == [] and delete == [stale_acl]
    assert flows[0].cookie() >> 32 == COOKIE_PREFIX
    assert flows[0].cookie(ACL_PREFIX) >> 32 == ACL_PREFIX
    assert flows[0].cookie() & 0xFFFFFFFF == flows[0].cookie(ACL_PREFIX) & 0xFFFFFFFF


# -- settings errors: one line ------------------------------------------------------------

def our_ryu_manager():
    script = os.path.join(os.path.dirname(sys.executable), "ryu-manager")
    if os.access(script, os.X_OK):
        return [script]
    return [sys.executable, "-m", "tenantnet.controller.ryumanager"]


@pytest.mark.parametrize("text,expect", [
    ("[tenant_l2]\napi = http://127.0.0.1:9\n", "no tenant: set [tenant_l2] tenant"),
    ("[tenant_l2]\ntenant = acme\n", "no api: set [tenant_l2] api"),
    ("[tenant_l2]\ntenant = acme\napi = ftp://x\n", "[tenant_l2] api: must be http://"),
    ("[tenant_l2]\ntenant = acme\napi = http://127.0.0.1:9\npoll_interval = fast\n",
     "[tenant_l2] poll_interval: bad value"),
    ("[tenant_l2]\ntenant = acme\napi = http://127.0.0.1:9\ntoken_file = /nonexistent/t\n",
     "[tenant_l2] token_file: cannot read /nonexistent/t"),
    ("[tenant_l2]\ntenant = acme\napi = http://127.0.0.1:9\n[tenant_acl]\npairs = web1\n",
     "[tenant_acl] pairs: 'web1' is not 'src_vm>dst_vm'"),
])
def test_bad_settings_are_one_line(tmp_path, text, expect):
    conf = tmp_path / "t.conf"
    conf.write_text(text)
    proc = subprocess.run([*our_ryu_manager(), "ryu_apps.tenant_l2", "ryu_apps.tenant_acl",
                           "--config-file", str(conf), "--ofp-listen-host", "127.0.0.1",
                           "--ofp-tcp-listen-port", "0"],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode != 0
    assert "Traceback" not in proc.stderr, proc.stderr
    assert expect in proc.stderr.strip().splitlines()[-1], proc.stderr


# -- against Open vSwitch -----------------------------------------------------------------

class FakeProvider:
    """GET /v1/topology as the tenant acme sees it, served inside the namespace."""

    def __init__(self, netns, topo):
        self.netns = netns
        self.topo = topo
        self.vms = set()
        self.server = None
        self.port = None
        self._ready = threading.Event()

    def data(self):
        t = self.topo
        return {"mode": t.mode, "tenant": "acme",
                "nodes": [{"name": n.name, "role": n.role} for n in t.nodes()],
                "networks": [{"tenant": n.tenant, "name": n.name,
                              "segmentation_id": n.segmentation_id, "cidr": n.cidr,
                              "transport_cidr": n.transport_cidr, "mode": n.mode,
                              "controller": n.controller} for n in t.networks().values()],
                "vms": [v.as_dict() for name, v in sorted(t.vms().items())
                        if name in self.vms]}

    def start(self):
        provider = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):
                body = json.dumps(provider.data()).encode()
                self.send_response(200 if self.path == "/v1/topology" else 404)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        def serve():
            ofrunner.enter_netns(self.netns)
            self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
            self.port = self.server.server_address[1]
            self._ready.set()
            self.server.serve_forever(poll_interval=0.1)

        threading.Thread(target=serve, daemon=True).start()
        assert self._ready.wait(10)

    def stop(self):
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()


def _free_port_in(netns):
    out = {}

    def probe():
        import socket
        ofrunner.enter_netns(netns)
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        out["port"] = s.getsockname()[1]
        s.close()

    t = threading.Thread(target=probe)
    t.start()
    t.join()
    return out["port"]


def wait_for(cond, timeout=20.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return True
        time.sleep(0.1)
    return False


class Harness:
    def __init__(self):
        self.netns = TAG
        self.ovs = OvsInstance(os.path.join(BASE, "ovs"), netns=self.netns)
        self.runtime = None
        self.provider = None
        self.overrides = []

    def start(self):
        os.makedirs(BASE, exist_ok=True)
        ns.add(self.netns)
        self.ovs.start()
        self.of_port = _free_port_in(self.netns)
        self.topo = config.load_text(topology_yaml(self.of_port))
        self.bridge = naming.brint_name("acme/web")
        self.dpid = naming.datapath_id("compute1", self.bridge)
        self.provider = FakeProvider(self.netns, self.topo)
        self.provider.vms = {"web1", "web2"}
        self.provider.start()
        importlib.import_module("ryu_apps.tenant_acl")   # registers [tenant_l2], [tenant_acl]
        conf = ofrunner.configure()
        for group, name, value in (
                ("tenant_l2", "tenant", "acme"),
                ("tenant_l2", "api", f"http://127.0.0.1:{self.provider.port}"),
                ("tenant_l2", "poll_interval", 0.1),
                ("tenant_acl", "pairs", ["web1>web2", "web3>web1"])):
            conf.set_override(name, value, group=group)
            self.overrides.append((group, name))
        self.conf = conf
        self.runtime = ofrunner.ControllerRuntime(
            ["ryu_apps.tenant_l2", "ryu_apps.tenant_acl"], listen_host="127.0.0.1",
            listen_port=self.of_port, echo_interval=1, echo_max_unreplied=2,
            netns=self.netns).start()
        self.l2 = self.runtime.app("tenant_l2")
        self.ovs.vsctl("add-br", self.bridge, "--", "set", "bridge", self.bridge,
                       "datapath_type=netdev", "fail_mode=secure", "protocols=OpenFlow13",
                       f"other_config:datapath-id={self.dpid:016x}")
        for i, vm in enumerate(("web1", "web2", "web3"), start=1):
            port = self.topo.vm(vm).port
            self.ovs.vsctl("add-port", self.bridge, port, "--", "set", "interface", port,
                           "type=internal", f"ofport_request={i}")
        self.ovs.vsctl("set-controller", self.bridge, f"tcp:127.0.0.1:{self.of_port}")

    def stop(self):
        try:
            if self.runtime is not None:
                self.runtime.stop()
        finally:
            for group, name in self.overrides:
                self.conf.clear_override(name, group=group)
            if self.provider is not None:
                self.provider.stop()
            self.ovs.stop()
            ns.delete(self.netns)
            shutil.rmtree(BASE, ignore_errors=True)

    def flows(self):
        """{cookie: "priority=..,match actions=.."} of the bridge."""
        out = self.ovs.ofctl("dump-flows", "--no-stats", self.bridge).stdout
        rows = {}
        for line in out.splitlines():
            m = re.match(r"\s*(?:cookie=(0x[0-9a-f]+), )?(.*)$", line)
            if not line.strip() or "_FLOW" in line:
                continue
            rows[int(m.group(1) or "0", 16)] = m.group(2)
        return rows

    def owned(self, prefix):
        return {c: f for c, f in self.flows().items() if c >> 32 == prefix}

    def acl_dst(self):
        """{(in_port, dst MAC)} of the drop rules installed."""
        out = set()
        for f in self.owned(ACL_PREFIX).values():
            port, mac = re.search(r"in_port=(\d+)", f), re.search(r"dl_dst=([0-9a-f:]+)", f)
            if port and mac:
                out.add((int(port.group(1)), mac.group(1)))
        return out


@pytest.fixture(scope="module")
def harness():
    h = Harness()
    try:
        h.start()
        yield h
    finally:
        h.stop()


@ROOT_ONLY
@pytest.mark.lab
def test_apps_compose_and_never_remove_foreign_flows(harness):
    h = harness
    web = {n: h.topo.vm(n) for n in ("web1", "web2", "web3")}
    # tenant_l2's Table I (brint: NORMAL) and tenant_acl's drop web1>web2 (web3 not placed)
    assert wait_for(lambda: len(h.owned(COOKIE_PREFIX)) == 1 and
                    h.acl_dst() == {(1, web["web2"].mac)}), h.flows()
    normal = h.owned(COOKIE_PREFIX)
    assert "actions=NORMAL" in list(normal.values())[0]

    # Another app's flows (cookie 0, another cookie, one bit off ours), and stale flows
    # of each owner, as a previous run could have left them.
    for spec in ("table=0,priority=300,arp,actions=NORMAL",
                 "table=0,priority=200,cookie=0x1234,ip,actions=NORMAL",
                 f"table=1,priority=3,cookie=0x{NEAR_PREFIX << 32 | 5:x},actions=drop"):
        h.ovs.ofctl("add-flow", h.bridge, spec)
    stale_l2 = COOKIE_PREFIX << 32 | 0xDEAD
    stale_acl = ACL_PREFIX << 32 | 0xDEAD
    h.ovs.ofctl("add-flow", h.bridge, f"table=2,priority=9,cookie=0x{stale_l2:x},actions=drop")
    h.ovs.ofctl("add-flow", h.bridge, f"table=2,priority=8,cookie=0x{stale_acl:x},actions=drop")
    foreign = {c: f for c, f in h.flows().items()
               if c >> 32 not in (COOKIE_PREFIX, ACL_PREFIX)}
    assert set(foreign) == {0, 0x1234, NEAR_PREFIX << 32 | 5}

    # A placement change: web3 arrives. tenant_acl follows it (EventBridgeSynced) and its
    # sync (dump of "TACL" flows) removes its own stale flow, nothing else.
    h.provider.vms.add("web3")
    assert wait_for(lambda: h.acl_dst() == {(1, web["web2"].mac), (3, web["web1"].mac)}
                    and stale_acl not in h.flows()), h.flows()
    flows = h.flows()
    assert {c: flows.get(c) for c in foreign} == foreign
    assert stale_l2 in flows and all(c in flows for c in normal)

    # A full tenant_l2 sync: the switch reconnects, tenant_l2 dumps "TNNT" flows and
    # deletes its stale one. Everybody else's flows stay, and so do tenant_acl's.
    acl_before = h.owned(ACL_PREFIX)
    h.l2.pusher.disconnect(h.dpid)
    assert wait_for(lambda: stale_l2 not in h.flows(), 30), h.flows()
    assert h.l2.pusher.wait_connected(h.dpid, 15)
    flows = h.flows()
    assert {c: flows.get(c) for c in foreign} == foreign
    assert h.owned(ACL_PREFIX) == acl_before
    assert h.owned(COOKIE_PREFIX) == normal

    # web2 leaves: its drop rule goes, the rest stays.
    h.provider.vms.discard("web2")
    assert wait_for(lambda: h.acl_dst() == {(3, web["web1"].mac)}), h.flows()
    flows = h.flows()
    assert {c: flows.get(c) for c in foreign} == foreign
    assert h.owned(COOKIE_PREFIX) == normal


@ROOT_ONLY
@pytest.mark.lab
def test_install_refuses_tenant_l2s_own_prefix(harness):
    with pytest.raises(ValueError, match="tenant_l2's own"):
        harness.l2.install(harness.dpid, [], COOKIE_PREFIX)
