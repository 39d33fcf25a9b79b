"""The terminal prompt's input (chat_client.ui.terminal_input) on a real pseudo-terminal: what
prompt_toolkit is handed for what was typed. No application runs: the line is empty."""

from __future__ import annotations

import os
import select
import tty
from collections.abc import Iterator
from types import SimpleNamespace
from typing import Any

import prompt_toolkit.application.current
import pytest
from prompt_toolkit.buffer import Buffer
from prompt_toolkit.keys import Keys

from chat_client.ui import MAX_TYPED_CHARS, READ_CHARS, terminal_input

LINE = Buffer()
"""The line being edited, as prompt_toolkit's key processor would grow it."""


@pytest.fixture
def typed(monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[int, Any]]:
    """(the terminal's master side to type into, the input reading its other side)"""
    LINE.reset()
    app = SimpleNamespace(current_buffer=LINE)
    monkeypatch.setattr(prompt_toolkit.application.current, "get_app", lambda: app)
    master, slave = os.openpty()
    tty.setraw(slave)  # as prompt_toolkit sets it while it reads
    stdin = os.fdopen(slave, "r", closefd=True)
    try:
        yield master, terminal_input(stdin)
    finally:
        stdin.close()
        os.close(master)


def keys(pair: tuple[int, Any], data: str) -> list[tuple[Any, str]]:
    master, inp = pair
    sent, got = data.encode(), []
    while sent:  # a pty holds a few KiB: type and read in turns
        n = os.write(master, sent[:4096])
        sent = sent[n:]
        while select.select([inp.fileno()], [], [], 0)[0]:
            for kp in inp.read_keys():
                got.append(kp)
                if kp.key is Keys.BracketedPaste:
                    LINE.insert_text(kp.data)
                elif kp.key is Keys.ControlM:
                    LINE.reset()
    got += inp.flush_keys()
    return [(k.key, k.data) for k in got]


def test_plain_text_is_one_insertion_not_a_key_each(typed: tuple[int, Any]) -> None:
    got = keys(typed, "send bob " + "x" * 60_000 + "\r")
    text = "".join(d for k, d in got if k is Keys.BracketedPaste)
    assert text == "send bob " + "x" * 60_000
    assert got[-1][0] is Keys.ControlM
    # Without the bulk path every character is a key press of its own (60 000 of them).
    assert len(got) < 60_000 // 100


def test_key_sequences_keep_their_place_around_plain_runs(typed: tuple[int, Any]) -> None:
    got = keys(typed, "\x1b[A" + "y" * 40 + "\x1b[D" + "z" * 40 + "\x7f")
    assert got == [
        (Keys.Up, "\x1b[A"),
        (Keys.BracketedPaste, "y" * 40),
        (Keys.Left, "\x1b[D"),
        (Keys.BracketedPaste, "z" * 40),
        (Keys.ControlH, "\x7f"),
    ]


@pytest.mark.parametrize(
    "report", ["\x1b[31m", "\x1b[5;7R", "\x1b[<0;1;2M"], ids=["mouse", "cpr", "sgr-mouse"]
)
def test_a_typed_terminal_report_is_text(typed: tuple[int, Any], report: str) -> None:
    """prompt_toolkit's own mouse and cursor-position handlers raise on these (``not enough
    values to unpack``); typed, they are text."""
    assert keys(typed, "A" + report + "B") == [(Keys.BracketedPaste, "A" + report + "B")]


def test_a_line_over_the_limit_stops_growing_and_is_measured(typed: tuple[int, Any]) -> None:
    total = MAX_TYPED_CHARS + 3 * READ_CHARS
    got = keys(typed, "list\r" + "x" * total + "\r" + "list\r")
    inserted = [d for k, d in got if k is Keys.BracketedPaste]
    # Nothing past the limit was inserted; each Enter is passed on, and the one that ends the
    # long line carries its length; what is typed after it is a line of its own.
    assert sum(map(len, inserted)) <= MAX_TYPED_CHARS + 8
    assert inserted[0] == "list" and inserted[-1] == "list"
    assert [k for k, _ in got].count(Keys.ControlM) == 3
    assert list(typed[1].ended) == [None, total, None]


def test_the_parser_takes_a_plain_run_whole_between_key_sequences(typed: tuple[int, Any]) -> None:
    """prompt_toolkit's parser costs ~13 us a character; a plain run between key sequences skips
    it (one key press for the run, not one per character), a run inside one does not."""
    parser = typed[1].vt100_parser
    pressed: list[Any] = []
    parser.feed_key_callback = pressed.append
    parser.feed("\x1b" + "[A" + "x" * 10_000 + "\x1b[1;5C" + "y" * 20 + "\x1b[" + "9" * 30)
    parser.flush()
    assert [(k.key, k.data[:1], len(k.data)) for k in pressed] == [
        (Keys.Up, "\x1b", 3),  # its "[A" starts the run: taken by the parser
        (Keys.BracketedPaste, "x", 10_000),
        (Keys.ControlRight, "\x1b", 6),
        (Keys.BracketedPaste, "y", 20),
        # ESC [ 9 9 9 ... could still become a cursor position report: parsed one by one
        (Keys.Escape, "\x1b", 1),
        ("[", "[", 1),
        *[("9", "9", 1)] * 30,
    ]
