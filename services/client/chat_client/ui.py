"""Terminal input and output.

On a terminal, prompt_toolkit reads lines and keeps the prompt and the half-typed line intact while
messages are printed above it. From a pipe or a file, a reader thread feeds lines of any length.

Everything a peer chose is drawn through :mod:`chat_client.render`: escaped, and with every row of
a message after its first marked as a continuation, wrapped to the width of the terminal when the
output is one. Unexpected exceptions reach the user as one line (:func:`install_excepthooks`).
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import os
import re
import stat
import sys
import threading
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Protocol, TextIO

from chat_client.exits import Ending, failure_of, is_reader_gone
from chat_client.render import render_lines, render_message
from chat_protocol.const import MAX_MESSAGE_BYTES, RELAY_HOST
from chat_protocol.errors import UsageError
from chat_protocol.wire.messages import Addr
from chat_shell.keystore import addr_text

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
    """Where the client's lines go: stdout, and stderr for errors when not on a terminal.

    When a write finds nobody reading (a closed pipe, a hung-up terminal), the output is gone:
    ``on_reader_gone`` is called once, and every later line is dropped.
    """

    def __init__(self, *, interactive: bool) -> None:
        self.interactive = interactive
        self.reader_gone = False
        self.on_reader_gone: Callable[[], object] | None = None

    def _write(self, line: str, *, err: bool = False) -> None:
        if self.reader_gone:
            return
        stream = sys.stderr if err and not self.interactive else sys.stdout
        try:
            try:
                stream.write(line + "\n")
            except UnicodeEncodeError:
                # A terminal that is not UTF-8: what it cannot show becomes '?'.
                encoding = getattr(stream, "encoding", None) or "ascii"
                stream.write((line + "\n").encode(encoding, "replace").decode(encoding))
            stream.flush()
        except OSError as exc:
            if not is_reader_gone(exc):
                raise
            self._gone(stream)

    def _gone(self, stream: TextIO) -> None:
        """Nobody reads ``stream``: point its descriptor at /dev/null (so that nothing, not even
        the interpreter's last flush, meets the closed pipe again) and say so once."""
        self.reader_gone = True
        with contextlib.suppress(OSError, ValueError):
            null = os.open(os.devnull, os.O_WRONLY)
            os.dup2(null, stream.fileno())
            os.close(null)
        if self.on_reader_gone is not None:
            self.on_reader_gone()

    def ending(self, ending: Ending) -> int:
        """Show the line of a failure that ends the client before it signed in; its status."""
        if ending.failure.shown == "error":
            self.error(ending.text)
        elif ending.failure.shown == "info":
            self.info(ending.text)
        return int(ending.code)

    def warning(self, text: str) -> None:
        self._write(render_lines(f"warning: {text}"), err=True)

    def info(self, text: str) -> None:
        self._write(render_lines(text))

    def error(self, text: str) -> None:
        self._write(render_lines(f"error: {text}"), err=True)

    def message(
        self,
        sender: str,
        addr: Addr,
        text: str,
        *,
        verified: bool = True,
        new: bool = False,
        when: str = "",
    ) -> None:
        """``alice (172.18.0.3:40211): hello``; escaped, wrapped and marked by
        :func:`chat_client.render.render_message`. ``new``: the first line shown from a sender
        never pinned before, marked ``alice (172.18.0.3:40211) (new): hello``. ``when``: the
        local time it was shown, before the name (``12:04 alice (...): hello``)."""
        who, mark = (sender, "") if verified else (f"{sender}?", " [unverified]")
        if new:
            mark += NEW_MARK
        width = terminal_width(sys.stdout)
        where = "via relay" if addr[0] == RELAY_HOST else addr_text(addr)
        prefix = f"{when} {who} ({where}){mark}" if when else f"{who} ({where}){mark}"
        self.rows(render_message(prefix, text, width))

    def rows(self, rows: list[str]) -> None:
        """Rows that already fit the terminal (a message, an own line with its mark)."""
        shown = "\n".join(rows)
        if terminal_width(sys.stdout) is not None and os.environ.get("TERM") != "dumb":
            shown = NO_AUTOWRAP + shown + AUTOWRAP
        self._write(shown)

    def width(self) -> int | None:
        """The terminal's columns, or None when stdout is not a terminal."""
        return terminal_width(sys.stdout)


def install_excepthooks(
    out: Output,
    loop: asyncio.AbstractEventLoop | None = None,
    *,
    on_error: Callable[[BaseException], None] | None = None,
) -> None:
    """Show an unexpected exception as ``error: internal error (TYPE); see --verbose``; with
    ``on_error`` (the client's end), an exception the event loop caught is handed to it instead,
    which says the same and ends the client (signing out).

    Covers exceptions that end the program (``sys.excepthook``), end a thread
    (``threading.excepthook``) or are caught by the event loop (``loop`` or the running loop:
    a failed callback, a task nobody awaited). The traceback goes to the ``chat-client`` logger at
    DEBUG level, which only ``-v`` shows.
    """

    def report(exc: BaseException) -> None:
        try:
            log.debug("internal error", exc_info=exc)
            ending = failure_of(exc)
            if ending.failure.shown == "error":
                out.error(ending.text)
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
        if isinstance(exc, BaseException) and on_error is not None:
            try:
                on_error(exc)
            except BaseException:
                report(exc)
        elif isinstance(exc, BaseException):
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
        """The next line; UsageError for a line over :data:`MAX_LINE_BYTES`, whose rest (up
        to its newline) is skipped, not read as a line of its own."""
        overlong = False
        while True:
            try:
                raw = await self._reader.readuntil(b"\n")
            except asyncio.IncompleteReadError as exc:  # the end of the input
                raw = exc.partial
            except asyncio.LimitOverrunError as exc:  # drop what the reader holds of the line
                await self._reader.readexactly(exc.consumed)
                overlong = True
                continue
            if overlong:
                raise UsageError(f"input line over {MAX_LINE_BYTES} bytes, ignored")
            if not raw:
                return None
            return raw.decode("utf-8", errors="replace").rstrip("\r\n")


MAX_TYPED_CHARS = 1 << 16
"""The longest line the terminal prompt takes (characters). prompt_toolkit's line editor redraws
the whole line after every batch of keys read, so its cost grows with the square of the line; a
longer line is refused when Enter ends it, with its size. Longer messages (up to
:data:`~chat_protocol.const.MAX_MESSAGE_BYTES`) are piped in (docs/CLI.md)."""
READ_CHARS = 1 << 16
"""How much the terminal input reads at once (prompt_toolkit's default is 1024)."""


def too_long_text(chars: int) -> str:
    return (
        f"the typed line has {chars} characters, over the prompt's limit of {MAX_TYPED_CHARS}; "
        "it was not run (pipe longer messages into chat-client)"
    )


PLAIN_RUN = re.compile(r"[^\x00-\x1f\x7f]{16,}")
"""Characters no key sequence contains but as its last: taken as text without prompt_toolkit's
parser, which spends ~13 us on each character (13 s for a 1 MiB paste)."""


def terminal_input(stdin: TextIO | None = None) -> Any:
    """prompt_toolkit's terminal input, changed in four ways:

    * a run of plain characters is taken as text, not parsed one character at a time, when the
      parser is between key sequences;
    * a run of plain characters read at once becomes one insertion (as a paste is), not one key
      press each: prompt_toolkit inserts each key into a new copy of the line, so a paste into a
      terminal that does not mark pastes cost the square of its length;
    * a line longer than :data:`MAX_TYPED_CHARS` stops growing: what follows is counted, not
      inserted, until Enter, and the line is then refused (``overflow`` holds its length);
    * what a terminal would send as a report (a mouse event ``ESC [ 31 m``, a cursor position
      ``ESC [ 1 ; 2 R``) can only be typed here (no mouse support, no position requests), and is
      taken as text: prompt_toolkit's own handlers of those raise on typed ones.
    """
    from prompt_toolkit.input.vt100 import Vt100Input
    from prompt_toolkit.input.vt100_parser import Vt100Parser
    from prompt_toolkit.key_binding import KeyPress
    from prompt_toolkit.keys import Keys

    as_text = (Keys.Vt100MouseEvent, Keys.CPRResponse, Keys.BracketedPaste)
    enter = (Keys.ControlM, Keys.ControlJ)

    class Counted:
        """The parser's coroutine, counting the characters sent to it."""

        def __init__(self, parser: Parser, coroutine: Any) -> None:
            self.parser, self.coroutine = parser, coroutine

        def send(self, c: Any) -> Any:
            if isinstance(c, str):
                self.parser.pending += len(c)
            return self.coroutine.send(c)

    class Parser(Vt100Parser):
        """Knows when it holds no part of a key sequence (``pending == 0``)."""

        pending = 0

        def _start_parser(self) -> None:
            super()._start_parser()
            self.pending = 0
            self._input_parser = Counted(self, self._input_parser)  # type: ignore[assignment]

        def _call_handler(self, key: Any, insert_text: str) -> None:
            self.pending -= len(insert_text)
            super()._call_handler(key, insert_text)

        def pasting(self) -> bool:
            return self._in_bracketed_paste

        def feed(self, data: str) -> None:
            if self.pasting() or len(data) < 16:
                super().feed(data)
                return
            pos = 0
            for m in PLAIN_RUN.finditer(data):
                super().feed(data[pos : m.start()])
                pos = m.start()
                # The parser takes characters of the run while it holds part of a key sequence
                # (a sequence may end in plain characters); the rest is text, taken whole.
                while pos < m.end() and not self.pasting():
                    super().feed(data[pos])
                    pos += 1
                    if self.pending == 0:
                        break
                if self.pasting():
                    break
                if pos < m.end():
                    self.feed_key_callback(KeyPress(Keys.BracketedPaste, data[pos : m.end()]))
                    pos = m.end()
            super().feed(data[pos:])

    class TypedInput(Vt100Input):
        def __init__(self) -> None:
            super().__init__(sys.stdin if stdin is None else stdin)
            self.vt100_parser = Parser(self._buffer.append)
            self.overflow: int | None = None
            """The length of the line being typed, once it is over the limit."""
            self.ended: collections.deque[int | None] = collections.deque()
            """For each Enter passed on, in order: None, or the length of the line it refuses."""

        def read_keys(self) -> list[KeyPress]:
            self.vt100_parser.feed(self.stdin_reader.read(READ_CHARS))
            return self._shape()

        def flush_keys(self) -> list[KeyPress]:
            self.vt100_parser.flush()
            return self._shape()

        def _shape(self) -> list[KeyPress]:
            from prompt_toolkit.application.current import get_app

            keys = list(self._buffer)
            self._buffer.clear()
            shaped: list[KeyPress] = []
            run: list[str] = []
            length = len(get_app().current_buffer.text)

            def flush() -> None:
                if run:
                    shaped.append(KeyPress(Keys.BracketedPaste, "".join(run)))
                    run.clear()

            for kp in keys:
                typed = kp.data if kp.key in as_text or not isinstance(kp.key, Keys) else None
                if kp.key in enter:
                    flush()
                    shaped.append(kp)
                    self.ended.append(self.overflow)
                    self.overflow, length = None, 0
                    continue
                if self.overflow is not None:
                    if typed is not None:
                        self.overflow += len(typed)
                    continue
                if typed is None:
                    flush()
                    shaped.append(kp)
                    continue
                length += len(typed)
                if length > MAX_TYPED_CHARS:
                    self.overflow = length
                    run.clear()
                    continue
                run.append(typed)
            flush()
            return shaped

    return TypedInput()


@dataclass(frozen=True, kw_only=True)
class PromptParts:
    """What the terminal prompt shows and offers besides the typed line."""

    above: Callable[[int], list[tuple[str, str]]] | None = None
    """The live area drawn above ``+> `` (formatted text for a width), redrawn on
    :meth:`TerminalInput.redraw`."""
    completer: Any = None
    """A prompt_toolkit completer for Tab (readline-like: the common part is inserted)."""
    history: Any = None
    """A prompt_toolkit history (Up/Down recall typed lines)."""
    erase: Callable[[str], bool] | None = None
    """Whether an entered line leaves the screen (a send: its echo takes its place)."""


class TerminalInput:
    def __init__(self, parts: PromptParts | None = None) -> None:
        from prompt_toolkit import PromptSession
        from prompt_toolkit.document import Document
        from prompt_toolkit.shortcuts import CompleteStyle
        from prompt_toolkit.validation import Validator

        self._input = terminal_input()
        self._parts = parts or PromptParts()
        self._entered = False
        """Enter was pressed: the prompt is drawn a last time, without the live area."""
        erase = self._parts.erase

        class EraseOnEnter(Validator):
            """Accepts every line; decides, as Enter is taken, whether it leaves the screen, and
            takes the live area out of the prompt: the line stays on the screen as typed, the
            live area goes on with the next prompt (it is not left behind above it)."""

            def validate(inner, document: Document) -> None:
                self._entered = True
                self._session.app.erase_when_done = erase is not None and erase(document.text)

        self._session: PromptSession[str] = PromptSession(
            input=self._input,
            completer=self._parts.completer,
            complete_while_typing=False,
            complete_style=CompleteStyle.READLINE_LIKE,
            reserve_space_for_menu=0,
            history=self._parts.history,
            validator=EraseOnEnter(),
        )

    def _message(self) -> Any:
        above = self._parts.above
        if above is None or self._entered:
            return PROMPT
        width = self._session.app.output.get_size().columns or FALLBACK_COLUMNS
        return [*above(width), ("", PROMPT)]

    def redraw(self) -> None:
        """Draw the live area again (from the event loop; nothing if no prompt is shown)."""
        self._session.app.invalidate()

    async def readline(self) -> str | None:
        """The next line; UsageError for a line over :data:`MAX_TYPED_CHARS`."""
        self._entered = False
        try:
            line = await self._session.prompt_async(self._message)
        except (EOFError, KeyboardInterrupt):
            return None
        refused = self._input.ended.popleft() if self._input.ended else None
        if refused is not None:
            raise UsageError(too_long_text(refused))
        return line


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
async def open_input(out: Output, parts: PromptParts | None = None) -> AsyncIterator[LineInput]:
    if not out.interactive:
        yield await PipeInput.open()
        return
    from prompt_toolkit.patch_stdout import patch_stdout

    _no_cursor_position_requests()
    with patch_stdout(raw=True):
        yield TerminalInput(parts)
