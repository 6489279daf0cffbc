"""Node bootstrap: prepare a host (or an emulated lab node) as a compute or network node.

One code path for every kind of node. `tenantnet node bootstrap` runs it on a real host
(plain `ovs-vsctl`, kernel datapath), the one-machine lab runs it for each emulated node
(its private OvsInstance, userspace datapath), the Vagrant lab's provisioning runs the CLI.

    steps = bootstrap_node(vsctl, "compute", "eth1", "198.19.0.11/24", "198.18.0.11",
                           host=ExecHost(LocalExecutor()), ofctl=ofctl)

Its helpers have owners of their own: the host-side steps go through an ExecHost
(tenantnet.node.hostops), vsctl/ofctl for a real host come from tenantnet.node.ovscli, and
the ex- endpoint addresses recorded in OVSDB are read by tenantnet.node.exaddresses.

What it does (idempotent: a second run reports every step as unchanged):
  - checks the prerequisites, each with a clear error: Open vSwitch reachable, the
    transport interface present and free, the kernel module for datapath=system;
  - Open_vSwitch external_ids: system-id, hostname and tenantnet-* facts about the node;
  - ARP sysctls (arp_ignore=1, arp_announce=2): the transport interface, br-tun's LOCAL
    port and every ex- endpoint share one segment, see docs/architecture.md;
  - br-int, br-tun and (network nodes) br-ex with the datapath type, marked
    tenantnet-owner=bootstrap / tenantnet-kind=common-*; br-tun gets the transport
    interface as a port, fail_mode=standalone and a priority-0 NORMAL flow until the
    controller takes it over (its own priority-0 flow replaces that one);
  - the transport IP on br-tun's LOCAL port (moved off the transport interface, which is
    now only an OVS port);
  - TLS (tenantnet.node.tls): the SSL table, ovsdb-server trusting only the provider's CA,
    then OVSDB opened to the controller: `set-manager pssl:PORT:MANAGEMENT_IP` (ptcp: with
    security insecure; ovsdb-server serves `db:Open_vSwitch,Open_vSwitch,manager_options`:
    the distribution's ovs-ctl does, and so does tenantnet.lab.ovs.OvsInstance);
  - addresses of ex- endpoints that already exist (after a reboot), from their ports'
    external_ids:tenantnet-address (tenantnet.node.exaddresses).
"""

import ipaddress
import os
import re
import socket
from dataclasses import dataclass

from tenantnet.model.desired import (BOOTSTRAP_OWNER, COMMON_BRIDGES, COMMON_KINDS,
                                     DATAPATH_KEY, DATAPATHS, TRANSPORT_BRIDGE)
from tenantnet.model.records import KIND_KEY, OWNER_KEY
from tenantnet.errors import TenantnetError
from tenantnet.node import tls as node_tls
from tenantnet.node.exaddresses import endpoint_addresses
from tenantnet.node.ovscli import output, parse_map, unquote

ROLES = tuple(COMMON_BRIDGES)
ARP_SYSCTLS = ("net.ipv4.conf.all.arp_ignore=1", "net.ipv4.conf.default.arp_ignore=1",
               "net.ipv4.conf.all.arp_announce=2", "net.ipv4.conf.default.arp_announce=2")
NORMAL_FLOW = "table=0,priority=0,actions=NORMAL"
_IFNAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,14}$")


class BootstrapError(TenantnetError):
    """A node cannot be bootstrapped; the message says why and what to do."""


@dataclass
class Step:
    """One thing bootstrap looked at: *changed* says whether it had to act."""
    what: str
    changed: bool
    detail: str = ""

    def __str__(self):
        mark = "changed" if self.changed else "ok"
        return f"[{mark:7}] {self.what}" + (f": {self.detail}" if self.detail else "")

    def as_dict(self):
        return {"what": self.what, "changed": self.changed, "detail": self.detail}


def _vsctl(vsctl, *args, what):
    try:
        return vsctl(*args)
    except TenantnetError as exc:
        raise BootstrapError(f"{what}: {exc}") from exc


def _validate(role, transport_interface, transport_ip_cidr, management_ip, ovsdb_port,
              datapath):
    if role not in ROLES:
        raise BootstrapError(f"role {role!r}: expected one of {', '.join(ROLES)}")
    if datapath not in DATAPATHS:
        raise BootstrapError(f"datapath {datapath!r}: expected 'system' (kernel module) or "
                             "'netdev' (userspace)")
    if not isinstance(transport_interface, str) or not _IFNAME_RE.match(transport_interface):
        raise BootstrapError(f"transport interface {transport_interface!r} is not a valid "
                             "interface name")
    if transport_interface in (TRANSPORT_BRIDGE, "br-int", "br-ex"):
        raise BootstrapError(f"transport interface {transport_interface!r}: that is a bridge "
                             "bootstrap creates; name the NIC on the transport network")
    if "/" not in str(transport_ip_cidr):
        raise BootstrapError(f"transport IP {transport_ip_cidr!r}: give it with its prefix "
                             "length, e.g. 198.19.0.11/24")
    try:
        iface = ipaddress.ip_interface(transport_ip_cidr)
    except ValueError as exc:
        raise BootstrapError(f"transport IP {transport_ip_cidr!r}: {exc}") from None
    try:
        mgmt = ipaddress.ip_address(management_ip)
    except ValueError as exc:
        raise BootstrapError(f"management IP {management_ip!r}: {exc}") from None
    if iface.ip == mgmt:
        raise BootstrapError(f"the transport IP and the management IP are both {mgmt}: the "
                             "two networks must be separate")
    if not isinstance(ovsdb_port, int) or not 1 <= ovsdb_port <= 65535:
        raise BootstrapError(f"OVSDB port {ovsdb_port!r}: expected 1..65535")
    return iface, mgmt


def check_prerequisites(vsctl, transport_interface, management_ip, datapath="netdev",
                        link_exists=None, host=None, module_dir="/sys/module"):
    """Raise BootstrapError naming the first unmet prerequisite; return warnings (list)."""
    warnings = []
    try:
        vsctl("--no-wait", "init")
    except TenantnetError as exc:
        raise BootstrapError(
            f"Open vSwitch is not reachable ({exc}); is openvswitch-switch installed and "
            "running? (`systemctl status openvswitch-switch`, or --db for another "
            "database)") from exc
    exists = link_exists or (host.link_exists if host is not None else None)
    if exists is not None and not exists(transport_interface):
        raise BootstrapError(
            f"transport interface {transport_interface} does not exist on this host (see "
            "`ip link`): name the NIC on the transport network with --transport-interface")
    owner = output(vsctl("--if-exists", "get", "Port", transport_interface, "name"))
    if owner:
        br = output(vsctl("port-to-br", transport_interface))
        if br != TRANSPORT_BRIDGE:
            raise BootstrapError(f"transport interface {transport_interface} is already a port "
                                 f"of bridge {br}: remove it there first "
                                 f"(ovs-vsctl del-port {br} {transport_interface})")
    if host is not None:
        addrs = host.addresses(transport_interface)
        if any(a.split("/")[0] == str(management_ip) for a in addrs):
            raise BootstrapError(
                f"transport interface {transport_interface} carries the management address "
                f"{management_ip}: it would lose it as an OVS port; the management and "
                "transport networks need separate interfaces")
    if datapath == "system":
        path = os.path.join(module_dir, "openvswitch")
        present = host.path_exists(path) if host is not None else os.path.exists(path)
        if not present:
            raise BootstrapError(
                f"datapath 'system' needs the openvswitch kernel module, which is not loaded "
                f"({path} is missing): run `modprobe openvswitch` (the module ships with the "
                "distribution kernel), or use --datapath netdev (userspace)")
    return warnings


def bootstrap_node(vsctl, role, transport_interface, transport_ip_cidr, management_ip,
                   ovsdb_port=6640, datapath="netdev", system_id=None, hostname=None,
                   set_address=None, link_exists=None, host=None, ofctl=None, check=True,
                   arp_sysctls=True, module_dir="/sys/module", tls_dir=None,
                   ovsdb_pidfile=node_tls.DEFAULT_PIDFILE):
    """Make this node a tenantnet node (idempotent); return the list of Steps.

    *vsctl(*args)* runs ovs-vsctl against the node's database and raises TenantnetError on
    failure (OvsInstance.vsctl, or `local_vsctl()` for a real host). *ofctl(*args)* runs
    ovs-ofctl -O OpenFlow13 against the node's switch (optional: without it br-tun keeps the
    NORMAL flow Open vSwitch gives a bridge without controller).

    Host-side steps go to *host* (an ExecHost), or to the callables *set_address(ifname,
    cidr)* and *link_exists(ifname)* when given; with neither they are skipped and
    reported so. check=False skips the prerequisite checks (a missing kernel module is then
    a warning step).

    *tls_dir*: the node's certificate directory (tenantnet.node.tls): OVSDB then listens on
    pssl: and trusts only the provider's CA (ovsdb-server's pid is read from
    *ovsdb_pidfile*); None opens plain ptcp: (security: insecure)."""
    iface, mgmt = _validate(role, transport_interface, transport_ip_cidr, management_ip,
                            ovsdb_port, datapath)
    set_address = set_address or (host.set_address if host is not None else None)
    link_exists = link_exists or (host.link_exists if host is not None else None)
    steps = []

    def step(what, changed, detail=""):
        steps.append(Step(what, bool(changed), detail))

    if check:
        warnings = check_prerequisites(vsctl, transport_interface, mgmt, datapath,
                                       link_exists=link_exists, host=host,
                                       module_dir=module_dir)
        step("prerequisites", False, "; ".join(warnings) or
             f"Open vSwitch answers, {transport_interface} "
             + ("present" if link_exists is not None else "not checked (no host access)")
             + (", openvswitch kernel module loaded" if datapath == "system" else ""))
    else:
        _vsctl(vsctl, "--no-wait", "init", what="Open vSwitch is not reachable")
        if datapath == "system":
            path = os.path.join(module_dir, "openvswitch")
            present = host.path_exists(path) if host is not None else os.path.exists(path)
            if not present:
                step("warning", False, f"{path} is missing: bridges with datapath 'system' "
                     "will fail until `modprobe openvswitch`")

    # -- identity --------------------------------------------------------------------
    ids = _vsctl(vsctl, "get", "Open_vSwitch", ".", "external_ids", what="reading Open_vSwitch")
    have = parse_map(output(ids))
    if system_id is None:
        system_id = have.get("system-id") or (host.hostname() if host is not None
                                              else socket.gethostname())
    if hostname is None:
        hostname = host.hostname() if host is not None else socket.gethostname()
    want = {"system-id": system_id, "hostname": hostname, "tenantnet-role": role,
            DATAPATH_KEY: datapath, "tenantnet-management-ip": str(mgmt),
            "tenantnet-transport-ip": str(iface)}
    diff = {k: v for k, v in want.items() if have.get(k) != v}
    if diff:
        _vsctl(vsctl, "set", "Open_vSwitch", ".",
               *[f'external_ids:{k}="{v}"' for k, v in sorted(diff.items())],
               what="setting Open_vSwitch external_ids (is ovs-vswitchd running?)")
    detail = f"system-id {system_id}, hostname {hostname}, role {role}, datapath {datapath}"
    if "system-id" in diff and have.get("system-id"):
        detail += f" (system-id was {have['system-id']})"
    step("Open_vSwitch external_ids", diff, detail)

    # -- ARP sysctls ---------------------------------------------------------------------
    if arp_sysctls and host is not None:
        changed = host.sysctls(ARP_SYSCTLS)
        step("ARP sysctls", changed, ", ".join(changed) if changed else "arp_ignore=1, "
             "arp_announce=2 already set")

    # -- bridges ----------------------------------------------------------------------
    existing = set(output(_vsctl(vsctl, "list-br", what="listing bridges")).split())
    for br in COMMON_BRIDGES[role]:
        kind = COMMON_KINDS[br]
        created = br not in existing
        cols = [f"datapath_type={datapath}", f"external_ids:{KIND_KEY}={kind}",
                f"external_ids:{OWNER_KEY}={BOOTSTRAP_OWNER}"]
        before = {}
        if not created:
            before = {c.split("=")[0]: unquote(output(vsctl("--if-exists", "get", "bridge", br,
                                                           c.split("=")[0])))
                      for c in cols}
            if before.get("datapath_type") == "":
                before["datapath_type"] = "system"     # what Open vSwitch means by ""
        args = ["--may-exist", "add-br", br, "--", "set", "bridge", br, *cols]
        controlled = False
        if br == TRANSPORT_BRIDGE:
            controlled = bool(not created and output(vsctl("get-controller", br)))
            # standalone only until the controller takes br-tun over (it sets secure):
            # a re-run must not open a controller-managed bridge to fail-open NORMAL.
            if created or not output(vsctl("get-fail-mode", br)):
                args.append("fail_mode=standalone")
        changed = created or any(before.get(c.split("=")[0]) != c.split("=", 1)[1]
                                 for c in cols)
        if changed or (br == TRANSPORT_BRIDGE and "fail_mode=standalone" in args):
            _vsctl(vsctl, *args, what=f"creating bridge {br} (is ovs-vswitchd running?)")
        step(f"bridge {br}", changed or "fail_mode=standalone" in args,
             ("created" if created else "present") + f", datapath {datapath}, kind {kind}"
             + (", managed by a controller" if controlled else ""))

        if br == TRANSPORT_BRIDGE:
            port_br = output(vsctl("--if-exists", "get", "Port", transport_interface, "name"))
            if not port_br:
                _vsctl(vsctl, "--may-exist", "add-port", br, transport_interface, "--",
                       "set", "port", transport_interface,
                       f"external_ids:{KIND_KEY}=uplink",
                       f"external_ids:{OWNER_KEY}={BOOTSTRAP_OWNER}",
                       what=f"adding {transport_interface} to {br}")
            step(f"uplink {transport_interface} on {br}", not port_br,
                 "added" if not port_br else "present")
            if ofctl is not None and not controlled:
                try:
                    ofctl("add-flow", br, NORMAL_FLOW)
                except TenantnetError as exc:
                    raise BootstrapError(f"installing the NORMAL flow on {br}: {exc}") from exc
                step(f"{br} flow", False, "priority 0 NORMAL until the controller replaces it")
            elif controlled:
                step(f"{br} flow", False, "br-tun has a controller: its flows are left alone")

    # -- transport interface and IP -----------------------------------------------------
    if host is not None:
        host.link_up(transport_interface, arp=False)
        moved = host.addresses(transport_interface)
        for addr in moved:
            host.del_address(transport_interface, addr)
        step(f"{transport_interface} link", moved, "up, ARP off" + (
            f", removed {', '.join(moved)} (now only an OVS port)" if moved else ""))
    if set_address is not None:
        present = host.addresses(TRANSPORT_BRIDGE) if host is not None else None
        set_address(TRANSPORT_BRIDGE, str(iface))
        step(f"transport IP on {TRANSPORT_BRIDGE}", present is None or str(iface) not in present,
             str(iface))
    else:
        step(f"transport IP on {TRANSPORT_BRIDGE}", False,
             f"skipped (no host access): set {iface} on {TRANSPORT_BRIDGE} yourself")

    # -- TLS, and OVSDB for the controller (tenantnet.node.tls) ---------------------------
    try:
        for what, changed, detail in node_tls.open_ovsdb(vsctl, host, ovsdb_port, mgmt,
                                                         tls_dir, ovsdb_pidfile):
            step(what, changed, detail)
    except TenantnetError as exc:
        raise BootstrapError(f"opening OVSDB to the controller: {exc}") from exc

    # -- ex- endpoints that already exist -------------------------------------------------
    if set_address is not None:
        wanted = endpoint_addresses(vsctl)
        missing = {name: cidr for name, cidr in wanted.items()
                   if host is None or cidr not in host.addresses(name)}
        for name, cidr in sorted(missing.items()):
            set_address(name, cidr)
        if wanted:
            step("ex- endpoint addresses", missing, ", ".join(
                f"{k} {v}" for k, v in sorted(wanted.items())))
    return steps


