#!/usr/bin/env bash
# Runs on the Vagrant host, as a trigger before up/provision/reload (after cluster-key.sh),
# when the lab uses TLS (TENANTNET_SECURITY=tls, the default):
#   cluster-pki.sh DIR CONTROLLER_IP [NAME=MANAGEMENT_IP ...]
# Makes the lab's PKI in DIR/pki (vagrant/.cluster/pki, git-ignored, never rsynced), in
# tenantnet.pki's layout, with this checkout's own `python3 -m tenantnet.cli.pki` (nothing
# to install but python3's cryptography package: Debian's python3-cryptography):
# - DIR/pki/ca: the provider, node and tenant CAs. Their keys never leave this machine;
# - DIR/pki/provider: the provider controller's key and certificate (naming CONTROLLER_IP,
#   the address of its HTTPS API and of its OpenFlow and OVSDB connections);
# - DIR/pki/node/NAME: each node's, naming its management address;
# - DIR/pki/tenant/TENANT: each tenant's of the controller's config (make-config.py
#   --tenants), for the tenants' own controllers and API clients.
# The Vagrantfile uploads to each machine only its part: a node gets DIR/pki/node/NAME, the
# controller DIR/pki/provider and DIR/pki/tenant. Every part is made once: a re-run changes
# nothing (tenantnet pki keeps what is current). vagrant-libvirt runs the triggers of all
# machines at once: runs are serialized by cluster-key.sh's lock directory. Lab-only CAs:
# never trust them elsewhere. TENANTNET_HOST_PYTHON: the interpreter (default python3).
set -euo pipefail

usage="usage: cluster-pki.sh DIR CONTROLLER_IP [NAME=MANAGEMENT_IP ...]"
dir="${1:?$usage}"
controller="${2:?$usage}"
shift 2
python="${TENANTNET_HOST_PYTHON:-python3}"
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
tree="$(cd "$here/../.." && pwd)"

# shellcheck source=cluster-lib.sh
source "$here/cluster-lib.sh"

[[ "$controller" =~ ^[0-9.]+$ ]] || die "controller address $controller: expected an IPv4 address"
check_node_specs "$@"
command -v "$python" >/dev/null || die "$python not found on the host (or set TENANTNET_HOST_PYTHON)"
"$python" -c 'import cryptography' 2>/dev/null ||
    die "$python has no cryptography module: install it (Debian/Ubuntu: apt install python3-cryptography; else pip install cryptography), or bring the lab up without TLS: TENANTNET_SECURITY=insecure"
[ -f "$tree/tenantnet/pki.py" ] || die "$tree/tenantnet/pki.py is missing: run this from a tenantnet checkout"

lock_cluster_dir "$dir"

pki=(env PYTHONPATH="$tree" "$python" -m tenantnet.cli.pki)
root="$dir/pki"
digest() { [ -d "$root" ] && find "$root" -type f ! -name '*.tmp*' -print0 | sort -z | xargs -0 -r sha256sum; }
before="$(digest || true)"

mapfile -t tenants < <("$python" "$here/make-config.py" --tenants)
[ "${#tenants[@]}" -gt 0 ] || die "make-config.py --tenants named no tenant"
"${pki[@]}" init --dir "$root" --address "$controller" >/dev/null
for spec in "$@"; do
    "${pki[@]}" node "${spec%%=*}" --dir "$root" --address "${spec#*=}" >/dev/null
done
for tenant in "${tenants[@]}"; do
    "${pki[@]}" tenant "$tenant" --dir "$root" >/dev/null
done
chmod 700 "$root" "$root/ca"

if [ "$(digest || true)" != "$before" ]; then
    say "wrote $root: CAs (their keys stay here), provider $controller, nodes ${*%%=*}, tenants ${tenants[*]}"
fi
