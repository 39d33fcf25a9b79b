#!/usr/bin/env bash
# A short scripted conversation between two client containers, printed as it happens, so a
# newcomer sees the chat work: alice and bob sign in, list, message each other, hit an error,
# and sign out. The clients read piped stdin (`docker compose run -T`, no TTY, no prompt).
# Runs in its own compose project ($DEMO_PROJECT), removed at the end whatever happens.
# Needs the images (`make demo` builds them first).
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
PROJECT=${DEMO_PROJECT:-p2p-chat-demo}
WAIT_S=${DEMO_WAIT_S:-20}
compose=(docker compose -p "$PROJECT")
work=.lab/demo

die() { echo "demo: error: $*" >&2; exit 1; }

declare -A fd pid seen
cleanup() {
    local name f
    for name in "${!fd[@]}"; do f=${fd[$name]}; exec {f}>&- 2>/dev/null || true; done
    for name in "${!pid[@]}"; do kill "${pid[$name]}" 2>/dev/null || true; done
    "${compose[@]}" --profile '*' down -v --remove-orphans --timeout 2 >/dev/null 2>&1 || true
}
trap cleanup EXIT

# Print what NAME's client printed since last time (Compose's own status lines left out).
show() {
    local name=$1 from=$((${seen[$1]:-0} + 1)) n
    n=$(wc -l <"$work/$name.out")
    if [ "$n" -ge "$from" ]; then
        sed -n "${from},${n}p" "$work/$name.out" \
            | { grep -Ev '^\s*(\[\+\]|Container |Network )' || true; } | sed "s/^/    [$name's screen] /"
        seen[$name]=$n
    fi
}

# Wait (bounded) until NAME's client has printed TEXT.
expect() {
    local name=$1 text=$2 deadline=$((SECONDS + WAIT_S))
    until grep -qF -- "$text" "$work/$name.out"; do
        if [ "$SECONDS" -ge "$deadline" ] || ! kill -0 "${pid[$name]}" 2>/dev/null; then
            show "$name"
            die "$name's client did not print '$text' within ${WAIT_S}s (full output: $work/$name.out)"
        fi
        sleep 0.2
    done
    show "$name"
}

start() {
    local name=$1 f
    mkfifo "$work/$name.in"
    : >"$work/$name.out"
    "${compose[@]}" run --rm -T --name "$PROJECT-$name" client -u "$name" \
        <"$work/$name.in" >"$work/$name.out" 2>&1 &
    pid[$name]=$!
    exec {f}>"$work/$name.in"   # returns once the client's end is open too: no race
    fd[$name]=$f
    echo "  -- $name starts a client: docker compose run --rm -T client -u $name"
}

type_line() {
    local name=$1 line=$2
    echo "  $name> $line"
    printf '%s\n' "$line" >&"${fd[$name]}"
}

finish() {
    local name=$1 deadline=$((SECONDS + WAIT_S)) f=${fd[$1]}
    exec {f}>&-
    unset "fd[$name]"
    while kill -0 "${pid[$name]}" 2>/dev/null; do
        [ "$SECONDS" -lt "$deadline" ] || die "$name's client did not exit within ${WAIT_S}s"
        sleep 0.2
    done
    local rc=0
    wait "${pid[$name]}" || rc=$?
    unset "pid[$name]"
    show "$name"
    echo "  -- $name's client exited with status $rc"
    [ "$rc" -eq 0 ] || die "$name's client exited with status $rc"
}

rm -rf "$work"
mkdir -p "$work"
echo "== starting the server (compose project $PROJECT)"
"${compose[@]}" up -d --wait server >"$work/up.log" 2>&1 || true
# (Compose v2.40 `up --wait` exits 0 even when the server exited: ask Docker for its health.)
server_id=$("${compose[@]}" ps -a -q server)
status=$(docker inspect -f '{{if .State.Health}}{{.State.Health.Status}}{{else}}{{.State.Status}}{{end}}' \
    "$server_id" 2>/dev/null || echo missing)
if [ "$status" != healthy ]; then
    cat "$work/up.log"
    "${compose[@]}" logs --no-color server | tail -n 20
    die "the server is $status, not healthy"
fi
echo "  -- server healthy at $(docker inspect -f '{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}' \
    "$server_id"):5000/udp"

echo "== two clients sign in"
start bob;   expect bob "signed in as bob"
start alice; expect alice "signed in as alice"

echo "== alice looks who is online and writes to bob, who answers"
type_line alice "list";                                  expect alice "online (2)"
type_line alice "send bob hi bob, this is alice";       expect bob ": hi bob, this is alice"
type_line bob "send alice hello alice, got it";         expect alice ": hello alice, got it"

echo "== mistakes get one-line errors, and the client keeps running"
type_line alice "send carol are you there?";            expect alice "no such user: carol"
type_line alice "shout hello";                          expect alice "unknown command 'shout'"

echo "== both sign out"
type_line alice "exit"; finish alice
type_line bob "exit";   finish bob

echo "== what the server logged"
"${compose[@]}" logs --no-color --no-log-prefix server 2>/dev/null | sed 's/^/    [server] /' || true
echo "== demo finished; removing the demo project"
