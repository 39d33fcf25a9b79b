#!/usr/bin/env bash
# Copy the checkout's tracked and new (not ignored) files into DEST, for a build that must not
# see a stale build/ directory or touch the work tree:   scripts/clean-copy.sh DEST
# (Files deleted from the work tree but still in the index are skipped. Outside a git checkout:
# everything but .lab, .git and build.) Used by scripts/core.sh and scripts/wheels.sh.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
dest=${1:?usage: scripts/clean-copy.sh DEST}
mkdir -p "$dest"
if git rev-parse --is-inside-work-tree >/dev/null 2>&1; then
    # shellcheck disable=SC2016  # $f belongs to the inner sh
    git ls-files -z --cached --others --exclude-standard \
        | xargs -0 sh -c 'for f; do [ -e "$f" ] && printf "%s\0" "$f"; done' sh \
        | tar --null -T - -cf - | tar -xf - -C "$dest"
else
    tar --exclude=./.lab --exclude=./.git --exclude=./build -cf - . | tar -xf - -C "$dest"
fi
