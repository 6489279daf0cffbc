"""The Vagrant multi-node lab's files, checked without starting any machine (CI cannot):

- `vagrant validate` when Vagrant is installed (Debian ships it, but it pulls in ~400
  packages, so scripts/setup does not install it);
- `ruby -c` on the Vagrantfile, and an evaluation under a stand-in for Vagrant
  (tests/vagrant_stub.rb) that records every machine, network, provider and provisioner;
- shellcheck on vagrant/provision/*.sh and scripts/*;
- `systemd-analyze verify` on the units;
- the controller's generated config loads and describes the N + 1 nodes.
Each tool that is missing skips its own test, naming the package."""

import glob
import ipaddress
import json
import os
import re
import shutil
import subprocess
import sys

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


def machines(n=None, extra_env=None):
    """Evaluate the Vagrantfile under the stub: {machine: {...}} plus the global events."""
    need("ruby", "ruby")
    env = dict(os.environ)
    env.pop("TENANTNET_COMPUTE_NODES", None)
    if n is not None:
        env["TENANTNET_COMPUTE_NODES"] = str(n)
    env.update(extra_env or {})
    out = subprocess.run(["ruby", STUB, VAGRANTFILE], capture_output=True, text=True,
                         env=env, timeout=60)
    assert out.returncode == 0, out.stderr
    events = json.loads(out.stdout)
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
            name = owner.split(":", 1)[1]
            p = found[name]["providers"].setdefault(provider, {"set": {}, "calls": []})
            if ev.get("set"):
                p["set"][ev["path"]] = ev["args"][0]
            else:
                p["calls"].append(ev)
    return found, [e for e in events if e["scope"] == "config"]


# -- the Vagrantfile --------------------------------------------------------------------
def test_vagrantfile_syntax():
    need("ruby", "ruby")
    out = subprocess.run(["ruby", "-c", VAGRANTFILE], capture_output=True, text=True,
                         timeout=60)
    assert out.returncode == 0 and "Syntax OK" in out.stdout, out.stderr


def test_vagrant_validate():
    need("vagrant", "vagrant")
    env = dict(os.environ, VAGRANT_CWD=VAGRANT, VAGRANT_CHECKPOINT_DISABLE="1")
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
        # provisioners exist and get what they need
        names = [e["args"][0] for e in m["provision"]]
        assert names[0] == "common"
        for ev in m["provision"]:
            assert os.path.isfile(os.path.join(VAGRANT, ev["kwargs"]["path"]))
        if name == "controller":
            assert names == ["common", "controller"]
            ctl = m["provision"][1]["kwargs"]
            assert ctl["args"][0] == str(ip)
            specs = ctl["args"][1].split()
            assert len(specs) == n_compute + 1
        else:
            assert names == ["common", "node"]
            role = "network" if name == "net1" else "compute"
            args = m["provision"][1]["kwargs"]["args"]
            assert args[:3] == [role, str(ip), f"198.19.0.{str(ip).split('.')[-1]}/24"]


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
    assert "--datapath system" in node and "--datapath system" in sh
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
    values = {"MGMT_IP": "192.0.2.10", "API_PORT": "8080", "CONF": "/etc/tenantnet"}
    text = re.sub(r"\$(\w+)", lambda m: values[m.group(1)], body)
    conf = tmp_path / "tenantnet.conf"
    conf.write_text(text)
    code = ("import json; from os_ken import cfg; "
            "from tenantnet.controller import ryumanager, settings; "
            f"ryumanager.parse(['tenantnet.app', '--config-file', {str(conf)!r}]); "
            "s = settings.Settings.from_conf(cfg.CONF); "
            "print(json.dumps([s.config, s.api_listen, s.api_socket, cfg.CONF.ofp_listen_host, "
            "cfg.CONF.ofp_tcp_listen_port]))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=60)
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout) == ["/etc/tenantnet/config.yaml", "192.0.2.10:8080",
                                      "/run/tenantnet-controller/api.sock", "192.0.2.10", 6653]


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
    bad = subprocess.run([sys.executable, os.path.join(VAGRANT, "provision", "make-config.py"),
                          "--controller-ip", "198.18.0.10", "compute1:storage:1.2.3.4:5.6.7.8"],
                         capture_output=True, text=True, timeout=60)
    assert bad.returncode == 2 and "expected NAME:compute|network" in bad.stderr


def test_vagrant_files_agree_on_addresses():
    """The Vagrantfile's addressing is what controller.sh passes on to make-config.py."""
    found, _ = machines(2)
    ctl = found["controller"]["provision"][1]["kwargs"]
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
    node_env = found["compute1"]["provision"][1]["kwargs"]["env"]
    assert node_env["TENANTNET_TRANSPORT_IF"] == "transport0"
