#!/usr/bin/env bash
# The controller node of the Vagrant lab (after common.sh):
#   controller.sh MANAGEMENT_IP "NAME:ROLE:MGMT_IP:TRANSPORT_IP ..."
# - the cluster key for root, and ssh settings for the management network, so that
#   `tenantnet cluster up` reaches every node over SSH;
# - /etc/tenantnet/config.yaml describing the nodes (make-config.py), a provider API
#   token, and the systemd unit tenantnet-controller.service, enabled and (re)started.
set -euo pipefail

MGMT_IP="${1:?usage: controller.sh MANAGEMENT_IP NODE_SPEC}"
NODES="${2:?node spec: NAME:ROLE:MGMT_IP:TRANSPORT_IP ...}"
SRC="${TENANTNET_SRC:-/opt/tenantnet}"
VENV="${TENANTNET_VENV:-/opt/tenantnet-venv}"
IF="${TENANTNET_TRANSPORT_IF:-transport0}"
PREFIX_LEN="${TENANTNET_PREFIX_LEN:-24}"
API_PORT="${TENANTNET_API_PORT:-8080}"
CONF=/etc/tenantnet

say() { printf 'tenantnet controller: %s\n' "$*" >&2; }
die() { say "$*"; exit 1; }
[ "$(id -u)" -eq 0 ] || die "run as root"

# -- SSH to the nodes ---------------------------------------------------------------------
key="$SRC/vagrant/.cluster/id_ed25519"
[ -s "$key" ] || die "$key is missing (the Vagrantfile's trigger makes it on the host)"
install -d -m 700 /root/.ssh
install -m 600 "$key" /root/.ssh/tenantnet_cluster
install -m 644 "$key.pub" /root/.ssh/tenantnet_cluster.pub
cat > /etc/ssh/ssh_config.d/tenantnet.conf <<SSH
# tenantnet Vagrant lab: the nodes, on the management network, as root with the cluster key
Host ${MGMT_IP%.*}.*
    User root
    IdentityFile /root/.ssh/tenantnet_cluster
    IdentitiesOnly yes
    StrictHostKeyChecking accept-new
    UserKnownHostsFile /root/.ssh/known_hosts_tenantnet
SSH

# -- config, token, unit --------------------------------------------------------------------
install -d -m 755 "$CONF"
if [ ! -s "$CONF/provider.token" ]; then
    (umask 077; head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n' > "$CONF/provider.token")
fi
read -r -a node_args <<< "$NODES"
new="$(mktemp)"
trap 'rm -f "$new"' EXIT
"$VENV/bin/python" "$SRC/vagrant/provision/make-config.py" --controller-ip "$MGMT_IP" \
    --api-port "$API_PORT" --token-file "$CONF/provider.token" \
    --transport-interface "$IF" --prefix-len "$PREFIX_LEN" "${node_args[@]}" > "$new"
"$VENV/bin/tenantnet" check-config "$new" >/dev/null
changed=0
if ! cmp -s "$new" "$CONF/config.yaml"; then
    [ -f "$CONF/config.yaml" ] && cp "$CONF/config.yaml" "$CONF/config.yaml.bak"
    install -m 644 "$new" "$CONF/config.yaml"
    changed=1
    say "wrote $CONF/config.yaml (${#node_args[@]} nodes)"
fi
conf_new="$(mktemp)"
trap 'rm -f "$new" "$conf_new"' EXIT
cat > "$conf_new" <<CONF
# read by tenantnet-controller.service: ryu-manager tenantnet.app --config-file THIS
# (made by vagrant/provision/controller.sh)
[DEFAULT]
ofp_listen_host = $MGMT_IP
ofp_tcp_listen_port = 6653

[tenantnet]
config = $CONF/config.yaml
api_listen = $MGMT_IP:$API_PORT
api_socket = /run/tenantnet-controller/api.sock
CONF
if ! cmp -s "$conf_new" "$CONF/tenantnet.conf"; then
    install -m 644 "$conf_new" "$CONF/tenantnet.conf"
    changed=1
fi
rm -f "$CONF/controller.env"          # what earlier versions of this script wrote
if ! cmp -s "$SRC/vagrant/tenantnet-controller.service" /etc/systemd/system/tenantnet-controller.service; then
    install -m 644 "$SRC/vagrant/tenantnet-controller.service" /etc/systemd/system/
    changed=1
fi
systemctl daemon-reload
systemctl enable tenantnet-controller.service
if [ "$changed" -eq 1 ] || ! systemctl is-active --quiet tenantnet-controller.service; then
    systemctl restart tenantnet-controller.service
fi
say "ok: controller service on $MGMT_IP (OpenFlow :6653, API http://$MGMT_IP:$API_PORT); it connects to the nodes as they come up"
