"""The README's terminal picture, made from a real run, never by hand (``make screenshot``).

A server and three clients run on loopback (no containers). alice's ``chat-client`` runs on an
80x24 pseudo-terminal; a short scripted conversation plays (a ``/who``, a message bob is shown,
his answer, a message to carol while her client is stopped, a large one still travelling to
her, a name nobody has), and everything alice's terminal received is fed to the pyte terminal
emulator. Its screen, characters and colours, is drawn cell by cell to ``docs/terminal.png``
with Pillow, in the DejaVu Sans Mono that matplotlib ships, and written as text beside it
(``docs/terminal.txt``).

    python -m labkit.screenshot [PNG]      # make screenshot
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from labkit.local import ChatServer, client_argv
from labkit.procs import Reaper
from labkit.util import LabError

COLUMNS, LINES = 80, 24
WAIT_S = 6.0
FONT_PX = 15
PAD_PX = 12
BACKGROUND = (30, 30, 30)
FOREGROUND = (220, 220, 220)
COLOURS = {
    "black": (40, 40, 40),
    "red": (230, 80, 70),
    "green": (90, 200, 90),
    "brown": (210, 170, 60),
    "yellow": (230, 210, 80),
    "blue": (90, 140, 230),
    "magenta": (200, 100, 200),
    "cyan": (80, 190, 200),
    "white": (230, 230, 230),
}
"""pyte's colour names (the 8 ANSI colours) as RGB; ``default`` is :data:`FOREGROUND`."""


class Terminal:
    """A client on an 80x24 pty whose output goes into a pyte screen."""

    def __init__(self, reaper: Reaper, name: str, port: int, env: dict[str, str]) -> None:
        import pexpect
        import pyte

        argv = client_argv(name, port)
        self.name = name
        self.child = pexpect.spawn(
            argv[0], argv[1:], env=env, dimensions=(LINES, COLUMNS), encoding=None
        )
        reaper.track(self.child, name, self.text)
        self.screen = pyte.Screen(COLUMNS, LINES)
        self.stream = pyte.ByteStream(self.screen)

    def text(self) -> str:
        return "\n".join(r.rstrip() for r in self.screen.display)

    def pump(self) -> None:
        import pexpect

        with contextlib.suppress(pexpect.TIMEOUT, pexpect.EOF):
            self.stream.feed(self.child.read_nonblocking(1 << 16, timeout=0.05))

    def wait(self, what: str, ok: Callable[[str], bool]) -> None:
        deadline = time.monotonic() + WAIT_S
        while not ok(self.text()):
            if time.monotonic() > deadline:
                raise LabError(f"{self.name}: no {what} within {WAIT_S} s:\n{self.text()}")
            self.pump()

    def wait_signed_in(self) -> None:
        line = f"signed in as {self.name}"
        self.wait("sign-in", lambda s: line in s)

    def enter(self, line: str) -> None:
        self.child.send(line.encode() + b"\r")


def render(screen: Any, path: Path) -> None:
    """Draw a pyte screen (its characters, foreground colours and cursor) as a PNG, down to its
    last row in use."""
    from matplotlib import font_manager
    from PIL import Image, ImageDraw, ImageFont

    font = ImageFont.truetype(font_manager.findfont("DejaVu Sans Mono"), FONT_PX)
    _, top, _, bottom = font.getbbox("M")
    cell_w = round(font.getlength("M"))
    cell_h = round(FONT_PX * 1.35)
    used = [y for y, row in enumerate(screen.display) if row.strip()]
    lines = max([screen.cursor.y, *used]) + 1
    size = (2 * PAD_PX + cell_w * screen.columns, 2 * PAD_PX + cell_h * lines)
    image = Image.new("RGB", size, BACKGROUND)
    draw = ImageDraw.Draw(image)
    for y in range(lines):
        line = screen.buffer[y]
        for x in range(screen.columns):
            cell = line[x]
            if not cell.data.strip():
                continue
            colour = COLOURS.get(cell.fg, FOREGROUND)
            at = (PAD_PX + x * cell_w, PAD_PX + y * cell_h + (cell_h - (bottom - top)) // 2 - top)
            draw.text(at, cell.data, font=font, fill=colour)
    cx, cy = screen.cursor.x, screen.cursor.y
    box = (PAD_PX + cx * cell_w, PAD_PX + cy * cell_h, PAD_PX + (cx + 1) * cell_w - 1)
    draw.rectangle((*box, PAD_PX + (cy + 1) * cell_h - 1), fill=FOREGROUND)
    image.save(path)


def play(png: Path) -> str:
    """Run the conversation, draw alice's screen to ``png``; the screen's text."""
    with tempfile.TemporaryDirectory(prefix="chat-screenshot-") as tmp:
        work = Path(tmp)
        reaper = Reaper()
        try:
            env = {k: v for k, v in os.environ.items() if k not in ("COLUMNS", "LINES")}
            env.update(TERM="xterm", PROMPT_TOOLKIT_NO_CPR="1", CHAT_HOME=str(work / "home"))
            server = ChatServer.start(work / "server.log", reaper=reaper)
            others = {n: Terminal(reaper, n, server.port, env) for n in ("bob", "carol")}
            for t in others.values():
                t.wait_signed_in()
            alice = Terminal(reaper, "alice", server.port, env)
            alice.wait_signed_in()
            alice.child.send(b"\x0c")  # Ctrl-L: start from a clear screen
            carol = others["carol"]
            os.kill(carol.child.pid, signal.SIGSTOP)  # her client shows nothing for now
            try:
                alice.enter("send carol the minutes: " + "notes " * 200)
                alice.wait("progress", lambda s: "0 % (0 of" in s)
                alice.enter("/who")
                alice.wait("list", lambda s: "online (3)" in s)
                alice.enter("/msg bob lunch at noon? the usual place")
                alice.wait("tick", lambda s: "usual place ✓" in s)
                others["bob"].wait("message", lambda s: "usual place" in s)
                others["bob"].enter("send alice yes! see you there")
                alice.wait("answer", lambda s: "see you there" in s)
                alice.enter("/msg carol are you coming too?")
                alice.enter("/msg zed hello?")
                alice.wait("failure", lambda s: "✗ no such user: zed" in s)
                alice.child.send(b"send b")
                alice.wait("typing", lambda s: "+> send b" in s and "coming too? …" in s)
                render(alice.screen, png)
                text = alice.text()
            finally:
                os.kill(carol.child.pid, signal.SIGCONT)
        finally:
            reaper.stop_all()
    return text


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    png = Path(args[0] if args else "docs/terminal.png")
    try:
        text = play(png)
    except LabError as exc:
        print(f"screenshot: {exc}", file=sys.stderr)
        return 1
    png.with_suffix(".txt").write_text(text.rstrip() + "\n", encoding="utf-8")
    print(f"wrote {png} and {png.with_suffix('.txt')}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
