"""The controller core against one real Open vSwitch node: bridges, ports, tunnels AND
flows appear exactly as computed; a second pass changes nothing; placements through the
core add and remove bridges and flows. The os-ken controller runs in this process."""

import pytest

from conftest import lab_prerequisites, two_tenant_config
from tenantnet.controller.settings import CONTEXT, Settings
from tenantnet.model import config, naming
from tenantnet.controller import runner as ofrunner
from tenantnet.controller.core import Core
from tenantnet.model.flowspec import COOKIE_PREFIX
from tenantnet.model.flows import node_flows
from tenantnet.lab import netns as ns
from tenantnet.lab.ovs import OvsInstance

pytestmark = [pytest.mark.lab, pytest.mark.integration,
              pytest.mark.skipif(lab_prerequisites() is not None, reason=str(lab_prerequisites()))]

NETNS = "tnt-node"
CFG = two_tenant_config(2, ("web1@compute1", "web2@compute2", "app1@compute1"),
                        # the core against real nodes on plain TCP; TLS: test_tls.py
                        header="security: insecure\n"
                               "controller: {management_ip: 127.0.0.1, openflow_port: PORT}")


def _free_port():
    import socket
    import threading
    out = {}

    def probe():
        ofrunner.enter_netns(NETNS)
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            out["port"] = s.getsockname()[1]
    t = threading.Thread(target=probe)
    t.start()
    t.join()
    return out["port"]


@pytest.fixture(scope="module")
def node(tmp_path_factory):
    ns.delete(NETNS)
    ns.add(NETNS)
    ovs = OvsInstance(str(tmp_path_factory.mktemp("node") / "ovs"), netns=NETNS,
                      system_id="compute1")
    runtime = None
    try:
        ovs.start()
        for br in ("br-int", "br-tun"):
            ovs.vsctl("add-br", br, "--", "set", "Bridge", br, "datapath_type=netdev")
        # the transport uplink, as node bootstrap attaches it
        ns.run(["ip", "link", "add", "eth1", "type", "veth", "peer", "name", "tnt-uplink"],
               netns=NETNS)
        # both ends up: an uplink has carrier (the core marks a node whose uplink on br-tun
        # reports link_state down as "transport unreachable")
        for end in ("eth1", "tnt-uplink"):
            ns.run(["ip", "link", "set", end, "up"], netns=NETNS)
        ovs.vsctl("add-port", "br-tun", "eth1")
        for vm in ("web1", "app1", "web5"):
            tap = naming.vm_port_name(vm)
            ns.run(["ip", "link", "add", tap, "type", "veth", "peer", "name", f"tnt-x{vm}"],
                   netns=NETNS)
            ns.run(["ip", "link", "set", tap, "up"], netns=NETNS)
        port = _free_port()
        topo = config.load_text(CFG.replace("PORT", str(port)), "t.yaml")
        cores = []
        settings = Settings(config="t.yaml", echo_interval=1, echo_max_unreplied=3,
                            core_factory=lambda pusher, app, _settings: cores.append(
                                Core(topo, pusher, ovsdb_remotes={"compute1": ovs.unix_remote},
                                     managed_nodes={"compute1"})) or cores[-1])
        runtime = ofrunner.ControllerRuntime(listen_host="127.0.0.1", listen_port=port,
                                             netns=NETNS, contexts={CONTEXT: settings}).start()
        core = cores[0]
        assert core.ready.wait(60), "controller core did not start"
        yield ovs, core
    finally:
        if runtime is not None:
            runtime.stop()
        ovs.stop()
        ns.delete(NETNS)


def installed(ovs, bridge):
    """Our cookies on *bridge*, read with ovs-ofctl (independent of the controller)."""
    out = ovs.ofctl("dump-flows", bridge).stdout
    cookies = set()
    for line in out.splitlines():
        if "cookie=" in line:
            c = int(line.split("cookie=")[1].split(",")[0], 16)
            if c >> 32 == COOKIE_PREFIX:
                cookies.add(c)
    return cookies


def computed(core, bridge):
    bf = node_flows(core.topo, "compute1")[bridge]
    pm = core.nodes["compute1"].portmap(bridge)
    return {f.resolve(pm).cookie() for f in bf.flows}


def wait_flows(ovs, core, bridge, timeout=20):
    import time
    deadline = time.time() + timeout
    while time.time() < deadline:
        if installed(ovs, bridge) == computed(core, bridge):
            return True
        time.sleep(0.1)
    return False


def test_flows_on_every_tenant_bridge_are_exactly_the_computed_ones(node):
    ovs, core = node
    bridges = node_flows(core.topo, "compute1")
    assert set(bridges) == {naming.brint_name(k) for k in ("acme/web", "globex/app")} | \
        {naming.brtun_name(k) for k in ("acme/web", "globex/app")} | {"br-int", "br-tun"}
    for bridge in bridges:
        assert wait_flows(ovs, core, bridge), bridge
    # the egress rule for web2 (on compute2) goes out of the GRE port to compute2
    gre = naming.gre_port_name("acme/web", "compute2")
    ofport = core.nodes["compute1"].portmap(naming.brtun_name("acme/web"))[gre]
    dump = ovs.ofctl("dump-flows", naming.brtun_name("acme/web")).stdout
    web2 = core.topo.vm("web2")
    assert any(f"dl_dst={web2.mac}" in line and f"output:{ofport}" in line
               and "set_field:0x64->tun_id" in line for line in dump.splitlines())


def test_second_pass_changes_nothing(node):
    ovs, core = node
    result = core.nodes["compute1"].reconcile(
        __import__("tenantnet.model.desired", fromlist=["node_state"]).node_state(core.topo, "compute1"))
    assert result.commands == []
    for bridge, bf in node_flows(core.topo, "compute1").items():
        res = core.pusher.sync(bf.dpid, bf.flows, core.nodes["compute1"].portmap(bridge))
        assert (res["added"], res["removed"]) == (0, 0)


def test_placements_add_and_remove_bridges_and_flows(node):
    ovs, core = node
    rec = core.add_vm({"name": "web5", "network": "acme/web", "node": "compute1"})
    assert rec["bridges_created"] is False and rec["timings"]["total_ms"] > 0
    brint = naming.brint_name("acme/web")
    assert "tap-web5" in ovs.vsctl("list-ports", brint).stdout.split()
    # remote egress for a VM placed on compute2 appears on compute1's tunnel bridge
    core.add_vm({"name": "web6", "network": "acme/web", "node": "compute2"})
    assert wait_flows(ovs, core, naming.brtun_name("acme/web"))
    mac6 = core.topo.vm("web6").mac
    assert mac6 in ovs.ofctl("dump-flows", naming.brtun_name("acme/web")).stdout
    core.del_vm("web6")
    assert mac6 not in ovs.ofctl("dump-flows", naming.brtun_name("acme/web")).stdout
    core.del_vm("web5")
    core.del_vm("web1")                  # the last acme VM on compute1: its bridges go
    bridges = ovs.vsctl("list-br").stdout.split()
    assert brint not in bridges and naming.brtun_name("acme/web") not in bridges
    assert naming.brint_name("globex/app") in bridges
    assert naming.ex_port_name("acme/web") not in ovs.vsctl("list-ports", "br-tun").stdout.split()
