#!/usr/bin/env bash
# Every machine of the Vagrant lab: the Debian packages (Open vSwitch with the kernel
# datapath, iproute2, ...) and tenantnet from the rsynced tree in a virtualenv
# (/opt/tenantnet-venv; the tree is imported in place through a .pth file, so `vagrant
# rsync` updates the code, and `tenantnet`/`ryu-manager` are small console wrappers: no
# build step, nothing downloaded for tenantnet itself). Idempotent.
# The pinned dependencies come from the wheelhouses when they hold every pin, offline:
# $TENANTNET_WHEELHOUSE (the Vagrantfile rsyncs the host's TENANTNET_WHEELHOUSE there) and
# /opt/tenantnet-wheelhouse (in tenantnet's own box, `tenantnet lab image box`); otherwise
# from the package index (PyPI).
# TENANTNET_ROLE (controller, compute or network) says what to install: the controller gets
# every pinned dependency (requirements.txt: os-ken, ovsdbapp, matplotlib, ...); a node
# only what `tenantnet node bootstrap`/`node addresses` and the helpers the controller runs
# there need (vagrant/provision/requirements-node.txt), and tenantnet without its
# dependencies.
set -euo pipefail

SRC="${TENANTNET_SRC:-/opt/tenantnet}"
VENV="${TENANTNET_VENV:-/opt/tenantnet-venv}"
ROLE="${TENANTNET_ROLE:-controller}"
WHEELHOUSES=("${TENANTNET_WHEELHOUSE:-}" /opt/tenantnet-wheelhouse)
PACKAGES=(openvswitch-switch python3-venv iproute2 iputils-ping ethtool iperf3 tcpdump
          procps kmod openssh-client openssh-server)

say() { printf 'tenantnet common: %s\n' "$*" >&2; }
die() { say "$*"; exit 1; }

[ "$(id -u)" -eq 0 ] || die "run as root (Vagrant's shell provisioner does)"
[ -f "$SRC/setup.cfg" ] || die "$SRC has no tenantnet tree: is the rsync synced folder up?"
case "$ROLE" in
    controller) REQUIREMENTS="$SRC/requirements.txt"; COMMANDS=(tenantnet ryu-manager) ;;
    compute|network) REQUIREMENTS="$SRC/vagrant/provision/requirements-node.txt"; COMMANDS=(tenantnet) ;;
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
    # --no-compile: modules are byte-compiled when first imported (most never are here)
    pip=("$VENV/bin/python" -m pip install -q --disable-pip-version-check --no-input --no-compile)
    links=()
    for dir in "${WHEELHOUSES[@]}"; do
        [ -n "$dir" ] && [ -d "$dir" ] && links+=(--find-links "$dir")
    done
    log="$(mktemp)"
    trap 'rm -f "$log"' EXIT
    if [ "${#links[@]}" -gt 0 ] && "${pip[@]}" --no-index "${links[@]}" -r "$REQUIREMENTS" 2>"$log"; then
        say "installed the pinned dependencies of a $ROLE ($REQUIREMENTS) into $VENV, offline (${links[*]})"
    else
        [ "${#links[@]}" -eq 0 ] || say "the wheelhouses (${links[*]}) lack a pin of $REQUIREMENTS ($(tail -n1 "$log")): using the package index"
        say "installing the pinned dependencies of a $ROLE ($REQUIREMENTS) into $VENV"
        "${pip[@]}" -r "$REQUIREMENTS" || die "pip could not install $REQUIREMENTS (no package index reachable? set TENANTNET_WHEELHOUSE on the host to a directory of wheels)"
    fi
    echo "$want" > "$stamp"
fi
# tenantnet itself: the rsynced tree, imported in place (a .pth file), and its commands as
# console wrappers; what `pip install -e` would give, without a build backend or network.
site="$("$VENV/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')"
echo "$SRC" > "$site/tenantnet-src.pth"
declare -A entry=([tenantnet]="tenantnet.cli.main" [ryu-manager]="tenantnet.controller.ryumanager")
for cmd in "${COMMANDS[@]}"; do
    printf '#!%s\nimport sys\nfrom %s import main\nsys.exit(main())\n' \
        "$VENV/bin/python" "${entry[$cmd]}" > "$VENV/bin/$cmd.new"
    chmod 755 "$VENV/bin/$cmd.new"
    mv -f "$VENV/bin/$cmd.new" "$VENV/bin/$cmd"
done
"$VENV/bin/python" -c 'import tenantnet.cli.main' || die "tenantnet does not import from $VENV"
ln -sf "$VENV/bin/tenantnet" /usr/local/bin/tenantnet
say "ok: $("$VENV/bin/python" -c 'import tenantnet; print("tenantnet", tenantnet.__version__)'), $(ovs-vsctl --version | head -n1)"
