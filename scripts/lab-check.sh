#!/usr/bin/env bash
# Can the lab run here? The one check of the Docker engine and Compose v2, used by the Makefile,
# scripts/lab-setup.sh, scripts/base-image.sh and labkit.engine (the tests and the chaos runs).
#
#   scripts/lab-check.sh           the engine answers and Compose v2 is installed
#   scripts/lab-check.sh engine    the engine answers (`docker info`)
#   scripts/lab-check.sh compose   `docker compose` is Compose v2
#
# Exit 0 and print nothing when it can; otherwise exit 1 and print one line saying why
# (no docker command, no engine answering and what `docker info` said, no Compose v2).
set -uo pipefail

what=${1:-all}
case $what in
    all | engine | compose) ;;
    *) echo "usage: scripts/lab-check.sh [engine|compose]" >&2; exit 2 ;;
esac

if ! command -v docker >/dev/null 2>&1; then
    echo "no docker command"
    exit 1
fi

if [ "$what" != compose ]; then
    if ! err=$(timeout 30 docker info 2>&1 >/dev/null); then
        why=$(printf '%s\n' "$err" | grep -v '^[[:space:]]*$' | tail -n 1)
        echo "no Docker engine answering (${why:-no output})"
        exit 1
    fi
fi

if [ "$what" != engine ]; then
    if ! timeout 30 docker compose version --short 2>/dev/null | grep -Eq '^v?2\.'; then
        echo "no Docker Compose v2 (docker compose)"
        exit 1
    fi
fi
exit 0
