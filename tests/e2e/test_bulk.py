"""Piped (non-terminal) clients: large messages arrive whole, many arrive once each and in order,
a sender whose input ends waits for its messages to be delivered before it exits 0, and every
command piped before ``exit`` has its answer printed before the client signs out."""

from __future__ import annotations

import hashlib
import random
import re
import string
import subprocess
import time
from collections.abc import Callable

import pytest

from labkit import faults
from labkit.local import ChatServer as Server
from labkit.terminal import PipedClient
from labkit.util import wait_until

pytestmark = pytest.mark.e2e

Piped = Callable[[str], PipedClient]

KIB = 1024
MIB = 1024 * KIB
ALPHABET = string.ascii_letters + string.digits + string.punctuation + "     "


BULK_BOUND_S = 20.0
"""A liveness bound, not a speed goal (make bench judges speed): two large messages must arrive
well before the 10 s delivery timeout would have failed them twice over on a loaded machine."""


def text_of(size: int, seed: int) -> str:
    """``size`` bytes of printable ASCII (spaces included), not starting or ending with a space."""
    rng = random.Random(seed)
    body = "".join(rng.choices(ALPHABET, k=size - 2))
    return f"<{body}>"


def shown(text: str) -> str:
    """How a receiver prints ``text`` (docs/CLI.md): of printable ASCII, only the backslash is
    escaped (doubled)."""
    return text.replace("\\", "\\\\")


def sha(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def messages_from(out: str, sender: str, port: int) -> list[str]:
    """The texts of the ``SENDER (127.0.0.1:PORT): TEXT`` lines of a piped client's stdout (the
    first may be marked ``SENDER (127.0.0.1:PORT) (new): TEXT``)."""
    prefixes = (f"{sender} (127.0.0.1:{port}): ", f"{sender} (127.0.0.1:{port}) (new): ")
    return [
        ln[len(p) :] for ln in out.split("\n") for p in prefixes if ln.startswith(p)
    ]


def commands(*lines: str) -> bytes:
    return "".join(f"{ln}\n" for ln in lines).encode()


def signed_in_pair(server: Server, piped: Piped) -> tuple[PipedClient, PipedClient, int]:
    """A piped alice and bob, both signed in; alice's UDP port from the server's log."""
    alice, bob = piped("alice"), piped("bob")
    alice.wait_signed_in()
    bob.wait_signed_in()
    host, port = server.client_addr("alice")
    assert host == "127.0.0.1"
    return alice, bob, port


def test_large_messages_arrive_whole(server: Server, piped: Piped) -> None:
    big, medium = text_of(1 * MIB, seed=1), text_of(300 * KIB, seed=2)
    alice, bob, port = signed_in_pair(server, piped)
    started = time.monotonic()
    alice.feed(commands(f"send bob {big}", f"send bob {medium}", "exit"), close=True)

    def both_arrived() -> list[str] | None:
        got = messages_from(bob.stdout(), "alice", port)
        return got if len(got) >= 2 else None

    got = wait_until(
        both_arrived, BULK_BOUND_S, "bob to print both messages", lambda: bob.stderr()[-500:]
    )
    elapsed = time.monotonic() - started
    assert len(got) == 2
    assert [len(t) for t in got] == [len(shown(big)), len(shown(medium))]
    assert [sha(t) for t in got] == [sha(shown(big)), sha(shown(medium))]
    assert alice.wait_exit(10) == 0
    assert alice.stdout().endswith("signed out\n")
    assert alice.stderr() == ""
    assert elapsed < BULK_BOUND_S


def test_every_piped_command_is_answered_before_signing_out(server: Server, piped: Piped) -> None:
    alice, _bob, _ = signed_in_pair(server, piped)
    alice.feed(commands("list", "whois bob", "whois zed", "exit"), close=True)
    assert alice.wait_exit(10) == 0
    out = alice.stdout().split("\n")
    assert "online (2): alice, bob" in out
    assert any(re.fullmatch(r"bob: key [A-Z2-7]{4}(-[A-Z2-7]{4}){7}", ln) for ln in out), out
    assert out[-2:] == ["signed out", ""]
    assert alice.stderr() == "error: no such user: zed\n"


def test_sender_exits_only_after_its_messages_are_delivered(server: Server, piped: Piped) -> None:
    text = text_of(300 * KIB, seed=3)
    alice, bob, port = signed_in_pair(server, piped)
    with faults.paused(bob.pid):  # bob cannot acknowledge anything
        alice.feed(commands(f"send bob {text}", "exit"), close=True)
        # Input ended, yet alice stays: 300 KiB needs acknowledgements, which bob cannot send.
        # (1.5 s: below the 5 s after which the server would drop the frozen bob.)
        with pytest.raises(subprocess.TimeoutExpired):
            alice.proc.wait(timeout=1.5)
        assert "signed out" not in alice.stdout()
    assert alice.wait_exit(10) == 0
    assert alice.stdout().endswith("signed out\n")
    assert alice.stderr() == ""
    # Delivered means bob acknowledged every chunk: he prints it once the server confirms
    # alice's address (one lookup), not seconds later.
    got = wait_until(
        lambda: messages_from(bob.stdout(), "alice", port), 2, "bob to print the message"
    )
    assert [sha(t) for t in got] == [sha(shown(text))]


def test_two_hundred_messages_arrive_once_each_in_order(server: Server, piped: Piped) -> None:
    n = 200
    texts = [f"message {i:03d} of {n}: {'x' * (i % 50)}" for i in range(1, n + 1)]
    alice, bob, port = signed_in_pair(server, piped)
    alice.feed(commands(*(f"send bob {t}" for t in texts), "exit"), close=True)
    assert alice.wait_exit(30) == 0  # every message acknowledged
    assert alice.stderr() == ""
    wait_until(
        lambda: len(messages_from(bob.stdout(), "alice", port)) >= n, 5, f"bob to print {n} lines"
    )
    bob.close_input()
    assert bob.wait_exit(5) == 0
    out = bob.stdout()
    assert messages_from(out, "alice", port) == texts
    # Nothing else was printed: the sign-in line, the messages, the sign-out line.
    message = re.compile(r"alice \(127\.0\.0\.1:\d+\)(?: \(new\))?: ")
    other = [ln for ln in out.split("\n") if ln and not message.match(ln)]
    assert other == ["signed in as bob; type 'help' for commands", "signed out"]
    assert bob.stderr() == ""
