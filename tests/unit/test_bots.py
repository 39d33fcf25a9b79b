"""chat-bots' pure parts: how a bot keeps its partners from the directory's list, its command
line, and how labkit.swarm shares N bots among tasks."""

from __future__ import annotations

import asyncio
import random
from pathlib import Path

import pytest

from chat_bots.app import Bot, Script, Tally, parse_args
from chat_shell.keystore import KeyStore
from labkit.swarm import BOTS_PER_TASK, CheckResult, tasks_for

SCRIPT = Script(rate=1.0, messages=0, peers=3, window=8, list_every_s=5.0, retry_s=2.0, size=0)


def make_bot(tmp_path: Path, peers: int = 3) -> Bot:
    script = Script(**{**SCRIPT.__dict__, "peers": peers})
    return Bot(
        "me",
        server=("127.0.0.1", 5000),
        store=KeyStore(tmp_path),
        hist_path="unused",
        script=script,
        tally=Tally(),
        rng=random.Random(),
        stopping=asyncio.Event(),
    )


def test_partners_come_from_the_list_without_itself(tmp_path: Path) -> None:
    bot = make_bot(tmp_path)
    bot.on_list(("me", "a", "b"))
    assert bot.partners == {"a", "b"}
    bot.on_list(("me", "a", "b", "c", "d", "e"))
    assert len(bot.partners) == 3 and {"a", "b"} <= bot.partners  # kept, topped up to --peers
    assert "me" not in bot.partners


def test_a_partner_that_left_the_list_is_replaced(tmp_path: Path) -> None:
    bot = make_bot(tmp_path, peers=2)
    bot.on_list(("a", "b"))
    bot.on_list(("b", "c"))
    assert bot.partners == {"b", "c"}
    bot.on_list(())
    assert bot.partners == set()


@pytest.mark.parametrize(
    ("bots", "expected"),
    [
        (0, (0, BOTS_PER_TASK)),
        (1, (1, 1)),
        (20, (1, 20)),
        (21, (2, 11)),
        (200, (10, 20)),
        (201, (11, 19)),
    ],
)
def test_tasks_for_shares_bots_among_the_fewest_tasks(bots: int, expected: tuple[int, int]) -> None:
    tasks, per = tasks_for(bots)
    assert (tasks, per) == expected
    assert tasks * per >= bots and per <= BOTS_PER_TASK


def test_a_check_result_counts_the_messages_its_report_names() -> None:
    report = "3 histories\n20,000 messages: 19,990 delivered, 10 reported not delivered\n"
    assert CheckResult(code=0, report=report, files=3, seconds=1.0).messages == 20_000
    assert CheckResult(code=2, report="no histories\n", files=0, seconds=0.1).messages is None


@pytest.mark.parametrize(
    "argv",
    [
        ["--prefix", "-bad"],
        ["--prefix", "x" * 30],
        ["--rate", "-1"],
        ["--list-every", "0"],
        ["-n", "0"],
        ["--size", "2000"],
    ],
)
def test_bad_command_lines_are_usage_errors(
    argv: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exc:
        parse_args(argv)
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert "chat-bots: error:" in err and "Traceback" not in err


def test_partners_only_among_the_prefix(tmp_path: Path) -> None:
    bot = make_bot(tmp_path, peers=5)
    bot.script = Script(**{**bot.script.__dict__, "partner_prefix": "bot"})
    bot.on_list(("bot1-000", "alice", "bot2-001", "me"))
    assert bot.partners == {"bot1-000", "bot2-001"}


def test_a_key_seed_gives_each_bot_the_same_key_in_any_home(tmp_path: Path) -> None:
    """A task started on another node (another home) signs its bots in with the keys the
    directory bound their names to; without a seed each home makes its own."""
    seeded = Script(**{**SCRIPT.__dict__, "key_seed": "lab-seed"})

    def bot(home: Path, script: Script, name: str = "bot1-000") -> Bot:
        return Bot(
            name, server=("127.0.0.1", 5000), store=KeyStore(home), hist_path="unused",
            script=script, tally=Tally(), rng=random.Random(), stopping=asyncio.Event(),
        )  # fmt: skip

    a, b = tmp_path / "node1", tmp_path / "node2"
    assert bot(a, seeded).identity().public == bot(b, seeded).identity().public
    assert bot(a, seeded).identity().public != bot(a, seeded, "bot1-001").identity().public
    other = Script(**{**SCRIPT.__dict__, "key_seed": "another"})
    assert bot(a, seeded).identity().public != bot(a, other).identity().public
    assert bot(a, SCRIPT).identity().public != bot(b, SCRIPT).identity().public
    assert bot(a, SCRIPT).identity().public == bot(a, SCRIPT).identity().public  # kept
    assert parse_args(["--key-seed", "s"]).key_seed == "s"
