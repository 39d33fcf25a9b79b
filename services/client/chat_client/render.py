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
row (a line feed at the very end leaves a last row holding only the marker). So a reader sees the
sender's line breaks, and the rows give back the exact text: drop the marker from every row after
the first, join, :func:`unescape`.

**Width** is counted in terminal cells, leaning towards too wide (a row that ends early is
harmless; one the terminal finds too long wraps at column 0, where a forged header would sit):
East Asian Wide and Fullwidth characters take 2 cells, and so do regional indicators (flag
halves); combining marks (Mn, Me) take 0, except U+FE0F, which can turn the character before it
into a 2-cell emoji and so counts 1; everything else takes 1 (East Asian Ambiguous included, as
terminals do outside CJK locales); and never less than the ``wcwidth`` package says
(prompt_toolkit's and pyte's measure, which may follow a later Unicode than :mod:`unicodedata`).
An escape is never split between rows, nor a combining mark from its base. Widths under
:data:`MIN_WIDTH` are treated as :data:`MIN_WIDTH`. With no width (output to a pipe or file) rows
end only at line feeds.

**Cost** is linear and mostly C-speed (``str.translate``, ``map`` over bounded caches, ``bisect``
per row), so an 8 MiB message of hostile characters takes about a second or two, not minutes.
"""

from __future__ import annotations

import re
import unicodedata
from bisect import bisect_right
from itertools import accumulate

from wcwidth import wcwidth

CONTINUATION = "  │ "
"""What every row of a message after its first starts with."""
MIN_WIDTH = 20
"""The narrowest terminal rendered for: room for the marker and the longest escape (10 cells)."""

_NAMED = {"\\": "\\\\", "\t": "\\t", "\n": "\\n", "\r": "\\r"}
_ESCAPE = re.compile(r"\\(?:x[0-9a-f]{2}|u[0-9a-f]{4}|U[0-9a-f]{8}|[\\tnr])")
_UNNAMED = {v: k for k, v in _NAMED.items()}
_CACHE_MAX = 1 << 16
"""Entries in each cache of how a code point is shown (a few MB at most)."""
_CHUNK = 1 << 12
"""Characters measured at a time (bounds the lists a long message needs)."""


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
        ours = 0
    else:
        ours = 2 if unicodedata.east_asian_width(ch) in ("W", "F") else 1
    # wcwidth (what prompt_toolkit measures with) may know a later Unicode than unicodedata.
    return max(ours, wcwidth(ch))


class _Shown(dict[int, str]):
    """code point -> how it is shown (itself or its escape), for ``str.translate``; filled on
    demand, bounded."""

    def __missing__(self, code: int) -> str:
        if len(self) >= _CACHE_MAX:
            self.clear()
        ch = chr(code)
        shown = self[code] = escape_char(ch) if needs_escape(ch) else ch
        return shown


class _Cells(dict[int, int]):
    """code point -> the cells of how it is shown; filled on demand, bounded."""

    def __missing__(self, code: int) -> int:
        if len(self) >= _CACHE_MAX:
            self.clear()
        ch = chr(code)
        cells = self[code] = len(escape_char(ch)) if needs_escape(ch) else cell_width(ch)
        return cells


class _ShownBreaking(_Shown):
    """As :class:`_Shown`, but a line feed is shown and then starts a continuation row."""

    def __missing__(self, code: int) -> str:
        if code != 10:
            return super().__missing__(code)
        shown = self[code] = "\\n\n" + CONTINUATION
        return shown


_SHOWN = _Shown()
_SHOWN_BREAKING = _ShownBreaking()
_CELLS = _Cells()


def _plain(text: str) -> bool:
    """Nothing in ``text`` needs an escape (the common case, checked at C speed)."""
    return "\\" not in text and text.isprintable()


def escape(text: str) -> str:
    r"""``text`` with every control, format and separator character (and ``\``) escaped."""
    return text if _plain(text) else text.translate(_SHOWN)


def unescape(text: str) -> str:
    """The inverse of :func:`escape`."""

    def one(m: re.Match[str]) -> str:
        token = m.group()
        return _UNNAMED.get(token) or chr(int(token[2:], 16))

    return _ESCAPE.sub(one, text)


def text_width(text: str) -> int:
    """Terminal cells for ``text`` as it is drawn (a row; nothing in it but backslashes
    :func:`needs_escape`)."""
    if text.isascii():
        return len(text)
    return sum(map(cell_width, text))


class _Rows:
    """Fills rows of at most ``width`` cells from pieces of text."""

    def __init__(self, width: int) -> None:
        self._width = max(width, MIN_WIDTH)
        self._room = self._width
        self._row: list[str] = []
        self._rows: list[str] = []

    def next_row(self) -> None:
        self._rows.append("".join(self._row))
        self._row = [CONTINUATION]
        self._room = self._width - len(CONTINUATION)

    def ascii(self, text: str) -> None:
        """Printable ASCII other than a backslash: 1 cell each, cut anywhere."""
        at, end = 0, len(text)
        while end - at > self._room:
            if self._room:
                self._row.append(text[at : at + self._room])
                at += self._room
            self.next_row()
        if at < end:
            self._row.append(text[at:] if at else text)
            self._room -= end - at

    def units(self, pieces: list[str], cells: list[int]) -> None:
        """Characters or escapes, each kept whole on one row; a zero-width piece stays on the
        row of the piece before it."""
        total = list(accumulate(cells))
        at, used = 0, 0  # pieces placed; their cells
        while at < len(pieces):
            end = bisect_right(total, used + self._room, lo=at)
            if end == at:
                if len(self._row) <= 1 and self._rows:
                    end = at + 1  # wider than an empty row (never, above MIN_WIDTH)
                else:
                    self.next_row()
                    continue
            self._row.append("".join(pieces[at:end]))
            self._room -= total[end - 1] - used
            at, used = end, total[end - 1]

    def add(self, text: str) -> None:
        if text.isascii() and _plain(text):
            self.ascii(text)
            return
        for at in range(0, len(text), _CHUNK):
            codes = list(map(ord, text[at : at + _CHUNK]))
            self.units(list(map(_SHOWN.__getitem__, codes)), list(map(_CELLS.__getitem__, codes)))

    def done(self) -> list[str]:
        self._rows.append("".join(self._row))
        return self._rows


def render_message(prefix: str, text: str, width: int | None) -> list[str]:
    """The rows that show ``text`` from ``prefix`` (``alice (172.18.0.3:40211)``).

    ``width``: the terminal's columns, or None for output that is not a terminal (rows end only
    at line feeds). Rows carry no line terminator.
    """
    if width is None:
        shown = text if _plain(text) else text.translate(_SHOWN_BREAKING)
        return f"{escape(prefix)}: {shown}".split("\n")
    lines = text.split("\n")
    filler = _Rows(width)
    filler.add(prefix)
    filler.ascii(": ")
    for i, line in enumerate(lines):
        if i:
            filler.units(["\\n"], [2])
            filler.next_row()
        filler.add(line)
    return filler.done()


def render_lines(text: str) -> str:
    """The program's own multi-line text (help, errors): each line escaped, line feeds kept."""
    if _plain(text.replace("\n", "")):
        return text
    return "\n".join(escape(line) for line in text.split("\n"))
