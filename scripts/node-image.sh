#!/usr/bin/env bash
# The image of a swarm node for `make swarm-up NODES=3` (docs/SWARM.md): Debian with Docker's
# engine, built offline as the lab's base image is (mmdebstrap + docker import, no registry),
# and printed on stdout. Its entrypoint is scripts/node-entrypoint.sh (copied in at run time).
# Knobs: NODE_IMAGE (p2p-chat-node:bookworm), NODE_REBUILD=1, BASE_SUITE (bookworm).
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
NODE_IMAGE=${NODE_IMAGE:-p2p-chat-node:bookworm}
BASE_SUITE=${BASE_SUITE:-bookworm}

say() { echo "node-image: $*" >&2; }
die() { echo "node-image: error: $*" >&2; exit 1; }

if [ "${NODE_REBUILD:-0}" != 1 ] && docker image inspect "$NODE_IMAGE" >/dev/null 2>&1; then
    say "using $NODE_IMAGE (already present)"
    echo "$NODE_IMAGE"
    exit 0
fi
if [ "$(id -u)" -ne 0 ] || ! command -v mmdebstrap >/dev/null 2>&1; then
    die "building $NODE_IMAGE needs root and mmdebstrap (apt-get install -y mmdebstrap)"
fi
say "building $NODE_IMAGE from Debian $BASE_SUITE packages (about a minute)"
mmdebstrap --quiet --variant=minbase --include=docker.io,iptables,ca-certificates,procps \
    --mode=root "$BASE_SUITE" - | docker import - "$NODE_IMAGE" >/dev/null \
    || die "mmdebstrap or docker import failed"
echo "$NODE_IMAGE"
