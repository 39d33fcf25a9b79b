"""chat-bots against a real chat-server on loopback: bots sign in, find each other through
``list``, exchange messages, and their history files pass chat-check; a bot process killed with
SIGKILL and started again signs in under the same names (same keys), and the run still has no
violation.
"""

from __future__ import annotations

import signal
import sys
import uuid
from pathlib import Path

from chat_check.checker import Checker, history_files
from labkit.local import ChatServer
from labkit.procs import Reaper
from labkit.terminal import PipedClient

BOTS = 6
RUN = "r" + uuid.uuid4().hex[:6]
MESSAGES = 10


def bots(reaper: Reaper, server: ChatServer, tmp: Path, prefix: str, *extra: str) -> PipedClient:
    """chat-bots as ``RUN-PREFIX-NNN``: the server's name store outlives a test (its default
    home), and these keys do not (``--home`` in ``tmp``), so names are new in every run."""
    argv = [
        sys.executable, "-m", "chat_bots", "-n", str(BOTS), "--prefix", f"{RUN}-{prefix}",
        "-sip", "127.0.0.1", "-sp", str(server.port), "--home", str(tmp / "home"),
        "--history-dir", str(tmp / "hist"), "--rate", "20", "--list-every", "0.5",
        "--retry", "0.5", "--report-every", "0.5", *extra,
    ]  # fmt: skip
    return PipedClient.spawn(reaper, prefix, argv, tmp, timeout=30.0, start_timeout=30.0)


def check(hist: Path) -> tuple[bool, str, int]:
    checker = Checker()
    for path in history_files([str(hist)]):
        checker.add_file(path)
    report = checker.report()
    text = report.format()
    return report.ok, text, int(text.split(" messages:")[0].split("\n")[-1].replace(",", ""))


def test_bots_talk_and_pass_the_checker(reaper: Reaper, server: ChatServer, tmp_path: Path) -> None:
    a = bots(reaper, server, tmp_path, "a", "--messages", str(MESSAGES), "--seed", "1")
    # b's bots start once a's are all signed in, so their first list already holds a's names
    # (which sort first among the partners they pick); started together, b's could list before
    # a's signed in and send all their messages before listing again.
    a.wait_stdout(rf"online={BOTS} ", timeout=60)
    b = bots(reaper, server, tmp_path, "b", "--messages", str(MESSAGES), "--seed", "2")
    for p in (a, b):  # both done before either stops: a's bots are still there for b's sends
        p.wait_stdout(r"bots: done \(\d+ sent\)", timeout=60)
    for p in (a, b):
        p.proc.send_signal(signal.SIGTERM)
    for p in (a, b):
        assert p.proc.wait(30) == 0, p.outputs()
        p.wait_stdout(r"bots: stopped")
    ok, report, messages = check(tmp_path / "hist")
    assert ok, report
    assert messages == 2 * BOTS * MESSAGES, report
    # Each process's bots sent to the other's too: partners come from the directory's list.
    shown_from_b = sum(
        f'"from": "{RUN}-b-' in line or f'"from":"{RUN}-b-' in line
        for f in (tmp_path / "hist").glob(f"{RUN}-a-*.jsonl")
        for line in f.read_text().splitlines()
    )
    assert shown_from_b > 0, report


def test_killed_bots_come_back_as_themselves(
    reaper: Reaper, server: ChatServer, tmp_path: Path
) -> None:
    peers = bots(reaper, server, tmp_path, "p")
    victim = bots(reaper, server, tmp_path, "v")
    for p in (peers, victim):
        p.wait_stdout(rf"online={BOTS} ", timeout=60)
    victim.proc.kill()  # no sign-out: the directory keeps the names until they time out
    victim.proc.wait(10)
    again = bots(reaper, server, tmp_path, "v2", "--prefix", f"{RUN}-v")
    # The same names with the same keys (--home): signed in again once the old ones expired.
    again.wait_stdout(rf"online={BOTS} ", timeout=60)
    for p in (peers, again):
        p.proc.send_signal(signal.SIGTERM)
        assert p.proc.wait(30) == 0, p.outputs()
    ok, report, _ = check(tmp_path / "hist")
    assert ok, report
    assert "ended without exit" in report and f"({BOTS} ended without exit)" in report, report
