#!/usr/bin/env bash
# Runs on the Vagrant host, as a trigger before up/provision/reload. vagrant-libvirt brings
# machines up in parallel, so several runs may start at once:
#   cluster-key.sh DIR COMPUTE_NODES [NAME=MANAGEMENT_IP ...]
# Makes the lab's files in DIR (vagrant/.cluster, git-ignored), each once:
# - id_ed25519, id_ed25519.pub: the key the controller uses to reach every node as root.
#   The Vagrantfile uploads the private key to the controller only; nodes get the public
#   key (node.sh authorizes it). Nothing in DIR is rsynced.
# - hostkeys/NAME, hostkeys/NAME.pub: each node's SSH host key, installed by node.sh, so a
#   node that is destroyed and made again keeps its identity;
# - known_hosts: those host keys by address and name, the controller's known hosts for the
#   nodes (strict checking: no trust on first use, and no "host key changed");
# - compute-nodes: the number of compute nodes the lab was first brought up with. The
#   Vagrantfile reads it, so a later command without TENANTNET_COMPUTE_NODES keeps it and a
#   different count is refused.
# Runs are serialized by a lock directory (mkdir is atomic), and every file is written
# under a temporary name and renamed into place, so no run sees half a key pair and two
# runs never make two keys. Lab-only keys: never reuse them elsewhere.
set -euo pipefail

usage="usage: cluster-key.sh DIR COMPUTE_NODES [NAME=MANAGEMENT_IP ...]"
dir="${1:?$usage}"
count="${2:?$usage}"
shift 2

# shellcheck source=cluster-lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/cluster-lib.sh"

[[ "$count" =~ ^[1-9][0-9]*$ ]] || die "compute node count $count: expected a positive integer"
check_node_specs "$@"
command -v ssh-keygen >/dev/null || die "ssh-keygen not found on the host (install OpenSSH)"

lock_cluster_dir "$dir"
tmp="$(mktemp -d "$dir/.new.XXXXXX")"
cluster_cleanup+=("$tmp")

pair_ok() {       # pair_ok PATH: PATH and PATH.pub are one key pair
    [ -s "$1" ] && [ -s "$1.pub" ] || return 1
    [ "$(ssh-keygen -y -f "$1" 2>/dev/null | cut -d' ' -f1,2)" = "$(cut -d' ' -f1,2 "$1.pub")" ]
}

key_pair() {      # key_pair PATH COMMENT: an ed25519 key pair at PATH(.pub), made once
    local path="$1" comment="$2"
    pair_ok "$path" && return 0
    rm -f "$tmp/key" "$tmp/key.pub"
    ssh-keygen -q -t ed25519 -N "" -C "$comment" -f "$tmp/key"
    mkdir -p "$(dirname "$path")"
    mv -f "$tmp/key" "$path"
    mv -f "$tmp/key.pub" "$path.pub"
    say "made $path"
}

publish() {       # publish PATH: $tmp/out becomes PATH unless PATH already holds the same
    if cmp -s "$tmp/out" "$1"; then
        rm -f "$tmp/out"
    else
        mv -f "$tmp/out" "$1"
        say "wrote $1"
    fi
}

# -- the node count -------------------------------------------------------------------------
record="$dir/compute-nodes"
if [ -s "$record" ]; then
    have="$(tr -d '[:space:]' < "$record")"
    [ "$have" = "$count" ] || die "this lab was brought up with $have compute nodes ($record), not $count: unset TENANTNET_COMPUTE_NODES to keep $have; to change it, vagrant destroy -f, remove $record, then vagrant up"
else
    printf '%s\n' "$count" > "$tmp/out"
    publish "$record"
fi

# -- the controller's client key, the nodes' host keys, the controller's known_hosts --------
key_pair "$dir/id_ed25519" "tenantnet-cluster"
: > "$tmp/known_hosts"
for spec in "$@"; do
    name="${spec%%=*}"
    ip="${spec#*=}"
    key_pair "$dir/hostkeys/$name" "tenantnet-$name-host"
    printf '%s,%s %s\n' "$ip" "$name" "$(cut -d' ' -f1,2 "$dir/hostkeys/$name.pub")" \
        >> "$tmp/known_hosts"
done
if [ "$#" -gt 0 ]; then
    mv -f "$tmp/known_hosts" "$tmp/out"
    publish "$dir/known_hosts"
fi
