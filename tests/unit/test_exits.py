"""chat-client's one table of failures and exit codes, and docs/CLI.md's tables made from it."""

from __future__ import annotations

import errno
from pathlib import Path

import pytest

from chat_client.app import SIGNAL_GRACE_S
from chat_client.exits import (
    MEANING,
    ExitCode,
    Failure,
    exit_table,
    failure_of,
    failure_table,
    say,
)
from chat_client.ui import MAX_TYPED_CHARS

DOC = (Path(__file__).parents[2] / "docs" / "CLI.md").read_text()


def test_the_docs_exit_code_table_is_the_codes_table() -> None:
    assert set(MEANING) == set(ExitCode)
    assert "## Exit codes (client)\n" + exit_table() + "\n" in DOC


def test_the_docs_table_of_ending_lines_is_the_codes_table() -> None:
    assert "\n" + failure_table() + "\n" in DOC
    assert {f.code for f in Failure} <= set(ExitCode)


def test_the_docs_give_every_refusal_of_exit_3() -> None:
    from chat_protocol.wire.messages import RefuseReason

    flat = " ".join(DOC.split())  # (a code span may be wrapped across lines)
    for reason in RefuseReason:
        assert f"`{reason.explain('alice')}`" in flat, reason


def test_the_docs_state_the_prompt_limit_and_the_signal_grace() -> None:
    assert f"lines up to {MAX_TYPED_CHARS} characters" in DOC
    assert f"at most {SIGNAL_GRACE_S:.0f} s for answers still due" in DOC


@pytest.mark.parametrize(
    ("exc", "text", "code"),
    [
        (BrokenPipeError(errno.EPIPE, "Broken pipe"), "", ExitCode.READER_GONE),
        (OSError(errno.EIO, "Input/output error"), "", ExitCode.READER_GONE),
        (OSError(errno.ENOSPC, "No space left"), "internal error (OSError); see --verbose", 1),
        (RecursionError(), "internal error (RecursionError); see --verbose", 1),
        (
            UnicodeDecodeError("utf-8", b"\xff", 0, 1, "bad"),
            "internal error (UnicodeDecodeError); see --verbose",
            1,
        ),
    ],
    ids=["broken-pipe", "eio", "other-oserror", "recursion", "decode"],
)
def test_an_exception_becomes_one_line_and_a_code(exc: BaseException, text: str, code: int) -> None:
    ending = failure_of(exc)
    assert (ending.text, ending.code) == (text, code)


def test_a_signal_gives_its_own_status_to_a_cut_short_ending() -> None:
    assert say(Failure.CUT_SHORT).code == ExitCode.OK
    assert say(Failure.CUT_SHORT, ExitCode.HANGUP).code == ExitCode.HANGUP


def test_the_docs_server_exit_code_table_is_the_servers_table() -> None:
    from chat_server.app import MEANING as SERVER_MEANING
    from chat_server.app import ServerExit

    assert set(SERVER_MEANING) == set(ServerExit)
    rows = [f"| {int(code)} | {text} |" for code, text in SERVER_MEANING.items()]
    table = "\n".join(["| code | meaning |", "| --- | --- |", *rows])
    assert "### Exit codes (server)\n" + table + "\n" in DOC


def test_the_server_says_an_unknown_failure_in_one_line(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from chat_server import app

    def boom(_args: object) -> int:
        raise LookupError("detail")

    monkeypatch.setattr(app, "_main", boom)
    assert app.main(["-sp", "0"]) == app.ServerExit.FAILED
    assert capsys.readouterr().err == "chat-server: error: internal error (LookupError); see -v\n"


def test_the_server_logs_a_failure_while_serving_in_one_line(
    caplog: pytest.LogCaptureFixture,
) -> None:
    import asyncio
    import logging

    from chat_server.app import _report

    loop = asyncio.new_event_loop()
    try:
        with caplog.at_level(logging.INFO, logger="chat-server"):
            _report(loop, {"message": "in a callback", "exception": ValueError("x")})
    finally:
        loop.close()
    assert [(r.levelno, r.getMessage()) for r in caplog.records] == [
        (logging.ERROR, "internal error (ValueError); see -v")
    ]
    assert all(r.exc_info is None for r in caplog.records)


def test_the_docs_state_the_piped_line_limit() -> None:
    from chat_client.ui import MAX_LINE_BYTES

    assert f"`error: input line over\n  {MAX_LINE_BYTES} bytes, ignored`" in DOC
