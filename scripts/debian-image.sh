#!/usr/bin/env bash
# Build a Docker image from Debian packages, offline of any container registry: mmdebstrap
# (minbase + PACKAGES, no recommends, no docs, man pages or locales; merged /usr by mmdebstrap's
# hook) piped into `docker import`. Needs root, mmdebstrap and a Debian mirror. The image it
# replaces, if any, is removed. The one copy of this recipe, for the chat base
# (scripts/base-image.sh) and the NAT lab's router (scripts/router-image.sh).
#
#   scripts/debian-image.sh NAME SUITE PACKAGES CMD_JSON MESSAGE [MIRROR]
#   e.g. scripts/debian-image.sh p2p-chat-base:bookworm bookworm python3,python3-venv \
#            '["python3"]' "p2p-chat offline base"
set -euo pipefail

name=${1:?usage: debian-image.sh NAME SUITE PACKAGES CMD_JSON MESSAGE [MIRROR]}
suite=${2:?suite}
packages=${3:?packages}
cmd=${4:?cmd (JSON)}
message=${5:?message}
mirror=${6:-}

die() { echo "debian-image: error: $*" >&2; exit 1; }
[ "$(id -u)" -eq 0 ] && command -v mmdebstrap >/dev/null 2>&1 \
    || die "building $name needs root and mmdebstrap (scripts/lab-setup.sh installs it)"

work=$(mktemp -d "${TMPDIR:-/var/tmp}/p2p-chat-image.XXXXXX")
trap 'rm -rf "$work"' EXIT
mirrors=()
[ -n "$mirror" ] && mirrors=("$mirror")
# Size: merged /usr set up by mmdebstrap's hook (instead of the usrmerge package, which drags
# in perl: ~50 MB), no recommends, no docs/man pages/locales (copyright files kept).
if ! mmdebstrap --quiet --mode=root --variant=minbase --format=tar \
        --hook-dir=/usr/share/mmdebstrap/hooks/merged-usr \
        --include="$packages" \
        --aptopt='APT::Install-Recommends "false"' \
        --dpkgopt='path-exclude=/usr/share/doc/*' \
        --dpkgopt='path-include=/usr/share/doc/*/copyright' \
        --dpkgopt='path-exclude=/usr/share/man/*' \
        --dpkgopt='path-exclude=/usr/share/info/*' \
        --dpkgopt='path-exclude=/usr/share/locale/*' \
        "$suite" "$work/rootfs.tar" ${mirrors[@]+"${mirrors[@]}"} </dev/null >"$work/mmdebstrap.log" 2>&1; then
    tail -n 5 "$work/mmdebstrap.log" >&2
    die "mmdebstrap failed for $name (no Debian mirror reachable?)"
fi
old_id=$(docker image inspect --format '{{.Id}}' "$name" 2>/dev/null || true)
docker import \
    --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
    --change 'ENV LANG=C.UTF-8' \
    --change "CMD $cmd" \
    --message "$message: Debian $suite minbase + $packages (mmdebstrap)" \
    "$work/rootfs.tar" "$name" >/dev/null || die "docker import of $name failed"
new_id=$(docker image inspect --format '{{.Id}}' "$name")
if [ -n "$old_id" ] && [ "$old_id" != "$new_id" ]; then
    docker image rm "$old_id" >/dev/null 2>&1 || true
fi
