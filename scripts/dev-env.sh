#!/usr/bin/env bash
# Make (or bring up to date) the Python environment the Makefile runs everything with:
#   scripts/dev-env.sh DIR
# DIR is the checkout's .venv (created here from $BOOTSTRAP_PYTHON, default python3: whatever
# the machine has, >= 3.11) or an already active virtualenv. The project is installed into it,
# editable, with its dev, fast and bench extras; then DIR/.p2p-chat-installed is touched, which
# the Makefile compares with pyproject.toml to decide whether to run this again.
#
# Debian's python3 has no `venv` module without the python3-venv package: as root with apt-get,
# this installs it (and says so); otherwise it prints the one command that does.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
dir=${1:?usage: scripts/dev-env.sh DIR}
BOOTSTRAP_PYTHON=${BOOTSTRAP_PYTHON:-python3}
export PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_ROOT_USER_ACTION=ignore PIP_NO_INPUT=1

say() { echo "dev-env: $*" >&2; }
die() { echo "dev-env: error: $*" >&2; exit 1; }

t0=$SECONDS
if ! "$dir/bin/python" -c '' 2>/dev/null; then
    command -v "$BOOTSTRAP_PYTHON" >/dev/null 2>&1 \
        || die "no $BOOTSTRAP_PYTHON on PATH; install Python >= 3.11 (Debian: apt-get install python3)"
    "$BOOTSTRAP_PYTHON" -c 'import sys; sys.exit(sys.version_info < (3, 11))' \
        || die "$("$BOOTSTRAP_PYTHON" -V 2>&1) is too old (>= 3.11 needed); pick another with" \
               "BOOTSTRAP_PYTHON=python3.12 (or PYTHON=... to use an interpreter as it is)"
    if ! "$BOOTSTRAP_PYTHON" -c 'import ensurepip, venv' 2>/dev/null; then
        pkg="python3-venv"
        if [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null 2>&1; then
            say "$BOOTSTRAP_PYTHON has no venv module; installing $pkg (apt-get)"
            DEBIAN_FRONTEND=noninteractive apt-get update -qq </dev/null \
                || die "apt-get update failed"
            DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$pkg" </dev/null >/dev/null \
                || die "apt-get install $pkg failed"
        elif command -v apt-get >/dev/null 2>&1; then
            die "$BOOTSTRAP_PYTHON has no venv module; run: sudo apt-get install -y $pkg"
        else
            die "$BOOTSTRAP_PYTHON has no venv module (ensurepip); install your system's venv package"
        fi
    fi
    say "creating the virtual environment $dir ($("$BOOTSTRAP_PYTHON" -V 2>&1))"
    [ ! -e "$dir" ] || [ -f "$dir/pyvenv.cfg" ] || die "$dir exists and is not a virtual environment"
    rm -rf "$dir"   # a broken venv (its python moved or gone): made anew
    "$BOOTSTRAP_PYTHON" -m venv "$dir" || die "$BOOTSTRAP_PYTHON -m venv $dir failed"
fi
say "installing the project into $dir: pip install -e '.[dev,fast,bench]'"
"$dir/bin/python" -m pip install -q -e '.[dev,fast,bench]' </dev/null \
    || die "pip install failed (is the package index reachable?)"
touch "$dir/.p2p-chat-installed"
say "ready in $((SECONDS - t0))s: $("$dir/bin/python" -V 2>&1) in $dir"
