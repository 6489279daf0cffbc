"""The Vagrant multi-node lab's files, checked without starting any machine (CI cannot):

- `vagrant validate` when Vagrant is installed (Debian ships it, but it pulls in ~400
  packages, so scripts/setup does not install it);
- `ruby -c` on the Vagrantfile, and an evaluation under a stand-in for Vagrant
  (tests/vagrant_stub.rb) that records every machine, network, provider and provisioner;
- shellcheck on vagrant/provision/*.sh and scripts/*;
- `systemd-analyze verify` on the units;
- the controller's generated config loads and describes the N + 1 nodes;
- each defect a first operator would hit (issue 8): cluster-key.sh racing under parallel
  `vagrant up`, the private cluster key reaching nodes, changed host keys of re-created
  nodes, a node count re-read from the environment on every command, tenantnet-node.service
  enabled but never started, and nodes installing the controller's dependencies.
Each tool that is missing skips its own test, naming the package."""

import glob
import ipaddress
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile

import pytest

from conftest import ROOT
from tenantnet.model import config as config_mod

VAGRANT = os.path.join(ROOT, "vagrant")
VAGRANTFILE = os.path.join(VAGRANT, "Vagrantfile")
STUB = os.path.join(ROOT, "tests", "vagrant_stub.rb")
SCRIPTS = sorted(glob.glob(os.path.join(VAGRANT, "provision", "*.sh")) +
                 [p for p in glob.glob(os.path.join(ROOT, "scripts", "*")) if os.path.isfile(p)])
UNITS = ("tenantnet-controller.service", "tenantnet-node.service",
         "tenantnet-ex-address@.service")


def need(tool, package):
    if not shutil.which(tool):
        pytest.skip(f"{tool} is not installed (Debian package {package}; scripts/setup "
                    "installs it)")


def evaluate(n=None, cluster_dir=None, extra_env=None):
    """Run the Vagrantfile under the stub (CompletedProcess). *cluster_dir*: its
    TENANTNET_CLUSTER_DIR (default: a fresh empty directory, so that a developer's own
    vagrant/.cluster does not count)."""
    need("ruby", "ruby")
    env = dict(os.environ)
    env.pop("TENANTNET_COMPUTE_NODES", None)
    if n is not None:
        env["TENANTNET_COMPUTE_NODES"] = str(n)
    with tempfile.TemporaryDirectory(prefix="tnk-vagrant-") as empty:
        env["TENANTNET_CLUSTER_DIR"] = str(cluster_dir or os.path.join(empty, ".cluster"))
        env.update(extra_env or {})
        return subprocess.run(["ruby", STUB, VAGRANTFILE], capture_output=True, text=True,
                              env=env, timeout=60)


def machines(n=None, extra_env=None, cluster_dir=None, raw=False):
    """Evaluate the Vagrantfile under the stub: {machine: {...}} plus the global events
    (*raw*: every event as recorded)."""
    out = evaluate(n, cluster_dir, extra_env)
    assert out.returncode == 0, out.stderr
    events = json.loads(out.stdout)
    if raw:
        return events
    found = {}
    for ev in events:
        scope = ev["scope"]
        if scope.startswith("machine:"):
            m = found.setdefault(scope.split(":", 1)[1], {"networks": [], "provision": [],
                                                         "set": {}, "providers": {}})
            if ev["path"] == "vm.network":
                m["networks"].append(ev)
            elif ev["path"] == "vm.provision":
                m["provision"].append(ev)
            elif ev.get("set"):
                m["set"][ev["path"]] = ev["args"][0]
        elif scope.startswith("provider:"):
            _, provider, owner = scope.split(":", 2)
            if owner == "config":       # a provider block for every machine: global
                continue
            name = owner.split(":", 1)[1]
            p = found[name]["providers"].setdefault(provider, {"set": {}, "calls": []})
            if ev.get("set"):
                p["set"][ev["path"]] = ev["args"][0]
            else:
                p["calls"].append(ev)
    return found, [e for e in events if e["scope"] in ("config", "provider:libvirt:config")]


# -- the Vagrantfile --------------------------------------------------------------------
def test_vagrantfile_syntax():
    need("ruby", "ruby")
    out = subprocess.run(["ruby", "-c", VAGRANTFILE], capture_output=True, text=True,
                         timeout=60)
    assert out.returncode == 0 and "Syntax OK" in out.stdout, out.stderr


def test_vagrant_validate(tmp_path):
    need("vagrant", "vagrant")
    # The file provisioners' sources must exist: make them as the `up` trigger does.
    cluster = tmp_path / ".cluster"
    run_trigger(machines(cluster_dir=cluster, raw=True))
    env = dict(os.environ, VAGRANT_CWD=VAGRANT, VAGRANT_CHECKPOINT_DISABLE="1",
               TENANTNET_CLUSTER_DIR=str(cluster))
    env.pop("TENANTNET_COMPUTE_NODES", None)
    out = subprocess.run(["vagrant", "validate", "--ignore-provider"], capture_output=True,
                         text=True, env=env, timeout=300)
    if out.returncode != 0 and "--ignore-provider" in (out.stderr + out.stdout):
        out = subprocess.run(["vagrant", "validate"], capture_output=True, text=True,
                             env=env, timeout=300)
    assert out.returncode == 0, out.stderr + out.stdout


@pytest.mark.parametrize("n", [None, 1, 5])
def test_machines_networks_and_providers(n):
    found, glob_events = machines(n)
    n_compute = 3 if n is None else n
    assert set(found) == {"controller", "net1"} | {f"compute{i}" for i in
                                                   range(1, n_compute + 1)}
    box = [e for e in glob_events if e["path"] == "vm.box"]
    assert box and box[0]["args"] == ["debian/bookworm64"]
    sync = [e for e in glob_events if e["path"] == "vm.synced_folder"
            and e["args"][1] == "/opt/tenantnet"]
    assert sync and sync[0]["args"][0] == ".." and sync[0]["kwargs"]["type"] == "rsync"
    mgmt_net = ipaddress.ip_network("198.18.0.0/24")
    transport_net = ipaddress.ip_network("198.19.0.0/24")
    seen = set()
    for name, m in found.items():
        assert m["set"]["vm.hostname"] == name
        # management: configured by Vagrant, in 198.18.0.0/24
        (mgmt,) = [e for e in m["networks"] if e["args"] == ["private_network"]
                   and e["kwargs"].get("auto_config") is not False]
        ip = ipaddress.ip_address(mgmt["kwargs"]["ip"])
        assert ip in mgmt_net and ip != mgmt_net[1]     # .1 is the hypervisor's on libvirt
        assert mgmt["kwargs"]["libvirt__forward_mode"] == "none"
        assert mgmt["kwargs"]["virtualbox__intnet"]
        assert ip not in seen
        seen.add(ip)
        for provider in ("virtualbox", "libvirt"):
            p = m["providers"][provider]
            assert p["set"]["memory"] >= 512 and p["set"]["cpus"] >= 1
        # transport: one per provider (override), unconfigured, in 198.19.0.0/24, fixed MAC
        transports = [e for e in m["networks"] if e["kwargs"].get("auto_config") is False]
        assert len(transports) == 2
        for t in transports:
            tip = ipaddress.ip_address(t["kwargs"]["ip"])
            assert tip in transport_net and str(tip).split(".")[-1] == str(ip).split(".")[-1]
            octet = int(str(tip).split(".")[-1])
            assert t["kwargs"]["mac"].replace(":", "").lower().endswith(f"1900{octet:02x}")
        vb = m["providers"]["virtualbox"]["calls"]
        assert any(c["path"] == "customize" and "--nicpromisc3" in c["args"][0] for c in vb)
        # provisioners exist and get what they need: the cluster's files first, then
        # common.sh, then the role's script
        shells = [e for e in m["provision"] if e["kwargs"].get("type") == "shell"]
        names = [e["args"][0] for e in shells]
        assert [e["kwargs"]["type"] for e in m["provision"]] == \
            ["file"] * (len(m["provision"]) - 2) + ["shell", "shell"]
        for ev in shells:
            assert os.path.isfile(os.path.join(VAGRANT, ev["kwargs"]["path"]))
        if name == "controller":
            assert names == ["common", "controller"]
            assert shells[0]["kwargs"]["env"]["TENANTNET_ROLE"] == "controller"
            ctl = shells[1]["kwargs"]
            assert ctl["args"][0] == str(ip)
            specs = ctl["args"][1].split()
            assert len(specs) == n_compute + 1
        else:
            assert names == ["common", "node"]
            role = "network" if name == "net1" else "compute"
            assert shells[0]["kwargs"]["env"]["TENANTNET_ROLE"] == role
            args = shells[1]["kwargs"]["args"]
            assert args[:3] == [role, str(ip), f"198.19.0.{str(ip).split('.')[-1]}/24"]


def _libvirt_settings(extra_env):
    _, glob_events = machines(1, extra_env=extra_env)
    return {e["path"]: e["args"][0] for e in glob_events
            if e["scope"] == "provider:libvirt:config" and e.get("set")}, glob_events


def test_libvirt_driver_and_management_network_are_selectable(tmp_path):
    """The libvirt domain type is kvm where /dev/kvm exists, else qemu (TCG), unless
    TENANTNET_LIBVIRT_DRIVER says; vagrant-libvirt's management network is its own default
    unless TENANTNET_LIBVIRT_MGMT_* say (the Vagrant lab's test puts it in 198.18.0.0/15,
    isolated). TENANTNET_WHEELHOUSE is rsynced to every machine, and common.sh is told."""
    lv, events = _libvirt_settings({})
    assert lv == {"driver": "kvm" if os.path.exists("/dev/kvm") else "qemu"}
    assert not [e for e in events if e["path"] == "vm.synced_folder"
                and e["args"][1] == "/opt/tenantnet-wheels"]
    wheels = tmp_path / "wheels"
    wheels.mkdir()
    lv, events = _libvirt_settings({"TENANTNET_LIBVIRT_DRIVER": "qemu",
                                    "TENANTNET_LIBVIRT_MGMT_NETWORK": "tnk-vagrant",
                                    "TENANTNET_LIBVIRT_MGMT_ADDRESS": "198.18.8.0/24",
                                    "TENANTNET_LIBVIRT_MGMT_MODE": "none",
                                    "TENANTNET_WHEELHOUSE": str(wheels)})
    assert lv == {"driver": "qemu", "management_network_name": "tnk-vagrant",
                  "management_network_address": "198.18.8.0/24",
                  "management_network_mode": "none"}
    (sync,) = [e for e in events if e["path"] == "vm.synced_folder"
               and e["args"][1] == "/opt/tenantnet-wheels"]
    assert sync["args"][0] == str(wheels) and sync["kwargs"]["type"] == "rsync"
    found, _ = machines(1, extra_env={"TENANTNET_WHEELHOUSE": str(wheels)})
    for m in found.values():
        (common,) = [e for e in m["provision"] if e["args"] == ["common"]]
        assert common["kwargs"]["env"]["TENANTNET_WHEELHOUSE"] == "/opt/tenantnet-wheels"
    for var, bad, says in (("TENANTNET_LIBVIRT_DRIVER", "xen", "expected one of kvm, qemu"),
                           ("TENANTNET_LIBVIRT_MGMT_MODE", "bridge", "expected one of nat"),
                           ("TENANTNET_WHEELHOUSE", str(tmp_path / "none"), "no such directory")):
        out = evaluate(1, extra_env={var: bad})
        assert out.returncode != 0 and says in out.stderr, out.stderr


def test_bad_node_count_is_refused():
    need("ruby", "ruby")
    for bad in ("0", "many", "51"):
        out = subprocess.run(["ruby", STUB, VAGRANTFILE], capture_output=True, text=True,
                             env=dict(os.environ, TENANTNET_COMPUTE_NODES=bad), timeout=60)
        assert out.returncode != 0
        assert f'TENANTNET_COMPUTE_NODES="{bad}": expected an integer in 1..50' in out.stderr


# -- shell scripts and units ---------------------------------------------------------------
def test_shellcheck():
    need("shellcheck", "shellcheck")
    assert len(SCRIPTS) >= 7, SCRIPTS
    out = subprocess.run(["shellcheck", "--shell=bash", *SCRIPTS], capture_output=True,
                         text=True, timeout=120)
    assert out.returncode == 0, out.stdout + out.stderr


def test_scripts_are_strict_bash():
    for path in SCRIPTS:
        with open(path) as fh:
            text = fh.read()
        assert text.startswith("#!/usr/bin/env bash"), path
        assert "set -euo pipefail" in text, path
        assert os.access(path, os.X_OK), f"{path} is not executable"
        out = subprocess.run(["bash", "-n", path], capture_output=True, text=True)
        assert out.returncode == 0, out.stderr


def test_systemd_units_verify(tmp_path):
    need("systemd-analyze", "systemd")
    # The venv does not exist here: point the units at a stand-in executable.
    fake = tmp_path / "tenantnet"
    fake.write_text("#!/bin/sh\nexit 0\n")
    fake.chmod(0o755)
    paths = []
    for unit in UNITS:
        with open(os.path.join(VAGRANT, unit)) as fh:
            text = fh.read().replace("/opt/tenantnet-venv/bin/tenantnet", str(fake)) \
                .replace("/opt/tenantnet-venv/bin/ryu-manager", str(fake))
        name = unit.replace("@.service", "@ex-acme.web.service")   # a template needs an instance
        (tmp_path / name).write_text(text)
        paths.append(str(tmp_path / name))
    out = subprocess.run(["systemd-analyze", "verify", *paths], capture_output=True, text=True,
                         timeout=120)
    problems = [line for line in (out.stdout + out.stderr).splitlines()
                if any(u.split("@")[0] in line for u in UNITS)]
    assert out.returncode == 0 and not problems, out.stdout + out.stderr


def test_units_name_what_provisioning_writes():
    with open(os.path.join(VAGRANT, "tenantnet-controller.service")) as fh:
        ctl = fh.read()
    assert "ryu-manager tenantnet.app" in ctl
    assert "--config-file /etc/tenantnet/tenantnet.conf" in ctl
    assert "Restart=on-failure" in ctl
    assert "${TENANTNET_" not in ctl            # everything is in the conf file
    with open(os.path.join(VAGRANT, "provision", "controller.sh")) as fh:
        sh = fh.read()
    assert 'install -m 644 "$conf_new" "$CONF/tenantnet.conf"' in sh
    with open(os.path.join(VAGRANT, "tenantnet-node.service")) as fh:
        node = fh.read()
    with open(os.path.join(VAGRANT, "provision", "node.sh")) as fh:
        sh = fh.read()
    assert "--datapath system" in node          # node.sh runs bootstrap through the unit
    for var in re.findall(r"\$\{(TENANTNET_\w+)\}", node):
        assert f"{var}=" in sh, var
    with open(os.path.join(VAGRANT, "90-tenantnet-ex.rules")) as fh:
        rule = fh.read()
    assert 'KERNEL=="ex-*"' in rule and "tenantnet-ex-address@%k.service" in rule


def test_provisioned_controller_conf_is_what_ryu_manager_reads(tmp_path):
    """The conf file controller.sh writes, with its variables filled in, gives the
    controller exactly the settings the unit needs (parsed by tenantnet's own code)."""
    with open(os.path.join(VAGRANT, "provision", "controller.sh")) as fh:
        sh = fh.read()
    body = re.search(r'cat > "\$conf_new" <<CONF\n(.*?)\nCONF\n', sh, re.S).group(1)
    values = {"MGMT_IP": "192.0.2.10", "API_PORT": "8080", "CONF": "/etc/tenantnet",
              "PKI": "/etc/tenantnet/pki", "SECURITY": "tls",
              "OFP_PORT_OPTION": "ofp_ssl_listen_port"}
    text = re.sub(r"\$(\w+)", lambda m: values[m.group(1)], body)
    conf = tmp_path / "tenantnet.conf"
    conf.write_text(text)
    code = ("import json; from os_ken import cfg; "
            "from tenantnet.controller import ryumanager, settings; "
            f"ryumanager.parse(['tenantnet.app', '--config-file', {str(conf)!r}]); "
            "s = settings.Settings.from_conf(cfg.CONF); "
            "print(json.dumps([s.config, s.api_listen, s.api_socket, cfg.CONF.ofp_listen_host, "
            "cfg.CONF.ofp_ssl_listen_port, s.pki_dir]))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=60)
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout) == ["/etc/tenantnet/config.yaml", "192.0.2.10:8080",
                                      "/run/tenantnet-controller/api.sock", "192.0.2.10", 6653,
                                      "/etc/tenantnet/pki"]


# -- the controller's config -------------------------------------------------------------
@pytest.mark.parametrize("n", [1, 3, 8])
def test_generated_config_describes_the_nodes(n, tmp_path):
    token = tmp_path / "provider.token"
    token.write_text("0123456789abcdef\n")
    specs = ["net1:network:198.18.0.11:198.19.0.11"] + \
        [f"compute{i}:compute:198.18.0.{20 + i}:198.19.0.{20 + i}" for i in range(1, n + 1)]
    out = subprocess.run([sys.executable, os.path.join(VAGRANT, "provision", "make-config.py"),
                          "--controller-ip", "198.18.0.10", "--token-file", str(token),
                          *specs], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    path = tmp_path / "config.yaml"
    path.write_text(out.stdout)
    topo = config_mod.load_file(str(path))
    assert len(topo.compute_nodes()) == n and len(topo.network_nodes()) == 1
    assert topo.controller.management_ip == "198.18.0.10"
    assert topo.controller.api_token == "0123456789abcdef"
    assert {node.transport_interface for node in topo.nodes()} == {"transport0"}
    assert not topo.vms()
    assert topo.security == "tls"
    insecure = subprocess.run([sys.executable, os.path.join(VAGRANT, "provision",
                                                            "make-config.py"),
                               "--controller-ip", "198.18.0.10", "--security", "insecure",
                               *specs], capture_output=True, text=True, timeout=60)
    path.write_text(insecure.stdout)
    assert config_mod.load_file(str(path)).security == "insecure"
    tenants = subprocess.run([sys.executable, os.path.join(VAGRANT, "provision",
                                                           "make-config.py"), "--tenants"],
                             capture_output=True, text=True, timeout=60)
    assert tenants.stdout.split() == sorted({key.split("/")[0] for key in topo.networks()})
    bad = subprocess.run([sys.executable, os.path.join(VAGRANT, "provision", "make-config.py"),
                          "--controller-ip", "198.18.0.10", "compute1:storage:1.2.3.4:5.6.7.8"],
                         capture_output=True, text=True, timeout=60)
    assert bad.returncode == 2 and "expected NAME:compute|network" in bad.stderr


def test_vagrant_files_agree_on_addresses():
    """The Vagrantfile's addressing is what controller.sh passes on to make-config.py."""
    found, _ = machines(2)
    ctl = [e for e in found["controller"]["provision"] if e["args"] == ["controller"]][0]["kwargs"]
    specs = [s.split(":") for s in ctl["args"][1].split()]
    by_name = {s[0]: s for s in specs}
    for name, m in found.items():
        if name == "controller":
            continue
        (mgmt,) = [e for e in m["networks"] if e["args"] == ["private_network"]
                   and e["kwargs"].get("auto_config") is not False]
        assert by_name[name][2] == mgmt["kwargs"]["ip"]
        assert by_name[name][1] == ("network" if name == "net1" else "compute")
    assert ctl["env"]["TENANTNET_TRANSPORT_IF"] == "transport0"
    node_env = [e for e in found["compute1"]["provision"] if e["args"] == ["node"]][0]["kwargs"]["env"]
    assert node_env["TENANTNET_TRANSPORT_IF"] == "transport0"
    assert ctl["env"]["TENANTNET_SECURITY"] == node_env["TENANTNET_SECURITY"] == "tls"
    # the PKI trigger issues the provider's certificate for the controller's address and
    # each node's for its own
    _, pki_args = trigger_args(machines(2, raw=True), "cluster-pki.sh")
    assert pki_args[1] == ctl["args"][0]
    assert sorted(pki_args[2:]) == sorted(f"{s[0]}={s[2]}" for s in specs)


# -- the defects of issue 8 ------------------------------------------------------------------
CLUSTER_KEY = os.path.join(VAGRANT, "provision", "cluster-key.sh")


def triggers(events):
    """The Vagrantfile's triggers before up/provision/reload, in order: [(path, args)]."""
    return [(e["args"][0]["path"], e["args"][0]["args"]) for e in events
            if e["scope"] == "config:trigger.before" and e["path"] == "run"]


def trigger_args(events, script="cluster-key.sh"):
    """The trigger that runs *script* as the Vagrantfile defines it: (path, args)."""
    (found,) = [t for t in triggers(events) if os.path.basename(t[0]) == script]
    return found


def run_trigger(events, check=True):
    """Run every trigger, as `vagrant up` does (cluster-pki.sh with this Python, which has
    `cryptography`)."""
    out = None
    for path, args in triggers(events):
        out = subprocess.run([path, *args], capture_output=True, text=True, timeout=120,
                             stdin=subprocess.DEVNULL,
                             env=dict(os.environ, TENANTNET_HOST_PYTHON=sys.executable))
        if check:
            assert out.returncode == 0, out.stderr
        elif out.returncode != 0:
            break
    return out


def pair(path):
    """(public key of the private key at *path*, the one in *path*.pub): equal for a pair."""
    derived = subprocess.run(["ssh-keygen", "-y", "-f", path], capture_output=True, text=True,
                             timeout=30)
    assert derived.returncode == 0, derived.stderr
    with open(path + ".pub") as fh:
        return derived.stdout.split()[:2], fh.read().split()[:2]


def test_cluster_key_is_made_once_when_machines_come_up_in_parallel(tmp_path):
    """vagrant-libvirt runs the trigger of every machine at once: one key pair results,
    made by one run; every run succeeds; nothing is left half written."""
    need("ssh-keygen", "openssh-client")
    cluster = tmp_path / ".cluster"
    nodes = ["net1=198.18.0.11"] + [f"compute{i}=198.18.0.{20 + i}" for i in (1, 2, 3)]
    procs = [subprocess.Popen([CLUSTER_KEY, str(cluster), "3", *nodes], stdin=subprocess.DEVNULL,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for _ in range(12)]
    outs = [(p.wait(timeout=120), *p.communicate()) for p in procs]
    assert [rc for rc, _, _ in outs] == [0] * len(procs), [err for _, _, err in outs]
    made = [line for _, _, err in outs for line in err.splitlines()
            if line.endswith("made " + str(cluster / "id_ed25519"))]
    assert len(made) == 1, "\n".join(err for _, _, err in outs)
    derived, pub = pair(str(cluster / "id_ed25519"))
    assert derived == pub and pub[0] == "ssh-ed25519"
    assert oct((cluster / "id_ed25519").stat().st_mode & 0o777) == "0o600"
    for node in ("net1", "compute1", "compute2", "compute3"):
        derived, pub = pair(str(cluster / "hostkeys" / node))
        assert derived == pub
    assert sorted(p.name for p in cluster.iterdir()) == \
        ["compute-nodes", "hostkeys", "id_ed25519", "id_ed25519.pub", "known_hosts"]
    # a second run changes nothing
    before = {p: p.read_bytes() for p in cluster.rglob("*") if p.is_file()}
    subprocess.run([CLUSTER_KEY, str(cluster), "3", *nodes], check=True, capture_output=True,
                   timeout=60)
    assert {p: p.read_bytes() for p in cluster.rglob("*") if p.is_file()} == before
    # half a pair (a run killed between its renames) is made whole again
    (cluster / "id_ed25519.pub").unlink()
    subprocess.run([CLUSTER_KEY, str(cluster), "3", *nodes], check=True, capture_output=True,
                   timeout=60)
    derived, pub = pair(str(cluster / "id_ed25519"))
    assert derived == pub


def test_the_private_cluster_key_reaches_the_controller_only(tmp_path):
    """The tree is rsynced without vagrant/.cluster; file provisioners give the controller
    the key pair and give a node the public key and its own host key, nothing more."""
    cluster = tmp_path / ".cluster"
    found, glob_events = machines(3, cluster_dir=cluster)
    # the default cluster directory is inside the rsynced tree, and excluded from it
    default = machines(None, raw=True, extra_env={"TENANTNET_CLUSTER_DIR": ""})
    assert trigger_args(default)[1][0] == os.path.join(VAGRANT, ".cluster")
    syncs = [e for e in glob_events if e["path"] == "vm.synced_folder"]
    for e in syncs:
        if e["kwargs"].get("disabled"):
            continue
        assert e["args"][0] == ".." and e["kwargs"]["type"] == "rsync"
        assert "vagrant/.cluster/" in e["kwargs"]["rsync__exclude"]
    for name, m in found.items():
        assert not [e for e in m["set"] if "synced_folder" in e]
        uploads = {os.path.relpath(e["kwargs"]["source"], cluster): e["kwargs"]["destination"]
                   for e in m["provision"] if e["kwargs"].get("type") == "file"}
        assert all(os.path.isabs(d) for d in uploads.values())
        # TLS (the default): the controller gets the provider's and the tenants'
        # certificate directories, a node its own; never a CA (pki/ca holds their keys)
        if name == "controller":
            assert set(uploads) == {"id_ed25519", "id_ed25519.pub", "known_hosts",
                                    "pki/provider", "pki/tenant"}
        else:
            assert set(uploads) == {"id_ed25519.pub", f"hostkeys/{name}", f"hostkeys/{name}.pub",
                                    f"pki/node/{name}"}
            assert "id_ed25519" not in uploads
        assert not [u for u in uploads if u == "pki" or u.startswith("pki/ca")]
        # the scripts read them where they are put
        shell = [e for e in m["provision"] if e["kwargs"].get("type") == "shell"][-1]
        files = shell["kwargs"]["env"]["TENANTNET_CLUSTER_FILES"]
        assert {d.split("/pki/")[0] if "/pki/" in d else os.path.dirname(d)
                for d in uploads.values()} == {files}
        for src, dest in uploads.items():
            if src.startswith("pki/"):
                assert dest == f"{files}/{src}".replace(f"/node/{name}", "/node"), (src, dest)
    with open(os.path.join(VAGRANT, "provision", "node.sh")) as fh:
        node_sh = fh.read()
    assert "vagrant/.cluster" not in node_sh and '$FILES/id_ed25519.pub' in node_sh
    with open(os.path.join(VAGRANT, "provision", "controller.sh")) as fh:
        ctl_sh = fh.read()
    assert "vagrant/.cluster" not in ctl_sh and 'key="$FILES/id_ed25519"' in ctl_sh


def test_re_created_nodes_keep_the_host_key_the_controller_knows(tmp_path):
    """Each node's host key is made once on the Vagrant host and installed by node.sh; the
    controller's known_hosts lists them (strict checking). A node that is destroyed and
    made again gets the same key, so the controller's SSH keeps working."""
    need("ssh-keygen", "openssh-client")
    cluster = tmp_path / ".cluster"
    events = machines(2, cluster_dir=cluster, raw=True)
    run_trigger(events)
    known = cluster / "known_hosts"
    found, _ = machines(2, cluster_dir=cluster)
    for name, m in found.items():
        if name == "controller":
            continue
        (mgmt,) = [e for e in m["networks"] if e["args"] == ["private_network"]
                   and e["kwargs"].get("auto_config") is not False]
        ip = mgmt["kwargs"]["ip"]
        with open(cluster / "hostkeys" / f"{name}.pub") as fh:
            host_pub = fh.read().split()[:2]
        for who in (ip, name):
            hit = subprocess.run(["ssh-keygen", "-F", who, "-f", str(known)],
                                 capture_output=True, text=True, timeout=30)
            assert hit.returncode == 0, f"{who} is not in known_hosts"
            assert host_pub == [l for l in hit.stdout.splitlines()
                                if not l.startswith("#")][0].split()[1:3]
    # `vagrant destroy compute1 && vagrant up compute1`: the trigger runs again, the host
    # key (and so the controller's known_hosts) stays
    before = (known.read_bytes(), (cluster / "hostkeys" / "compute1").read_bytes())
    run_trigger(machines(2, cluster_dir=cluster, raw=True))
    assert (known.read_bytes(), (cluster / "hostkeys" / "compute1").read_bytes()) == before
    with open(os.path.join(VAGRANT, "provision", "node.sh")) as fh:
        node_sh = fh.read()
    assert 'install -m 600 -o root -g root "$hostkey" /etc/ssh/ssh_host_ed25519_key' in node_sh
    with open(os.path.join(VAGRANT, "provision", "controller.sh")) as fh:
        ctl_sh = fh.read()
    ssh_conf = re.search(r"<<SSH\n(.*?)\nSSH\n", ctl_sh, re.S).group(1)
    assert "StrictHostKeyChecking yes" in ssh_conf and "accept-new" not in ssh_conf
    assert "UserKnownHostsFile /root/.ssh/known_hosts_tenantnet" in ssh_conf
    assert 'install -m 644 "$FILES/known_hosts" /root/.ssh/known_hosts_tenantnet' in ctl_sh


def test_the_node_count_of_the_first_up_is_kept(tmp_path):
    """`TENANTNET_COMPUTE_NODES=2 vagrant up`, then a plain `vagrant provision`: still 2
    compute nodes; asking for another count is refused with a message saying what to do."""
    need("ssh-keygen", "openssh-client")
    cluster = tmp_path / ".cluster"
    run_trigger(machines(2, cluster_dir=cluster, raw=True))            # vagrant up
    assert (cluster / "compute-nodes").read_text().strip() == "2"
    found, _ = machines(None, cluster_dir=cluster)                      # vagrant provision
    assert sorted(found) == ["compute1", "compute2", "controller", "net1"]
    ctl = [e for e in found["controller"]["provision"] if e["args"] == ["controller"]][0]
    assert len(ctl["kwargs"]["args"][1].split()) == 3
    assert sorted(machines(2, cluster_dir=cluster)[0]) == sorted(found)   # the same count: fine
    refused = evaluate(5, cluster)
    assert refused.returncode != 0
    assert "TENANTNET_COMPUTE_NODES=5, but this lab was brought up with 2 compute nodes" \
        in refused.stderr
    assert "vagrant destroy -f" in refused.stderr
    # the trigger refuses too (a Vagrantfile evaluated before the record was written)
    events = machines(3, raw=True, cluster_dir=tmp_path / "other")
    path, args = trigger_args(events)
    out = subprocess.run([path, str(cluster), *args[1:]], capture_output=True, text=True,
                         timeout=60)
    assert out.returncode != 0 and "brought up with 2 compute nodes" in out.stderr
    (cluster / "compute-nodes").write_text("many\n")
    assert "is not a node count" in evaluate(None, cluster).stderr


def test_node_provisioning_starts_tenantnet_node_service():
    """node.sh enables tenantnet-node.service and starts it (a oneshot: restart runs the
    bootstrap again), and fails when it does not end active."""
    with open(os.path.join(VAGRANT, "provision", "node.sh")) as fh:
        sh = fh.read()
    calls = re.findall(r"^\s*(?:if !\s+)?systemctl\s+([\w-]+)((?:\s+--?[\w-]+)*)\s+"
                       r"tenantnet-node\.service", sh, re.M)
    verbs = [verb + flags for verb, flags in calls]
    assert "enable" in verbs
    started = [i for i, v in enumerate(verbs) if v in ("start", "restart", "enable --now")]
    assert started and started[-1] >= verbs.index("enable"), verbs
    assert "is-active --quiet" in verbs
    # the unit itself is what bootstrap runs as: node.sh does not call it a second time
    assert not re.search(r"^\s*\"?\$VENV/bin/tenantnet\"? node bootstrap", sh, re.M)


def _pins(path):
    with open(path) as fh:
        return {line.split("==")[0].lower(): line.strip() for line in fh
                if line.strip() and not line.startswith("#")}


def test_nodes_install_only_what_bootstrap_needs(tmp_path):
    """A node installs requirements-node.txt, and tenantnet itself without dependencies (the
    rsynced tree through a .pth file and console wrappers): not matplotlib, numpy or os-ken.
    The pins are requirements.txt's, and they are enough for what runs on a node (checked
    with only those packages importable)."""
    node_req = os.path.join(VAGRANT, "provision", "requirements-node.txt")
    node, full = _pins(node_req), _pins(os.path.join(ROOT, "requirements.txt"))
    assert node and all(full.get(k) == v for k, v in node.items()), (node, full)
    assert not {"matplotlib", "numpy", "os-ken", "ovsdbapp", "pillow"} & set(node)
    with open(os.path.join(VAGRANT, "provision", "common.sh")) as fh:
        sh = fh.read()
    (case,) = re.findall(r'compute\|network\) REQUIREMENTS="\$SRC/vagrant/provision/'
                         r'requirements-node.txt"; COMMANDS=\(tenantnet\)', sh)
    assert '-r "$REQUIREMENTS"' in sh and 'echo "$SRC" > "$site/tenantnet-src.pth"' in sh
    assert not re.search(r'^[^#]*"\$\{pip\[@\]\}".* -e ', sh, re.M)
    assert "requirements.txt\"" not in sh.replace('REQUIREMENTS="$SRC/requirements.txt"', "")
    # enough: tenantnet's node commands and the helpers run on nodes, with only the node's
    # packages (taken from this virtualenv) and the standard library
    import importlib.metadata as md
    site = tmp_path / "site"
    site.mkdir()
    for dist in node:
        files = md.distribution(dist).files or []
        for top in {f.parts[0] for f in files if not f.parts[0].endswith(".dist-info")
                    and not f.parts[0].startswith("..") and f.parts[0] != "__pycache__"}:
            src = md.distribution(dist).locate_file(top)
            if os.path.exists(src) and not (site / top).exists():
                os.symlink(src, site / top)
    code = ("import sys; from tenantnet.cli.main import main\n"
            "import tenantnet.lab.l2probe, tenantnet.experiment.prober, tenantnet.node.bootstrap\n"
            "for argv in (['node', 'bootstrap', '--help'], ['node', 'addresses', '--db', "
            "'unix:/nonexistent/db.sock']):\n"
            "    sys.argv = ['tenantnet', *argv]\n"
            "    try:\n        main()\n    except SystemExit:\n        pass\n")
    env = dict(os.environ, PYTHONPATH=f"{ROOT}:{site}")
    out = subprocess.run([sys.executable, "-S", "-c", code], capture_output=True, text=True,
                         env=env, timeout=60)
    assert "ModuleNotFoundError" not in out.stderr and "Traceback" not in out.stderr, out.stderr
    assert "--transport-interface" in out.stdout
    assert "unix:/nonexistent/db.sock" in out.stderr      # it got as far as ovs-vsctl


# -- TLS: the lab's PKI ------------------------------------------------------------------------
CLUSTER_PKI = os.path.join(VAGRANT, "provision", "cluster-pki.sh")


def test_cluster_pki_is_made_once_on_the_host(tmp_path):
    """cluster-pki.sh, run in parallel as vagrant-libvirt runs triggers: one set of CAs;
    the provider's certificate names the controller's address, each node's its own; a
    tenant identity per tenant of make-config.py; a re-run changes nothing."""
    pytest.importorskip("cryptography")
    from cryptography import x509
    from tenantnet import pki
    cluster = tmp_path / ".cluster"
    nodes = ["net1=198.18.0.11", "compute1=198.18.0.21", "compute2=198.18.0.22"]
    env = dict(os.environ, TENANTNET_HOST_PYTHON=sys.executable)
    procs = [subprocess.Popen([CLUSTER_PKI, str(cluster), "198.18.0.10", *nodes],
                              stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True, env=env) for _ in range(6)]
    outs = [(p.wait(timeout=120), *p.communicate()) for p in procs]
    assert [rc for rc, _, _ in outs] == [0] * len(procs), [err for _, _, err in outs]
    assert sum("wrote" in err for _, _, err in outs) == 1
    root = cluster / "pki"
    rows = {(r["role"], r["name"]) for r in pki.describe(str(root))}
    assert rows == {("provider", "provider"), ("node", "net1"), ("node", "compute1"),
                    ("node", "compute2"), ("tenant", "acme"), ("tenant", "globex")}

    def sans(path):
        cert = pki.load_cert(str(path))
        ext = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        return {str(v) for v in ext.get_values_for_type(x509.IPAddress)}
    assert "198.18.0.10" in sans(root / "provider" / "cert.pem")
    assert "198.18.0.21" in sans(root / "node" / "compute1" / "cert.pem")
    for key in root.rglob("*.key"):
        assert key.parent == root / "ca" and oct(key.stat().st_mode & 0o777) == "0o600"
    for key in root.rglob("key.pem"):
        assert oct(key.stat().st_mode & 0o777) == "0o600"
    before = {p: p.read_bytes() for p in root.rglob("*") if p.is_file()}
    again = subprocess.run([CLUSTER_PKI, str(cluster), "198.18.0.10", *nodes],
                           capture_output=True, text=True, timeout=120, env=env)
    assert again.returncode == 0 and "wrote" not in again.stderr, again.stderr
    assert {p: p.read_bytes() for p in root.rglob("*") if p.is_file()} == before
    bad = subprocess.run([CLUSTER_PKI, str(cluster), "198.18.0.10"], capture_output=True,
                         text=True, timeout=60,
                         env=dict(os.environ, TENANTNET_HOST_PYTHON="/bin/false"))
    assert bad.returncode != 0 and "TENANTNET_SECURITY=insecure" in bad.stderr


def test_security_insecure_uploads_no_certificates(tmp_path):
    """TENANTNET_SECURITY=insecure: no PKI trigger, no certificate upload, and both scripts
    are told; any other value is refused."""
    found, _ = machines(2, extra_env={"TENANTNET_SECURITY": "insecure"})
    events = machines(2, raw=True, extra_env={"TENANTNET_SECURITY": "insecure"})
    assert [os.path.basename(p) for p, _ in triggers(events)] == ["cluster-key.sh"]
    assert [os.path.basename(p) for p, _ in triggers(machines(2, raw=True))] == \
        ["cluster-key.sh", "cluster-pki.sh"]
    for name, m in found.items():
        assert not [e for e in m["provision"] if e["kwargs"].get("type") == "file"
                    and "/pki" in e["kwargs"]["source"]]
        shell = [e for e in m["provision"] if e["kwargs"].get("type") == "shell"][-1]
        assert shell["kwargs"]["env"]["TENANTNET_SECURITY"] == "insecure"
    out = evaluate(1, extra_env={"TENANTNET_SECURITY": "plain"})
    assert out.returncode != 0 and "expected one of tls, insecure" in out.stderr


def test_provisioning_installs_certificates_owner_only():
    """node.sh installs the node's directory (key 0600) and tells the unit; controller.sh
    the provider's and the tenants'; neither accepts a CA key, both remove the uploads."""
    with open(os.path.join(VAGRANT, "provision", "node.sh")) as fh:
        node_sh = fh.read()
    assert 'install -m 600 -o root -g root "$upload/key.pem" "$TLS_DIR/key.pem"' in node_sh
    assert "TENANTNET_SECURITY=$SECURITY" in node_sh and "TENANTNET_TLS_DIR=$TLS_DIR" in node_sh
    assert "holds a CA key" in node_sh and 'rm -rf "$upload"' in node_sh
    with open(os.path.join(VAGRANT, "tenantnet-node.service")) as fh:
        unit = fh.read()
    assert "--security ${TENANTNET_SECURITY} --tls-dir ${TENANTNET_TLS_DIR}" in unit
    with open(os.path.join(VAGRANT, "provision", "controller.sh")) as fh:
        ctl_sh = fh.read()
    assert '[ "$f" = key.pem ] && mode=600' in ctl_sh and "holds CA keys" in ctl_sh
    assert "pki_dir = $PKI" in ctl_sh and "OFP_PORT_OPTION=ofp_ssl_listen_port" in ctl_sh
