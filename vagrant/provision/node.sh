#!/usr/bin/env bash
# A compute or network node of the Vagrant lab (after common.sh):
#   node.sh ROLE MANAGEMENT_IP TRANSPORT_IP/PREFIX MAC_SUFFIX
# The one-machine lab's node VMs (`tenantnet lab up --nodes vm`) are prepared by this same
# script (tenantnet.lab.vmnodes: TENANTNET_SRC=/opt/tenantnet-src, TENANTNET_TRANSPORT_IF=eth1,
# the lab's TENANTNET_OVSDB_PORT, default 6640, and TENANTNET_SECURITY).
# - authorizes the controller's cluster key for root (VM namespaces are made over SSH): its
#   public key only, from $TENANTNET_CLUSTER_FILES/id_ed25519.pub (the Vagrantfile's file
#   provisioner uploads it; the private key never comes here);
# - installs this node's own SSH host key from the same place when it is there
#   (ssh_host_ed25519_key: made once per node on the Vagrant host, and listed in the
#   controller's known_hosts), so a node made again has the identity the controller knows;
# - TLS (TENANTNET_SECURITY=tls, the default): installs this node's certificate directory
#   (made on the Vagrant host by cluster-pki.sh: key.pem, cert.pem, ovsdb-ca.pem,
#   openflow-ca.pem, no CA key) from $TENANTNET_CLUSTER_FILES/pki/node/ at
#   /etc/tenantnet/pki/node (the key owner-only); bootstrap then serves OVSDB on pssl: to
#   the provider's certificate only. TENANTNET_SECURITY=insecure: plain ptcp: (a warning);
# - finds the transport NIC by the MAC the Vagrantfile gave it (...:MAC_SUFFIX), renames
#   it to $TENANTNET_TRANSPORT_IF (the name the controller's config uses) for good;
# - `tenantnet node bootstrap` with the kernel datapath, run by tenantnet-node.service,
#   which is enabled and (re)started here and repeats it at every boot (addresses do not
#   survive a reboot, OVSDB does);
# - a udev rule that gives every ex- endpoint the address the controller recorded for it
#   in OVSDB (the node's side of DNB; the paper uses a udev rule too). Idempotent.
set -euo pipefail

ROLE="${1:?usage: node.sh ROLE MANAGEMENT_IP TRANSPORT_IP/PREFIX MAC_SUFFIX}"
MGMT_IP="${2:?management IP}"
TRANSPORT="${3:?transport IP/prefix}"
MAC_SUFFIX="${4:?MAC suffix of the transport NIC, e.g. 19:00:21}"
SRC="${TENANTNET_SRC:-/opt/tenantnet}"
VENV="${TENANTNET_VENV:-/opt/tenantnet-venv}"
IF="${TENANTNET_TRANSPORT_IF:-transport0}"
FILES="${TENANTNET_CLUSTER_FILES:-/tmp/tenantnet-cluster}"
OVSDB_PORT="${TENANTNET_OVSDB_PORT:-6640}"
SECURITY="${TENANTNET_SECURITY:-tls}"
CONF=/etc/tenantnet
TLS_DIR="$CONF/pki/node"

say() { printf 'tenantnet node: %s\n' "$*" >&2; }
die() { say "$*"; exit 1; }

case "$ROLE" in compute|network) ;; *) die "role $ROLE: expected compute or network" ;; esac
[[ "$OVSDB_PORT" =~ ^[1-9][0-9]*$ ]] || die "TENANTNET_OVSDB_PORT=$OVSDB_PORT: expected a port number"
case "$SECURITY" in tls|insecure) ;; *) die "TENANTNET_SECURITY=$SECURITY: expected tls or insecure" ;; esac
[ "$(id -u)" -eq 0 ] || die "run as root"
[ -x "$VENV/bin/tenantnet" ] || die "$VENV/bin/tenantnet is missing: common.sh installs it first"

# -- the controller's key, and this node's host key ----------------------------------------
pub="$FILES/id_ed25519.pub"
[ -s "$pub" ] || die "$pub is missing (the Vagrantfile uploads it; its trigger makes it on the host)"
if [ "$(wc -l < "$pub")" -ne 1 ] || ! grep -q '^ssh-ed25519 ' "$pub"; then
    die "$pub is not one ed25519 public key"
fi
[ -e "$FILES/id_ed25519" ] && die "$FILES/id_ed25519: the cluster's private key must not be on a node"
install -d -m 700 /root/.ssh
touch /root/.ssh/authorized_keys
chmod 600 /root/.ssh/authorized_keys
grep -qxF "$(cat "$pub")" /root/.ssh/authorized_keys || cat "$pub" >> /root/.ssh/authorized_keys
rm -f "$pub"
hostkey="$FILES/ssh_host_ed25519_key"
if [ -s "$hostkey" ] && [ -s "$hostkey.pub" ]; then
    if ! cmp -s "$hostkey" /etc/ssh/ssh_host_ed25519_key; then
        install -m 600 -o root -g root "$hostkey" /etc/ssh/ssh_host_ed25519_key
        install -m 644 -o root -g root "$hostkey.pub" /etc/ssh/ssh_host_ed25519_key.pub
        systemctl try-reload-or-restart ssh.service
        say "installed this node's SSH host key (the one in the controller's known_hosts)"
    fi
else
    say "no host key in $FILES: keeping this machine's own (the controller may not know it)"
fi
rm -f "$hostkey" "$hostkey.pub"

# -- this node's certificates (TLS) ---------------------------------------------------------
upload="$FILES/pki/node"
if [ "$SECURITY" = tls ]; then
    if [ -d "$upload" ]; then
        for f in key.pem cert.pem ovsdb-ca.pem openflow-ca.pem; do
            [ -s "$upload/$f" ] || die "$upload/$f is missing (the node's directory of the lab's PKI)"
        done
        [ -z "$(find "$upload" -name '*.key' -print -quit)" ] || die "$upload holds a CA key: it must stay on the machine that made the PKI"
        install -d -m 755 "$CONF" "$CONF/pki"
        install -d -m 700 "$TLS_DIR"
        install -m 600 -o root -g root "$upload/key.pem" "$TLS_DIR/key.pem"
        for f in cert.pem ovsdb-ca.pem openflow-ca.pem; do
            install -m 644 -o root -g root "$upload/$f" "$TLS_DIR/$f"
        done
        say "installed this node's certificates in $TLS_DIR"
    fi
    for f in key.pem cert.pem ovsdb-ca.pem openflow-ca.pem; do
        [ -s "$TLS_DIR/$f" ] || die "$TLS_DIR/$f is missing: upload the node's directory of the PKI to $upload (tenantnet pki node NAME), or set TENANTNET_SECURITY=insecure"
    done
else
    say "WARNING: security insecure: OVSDB on plain TCP at $MGMT_IP:$OVSDB_PORT; anyone on the management network can reconfigure every bridge of this node"
fi
rm -rf "$upload"
rmdir "$FILES/pki" 2>/dev/null || true

# -- the transport NIC ----------------------------------------------------------------
find_nic() {
    local dev
    for dev in /sys/class/net/*; do
        [ -e "$dev/device" ] || continue            # physical NICs only (not OVS ports)
        case "$(cat "$dev/address")" in
            *":$MAC_SUFFIX") basename "$dev" ;;
        esac
    done
}
if ! ip link show dev "$IF" >/dev/null 2>&1; then
    mapfile -t nics < <(find_nic)
    [ "${#nics[@]}" -eq 1 ] || die "expected one NIC with a MAC ending in $MAC_SUFFIX (the transport network), found: ${nics[*]:-none}"
    say "transport NIC ${nics[0]} becomes $IF"
    ip link set dev "${nics[0]}" down
    ip link set dev "${nics[0]}" name "$IF"
fi
install -d -m 755 /etc/systemd/network
cat > /etc/systemd/network/10-tenantnet-transport.link <<LINK
# tenantnet: the transport NIC keeps the name the controller's config uses
[Match]
MACAddress=$(cat "/sys/class/net/$IF/address")

[Link]
Name=$IF
LINK

modprobe openvswitch || die "the openvswitch kernel module does not load (linux-image-$(uname -r)?)"

# -- bootstrap now, and at every boot ---------------------------------------------------
install -d -m 755 "$CONF"
cat > "$CONF/node.env" <<ENV
# read by tenantnet-node.service (made by vagrant/provision/node.sh)
TENANTNET_ROLE=$ROLE
TENANTNET_TRANSPORT_IF=$IF
TENANTNET_TRANSPORT_IP=$TRANSPORT
TENANTNET_MANAGEMENT_IP=$MGMT_IP
TENANTNET_OVSDB_PORT=$OVSDB_PORT
TENANTNET_SECURITY=$SECURITY
TENANTNET_TLS_DIR=$TLS_DIR
ENV
install -m 644 "$SRC/vagrant/tenantnet-node.service" /etc/systemd/system/tenantnet-node.service
install -m 644 "$SRC/vagrant/tenantnet-ex-address@.service" \
    "/etc/systemd/system/tenantnet-ex-address@.service"
install -m 644 "$SRC/vagrant/90-tenantnet-ex.rules" /etc/udev/rules.d/90-tenantnet-ex.rules
systemctl daemon-reload
udevadm control --reload
# The unit runs `tenantnet node bootstrap ... --datapath system --security ... --tls-dir
# ...` (see its ExecStart): now, and at every boot. With TLS, its first run points
# ovsdb-server at ovsdb-ca.pem (a systemd drop-in, tenantnet.node.tls) and restarts it. A oneshot: restart runs it again and returns when it is done.
systemctl enable tenantnet-node.service
since="$(date +%s)"
if ! systemctl restart tenantnet-node.service; then
    journalctl -u tenantnet-node.service --since "@$since" -o cat --no-pager >&2 || true
    die "tenantnet-node.service failed (journalctl -u tenantnet-node.service)"
fi
journalctl -u tenantnet-node.service --since "@$since" -o cat --no-pager >&2 || true
systemctl is-active --quiet tenantnet-node.service || die "tenantnet-node.service is not active"
if [ "$SECURITY" = tls ]; then scheme=ssl; else scheme=tcp; fi
say "ok: $ROLE node, tenantnet-node.service active, OVSDB for the controller at $scheme:$MGMT_IP:$OVSDB_PORT"
