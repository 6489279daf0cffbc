"""Lab nodes as QEMU VMs with the kernel datapath (`lab: {nodes: vm}` or `lab up --nodes vm`).

Described first, built second:
  * `plan(topo, prefix, fabric_netns)` says what each node VM is (its NICs on the fabric's
    `mgmt` and `transport` Linux bridges, its addresses, memory) as VmNodeSpec records;
  * `build(fabric, specs, image, ...)` boots them side by side, pushes tenantnet's source,
    prepares each one as a real host is prepared: the Vagrant lab's own
    vagrant/provision/node.sh (tenantnet-node.service, which runs `tenantnet node bootstrap
    --datapath system` now and at every boot, the ex- address unit and its udev rule),
    records its QEMU as a lab process (so `lab down` ends it by pid) and the node as a node
    of kind 'vm' of the lab (tenantnet.lab.nodes.vm), reached over SSH from the fabric
    namespace: endpoints ("VMs" of tenants) are namespaces inside the node VM, exactly as
    on the Vagrant lab's machines.

TLS (the default; `security: insecure` turns it off, with a warning from bootstrap): each
node VM gets its own directory of the lab's PKI (tenantnet.lab.certs: `<state_dir>/pki/
node/NAME`, with key.pem, cert.pem, ovsdb-ca.pem and openflow-ca.pem), handed to node.sh
where the Vagrantfile puts a node's (`/tmp/tenantnet-cluster/pki/node/`) and installed by
it at /etc/tenantnet/pki/node (the key 0600). Its bootstrap then serves OVSDB on pssl: to
the provider's certificate only (tenantnet.node.tls). Nothing else of the PKI, and no CA
key, goes into a VM.

Everything lives in the lab's fabric namespace: QEMU, its taps, the bridges, and the
address from which the lab reaches the VMs over SSH. Nothing touches the host's own."""

import concurrent.futures
import dataclasses
import io
import ipaddress
import os
import tarfile

from tenantnet.errors import LabError, TenantnetError
from tenantnet.lab.state import VmDetails
from tenantnet.model import naming

NODE_PYTHON = "/opt/tenantnet-venv/bin/python"
NODE_TENANTNET = "/opt/tenantnet-venv/bin/tenantnet"
TRANSPORT_IF = "eth1"
# where node.sh finds the key to authorize (the Vagrantfile's file provisioners upload it
# there on the Vagrant lab)
CLUSTER_FILES = "/tmp/tenantnet-cluster"
# node.sh installs a node's certificate directory from there (tenantnet.pki's node/NAME)
NODE_PKI_UPLOAD = f"{CLUSTER_FILES}/pki/node"
NODE_PKI_FILES = ("key.pem", "cert.pem", "ovsdb-ca.pem", "openflow-ca.pem")


@dataclasses.dataclass(frozen=True)
class VmNodeSpec:
    """One node VM of the lab, before anything exists."""
    name: str
    role: str
    management: str              # IP/prefix on eth0 (the fabric's `mgmt` bridge)
    transport: str               # IP/prefix: bootstrap moves it from eth1 to br-tun
    memory_mb: int
    ssh_from: str                # the fabric's own address on `mgmt` (IP/prefix)
    security: str = "tls"        # the config's `security:` (tls or insecure)

    @property
    def management_ip(self):
        return str(ipaddress.ip_interface(self.management).ip)


def fabric_ssh_address(topo):
    """An address on the management network for the fabric namespace, from which the lab
    reaches the node VMs: the highest host address no node or controller uses."""
    net = ipaddress.ip_network(topo.lab.management_cidr)
    used = {topo.controller.management_ip} | {n.management_ip for n in topo.nodes()}
    for t in topo.networks().values():
        if t.controller:
            used.add(t.controller.split(":")[1])
    for host in reversed(list(net.hosts())):
        if str(host) not in used:
            return f"{host}/{net.prefixlen}"
    raise LabError(f"the management network {net} has no free address for the lab's "
                   "fabric namespace (it reaches the node VMs over SSH from there)")


def plan(topo, memory_mb=None):
    """The node VMs *topo* asks for, as VmNodeSpec records (nothing is created)."""
    mgmt = ipaddress.ip_network(topo.lab.management_cidr)
    trans = ipaddress.ip_network(topo.lab.transport_cidr)
    ssh_from = fabric_ssh_address(topo)
    return [VmNodeSpec(n.name, n.role, f"{n.management_ip}/{mgmt.prefixlen}",
                       f"{n.transport_ip}/{trans.prefixlen}",
                       int(memory_mb or topo.lab.vm_memory_mb), ssh_from, topo.security)
            for n in topo.nodes()]


def node_identities(fabric, specs):
    """{node: its certificate directory} in the lab's PKI (tenantnet.lab.certs), for the
    nodes of *specs* that use TLS. `lab up` makes them first; what is missing is made here
    (the CAs too), and what exists is kept. A node's certificate names its management
    address."""
    tls = [s for s in specs if s.security == "tls"]
    if not tls:
        return {}
    from tenantnet import pki
    from tenantnet.lab import certs
    root = certs.pki_dir(fabric.state_dir)
    if not os.path.isfile(os.path.join(root, "ca", "node.pem")):
        pki.init(root)
    return {s.name: pki.issue_node(root, s.name, [s.management_ip]).check(
                "ovsdb", "openflow").directory for s in tls}


def _pki_tar(directory):
    """A tar of a node's certificate directory: its four files, the key owner-only."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for name in NODE_PKI_FILES:
            with open(os.path.join(directory, name), "rb") as fh:
                data = fh.read()
            info = tarfile.TarInfo(name)
            info.size, info.mode = len(data), 0o600 if name == "key.pem" else 0o644
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def check_transport_interfaces(topo):
    """Node VMs have their transport NIC as eth1: a config naming another one is refused."""
    bad = sorted(n.name for n in topo.nodes()
                 if (n.transport_interface or TRANSPORT_IF) != TRANSPORT_IF)
    if bad:
        raise LabError(f"node VMs have their transport NIC as {TRANSPORT_IF}; "
                       f"transport_interface differs for {', '.join(bad)}")


def _vm(spec, fabric, image):
    from tenantnet.vm.qemu import Nic, QemuVm, tap_name, vm_mac
    prefix = fabric.prefix
    nics = [Nic(tap_name(prefix, spec.name, 0), "mgmt", vm_mac(prefix, spec.name, 0),
                spec.management),
            Nic(tap_name(prefix, spec.name, 1), "transport", vm_mac(prefix, spec.name, 1),
                spec.transport)]
    return QemuVm(spec.name, fabric.fabric_netns, nics, image, memory_mb=spec.memory_mb,
                  prefix=prefix)


def _provision(vm, spec, ovsdb_port, tls_dir=None):
    """Prepare a booted node VM as the Vagrant lab prepares a node: push the source (with
    vagrant/), hand node.sh the key to authorize where the Vagrantfile puts it (here the
    image's own, which the lab logs in with) and, with TLS, the node's certificate
    directory *tls_dir* (from the lab's PKI), then run node.sh. It installs and starts
    tenantnet-node.service (the bootstrap), the ex- address unit and the udev rule."""
    from tenantnet.vm.source import DEST, push_source
    push_source(vm)
    with open(vm.image.ssh_key + ".pub", "rb") as fh:
        vm.ssh(f"install -D -m 644 /dev/stdin {CLUSTER_FILES}/id_ed25519.pub",
               input=fh.read(), check=True, text=False)
    if spec.security == "tls":
        if not tls_dir:
            raise LabError(f"node VM {spec.name}: TLS, but no certificate directory for it "
                           "in the lab's PKI")
        vm.ssh(f"rm -rf {NODE_PKI_UPLOAD} && install -d -m 700 {NODE_PKI_UPLOAD} && "
               f"tar -xf - -C {NODE_PKI_UPLOAD}", input=_pki_tar(tls_dir), check=True,
               text=False)
    env = [f"TENANTNET_SRC={DEST}", f"TENANTNET_TRANSPORT_IF={TRANSPORT_IF}",
           f"TENANTNET_CLUSTER_FILES={CLUSTER_FILES}", f"TENANTNET_OVSDB_PORT={ovsdb_port}",
           f"TENANTNET_SECURITY={spec.security}"]
    mac_suffix = vm.nics[1].mac[-8:]        # node.sh finds the transport NIC by it
    vm.ssh(["env", *env, "bash", f"{DEST}/vagrant/provision/node.sh", spec.role,
            spec.management_ip, spec.transport, mac_suffix], check=True, timeout=300)


def build(fabric, specs, image, ovsdb_port=6640, timeout=600.0, progress=None):
    """Boot every node VM of *specs* side by side, provision them, and record them in
    *fabric* (processes and nodes of kind 'vm'). Returns {node: seconds to SSH}."""
    from tenantnet.vm.qemu import create_bridge
    say = progress or (lambda text: None)
    tls_dirs = node_identities(fabric, specs)
    create_bridge(fabric.fabric_netns, "mgmt", specs[0].ssh_from if specs else None)
    vms = {s.name: _vm(s, fabric, image) for s in specs}
    for spec in specs:
        vm = vms[spec.name]
        vm.start(progress=say)
        fabric.adopt_process(node_label(spec.name), vm.pid, fabric.fabric_netns,
                             vm.command(vm.accel), vm.serial_log)

    def bring_up(spec):
        vm = vms[spec.name]
        waited = vm.wait_ssh(timeout)
        say(f"node VM {spec.name}: SSH after {waited:.0f}s ({vm.accel.name}); provisioning")
        _provision(vm, spec, ovsdb_port, tls_dirs.get(spec.name))
        return waited

    with concurrent.futures.ThreadPoolExecutor(max_workers=max(1, len(specs))) as pool:
        futures = {s.name: pool.submit(bring_up, s) for s in specs}
        waited, errors = {}, []
        for name, fut in futures.items():
            try:
                waited[name] = fut.result()
            except TenantnetError as exc:
                errors.append(f"{name}: {exc}")
    if errors:
        raise LabError("node VMs: " + "; ".join(errors))
    via = f"netns:{fabric.fabric_netns}"
    for spec in specs:
        vm = vms[spec.name]
        fabric.add_host_node(spec.name, spec.role, spec.management_ip,
                             str(ipaddress.ip_interface(spec.transport).ip),
                             executor=f"ssh:root@{spec.management_ip}",
                             ovsdb_port=ovsdb_port, python=NODE_PYTHON,
                             ssh_identity=image.ssh_key, ssh_via=via,
                             ssh_options={"StrictHostKeyChecking": "no",
                                          "UserKnownHostsFile": "/dev/null",
                                          "LogLevel": "ERROR"},
                             vm=VmDetails(accel=vm.accel.name, vm_dir=vm.dir,
                                          serial_log=vm.serial_log,
                                          memory_mb=spec.memory_mb))
    return waited


def node_label(name):
    """The lab process name of node VM *name*."""
    return naming.fit(f"vm-{name}", naming.LAB_NAME_MAX)
