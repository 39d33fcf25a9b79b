"""Loss end to end: the real programs in a network namespace whose loopback drops 20% of the UDP
datagrams (iptables ``statistic`` match), sign-in and heartbeats included.

Needs root (and ``ip`` and ``iptables``). Without them the test is skipped, except under
``CI=true``, where that is a failure: the CI image must provide them.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import NoReturn

import pytest
from chatproc import PipedClient, Reaper, Server, wait_until
from testkit import unavailable

pytestmark = [pytest.mark.e2e, pytest.mark.netns]

LOSS = 0.2
COUNT = 40


def _unavailable(reason: str) -> NoReturn:
    unavailable(reason, "the netns test")


def _run(*argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, capture_output=True, text=True, timeout=10, check=False)


@pytest.fixture
def netns(reaper: Reaper) -> Iterator[list[str]]:
    """A fresh network namespace with loopback up; yields the ``ip netns exec NS`` prefix.

    The finalizer stops the test's processes, kills anything else left in the namespace (only
    this test ran anything there), then deletes it."""
    if os.geteuid() != 0:
        _unavailable("needs root to create a network namespace")
    for tool in ("ip", "iptables"):
        if shutil.which(tool) is None:
            _unavailable(f"{tool} is not installed (apt-get install -y iproute2 iptables)")
    name = f"chat-e2e-{uuid.uuid4().hex[:8]}"
    made = _run("ip", "netns", "add", name)
    if made.returncode != 0:
        _unavailable(f"ip netns add failed: {made.stderr.strip()}")
    try:
        up = _run("ip", "-n", name, "link", "set", "lo", "up")
        assert up.returncode == 0, up.stderr
        yield ["ip", "netns", "exec", name]
    finally:
        reaper.stop_all()
        left = _run("ip", "netns", "pids", name)
        for pid in left.stdout.split():
            with contextlib.suppress(ProcessLookupError, ValueError):
                os.kill(int(pid), signal.SIGKILL)
        gone = _run("ip", "netns", "del", name)
        assert gone.returncode == 0, f"ip netns del {name}: {gone.stderr}"


def drop_udp(prefix: list[str], probability: float) -> None:
    rule = ["-p", "udp", "-m", "statistic", "--mode", "random", "--probability", str(probability)]
    r = _run(*prefix, "iptables", "-w", "-A", "INPUT", *rule, "-j", "DROP")
    if r.returncode != 0:
        _unavailable(f"iptables in the namespace failed: {r.stderr.strip()}")
    listed = _run(*prefix, "iptables", "-w", "-L", "INPUT", "-n")
    assert "statistic mode random" in listed.stdout, listed.stdout


def dropped_packets(prefix: list[str]) -> int:
    r = _run(*prefix, "iptables", "-w", "-L", "INPUT", "-n", "-v", "-x")
    m = re.search(r"^\s*(\d+)\s+\d+\s+DROP", r.stdout, re.M)
    assert m, r.stdout
    return int(m.group(1))


def test_forty_messages_survive_20_percent_loss(
    netns: list[str], reaper: Reaper, tmp_path: Path
) -> None:
    drop_udp(netns, LOSS)
    server = Server.start(reaper, tmp_path / "server.log", prefix=netns)
    alice = PipedClient.spawn(reaper, "alice", server.port, tmp_path, prefix=netns)
    bob = PipedClient.spawn(reaper, "bob", server.port, tmp_path, prefix=netns)
    alice.wait_signed_in()
    bob.wait_signed_in()
    _, port = server.client_addr("alice")

    texts = [f"numbered {i:02d} of {COUNT}" for i in range(1, COUNT + 1)]
    alice.feed("".join(f"send bob {t}\n" for t in texts).encode() + b"exit\n", close=True)
    assert alice.wait_exit(60) == 0, alice.stderr()
    assert alice.stderr() == ""
    prefix = f"alice (127.0.0.1:{port}): "

    def received() -> list[str]:
        return [ln[len(prefix) :] for ln in bob.stdout().split("\n") if ln.startswith(prefix)]

    wait_until(lambda: len(received()) >= COUNT, 15, f"bob to print {COUNT} messages", bob.stderr)
    bob.close_input()
    assert bob.wait_exit(10) == 0, bob.stderr()
    assert received() == texts
    assert bob.stderr() == ""
    # The loss was real.
    assert dropped_packets(netns) > 0
