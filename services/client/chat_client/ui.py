"""Terminal input and output.

On a terminal, prompt_toolkit reads lines and keeps the prompt and the half-typed line intact while
messages are printed above it. From a pipe or a file, a reader thread feeds lines of any length.

Everything a peer chose is drawn through :mod:`chat_client.render`: escaped, and with every row of
a message after its first marked as a continuation, wrapped to the width of the terminal when the
output is one. Unexpected exceptions reach the user as one line (:func:`install_excepthooks`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import stat
import sys
import threading
from collections.abc import AsyncIterator
from types import TracebackType
from typing import Any, Protocol, TextIO

from chat_client.render import render_lines, render_message
from chat_protocol.const import MAX_MESSAGE_BYTES, RELAY_HOST
from chat_protocol.wire.messages import Addr

PROMPT = "+> "
MAX_LINE_BYTES = MAX_MESSAGE_BYTES + 1024
FALLBACK_COLUMNS = 80
"""The width assumed for a terminal that reports none (some ``docker run -t`` set-ups say 0)."""
NO_AUTOWRAP, AUTOWRAP = "\x1b[?7l", "\x1b[?7h"
"""DECAWM off/on. Rows already fit the width; should the terminal count a character wider than
:func:`chat_client.render.cell_width` does, the row is cut at the right edge instead of wrapping
to column 0, where it could read as another line."""

log = logging.getLogger("chat-client")


def terminal_width(stream: TextIO) -> int | None:
    """The columns of the terminal ``stream`` writes to, or None if it is not a terminal."""
    try:
        fd = stream.fileno()
        if not os.isatty(fd):
            return None
    except (AttributeError, ValueError, OSError):
        return None
    try:
        columns = os.get_terminal_size(fd).columns
    except OSError:
        return FALLBACK_COLUMNS
    return columns if columns > 0 else FALLBACK_COLUMNS


NEW_MARK = " (new)"
"""After the address of the first message shown from a sender never pinned before (inside the
prefix, which the sender cannot draw: the text starts after the prefix's ``: ``)."""


class Output:
    def __init__(self, *, interactive: bool) -> None:
        self.interactive = interactive

    def _write(self, line: str, *, err: bool = False) -> None:
        stream = sys.stderr if err and not self.interactive else sys.stdout
        try:
            stream.write(line + "\n")
        except UnicodeEncodeError:
            # A terminal that is not UTF-8: what it cannot show becomes '?'.
            encoding = getattr(stream, "encoding", None) or "ascii"
            stream.write((line + "\n").encode(encoding, "replace").decode(encoding))
        stream.flush()

    def info(self, text: str) -> None:
        self._write(render_lines(text))

    def error(self, text: str) -> None:
        self._write(render_lines(f"error: {text}"), err=True)

    def message(
        self, sender: str, addr: Addr, text: str, *, verified: bool = True, new: bool = False
    ) -> None:
        """``alice (172.18.0.3:40211): hello``; escaped, wrapped and marked by
        :func:`chat_client.render.render_message`. ``new``: the first line shown from a sender
        never pinned before, marked ``alice (172.18.0.3:40211) (new): hello``."""
        who, mark = (sender, "") if verified else (f"{sender}?", " [unverified]")
        if new:
            mark += NEW_MARK
        width = terminal_width(sys.stdout)
        where = "via relay" if addr[0] == RELAY_HOST else f"{addr[0]}:{addr[1]}"
        shown = "\n".join(render_message(f"{who} ({where}){mark}", text, width))
        if width is not None and os.environ.get("TERM") != "dumb":
            shown = NO_AUTOWRAP + shown + AUTOWRAP
        self._write(shown)


def install_excepthooks(out: Output, loop: asyncio.AbstractEventLoop | None = None) -> None:
    """Show an unexpected exception as ``error: internal error (TYPE); see --verbose``.

    Covers exceptions that end the program (``sys.excepthook``), end a thread
    (``threading.excepthook``) or are caught by the event loop (``loop`` or the running loop:
    a failed callback, a task nobody awaited). The traceback goes to the ``chat-client`` logger at
    DEBUG level, which only ``-v`` shows.
    """

    def report(exc: BaseException) -> None:
        try:
            log.debug("internal error", exc_info=exc)
            out.error(f"internal error ({type(exc).__name__}); see --verbose")
        except BaseException:  # a hook must not raise: fd 2 is the last resort
            with contextlib.suppress(BaseException):
                os.write(2, b"error: internal error; see --verbose\n")

    def program_hook(
        exc_type: type[BaseException], exc: BaseException, tb: TracebackType | None
    ) -> None:
        if not isinstance(exc, KeyboardInterrupt):
            report(exc.with_traceback(tb))

    def thread_hook(args: threading.ExceptHookArgs) -> None:
        if args.exc_value is not None and not isinstance(args.exc_value, SystemExit):
            report(args.exc_value.with_traceback(args.exc_traceback))

    def loop_handler(_loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
        exc = context.get("exception")
        if isinstance(exc, BaseException):
            report(exc)
        else:
            log.debug("event loop: %s", context.get("message"))

    sys.excepthook = program_hook
    threading.excepthook = thread_hook
    (loop or asyncio.get_running_loop()).set_exception_handler(loop_handler)


class LineInput(Protocol):
    async def readline(self) -> str | None:
        """The next line without its newline, or None at end of input (Ctrl-D, Ctrl-C, EOF)."""
        ...


class PipeInput:
    """Lines from a non-terminal stdin (pipe, socket, file), of any length up to the limit."""

    def __init__(self, reader: asyncio.StreamReader) -> None:
        self._reader = reader
        self._feeder: asyncio.Task[None] | None = None

    @classmethod
    async def open(cls) -> PipeInput:
        loop = asyncio.get_running_loop()
        reader = asyncio.StreamReader(limit=MAX_LINE_BYTES)
        lines = cls(reader)
        mode = os.fstat(0).st_mode
        if stat.S_ISFIFO(mode) or stat.S_ISSOCK(mode):
            await loop.connect_read_pipe(
                lambda: asyncio.StreamReaderProtocol(reader), os.fdopen(0, "rb", closefd=False)
            )
        else:
            # A regular file or a device cannot be polled, and never blocks for long: read it in
            # the executor, a block at a time.
            lines._feeder = asyncio.create_task(cls._feed(reader))
        return lines

    @staticmethod
    async def _feed(reader: asyncio.StreamReader) -> None:
        loop = asyncio.get_running_loop()
        while block := await loop.run_in_executor(None, os.read, 0, 1 << 16):
            reader.feed_data(block)
        reader.feed_eof()

    async def readline(self) -> str | None:
        while True:
            try:
                raw = await self._reader.readline()
            except ValueError:
                sys.stderr.write(f"error: input line over {MAX_LINE_BYTES} bytes, ignored\n")
                continue
            if not raw:
                return None
            return raw.decode("utf-8", errors="replace").rstrip("\r\n")


class TerminalInput:
    def __init__(self) -> None:
        from prompt_toolkit import PromptSession

        self._session: PromptSession[str] = PromptSession()

    async def readline(self) -> str | None:
        try:
            return await self._session.prompt_async(PROMPT)
        except (EOFError, KeyboardInterrupt):
            return None


def _no_cursor_position_requests() -> None:
    """Tell prompt_toolkit's output for this terminal never to ask for the cursor position.

    By default prompt_toolkit sends a cursor position request (CPR, ``ESC [ 6 n``) when it draws
    the prompt and, when no answer comes within 2 s (pexpect, some ``docker compose run``
    set-ups), prints "WARNING: your terminal doesn't support cursor position requests (CPR)". A
    one-line prompt does not need the answer (it only sizes menus that drop below the cursor).

    This changes the output of the current (default) app session in place rather than making a
    new session: patch_stdout's flush thread looks the running application up in the default
    session, and would not find one started in another (messages would then be printed without
    the prompt being redrawn).
    """
    from prompt_toolkit.application.current import get_app_session
    from prompt_toolkit.output.vt100 import Vt100_Output

    output = get_app_session().output
    if isinstance(output, Vt100_Output):
        output.enable_cpr = False


@contextlib.asynccontextmanager
async def open_input(out: Output) -> AsyncIterator[LineInput]:
    if not out.interactive:
        yield await PipeInput.open()
        return
    from prompt_toolkit.patch_stdout import patch_stdout

    _no_cursor_position_requests()
    with patch_stdout(raw=True):
        yield TerminalInput()
