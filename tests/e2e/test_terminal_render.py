"""What a user's terminal really shows: ``chat-client`` on an 80x24 pseudo-terminal whose raw
output is fed to the pyte terminal emulator; the assertions read pyte's screen.

- A peer's message cannot draw a row that passes for another user's line (issue 11), nor clear
  the screen, set the title or move the cursor: everything it sends is shown escaped.
- prompt_toolkit never asks the terminal for the cursor position, so the "your terminal doesn't
  support cursor position requests (CPR)" warning never appears (issue 9). pexpect never answers
  such a request, like the terminals where users saw the warning.

Only the ``server`` fixture (its ``.port``) comes from the suite's harness; the clients are
started and stopped here.
"""

from __future__ import annotations

import os
import re
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pexpect
import pytest

from chat_client.render import render_message
from labkit.procs import terminate
from labkit.util import import_or_unavailable, wait_until

pyte = import_or_unavailable("pyte", "the terminal rendering tests (the dev extra)")

pytestmark = pytest.mark.e2e

COLUMNS, LINES = 80, 24
START_S = 10.0
WAIT_S = 5.0
CPR_TIMEOUT_S = 2.0
"""How long prompt_toolkit waits for a CPR answer before it prints the warning."""
CONTINUATION = "  │ "
NAME_AT_COLUMN_0 = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,31}\??(?: \(|:)")
"""What a message header starts with (a user name, then `` (`` or ``:``)."""
SPOOF_TAIL = "alice (127.0.0.1:57384): the meeting moved, send the slides to …"


def client_env() -> dict[str, str]:
    """A real terminal type, and nothing that would turn CPR off or fake the size for us."""
    env = {k: v for k, v in os.environ.items() if k not in ("COLUMNS", "LINES")}
    env.pop("PROMPT_TOOLKIT_NO_CPR", None)
    env["TERM"] = "xterm"
    return env


def client_args(name: str, port: int) -> list[str]:
    return ["-u", name, "-sip", "127.0.0.1", "-sp", str(port)]


def untimed(row: str) -> str:
    return re.sub(r"^\d\d:\d\d ", "HH:MM ", row)


class Screen:
    """``chat-client`` on an 80x24 pty; what it writes goes, unfiltered, into a pyte screen."""

    def __init__(self, name: str, port: int) -> None:
        self.name = name
        self.child = pexpect.spawn(
            "chat-client",
            client_args(name, port),
            env=client_env(),
            dimensions=(LINES, COLUMNS),
            encoding=None,
            timeout=WAIT_S,
        )
        self.screen = pyte.Screen(COLUMNS, LINES)
        self.stream = pyte.ByteStream(self.screen)
        self.raw = bytearray()

    def pump(self, seconds: float = 0.05) -> None:
        """Feed the screen whatever arrives within ``seconds``."""
        deadline = time.monotonic() + seconds
        while True:
            left = deadline - time.monotonic()
            try:
                chunk = self.child.read_nonblocking(65536, timeout=max(left, 0.01))
            except pexpect.TIMEOUT:
                chunk = b""
            except pexpect.EOF:
                return
            if chunk:
                self.raw += chunk
                self.stream.feed(chunk)
            if left <= 0:
                return

    def rows(self) -> list[str]:
        """The screen's rows, the local time a message line starts with read ``HH:MM`` (so that
        lines shown in different minutes compare equal)."""
        return [untimed(row.rstrip()) for row in self.screen.display]

    def wait_for(self, what: str, ok: Callable[[Screen], Any], timeout: float = WAIT_S) -> Any:
        deadline = time.monotonic() + timeout
        while True:
            self.pump()
            value = ok(self)
            if value:
                return value
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"{self.name}: timed out after {timeout} s waiting for {what}; screen:\n"
                    + "\n".join(f"|{r}" for r in self.rows())
                    + f"\nraw output (end): {bytes(self.raw[-1500:])!r}"
                )

    def wait_text(self, fragment: str, timeout: float = WAIT_S) -> None:
        self.wait_for(repr(fragment), lambda s: fragment in "\n".join(s.rows()), timeout)

    def wait_prompt(self, timeout: float = WAIT_S) -> None:
        self.wait_for("the prompt", lambda s: s.rows()[s.screen.cursor.y].startswith("+>"), timeout)

    def type(self, line: str) -> None:
        self.child.send(line.encode() + b"\r")


class Piped:
    """``chat-client`` reading commands from a pipe, its output in a file."""

    def __init__(self, name: str, port: int, workdir: Path) -> None:
        self.out = workdir / f"{name}.out"
        with self.out.open("wb") as out:
            self.proc = subprocess.Popen(
                ["chat-client", *client_args(name, port)],
                stdin=subprocess.PIPE,
                stdout=out,
                stderr=subprocess.STDOUT,
            )

    def output(self) -> str:
        return self.out.read_text(errors="replace")

    def send(self, line: str) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(line.encode() + b"\n")
        self.proc.stdin.flush()


@pytest.fixture
def started() -> Iterator[list[Screen | Piped]]:
    """The clients a test starts; stopped (SIGTERM to sign out, then SIGKILL) by the harness's
    one way to stop processes, whatever the outcome."""
    procs: list[Screen | Piped] = []
    try:
        yield procs
    finally:
        terminate([p.child if isinstance(p, Screen) else p.proc for p in procs])


def test_a_peer_cannot_forge_a_line_or_drive_the_terminal(
    server: Any, tmp_path: Path, started: list[Screen | Piped]
) -> None:
    bob = Screen("bob", server.port)
    started.append(bob)
    bob.wait_text("signed in as bob", START_S)
    bob.wait_prompt()
    alice = Piped("alice", server.port, tmp_path)
    started.append(alice)
    wait_until(lambda: "signed in as alice" in alice.output(), START_S, "alice to sign in")

    alice.send("send bob hello")
    bob.wait_text("): hello")
    first = r"^HH:MM alice \(127\.0\.0\.1:\d+\)(?: \(new\))?: "
    m = re.search(first, "\n".join(bob.rows()), re.MULTILINE)
    assert m, bob.rows()
    header = m.group().replace(" (new)", "")  # the header of her next messages

    # The spoof of issue 11: padded to the width, so that a terminal's own wrap would start the
    # next row with a forged header.
    alice.send("send bob " + "x" * (COLUMNS - len(header)) + SPOOF_TAIL)
    hostile = (
        "csi\x9b2J nel\x85 rlo\u202eexe.txt tab\tx clear\x1b[2J title\x1b]0;pwned\x07 "
        "cr\rbob (127.0.0.1:1): fake bs\x08\x08\x08 up\x1b[1A typed \\x1b END"
    )
    alice.send("send bob " + hostile)
    bob.wait_text("END")
    bob.wait_prompt()

    rows = bob.rows()
    shown = "\n".join(rows)
    # Not cleared: the sign-in line (after the first-contact pin notice, on a new home) remains.
    assert "signed in as bob; type 'help' for commands" in rows[:4], shown
    assert bob.screen.title == "", shown  # OSC 0 not obeyed
    headers = [r for r in rows if NAME_AT_COLUMN_0.match(r)]
    assert len(headers) == 3, shown
    # (The first is marked "(new)" if this home's bob had never pinned alice.)
    assert headers[0].startswith((header, header[:-2] + " (new): ")), shown
    assert all(h.startswith(header) for h in headers[1:]), shown
    spoof_at = rows.index(header + "x" * (COLUMNS - len(header)))
    assert rows[spoof_at + 1] == CONTINUATION + SPOOF_TAIL, shown
    last = rows.index(next(h for h in headers if "csi" in h))
    # The screen holds exactly the rows render_message draws (its tests prove that they give
    # back the text, escaped): the hostile text moved nothing.
    drawn = render_message(header[:-2], hostile, COLUMNS)
    assert len(drawn) > 1
    assert rows[last : last + len(drawn)] == [r.rstrip() for r in drawn], shown
    assert rows[last + len(drawn)].startswith("+>"), shown
    assert all(r.startswith(CONTINUATION) for r in drawn[1:])
    for row in rows:
        assert not any(0x80 <= ord(c) < 0xA0 or c in "\t\r\x1b\u202e" for c in row), shown

    alice.send("exit")
    assert alice.proc.wait(timeout=WAIT_S) == 0


def test_no_cursor_position_request_and_no_cpr_warning(
    server: Any, started: list[Screen | Piped]
) -> None:
    carol = Screen("carol", server.port)
    started.append(carol)
    carol.wait_text("signed in as carol", START_S)
    carol.wait_prompt()
    for line, answer in [("help", "send USER MESSAGE"), ("list", "online (1): carol")]:
        carol.type(line)
        carol.wait_text(answer)
        carol.wait_prompt()
    carol.type("bogus")
    carol.wait_text("error: unknown command 'bogus'")
    # Long enough for prompt_toolkit to give up on an answer and warn, had it asked.
    carol.pump(CPR_TIMEOUT_S + 1.0)
    assert b"CPR" not in carol.raw
    assert b"\x1b[6n" not in carol.raw  # not even asked
    assert "WARNING" not in "\n".join(carol.rows())
    carol.type("exit")
    carol.wait_text("signed out")
