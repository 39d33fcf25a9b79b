"""Loss and duplication end to end: the real programs in a network namespace whose loopback
drops 20 % of the UDP datagrams coming in and sends 20 % of those going out twice (labkit.faults:
iptables ``statistic``, ``TEE``), sign-in and heartbeats included.

Needs root (and ``ip``, ``iptables``). Without them the test is skipped, except under
``CI=true``, where that is a failure: the CI machine must provide them.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from labkit import faults, local
from labkit.local import ChatServer
from labkit.netns import Netns
from labkit.procs import Reaper
from labkit.util import wait_until

pytestmark = [pytest.mark.e2e, pytest.mark.netns]

LOSS = 0.2
DUPLICATION = 0.2
COUNT = 40


def test_forty_messages_survive_loss_and_duplication(
    ns: Netns, reaper: Reaper, tmp_path: Path
) -> None:
    dropped = faults.loss(ns.place, LOSS)
    doubled = faults.duplicate(ns.place, DUPLICATION)
    server = ChatServer.start(tmp_path / "server.log", reaper=reaper, prefix=ns.prefix)
    alice = local.piped_client(reaper, "alice", server.port, tmp_path, prefix=ns.prefix)
    bob = local.piped_client(reaper, "bob", server.port, tmp_path, prefix=ns.prefix)
    alice.wait_signed_in()
    bob.wait_signed_in()
    _, port = server.client_addr("alice")

    texts = [f"numbered {i:02d} of {COUNT}" for i in range(1, COUNT + 1)]
    alice.feed("".join(f"send bob {t}\n" for t in texts).encode() + b"exit\n", close=True)
    assert alice.wait_exit(60) == 0, alice.stderr()
    assert alice.stderr() == ""
    prefixes = (f"alice (127.0.0.1:{port}): ", f"alice (127.0.0.1:{port}) (new): ")

    def received() -> list[str]:
        lines = bob.stdout().split("\n")
        return [ln[len(p) :] for ln in lines for p in prefixes if ln.startswith(p)]

    wait_until(lambda: len(received()) >= COUNT, 15, f"bob to print {COUNT} messages", bob.stderr)
    bob.close_input()
    assert bob.wait_exit(10) == 0, bob.stderr()
    assert received() == texts  # exactly once each, in order
    assert bob.stderr() == ""
    # The faults were real.
    assert dropped.packets() > 0
    assert doubled.packets() > 0
