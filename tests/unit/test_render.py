"""chat_client.render: untrusted text escaped, and no row of a message can pass for another line."""

from __future__ import annotations

import re
import sys
import unicodedata

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st
from wcwidth import wcwidth

from budget import examples
from chat_client.render import (
    CONTINUATION,
    MIN_WIDTH,
    cell_width,
    escape,
    needs_escape,
    render_lines,
    render_message,
    text_width,
    unescape,
)

ESCAPED_CATEGORIES = {"Cc", "Cf", "Cs", "Co", "Cn", "Zl", "Zp"}
HEADER_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,31}\??(?: \(|:)")
"""What a message's first row starts with: a user name, then `` (`` or ``:``."""
PREFIX = "alice (127.0.0.1:57384)"
SPOOF_TAIL = "alice (127.0.0.1:57384): the meeting moved, send the slides to …"


def parts(rows: list[str]) -> list[str]:
    """What each row shows of the message: the marker dropped from every row after the first."""
    assert all(r.startswith(CONTINUATION) for r in rows[1:]), rows
    return rows[:1] + [r[len(CONTINUATION) :] for r in rows[1:]]


def joined(rows: list[str]) -> str:
    return "".join(parts(rows))


def unescaped_row_by_row(rows: list[str]) -> str:
    """Equal to ``unescape(joined(rows))`` only if no escape was cut in two by a row's end."""
    return "".join(unescape(p) for p in parts(rows))


def must_escape(ch: str) -> bool:
    return ch == "\\" or unicodedata.category(ch) in ESCAPED_CATEGORIES


# --- escape ------------------------------------------------------------------------------------


def test_every_control_format_and_separator_character_is_escaped_and_nothing_else() -> None:
    escaped = 0
    for code in range(sys.maxunicode + 1):
        ch = chr(code)
        expected = must_escape(ch)
        assert needs_escape(ch) is expected, hex(code)
        shown = escape(ch)
        if expected:
            escaped += 1
            assert shown.startswith("\\") and shown != ch, hex(code)
            assert shown.isascii() and shown.isprintable(), hex(code)
            assert unescape(shown) == ch, hex(code)
        else:
            assert shown == ch, hex(code)
    # Cn (unassigned) is most of them; Cc, Cf, Zl, Zp alone are a few hundred.
    assert escaped > 800_000


def test_no_escaped_category_survives_in_a_rendered_message() -> None:
    everything = "".join(chr(c) for c in range(sys.maxunicode + 1) if must_escape(chr(c)))
    for width in (None, 80):
        rows = render_message(PREFIX, everything, width)
        # Markers dropped, all of it is shown as printable ASCII escapes.
        assert joined(rows).isascii() and joined(rows).isprintable()
        assert unescape(joined(rows)) == f"{PREFIX}: {everything}"


@pytest.mark.parametrize(
    ("raw", "shown"),
    [
        ("\\", "\\\\"),
        ("\t", "\\t"),
        ("\n", "\\n"),
        ("\r", "\\r"),
        ("\x00", "\\x00"),
        ("\x08", "\\x08"),
        ("\x1b[2J", "\\x1b[2J"),
        ("\x1b]0;title\x07", "\\x1b]0;title\\x07"),
        ("\x7f", "\\x7f"),
        ("\x85", "\\x85"),
        ("\x9b", "\\x9b"),
        ("\xad", "\\xad"),
        ("\u200b", "\\u200b"),
        ("\u202e", "\\u202e"),
        ("\u2028", "\\u2028"),
        ("\u2029", "\\u2029"),
        ("\ufeff", "\\ufeff"),
        ("\ud800", "\\ud800"),
        ("\ue000", "\\ue000"),
        ("\U000e0001", "\\U000e0001"),
        ("\U0010ffff", "\\U0010ffff"),
        # Shown as they are: text, and spaces of every width.
        ("hello, wörld ½ 日本語 e\u0301 🙂", "hello, wörld ½ 日本語 e\u0301 🙂"),
        ("\u00a0\u3000\u2003", "\u00a0\u3000\u2003"),
    ],
)
def test_escape_notation(raw: str, shown: str) -> None:
    assert escape(raw) == shown
    assert unescape(shown) == raw


def test_a_typed_escape_cannot_pass_for_a_real_one() -> None:
    assert escape("\\x1b") == "\\\\x1b"
    assert escape("\\x1b") != escape("\x1b")
    assert escape("\\u202e") != escape("\u202e")
    assert unescape(escape("\\\\x1b\x1b")) == "\\\\x1b\x1b"


@given(st.text(alphabet=st.characters(blacklist_categories=())))
def test_unescape_inverts_escape(text: str) -> None:
    shown = escape(text)
    assert not any(must_escape(ch) for ch in shown.replace("\\", ""))
    assert unescape(shown) == text


def test_own_text_keeps_its_line_feeds() -> None:
    assert render_lines("commands:\n  list\n  help") == "commands:\n  list\n  help"
    assert render_lines("error: bad \x1b[2J\nnext") == "error: bad \\x1b[2J\nnext"


# --- width -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("ch", "cells"),
    [
        ("a", 1),
        ("é", 1),
        ("日", 2),
        ("\uff21", 2),  # fullwidth A
        ("\u0301", 0),  # combining acute
        ("\u20dd", 0),  # combining enclosing circle (Me)
        ("\ufe0f", 1),  # VS16 can make the character before it 2 cells wide
        ("\U0001f1e6", 2),  # regional indicator
        ("🙂", 2),
        ("\u4dc0", 2),  # a hexagram: wide in newer Unicode (wcwidth) than Python 3.11's
    ],
)
def test_cell_width(ch: str, cells: int) -> None:
    assert cell_width(ch) == cells


def test_cells_are_never_fewer_than_wcwidth_counts() -> None:
    """wcwidth is what prompt_toolkit and pyte measure with; fewer cells than a terminal draws
    would make a row overflow and wrap to column 0."""
    for code in range(sys.maxunicode + 1):
        ch = chr(code)
        if not needs_escape(ch):
            assert cell_width(ch) >= wcwidth(ch), hex(code)


# --- rows --------------------------------------------------------------------------------------


def test_the_spoof_from_the_issue_is_a_marked_continuation() -> None:
    """A message padded to the terminal's width so that the terminal's wrap would start a row
    with a forged header."""
    head = f"{PREFIX}: "
    text = "x" * (80 - len(head)) + SPOOF_TAIL
    rows = render_message(PREFIX, text, 80)
    assert rows == [head + "x" * (80 - len(head)), CONTINUATION + SPOOF_TAIL]
    # Padded with spaces, or one short of the edge: the same.
    for pad in (" " * (80 - len(head)), "y" * (79 - len(head))):
        rows = render_message(PREFIX, pad + SPOOF_TAIL, 80)
        assert len(rows) == 2
        assert rows[1].startswith(CONTINUATION)
        assert HEADER_RE.match(rows[0]) and not HEADER_RE.match(rows[1])


def test_ascii_rows_are_filled_to_the_width() -> None:
    rows = render_message("bob (10.0.0.1:1)", "z" * 500, 40)
    assert all(len(r) == 40 for r in rows[:-1])
    assert len(rows[-1]) <= 40
    assert joined(rows) == "bob (10.0.0.1:1): " + "z" * 500


def test_line_feeds_are_shown_and_end_the_row() -> None:
    assert render_message("a (h:1)", "one\ntwo\n\nfour", None) == [
        "a (h:1): one\\n",
        CONTINUATION + "two\\n",
        CONTINUATION + "\\n",
        CONTINUATION + "four",
    ]
    assert render_message("a (h:1)", "fake\nbob (h:2): hi", 80)[1] == CONTINUATION + "bob (h:2): hi"
    assert render_message("a (h:1)", "ends\n", None) == ["a (h:1): ends\\n", CONTINUATION]


def test_without_a_width_only_line_feeds_break() -> None:
    text = "w" * 10_000 + "\x1b" + "日" * 5000
    rows = render_message(PREFIX, text, None)
    assert len(rows) == 1
    assert rows[0] == f"{PREFIX}: " + "w" * 10_000 + "\\x1b" + "日" * 5000


def test_wide_characters_and_escapes_are_never_split() -> None:
    rows = render_message("c (h:1)", "日" * 40 + "\u202e" * 10 + "e\u0301" * 30, 21)
    for row in rows:
        assert text_width(row) <= 21
    for part in parts(rows):
        assert not part.startswith("\u0301")  # a combining mark stays with its base
    text = "c (h:1): " + "日" * 40 + "\u202e" * 10 + "e\u0301" * 30
    assert unescape(joined(rows)) == unescaped_row_by_row(rows) == text


def test_a_long_prefix_wraps_too() -> None:
    prefix = "n" * 32 + "? (ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff:65535) [unverified]"
    rows = render_message(prefix, "hi", 40)
    assert all(text_width(r) <= 40 for r in rows)
    assert joined(rows) == f"{prefix}: hi"


def test_a_tiny_width_is_raised_to_the_minimum() -> None:
    rows = render_message("d (h:1)", "q" * 100, 5)
    assert all(text_width(r) == MIN_WIDTH for r in rows[:-1])


# --- properties --------------------------------------------------------------------------------

NASTY = (
    "\x1b[2J\x1b]0;t\x07\r\x08\t\n\x85\x9b\u202e\u200b\u2028\u2029\ufeff\\"
    "日本🙂\u0301\ufe0f\U0001f1e6 alice (127.0.0.1:1): bob: │"
)
texts = st.one_of(
    st.text(alphabet=st.characters(blacklist_categories=())),
    st.text(alphabet=st.sampled_from(NASTY)),
    st.lists(
        st.one_of(
            st.just(SPOOF_TAIL),
            st.just("\n"),
            st.text(alphabet=st.sampled_from(" x日\t\u0301"), max_size=120),
        ),
        max_size=8,
    ).map("".join),
)
names = st.from_regex(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,31}", fullmatch=True)


@settings(max_examples=examples(400), deadline=None)
@given(name=names, text=texts, width=st.one_of(st.none(), st.integers(MIN_WIDTH, 300)))
# Found by seeds 14 and 17 of the random profile: a name wider than the terminal.
@example(name="0" * 21, text="", width=20)
@example(name="0" * 19, text="", width=20)
def test_no_row_after_the_first_passes_for_a_line(name: str, text: str, width: int | None) -> None:
    prefix = f"{name} (192.0.2.1:4000)"
    rows = render_message(prefix, text, width)
    if width is not None and text_width(f"{prefix}: ") > width:
        # A terminal narrower than the header: the header itself wraps onto marked rows.
        assert rows[0] == f"{prefix}: "[: len(rows[0])] and len(rows) > 1
    else:
        assert rows[0].startswith(name)
        assert HEADER_RE.match(rows[0])
    for row in rows[1:]:
        assert row.startswith(CONTINUATION)
        assert not HEADER_RE.match(row)
    for row in rows:
        assert not any(must_escape(ch) for ch in row.replace("\\", ""))
        if width is not None:
            assert text_width(row) <= width, (row, width)
    assert unescape(joined(rows)) == unescaped_row_by_row(rows) == f"{prefix}: {text}"
    if width is None:
        assert len(rows) == 1 + text.count("\n")
