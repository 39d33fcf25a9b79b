"""Clients and the server leaving, cleanly or not, in containers.

Detection times are measured from the moment the fault was injected and printed (run with
``-s`` to see them); the bounds are the documented 5 s timeouts plus slack for a loaded machine.
"""

from __future__ import annotations

import re
import subprocess
import time

import pytest

from labkit import faults
from labkit.compose import Compose
from labkit.terminal import TtyClient
from labkit.util import wait_until

pytestmark = pytest.mark.integration

NAMES = ["alice", "bob", "carol", "dave"]
SIGN_OUT_BOUND_S = 2.0
"""`exit` sends BYE at once: the name must be gone from the directory promptly."""
DEAD_CLIENT_BOUND_S = 8.0
"""The server drops a silent client after 5 s (docs/PROTOCOL.md); slack for a loaded machine."""
DEAD_SERVER_BOUND_S = 8.0
"""A client gives up on a silent server after 5 s; same slack."""
STOP_GRACE_S = 5.0
"""compose.yaml: the server's stop_grace_period, within which every client must have exited."""
LIST_POLL_S = 0.2
"""Pace of `list` requests while waiting for the directory to change."""


def seconds(times: dict[str, float]) -> str:
    return ", ".join(f"{name} {t:.2f} s" for name, t in times.items())


def wait_until_unlisted(
    watchers: list[TtyClient], gone: str, since: float, bound: float
) -> dict[str, float]:
    """Run `list` on each watcher until ``gone`` is missing from it; seconds since ``since``."""
    seen: dict[str, float] = {}
    deadline = since + bound
    last: dict[str, list[str]] = {}
    while len(seen) < len(watchers):
        for w in watchers:
            if w.name in seen:
                continue
            names = w.list_names()
            last[w.name] = names
            if gone not in names:
                seen[w.name] = time.monotonic() - since
        if len(seen) == len(watchers):
            break
        if time.monotonic() >= deadline:
            raise AssertionError(
                f"{gone} still listed {bound} s after it left: {last} (seen gone: {seen})"
            )
        time.sleep(LIST_POLL_S)  # pacing of the polls, not a synchronisation
    return seen


def test_a_client_that_exits_or_dies_leaves_the_directory(compose_project: Compose) -> None:
    lab = compose_project
    alice, bob, carol, dave = lab.tty_clients(*NAMES)
    assert alice.list_names() == NAMES

    # `exit`: signs out, exit status 0; the others stop listing carol at once.
    carol.enter("exit")
    carol.expect(r"signed out")
    t0 = time.monotonic()
    assert carol.wait_exit() == 0
    gone = wait_until_unlisted([alice, bob], "carol", t0, SIGN_OUT_BOUND_S)
    print(f"carol (exit) unlisted after {seconds(gone)}")
    alice.enter("send carol are you there?")
    alice.expect(r"✗ no such user: carol")

    # `docker kill` (SIGKILL, no goodbye): the server notices the silence.
    alice.enter("send dave before the crash")  # alice has talked to dave: no cached shortcut
    dave.expect(r"alice \([0-9.]+:\d+\)(?: \(new\))?: before the crash")
    t0 = time.monotonic()
    faults.kill(lab.container("dave"))
    detected = wait_until_unlisted([alice, bob], "dave", t0, DEAD_CLIENT_BOUND_S)
    print(f"dave (docker kill) unlisted after {seconds(detected)}")
    assert dave.wait_exit() != 0
    alice.enter("send dave hello after the crash")
    alice.expect(r"✗ no such user: dave")
    bob.enter("send dave hello from bob")
    bob.expect(r"✗ no such user: dave")
    # The survivors still talk to each other.
    bob.enter("send alice still here")
    alice.expect(r"bob \([0-9.]+:\d+\)(?: \(new\))?: still here")
    assert alice.list_names() == ["alice", "bob"]


def test_server_stop_notifies_every_client(compose_project: Compose) -> None:
    lab = compose_project
    clients = lab.tty_clients(*NAMES[:3])
    t0 = time.monotonic()
    stop = subprocess.Popen(
        lab.argv("stop", "server"),
        env=lab.env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        notified: dict[str, float] = {}
        exited: dict[str, float] = {}
        codes: dict[str, int] = {}
        for c in clients:
            c.expect(r"the server shut down; exiting", timeout=STOP_GRACE_S)
            notified[c.name] = time.monotonic() - t0
        for c in clients:
            codes[c.name] = c.wait_exit(timeout=max(0.1, STOP_GRACE_S - (time.monotonic() - t0)))
            exited[c.name] = time.monotonic() - t0
        out, _ = stop.communicate(timeout=30)
    finally:
        if stop.poll() is None:
            stop.kill()
            stop.wait()
    print(f"server stop: notified after {seconds(notified)}; exited after {seconds(exited)}")
    assert codes == {c.name: 6 for c in clients}, codes
    assert max(exited.values()) <= STOP_GRACE_S, exited
    assert stop.returncode == 0, out
    server = lab.container("server")
    server.reload()
    # The server stopped on SIGTERM by itself (exit 0), not by SIGKILL after the grace period.
    assert server.attrs["State"]["ExitCode"] == 0, server.attrs["State"]
    assert "chat-server stopped" in lab.logs("server")


def test_server_kill_is_noticed_by_every_client(compose_project: Compose) -> None:
    lab = compose_project
    clients = lab.tty_clients(*NAMES[:3])
    t0 = time.monotonic()
    faults.kill(lab.container("server"))
    noticed: dict[str, float] = {}

    def everyone_noticed() -> bool:
        for c in clients:
            if c.name not in noticed and c.poll(r"lost contact with the server"):
                noticed[c.name] = time.monotonic() - t0
        return len(noticed) == len(clients)

    wait_until(
        everyone_noticed,
        DEAD_SERVER_BOUND_S,
        "every client to print 'lost contact with the server'",
        lambda: "\n".join(f"{c.name}: {c.transcript()[-300:]!r}" for c in clients),
    )
    print(f"server kill noticed after {seconds(noticed)}")
    # The bound is on `docker compose run --rm`, which removes the container after the client
    # exits: seconds more on a loaded machine (the client's own exit is checked in tests/e2e).
    codes = {c.name: c.wait_exit(timeout=15) for c in clients}
    assert codes == {c.name: 5 for c in clients}, codes
    for c in clients:
        assert re.search(r"lost contact with the server[^\n]*; exiting", c.transcript()), c.name


SERVER_CUT_S = 1.5
"""Shorter than the clients' 5 s server timeout: nobody may notice more than a delay."""


def test_a_short_server_partition_keeps_its_name_and_its_clients(
    compose_project: Compose,
) -> None:
    """The server is taken off the network and put back (faults.partitioned): it comes back with
    its address and its DNS name (``server``, which clients resolve), its clients stay signed in
    and go on talking, and a client started afterwards finds it by name."""
    lab = compose_project
    alice, bob = lab.tty_clients("alice", "bob")
    with faults.partitioned(lab.network(), lab.container("server")):
        time.sleep(SERVER_CUT_S)  # the fault's duration, not a synchronisation
    alice.enter("send bob after the cut")
    bob.expect(r"alice \([0-9.]+:\d+\)(?: \(new\))?: after the cut")
    (carol,) = lab.tty_clients("carol")  # resolves `server` by name: its alias came back
    carol.enter("send alice hello from carol")
    alice.expect(r"carol \([0-9.]+:\d+\)(?: \(new\))?: hello from carol")
    assert set(carol.list_names()) >= {"alice", "bob", "carol"}
