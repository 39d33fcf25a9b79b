"""On a terminal: list, send, errors, a name taken twice, typing while a message arrives."""

from __future__ import annotations

import re
from collections.abc import Callable

import pytest

from labkit.local import ChatServer as Server
from labkit.procs import udp_ports_of
from labkit.terminal import PROMPT_RE, TtyClient

pytestmark = pytest.mark.e2e

Clients = Callable[..., list[TtyClient]]


def real_port(server: Server, c: TtyClient) -> int:
    """The UDP port ``c`` really uses: the server's sign-in log line, checked against /proc."""
    host, port = server.client_addr(c.name)
    assert host == "127.0.0.1"
    assert udp_ports_of(c.pid) == {port}, f"{c.name}: server logged {port}"
    return port


def received(sender: str, port: int, text: str) -> str:
    """The line a receiver prints (docs/CLI.md: ``alice (172.18.0.3:40211): hello``).

    On a terminal the line is drawn where the prompt was (the prompt is erased with cursor moves,
    which the screen filter drops), so it is anchored on preceding white space, not a line start.
    The first line from a sender never pinned is marked ``alice (127.0.0.1:PORT) (new): hello``.
    """
    new = r"(?: \(new\))?"
    return rf"(?<!\S){re.escape(sender)} \(127\.0\.0\.1:{port}\){new}: {re.escape(text)}\r?\n"


def test_list_shows_everyone_and_messages_name_the_senders_real_address(
    server: Server, clients: Clients
) -> None:
    alice, bob, carol = clients("alice", "bob", "carol")
    for c in (alice, bob, carol):
        assert c.list_names() == ["alice", "bob", "carol"]

    alice.enter("send bob hello")
    bob.expect(received("alice", real_port(server, alice), "hello"))

    bob.enter("send carol hi carol, two  spaces kept")
    carol.expect(received("bob", real_port(server, bob), "hi carol, two  spaces kept"))

    carol.enter("send alice and back")
    alice.expect(received("carol", real_port(server, carol), "and back"))


def test_commands_are_case_insensitive(server: Server, clients: Clients) -> None:
    alice, bob = clients("alice", "bob")
    alice.enter("LIST")
    m = alice.expect(r"online \((\d+)\): ([^\r\n]*)\r?\n")
    assert m.group(0).strip() == "online (2): alice, bob"
    alice.enter("Send bob Hello There")
    bob.expect(received("alice", real_port(server, alice), "Hello There"))
    bob.enter("SEND alice ok")
    alice.expect(received("bob", real_port(server, bob), "ok"))
    bob.enter("HeLp")
    bob.expect(r"send USER MESSAGE")


def test_a_send_to_nobody_is_marked_failed_on_its_own_line_and_the_client_keeps_working(
    server: Server, clients: Clients
) -> None:
    """On a terminal a failed send is its echo with the failure mark, not an error line."""
    alice, bob = clients("alice", "bob")
    alice.enter("send zed hello?")
    alice.expect(r"(?<!\S)\d\d:\d\d you → zed: hello\? ✗ no such user: zed\r?\n")
    alice.expect(PROMPT_RE)
    assert "error" not in alice.child.before
    alice.enter("send bob still here")
    bob.expect(received("alice", real_port(server, alice), "still here"))


def test_a_taken_name_is_refused_with_exit_3_and_the_first_holder_keeps_working(
    server: Server, clients: Clients, spawn_tty: Callable[[str], TtyClient]
) -> None:
    alice, bob = clients("alice", "bob")

    second = spawn_tty("alice")
    second.expect(r"error: the name 'alice' is already signed in; pick another\r?\n")
    assert second.wait_exit(5) == 3

    # Names are unique without regard to case.
    upper = spawn_tty("ALICE")
    upper.expect(r"error: the name 'ALICE' is already signed in; pick another\r?\n")
    assert upper.wait_exit(5) == 3

    assert bob.list_names() == ["alice", "bob"]
    bob.enter("send alice still here?")
    alice.expect(received("bob", real_port(server, bob), "still here?"))
    alice.enter("send bob yes")
    bob.expect(received("alice", real_port(server, alice), "yes"))


@pytest.mark.parametrize(
    ("line", "error"),
    [
        ("foo", "error: unknown command 'foo'; type 'help' for the commands"),
        ("send", "error: usage: send USER MESSAGE"),
        ("send bob", "error: usage: send USER MESSAGE"),
        ("send bob   ", "error: empty message, not sent"),
    ],
    ids=["unknown-command", "send-alone", "send-no-text", "send-blank-text"],
)
def test_a_mistake_prints_one_error_line_and_the_client_keeps_working(
    server: Server, clients: Clients, line: str, error: str
) -> None:
    alice, bob = clients("alice", "bob")
    alice.enter(line)
    m = alice.expect(r"(?<!\S)error: [^\r\n]*\r?\n")
    # The first error line is the expected one (the usage error may add a detail after it) ...
    assert m.group(0).rstrip().startswith(error), m.group(0)
    # ... and it is alone: the prompt comes back before anything else is printed.
    alice.expect(PROMPT_RE)
    assert "error" not in alice.child.before
    alice.enter("send bob after the mistake")
    bob.expect(received("alice", real_port(server, alice), "after the mistake"))
    assert "error" not in alice.transcript().split(error, 1)[1]


def test_a_half_typed_line_survives_an_incoming_message(server: Server, clients: Clients) -> None:
    alice, bob = clients("alice", "bob")
    bob.type("send alice my half-")
    bob.expect(r"send alice my half-")  # echoed: prompt_toolkit has it in its buffer

    alice.enter("send bob interrupting you")
    bob.expect(received("alice", real_port(server, alice), "interrupting you"))
    # The message is printed above the prompt, which is redrawn with the half-typed text.
    bob.expect(r"\+> send alice my half-")

    bob.type("typed line, finished")
    bob.enter("")
    alice.expect(received("bob", real_port(server, bob), "my half-typed line, finished"))
