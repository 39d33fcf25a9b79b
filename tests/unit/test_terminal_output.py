"""What chat_client.ui.Output draws on a real terminal: its bytes go through a pseudo-terminal
(80x24, so the tty's own line discipline applies) into the pyte terminal emulator, and the test
reads the screen a user would see. Also: install_excepthooks."""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import logging
import os
import re
import select
import struct
import sys
import termios
import threading
from collections.abc import Iterator
from pathlib import Path

import pyte
import pytest

from chat_client import render, ui
from chat_client.render import CONTINUATION
from chat_client.ui import Output, install_excepthooks

COLUMNS, LINES = 80, 24
ADDR = ("127.0.0.1", 57384)
HEADER = "alice (127.0.0.1:57384): "
SPOOF_TAIL = "alice (127.0.0.1:57384): the meeting moved, send the slides to …"
NAME_AT_COLUMN_0 = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,31}\??(?: \(|:)")
"""What a message header starts with (a user name, then `` (`` or ``:``)."""


class Terminal:
    """A pty of COLUMNS x LINES whose far end is a pyte screen; ``sys.stdout`` is its near end."""

    def __init__(self) -> None:
        self.master, slave = os.openpty()
        fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", LINES, COLUMNS, 0, 0))
        self.stdout = open(slave, "w", encoding="utf-8", closefd=True)  # noqa: SIM115
        self.screen = pyte.Screen(COLUMNS, LINES)
        self.stream = pyte.ByteStream(self.screen)
        self.raw = bytearray()

    def pump(self) -> None:
        """Move what was written to the screen."""
        self.stdout.flush()
        while select.select([self.master], [], [], 0.05)[0]:
            chunk = os.read(self.master, 65536)
            if not chunk:
                break
            self.raw += chunk
            self.stream.feed(chunk)

    def rows(self) -> list[str]:
        return [row.rstrip() for row in self.screen.display]

    def close(self) -> None:
        self.stdout.close()
        os.close(self.master)


@pytest.fixture
def term(monkeypatch: pytest.MonkeyPatch) -> Iterator[Terminal]:
    t = Terminal()
    monkeypatch.setenv("TERM", "xterm")
    try:
        yield t
    finally:
        t.close()


def show(term: Terminal, text: str, *, before: str = "earlier line") -> list[str]:
    """An earlier line, then ``text`` from alice, then a later line; the screen's rows (blank rows
    at the end dropped)."""
    out = Output(interactive=True)
    # sys.stdout is the terminal only now: pytest's capture sets its own for each test's call.
    with contextlib.redirect_stdout(term.stdout):
        out.info(before)
        out.message("alice", ADDR, text)
        out.info("later line")
    term.pump()
    rows = term.rows()
    while rows and not rows[-1]:
        rows.pop()
    return rows


def assert_one_message(rows: list[str], before: str = "earlier line") -> list[str]:
    """The screen holds the earlier line, one message (its header row, then only marked rows),
    and the later line, in that order; the message's rows."""
    assert rows[0] == before, rows
    assert rows[-1] == "later line", rows
    message = rows[1:-1]
    assert message[0].startswith(HEADER.rstrip()), rows  # (rows are shown without trailing blanks)
    for row in message[1:]:
        assert row.startswith(CONTINUATION), rows
        assert not NAME_AT_COLUMN_0.match(row), rows
    assert [r for r in rows if NAME_AT_COLUMN_0.match(r)] == [message[0]], rows
    return message


def body(message: list[str]) -> str:
    """The message text as shown (header and markers removed)."""
    return message[0][len(HEADER) :] + "".join(r[len(CONTINUATION) :] for r in message[1:])


def test_the_padded_spoof_from_the_issue_is_drawn_as_a_marked_continuation(term: Terminal) -> None:
    text = "x" * (COLUMNS - len(HEADER)) + SPOOF_TAIL
    rows = show(term, text)
    message = assert_one_message(rows)
    assert message == [HEADER + "x" * (COLUMNS - len(HEADER)), CONTINUATION + SPOOF_TAIL]


@pytest.mark.parametrize("pad", [" ", ".", "é", "日"])
def test_a_spoof_padded_with_anything_is_still_marked(term: Terminal, pad: str) -> None:
    cells = 2 if pad == "日" else 1
    for short in (0, 1):
        text = pad * ((COLUMNS - len(HEADER)) // cells - short) + SPOOF_TAIL
        term.screen.reset()
        message = assert_one_message(show(term, text))
        assert any("the meeting moved" in r for r in message[1:])


@pytest.mark.parametrize(
    ("text", "shown"),
    [
        ("csi\x9b2Jhere", "csi\\x9b2Jhere"),
        ("nel\x85bob (127.0.0.1:1): fake", "nel\\x85bob (127.0.0.1:1): fake"),
        ("rlo\u202eevil.exe", "rlo\\u202eevil.exe"),
        ("tab\there", "tab\\there"),
        ("clear\x1b[2Jscreen", "clear\\x1b[2Jscreen"),
        ("title\x1b]0;pwned\x07set", "title\\x1b]0;pwned\\x07set"),
        ("cr\rbob (127.0.0.1:1): fake", "cr\\rbob (127.0.0.1:1): fake"),
        ("bs\x08\x08\x08\x08\x08\x08bob: fake", "bs" + "\\x08" * 6 + "bob: fake"),
        ("up\x1b[1A\x1b[2Kgone", "up\\x1b[1A\\x1b[2Kgone"),
        ("reset\x1bcnow", "reset\\x1bcnow"),
        ("ls\u2028ps\u2029zw\u200bbom\ufeff", "ls\\u2028ps\\u2029zw\\u200bbom\\ufeff"),
        ("typed \\x1b is not ESC", "typed \\\\x1b is not ESC"),
        ("line\nbob (127.0.0.1:1): fake", "line\\nbob (127.0.0.1:1): fake"),
    ],
)
def test_controls_are_drawn_escaped(term: Terminal, text: str, shown: str) -> None:
    message = assert_one_message(show(term, text))
    assert body(message) == shown
    assert term.screen.title == ""
    if "\n" in text:
        assert message[1] == CONTINUATION + "bob (127.0.0.1:1): fake"


def test_a_long_message_of_everything_hostile_wraps_with_every_row_marked(term: Terminal) -> None:
    text = ("\x1b[2J日本\x9b\t\u202e" + "é\u0301 " + SPOOF_TAIL) * 3
    message = assert_one_message(show(term, text))
    assert len(message) > 3
    assert render.unescape(body(message)) == text


def test_autowrap_is_off_while_a_message_is_drawn(
    term: Terminal, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Should the terminal draw a character wider than the client counted, the row is cut at the
    right edge instead of wrapping to column 0. Here '日' is miscounted as 1 cell on purpose."""
    real = render.cell_width
    monkeypatch.setattr(render, "cell_width", lambda ch: 1 if ch == "日" else real(ch))
    monkeypatch.setattr(render, "_CELLS", render._Cells())
    # By the client's count: header 25 + 30 = 55 cells, then 25 cells of the spoof fit on the
    # row. Drawn, the 日 take 50, so the row is full before the spoof starts.
    text = "日" * 25 + "....." + SPOOF_TAIL
    message = assert_one_message(show(term, text))
    assert message[1].startswith(CONTINUATION)

    # The same without the guard: the spoof's start wraps to column 0, a forged header.
    monkeypatch.setattr(ui, "NO_AUTOWRAP", "")
    monkeypatch.setattr(ui, "AUTOWRAP", "")
    term.screen.reset()
    rows = show(term, text)
    assert rows[2] == "alice (127.0.0.1:57384):", rows


def test_output_to_a_file_is_escaped_and_marked_but_not_wrapped(
    capsys: pytest.CaptureFixture[str],
) -> None:
    out = Output(interactive=False)
    out.message("alice", ADDR, "x" * 200 + "\x1b[2J\n" + SPOOF_TAIL, verified=False)
    shown = capsys.readouterr().out
    assert "\x1b" not in shown
    assert shown == (
        "alice? (127.0.0.1:57384) [unverified]: " + "x" * 200 + "\\x1b[2J\\n\n"
        f"{CONTINUATION}{SPOOF_TAIL}\n"
    )


def test_a_terminal_that_is_not_utf8_gets_question_marks_not_a_crash() -> None:
    import io

    raw = io.BytesIO()
    stream = io.TextIOWrapper(raw, encoding="ascii")
    with contextlib.redirect_stdout(stream):
        Output(interactive=False).message("alice", ADDR, "caf\u00e9 \u65e5\x1b")
    stream.flush()
    assert raw.getvalue() == b"alice (127.0.0.1:57384): caf? ?\\x1b\n"


def test_own_lines_are_escaped_too(capsys: pytest.CaptureFixture[str]) -> None:
    out = Output(interactive=False)
    out.info("help:\n  list")
    out.error("server says \x1b[31mred")
    captured = capsys.readouterr()
    assert captured.out == "help:\n  list\n"
    assert captured.err == "error: server says \\x1b[31mred\n"


def test_terminal_width() -> None:
    with open(os.devnull, "w") as devnull:
        assert ui.terminal_width(devnull) is None
    t = Terminal()
    try:
        assert ui.terminal_width(t.stdout) == COLUMNS
        fcntl.ioctl(t.stdout.fileno(), termios.TIOCSWINSZ, struct.pack("HHHH", 0, 0, 0, 0))
        assert ui.terminal_width(t.stdout) == ui.FALLBACK_COLUMNS
    finally:
        t.close()


# --- install_excepthooks -----------------------------------------------------------------------


@pytest.fixture
def hooks_restored() -> Iterator[None]:
    saved = sys.excepthook, threading.excepthook
    try:
        yield
    finally:
        sys.excepthook, threading.excepthook = saved


class Lines(Output):
    def __init__(self) -> None:
        super().__init__(interactive=False)
        self.lines: list[str] = []

    def _write(self, line: str, *, err: bool = False) -> None:
        self.lines.append(line)


def raised(exc: BaseException) -> BaseException:
    try:
        raise exc
    except BaseException as caught:
        return caught


def hooks_into_lines() -> Lines:
    """The client's exception hooks installed, writing to a fresh :class:`Lines`."""
    out = Lines()
    loop = asyncio.new_event_loop()
    try:
        install_excepthooks(out, loop)
    finally:
        loop.close()
    return out


@pytest.mark.usefixtures("hooks_restored")
def test_an_exception_that_ends_the_program_is_one_line(caplog: pytest.LogCaptureFixture) -> None:
    out = hooks_into_lines()
    exc = raised(MemoryError())
    with caplog.at_level(logging.DEBUG, logger="chat-client"):
        sys.excepthook(MemoryError, exc, exc.__traceback__)
    assert out.lines == ["error: internal error (MemoryError); see --verbose"]
    # The traceback is logged at DEBUG (shown with -v only).
    (record,) = caplog.records
    assert record.levelno == logging.DEBUG and record.exc_info is not None
    assert "Traceback" in caplog.text

    kbd = raised(KeyboardInterrupt())
    sys.excepthook(KeyboardInterrupt, kbd, kbd.__traceback__)
    assert len(out.lines) == 1


@pytest.mark.usefixtures("hooks_restored")
def test_a_failed_thread_is_one_line() -> None:
    out = hooks_into_lines()

    def boom() -> None:
        raise ValueError("secret detail")

    t = threading.Thread(target=boom)
    t.start()
    t.join()
    assert out.lines == ["error: internal error (ValueError); see --verbose"]


@pytest.mark.usefixtures("hooks_restored")
def test_an_exception_in_the_event_loop_is_one_line(capfd: pytest.CaptureFixture[str]) -> None:
    out = Lines()

    async def scenario() -> None:
        install_excepthooks(out)
        loop = asyncio.get_running_loop()

        def callback() -> None:
            raise MemoryError

        loop.call_soon(callback)

        async def orphan() -> None:
            raise KeyError("k")

        task = loop.create_task(orphan())
        await asyncio.sleep(0.01)
        del task  # never awaited: the loop reports it when the task is collected
        import gc

        gc.collect()
        loop.call_exception_handler({"message": "just a message"})

    asyncio.run(scenario())
    assert out.lines == [
        "error: internal error (MemoryError); see --verbose",
        "error: internal error (KeyError); see --verbose",
    ]
    assert "Traceback" not in capfd.readouterr().err


@pytest.mark.usefixtures("hooks_restored")
def test_a_hook_never_raises_even_if_the_output_does(capfd: pytest.CaptureFixture[str]) -> None:
    class Broken(Output):
        def _write(self, line: str, *, err: bool = False) -> None:
            raise BrokenPipeError

    loop = asyncio.new_event_loop()
    try:
        install_excepthooks(Broken(interactive=False), loop)
    finally:
        loop.close()
    exc = raised(RuntimeError())
    sys.excepthook(RuntimeError, exc, exc.__traceback__)
    assert capfd.readouterr().err == "error: internal error; see --verbose\n"


def test_excepthooks_in_a_real_process(tmp_path: Path) -> None:
    """A process whose main raises: one line on stderr, no traceback; with DEBUG logging the
    traceback is there too."""
    import subprocess

    script = (
        "import asyncio, logging, sys\n"
        "from chat_client.ui import Output, install_excepthooks\n"
        "if sys.argv[1:] == ['-v']: logging.basicConfig(level=logging.DEBUG)\n"
        "async def main():\n"
        "    install_excepthooks(Output(interactive=False))\n"
        "    raise MemoryError\n"
        "asyncio.run(main())\n"
    )
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    quiet = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=30
    )
    assert quiet.returncode == 1
    assert quiet.stderr == "error: internal error (MemoryError); see --verbose\n"
    assert quiet.stdout == ""
    verbose = subprocess.run(
        [sys.executable, "-c", script, "-v"], capture_output=True, text=True, env=env, timeout=30
    )
    assert "Traceback" in verbose.stderr
    assert verbose.stderr.rstrip().endswith("error: internal error (MemoryError); see --verbose")
