"""The Vagrant lab brought up for real (marked `vagrant`): vagrant-libvirt, tenantnet's own box
(`tenantnet lab image box`), a controller, one compute node and one network node; then, on
the controller, `tenantnet cluster up`, a VM of each of two tenants whose networks share one
CIDR, and `tenantnet cluster matrix`; then `vagrant destroy -f`.

With TLS, the default: the lab's PKI is made on the host (vagrant/provision/cluster-pki.sh,
in the state directory's cluster/pki), each machine gets only its own certificates, the
nodes serve OVSDB on pssl: to the provider's certificate only, the bridges' controllers are
ssl:, and the API that `cluster up` and `vm add` use is HTTPS, verified with the lab's CA.

Everything lives in one lab network namespace (PREFIX-lab) and one state directory
(/var/tmp/PREFIX-vagrant-lab), and nothing in the host's own namespace:

- libvirtd and virtlogd are started by hand (PID 1 need not be systemd) inside the namespace,
  in a private mount namespace where /etc/libvirt, /var/lib/libvirt, /var/cache/libvirt and
  /var/log/libvirt are the state directory's copies and /run is a tmpfs. So libvirt's
  networks (bridges, dnsmasq, firewall rules), domains, volumes and logs exist only there;
  no default network, nothing autostarted. vagrant-libvirt reaches libvirtd through the
  socket in the state directory (LIBVIRT_DEFAULT_URI).
- Vagrant runs in the namespace too (it reaches the machines there). VAGRANT_HOME, the
  machine records (VAGRANT_DOTFILE_PATH) and the lab's keys (TENANTNET_CLUSTER_DIR) are in
  the state directory: the repository's vagrant/ gets nothing.
- Every network is in 198.18.0.0/15: the lab's management (198.18.0.0/24) and transport
  (198.19.0.0/24) networks, and vagrant-libvirt's own management network (198.18.8.0/24,
  isolated: forward mode none). The machines are offline: the box has the node packages and
  wheels, and the controller's wheels come from a wheelhouse made here (TENANTNET_WHEELHOUSE).
- KVM when tenantnet.vm.accel.detect_accel says it boots a kernel, else TCG (libvirt driver
  qemu).
- At the end: `vagrant destroy -f`, then libvirt must hold no domain and no network, the
  daemons are stopped by pid and waited for, nothing may be left in the namespace
  (`ip netns pids`), and the namespace and the state directory are removed.

Wall time here (2 cores, TCG): see vagrant/README.md ("Run here")."""

import base64
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import time

import pytest

from conftest import ROOT
from tenantnet.node import procs

PREFIX = os.environ.get("TENANTNET_VAGRANT_PREFIX", "tnvg")
NETNS = f"{PREFIX}-lab"
STATE = f"/var/tmp/{PREFIX}-vagrant-lab"
BOX = f"{PREFIX}-node"
WHEEL_CACHE = "/var/cache/tenantnet/wheels"
VAGRANT_MGMT = "198.18.8.0/24"           # vagrant-libvirt's own management network
LIBVIRT_DIRS = {"etc": "/etc/libvirt", "lib": "/var/lib/libvirt",
                "cache": "/var/cache/libvirt", "log": "/var/log/libvirt"}
# What libvirt's QEMU driver does differently here: QEMU as root (the box's kernel and the
# volumes are root's), no cgroups, no private /dev, no security driver: none of which
# exist in a container without systemd as PID 1.
QEMU_CONF = """
user = "root"
group = "root"
dynamic_ownership = 0
remember_owner = 0
security_driver = "none"
cgroup_controllers = [ ]
namespaces = [ ]
"""
TOOLS = {"vagrant": "vagrant", "libvirtd": "libvirt-daemon",
         "virtlogd": "libvirt-daemon", "virsh": "libvirt-clients",
         "dnsmasq": "dnsmasq-base", "qemu-system-x86_64": "qemu-system-x86",
         "qemu-img": "qemu-utils", "debootstrap": "debootstrap", "rsync": "rsync",
         "ssh-keygen": "openssh-client", "iptables": "iptables"}


def _impossible():
    """Why this test cannot run on this machine at all (None when it can)."""
    if os.geteuid() != 0:
        return "needs root (network namespaces, libvirtd, the node image)"
    if not os.path.exists("/dev/net/tun"):
        return "no /dev/net/tun: libvirt cannot give the machines their NICs"
    return None


# `vm` and `lab` too: it boots VMs and needs root and namespaces, so `-m "not vm"` and
# `-m "not lab"` leave it out as they do the node VM tests.
pytestmark = [pytest.mark.vagrant, pytest.mark.vm, pytest.mark.lab,
              pytest.mark.skipif(_impossible() is not None, reason=str(_impossible()))]


def _missing_tools():
    missing = [f"{tool} ({pkg})" for tool, pkg in TOOLS.items()
               if not shutil.which(tool) and not os.path.exists(f"/usr/sbin/{tool}")]
    missing += [f"{d} (libvirt-daemon-system)" for d in LIBVIRT_DIRS.values()
                if not os.path.isdir(d)]
    if shutil.which("vagrant"):
        plugins = _run(["vagrant", "plugin", "list"], check=False, timeout=120,
                       env=dict(os.environ, VAGRANT_CHECKPOINT_DISABLE="1")).stdout
        if "vagrant-libvirt" not in plugins:
            missing.append("the vagrant-libvirt plugin (vagrant-libvirt)")
    return missing


# -- the lab's libvirt ------------------------------------------------------------------
def _run(cmd, timeout=120, check=True, **kw):
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, **kw)
    if check and res.returncode != 0:
        raise AssertionError(f"{' '.join(cmd)} failed: {(res.stderr or res.stdout).strip()}")
    return res


def _netns_pids():
    res = _run(["ip", "netns", "pids", NETNS], check=False)
    return [int(p) for p in res.stdout.split()] if res.returncode == 0 else []


def _virsh(*args, check=True):
    return _run(["virsh", "-q", "-c", _uri(), *args], check=check, timeout=60)


def _uri():
    return f"qemu:///system?socket={STATE}/sock/libvirt-sock"


def _daemon(name):
    """(pid, start time) of the lab's libvirtd or virtlogd, from its pid file."""
    try:
        with open(f"{STATE}/{name}.pid") as fh:
            pid = int(fh.read().strip())
    except (OSError, ValueError):
        return None
    if not procs.pid_alive(pid) or name not in procs.proc_cmdline(pid):
        return None                      # gone, or the pid is another process's now
    return (pid, procs.start_time(pid))


def start_libvirt():
    """libvirtd and virtlogd in NETNS with private libvirt directories; their (pid, start
    time) pairs."""
    os.makedirs(f"{STATE}/sock", mode=0o700)
    for sub, real in LIBVIRT_DIRS.items():
        # the packages' (almost empty) trees, with their owners and modes
        shutil.copytree(real, f"{STATE}/{sub}", symlinks=True,
                        ignore=shutil.ignore_patterns("*.log", "*.pid"))
    nets = f"{STATE}/etc/qemu/networks"
    for root, _dirs, files in os.walk(nets):      # no default network, nothing autostarted
        for f in files:
            os.unlink(os.path.join(root, f))
    with open(f"{STATE}/etc/qemu.conf", "a") as fh:
        fh.write(QEMU_CONF)
    with open(f"{STATE}/etc/libvirtd.conf", "a") as fh:
        fh.write(f'\nunix_sock_dir = "{STATE}/sock"\nunix_sock_rw_perms = "0700"\n'
                 'auth_unix_rw = "none"\n')
    _run(["ip", "netns", "add", NETNS])
    _run(["ip", "-n", NETNS, "link", "set", "lo", "up"])
    mounts = " && ".join(f"mount --bind {STATE}/{sub} {real}"
                         for sub, real in LIBVIRT_DIRS.items())
    # `ip netns exec` gives the command its own mount namespace: the mounts stay there.
    _run(["ip", "netns", "exec", NETNS, "sh", "-ec",
          f"mount -t tmpfs -o mode=755 {PREFIX}-run /run && mkdir -p /run/libvirt && "
          f"{mounts} && virtlogd -d -p {STATE}/virtlogd.pid && "
          f"libvirtd -d -p {STATE}/libvirtd.pid"], timeout=60)
    deadline = time.monotonic() + 30
    while _virsh("version", check=False).returncode != 0:
        assert time.monotonic() < deadline, "libvirtd does not answer on its socket"
        time.sleep(0.5)
    daemons = [_daemon("virtlogd"), _daemon("libvirtd")]
    assert all(daemons), daemons
    return daemons


def stop_lab():
    """Stop whatever runs in NETNS (libvirtd and virtlogd by their pid files, then anything
    left there: QEMU, dnsmasq, Vagrant's SSH), wait until it is gone, delete NETNS and the
    state directory. Safe when nothing exists; also cleans up after a crashed run."""
    daemons = [d for d in (_daemon("libvirtd"), _daemon("virtlogd")) if d]
    if daemons and _virsh("version", check=False).returncode == 0:
        for dom in _virsh("list", "--name", check=False).stdout.split():
            _virsh("destroy", dom, check=False)
    left = procs.stop(daemons, timeout=15.0, kill_timeout=10.0)
    assert not left, f"libvirt daemons do not exit: {left}"
    rest = [(p, procs.start_time(p)) for p in _netns_pids()]
    left = procs.stop(rest, timeout=15.0, kill_timeout=10.0)
    assert not left, f"processes left in {NETNS} do not exit: {left}"
    if os.path.exists(f"/run/netns/{NETNS}"):
        _run(["ip", "netns", "del", NETNS])
    if os.path.isdir(STATE):
        shutil.rmtree(STATE)


# -- the box, the wheels ----------------------------------------------------------------
def wheelhouse():
    """Wheels of every pin of requirements.txt for the controller (pip wheel here, cached
    per requirements.txt and Python)."""
    import hashlib
    with open(os.path.join(ROOT, "requirements.txt"), "rb") as fh:
        key = hashlib.sha256(fh.read() + sys.version.encode()).hexdigest()[:16]
    path = os.path.join(WHEEL_CACHE, key)
    if os.path.isdir(path):
        return path
    tmp = f"{path}.{os.getpid()}.tmp"
    try:
        _run([sys.executable, "-m", "pip", "wheel", "-q", "--disable-pip-version-check",
              "--no-deps", "-r", os.path.join(ROOT, "requirements.txt"), "-w", tmp],
             timeout=900)
        os.rename(tmp, path)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return path


def vagrant_env(driver, wheels):
    env = dict(os.environ)
    env.pop("TENANTNET_COMPUTE_NODES", None)
    env.update({
        "VAGRANT_HOME": f"{STATE}/vagrant.d", "VAGRANT_DOTFILE_PATH": f"{STATE}/dot",
        "VAGRANT_CWD": os.path.join(ROOT, "vagrant"), "VAGRANT_CHECKPOINT_DISABLE": "1",
        "VAGRANT_NO_COLOR": "1", "LIBVIRT_DEFAULT_URI": _uri(),
        "TENANTNET_BOX": BOX, "TENANTNET_COMPUTE_NODES": "1",
        "TENANTNET_CLUSTER_DIR": f"{STATE}/cluster", "TENANTNET_WHEELHOUSE": wheels,
        "TENANTNET_LIBVIRT_DRIVER": driver,
        "TENANTNET_LIBVIRT_MGMT_NETWORK": f"{PREFIX}-vagrant",
        "TENANTNET_LIBVIRT_MGMT_ADDRESS": VAGRANT_MGMT,
        "TENANTNET_LIBVIRT_MGMT_MODE": "none",
        "TENANTNET_CONTROLLER_MEMORY": "1024", "TENANTNET_CONTROLLER_CPUS": "1",
        "TENANTNET_NODE_MEMORY": "768", "TENANTNET_NODE_CPUS": "1"})
    return env


def vagrant(env, *args, timeout=1800, check=True):
    """`vagrant ARGS` inside NETNS: its stdout. Its output (without progress bars) goes to
    the state directory's vagrant.log too."""
    t0 = time.monotonic()
    res = subprocess.run(["ip", "netns", "exec", NETNS, "vagrant", *args], env=env,
                         capture_output=True, text=True, timeout=timeout)
    out = "\n".join(ln for ln in (res.stdout + res.stderr).splitlines()
                    if "Progress:" not in ln)
    with open(f"{STATE}/vagrant.log", "a") as fh:
        fh.write(f"\n$ vagrant {' '.join(args)}  ({time.monotonic() - t0:.0f}s, "
                 f"exit {res.returncode})\n{out}\n")
    if check and res.returncode != 0:
        tail = "\n".join(out.splitlines()[-25:])
        raise AssertionError(f"vagrant {' '.join(args)} failed (exit {res.returncode}); "
                             f"log {STATE}/vagrant.log:\n{tail}")
    return res.stdout


def on_controller(env, script, timeout=900):
    """*script* as root on the controller (`vagrant ssh controller -c`): its stdout."""
    return vagrant(env, "ssh", "controller", "-c", f"sudo -i sh -c {shlex.quote(script)}",
                   timeout=timeout)


def ssh_to(env, machine):
    """A function that runs a script as root on *machine* as on_controller does, with the
    SSH settings `vagrant ssh-config` gives, but without starting Vagrant (seconds of Ruby)
    for every command: its stdout; AssertionError on failure. Logged to vagrant.log too."""
    config = f"{STATE}/ssh-config-{machine}"
    with open(config, "w") as fh:
        fh.write(vagrant(env, "ssh-config", machine, timeout=300))

    def run(script, timeout=900):
        t0 = time.monotonic()
        res = subprocess.run(["ip", "netns", "exec", NETNS, "ssh", "-F", config, machine,
                              f"sudo -i sh -c {shlex.quote(script)}"],
                             capture_output=True, text=True, timeout=timeout)
        with open(f"{STATE}/vagrant.log", "a") as fh:
            fh.write(f"\n$ ssh {machine} {script[:200]}  ({time.monotonic() - t0:.0f}s, "
                     f"exit {res.returncode})\n{res.stdout}{res.stderr}\n")
        if res.returncode != 0:
            raise AssertionError(f"ssh {machine} failed (exit {res.returncode}): "
                                 f"{(res.stderr or res.stdout)[-2000:]}")
        return res.stdout
    return run


# -- the test ---------------------------------------------------------------------------
# Run on the controller: GET /v1/health over HTTPS verified with the lab's API CA, over
# HTTPS with another CA (the nodes'), and over plain HTTP.
HTTPS_PROBE = """
import http.client, ssl
api = ("198.18.0.10", 8080)
for what, ca in (("https", "/etc/tenantnet/pki/provider/api-ca.pem"),
                 ("wrong-ca", "/etc/tenantnet/pki/provider/node-ca.pem"), ("http", None)):
    try:
        if ca:
            conn = http.client.HTTPSConnection(*api, timeout=10,
                                               context=ssl.create_default_context(cafile=ca))
        else:
            conn = http.client.HTTPConnection(*api, timeout=10)
        conn.request("GET", "/v1/health")
        print(what, conn.getresponse().status)
    except Exception as exc:
        print(what, "refused", type(exc).__name__)
"""


@pytest.fixture(scope="module")
def lab():
    missing = _missing_tools()
    if missing:
        pytest.fail("not installed: " + ", ".join(missing) + " (scripts/setup installs them)")
    from tenantnet.vm import box as box_mod
    from tenantnet.vm import image as image_mod
    from tenantnet.vm.accel import detect_accel
    host_links = set(_run(["ip", "-o", "link"]).stdout.split("\n"))
    had_run_libvirt = os.path.exists("/run/libvirt")
    stop_lab()                                  # a crashed run's leftovers, by name
    times = {}
    t0 = time.monotonic()
    image = image_mod.build_image(progress=lambda s: None)
    accel = detect_accel(image)
    driver = "kvm" if accel.name == "kvm" else "qemu"
    box = box_mod.build_box(image, progress=lambda s: None)
    wheels = wheelhouse()
    times["image, box, wheels"] = time.monotonic() - t0
    try:
        t = time.monotonic()
        start_libvirt()
        env = vagrant_env(driver, wheels)
        vagrant(env, "box", "add", "--force", "--name", BOX, box, timeout=600)
        times["libvirtd, box add"] = time.monotonic() - t
        t = time.monotonic()
        vagrant(env, "up", "--provider=libvirt")
        times["vagrant up"] = time.monotonic() - t
        yield env, times, driver
        t = time.monotonic()
        vagrant(env, "destroy", "-f", timeout=600)
        times["vagrant destroy"] = time.monotonic() - t
        # vagrant-libvirt removes its domains and the networks it made
        assert _virsh("list", "--all", "--name").stdout.split() == []
        assert _virsh("net-list", "--all", "--name").stdout.split() == []
    finally:
        try:
            with open(f"{STATE}/vagrant.log") as fh:
                print(fh.read()[-6000:])
        except OSError:
            pass
        stop_lab()
        print("times: " + ", ".join(f"{k} {v:.0f}s" for k, v in times.items()) +
              f"; total {time.monotonic() - t0:.0f}s ({accel.name})")
    # everything it made is gone, and the host's namespace never had any of it
    assert not os.path.exists(f"/run/netns/{NETNS}") and not os.path.exists(STATE)
    assert os.path.exists("/run/libvirt") == had_run_libvirt
    new = set(_run(["ip", "-o", "link"]).stdout.split("\n")) - host_links
    assert not [ln for ln in new if re.search(r"virbr|vnet", ln)], new


def test_vagrant_up_then_cluster_matrix(lab):
    env, times, driver = lab
    t = time.monotonic()
    # the controller's service retries until every node's OVSDB answers
    on_controller(env, "for i in $(seq 120); do tenantnet vm list --api "
                       "unix:/run/tenantnet-controller/api.sock >/dev/null 2>&1 && exit 0; "
                       "sleep 2; done; systemctl status tenantnet-controller; exit 1")
    times["controller ready"] = time.monotonic() - t
    # the other commands over plain ssh with `vagrant ssh-config`'s settings (the same
    # machine, user and key as `vagrant ssh -c` above, without a Vagrant start per command)
    controller = ssh_to(env, "controller")
    t = time.monotonic()
    out = controller("set -e; tenantnet cluster up; "
                     "tenantnet vm add web1 --network acme/web --node compute1; "
                     "tenantnet vm add app1 --network globex/app --node compute1; "
                     "tenantnet vm list")
    assert "web1" in out and "app1" in out, out
    times["cluster up, 2 VMs"] = time.monotonic() - t
    t = time.monotonic()
    # the API is HTTPS (the provider's certificate, verified with its CA), and `cluster up`
    # recorded that endpoint
    meta = json.loads(controller("cat /run/tenantnet/tn/lab.json"))
    assert meta["api"] == "https://198.18.0.10:8080", meta
    # (base64: `vagrant ssh -c` joins the lines of a command)
    script = base64.b64encode(HTTPS_PROBE.encode()).decode()
    probe = controller(f"echo {script} | base64 -d | python3 -")
    status = dict(line.split(" ", 1) for line in probe.strip().splitlines())
    assert status["https"] in ("200", "401"), probe            # the TLS handshake worked
    assert status["wrong-ca"].startswith("refused SSL"), probe
    assert status["http"].startswith("refused") or status["http"] == "400", probe
    out = controller("tenantnet cluster matrix --json")
    times["cluster matrix"] = time.monotonic() - t
    matrix = json.loads(out[out.index("{"):out.rindex("}") + 1])
    rows = matrix["rows"]
    names = set(matrix["names"])
    # web1 and app1 on compute1, a probe per network on net1: same CIDR, two tenants
    assert {"web1", "app1"} <= names and len(names) == 4, names
    for r in rows:
        assert r["unicast"] == r["same_network"], r
        assert r["broadcast"] == r["same_network"], r
        if r["same_network"]:
            assert r["ping"], r
    assert sum(r["same_network"] for r in rows) == 4         # across compute1 <-> net1
    # the kernel datapath on the nodes, as provisioned by node.sh
    out = controller("ssh 198.18.0.21 ovs-vsctl get bridge br-tun datapath_type; "
                     "ssh 198.18.0.21 systemctl is-active tenantnet-node.service")
    assert "system" in out and "active" in out, out
    # TLS on the nodes: OVSDB on pssl: only, ovsdb-server trusting the provider's CA only,
    # every bridge's controller on ssl:, and only the node's own certificates there
    node_script = ("ovs-vsctl get-manager; "
                   "ovs-vsctl --bare --columns=target list Controller; "
                   "tr '\\0' '\\n' < /proc/$(cat /run/openvswitch/ovsdb-server.pid)/cmdline "
                   "| grep -E -- '^--(bootstrap-)?ca-cert=' | tail -n 1; "
                   "find /etc/tenantnet/pki -type f | sort; "
                   "stat -c %a /etc/tenantnet/pki/node/key.pem")
    for ip in ("198.18.0.21", "198.18.0.11"):
        out = controller(f"ssh {ip} {shlex.quote(node_script)}")
        lines = out.split()
        assert lines[0] == f"pssl:6640:{ip}", out
        assert "--ca-cert=/etc/tenantnet/pki/node/ovsdb-ca.pem" in lines, out
        targets = [t for t in lines if re.match(r"(ssl|tcp|unix|punix|pssl|ptcp):", t)][1:]
        assert targets and all(t.startswith("ssl:198.18.0.10:") for t in targets), out
        assert [p for p in lines if p.startswith("/etc/tenantnet/pki/")] == \
            [f"/etc/tenantnet/pki/node/{f}" for f in ("cert.pem", "key.pem",
                                                       "openflow-ca.pem", "ovsdb-ca.pem")], out
        assert lines[-1] == "600", out
    # the controller has the provider's and the tenants' certificates, and no CA key
    out = controller("find /etc/tenantnet/pki -type f | sort; "
                     "ls /tmp/tenantnet-cluster 2>/dev/null | wc -l")
    assert "/etc/tenantnet/pki/provider/key.pem" in out.split(), out
    assert "/etc/tenantnet/pki/tenant/acme/cert.pem" in out.split(), out
    assert not [p for p in out.split() if p.endswith(".key") or "/ca/" in p], out
    assert out.split()[-1] == "0", out
    controller("tenantnet cluster down")
    print(f"driver {driver}: " + ", ".join(f"{k} {v:.0f}s" for k, v in times.items()))
