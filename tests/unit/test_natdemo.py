"""labkit.natdemo's pure parts: the path read from the receiver's line, the table, the exit."""

from __future__ import annotations

import pytest

from chat_client.ui import Output
from chat_protocol.const import RELAY_HOST
from labkit.natdemo import PAIRS, PairResult, exit_code, path_of, table


def row(path: str, *, agrees: bool = True) -> PairResult:
    return PairResult(
        kind_a="symmetric",
        kind_b="symmetric",
        path=path,
        ms=None if path == "failed" else 12.3,
        verdict_a="NAT, mapping APD, filtering APD",
        verdict_b="NAT, mapping APD, filtering APD",
        agrees_a=agrees,
        agrees_b=True,
    )


def test_every_pair_of_the_four_kinds() -> None:
    assert len(PAIRS) == 16 and len(set(PAIRS)) == 16


def test_the_path_is_what_the_receivers_line_says(capsys: pytest.CaptureFixture[str]) -> None:
    out = Output(interactive=False)
    out.message("alice", (RELAY_HOST, 3), "hello-x")
    out.message("alice", ("198.51.100.2", 40211), "hello-y")
    relayed, direct = capsys.readouterr().out.splitlines()
    assert path_of(relayed) == "relay" and path_of(direct) == "direct"


def test_the_exit_says_whether_every_pair_delivered_and_every_verdict_agreed() -> None:
    assert exit_code([row("direct"), row("relay")]) == 0
    assert exit_code([row("direct"), row("failed")]) == 1
    assert exit_code([row("relay", agrees=False)]) == 1
    assert exit_code([]) == 1
    text = table([row("relay"), row("failed", agrees=False)])
    lines = text.splitlines()
    assert lines[0].split()[:2] == ["router-a", "RFC"]
    assert lines[1].split()[-2:] == ["relay", "12"]
    assert lines[2].split()[-2:] == ["failed", "-"] and "(DISAGREES)" in lines[2]
