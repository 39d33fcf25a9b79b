"""The terminal of issue 22 as a user sees it: ``chat-client`` on an 80x24 pseudo-terminal, its
raw output fed to the pyte terminal emulator; the assertions read pyte's screen (text and
colours).

- Your own line gets ``✓`` when bob's client showed the message, and not before: with bob's
  client stopped (SIGSTOP) the mark stays ``…``; once it runs again (SIGCONT) and shows it, the
  same line turns ``✓``. A message holding ``✓`` and an escape cannot draw a mark.
- A message nobody acknowledges ends ``✗ not delivered to bob (no acknowledgement for 10 s)``.
- A large message shows its progress, up to ``100 %``.
- Tab completes ``/ms`` to ``/msg`` and a name online, from the quiet list after sign-in and
  from a ``list``.
- Lines typed in one run are recalled with Up in the next.

Waits are bounded and on conditions; the one fixed window (:data:`OBSERVE_S`) watches for a tick
that must not come.
"""

from __future__ import annotations

import os
import re
import signal
import stat
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pexpect
import pytest

from chat_protocol.const import DEFAULT_TIMINGS
from labkit.procs import terminate
from labkit.util import import_or_unavailable, wait_until

pyte = import_or_unavailable("pyte", "the terminal rendering tests (the dev extra)")

pytestmark = pytest.mark.e2e

COLUMNS, LINES = 80, 24
START_S = 15.0
WAIT_S = 10.0
"""Bound of a wait for something that follows at once (generous for a loaded 2-core machine)."""
OBSERVE_S = 1.5
"""How long alice's screen is watched, with bob's client stopped, for a tick that must not
appear (shorter than the server's 5 s timeout, so bob is still signed in when he resumes)."""
CONTINUATION = "  │ "
OWN = re.compile(r"^\d\d:\d\d you → (?P<to>\w+): (?P<rest>.*)$")


def client_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("COLUMNS", "LINES")}
    env["TERM"] = "xterm"
    env["PROMPT_TOOLKIT_NO_CPR"] = "1"
    return env


class Screen:
    """``chat-client`` on an 80x24 pty; what it writes goes, unfiltered, into a pyte screen."""

    def __init__(self, name: str, port: int, extra: tuple[str, ...] = ()) -> None:
        self.name = name
        self.child = pexpect.spawn(
            "chat-client",
            ["-u", name, "-sip", "127.0.0.1", "-sp", str(port), *extra],
            env=client_env(),
            dimensions=(LINES, COLUMNS),
            encoding=None,
            timeout=WAIT_S,
        )
        self.screen = pyte.Screen(COLUMNS, LINES)
        self.stream = pyte.ByteStream(self.screen)
        self.raw = bytearray()

    def pump(self, seconds: float = 0.05) -> None:
        deadline = time.monotonic() + seconds
        while True:
            left = deadline - time.monotonic()
            try:
                chunk = self.child.read_nonblocking(1 << 16, timeout=max(left, 0.01))
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
        return [row.rstrip() for row in self.screen.display]

    def dump(self) -> str:
        return "\n".join(f"|{r}" for r in self.rows())

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
                    + self.dump()
                )

    def wait_text(self, fragment: str, timeout: float = WAIT_S) -> None:
        self.wait_for(repr(fragment), lambda s: fragment in "\n".join(s.rows()), timeout)

    def prompt_line(self) -> str:
        y: int = self.screen.cursor.y
        return self.rows()[y]

    def wait_prompt(self, text: str = "", timeout: float = WAIT_S) -> None:
        want = ("+> " + text).rstrip()
        self.wait_for(f"the prompt {want!r}", lambda s: s.prompt_line() == want, timeout)

    def signed_in(self) -> None:
        self.wait_text(f"signed in as {self.name}", START_S)
        self.wait_prompt()

    def own(self, text_start: str) -> list[int]:
        """Screen rows of own lines whose text starts with ``text_start``."""
        found = []
        for y, row in enumerate(self.rows()):
            m = OWN.match(row)
            if m and m["rest"].startswith(text_start):
                found.append(y)
        return found

    def line_at(self, y: int) -> tuple[str, int]:
        """The own line starting at row ``y``, its continuation rows joined (without their
        marker); the row it ends on."""
        rows = self.rows()
        text = rows[y]
        while y + 1 < len(rows) and rows[y + 1].startswith(CONTINUATION):
            y += 1
            text += rows[y][len(CONTINUATION) :]
        return text, y

    def colour_of(self, y: int, char: str) -> list[str]:
        """The foreground colour of every cell of row ``y`` holding ``char``."""
        line = self.screen.buffer[y]
        return [line[x].fg for x in range(COLUMNS) if line[x].data == char]

    def type(self, text: str) -> None:
        self.child.send(text.encode())

    def enter(self, line: str) -> None:
        self.child.send(line.encode() + b"\r")


@pytest.fixture
def started() -> Iterator[list[Screen]]:
    procs: list[Screen] = []
    try:
        yield procs
    finally:
        for s in procs:  # a stopped client must run again to sign out
            if s.child.isalive():
                os.kill(s.child.pid, signal.SIGCONT)
        terminate([s.child for s in procs])


@pytest.fixture
def screens(server: Any, started: list[Screen]) -> Callable[..., list[Screen]]:
    def start(*names: str, extra: tuple[str, ...] = ()) -> list[Screen]:
        out = []
        for name in names:
            s = Screen(name, server.port, extra)
            started.append(s)
            s.signed_in()
            out.append(s)
        return out

    return start


def stopped(pid: int) -> bool:
    with open(f"/proc/{pid}/stat") as f:
        return f.read().rsplit(")", 1)[1].split()[0] == "T"


def test_the_tick_comes_when_bob_is_shown_the_message_and_not_before(
    screens: Callable[..., list[Screen]],
) -> None:
    bob, alice = screens("bob", "alice")
    os.kill(bob.child.pid, signal.SIGSTOP)
    wait_until(lambda: stopped(bob.child.pid), WAIT_S, "bob's client to stop")
    # A text holding a tick, and a typed ESC (Ctrl-V Esc) starting a colour: neither is a mark.
    alice.enter("send bob ok ✓ \x16\x1b[32m✓")
    alice.wait_for("alice's own line", lambda s: s.own("ok ✓"))
    deadline = time.monotonic() + OBSERVE_S
    while time.monotonic() < deadline:
        alice.pump()
        [y] = alice.own("ok ✓")
        assert alice.rows()[y].endswith(" …"), alice.dump()
        assert alice.rows()[y].count("✓") == 2, alice.dump()
        assert alice.colour_of(y, "✓") == ["default", "default"], alice.dump()
    assert r"\x1b[32m✓" in alice.rows()[y], alice.dump()  # shown escaped

    alice.type("half typed")  # the mark changes under a line being typed, which stays
    alice.wait_prompt("half typed")
    os.kill(bob.child.pid, signal.SIGCONT)

    def ticked(s: Screen) -> int | None:
        rows = s.own("ok ✓")
        return rows[0] if rows and s.rows()[rows[0]].endswith("✓") else None

    y = alice.wait_for("the tick", ticked)
    # Bob's client printed the line before it sent the acknowledgement that made the tick.
    bob.pump(0.2)
    assert any(re.match(r"\d\d:\d\d alice \(127\.0\.0\.1:\d+\)", r) for r in bob.rows()), bob.dump()
    assert any(r.endswith(r": ok ✓ \x1b[32m✓") for r in bob.rows()), bob.dump()
    row = alice.rows()[y]
    assert row.startswith(time.strftime("%H:")) or re.match(r"\d\d:\d\d ", row)
    assert alice.colour_of(y, "✓") == ["default", "default", "green"], alice.dump()
    assert len(alice.own("ok ✓")) == 1, alice.dump()  # one line, updated: never a second block
    assert "…" not in row
    alice.wait_prompt("half typed")


def test_a_message_nobody_acknowledges_is_marked_not_delivered(
    screens: Callable[..., list[Screen]],
) -> None:
    bob, alice = screens("bob", "alice")
    os.kill(bob.child.pid, signal.SIGKILL)  # gone without a word: nothing acknowledges
    alice.enter("send bob anyone there?")
    alice.wait_for("the travelling line", lambda s: s.own("anyone there? …"))
    timeout = DEFAULT_TIMINGS.delivery_timeout_s
    mark = f"✗ not delivered to bob (no acknowledgement for {timeout:.0f} s)"

    def failed(s: Screen) -> bool:
        return any(s.line_at(y)[0].endswith(mark) for y in s.own("anyone there?"))

    alice.wait_for("the failure mark", failed, timeout + WAIT_S)
    [y] = alice.own("anyone there?")
    # (The mark does not fit after the text: it ends the line on a continuation row.)
    _, end = alice.line_at(y)
    assert alice.colour_of(end, "✗") == ["red"], alice.dump()
    assert "error:" not in "\n".join(alice.rows()), alice.dump()


def test_a_large_message_shows_its_progress_up_to_100_percent(
    screens: Callable[..., list[Screen]],
) -> None:
    bob, alice = screens("bob", "alice")
    size = 20_000
    os.kill(bob.child.pid, signal.SIGSTOP)
    wait_until(lambda: stopped(bob.child.pid), WAIT_S, "bob's client to stop")
    alice.enter("send bob " + "y" * size)
    alice.wait_for(
        "progress at 0 %",
        lambda s: any(r.endswith(f"… 0 % (0 of {size} bytes)") for r in s.rows()),
    )
    os.kill(bob.child.pid, signal.SIGCONT)
    done = f"✓ 100 % ({size} of {size} bytes)"
    alice.wait_for("progress at 100 % and the tick", lambda s: any(done in r for r in s.rows()))
    raw = bytes(alice.raw).decode("utf-8", "replace")
    seen = [int(p) for p in re.findall(rf"… (\d+) % \(\d+ of {size} bytes\)", raw)]
    assert seen == sorted(seen) and seen[0] == 0, seen  # it only ever went up
    bob.wait_text("yyyyyyyy")


def test_tab_completes_commands_and_names_online(
    screens: Callable[..., list[Screen]],
) -> None:
    bob, alice = screens("bob", "alice")
    alice.type("/ms\t")
    alice.wait_prompt("/msg ")
    alice.type("b\t")
    alice.wait_prompt("/msg bob ")  # bob came from the quiet list alice asked for at sign-in
    assert "online (" not in "\n".join(alice.rows()), alice.dump()  # which printed nothing
    alice.enter("hi bob")
    bob.wait_for("alice's message", lambda s: any(r.endswith("): hi bob") for r in s.rows()))

    screens("carol")  # carol signs in after alice's quiet list
    alice.enter("/who")
    alice.wait_text("online (3): alice, bob, carol")
    assert "\n".join(alice.rows()).count("online (") == 1, alice.dump()
    alice.type("/whois c\t")
    alice.wait_prompt("/whois carol ")


def test_typed_lines_are_recalled_after_a_restart(
    screens: Callable[..., list[Screen]], own_home: Path
) -> None:
    [alice] = screens("alice")
    alice.enter("send nobody remember me")
    alice.wait_for("the failed send", lambda s: s.own("remember me ✗"))
    alice.enter("/quit")
    alice.child.expect(pexpect.EOF, timeout=WAIT_S)
    path = own_home / "typed" / "alice.jsonl"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600

    [again] = screens("alice")
    again.type("\x1b[A")  # Up: the last line typed, /quit
    again.wait_prompt("/quit")
    again.type("\x1b[A")
    again.wait_prompt("send nobody remember me")


def test_time_is_shown_on_a_terminal_unless_no_time_and_piped_only_with_time(
    server: Any, screens: Callable[..., list[Screen]], tmp_path: Path
) -> None:
    [bob] = screens("bob", extra=("--no-time",))
    out = tmp_path / "alice.out"
    with out.open("wb") as f:
        alice = subprocess.Popen(
            ["chat-client", "-u", "alice", "-sip", "127.0.0.1", "-sp", str(server.port), "--time"],
            stdin=subprocess.PIPE,
            stdout=f,
            stderr=subprocess.STDOUT,
        )
    try:
        wait_until(lambda: "signed in as alice" in out.read_text(), START_S, "alice's sign-in")
        assert alice.stdin is not None
        alice.stdin.write(b"send bob from a pipe\n")
        alice.stdin.flush()
        received = r"^alice \(127\.0\.0\.1:\d+\)(?: \(new\))?: from a pipe$"
        bob.wait_for("alice's line", lambda s: any(re.match(received, r) for r in s.rows()))
        bob.enter("send alice back")
        timed = r"^\d\d:\d\d bob \(127\.0\.0\.1:\d+\)(?: \(new\))?: back$"
        wait_until(
            lambda: re.search(timed, out.read_text(), re.M),
            WAIT_S,
            "bob's line, timed",
            out.read_text,
        )
        assert "you →" not in out.read_text()  # piped: no echo of one's own lines
        bob.wait_for("bob's own line, untimed", lambda s: "you → alice: back ✓" in s.rows())
    finally:
        terminate([alice])
