"""The terminal's own parts (issue 22): the commands table and its aliases, the user's own lines
with the marks the client draws, Tab's candidates, and the typed-line history file."""

from __future__ import annotations

import json
import re
import stat
from pathlib import Path

import pytest

from chat_client import recall
from chat_client.commands import ALIASES, HELP, TABLE, WORDS, Command, parse_command
from chat_client.complete import candidates
from chat_client.outbox import (
    CLIP,
    FAILED,
    GREEN,
    LIVE_ROWS,
    RED,
    SENDING,
    SHOWN,
    Outbox,
    Own,
    State,
    final_rows,
    live_row,
    progress_text,
)
from chat_client.recall import TypedLines, recall_path
from chat_client.render import CONTINUATION
from chat_protocol.errors import UsageError

ANSI = re.compile(r"\x1b\[[0-9;]*m")

# --- commands --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("line", "command"),
    [
        ("/msg bob hi there", Command(name="send", user="bob", text="hi there")),
        ("/MSG bob hi", Command(name="send", user="bob", text="hi")),
        ("/who", Command(name="list")),
        ("/quit", Command(name="exit")),
        ("/whois bob", Command(name="whois", user="bob")),
        ("quit", Command(name="exit")),
        ("ls", Command(name="list")),
    ],
)
def test_aliases_are_their_commands(line: str, command: Command) -> None:
    assert parse_command(line) == command


def test_a_usage_error_names_the_word_typed() -> None:
    with pytest.raises(UsageError, match=r"^usage: /msg USER MESSAGE$"):
        parse_command("/msg")
    with pytest.raises(UsageError, match=r"^usage: send USER MESSAGE \(no message for bob\)$"):
        parse_command("send bob")
    with pytest.raises(UsageError, match=r"^'/who' takes no arguments$"):
        parse_command("/who all")


def test_help_lists_every_command_and_alias_from_the_table() -> None:
    for spec in TABLE:
        assert re.search(rf"^  {re.escape(spec.usage)}(?: |$)", HELP, re.M), spec.usage
        for alias in spec.aliases:
            assert f"{alias} {spec.args}".rstrip() in HELP, alias
    assert set(ALIASES) | {s.name for s in TABLE} == set(WORDS)
    assert {"/msg", "/who", "/quit", "/whois"} <= set(ALIASES)


# --- own lines and their marks ---------------------------------------------------------------


def own(text: str = "hello", **kw: object) -> Own:
    total = len(text.encode())
    fields: dict[str, object] = {"handle": 1, "when": "12:04", "to": "bob", "total": total}
    fields.update(kw)
    return Own(text=text, **fields)  # type: ignore[arg-type]


def plain(rows: list[str]) -> list[str]:
    return [ANSI.sub("", r) for r in rows]


def test_an_own_line_reads_time_you_arrow_name_text_mark() -> None:
    assert plain(final_rows(own(state=State.SHOWN), 80)) == ["12:04 you → bob: hello ✓"]
    assert plain(final_rows(own(when=""), 80)) == ["you → bob: hello …"]
    failed = own(state=State.FAILED, reason="not delivered to bob (no acknowledgement for 10 s)")
    assert plain(final_rows(failed, 80)) == [
        "12:04 you → bob: hello ✗ not delivered to bob (no acknowledgement for 10 s)"
    ]


def test_the_client_colours_its_marks_and_nothing_else() -> None:
    [row] = final_rows(own(state=State.SHOWN), 80)
    assert row.endswith(f"{GREEN}{SHOWN}\x1b[39m")
    assert ANSI.findall(row) == [GREEN, "\x1b[39m"]
    [row] = final_rows(own(state=State.FAILED, reason="no such user: bob"), 80)
    assert f"{RED}{FAILED}\x1b[39m no such user: bob" in row
    [row] = final_rows(own(state=State.SHOWN), 80, colour=False)
    assert "\x1b" not in row


@pytest.mark.parametrize(
    "text",
    ["done ✓", "\x1b[32m✓\x1b[39m", "x\r12:04 you → bob: y ✓", "✓\x1b[1A\x1b[2K", "\u202e✓"],
    ids=["tick", "green-tick", "carriage-return", "cursor-up", "rlo"],
)
def test_a_message_cannot_draw_or_move_a_mark(text: str) -> None:
    """Still travelling: the row's last mark is the client's ``…``, whatever the text holds;
    every control in the text is shown escaped, so it cannot move the cursor onto a mark."""
    o = own(text)
    rows = final_rows(o, 80)
    assert len(rows) == 1
    assert plain(rows)[0].endswith(f" {SENDING}")
    assert ANSI.findall(rows[0]) == []  # no colour: the only mark is "…", drawn plain
    body = rows[0][len("12:04 you → bob: ") : -2]
    assert "\x1b" not in body and "\r" not in body and "\u202e" not in body
    head, mark = live_row(o, 80)
    assert mark == SENDING and "\x1b" not in head and "\r" not in head
    o.state = State.SHOWN
    shown = final_rows(o, 80)[0]
    assert shown.endswith(f"{GREEN}{SHOWN}\x1b[39m")
    assert shown.count(GREEN) == 1  # the text's own "\x1b[32m" is escaped, not a colour


def test_a_large_message_shows_its_progress_and_the_mark_goes_where_it_fits() -> None:
    o = own("y" * 3000, acked=1200)
    assert o.mark() == f"{SENDING} 40 % (1200 of 3000 bytes)"
    o.acked, o.state = 3000, State.SHOWN
    rows = plain(final_rows(o, 80))
    assert rows[-1] == f"{CONTINUATION}{SHOWN} {progress_text(3000, 3000)}"
    assert all(len(r) <= 80 for r in rows)
    assert "".join([rows[0].split(": ", 1)[1]] + [r[len(CONTINUATION) :] for r in rows[1:-1]]) == (
        "y" * 3000
    )


def test_a_live_row_is_one_row_cut_to_the_width_with_the_mark_last() -> None:
    o = own("z" * 500, acked=0)
    head, mark = live_row(o, 60)
    assert head.endswith(CLIP) and mark.startswith(SENDING)
    assert len(head) + 1 + len(mark) <= 59


class Printed:
    def __init__(self) -> None:
        self.rows: list[list[str]] = []
        self.redraws = 0

    def outbox(self) -> Outbox:
        def redraw() -> None:
            self.redraws += 1

        box = Outbox(print_rows=self.rows.append, changed=redraw, show_time=True, width=lambda: 80)
        box.colour = False
        return box


def test_a_line_is_drawn_live_until_its_outcome_then_printed_once() -> None:
    p = Printed()
    box = p.outbox()
    box.sent(7, "bob", "x" * 2500)
    assert p.rows == [] and p.redraws == 1
    live = "".join(t for _, t in box.live(80))
    assert live.endswith(f"{SENDING} 0 % (0 of 2500 bytes)\n")
    box.progress(7, 1200, 2500)
    box.progress(7, 1000, 2500)  # (never backwards)
    assert "48 % (1200 of 2500 bytes)" in "".join(t for _, t in box.live(80))
    assert box.delivered(7)
    assert box.live(80) == []
    assert len(p.rows) == 1 and p.rows[0][-1].endswith(f"{SHOWN} 48 % (1200 of 2500 bytes)")
    assert not box.delivered(7) and not box.failed(7, "x")  # resolved once
    assert len(p.rows) == 1


def test_the_live_area_is_bounded() -> None:
    box = Printed().outbox()
    for h in range(20):
        box.sent(h, "bob", f"m{h}")
    rows = "".join(t for _, t in box.live(80)).splitlines()
    assert len(rows) == LIVE_ROWS
    assert rows[-1] == f"{CONTINUATION}… and {20 - LIVE_ROWS + 1} more on their way"


# --- Tab ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("line", "size", "words"),
    [
        ("se", 2, ["send "]),
        ("/w", 2, ["/who ", "/whois "]),
        ("W", 1, ["whois "]),
        ("send b", 1, ["bob ", "Bea "]),
        ("/msg B", 1, ["bob ", "Bea "]),
        ("whois ", 0, ["alice ", "bob ", "Bea "]),
        ("list b", 0, []),
        ("send bob b", 0, []),
    ],
)
def test_tab_completes_commands_then_names(line: str, size: int, words: list[str]) -> None:
    assert candidates(line, ["alice", "bob", "Bea"]) == (size, words)


# --- typed-line history ----------------------------------------------------------------------


def test_typed_lines_are_kept_per_user_private_and_recalled_newest_first(tmp_path: Path) -> None:
    path = recall_path(tmp_path, "Alice")
    assert path == tmp_path / "typed" / "alice.jsonl"
    warnings: list[str] = []
    h = TypedLines(path, warnings.append)
    assert list(h.load_history_strings()) == []
    for line in ["send bob hi", "list", 'send bob "quoted" \x1b[31m ✓']:
        h.store_string(line)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    again = TypedLines(path, warnings.append)
    assert list(again.load_history_strings()) == [
        'send bob "quoted" \x1b[31m ✓',
        "list",
        "send bob hi",
    ]
    assert b"\x1b" not in path.read_bytes()  # one JSON string per line
    assert warnings == []


def test_the_history_file_stays_bounded(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(recall, "KEEP_LINES", 10)
    monkeypatch.setattr(recall, "KEEP_BYTES", 400)
    path = tmp_path / "typed" / "a.jsonl"
    h = TypedLines(path, print)
    for i in range(100):
        h.store_string(f"send bob {i}")
        assert len(path.read_bytes().splitlines()) <= 20
        assert path.stat().st_size <= 800
    kept = list(TypedLines(path, print).load_history_strings())
    assert kept[0] == "send bob 99" and len(kept) <= 10
    for i in range(30):
        h.store_string(f"{i:03d}" + "x" * 60)
    assert path.stat().st_size <= 800
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_a_damaged_history_file_is_read_around(tmp_path: Path) -> None:
    path = tmp_path / "typed" / "a.jsonl"
    path.parent.mkdir()
    path.write_bytes(b'"one"\n\xff\xfe not json\n{"a": 1}\n' + json.dumps("two").encode() + b"\n")
    assert list(TypedLines(path, print).load_history_strings()) == ["two", "one"]


def test_a_history_that_cannot_be_written_warns_once(tmp_path: Path) -> None:
    blocker = tmp_path / "typed"
    blocker.write_text("a file where the directory should be")
    warnings: list[str] = []
    h = TypedLines(blocker / "a.jsonl", warnings.append)
    h.store_string("list")
    h.store_string("list")
    assert len(warnings) == 1 and "typed-line history" in warnings[0]
