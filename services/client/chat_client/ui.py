"""Terminal input and output.

On a terminal, prompt_toolkit reads lines and keeps the prompt and the half-typed line intact while
messages are printed above it. From a pipe or a file, a reader thread feeds lines of any length.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import stat
import sys
from collections.abc import AsyncIterator
from typing import Protocol

from chat_protocol.const import MAX_MESSAGE_BYTES
from chat_protocol.messages import Addr

PROMPT = "+> "
MAX_LINE_BYTES = MAX_MESSAGE_BYTES + 1024
_CONTROL = {c: f"\\x{c:02x}" for c in range(32) if c not in (9,)}
_CONTROL[127] = "\\x7f"


def printable(text: str) -> str:
    """Escape control characters so a peer cannot move the cursor or clear the screen."""
    return text.translate(_CONTROL)


class Output:
    def __init__(self, *, interactive: bool) -> None:
        self.interactive = interactive

    def _write(self, line: str, *, err: bool = False) -> None:
        stream = sys.stderr if err and not self.interactive else sys.stdout
        stream.write(line + "\n")
        stream.flush()

    def info(self, text: str) -> None:
        self._write(text)

    def error(self, text: str) -> None:
        self._write(f"error: {text}", err=True)

    def message(self, sender: str, addr: Addr, text: str, *, verified: bool) -> None:
        who, mark = (sender, "") if verified else (f"{sender}?", " [unverified]")
        self._write(f"{who} ({addr[0]}:{addr[1]}){mark}: {printable(text)}")


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


@contextlib.asynccontextmanager
async def open_input(out: Output) -> AsyncIterator[LineInput]:
    if not out.interactive:
        yield await PipeInput.open()
        return
    from prompt_toolkit.patch_stdout import patch_stdout

    with patch_stdout(raw=True):
        yield TerminalInput()
