"""End to end on the one-machine lab: 3 compute nodes, a network node, 2 tenants whose
networks use the same CIDR. Real namespaces, real Open vSwitch, real packets."""

import json
import os
import re
import time

import pytest

from conftest import CONFIGS, lab_prerequisites, run_cli
from spanping import Pinger
from tenantnet.model import equations, naming
from tenantnet.lab.lab import Lab

pytestmark = [pytest.mark.lab,
              pytest.mark.skipif(lab_prerequisites() is not None, reason=str(lab_prerequisites()))]

# test_fabric.py uses "tnt"; another run of this file on the machine needs another prefix
PREFIX = os.environ.get("TENANTNET_E2E_PREFIX", "tne")
CONFIG = os.path.join(CONFIGS, "two-tenants.yaml")
MODES = ("dnb", "cnb", "mixed")   # mixed: acme/web dedicated, globex/app common


def cli(*args, check=True):
    return run_cli(PREFIX, *args, check=check, timeout=300)


def config_for(mode, tmp_path):
    with open(CONFIG) as fh:
        text = fh.read()
    if mode == "cnb":
        text = text.replace("mode: dnb", "mode: cnb")
    elif mode == "mixed":
        text = text.replace("{name: app, segmentation_id: 200,",
                            "{name: app, mode: cnb, segmentation_id: 200,")
    path = tmp_path / f"two-tenants-{mode}.yaml"
    path.write_text(text)
    return str(path)


@pytest.fixture(scope="module", params=MODES)
def lab(request, tmp_path_factory):
    lab = Lab(prefix=PREFIX)
    lab.down()                                   # a leftover from an interrupted run
    cfg = config_for(request.param, tmp_path_factory.mktemp(request.param))
    proc = cli("lab", "up", "-c", cfg, "--timeout", "120", check=False)
    assert proc.returncode == 0, proc.stderr + proc.stdout
    lab.mode = request.param
    yield lab
    lab.down()
    assert not [n for n in os.listdir("/run/netns") if n.startswith(PREFIX + "-")]


def net_mode(lab, net_key):
    return lab.topology_from_api().mode_of(net_key)


def tunnel_bridge(lab, net_key):
    return naming.brtun_name(net_key) if net_mode(lab, net_key) == "dnb" else "br-tun"


def brtun_flows(lab, node, net_key):
    out = lab.fabric.ovs(node).ofctl("dump-flows", tunnel_bridge(lab, net_key)).stdout
    return [line for line in out.splitlines() if "cookie=" in line]


def test_same_network_pairs_ping_across_nodes_and_tenants_are_isolated(lab):
    m = lab.matrix()
    rows = m["rows"]
    same = [r for r in rows if r["same_network"]]
    cross = [r for r in rows if not r["same_network"]]
    assert len(same) == 4 * 3 + 3 * 2 and len(cross) == 2 * 4 * 3
    for r in same:
        assert r["ping"] and r["unicast"] and r["broadcast"], r
    for r in cross:
        assert not r["unicast"] and not r["broadcast"], r
    # the two tenants really do use the same addresses
    vms = {v["name"]: v for v in lab.api().list_vms()}
    assert vms["web1"]["ip"] == vms["app1"]["ip"]


def test_overlapping_address_reaches_own_tenant_only(lab):
    vms = {v["name"]: v for v in lab.api().list_vms()}
    ip = vms["web2"]["ip"]
    assert ip == vms["app2"]["ip"]
    lab.exec("web1", ["ip", "neigh", "flush", "dev", "eth0"])
    proc = lab.exec("web1", ["ping", "-c", "1", "-W", "2", ip], capture=True)
    assert proc.returncode == 0
    neigh = lab.exec("web1", ["ip", "neigh", "show", ip], capture=True).stdout
    assert vms["web2"]["mac"] in neigh and vms["app2"]["mac"] not in neigh


def trace_to(lab, node, net_key, src_mac, dst_mac):
    """ofproto/trace of a frame from the integration side of *net_key*'s tunnel bridge."""
    topo = lab.topology_from_api()
    if topo.mode_of(net_key) == "dnb":
        bridge, patch = naming.brtun_name(net_key), naming.patch_tun_name(net_key)
        vid = topo.network(net_key).local_vid
    else:
        bridge, patch, vid = "br-tun", naming.CNB_PATCH_TUN, topo.cnb_vid(net_key)
    return lab.fabric.ovs(node).appctl(
        "ofproto/trace", bridge,
        f"in_port={patch},dl_vlan={vid},dl_src={src_mac},dl_dst={dst_mac}").stdout


def test_remote_mac_leaves_through_right_gre_tunnel_with_key(lab):
    vms = {v["name"]: v for v in lab.api().list_vms()}
    for net_key, a, b, key, dnb_ip in (("acme/web", "web1", "web2", 0x64, "198.19.100.12"),
                                       ("globex/app", "app1", "app2", 0xc8, "198.19.200.12")):
        out = trace_to(lab, "compute1", net_key, vms[a]["mac"], vms[b]["mac"])
        # the egress rule, then GRE to compute2 with the network's key
        assert f"set_field:{hex(key)}->tun_id" in out, out
        assert re.search(r"gre\(\(flags=0x2000,proto=0x6558\),key=" + hex(key) + r"\)", out), out
        if net_mode(lab, net_key) == "dnb":      # to compute2's endpoint of this network
            assert f"tunneling to {dnb_ip} via {naming.ex_port_name(net_key)}" in out, out
        else:                                    # to compute2's transport address
            assert "tunneling to 198.19.0.12 via br-tun" in out, out


def test_equations_match_live_lab(lab):
    topo = lab.topology_from_api()
    total = 0
    gre_ports = 0
    for node in topo.nodes():
        ovs = lab.fabric.ovs(node.name)
        bridges = ovs.vsctl("list-br").stdout.split()
        total += len(bridges)
        if node.role == "compute":
            assert len(bridges) == equations.bridges_on_compute(topo, node.name), node.name
        for br in bridges:
            for port in ovs.vsctl("list-ports", br).stdout.split():
                if ovs.vsctl("get", "Interface", port, "type").stdout.strip() == "gre":
                    gre_ports += 1
    assert total == equations.total_bridges(topo)
    assert gre_ports == 2 * equations.total_tunnels(topo)
    assert equations.total_tunnels(topo) <= equations.total_tunnel_bound(topo)


def test_runtime_add_is_reachable_and_delete_removes_its_flows(lab):
    t0 = time.perf_counter()
    proc = cli("vm", "add", "web9", "--network", "acme/web", "--node", "compute3", "--json")
    import json
    rec = json.loads(proc.stdout)
    assert rec["node"] == "compute3" and rec["bridges_created"] is False
    assert rec["network_new_on_node"] is False
    topo = lab.topology_from_api()
    lab.wait_reachable(topo, ["web9"], timeout=30)
    elapsed = time.perf_counter() - t0
    assert lab.ping("web1", rec["ip"])
    for node in ("compute1", "compute2", "net1"):       # remote egress everywhere
        assert any(f"dl_dst={rec['mac']}" in f for f in brtun_flows(lab, node, "acme/web")), node
    st = cli("lab", "status", "--json").stdout
    assert '"web9"' in st
    print(f"web9 reachable {elapsed * 1000:.0f} ms after the request")

    cli("vm", "del", "web9")
    for node in ("compute1", "compute2", "compute3", "net1"):
        assert not any(rec["mac"] in f for f in brtun_flows(lab, node, "acme/web")), node
    assert not os.path.exists(f"/run/netns/{PREFIX}-v-web9")
    assert "web9" not in {v["name"] for v in lab.api().list_vms()}


def test_lab_node_runs_a_command_on_a_node(lab):
    """`tenantnet lab node NODE -- CMD`, like `vagrant ssh -c`: the node's own OVS answers,
    the exit status is the command's, and an unknown node is one clear line."""
    out = cli("lab", "node", "compute1", "--", "ovs-vsctl", "list-br").stdout.split()
    assert "br-int" in out and "br-tun" in out
    if lab.topology().mode_of("acme/web") == "dnb":
        assert naming.brint_name("acme/web") in out      # compute1 hosts web1
    proc = cli("lab", "node", "compute1", "--", "sh", "-c", "exit 7", check=False)
    assert proc.returncode == 7
    proc = cli("lab", "node", "compute9", "--", "true", check=False)
    assert proc.returncode == 1 and "no node 'compute9'" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_provider_controller_runs_under_ryu_manager(lab):
    """The lab starts the provider's controller as `ryu-manager tenantnet.app
    --config-file F`, and status names its command line, pid, namespace and address."""
    st = json.loads(cli("lab", "status", "--json").stdout)
    (ctl,) = [c for c in st["controllers"] if c["role"] == "provider"]
    assert os.path.basename(ctl["argv"][0]) == "ryu-manager" or \
        ctl["argv"][1:3] == ["-m", "tenantnet.controller.ryumanager"]
    assert "tenantnet.app" in ctl["argv"] and "--config-file" in ctl["argv"]
    assert ctl["alive"] and ctl["namespace"] == lab.fabric.controller_netns
    with open(f"/proc/{ctl['pid']}/cmdline", "rb") as fh:
        running = fh.read().split(b"\0")
    assert b"tenantnet.app" in running           # the recorded pid is that very process
    topo = lab.topology()
    assert ctl["listen"] == f"{topo.controller.management_ip}:{topo.controller.openflow_port}"
    conf = ctl["argv"][ctl["argv"].index("--config-file") + 1]
    with open(conf) as fh:
        text = fh.read()
    assert "[tenantnet]" in text and f"config = {lab.meta()['config']}" in text


def test_first_vm_of_network_on_node_creates_bridges_and_last_removes_them(lab):
    ovs = lab.fabric.ovs("compute3")
    brint = naming.brint_name("globex/app")
    assert brint not in ovs.vsctl("list-br").stdout.split()
    rec = lab.add_vm("app9", "globex/app", "compute3")
    lab.wait_reachable(lab.topology_from_api(), ["app9"], timeout=30)
    assert rec["network_new_on_node"] is True
    if net_mode(lab, "globex/app") == "dnb":
        assert rec["bridges_created"] is True
        assert brint in ovs.vsctl("list-br").stdout.split()
        gre_to_c3 = naming.gre_port_name("globex/app", "compute3")
        assert gre_to_c3 in lab.fabric.ovs("compute1").vsctl(
            "list-ports", naming.brtun_name("globex/app")).stdout.split()
    else:                                        # CNB: the VM joins the common br-int
        assert rec["bridges_created"] is False
        assert brint not in ovs.vsctl("list-br").stdout.split()
        tag = ovs.vsctl("get", "Port", naming.vm_port_name("app9"), "tag").stdout.strip()
        assert int(tag) == lab.topology_from_api().cnb_vid("globex/app")
        assert naming.vm_port_name("app9") in ovs.vsctl("list-ports", "br-int").stdout.split()
    lab.del_vm("app9")
    assert brint not in ovs.vsctl("list-br").stdout.split()
    assert naming.vm_port_name("app9") not in ovs.vsctl("list-ports", "br-int").stdout.split()
    assert naming.ex_port_name("globex/app") not in ovs.vsctl("list-ports", "br-tun").stdout
    if net_mode(lab, "globex/app") == "dnb":
        assert naming.gre_port_name("globex/app", "compute3") not in lab.fabric.ovs(
            "compute1").vsctl("list-ports", naming.brtun_name("globex/app")).stdout.split()


def test_bad_placement_is_refused_and_changes_nothing(lab):
    before = lab.api().list_vms()
    proc = cli("vm", "add", "web8", "--network", "acme/web", "--node", "compute7", check=False)
    assert proc.returncode == 1
    assert "node: unknown node 'compute7'" in proc.stderr
    assert "Traceback" not in proc.stderr
    proc = cli("vm", "add", "web8", "--network", "acme/web", "--node", "compute1",
               "--ip", lab.api().get_vm("web2")["ip"], check=False)
    assert proc.returncode == 1 and "already used by web2" in proc.stderr
    assert lab.api().list_vms() == before
    assert not os.path.exists(f"/run/netns/{PREFIX}-v-web8")


def test_controller_restart_loses_no_packet_and_relearns_api_placements(lab):
    lab.add_vm("web7", "acme/web", "compute2")
    topo = lab.topology_from_api()
    lab.wait_reachable(topo, ["web7"], timeout=30)
    before = {n: sorted(f.split(",")[0] for f in brtun_flows(lab, n, "acme/web"))
              for n in ("compute1", "compute2")}
    # the ping spans the whole window: from before the crash until after the controller
    # is back and ready, every echo answered (tests/spanping.py)
    pinger = Pinger(lab, "web1", topo.vm("web7").ip)
    time.sleep(0.5)
    t_stop = time.time()
    assert "SIGKILL" in cli("lab", "stop", "controller").stdout
    time.sleep(1.0)
    assert "ready" in cli("lab", "start", "controller").stdout
    assert lab.api(timeout=5).health()["status"] == "ok"
    t_ready = time.time()
    time.sleep(0.5)
    pinger.stop().assert_spans(t_stop, t_ready)
    assert "web7" in {v["name"] for v in lab.api().list_vms()}    # relearned from OVSDB
    after = {n: sorted(f.split(",")[0] for f in brtun_flows(lab, n, "acme/web"))
             for n in ("compute1", "compute2")}
    assert after == before                                         # same cookies, kept
    lab.del_vm("web7")
