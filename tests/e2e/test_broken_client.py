"""The chaos run's broken client (labkit/chaos/broken_client.py), on loopback: the real client
with the lab's fault applied from outside, and chat-check catches it.

alice (a plain chat-client) sends bob (the broken client) three messages. bob acknowledges all
three, so alice's history says each was ``delivered``; bob shows and records only the last two.
chat-check must report exactly one message ``lost``, the first, and exit 1. The same client
without the fault (the plain chat-client, the control) gives no violation.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from labkit.chaos.fleet import BROKEN_CLIENT
from labkit.local import ChatServer, client_argv
from labkit.procs import Reaper
from labkit.terminal import PipedClient

pytestmark = pytest.mark.e2e

TEXTS = ("first, dropped", "second", "third")
EXIT_BOUND_S = 20.0
"""Signing out waits for every message to be resolved; a loaded 2-core machine is slow."""


def run_pair(reaper: Reaper, server: ChatServer, tmp_path: Path, *, broken: bool) -> Path:
    """alice sends bob the three texts and both exit; their histories' directory."""
    hist = tmp_path / "hist"
    hist.mkdir()
    bob_argv = client_argv("bob", server.port)
    if broken:
        bob_argv[0:1] = [sys.executable, str(BROKEN_CLIENT)]
    bob = PipedClient.spawn(
        reaper, "bob", [*bob_argv, "--history", str(hist / "bob.jsonl")], tmp_path
    )
    bob.wait_signed_in()
    alice_argv = [*client_argv("alice", server.port), "--history", str(hist / "alice.jsonl")]
    alice = PipedClient.spawn(reaper, "alice", alice_argv, tmp_path)
    alice.wait_signed_in()
    alice.feed("".join(f"send bob {t}\n" for t in TEXTS).encode(), close=True)
    assert alice.wait_exit(EXIT_BOUND_S) == 0, alice.outputs()
    bob.close_input()
    assert bob.wait_exit(EXIT_BOUND_S) == 0, bob.outputs()
    return hist


def records(path: Path, event: str) -> list[dict[str, object]]:
    lines = [json.loads(line) for line in path.read_text().splitlines()]
    return [r for r in lines if r["event"] == event]


def chat_check(hist: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "chat_check", "--json", str(hist)],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip


def test_the_broken_client_acknowledges_its_first_message_and_never_shows_it(
    reaper: Reaper, server: ChatServer, tmp_path: Path
) -> None:
    hist = run_pair(reaper, server, tmp_path, broken=True)
    sent = records(hist / "alice.jsonl", "send")
    assert len(sent) == len(TEXTS)
    assert len(records(hist / "alice.jsonl", "delivered")) == len(TEXTS)
    shown = records(hist / "bob.jsonl", "shown")
    assert [r["id"] for r in shown] == [r["id"] for r in sent[1:]]
    bob_out = (tmp_path / "bob.out").read_text()
    assert TEXTS[0] not in bob_out and all(t in bob_out for t in TEXTS[1:]), bob_out

    r = chat_check(hist)
    assert r.returncode == 1, r.stdout + r.stderr
    report = json.loads(r.stdout)
    lost = report["violations"]["lost"]
    assert lost["count"] == 1 and report["violation_count"] == 1, report["violations"]
    assert [ex["id"] for ex in lost["examples"]] == [sent[0]["id"]], lost


def test_the_same_pair_without_the_fault_keeps_the_promise(
    reaper: Reaper, server: ChatServer, tmp_path: Path
) -> None:
    hist = run_pair(reaper, server, tmp_path, broken=False)
    assert len(records(hist / "bob.jsonl", "shown")) == len(TEXTS)
    r = chat_check(hist)
    assert r.returncode == 0, r.stdout + r.stderr
    assert json.loads(r.stdout)["violation_count"] == 0
