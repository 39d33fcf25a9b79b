#!/usr/bin/env bash
# Make sure a Python base image for the Dockerfile exists, and print its name on stdout
# (also written to .lab/base-image, which `make images` passes as --build-arg BASE_IMAGE).
#
# Order of preference:
#   1. $BASE_IMAGE (default python:3.12-slim, the official image) if it is already local;
#   2. `docker pull $BASE_IMAGE`, bounded by $PULL_TIMEOUT_S seconds;
#   3. the offline fallback $FALLBACK_IMAGE (default p2p-chat-base:bookworm) if already local;
#   4. build that fallback from Debian packages: mmdebstrap (minbase + python3, python3-venv)
#      piped into `docker import`. Needs root and a Debian mirror, not a container registry;
#   5. otherwise stop with one line saying what to do.
# Knobs: BASE_IMAGE, FALLBACK_IMAGE, PULL_TIMEOUT_S (20), LAB_OFFLINE=1 (skip the pull),
#        BASE_SUITE (bookworm), BASE_MIRROR (default: mmdebstrap's, deb.debian.org + security),
#        BASE_PACKAGES (python3,python3-venv), BASE_REBUILD=1 (rebuild the fallback).
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
BASE_IMAGE=${BASE_IMAGE:-python:3.12-slim}
FALLBACK_IMAGE=${FALLBACK_IMAGE:-p2p-chat-base:bookworm}
PULL_TIMEOUT_S=${PULL_TIMEOUT_S:-20}
BASE_SUITE=${BASE_SUITE:-bookworm}
BASE_MIRROR=${BASE_MIRROR:-}
# python3-venv brings ensurepip's bundled pip wheel, which is all the Dockerfile uses
# (`python3 -m venv /opt/venv` then the venv's pip); python3-pip itself is not needed.
BASE_PACKAGES=${BASE_PACKAGES:-python3,python3-venv}

say() { echo "base-image: $*" >&2; }
die() { echo "base-image: error: $*" >&2; exit 1; }
have() { docker image inspect "$1" >/dev/null 2>&1; }

use() {
    mkdir -p .lab
    printf '%s\n' "$1" >.lab/base-image
    say "using $1 ($2)"
    printf '%s\n' "$1"
    exit 0
}

why=$(scripts/lab-check.sh engine) || die "$why; run scripts/lab-setup.sh first"

have "$BASE_IMAGE" && use "$BASE_IMAGE" "already present"

if [ "${LAB_OFFLINE:-0}" != 1 ]; then
    say "pulling $BASE_IMAGE (at most ${PULL_TIMEOUT_S}s)"
    if timeout --kill-after=5 "$PULL_TIMEOUT_S" docker pull -q "$BASE_IMAGE" >/dev/null 2>&1 \
        && have "$BASE_IMAGE"; then
        use "$BASE_IMAGE" "pulled"
    fi
    say "cannot pull $BASE_IMAGE; falling back to an offline Debian $BASE_SUITE image"
fi

if [ "${BASE_REBUILD:-0}" = 1 ]; then
    say "BASE_REBUILD=1: rebuilding $FALLBACK_IMAGE"
elif have "$FALLBACK_IMAGE"; then
    use "$FALLBACK_IMAGE" "offline fallback, already present"
fi

if [ "$(id -u)" -ne 0 ] || ! command -v mmdebstrap >/dev/null 2>&1; then
    die "no $BASE_IMAGE and cannot build $FALLBACK_IMAGE (needs root and mmdebstrap);" \
        "run 'docker pull $BASE_IMAGE' where a registry is reachable, or scripts/lab-setup.sh as root"
fi

say "building $FALLBACK_IMAGE with mmdebstrap ($BASE_SUITE minbase + $BASE_PACKAGES)"
t0=$SECONDS
scripts/debian-image.sh "$FALLBACK_IMAGE" "$BASE_SUITE" "$BASE_PACKAGES" '["python3"]' \
    "p2p-chat offline base" "$BASE_MIRROR" \
    || die "could not build $FALLBACK_IMAGE; run 'docker pull $BASE_IMAGE' where a registry is reachable"
# A broken base would only show up later, inside the build: check it now.
docker run --rm --network none "$FALLBACK_IMAGE" python3 -c 'import ensurepip, venv' \
    || { docker image rm -f "$FALLBACK_IMAGE" >/dev/null 2>&1 || true
         die "$FALLBACK_IMAGE has no working python3 -m venv; removed it"; }
say "built $FALLBACK_IMAGE in $((SECONDS - t0))s"
use "$FALLBACK_IMAGE" "offline fallback, built now"
