#!/usr/bin/env bash
# The controller node of the Vagrant lab (after common.sh):
#   controller.sh MANAGEMENT_IP "NAME:ROLE:MGMT_IP:TRANSPORT_IP ..."
# - the cluster key for root, the nodes' host keys as its known hosts, and ssh settings for
#   the management network, so that `tenantnet cluster up` reaches every node over SSH.
#   The Vagrantfile uploads them to $TENANTNET_CLUSTER_FILES (id_ed25519, id_ed25519.pub,
#   known_hosts); they are installed and the uploads removed. The nodes' host keys are
#   made once per node on the Vagrant host and installed by node.sh, so a node that is
#   destroyed and made again has the key the controller knows: strict checking, and no
#   "REMOTE HOST IDENTIFICATION HAS CHANGED" after a re-creation;
# - TLS (TENANTNET_SECURITY=tls, the default): the provider's certificate directory and
#   the tenants' (made on the Vagrant host by cluster-pki.sh; no CA key), uploaded to
#   $TENANTNET_CLUSTER_FILES/pki/{provider,tenant/NAME}, installed at
#   /etc/tenantnet/pki/{provider,tenant/NAME} (keys owner-only) and the uploads removed.
#   The controller then reaches the nodes' OVSDB over TLS, listens for OpenFlow on TLS
#   (ofp_ssl_listen_port) and serves its API on HTTPS; `tenantnet` on this machine trusts
#   /etc/tenantnet/pki/provider/api-ca.pem. TENANTNET_SECURITY=insecure: plain TCP (a warning);
# - /etc/tenantnet/config.yaml describing the nodes (make-config.py), a provider API
#   token, and the systemd unit tenantnet-controller.service, enabled and (re)started.
set -euo pipefail

MGMT_IP="${1:?usage: controller.sh MANAGEMENT_IP NODE_SPEC}"
NODES="${2:?node spec: NAME:ROLE:MGMT_IP:TRANSPORT_IP ...}"
SRC="${TENANTNET_SRC:-/opt/tenantnet}"
VENV="${TENANTNET_VENV:-/opt/tenantnet-venv}"
IF="${TENANTNET_TRANSPORT_IF:-transport0}"
PREFIX_LEN="${TENANTNET_PREFIX_LEN:-24}"
FILES="${TENANTNET_CLUSTER_FILES:-/tmp/tenantnet-cluster}"
API_PORT="${TENANTNET_API_PORT:-8080}"
SECURITY="${TENANTNET_SECURITY:-tls}"
CONF=/etc/tenantnet
PKI="$CONF/pki"

say() { printf 'tenantnet controller: %s\n' "$*" >&2; }
die() { say "$*"; exit 1; }
[ "$(id -u)" -eq 0 ] || die "run as root"
case "$SECURITY" in tls|insecure) ;; *) die "TENANTNET_SECURITY=$SECURITY: expected tls or insecure" ;; esac
changed=0         # 1: the controller's inputs changed, it is restarted at the end

# -- SSH to the nodes ---------------------------------------------------------------------
key="$FILES/id_ed25519"
for f in "$key" "$key.pub" "$FILES/known_hosts"; do
    [ -s "$f" ] || die "$f is missing (the Vagrantfile uploads it; its trigger makes it on the host)"
done
install -d -m 700 /root/.ssh
install -m 600 "$key" /root/.ssh/tenantnet_cluster
install -m 644 "$key.pub" /root/.ssh/tenantnet_cluster.pub
# Replaced, not appended to: entries of nodes made earlier never linger.
install -m 644 "$FILES/known_hosts" /root/.ssh/known_hosts_tenantnet
rm -f "$key" "$key.pub" "$FILES/known_hosts"
cat > /etc/ssh/ssh_config.d/tenantnet.conf <<SSH
# tenantnet Vagrant lab: the nodes, on the management network, as root with the cluster key.
# Their host keys are pinned (made on the Vagrant host, installed by node.sh): strict.
Host ${MGMT_IP%.*}.*
    User root
    IdentityFile /root/.ssh/tenantnet_cluster
    IdentitiesOnly yes
    StrictHostKeyChecking yes
    HostKeyAlgorithms ssh-ed25519
    UserKnownHostsFile /root/.ssh/known_hosts_tenantnet
SSH

# -- certificates (TLS) -----------------------------------------------------------------
install_identity() {   # install_identity FROM TO FILE...: FROM/key.pem owner-only, the rest 644
    local from="$1" to="$2" f mode
    shift 2
    for f in "$@"; do
        [ -s "$from/$f" ] || die "$from/$f is missing (the lab's PKI: cluster-pki.sh on the host)"
    done
    install -d -m 700 "$to"
    for f in "$@"; do
        mode=644
        [ "$f" = key.pem ] && mode=600
        if ! cmp -s "$from/$f" "$to/$f"; then
            install -m "$mode" -o root -g root "$from/$f" "$to/$f"
            changed=1
        fi
    done
}
upload="$FILES/pki"
if [ "$SECURITY" = tls ]; then
    if [ -d "$upload" ]; then
        if [ -e "$upload/ca" ] || [ -n "$(find "$upload" -name '*.key' -print -quit)" ]; then
            die "$upload holds CA keys: they must stay on the machine that made the PKI"
        fi
        install -d -m 755 "$CONF" "$PKI"
        install_identity "$upload/provider" "$PKI/provider" key.pem cert.pem node-ca.pem api-ca.pem
        for dir in "$upload"/tenant/*/; do
            [ -d "$dir" ] || continue
            install_identity "$dir" "$PKI/tenant/$(basename "$dir")" key.pem cert.pem node-ca.pem api-ca.pem
        done
        say "installed the provider's and the tenants' certificates in $PKI"
    fi
    for f in key.pem cert.pem node-ca.pem api-ca.pem; do
        [ -s "$PKI/provider/$f" ] || die "$PKI/provider/$f is missing: upload the provider's directory of the PKI to $upload/provider (tenantnet pki init), or set TENANTNET_SECURITY=insecure"
    done
    OFP_PORT_OPTION=ofp_ssl_listen_port
    API_SCHEME=https
    CHANNEL=TLS
else
    say "WARNING: security insecure: OVSDB, OpenFlow and the API (bearer tokens) on plain TCP; anyone on the management network can read and change them"
    OFP_PORT_OPTION=ofp_tcp_listen_port
    API_SCHEME=http
    CHANNEL="plain TCP"
fi
rm -rf "$upload"

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
    --transport-interface "$IF" --prefix-len "$PREFIX_LEN" --security "$SECURITY" \
    "${node_args[@]}" > "$new"
"$VENV/bin/tenantnet" check-config "$new" >/dev/null
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
# (made by vagrant/provision/controller.sh; config.yaml says security: $SECURITY)
[DEFAULT]
ofp_listen_host = $MGMT_IP
$OFP_PORT_OPTION = 6653

[tenantnet]
config = $CONF/config.yaml
api_listen = $MGMT_IP:$API_PORT
api_socket = /run/tenantnet-controller/api.sock
pki_dir = $PKI
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
say "ok: controller service on $MGMT_IP (OpenFlow :6653 over $CHANNEL, API $API_SCHEME://$MGMT_IP:$API_PORT); it connects to the nodes as they come up"
