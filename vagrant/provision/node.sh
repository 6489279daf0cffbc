#!/usr/bin/env bash
# A compute or network node of the Vagrant lab (after common.sh):
#   node.sh ROLE MANAGEMENT_IP TRANSPORT_IP/PREFIX MAC_SUFFIX
# - authorizes the controller's cluster key for root (VM namespaces are made over SSH);
# - finds the transport NIC by the MAC the Vagrantfile gave it (...:MAC_SUFFIX), renames
#   it to $TENANTNET_TRANSPORT_IF (the name the controller's config uses) for good;
# - `tenantnet node bootstrap` with the kernel datapath, and a unit that repeats it at
#   boot (addresses do not survive a reboot, OVSDB does);
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
CONF=/etc/tenantnet

say() { printf 'tenantnet node: %s\n' "$*" >&2; }
die() { say "$*"; exit 1; }

case "$ROLE" in compute|network) ;; *) die "role $ROLE: expected compute or network" ;; esac
[ "$(id -u)" -eq 0 ] || die "run as root"

# -- the controller's key -------------------------------------------------------------
pub="$SRC/vagrant/.cluster/id_ed25519.pub"
[ -s "$pub" ] || die "$pub is missing (the Vagrantfile's trigger makes it on the host)"
install -d -m 700 /root/.ssh
touch /root/.ssh/authorized_keys
chmod 600 /root/.ssh/authorized_keys
grep -qxF "$(cat "$pub")" /root/.ssh/authorized_keys || cat "$pub" >> /root/.ssh/authorized_keys

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
ENV
install -m 644 "$SRC/vagrant/tenantnet-node.service" /etc/systemd/system/tenantnet-node.service
install -m 644 "$SRC/vagrant/tenantnet-ex-address@.service" \
    "/etc/systemd/system/tenantnet-ex-address@.service"
install -m 644 "$SRC/vagrant/90-tenantnet-ex.rules" /etc/udev/rules.d/90-tenantnet-ex.rules
systemctl daemon-reload
udevadm control --reload
systemctl enable tenantnet-node.service

"$VENV/bin/tenantnet" node bootstrap --role "$ROLE" --transport-interface "$IF" \
    --transport-ip "$TRANSPORT" --management-ip "$MGMT_IP" --datapath system
say "ok: $ROLE node, OVSDB for the controller at tcp:$MGMT_IP:6640"
