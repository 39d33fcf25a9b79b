"""End to end on the wire: a packet capture of a whole conversation holds no message text, no
user name; replaying every captured datagram (from a fresh port, and with its source forged)
shows nothing twice and cuts nobody off. Real programs in a network namespace (root)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from labkit import local
from labkit.local import ChatServer
from labkit.netns import Netns
from labkit.procs import Reaper
from labkit.util import wait_until

pytestmark = [pytest.mark.e2e, pytest.mark.netns]

SNIFFER = Path(__file__).with_name("sniff_replay.py")
SECRETS = ["attack at dawn", "the password is hunter2", "meet at the mill"]


def test_the_wire_shows_no_secret_and_replays_change_nothing(
    ns: Netns, reaper: Reaper, tmp_path: Path
) -> None:
    cap = tmp_path / "capture.jsonl"
    sniffer = subprocess.Popen(
        [*ns.prefix, sys.executable, str(SNIFFER), "capture", str(cap)],
        stdout=subprocess.PIPE,
        text=True,
    )
    reaper.track(sniffer, "sniffer", lambda: "")
    assert sniffer.stdout is not None and sniffer.stdout.readline().strip() == "capturing"
    server = ChatServer.start(
        tmp_path / "server.log", reaper=reaper, prefix=ns.prefix, env={"CHAT_HOME": str(tmp_path)}
    )
    alice = local.piped_client(reaper, "alice", server.port, tmp_path, prefix=ns.prefix)
    bob = local.piped_client(reaper, "bob", server.port, tmp_path, prefix=ns.prefix)
    alice.wait_signed_in()
    bob.wait_signed_in()
    alice.feed(
        ("list\nwhois bob\n" + "".join(f"send bob {s}\n" for s in SECRETS)).encode()
    )
    bob.feed(b"send alice roger\n")
    wait_until(lambda: all(s in bob.stdout() for s in SECRETS), 15, "bob to show the secrets")
    wait_until(lambda: "roger" in alice.stdout(), 15, "alice to show the reply")

    # Replay everything captured so far, while both are signed in.
    replay = subprocess.run(
        [*ns.prefix, sys.executable, str(SNIFFER), "replay", str(cap)],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    result = json.loads(replay.stdout)
    assert result["records"] > 20
    why = f"a reply to a fresh address was larger than its request: {result}"
    assert result["excess"] <= 0, why

    alice.feed(b"send bob after the replay\nexit\n", close=True)
    wait_until(lambda: "after the replay" in bob.stdout(), 15, "the conversation to go on")
    bob.close_input()
    assert alice.wait_exit(20) == 0, alice.outputs()
    assert bob.wait_exit(20) == 0, bob.outputs()
    sniffer.terminate()
    sniffer.wait(10)

    shown = bob.stdout()
    for s in SECRETS:
        assert shown.count(s) == 1, f"{s!r} shown {shown.count(s)} times"
    assert alice.stdout().count("roger") == 1
    assert "lost contact" not in alice.stdout() + bob.stdout()

    datagrams = [bytes.fromhex(json.loads(line)["data"]) for line in cap.read_text().splitlines()]
    assert len(datagrams) > 20
    needles = [s.encode() for s in [*SECRETS, "roger", "after the replay"]]
    needles += [b"alice", b"bob"]
    for d in datagrams:
        for needle in needles:
            assert needle not in d, f"{needle!r} in clear on the wire"
