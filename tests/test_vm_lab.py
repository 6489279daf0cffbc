"""The lab with real node VMs (QEMU, Debian, kernel-datapath Open vSwitch): `lab up --nodes vm`.

2 compute VMs + 1 network VM, two tenants on the same CIDR, GRE in the kernel, TLS on every
control channel (the default): each node VM serves OVSDB on pssl: to the provider's
certificate only, its bridges reach their controllers on ssl:, the API is HTTPS. The node
image is built once per machine (cached under /var/cache/tenantnet/images)."""

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time

import pytest

from conftest import lab_prerequisites, run_cli, two_tenant_config
from tenantnet import pki
from tenantnet.lab.lab import Lab
from tenantnet.model import naming
from tenantnet.node import procs
from tenantnet.vm import image as image_mod
from tenantnet.vm import qemu
from tenantnet.vm.source import push_tar, source_tar

PREFIX = os.environ.get("TENANTNET_VM_PREFIX", "tnm")


def _vm_problem():
    problem = lab_prerequisites()
    if problem:
        return problem
    for tool in ("qemu-system-x86_64", "qemu-img", "debootstrap"):
        if not shutil.which(tool):
            return f"{tool} is not installed (scripts/setup installs it)"
    return None


pytestmark = [pytest.mark.vm, pytest.mark.lab,
              pytest.mark.skipif(_vm_problem() is not None, reason=str(_vm_problem()))]


def cli(*args, check=True, timeout=900):
    return run_cli(PREFIX, *args, check=check, timeout=timeout)


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    path = tmp_path_factory.mktemp("vmlab") / "vm-two-tenants.yaml"
    path.write_text(two_tenant_config(n_compute=2, vms=("web1@compute1", "web2@compute2",
                                                        "app1@compute1", "app2@compute2")))
    lab = Lab(prefix=PREFIX)
    lab.down()
    t0 = time.perf_counter()
    up = cli("lab", "up", "-c", str(path), "--nodes", "vm", "--timeout", "240")
    print(f"lab up with node VMs: {time.perf_counter() - t0:.0f}s\n{up.stdout}")
    try:
        yield lab
    finally:
        qemus = _qemu_processes()
        lab.down()
        assert not [n for n in os.listdir("/run/netns") if n.startswith(PREFIX + "-")]
        assert not os.path.exists(f"/var/lib/tenantnet/vms/{PREFIX}")
        assert not [p for p in qemus if procs.pid_alive(*p)], "a node VM's QEMU survived"


def _qemu_processes():
    """(pid, start time) of every node VM's QEMU of the lab, from their records."""
    base = os.path.join(qemu.STATE_DIR, PREFIX)
    found = []
    for name in (os.listdir(base) if os.path.isdir(base) else ()):
        try:
            with open(os.path.join(base, name, "vm.json")) as fh:
                rec = json.load(fh)
        except (OSError, ValueError):
            continue
        found.append((rec["pid"], rec.get("start_time")))
    return found


def node(lab, name, script, check=True):
    """*script* on node VM *name* as `tenantnet lab node NAME -- sh -c SCRIPT` runs it
    (Lab.node_exec, here in this process: no interpreter start per command); its stdout.
    test_status_names_the_node_vms runs the CLI command itself."""
    proc = lab.node_exec(name, ["sh", "-c", script], capture=True)
    if check and proc.returncode != 0:
        raise AssertionError(f"lab node {name} -- sh -c {script!r} failed "
                             f"(exit {proc.returncode}): {proc.stderr}{proc.stdout}")
    return proc.stdout


def _node_vm(lab, name):
    """A QemuVm handle on the running node VM *name* (its SSH only: nothing is started)."""
    mgmt = {n.name: n.management_ip for n in lab.topology().nodes()}[name]
    nic = qemu.Nic(qemu.tap_name(PREFIX, name, 0), "mgmt", qemu.vm_mac(PREFIX, name, 0),
                   f"{mgmt}/24")
    return qemu.QemuVm(name, lab.fabric.fabric_netns, [nic],
                       image_mod.build_image(progress=lambda s: None), prefix=PREFIX)


def vms(lab):
    return {v["name"]: v for v in lab.api().list_vms()}


NODE_TLS = "/etc/tenantnet/pki/node"
# the CA ovsdb-server trusts: its last --ca-cert or --bootstrap-ca-cert (the last one wins)
OVSDB_CA = ("tr '\\0' '\\n' < /proc/$(cat /run/openvswitch/ovsdb-server.pid)/cmdline"
            " | grep -E -- '^--(bootstrap-)?ca-cert=' | tail -n 1")


def assert_node_tls(lab, name):
    """*name* serves OVSDB on pssl: only, ovsdb-server trusting only the provider's CA, and
    every controller target of its bridges is ssl:."""
    mgmt = {n.name: n.management_ip for n in lab.topology().nodes()}[name]
    port = lab.topology().controller.ovsdb_port
    assert node(lab, name, "ovs-vsctl get-manager").split() == [f"pssl:{port}:{mgmt}"]
    assert node(lab, name, OVSDB_CA).strip() == f"--ca-cert={NODE_TLS}/ovsdb-ca.pem"
    ssl = node(lab, name, "ovs-vsctl get-ssl")
    for f in ("key.pem", "cert.pem", "openflow-ca.pem"):
        assert f"{NODE_TLS}/{f}" in ssl, ssl
    targets = node(lab, name, "ovs-vsctl --bare --columns=target list Controller").split()
    assert targets and all(t.startswith("ssl:") for t in targets), targets


def _in_fabric(lab, argv, timeout=60):
    """*argv* in the lab's fabric namespace (it has an address on the management network)."""
    return subprocess.run(["ip", "netns", "exec", lab.fabric.fabric_netns, *argv],
                          capture_output=True, text=True, timeout=timeout)


def _ovsdb_client(lab, remote, ident=None, ca=None):
    """`ovsdb-client list-dbs REMOTE` from the fabric namespace, with *ident*'s key and
    certificate and the CA file *ca*; its CompletedProcess."""
    creds = [] if ident is None else ["-p", ident.key, "-c", ident.cert, "-C", ca]
    return _in_fabric(lab, ["timeout", "20", "ovsdb-client", *creds, "list-dbs", remote])


HTTPS_PROBE = """
import http.client, ssl, sys
host, port, ca, scheme = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
try:
    if scheme == "https":
        conn = http.client.HTTPSConnection(host, port, timeout=10,
                                           context=ssl.create_default_context(cafile=ca))
    else:
        conn = http.client.HTTPConnection(host, port, timeout=10)
    conn.request("GET", "/v1/health")
    print(conn.getresponse().status)
except Exception as exc:
    print("refused", type(exc).__name__, exc)
"""


NODES = ("compute1", "compute2", "net1")


def test_status_names_the_node_vms(lab):
    st = json.loads(cli("lab", "status", "--json").stdout)
    assert {n: v["kind"] for n, v in st["nodes"].items()} == \
        {"compute1": "vm", "compute2": "vm", "net1": "vm"}
    assert all(v["accel"] in ("kvm", "tcg") for v in st["nodes"].values())
    # `lab node` itself (the other tests run the same Lab.node_exec in this process)
    assert cli("lab", "node", "net1", "--", "sh", "-c", "hostname").stdout.strip() == "net1"


def test_node_vms_machine_ids_source_push_and_kernel_datapath(lab):
    """Each node VM has the machine id given on its kernel command line (unique per VM:
    OVS internal ports take their MACs from it, and GRE between VMs with equal ids fails);
    a second push of the same source tree only compares its digest; the node's CLI runs
    from /opt/tenantnet-venv; the kernel datapath is up (ovs-dpctl)."""
    ids = {name: node(lab, name, "cat /etc/machine-id").strip() for name in NODES}
    assert ids == {name: qemu.machine_id(PREFIX, name) for name in NODES}
    assert len(set(ids.values())) == len(NODES)
    vm = _node_vm(lab, "compute1")
    tar = source_tar()
    # the tree may have changed since `lab up` (others edit it): the first push installs it
    assert push_tar(vm, *tar) in ("installed", "unchanged")
    assert push_tar(vm, *tar) == "unchanged"
    assert "--transport-ip" in node(lab, "compute1",
                                    "/opt/tenantnet-venv/bin/tenantnet node bootstrap --help")
    assert "system@ovs-system" in node(lab, "compute1", "ovs-dpctl show")


def test_matrix_isolation_with_overlapping_cidrs(lab):
    m = lab.matrix()
    for r in m["rows"]:
        assert r["unicast"] == r["same_network"], r
        assert r["broadcast"] == r["same_network"], r
        if r["same_network"]:
            assert r["ping"], r


def test_tls_on_the_node_vms(lab, tmp_path):
    """TLS is on by default. node.sh installed each VM's directory of the lab's PKI (and
    nothing else of it: no CA, no other identity), its bootstrap serves OVSDB on pssl: with
    ovsdb-server trusting only the provider's CA, and the bridges' controllers are ssl:.
    From the management network: the provider's certificate opens a node's OVSDB; plain TCP,
    a tenant's certificate, a certificate of another PKI, and a client that does not trust
    the nodes' CA do not. The API answers on HTTPS (verified with the lab's CA), not on
    plain HTTP."""
    topo = lab.topology()
    assert topo.security == "tls"
    for name in ("compute1", "compute2", "net1"):
        assert_node_tls(lab, name)
        assert node(lab, name, f"ls {NODE_TLS}/.. && stat -c '%a %U' {NODE_TLS} "
                               f"{NODE_TLS}/key.pem").split() == ["node", "700", "root",
                                                                  "600", "root"]
        assert node(lab, name, f"ls {NODE_TLS}").split() == \
            ["cert.pem", "key.pem", "openflow-ca.pem", "ovsdb-ca.pem"]
        assert not node(lab, name, "ls /tmp/tenantnet-cluster 2>/dev/null || true").strip()
    root = os.path.join(lab.fabric.state_dir, "pki")
    provider = pki.provider(root)
    c1 = {n.name: n.management_ip for n in topo.nodes()}["compute1"]
    remote = f"ssl:{c1}:{topo.controller.ovsdb_port}"
    ok = _ovsdb_client(lab, remote, provider, provider.ca("node"))
    assert ok.returncode == 0 and "Open_vSwitch" in ok.stdout, ok.stderr
    plain = _ovsdb_client(lab, f"tcp:{c1}:{topo.controller.ovsdb_port}")
    assert plain.returncode != 0 and "Open_vSwitch" not in plain.stdout
    tenant = pki.issue_tenant(root, "tls-probe", ["198.18.0.250"])
    refused = _ovsdb_client(lab, remote, tenant, tenant.ca("node"))
    assert refused.returncode != 0 and "Open_vSwitch" not in refused.stdout
    other = pki.init(str(tmp_path / "other-pki"), [topo.controller.management_ip])
    refused = _ovsdb_client(lab, remote, other, other.ca("node"))        # node refuses it
    assert refused.returncode != 0 and "Open_vSwitch" not in refused.stdout
    refused = _ovsdb_client(lab, remote, provider, other.ca("node"))     # we refuse the node
    assert refused.returncode != 0 and "Open_vSwitch" not in refused.stdout
    c = topo.controller

    def probe(scheme, ca):
        return _in_fabric(lab, [sys.executable, "-c", HTTPS_PROBE, c.management_ip,
                                str(c.api_port), ca, scheme]).stdout.strip()
    assert probe("https", provider.ca("api")) in ("200", "401"), probe("https",
                                                                      provider.ca("api"))
    assert probe("https", other.ca("api")).startswith("refused SSL")
    assert probe("http", "").startswith("refused") or probe("http", "") == "400"


def test_kernel_datapath_and_gre_key(lab):
    brint = naming.brint_name("acme/web")
    assert node(lab, "compute1", f"ovs-vsctl get bridge {brint} datapath_type").strip() == \
        "system"
    assert node(lab, "compute1", "ovs-vsctl get bridge br-tun datapath_type").strip() == \
        "system"
    # a flow toward web2 (compute2) leaves through GRE with key = segmentation id 100
    lab.ping("web1", vms(lab)["web2"]["ip"], count=3)
    flows = node(lab, "compute1", "ovs-dpctl dump-flows")
    assert re.search(r"set\(tunnel\(tun_id=0x64,", flows), flows


def _outage(lab, src, dst_ip, action, steady=5.0, limit=120.0):
    """Ping every 10 ms from *src* while *action* runs and until *src* reaches *dst_ip*
    again (lab.ping, at most *limit* seconds after *action*), then *steady* seconds more.
    Returns (longest gap between replies in s, their timestamps, ping's output). Ping's
    output through SSH comes in blocks: so lab.ping decides when the data plane is back,
    and ping is stopped with SIGINT, which makes it write out the rest."""
    script = f"echo $$; exec ping -n -D -i 0.01 -W 1 {dst_ip}"
    proc = subprocess.Popen(_exec_argv(src, ["sh", "-c", script]), stdout=subprocess.PIPE,
                            text=True)
    pid = proc.stdout.readline().strip()       # ping's, in the node VM (echo: unbuffered)
    try:
        assert pid.isdigit(), pid
        time.sleep(2)
        t_action = time.monotonic()
        action()
        done = time.monotonic()
        while not lab.ping(src, dst_ip, count=1):
            assert time.monotonic() - done < limit and proc.poll() is None, \
                f"{src} does not reach {dst_ip} within {limit:.0f}s after the action"
        back = time.monotonic()
        time.sleep(steady)
    finally:
        # SIGINT to ping itself: it writes out what it buffered, and exits
        if not (pid.isdigit() and lab.exec(src, ["kill", "-INT", pid],
                                           capture=True).returncode == 0):
            proc.send_signal(signal.SIGINT)
    out, _ = proc.communicate(timeout=60)
    stamps = [float(m.group(1)) for m in re.finditer(r"^\[(\d+\.\d+)\]", out, re.M)]
    assert len(stamps) > 100, out[-2000:]
    gap = max(b - a for a, b in zip(stamps, stamps[1:]))
    print(f"outage run: the action took {done - t_action:.0f}s, {src} reached {dst_ip} "
          f"again {back - done:.0f}s after it")
    return gap, stamps, out


def _exec_argv(endpoint, cmd):
    """argv that runs *cmd* in *endpoint* (a namespace inside its node VM) from here."""
    return [sys.executable, "-m", "tenantnet.cli", "lab", "exec", "--prefix", PREFIX,
            endpoint, "--", *cmd]


def test_ovs_restart_on_a_node_recovers_the_data_plane(lab):
    """`systemctl restart openvswitch-switch` on compute1: bridges, br-tun's and the ex-
    endpoints' addresses and the flows come back without operator action."""
    v = vms(lab)
    gap, stamps, out = _outage(lab, "web2", v["web1"]["ip"], lambda: node(
        lab, "compute1", "systemctl restart openvswitch-switch"))
    print(f"OVS restart on compute1: longest gap between replies {gap * 1000:.0f} ms")
    assert time.time() - stamps[-1] < 5, "no reply in the last seconds of the run"
    assert lab.ping("web2", v["web1"]["ip"], count=3)
    assert lab.ping("app2", v["app1"]["ip"], count=3)
    assert "198.19.0.11/" in node(lab, "compute1", "ip -br addr show br-tun")
    assert_node_tls(lab, "compute1")        # ovsdb-server came back with the provider's CA


def test_reboot_of_a_node_vm_recovers_the_data_plane(lab):
    """`systemctl reboot` of compute2: the node comes back with its bridges (kernel
    datapath), br-tun's and the ex- endpoints' addresses and the controller's flows, with no
    operator action. Its tenant VMs are then made again, as a hypervisor restarts its VMs
    (lab.restore_node), and traffic flows."""
    v = vms(lab)
    boot_id = "cat /proc/sys/kernel/random/boot_id"
    # (through `lab node`, as the wait for its new boot below)
    before = cli("lab", "node", "compute2", "--", "sh", "-c", boot_id).stdout.strip()
    t0 = time.monotonic()
    cli("lab", "node", "compute2", "--", "sh", "-c",
        "systemd-run --on-active=1 systemctl reboot", check=False)
    deadline = time.monotonic() + 400
    while True:                     # until it answers with another boot id: it rebooted
        try:
            now = cli("lab", "node", "compute2", "--", "sh", "-c", boot_id, check=False,
                      timeout=60).stdout.strip()
        except subprocess.TimeoutExpired:
            now = ""
        if now and now != before:
            break
        assert time.monotonic() < deadline, "compute2 did not come back from its reboot"
        time.sleep(2)
    answered = time.monotonic() - t0
    made = lab.restore_node("compute2", timeout=60)
    assert set(made) == {"web2", "app2"}
    back = time.monotonic() - t0
    assert "198.19.0.12/" in node(lab, "compute2", "ip -br addr show br-tun")
    ex = naming.ex_port_name("acme/web")
    deadline = time.monotonic() + 60
    while "198.19.100.12/" not in node(lab, "compute2", f"ip -br addr show {ex}", check=False):
        assert time.monotonic() < deadline, "the ex- endpoint got no address (udev rule)"
        time.sleep(0.5)
    brtun = naming.brtun_name("acme/web")
    assert node(lab, "compute2", f"ovs-vsctl get bridge {brtun} datapath_type").strip() == \
        "system"
    deadline = time.monotonic() + 60
    while "cookie=0x544e4e54" not in node(lab, "compute2",
                                          f"ovs-ofctl -O OpenFlow13 dump-flows {brtun}"):
        assert time.monotonic() < deadline, "the controller did not resync the flows"
        time.sleep(0.5)
    deadline = time.monotonic() + 60
    while not (lab.ping("web1", v["web2"]["ip"]) and lab.ping("app1", v["app2"]["ip"])):
        assert time.monotonic() < deadline, "no traffic to the rebooted node's VMs"
    # TLS as before, from the first boot on: the bootstrap at boot found ovsdb-server
    # started with the provider's CA already (its systemd drop-in), so it restarted nothing
    assert_node_tls(lab, "compute2")
    boot_log = node(lab, "compute2", "journalctl -b -u tenantnet-node.service -o cat")
    assert "[ok     ] ovsdb-server CA" in boot_log, boot_log[-2000:]
    print(f"reboot of compute2: node and VMs back, traffic flowing "
          f"{time.monotonic() - t0:.0f}s after the reboot (node answered after "
          f"{answered:.0f}s, its VMs made again after {back:.0f}s)")
