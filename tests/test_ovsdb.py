"""OVSDB reconcile against one real Open vSwitch (ovsdb-server + ovs-vswitchd in a netns)."""

import os
import time

import pytest

from conftest import lab_prerequisites, two_tenant_config
from tenantnet.model import config, naming
from tenantnet.model.desired import CONTROLLER_OPTIONS, node_state
from tenantnet.lab import netns as ns
from tenantnet.lab.ovs import OvsInstance
from tenantnet.errors import TenantnetError
from tenantnet.node.hostops import NetnsNodeHost, tunnel_neighbors
from tenantnet.southbound.ovsdb import NodeOvsdb, SystemPoll

pytestmark = [pytest.mark.lab,
              pytest.mark.skipif(lab_prerequisites() is not None, reason=str(lab_prerequisites()))]

NETNS = "tnt-ovsdb"
CFG = two_tenant_config(2, ("web1@compute1", "web2@compute2", "app1@compute1"))


@pytest.fixture
def node(tmp_path):
    ns.delete(NETNS)
    ns.add(NETNS)
    ovs = OvsInstance(str(tmp_path / "ovs"), netns=NETNS, system_id="compute1")
    try:
        ovs.start()
        for br in ("br-int", "br-tun"):
            ovs.vsctl("add-br", br, "--", "set", "Bridge", br, "datapath_type=netdev")
        # the VMs' host-side links, as the hypervisor (here: the test) creates them
        for i, tap in enumerate((naming.vm_port_name("web1"), naming.vm_port_name("app1"))):
            ns.run(["ip", "link", "add", tap, "type", "veth", "peer", "name", f"tnt-vmside{i}"],
                   netns=NETNS)
            ns.run(["ip", "link", "set", tap, "up"], netns=NETNS)
        conn = NodeOvsdb("compute1", ovs.unix_remote).connect()
        yield ovs, conn
        conn.close()
    finally:
        ovs.stop()
        ns.delete(NETNS)


def test_reconcile_builds_what_was_computed_and_is_idempotent(node):
    ovs, conn = node
    topo = config.load_text(CFG, "t.yaml")
    desired = node_state(topo, "compute1")
    result = conn.reconcile(desired)
    assert result.changed
    snap = conn.snapshot()
    for br in desired.bridges.values():
        have = snap["bridges"][br.name]
        assert set(br.ports) <= set(have["ports"])
        if br.common:
            continue
        # ours: exactly the computed ports plus the bridge's own local port
        assert set(have["ports"]) == set(br.ports) | {br.name}
        assert have["fail_mode"] == "secure"
        assert have["protocols"] == ["OpenFlow13"]
        assert have["other_config"]["datapath-id"] == naming.dpid_str(br.dpid)
        assert have["controller"] == ["ssl:198.18.0.1:6653"]
        assert have["datapath_type"] == "netdev"
        for port in br.ports.values():
            iface = snap["interfaces"][port.name]
            assert iface["type"] == port.type
            assert iface["options"] == port.options
            assert iface["ofport"] > 0 and not iface["error"]
            assert snap["ports"][port.name]["tag"] == port.tag
    # what ovs-vsctl itself says, independently of our IDL reading
    gre = naming.gre_port_name("acme/web", "compute2")
    assert ovs.vsctl("get", "Interface", gre, "options:remote_ip").stdout.strip() == '"198.19.100.12"'
    assert ovs.vsctl("get", "Interface", gre, "options:key").stdout.strip() == "flow"
    assert ovs.vsctl("get", "Port", naming.vm_port_name("web1"), "tag").stdout.strip() == "100"
    assert ovs.vsctl("port-to-br", naming.ex_port_name("acme/web")).stdout.strip() == "br-tun"

    again = conn.reconcile(desired)
    assert again.commands == []
    assert conn.snapshot()["bridges"].keys() == snap["bridges"].keys()


def test_removing_last_vm_removes_tenant_bridges(node):
    ovs, conn = node
    topo = config.load_text(CFG, "t.yaml")
    conn.reconcile(node_state(topo, "compute1"))
    topo.remove_vm("web1")
    result = conn.reconcile(node_state(topo, "compute1"))
    assert f"delete bridge {naming.brint_name('acme/web')}" in result.commands
    bridges = set(ovs.vsctl("list-br").stdout.split())
    assert naming.brint_name("acme/web") not in bridges
    assert naming.brtun_name("acme/web") not in bridges
    assert naming.brint_name("globex/app") in bridges          # the other network stays
    assert ovs.vsctl("--if-exists", "port-to-br", naming.ex_port_name("acme/web"),
                     check=False).stdout.strip() == ""
    assert not ns.link_exists(naming.ex_port_name("acme/web"), NETNS)
    assert {"br-int", "br-tun"} <= bridges                    # common bridges are never removed


def test_foreign_records_are_left_alone(node):
    ovs, conn = node
    ovs.vsctl("add-br", "tnt-foreign", "--", "set", "Bridge", "tnt-foreign", "datapath_type=netdev")
    ovs.vsctl("add-port", "br-tun", "tnt-fport", "--", "set", "Interface", "tnt-fport",
              "type=internal")
    topo = config.load_text(CFG, "t.yaml")
    conn.reconcile(node_state(topo, "compute1"))
    topo.remove_vm("web1")
    topo.remove_vm("app1")
    conn.reconcile(node_state(topo, "compute1"))
    bridges = set(ovs.vsctl("list-br").stdout.split())
    assert bridges == {"br-int", "br-tun", "tnt-foreign"}
    assert "tnt-fport" in ovs.vsctl("list-ports", "br-tun").stdout.split()


def test_changed_tunnel_endpoint_is_updated_in_place(node):
    ovs, conn = node
    topo = config.load_text(CFG, "t.yaml")
    conn.reconcile(node_state(topo, "compute1"))
    moved = config.load_text(CFG.replace("transport_ip: 198.19.0.12", "transport_ip: 198.19.0.22"),
                             "t.yaml")
    result = conn.reconcile(node_state(moved, "compute1"))
    gre = naming.gre_port_name("acme/web", "compute2")
    assert any(gre in c for c in result.commands)
    assert ovs.vsctl("get", "Interface", gre, "options:remote_ip").stdout.strip() == '"198.19.100.22"'
    assert conn.reconcile(node_state(moved, "compute1")).commands == []


def _settled(read, check, timeout=10.0):
    """read() until check(value) holds (the IDL sees a change some ms after ovs-vsctl
    returns); the last value either way."""
    deadline = time.monotonic() + timeout
    while True:
        value = read()
        if check(value) or time.monotonic() >= deadline:
            return value
        time.sleep(0.05)


def _comparable(snap):
    """A snapshot without what differs between two views of the same tables: `changed_at`
    (each view's own counter) and the rows' private `_`-keys (the uuids that link them:
    uuid.UUID from an IDL, strings from a read without one)."""
    def public(rows):
        return {name: {k: v for k, v in row.items() if not k.startswith("_")}
                for name, row in rows.items()}
    return {k: public(v) if k in ("bridges", "ports", "interfaces") else v
            for k, v in snap.items() if k != "changed_at"}


def test_live_view_follows_changes_made_behind_its_back(node):
    """The view is updated from row events only; after changes by another client it must
    equal what a new connection (a view built in full) reads."""
    ovs, conn = node
    topo = config.load_text(CFG, "t.yaml")
    conn.reconcile(node_state(topo, "compute1"))
    conn.snapshot()                   # the view is now built; what follows is incremental
    web = naming.brint_name("acme/web")
    ovs.vsctl("add-port", web, "tnt-extra", "--", "set", "Interface", "tnt-extra",
              "type=internal", "--", "set", "Port", "tnt-extra", "tag=7")
    ovs.vsctl("set", "Interface", naming.gre_port_name("acme/web", "compute2"),
              "options:remote_ip=198.19.100.99")
    ovs.vsctl("set-controller", web, "tcp:198.18.0.9:6653")
    ovs.vsctl("del-port", naming.vm_port_name("app1"))
    ovs.vsctl("br-set-external-id", web, "tnt-note", "x")
    fresh = NodeOvsdb("compute1", ovs.unix_remote).connect()
    try:
        want = _settled(fresh.snapshot, lambda s: "tnt-extra" in s["ports"]
                        and s["interfaces"]["tnt-extra"]["ofport"])
        got = _settled(conn.snapshot, lambda s: _comparable(s) == _comparable(want))
    finally:
        fresh.close()
    assert "tnt-extra" in got["bridges"][web]["ports"]
    assert got["bridges"][web]["controller"] == ["tcp:198.18.0.9:6653"]
    assert naming.vm_port_name("app1") not in got["ports"]
    assert _comparable(got) == _comparable(want)


def test_a_bridge_found_in_order_is_diffed_again_after_a_change_by_hand(node):
    """A bridge in order is not diffed while nothing changes; a port deleted by hand on it
    (a row event) makes the next reconcile put it back."""
    ovs, conn = node
    topo = config.load_text(CFG, "t.yaml")
    desired = node_state(topo, "compute1")
    conn.reconcile(desired)
    assert conn.reconcile(desired).commands == []
    web = naming.brint_name("acme/web")
    assert web not in _settled(lambda: conn.reconcile(desired).diffed,
                               lambda diffed: web not in diffed)
    vm = naming.vm_port_name("web1")
    ovs.vsctl("del-port", vm)
    result = _settled(lambda: conn.reconcile(desired), lambda r: r.commands)
    assert f"add port {vm} to {web}" in result.commands
    assert vm in ovs.vsctl("list-ports", web).stdout.split()


def test_a_bridge_in_order_is_diffed_again_after_its_port_or_interface_changes(node):
    """A change to a row below the bridge, found through the view's owner map (interface ->
    port -> bridge): a port's tag or a tunnel interface's remote, set by hand, makes the
    next reconcile diff that bridge, and only it, and put the value back."""
    ovs, conn = node
    topo = config.load_text(CFG, "t.yaml")
    desired = node_state(topo, "compute1")
    conn.reconcile(desired)
    brtun, brint = naming.brtun_name("acme/web"), naming.brint_name("acme/web")
    _settled(lambda: conn.reconcile(desired).diffed, lambda diffed: not diffed)
    gre = naming.gre_port_name("acme/web", "compute2")
    want_remote = ovs.vsctl("get", "Interface", gre, "options:remote_ip").stdout.strip()
    ovs.vsctl("set", "Interface", gre, "options:remote_ip=198.19.100.99")
    result = _settled(lambda: conn.reconcile(desired), lambda r: r.commands)
    assert brtun in result.diffed and brint not in result.diffed, result.diffed
    assert ovs.vsctl("get", "Interface", gre, "options:remote_ip").stdout.strip() == want_remote
    # a bridge just repaired is diffed once more, then found in order and left alone
    assert _settled(lambda: conn.reconcile(desired).diffed, lambda diffed: not diffed) == []
    vm = naming.vm_port_name("web1")
    want_tag = ovs.vsctl("get", "Port", vm, "tag").stdout.strip()
    ovs.vsctl("set", "Port", vm, "tag=99")
    result = _settled(lambda: conn.reconcile(desired), lambda r: r.commands)
    assert brint in result.diffed and brtun not in result.diffed, result.diffed
    assert ovs.vsctl("get", "Port", vm, "tag").stdout.strip() == want_tag


def test_every_controller_gets_its_options_and_keeps_them(node):
    """Each programmed bridge's Controller row has CONTROLLER_OPTIONS: inactivity_probe (the
    switch does not echo a healthy controller) and max_backoff (a refused switch comes back
    soon); a change by hand to either is put back, and nothing else changes."""
    ovs, conn = node
    topo = config.load_text(CFG, "t.yaml")
    desired = node_state(topo, "compute1")
    conn.reconcile(desired)
    assert CONTROLLER_OPTIONS == {"inactivity_probe": 30000, "max_backoff": 2000}
    programmed = [b.name for b in desired.bridges.values() if b.controller]
    assert naming.brint_name("acme/web") in programmed
    for br in programmed:
        for column, value in CONTROLLER_OPTIONS.items():
            assert ovs.vsctl("get", "Controller", br, column).stdout.strip() == str(value)
    web = naming.brint_name("acme/web")
    for column, wrong in (("inactivity_probe", 5000), ("max_backoff", 8000)):
        ovs.vsctl("set", "Controller", web, f"{column}={wrong}")
        result = _settled(lambda: conn.reconcile(desired), lambda r: r.commands)
        assert len(result.commands) == 1 and column in result.commands[0], result.commands
        assert ovs.vsctl("get", "Controller", web, column).stdout.strip() == \
            str(CONTROLLER_OPTIONS[column])
        assert _settled(lambda: conn.reconcile(desired).commands, lambda c: not c) == []


def test_tunnel_neighbours_are_set_in_one_connection_and_errors_are_one_line(node):
    """NetnsNodeHost.set_tunnel_neighbors talks to ovs-vswitchd's control socket itself:
    every entry lands in its neighbour cache, an entry the cache holds already is not set
    again, a changed MAC is; a bad entry or no daemon is a TenantnetError."""
    ovs, _conn = node
    host = NetnsNodeHost(NETNS, rundir=ovs.rundir)
    entries = [(f"198.19.100.{i}", f"02:00:00:00:01:{i:02x}") for i in range(1, 6)]
    assert host.set_tunnel_neighbors(entries) == 5
    shown = ovs.appctl("tnl/neigh/show").stdout
    for ip, mac in entries:
        assert any(ip in line and mac in line for line in shown.splitlines()), (ip, shown)
    assert {(ip, mac, "br-tun") for ip, mac in entries} <= tunnel_neighbors(shown)
    assert host.set_tunnel_neighbors(entries) == 0
    moved = [("198.19.100.3", "02:00:00:00:02:03")]
    assert host.set_tunnel_neighbors(entries[:2] + moved) == 1
    shown = ovs.appctl("tnl/neigh/show").stdout
    assert ("198.19.100.3", "02:00:00:00:02:03", "br-tun") in tunnel_neighbors(shown)
    with pytest.raises(TenantnetError, match="tnl/neigh/set br-tun 198.19.100.9 nonsense"):
        host.set_tunnel_neighbors([("198.19.100.9", "nonsense")])
    with pytest.raises(TenantnetError, match="cannot reach ovs-vswitchd"):
        NetnsNodeHost(NETNS, rundir=str(ovs.rundir) + "-gone").set_tunnel_neighbors(entries)


def test_a_connection_made_when_socket_numbers_are_above_1023_works(node):
    """A controller with 1,000 bridges connected has socket numbers above 1,023; an OVSDB
    connection made then (a node coming back) must still be read (python-ovs's own wait,
    select(), refuses such numbers)."""
    import resource
    ovs, _conn = node
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < 1300:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(4096, hard), hard))
    fillers = [os.open(os.devnull, os.O_RDONLY) for _ in range(1100)]
    try:
        late = NodeOvsdb("compute1", ovs.unix_remote).connect(retry_for=5)
        try:
            topo = config.load_text(CFG, "t.yaml")
            result = late.reconcile(node_state(topo, "compute1"))
            assert result.changed and naming.brint_name("acme/web") in late.snapshot()["bridges"]
        finally:
            late.close()
    finally:
        for fd in fillers:
            os.close(fd)
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


def test_the_poll_python_ovs_gets_adds_the_events_of_an_fd():
    """python-ovs registers a connection's socket for output (when it has something to
    send) and then for input: poll() alone would keep only the input, and a transaction
    would wait to be sent until the node happens to send something (seconds)."""
    import select
    import socket
    a, b = socket.socketpair()
    try:
        waiter = SystemPoll()
        waiter.register(a, select.POLLOUT)
        waiter.register(a.fileno(), select.POLLIN)
        assert waiter.poll(0) == [(a.fileno(), select.POLLOUT)]     # writable, nothing to read
        b.send(b"x")
        assert waiter.poll(0) == [(a.fileno(), select.POLLIN | select.POLLOUT)]
    finally:
        a.close()
        b.close()


def _idl_started(conn):
    return bool(conn.api.ovsdb_connection.is_running)


def test_a_deferred_connect_reads_what_the_idl_reads_and_starts_it_only_when_needed(node):
    """A deferred connect (the controller's start-up) reads the tables without an IDL: the
    same view as an IDL's, every column kind included (maps, sets, optional scalars,
    references). A reconcile that finds nothing to change leaves the IDL unstarted; one
    that finds a change starts it and commits the change; `connected` starts it too."""
    ovs, conn = node
    topo = config.load_text(CFG, "t.yaml")
    desired = node_state(topo, "compute1")
    conn.reconcile(desired)
    web = naming.brint_name("acme/web")
    ovs.vsctl("add-port", web, "tnt-extra", "--", "set", "Interface", "tnt-extra",
              "type=internal", "--", "set", "Port", "tnt-extra", "tag=7")
    _settled(conn.snapshot, lambda s: "tnt-extra" in s["ports"]      # the IDL has seen it
             and s["interfaces"]["tnt-extra"]["ofport"])
    conn.reconcile(desired)                     # tnt-extra is not ours: it stays
    want = _comparable(conn.snapshot())

    late = NodeOvsdb("compute1", ovs.unix_remote).connect(deferred=True)
    try:
        assert not _idl_started(late)
        assert _comparable(late.snapshot()) == want
        assert late.datapath == conn.datapath
        assert not late.reconcile(desired).changed and not _idl_started(late)

        app = naming.vm_port_name("app1")
        ovs.vsctl("del-port", app)              # after the first read: only the IDL sees it
        assert not late.reconcile(desired).changed      # the first read still has it
        ovs.vsctl("set", "Port", naming.vm_port_name("web1"), "tag=4000")
        late.close()
        late.connect(deferred=True)
        result = late.reconcile(desired)        # both found: the IDL starts, one transaction
        assert _idl_started(late) and result.changed
        snap = late.snapshot()
        assert app in snap["ports"] and snap["interfaces"][app]["ofport"] > 0
        assert _comparable(snap) == _comparable(
            _settled(conn.snapshot, lambda s: _comparable(s) == _comparable(snap)))
        assert not late.reconcile(desired).changed
    finally:
        late.close()

    again = NodeOvsdb("compute1", ovs.unix_remote).connect(deferred=True)
    try:
        assert not _idl_started(again)
        assert again.connected() and _idl_started(again)
        assert _comparable(again.snapshot()) == _comparable(conn.snapshot())
    finally:
        again.close()


def test_a_deferred_connect_to_a_node_gone_before_its_idl_starts_is_not_connected(node):
    ovs, conn = node
    late = NodeOvsdb("compute1", ovs.unix_remote, timeout=2).connect(deferred=True)
    conn.close()
    ovs.stop()
    try:
        assert not late.connected()
        assert not late.connected()             # and stays so, without waiting again
    finally:
        late.close()
