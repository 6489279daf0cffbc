"""A node's side of TLS: OVSDB only on `pssl:` for the provider, `ssl:` for its bridges.

The node's directory (`tenantnet pki node NAME` makes it; tenantnet.pki) holds key.pem,
cert.pem, ovsdb-ca.pem (the provider's CA) and openflow-ca.pem (the provider's and the
tenants' CAs). Two processes, two trusts:

  * ovs-vswitchd reads the SSL table (`ovs-vsctl set-ssl KEY CERT openflow-ca.pem`): its
    bridges' `ssl:` controller targets may be the provider or a tenant's controller;
  * ovsdb-server takes its key and certificate from the same table, as ovs-ctl starts it,
    but must trust only ovsdb-ca.pem, so that a tenant's certificate never opens OVSDB. It
    is given `--ca-cert=ovsdb-ca.pem` last on its command line (the last CA option wins).
    On a systemd host that is a drop-in for ovsdb-server.service
    (OVS_CTL_OPTS=--ovsdb-server-options=--ca-cert=...), and ovsdb-server alone is restarted
    once (ovs-vswitchd reconnects to it);
    the one-machine lab starts its ovsdb-server so (tenantnet.lab.ovs.OvsInstance).

Then OVSDB is opened: `set-manager pssl:PORT:MANAGEMENT_IP`, never before the CA is right.
With `security: insecure` it is `ptcp:` instead, and bootstrap says what that means."""

import shlex
import time

from tenantnet.errors import TenantnetError

DEFAULT_DIR = "/etc/tenantnet/pki/node"
DEFAULT_PIDFILE = "/var/run/openvswitch/ovsdb-server.pid"
DROPIN = "/etc/systemd/system/ovsdb-server.service.d/tenantnet-tls.conf"
INSECURE_WARNING = ("plain TCP (security: insecure): anyone who reaches this address can "
                    "reconfigure every bridge of this node")


class TlsError(TenantnetError):
    pass


# ovsdb-server echoes an idle client after this long and drops it when that is not
# answered within as long again (its default is 5 s). The controller's connection is busy
# or answered by its own thread, but a controller of 1,000 bridges could stall for more
# than 10 s when they all reconnected at once, and then lost every node at once.
MANAGER_PROBE_MS = 30000


def _vsctl_out(vsctl, *args):
    proc = vsctl(*args)
    return (getattr(proc, "stdout", proc) or "").strip()


def node_files(directory):
    """{key, cert, ovsdb_ca, openflow_ca} paths in a node's directory."""
    d = directory.rstrip("/")
    return {"key": f"{d}/key.pem", "cert": f"{d}/cert.pem", "ovsdb_ca": f"{d}/ovsdb-ca.pem",
            "openflow_ca": f"{d}/openflow-ca.pem"}


def check_files(host, files):
    for what, path in files.items():
        exists = host.path_exists(path) if host is not None else _local_exists(path)
        if not exists:
            raise TlsError(f"{path} is missing ({what}): copy the node's directory made by "
                           "`tenantnet pki node NAME` there, or bootstrap with "
                           "--security insecure")


def _local_exists(path):
    import os
    return os.path.isfile(path)


def ovsdb_server_ca(host, pidfile):
    """The CA file ovsdb-server trusts (its last --ca-cert/--bootstrap-ca-cert), or None
    when it is not running or cannot be read."""
    ex = host.executor
    proc = ex.run(["cat", pidfile], check=False)
    pid = proc.stdout.strip() if proc.returncode == 0 else ""
    if not pid.isdigit():
        return None
    proc = ex.run(["cat", f"/proc/{pid}/cmdline"], check=False)
    if proc.returncode != 0:
        return None
    found = None
    for arg in proc.stdout.split("\0"):
        for flag in ("--ca-cert=", "--bootstrap-ca-cert="):
            if arg.startswith(flag):
                found = arg[len(flag):]
    return found


def _systemd(host):
    return host.path_exists("/run/systemd/system")


def _dropin_text(ca_file):
    return ("# written by `tenantnet node bootstrap`: ovsdb-server trusts only the provider's\n"
            "# CA for its pssl: remotes (ovs-vswitchd trusts the SSL table's bundle).\n"
            "[Service]\n"
            f"Environment=OVS_CTL_OPTS=--ovsdb-server-options=--ca-cert={ca_file}\n")


def _fix_ovsdb_ca(vsctl, host, ca_file, pidfile):
    """Make ovsdb-server trust only *ca_file*; return what was done (or "")."""
    if ovsdb_server_ca(host, pidfile) == ca_file:
        return ""
    if host is None or not _systemd(host):
        raise TlsError(
            f"ovsdb-server does not trust only {ca_file}: start it with --ca-cert={ca_file} "
            "after its other options (with ovs-ctl: OVS_CTL_OPTS="
            f"'--ovsdb-server-options=--ca-cert={ca_file}'), then bootstrap again")
    ex = host.executor
    ex.run(["mkdir", "-p", DROPIN.rsplit("/", 1)[0]])
    ex.run(["sh", "-c", f"cat > {shlex.quote(DROPIN)}"], input=_dropin_text(ca_file))
    ex.run(["systemctl", "daemon-reload"])
    # ovsdb-server alone: a plain restart propagates along Requires= to ovs-vswitchd,
    # openvswitch-switch and every unit that requires it, tenantnet-node.service among
    # them, which runs this very bootstrap (the Vagrant lab's nodes): systemd would kill it
    # here and start it again. ovs-vswitchd needs no restart: it reconnects to the
    # database by itself, keeps its datapath, and reads the SSL table as it changes.
    ex.run(["systemctl", "restart", "--job-mode=ignore-dependencies",
            "ovsdb-server.service"], timeout=120)
    deadline = time.time() + 30
    while True:
        try:
            vsctl("--no-wait", "show")
            break
        except TenantnetError:
            if time.time() > deadline:
                raise TlsError("ovsdb-server did not come back after its restart "
                               "(journalctl -u ovsdb-server)") from None
            time.sleep(0.2)
    if ovsdb_server_ca(host, pidfile) != ca_file:
        raise TlsError(f"ovsdb-server still does not use --ca-cert={ca_file} after a restart "
                       f"with {DROPIN}: is OVS_CTL_OPTS set in /etc/default/openvswitch-switch?")
    return f"{DROPIN} written, ovsdb-server restarted"


def open_ovsdb(vsctl, host, ovsdb_port, mgmt, tls_dir=None, pidfile=DEFAULT_PIDFILE):
    """Configure the node's TLS (when *tls_dir*) and open OVSDB to the controller; return
    [(what, changed, detail)]."""
    address = f"[{mgmt}]" if mgmt.version == 6 else str(mgmt)
    out = []
    if tls_dir is None:
        target = f"ptcp:{ovsdb_port}:{address}"
        out.append(("TLS", False, "off: " + INSECURE_WARNING))
    else:
        files = node_files(tls_dir)
        check_files(host, files)
        want = [files["key"], files["cert"], files["openflow_ca"]]
        have = _vsctl_out(vsctl, "get-ssl")
        if not all(f in have for f in want) or "Bootstrap: true" in have:
            vsctl("set-ssl", *want)
            out.append(("SSL table", True, f"key, certificate and CA bundle {want[2]}"))
        else:
            out.append(("SSL table", False, f"key, certificate and CA bundle {want[2]}"))
        done = _fix_ovsdb_ca(vsctl, host, files["ovsdb_ca"], pidfile)
        out.append(("ovsdb-server CA", bool(done),
                    done or f"trusts only {files['ovsdb_ca']} (the provider's CA)"))
        target = f"pssl:{ovsdb_port}:{address}"
    current = _vsctl_out(vsctl, "get-manager").split()
    if current != [target]:
        vsctl("set-manager", target)
    out.append(("OVSDB manager", current != [target], target + (
        f" (replaced {', '.join(current)})" if current and current != [target] else "")))
    probe = _vsctl_out(vsctl, "get", "Manager", target, "inactivity_probe")
    if probe != str(MANAGER_PROBE_MS):
        vsctl("set", "Manager", target, f"inactivity_probe={MANAGER_PROBE_MS}")
    out.append(("OVSDB manager probe", probe != str(MANAGER_PROBE_MS),
                f"inactivity_probe {MANAGER_PROBE_MS} ms"))
    return out
