#!/usr/bin/env bash
# Sourced by the host-side triggers cluster-key.sh and cluster-pki.sh (not run by itself):
#   source "$(dirname "${BASH_SOURCE[0]}")/cluster-lib.sh"
# say/die with the calling script's name, the check of NAME=MANAGEMENT_IP arguments, and
# the lock directory that serializes the triggers (vagrant-libvirt runs the triggers of
# all machines at once).
set -euo pipefail

cluster_script="$(basename "$0" .sh)"
cluster_cleanup=()          # paths removed when the script exits (the lock first)

say() { printf '%s: %s\n' "$cluster_script" "$*" >&2; }
die() { say "$*"; exit 1; }

check_node_specs() {    # check_node_specs [NAME=MANAGEMENT_IP ...]
    local spec
    for spec in "$@"; do
        [[ "$spec" =~ ^[A-Za-z0-9][A-Za-z0-9-]*=[0-9.]+$ ]] || die "$spec: expected NAME=MANAGEMENT_IP"
    done
}

lock_cluster_dir() {    # lock_cluster_dir DIR: make DIR (0700) and hold DIR/.lock until exit
    local dir="$1" lock="$1/.lock" tries=0
    mkdir -p "$dir"
    chmod 700 "$dir"
    until mkdir "$lock" 2>/dev/null; do
        tries=$((tries + 1))
        [ "$tries" -le 1200 ] || die "$lock is held for more than 2 minutes; if no vagrant command is running, remove it"
        sleep 0.1
    done
    cluster_cleanup=("$lock")
    trap 'rm -rf "${cluster_cleanup[@]}"' EXIT
}
