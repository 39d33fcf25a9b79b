r"""How untrusted text is drawn on the user's terminal (pure functions; ui.py writes the result).

A peer chooses every character of its message, so the text must not be able to move the cursor,
change the terminal, reorder what is shown, or draw a row that looks like another user's line.

**Escapes.** Every character of Unicode category C (Cc controls, C1 included; Cf format such as
U+202E and U+200B; Cs lone surrogates; Co private use; Cn unassigned), Zl (U+2028) and Zp
(U+2029) is shown in Python string-literal notation, and so is the backslash itself:

=========================  ======================================
``\\``                     a backslash the sender typed
``\t`` ``\n`` ``\r``        tab, line feed, carriage return
``\xHH``                   any other such character up to U+00FF (``\x1b``, ``\x9b``, ``\x85``)
``\uHHHH``                 up to U+FFFF (``\u202e``, ``\u2028``)
``\UHHHHHHHH``             beyond (``\U000e0001``)
=========================  ======================================

Hex digits are lower case. Because a typed backslash is doubled, a single backslash on screen
always starts one of these escapes: a sender who types the four characters ``\x1b`` is shown
``\\x1b``. :func:`unescape` is the exact inverse of :func:`escape`. Unassigned code points are
escaped too: the terminal's idea of their width is unknown, and a width the terminal disagrees
with is how a row overflows into a forged one.

**Rows.** :func:`render_message` returns the rows of one message. The first is
``PREFIX: TEXT`` and starts with the sender's name (names are 1-32 of ``[A-Za-z0-9_.-]``,
starting with a letter or digit). Every further row starts with :data:`CONTINUATION`
(``"  │ "``, two spaces, U+2502, a space), which no first row can start with, so no message can draw
a row that reads as someone else's line. A row ends where the terminal's width would end it
(soft wrap), and after every line feed the text contains, which is shown as ``\n`` *and* ends the
row. So a reader sees the sender's line breaks, and the rows give back the exact text: drop the
marker from every row after the first, join, :func:`unescape`.

**Width** is counted in terminal cells, leaning towards too wide (a row that ends early is
harmless; one the terminal finds too long wraps at column 0, where a forged header would sit):
East Asian Wide and Fullwidth characters take 2 cells, and so do regional indicators (flag
halves); combining marks (Mn, Me) take 0, except U+FE0F, which can turn the character before it
into a 2-cell emoji and so counts 1; everything else takes 1 (East Asian Ambiguous included, as
terminals do outside CJK locales). An escape is never split between rows. Widths under
:data:`MIN_WIDTH` are treated as :data:`MIN_WIDTH`. With no width (output to a pipe or file) rows
end only at line feeds.
"""

from __future__ import annotations

import re
import sys
import unicodedata

CONTINUATION = "  │ "
"""What every row of a message after its first starts with."""
MIN_WIDTH = 20
"""The narrowest terminal rendered for: room for the marker and the longest escape (10 cells)."""

_SPECIAL_RUN = re.compile(r"[^ -\[\]-~]+")
"""Runs of anything but printable ASCII (the backslash counts as special)."""
_NAMED = {"\\": "\\\\", "\t": "\\t", "\n": "\\n", "\r": "\\r"}
_ESCAPE = re.compile(r"\\(?:x[0-9a-f]{2}|u[0-9a-f]{4}|U[0-9a-f]{8}|[\\tnr])")
_UNNAMED = {v: k for k, v in _NAMED.items()}


def needs_escape(ch: str) -> bool:
    """``ch`` is a backslash or of category C*, Zl or Zp.

    ``str.isprintable`` is false exactly for C*, Z* other than U+0020; Zs is the one family of
    those shown as it is (spaces, which have a plain width).
    """
    return ch == "\\" or (not ch.isprintable() and unicodedata.category(ch) != "Zs")


def escape_char(ch: str) -> str:
    """The escape of one character (see the module docstring); call only if it needs one."""
    named = _NAMED.get(ch)
    if named is not None:
        return named
    code = ord(ch)
    if code <= 0xFF:
        return f"\\x{code:02x}"
    if code <= 0xFFFF:
        return f"\\u{code:04x}"
    return f"\\U{code:08x}"


def _escape_run(m: re.Match[str]) -> str:
    run = m.group()
    if "\\" not in run and run.isprintable():
        return run
    return "".join([escape_char(c) if needs_escape(c) else c for c in run])


def escape(text: str) -> str:
    """``text`` with every control, format and separator character (and ``\\``) escaped."""
    return _SPECIAL_RUN.sub(_escape_run, text)


def unescape(text: str) -> str:
    """The inverse of :func:`escape`."""

    def one(m: re.Match[str]) -> str:
        token = m.group()
        return _UNNAMED.get(token) or chr(int(token[2:], 16))

    return _ESCAPE.sub(one, text)


def cell_width(ch: str) -> int:
    """Terminal cells for one character that is shown as it is (see the module docstring)."""
    code = ord(ch)
    if code < 0x300:
        return 1
    if 0x1F1E6 <= code <= 0x1F1FF:
        return 2
    if code == 0xFE0F:
        return 1
    if unicodedata.category(ch) in ("Mn", "Me"):
        return 0
    return 2 if unicodedata.east_asian_width(ch) in ("W", "F") else 1


def text_width(text: str) -> int:
    """Terminal cells for ``text``, which must hold nothing :func:`needs_escape`."""
    if text.isascii():
        return len(text)
    return sum(cell_width(c) for c in text)


class _Rows:
    """Fills rows of at most ``width`` cells (no limit if None) from text pieces."""

    def __init__(self, width: int | None) -> None:
        self._width = sys.maxsize if width is None else max(width, MIN_WIDTH)
        self._room = self._width
        self._row: list[str] = []
        self._rows: list[str] = []
        self._break_pending = False

    def _next_row(self) -> None:
        self._rows.append("".join(self._row))
        self._row = [CONTINUATION]
        self._room = self._width - len(CONTINUATION)
        self._break_pending = False

    def _ascii(self, text: str) -> None:
        """Printable ASCII other than a backslash: 1 cell each, cut anywhere."""
        if self._break_pending:
            self._next_row()
        while len(text) > self._room:
            if self._room:
                self._row.append(text[: self._room])
                text = text[self._room :]
            self._next_row()
        if text:
            self._row.append(text)
            self._room -= len(text)

    def _unit(self, piece: str, cells: int) -> None:
        """A character or an escape, kept whole on one row."""
        if self._break_pending or cells > self._room:
            self._next_row()
        self._row.append(piece)
        self._room -= cells

    def add(self, text: str) -> None:
        at = 0
        for m in _SPECIAL_RUN.finditer(text):
            if m.start() > at:
                self._ascii(text[at : m.start()])
            for ch in m.group():
                if not needs_escape(ch):
                    self._unit(ch, cell_width(ch))
                    continue
                shown = escape_char(ch)
                self._unit(shown, len(shown))
                if ch == "\n":
                    self._break_pending = True
            at = m.end()
        if at < len(text):
            self._ascii(text[at:])

    def done(self) -> list[str]:
        self._rows.append("".join(self._row))
        return self._rows


def render_message(prefix: str, text: str, width: int | None) -> list[str]:
    """The rows that show ``text`` from ``prefix`` (``alice (172.18.0.3:40211)``).

    ``width``: the terminal's columns, or None for output that is not a terminal (no soft
    wraps). Rows carry no line terminator.
    """
    rows = _Rows(width)
    rows.add(prefix)
    rows.add(": ")
    rows.add(text)
    return rows.done()


def render_lines(text: str) -> str:
    """The program's own multi-line text (help, errors): each line escaped, line feeds kept."""
    if "\\" not in text and text.replace("\n", "").isprintable():
        return text
    return "\n".join(escape(line) for line in text.split("\n"))
