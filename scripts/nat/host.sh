#!/bin/sh
# A lab host that holds a network namespace for a chat process (compose.nat.yaml's host-*
# services; the chat containers join it with `network_mode: service:host-...`), as a
# Kubernetes pod's pause container does. It sets the namespace's routes (ROUTES, see lib.sh)
# so that the chat images stay unchanged and unprivileged: only this holder has NET_ADMIN.
set -eu
. /lab/lib.sh
add_routes "${ROUTES:-}"
say "routes: $(ip -4 route show | tr '\n' ';')"
ready_and_wait
