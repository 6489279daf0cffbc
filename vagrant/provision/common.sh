#!/usr/bin/env bash
# Every machine of the Vagrant lab: the Debian packages (Open vSwitch with the kernel
# datapath, iproute2, ...) and tenantnet from the rsynced tree in a virtualenv
# (/opt/tenantnet-venv, editable: `vagrant rsync` updates the code). Idempotent.
# TENANTNET_ROLE (controller, compute or network) says what to install: the controller gets
# every pinned dependency (requirements.txt: os-ken, ovsdbapp, matplotlib, ...); a node
# only what `tenantnet node bootstrap`/`node addresses` and the helpers the controller runs
# there need (vagrant/provision/requirements-node.txt), and tenantnet without its
# dependencies.
set -euo pipefail

SRC="${TENANTNET_SRC:-/opt/tenantnet}"
VENV="${TENANTNET_VENV:-/opt/tenantnet-venv}"
ROLE="${TENANTNET_ROLE:-controller}"
PACKAGES=(openvswitch-switch python3-venv iproute2 iputils-ping ethtool iperf3 tcpdump
          procps kmod openssh-client openssh-server)

say() { printf 'tenantnet common: %s\n' "$*" >&2; }
die() { say "$*"; exit 1; }

[ "$(id -u)" -eq 0 ] || die "run as root (Vagrant's shell provisioner does)"
[ -f "$SRC/setup.cfg" ] || die "$SRC has no tenantnet tree: is the rsync synced folder up?"
case "$ROLE" in
    controller) REQUIREMENTS="$SRC/requirements.txt"; DEPS=() ;;
    compute|network) REQUIREMENTS="$SRC/vagrant/provision/requirements-node.txt"; DEPS=(--no-deps) ;;
    *) die "TENANTNET_ROLE=$ROLE: expected controller, compute or network" ;;
esac

missing=()
for pkg in "${PACKAGES[@]}"; do
    if [ "$(dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null)" != "install ok installed" ]; then
        missing+=("$pkg")
    fi
done
if [ "${#missing[@]}" -gt 0 ]; then
    say "installing ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -q
    apt-get install -y -q --no-install-recommends "${missing[@]}"
fi
systemctl enable --now openvswitch-switch.service

if [ ! -x "$VENV/bin/python" ]; then
    say "creating $VENV"
    python3 -m venv "$VENV"
fi
stamp="$VENV/.tenantnet-provision"
want="$ROLE $(cat "$REQUIREMENTS" "$SRC/setup.cfg" "$SRC/pyproject.toml" | sha256sum | cut -d' ' -f1)"
if [ "$(cat "$stamp" 2>/dev/null || true)" != "$want" ]; then
    say "installing tenantnet and the pinned dependencies of a $ROLE ($REQUIREMENTS) into $VENV"
    "$VENV/bin/python" -m pip install -q --disable-pip-version-check -r "$REQUIREMENTS"
    "$VENV/bin/python" -m pip install -q --disable-pip-version-check "${DEPS[@]}" -e "$SRC"
    echo "$want" > "$stamp"
fi
"$VENV/bin/python" -c 'import tenantnet.cli.main' || die "tenantnet does not import from $VENV"
ln -sf "$VENV/bin/tenantnet" /usr/local/bin/tenantnet
say "ok: $("$VENV/bin/python" -c 'import tenantnet; print("tenantnet", tenantnet.__version__)'), $(ovs-vsctl --version | head -n1)"
