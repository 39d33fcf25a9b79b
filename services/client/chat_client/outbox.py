"""The user's own messages on a terminal: echoed once, with a mark the client draws.

``12:04 you → bob: hello …`` while the message travels, ``✓`` once bob's client showed it
(``MessageDelivered``: "delivered"), ``✗`` and why when it failed (the words piped mode
prints as an error: ``✗ not delivered to bob (no acknowledgement for 10 s)``, ``✗ no such user:
bob``). A message of
more than one chunk also shows how many of its bytes bob holds: ``… 42 % (25200 of 60000
bytes)``.

**Where.** While a message travels, its line is drawn in a live area just above the prompt, as
part of the prompt itself: prompt_toolkit redraws it with the half-typed line, and changing the
mark is changing that row, never printing another. When the outcome is known, the line leaves
the live area and is printed once, with its final mark, where the live row was (above the prompt:
lines printed meanwhile, such as received messages, stay above it). At most
:data:`LIVE_ROWS` messages are drawn live; the others are counted on one more row.

**Marks cannot be forged.** The mark is drawn from the send's events, never from its text; the
text is escaped (:mod:`chat_client.render`), so it cannot move the cursor onto a mark, and the
mark is always the last thing on the line and coloured (green ``✓``, red ``✗``), which no
text can be.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum

from chat_client.render import CONTINUATION, cell_width, escape, render_message, text_width
from chat_protocol.const import CHUNK_PAYLOAD_BYTES

SENDING, SHOWN, FAILED = "…", "✓", "✗"
LIVE_ROWS = 5
"""Travelling messages drawn in the live area at most (one more row counts the rest)."""
CLIP = "⋯"
"""Ends a live row's text that was cut to fit the row."""
GREEN, RED, DEFAULT_FG = "\x1b[32m", "\x1b[31m", "\x1b[39m"


class State(Enum):
    SENDING = "sending"
    SHOWN = "shown"
    FAILED = "failed"


def clock() -> str:
    """The local time as received and own lines show it: ``12:04``."""
    return time.strftime("%H:%M", time.localtime())


def own_prefix(when: str, to: str) -> str:
    """``12:04 you → bob`` (``you → bob`` without the time)."""
    return f"{when} you → {to}" if when else f"you → {to}"


def progress_text(acked: int, total: int) -> str:
    """``42 % (25200 of 60000 bytes)``: bytes the receiver holds of the total."""
    return f"{acked * 100 // total} % ({acked} of {total} bytes)"


@dataclass(kw_only=True, slots=True)
class Own:
    """One message the user sent, as drawn."""

    handle: int
    when: str
    to: str
    text: str
    total: int
    acked: int = 0
    state: State = State.SENDING
    reason: str = ""
    """Why not delivered (``FAILED``): the words of :func:`chat_client.words.fail_text`."""

    @property
    def large(self) -> bool:
        return self.total > CHUNK_PAYLOAD_BYTES

    def mark(self) -> str:
        """What follows the text: the mark, then the progress of a large message or the reason
        of a failure."""
        if self.state is State.FAILED:
            return f"{FAILED} {self.reason}"
        mark = SHOWN if self.state is State.SHOWN else SENDING
        return f"{mark} {progress_text(self.acked, self.total)}" if self.large else mark


def final_rows(own: Own, width: int | None, *, colour: bool = True) -> list[str]:
    """The rows of a line whose outcome is known: the message as ``render_message`` draws it,
    then its mark (coloured when ``colour``) at the end of the last row, or on a row of its own
    when it does not fit there."""
    rows = render_message(own_prefix(own.when, own.to), own.text, width)
    mark = own.mark()
    shown = mark
    if colour:
        tint = GREEN if own.state is State.SHOWN else RED if own.state is State.FAILED else ""
        shown = f"{tint}{mark[0]}{DEFAULT_FG}{mark[1:]}" if tint else mark
    if width is None or text_width(rows[-1]) + 1 + text_width(mark) <= width:
        rows[-1] += " " + shown
    else:
        rows.append(CONTINUATION + shown)
    return rows


def clip(text: str, cells: int) -> str:
    """``text`` (already escaped) cut to ``cells`` terminal cells, ending in :data:`CLIP` if
    cut."""
    if text_width(text) <= cells:
        return text
    used, out = 0, []
    for ch in text:
        w = cell_width(ch)
        if used + w > cells - 1:
            break
        out.append(ch)
        used += w
    return "".join(out) + CLIP


def live_row(own: Own, width: int) -> tuple[str, str]:
    """One row of a travelling message: (the prefix and its text, cut to fit; the mark)."""
    mark = own.mark()
    head = escape(own_prefix(own.when, own.to)) + ": "
    room = max(width - 1 - text_width(head) - 1 - text_width(mark), 1)
    return head + clip(escape(own.text), room), mark


class Outbox:
    """The user's travelling messages, and their lines once resolved.

    ``print_rows`` prints a resolved line (above the prompt); ``changed`` asks for the live area
    to be drawn again (prompt_toolkit's ``invalidate``).
    """

    def __init__(
        self,
        *,
        print_rows: Callable[[list[str]], None],
        changed: Callable[[], None],
        show_time: bool,
        width: Callable[[], int | None],
    ) -> None:
        self._print = print_rows
        self.changed = changed
        """Called when the live area changed (set once the prompt exists)."""
        self._show_time = show_time
        self._width = width
        self.travelling: dict[int, Own] = {}
        self.colour = os.environ.get("TERM") != "dumb"

    def sent(self, handle: int, to: str, text: str) -> None:
        when = clock() if self._show_time else ""
        total = len(text.encode("utf-8", "replace"))
        self.travelling[handle] = Own(handle=handle, when=when, to=to, text=text, total=total)
        self.changed()

    def progress(self, handle: int, acked: int, total: int) -> None:
        own = self.travelling.get(handle)
        if own is not None and acked > own.acked:
            own.acked, own.total = acked, total
            self.changed()

    def delivered(self, handle: int) -> bool:
        """True if ``handle`` was one of the user's lines (now shown ``✓``)."""
        return self._resolve(handle, State.SHOWN, "")

    def failed(self, handle: int, reason: str) -> bool:
        """True if ``handle`` was one of the user's lines (now shown ``✗ ... (reason)``)."""
        return self._resolve(handle, State.FAILED, reason)

    def _resolve(self, handle: int, state: State, reason: str) -> bool:
        own = self.travelling.pop(handle, None)
        if own is None:
            return False
        own.state, own.reason = state, reason
        self._print(final_rows(own, self._width(), colour=self.colour))
        self.changed()
        return True

    def live(self, width: int) -> list[tuple[str, str]]:
        """prompt_toolkit formatted text of the live area (each row ending in a line feed)."""
        frags: list[tuple[str, str]] = []
        shown = list(self.travelling.values())
        more = len(shown) - LIVE_ROWS
        if more > 0:
            shown = shown[: LIVE_ROWS - 1]
        for own in shown:
            text, mark = live_row(own, width)
            frags += [("", text + " "), ("class:mark", mark), ("", "\n")]
        if more > 0:
            frags.append(("class:mark", f"{CONTINUATION}… and {more + 1} more on their way\n"))
        return frags
