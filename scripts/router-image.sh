#!/usr/bin/env bash
# Make sure the NAT lab's router image exists, and print its name on stdout.
#
# One image serves every container of compose.nat.yaml that is not a chat process: the NAT
# routers, the STUN server (coturn's turnserver), the RFC 5780 classifier
# (turnutils_natdiscovery), and the small "net" holders that give a chat container its routes.
# It is built offline, as scripts/base-image.sh builds the chat base: mmdebstrap (Debian
# minbase + the packages below) piped into `docker import`. No registry is needed, only a
# Debian mirror; an image already present is reused (ROUTER_REBUILD=1 builds it again).
#
# Knobs: ROUTER_IMAGE (p2p-chat-router:bookworm), ROUTER_SUITE (bookworm), ROUTER_MIRROR
#        (default: mmdebstrap's), ROUTER_PACKAGES, ROUTER_REBUILD=1.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
ROUTER_IMAGE=${ROUTER_IMAGE:-p2p-chat-router:bookworm}
ROUTER_SUITE=${ROUTER_SUITE:-bookworm}
ROUTER_MIRROR=${ROUTER_MIRROR:-}
# nftables: the NAT kinds (scripts/nat/router.sh); iproute2: addresses and routes; coturn:
# turnserver (STUN, RFC 5780) and turnutils_natdiscovery; tcpdump: to look at a router's
# interfaces; procps: sysctl.
ROUTER_PACKAGES=${ROUTER_PACKAGES:-nftables,iproute2,coturn,tcpdump,procps}

say() { echo "router-image: $*" >&2; }
die() { echo "router-image: error: $*" >&2; exit 1; }
have() { docker image inspect "$1" >/dev/null 2>&1; }

docker info >/dev/null 2>&1 || die "no Docker engine answering; run scripts/lab-setup.sh first"

if [ "${ROUTER_REBUILD:-0}" != 1 ] && have "$ROUTER_IMAGE"; then
    say "using $ROUTER_IMAGE (already present)"
    printf '%s\n' "$ROUTER_IMAGE"
    exit 0
fi

if [ "$(id -u)" -ne 0 ] || ! command -v mmdebstrap >/dev/null 2>&1; then
    die "no $ROUTER_IMAGE and cannot build it (needs root and mmdebstrap: scripts/lab-setup.sh)"
fi

say "building $ROUTER_IMAGE with mmdebstrap ($ROUTER_SUITE minbase + $ROUTER_PACKAGES)"
t0=$SECONDS
scripts/debian-image.sh "$ROUTER_IMAGE" "$ROUTER_SUITE" "$ROUTER_PACKAGES" '["sleep", "infinity"]' \
    "p2p-chat NAT lab router" "$ROUTER_MIRROR"
# Check the tools the lab uses now, not in the middle of `make nat-up`.
docker run --rm --network none "$ROUTER_IMAGE" sh -c \
    'command -v nft && command -v ip && command -v turnserver && command -v turnutils_natdiscovery' \
    >/dev/null || { docker image rm -f "$ROUTER_IMAGE" >/dev/null 2>&1 || true
                    die "$ROUTER_IMAGE lacks nft, ip or coturn's tools; removed it"; }
say "built $ROUTER_IMAGE in $((SECONDS - t0))s"
printf '%s\n' "$ROUTER_IMAGE"
