#!/usr/bin/env bash
# Runs on the Vagrant host (a trigger before up/provision/reload): make the SSH key pair
# the controller uses to reach every node as root, once, in DIR (vagrant/.cluster). The
# rsynced tree carries it into the machines: controller.sh installs the private key,
# node.sh authorizes the public one. Lab-only key: never reuse it elsewhere.
set -euo pipefail

dir="${1:?usage: cluster-key.sh DIR}"
key="$dir/id_ed25519"
if [ -s "$key" ] && [ -s "$key.pub" ]; then
    exit 0
fi
command -v ssh-keygen >/dev/null || { echo "cluster-key: ssh-keygen not found on the host (install OpenSSH)" >&2; exit 1; }
mkdir -p "$dir"
chmod 700 "$dir"
rm -f "$key" "$key.pub"
ssh-keygen -q -t ed25519 -N "" -C "tenantnet-cluster" -f "$key"
echo "cluster-key: made $key"
