#!/usr/bin/env bash
# Put every wheel the images install into .lab/wheels/ (inside the Docker build context), built
# and downloaded on the host, so that the image build itself needs no network at all.
#
# The wheels must suit the base image's Python, not the host's: when both are the same version
# and platform this is the compiled core's wheel (scripts/core.sh, if it built one) or a plain
# `pip wheel '.[fast]'`; otherwise (e.g. a 3.11 host building for
# python:3.12-slim) the project wheel is built here and its dependencies are downloaded as binary
# wheels for the image's Python version and glibc.
# Knobs: PYTHON (python3), BASE_IMAGE (default: .lab/base-image, else python:3.12-slim),
#        WHEEL_EXTRAS (fast).
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
PYTHON=${PYTHON:-python3}
if [ -z "${BASE_IMAGE:-}" ]; then
    BASE_IMAGE=$(cat .lab/base-image 2>/dev/null || echo python:3.12-slim)
fi
EXTRAS=${WHEEL_EXTRAS:-fast}
OUT=.lab/wheels

say() { echo "wheels: $*" >&2; }
die() { echo "wheels: error: $*" >&2; exit 1; }

# "3.12 x86_64 2.36": Python version, machine, glibc version.
probe='import os, platform, sys
glibc = (os.confstr("CS_GNU_LIBC_VERSION") or "glibc 0.0").split()[1]
print(f"{sys.version_info[0]}.{sys.version_info[1]} {platform.machine()} {glibc}")'
target=$(docker run --rm --network none --entrypoint python3 "$BASE_IMAGE" -c "$probe") \
    || die "cannot run python3 in $BASE_IMAGE (run scripts/base-image.sh first)"
host=$("$PYTHON" -c "$probe")
read -r py arch glibc <<<"$target"

tmp=$(mktemp -d "${TMPDIR:-/tmp}/p2p-chat-wheels.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
mkdir -p "$tmp/wheels"

# Same bytes for the same sources: Docker's layer cache then skips the install step.
export SOURCE_DATE_EPOCH=${SOURCE_DATE_EPOCH:-315532800}
pip=("$PYTHON" -m pip --disable-pip-version-check --no-input -q)

# The project wheel with the compiled core, when scripts/core.sh made one with this Python.
# (No build/core/wheel when the core could not be compiled: find would fail, and with it, under
# pipefail, this script.)
compiled=""
if [ -d build/core/wheel ]; then
    compiled=$(find build/core/wheel -name 'p2p_chat-*.whl' | head -n 1)
fi
if [ "$target" = "$host" ] && [ -n "$compiled" ]; then
    say "$(basename "$compiled") (compiled core) and what .[${EXTRAS}] needs, for Python $py"
    "${pip[@]}" wheel "$PWD/$compiled[${EXTRAS}]" -w "$tmp/wheels" \
        || die "pip wheel failed (is PyPI reachable?)"
elif [ "$target" = "$host" ]; then
    say "building .[${EXTRAS}] for Python $py ($arch, glibc $glibc) with pip wheel (pure-Python core)"
    # From a clean copy: no stale build/ directory can leak into the wheel.
    scripts/clean-copy.sh "$tmp/src"
    "${pip[@]}" wheel "$tmp/src[${EXTRAS}]" -w "$tmp/wheels" \
        || die "pip wheel failed (is PyPI reachable? does the project build?)"
else
    say "building the project wheel here, dependencies as binary wheels for" \
        "Python $py ($arch, glibc $glibc; host: $host)"
    scripts/clean-copy.sh "$tmp/src"
    "${pip[@]}" wheel --no-deps "$tmp/src" -w "$tmp/wheels" || die "pip wheel failed"
    whl=$(find "$tmp/wheels" -name 'p2p_chat-*.whl' | head -n 1)
    [ -n "$whl" ] || die "pip wheel produced no p2p_chat wheel"
    platforms=(--platform "manylinux2014_$arch")
    for ((minor = ${glibc#*.}; minor >= 17; minor--)); do
        platforms+=(--platform "manylinux_2_${minor}_$arch")
    done
    "${pip[@]}" download --only-binary=:all: --implementation cp --python-version "$py" \
        "${platforms[@]}" -d "$tmp/wheels" "${whl}[${EXTRAS}]" \
        || die "pip download failed (is PyPI reachable? a dependency without a binary wheel for Python $py?)"
fi

rm -rf "$OUT"
mkdir -p "$(dirname "$OUT")"
mv "$tmp/wheels" "$OUT"
say "$(find "$OUT" -name '*.whl' | wc -l) wheels in $OUT:" \
    "$(find "$OUT" -name '*.whl' -printf '%f\n' | sort | tr '\n' ' ')"
