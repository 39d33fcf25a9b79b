#!/usr/bin/env bash
# Build the compiled form of the core (chat_protocol, with mypyc: setup.py, P2P_CHAT_MYPYC=1):
#   build/core/wheel/p2p_chat-*-cp3XX-*.whl   the project's wheel, core compiled (the images use it)
#   build/core/lib/                            its chat_protocol package and mypyc's runtime, for
#                                              CHAT_CORE_DIR (tests, bench, local programs)
# from a clean copy of the tracked and new files (scripts/clean-copy.sh). Needs a C compiler and
# the Python headers (pip fetches setuptools and mypy); on failure it says what is missing and
# exits non-zero, and the caller falls back to the pure-Python core (the Makefile does, except
# under CI=true).
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
PYTHON=${PYTHON:-python3}
OUT=build/core

say() { echo "core: $*" >&2; }
die() { echo "core: error: $*" >&2; exit 1; }

t0=$SECONDS
headers='import os, sys, sysconfig
sys.exit(not os.path.exists(os.path.join(sysconfig.get_paths()["include"], "Python.h")))'
missing=()
command -v "${CC:-cc}" >/dev/null 2>&1 || missing+=(gcc)
"$PYTHON" -c "$headers" || missing+=(python3-dev)
if [ ${#missing[@]} -gt 0 ]; then
    if [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null 2>&1; then
        say "installing what a compile needs: ${missing[*]} (apt-get)"
        DEBIAN_FRONTEND=noninteractive apt-get update -qq </dev/null || die "apt-get update failed"
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" </dev/null >/dev/null \
            || die "apt-get install ${missing[*]} failed"
    else
        die "a compile needs ${missing[*]} (Debian: sudo apt-get install -y ${missing[*]})"
    fi
    "$PYTHON" -c "$headers" || die "still no Python.h for $("$PYTHON" -V 2>&1) (not Debian's python?)"
fi

tmp=$(mktemp -d "${TMPDIR:-/tmp}/p2p-chat-core.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
mkdir -p "$tmp/wheel"
scripts/clean-copy.sh "$tmp/src"

say "compiling chat_protocol with mypyc ($("$PYTHON" -V 2>&1); about a minute)"
export SOURCE_DATE_EPOCH=${SOURCE_DATE_EPOCH:-315532800}
P2P_CHAT_MYPYC=1 "$PYTHON" -m pip --disable-pip-version-check --no-input -q \
    wheel --no-deps "$tmp/src" -w "$tmp/wheel" >"$tmp/log" 2>&1 \
    || { tail -n 30 "$tmp/log" >&2; die "the mypyc build failed (above)"; }
whl=$(find "$tmp/wheel" -name 'p2p_chat-*.whl' | head -n 1)
case "$whl" in *-py3-none-any.whl | "") die "pip built no compiled wheel: $whl" ;; esac

rm -rf "$OUT"
mkdir -p "$OUT/wheel" "$OUT/lib"
mv "$whl" "$OUT/wheel/"
"$PYTHON" - "$OUT/wheel/$(basename "$whl")" "$OUT/lib" <<'PY'
import sys, zipfile
whl, lib = sys.argv[1:]
with zipfile.ZipFile(whl) as z:
    z.extractall(lib, [n for n in z.namelist() if n.startswith("chat_protocol/") or "__mypyc" in n])
PY
"$PYTHON" -c 'import sys; sys.path.insert(0, sys.argv[1])
import chat_protocol
assert chat_protocol.compiled(), chat_protocol.__file__' "$PWD/$OUT/lib" \
    || die "the compiled core does not import"
say "ready in $((SECONDS - t0))s: $OUT/wheel/$(basename "$whl"), $OUT/lib"
