"""Executors (tenantnet.node.hostexec): local and network-namespace ones for real, the SSH one
against an sshd of our own in namespace tnf-ssh (reached from namespace tnf-sshc, on
198.18.250.0/30, with a key pair and host key generated in a temporary directory), and the
multi-node lab's host nodes (VM namespaces made on a host over SSH, its Open vSwitch
bootstrapped over SSH).

Needs root for the namespaces; the SSH part needs openssh-server (skipped, saying so, when
sshd is not installed: scripts/setup installs it)."""

import json
import os
import shutil
import subprocess
import tempfile
import time

import pytest

from conftest import lab_prerequisites
from tenantnet.errors import LabError
from tenantnet.node.hostexec import (ExecError, LocalExecutor, NetnsExecutor, SshExecutor,
                                executor_for, parse_ssh_target)
from tenantnet.lab import netns as ns

NEEDS_ROOT = pytest.mark.skipif(os.geteuid() != 0, reason="needs root (network namespaces)")
LAB = pytest.mark.lab            # `-m "not lab"` skips what needs root
SSHD = shutil.which("sshd") or ("/usr/sbin/sshd" if os.path.exists("/usr/sbin/sshd") else None)
SERVER_NS, CLIENT_NS = "tnf-ssh", "tnf-sshc"
SERVER_IP, CLIENT_IP, PORT = "198.18.250.1", "198.18.250.2", 2222


# -- parsing (no root needed) --------------------------------------------------------------
def test_executor_for_specs():
    assert isinstance(executor_for("local"), LocalExecutor)
    ex = executor_for("netns:tnf-x")
    assert isinstance(ex, NetnsExecutor) and ex.netns == "tnf-x"
    assert ex.wrap(["true"]) == ["ip", "netns", "exec", "tnf-x", "true"]
    ssh = executor_for("ssh:admin@198.18.0.21:2200", identity="/k")
    assert isinstance(ssh, SshExecutor)
    assert (ssh.user, ssh.host, ssh.port, ssh.identity) == ("admin", "198.18.0.21", 2200, "/k")
    assert executor_for("ssh:198.18.0.21").user == "root"
    assert executor_for(ssh) is ssh
    assert parse_ssh_target("u@[fd00::1]:23") == ("u", "fd00::1", 23)
    assert parse_ssh_target("fd00::1") == (None, "fd00::1", 22)
    for bad in ("", "tcp:1.2.3.4", "ssh:", "ssh:u@h:99999", "ssh:@h", "netns:"):
        with pytest.raises(ExecError):
            executor_for(bad)


def test_ssh_command_line_is_quoted_and_batch():
    ssh = SshExecutor("198.18.0.21", identity="/id", options={"ConnectTimeout": 3})
    argv = ssh.wrap(["echo", "a b", "$HOME", "it's"])
    assert argv[0] == "ssh" and "root@198.18.0.21" in argv
    assert "BatchMode=yes" in argv and "ConnectTimeout=3" in argv
    assert "ControlMaster=auto" in argv
    assert argv[-1] == "echo 'a b' '$HOME' 'it'\"'\"'s'"
    control = next(a for a in argv if a.startswith("ControlPath="))
    cdir = os.path.dirname(control.split("=", 1)[1])
    assert os.stat(cdir).st_mode & 0o777 == 0o700
    ssh.close()
    assert not os.path.exists(cdir)


# -- local and namespace executors ---------------------------------------------------------
def test_local_executor():
    ex = LocalExecutor()
    assert ex.run(["echo", "a b"]).stdout == "a b\n"
    assert ex.run(["cat"], input="in\n").stdout == "in\n"
    with pytest.raises(ExecError) as err:
        ex.run(["sh", "-c", "echo oops >&2; exit 3"])
    assert err.value.returncode == 3 and err.value.stderr == "oops"
    assert str(err.value) == "command failed (3): sh -c echo oops >&2; exit 3: oops"
    assert ex.run(["false"], check=False).returncode == 1
    with pytest.raises(ExecError, match="command not found: tnf-no-such-tool"):
        ex.run(["tnf-no-such-tool"])
    with pytest.raises(ExecError, match="timed out after 0.2s"):
        ex.run(["sleep", "5"], timeout=0.2)
    p = ex.popen(["echo", "hi"], stdout=subprocess.PIPE, text=True)
    assert p.communicate()[0] == "hi\n"
    assert ex.run(["sh", "-c", "echo $TNF_X"], env=dict(os.environ, TNF_X="1")).stdout == "1\n"


@LAB
@NEEDS_ROOT
def test_netns_executor_and_lab_wrappers():
    name = "tnf-exec"
    ns.delete(name)
    try:
        ns.add(name)
        ex = NetnsExecutor(name)
        out = ex.run(["ip", "-o", "link"]).stdout
        assert "lo:" in out and "eth0" not in out          # not the host's interfaces
        assert ex.description == f"netns:{name}"
        with pytest.raises(ExecError) as err:
            ex.run(["ip", "link", "show", "tnf-nothing"])
        # the lab's historical message format: the command names the namespace
        assert str(err.value).startswith(f"command failed (1): ip netns exec {name} ip link")
        # tenantnet.lab.netns raises LabError naming the command and the namespace (for `ip`
        # commands it uses `ip -n NS`, one process instead of two)
        with pytest.raises(LabError, match=f"ip -n {name} link show tnf-nothing"):
            ns.run(["ip", "link", "show", "tnf-nothing"], netns=name)
        assert ns.link_exists("lo", netns=name) and not ns.link_exists("tnf-x", netns=name)
        assert name in ns.list_namespaces()
        p = ex.popen(["cat"], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        assert p.communicate("x")[0] == "x"
    finally:
        ns.delete(name)
    assert not ns.exists(name)


# -- SSH -------------------------------------------------------------------------------------
def _keygen(path, kind="ed25519"):
    subprocess.run(["ssh-keygen", "-q", "-t", kind, "-N", "", "-f", path], check=True)


@pytest.fixture(scope="module")
def sshd():
    """An sshd of our own in tnf-ssh (private config, host key and authorized_keys in a temp
    dir), a client namespace tnf-sshc, and the client's key. Stopped by pid."""
    if os.geteuid() != 0:
        pytest.skip("needs root (network namespaces)")
    if SSHD is None or not shutil.which("ssh") or not shutil.which("ssh-keygen"):
        pytest.skip("sshd/ssh not installed: apt-get install openssh-server openssh-client "
                    "(scripts/setup installs them)")
    tmp = tempfile.mkdtemp(prefix="tnf-sshd-", dir="/tmp")
    proc = None
    try:
        for n in (SERVER_NS, CLIENT_NS):
            ns.delete(n)
        ns.add(SERVER_NS)
        ns.add(CLIENT_NS)
        ns.run(["ip", "link", "add", "s0", "type", "veth", "peer", "name", "c0", "netns",
                CLIENT_NS], netns=SERVER_NS)
        ns.run(["ip", "addr", "add", f"{SERVER_IP}/30", "dev", "s0"], netns=SERVER_NS)
        ns.run(["ip", "link", "set", "s0", "up"], netns=SERVER_NS)
        ns.run(["ip", "addr", "add", f"{CLIENT_IP}/30", "dev", "c0"], netns=CLIENT_NS)
        ns.run(["ip", "link", "set", "c0", "up"], netns=CLIENT_NS)
        _keygen(os.path.join(tmp, "host_key"))
        _keygen(os.path.join(tmp, "id_client"))
        shutil.copy(os.path.join(tmp, "id_client.pub"), os.path.join(tmp, "authorized_keys"))
        config = os.path.join(tmp, "sshd_config")
        with open(config, "w") as fh:
            fh.write(f"""Port {PORT}
ListenAddress {SERVER_IP}
HostKey {tmp}/host_key
AuthorizedKeysFile {tmp}/authorized_keys
PidFile {tmp}/sshd.pid
PermitRootLogin prohibit-password
PasswordAuthentication no
KbdInteractiveAuthentication no
UsePAM no
StrictModes no
AcceptEnv TNF_*
MaxSessions 50
MaxStartups 50
LogLevel VERBOSE
""")
        os.makedirs("/run/sshd", mode=0o755, exist_ok=True)   # sshd's privilege separation dir
        with open(os.path.join(tmp, "sshd.log"), "w") as log:
            proc = subprocess.Popen(["ip", "netns", "exec", SERVER_NS, SSHD, "-D", "-e",
                                     "-f", config], stdout=log, stderr=subprocess.STDOUT)
        opts = {"UserKnownHostsFile": os.path.join(tmp, "known_hosts")}
        deadline = time.time() + 15
        while True:
            probe = SshExecutor(SERVER_IP, port=PORT, identity=os.path.join(tmp, "id_client"),
                                options=dict(opts, ConnectTimeout=2), control_persist=None,
                                base=NetnsExecutor(CLIENT_NS))
            try:
                probe.run(["true"], timeout=10)
                break
            except ExecError:
                if proc.poll() is not None or time.time() > deadline:
                    with open(os.path.join(tmp, "sshd.log")) as fh:
                        pytest.fail(f"sshd did not come up: {fh.read()[-2000:]}")
                time.sleep(0.2)
        yield {"tmp": tmp, "identity": os.path.join(tmp, "id_client"), "options": opts}
    finally:
        if proc is not None:
            proc.terminate()
            try:
                proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        for n in (CLIENT_NS, SERVER_NS):
            ns.delete(n)
        shutil.rmtree(tmp, ignore_errors=True)


def _ssh(sshd, **kw):
    return SshExecutor(SERVER_IP, port=PORT, identity=sshd["identity"], options=sshd["options"],
                       base=NetnsExecutor(CLIENT_NS), **kw)


@LAB
def test_ssh_run_quoting_stdin_errors(sshd):
    with _ssh(sshd) as ex:
        assert ex.description == f"root@{SERVER_IP}:{PORT}"
        args = ["a b", "$HOME", "it's", "*", "semi;colon", ""]
        out = ex.run(["python3", "-c", "import sys, json; print(json.dumps(sys.argv[1:]))",
                      *args]).stdout
        assert json.loads(out) == args                      # arguments arrive exactly
        assert ex.run(["cat"], input="over ssh\n").stdout == "over ssh\n"
        # the command runs on the far side: in tnf-ssh, with the server's address
        assert SERVER_IP in ex.run(["ip", "-o", "addr"]).stdout
        with pytest.raises(ExecError) as err:
            ex.run(["sh", "-c", "echo remote-oops >&2; exit 4"])
        assert err.value.host == ex.description and err.value.returncode == 4
        assert f"on {ex.description}" in str(err.value) and "remote-oops" in str(err.value)
        assert ex.run(["false"], check=False).returncode == 1
        with pytest.raises(ExecError, match="timed out"):
            ex.run(["sleep", "10"], timeout=1)
        env = dict(os.environ, TNF_REMOTE="yes")
        assert ex.run(["sh", "-c", "echo $TNF_REMOTE"], env=env).stdout == "yes\n"
        p = ex.popen(["sh", "-c", "echo one; sleep 0.2; echo two"], stdout=subprocess.PIPE,
                     text=True)
        assert p.communicate(timeout=20)[0] == "one\ntwo\n"


@LAB
def test_ssh_control_master_is_reused_and_private(sshd):
    ex = _ssh(sshd)
    try:
        ex.run(["true"])
        cdir = ex._control_dir
        assert os.stat(cdir).st_mode & 0o777 == 0o700
        socks = os.listdir(cdir)
        assert len(socks) == 1                            # the master's socket
        t0 = time.perf_counter()
        for _ in range(5):
            ex.run(["true"])
        per_cmd = (time.perf_counter() - t0) / 5
        assert os.listdir(cdir) == socks                  # same master, no new handshakes
        assert per_cmd < 1.0
    finally:
        ex.close()
    assert not os.path.exists(cdir)


@LAB
def test_ssh_unreachable_is_a_clear_error(sshd):
    ex = SshExecutor(SERVER_IP, port=PORT + 1, identity=sshd["identity"],
                     options=dict(sshd["options"], ConnectTimeout=2),
                     base=NetnsExecutor(CLIENT_NS))
    with pytest.raises(ExecError, match=rf"ssh to root@{SERVER_IP}:{PORT + 1} failed"):
        ex.run(["true"], timeout=20)
    ex.close()
    nokey = SshExecutor(SERVER_IP, port=PORT, options=dict(sshd["options"],
                        IdentityFile="/nonexistent", IdentitiesOnly="yes"),
                        base=NetnsExecutor(CLIENT_NS), control_persist=None)
    with pytest.raises(ExecError, match="ssh to .* failed"):      # BatchMode: no prompt
        nokey.run(["true"], timeout=20)


@LAB
def test_netns_on_an_ssh_host(sshd):
    """NetnsExecutor over SSH: a namespace on the far host (here the server's own one)."""
    ex = NetnsExecutor(SERVER_NS, base=_ssh(sshd))
    try:
        assert ex.description == f"netns:{SERVER_NS} on root@{SERVER_IP}:{PORT}"
        assert SERVER_IP in ex.run(["ip", "-o", "addr"]).stdout
        assert ns.exists(SERVER_NS, executor=ex.base)
        assert not ns.exists("tnf-nothing-here", executor=ex.base)
    finally:
        ex.close()


@LAB
def test_vm_namespaces_on_a_host_node_over_ssh(sshd, tmp_path):
    """The multi-node lab's hypervisor part, on a "host" reached over SSH: bootstrap its
    Open vSwitch through the executor, make two VM namespaces there with the fabric's own
    endpoint code, ping between them across its br-int, then remove them with down()."""
    reason = lab_prerequisites()
    if reason:
        pytest.skip(reason)
    from tenantnet.node.bootstrap import bootstrap_node
    from tenantnet.node.hostops import ExecHost
    from tenantnet.node.ovscli import local_vsctl
    from tenantnet.lab.fabric import LabFabric
    from tenantnet.lab.ovs import OvsInstance
    # The host's Open vSwitch: a private instance in the server's namespace (never the
    # machine's own), bootstrapped over SSH like a real node.
    base = tempfile.mkdtemp(prefix="tnf-ho-", dir="/tmp")
    ovs = OvsInstance(os.path.join(base, "ovs"), netns=SERVER_NS)
    state = tempfile.mkdtemp(prefix="tnf-st-", dir="/tmp")
    fab = LabFabric("tnf", state_dir=state)
    ssh = _ssh(sshd)
    try:
        ovs.start()
        ns.run(["ip", "link", "add", "eth1", "type", "veth", "peer", "name", "eth1p"],
               netns=SERVER_NS)
        steps = bootstrap_node(local_vsctl(db=ovs.unix_remote, executor=ssh), "compute",
                               "eth1", "198.19.250.1/24", SERVER_IP, datapath="netdev",
                               system_id="tnf-host1", host=ExecHost(ssh))
        assert any(s.what == "bridge br-tun" and s.changed for s in steps)
        assert ovs.vsctl("get-manager").stdout.split() == [f"ptcp:6640:{SERVER_IP}"]

        spec = f"ssh:root@{SERVER_IP}:{PORT}"
        fab.add_host_node("host1", "compute", SERVER_IP, "198.19.250.1", executor=spec,
                          ssh_identity=sshd["identity"], ssh_options=sshd["options"],
                          ssh_via=f"netns:{CLIENT_NS}", ovs_db=ovs.unix_remote)
        assert set(fab.check_host_node("host1")) == {"br-int", "br-tun"}
        for i in (1, 2):
            netns = fab.add_endpoint(f"vm{i}", "host1", f"tap-tnf{i}")
            assert netns == f"tnf-v-vm{i}"
            applied = fab.configure_endpoint(f"vm{i}", f"02:00:00:00:fa:0{i}",
                                             f"10.250.0.{i}/24")
            assert applied["mtu"] == 1400 and applied["tx_offload"] is False
            ovs.vsctl("add-port", "br-int", f"tap-tnf{i}")
        ovs.ofctl("add-flow", "br-int", "priority=0,actions=NORMAL")
        # on the host, not here: the namespaces are recorded as remote ones
        assert ns.exists("tnf-v-vm1", executor=ssh)
        assert fab.state.namespaces == []
        assert ("ssh:root@198.18.250.1:2222", "tnf-v-vm1") in fab.state.remote_namespaces
        res = fab.exec("vm1", ["ping", "-c", "2", "-i", "0.2", "-W", "2", "10.250.0.2"])
        assert res.returncode == 0, res.stdout + res.stderr
        out = fab.exec("vm2", ["ip", "-o", "link", "show", "eth0"], check=True).stdout
        assert "02:00:00:00:fa:02" in out and "mtu 1400" in out
        p = fab.endpoint_executor("vm2").popen(["ping", "-c", "1", "-W", "2", "10.250.0.1"],
                                               stdout=subprocess.PIPE, text=True)
        assert p.wait(timeout=20) == 0
        st = fab.status()
        assert st["nodes"]["host1"]["exec"] == spec and st["nodes"]["host1"]["ovs_running"]
        assert st["endpoints"]["vm1"]["netns_exists"] is True

        fab.remove_endpoint("vm2")
        assert not ns.exists("tnf-v-vm2", executor=ssh)
        fab.down()
        assert not ns.exists("tnf-v-vm1", executor=ssh)
        assert set(ovs.vsctl("list-br").stdout.split()) == {"br-int", "br-tun"}   # host kept
        assert not os.path.exists(os.path.join(state, "state.json"))
    finally:
        try:
            fab.down()
        finally:
            for n in ("tnf-v-vm1", "tnf-v-vm2"):
                ns.run(["ip", "netns", "del", n], executor=ssh, check=False)
            ssh.close()
            ovs.stop()
            shutil.rmtree(base, ignore_errors=True)
            shutil.rmtree(state, ignore_errors=True)
