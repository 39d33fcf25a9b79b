"""Reliable delivery between client containers: a large piped message, loss, a partition."""

from __future__ import annotations

import hashlib
import random
import re
import time
import uuid
from pathlib import Path

import pytest

from labkit import faults
from labkit.compose import Compose
from labkit.util import wait_until

pytestmark = pytest.mark.integration

LARGE_MESSAGE_BYTES = 256 * 1024
LOSS_PROBABILITY = 0.2
LOSS_MESSAGES = 40
PARTITION_S = 2.2
"""How long the receiver is off the network (the cut measured, connect call included, is
printed). It must stay well under the 5 s after which the server drops a silent client: the
last heartbeat before the cut may be 1.5 s old and an unanswered one is resent within 0.4 s
of the reconnect, so a cut over about 3.1 s can make the directory drop the receiver, which is
another scenario (the receiver is gone, and sends to it fail with "no such user")."""
PACE_S = 0.25
"""Interval between the messages sent during the partition."""


def _large_text(size: int, seed: int) -> str:
    """Exactly ``size`` UTF-8 bytes of words, with 2- and 3-byte characters among them, so
    chunk boundaries (every 1200 bytes) fall inside characters too. No control characters
    (the receiver would escape them) and no leading or trailing space."""
    rng = random.Random(seed)
    alphabet = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789.,;:!?-éüß☃€"
    out: list[str] = []
    used = 0
    while used < size:
        room = size - used
        c = rng.choice(alphabet) if room >= 3 else "z"
        if c.isalnum() and out and out[-1] != " " and rng.random() < 0.15 and room > 1:
            c = " "
        out.append(c)
        used += len(c.encode())
    text = "".join(out)
    assert len(text.encode()) == size and text == text.strip()
    return text


def test_a_256_kib_piped_message_arrives_whole(compose_project: Compose, tmp_path: Path) -> None:
    lab = compose_project
    # The receiver is a non-terminal client too: its stdout goes to a file, and its stdin (a
    # pipe) stays open until the message is there.
    bob = lab.piped_client("bob", tmp_path)
    bob.wait_signed_in()
    text = _large_text(LARGE_MESSAGE_BYTES, seed=256)
    digest = hashlib.sha256(text.encode()).hexdigest()

    alice = lab.piped_client("alice", tmp_path)
    alice.feed(f"send bob a small one first\nsend bob {text}\n".encode(), close=True)
    # End of input: alice signs out once both messages are acknowledged, and exits 0.
    assert alice.wait_exit(timeout=60) == 0, alice.outputs()
    assert "error" not in alice.stderr(), alice.outputs()

    bob.wait_stdout(
        rf"alice \([0-9.]+:\d+\)(?: \(new\))?: {re.escape(text[:40])}[^\n]*\n", timeout=30
    )
    received = bob.messages("alice")
    assert [m["text"][:40] for m in received] == ["a small one first", text[:40]]
    # From alice's own address (her container is gone by now: the server's log has it).
    alice_ip, alice_port = lab.signed_in_address("alice")
    assert {(m["ip"], int(m["port"])) for m in received} == {(alice_ip, alice_port)}
    got = received[1]["text"]
    print(f"256 KiB message: {len(got.encode())} bytes received, sha256 {digest[:16]}...")
    assert len(got.encode()) == LARGE_MESSAGE_BYTES
    assert hashlib.sha256(got.encode()).hexdigest() == digest
    assert bob.stderr() == "", bob.outputs()

    bob.close_input()
    assert bob.wait_exit(timeout=10) == 0, bob.outputs()


def test_twenty_percent_loss_every_message_once_and_in_order(
    compose_project: Compose,
) -> None:
    """Two senders, 40 numbered messages each, to one receiver, with 20 % of the UDP datagrams
    reaching each of the three clients dropped (iptables `statistic` in their network
    namespaces; the server's replies too): every message arrives exactly once, in each
    sender's order, and nobody mistakes the loss for a dead server."""
    lab = compose_project
    alice, bob, carol = lab.tty_clients("alice", "bob", "carol")
    senders = (alice, carol)
    drop = {ref: faults.loss(lab.place(ref), LOSS_PROBABILITY) for ref in ("alice", "bob", "carol")}

    token = uuid.uuid4().hex[:8]
    lines = {s.name: [f"{s.name[0]}{i:02d}-{token}" for i in range(LOSS_MESSAGES)] for s in senders}
    t0 = time.monotonic()
    for i in range(LOSS_MESSAGES):
        for sender in senders:
            sender.enter(f"send bob {lines[sender.name][i]}")
    wait_until(
        lambda: all(f"{lines[s.name][-1]}\n" in bob.read_available() for s in senders),
        30,
        "both senders' last messages at bob",
        bob.transcript,
    )
    elapsed = time.monotonic() - t0
    drops = {ref: rule.packets() for ref, rule in drop.items()}
    # Every send resolved (delivered, or reported) before `exit` signs out: then nothing more
    # can reach bob, and a `list` on bob is a barrier for everything he printed.
    for sender in senders:
        sender.enter("exit")
    for sender in senders:
        sender.expect(r"signed out", timeout=30)
        assert sender.wait_exit() == 0
        assert "not delivered" not in sender.transcript(), sender.transcript()
    assert bob.list_names() == ["bob"]

    print(
        f"2 x {LOSS_MESSAGES} messages under 20 % loss in {elapsed:.2f} s; "
        f"datagrams dropped: {drops}"
    )
    for sender in senders:
        got = [m["text"] for m in bob.messages(sender.name)]
        assert got == lines[sender.name], (sender.name, got)
    assert drops["bob"] >= 1, drops  # the loss did happen
    for client in (alice, bob, carol):
        assert "lost contact" not in client.transcript(), client.transcript()


def test_partition_shorter_than_the_timeouts_loses_nothing_silently(
    compose_project: Compose,
) -> None:
    """The receiver is taken off the network while two others keep sending to it, and put back
    with the same address: each message sent meanwhile arrives exactly once and in order, or
    its sender says it was not delivered."""
    lab = compose_project
    alice, bob, carol = lab.tty_clients("alice", "bob", "carol")
    senders = (alice, carol)
    token = uuid.uuid4().hex[:8]
    # One message each first, so bob has verified both senders' addresses before the cut.
    for sender in senders:
        sender.enter(f"send bob before-{token}")
        bob.expect(rf"{sender.name} \([0-9.]+:\d+\)(?: \(new\))?: before-{token}")
    bob_ip = lab.container_ip("bob")

    sent: dict[str, list[str]] = {s.name: [] for s in senders}
    # Off the network, then back with the same address (faults.partitioned checks it).
    with faults.partitioned(lab.network(), lab.container("bob")):
        t0 = time.monotonic()
        n = 0
        while time.monotonic() - t0 < PARTITION_S:
            for sender in senders:
                line = f"{sender.name[0]}{n:02d}-{token}"
                sender.enter(f"send bob {line}")
                sent[sender.name].append(line)
            n += 1
            time.sleep(PACE_S)  # pacing of the traffic during the cut, not a synchronisation
    cut_s = time.monotonic() - t0
    assert lab.container_ip("bob") == bob_ip

    settled: dict[str, float] = {}

    def all_settled() -> bool:
        # Each sender's last message arrived, or that sender reported a failure.
        received = bob.read_available()
        for s in senders:
            last = sent[s.name][-1]
            if s.name not in settled and (
                f"{last}\n" in received or "✗ not delivered to bob" in s.read_available()
            ):
                settled[s.name] = time.monotonic() - t0 - cut_s
        return len(settled) == len(senders)

    # Retransmissions resume within 1 s (RTO cap); a failure is reported after 10 s.
    wait_until(all_settled, 15, "the last messages to arrive or be reported", bob.transcript)
    bob.enter(f"send alice back-{token}")
    alice.expect(rf"bob \([0-9.]+:\d+\)(?: \(new\))?: back-{token}")
    assert bob.list_names() == ["alice", "bob", "carol"]  # bob's session survived the cut

    for sender in senders:
        sender.enter("exit")
    for sender in senders:
        sender.expect(r"signed out", timeout=20)
        assert sender.wait_exit() == 0
    bob.list_names()  # barrier: everything the senders' messages produced is in the transcript

    report = []
    for s in senders:
        got = [m["text"] for m in bob.messages(s.name)]
        assert got[0] == f"before-{token}", got
        during = got[1:]
        failed = s.transcript().count("✗ not delivered to bob")
        report.append(f"{s.name}: {len(sent[s.name])} sent, {len(during)} arrived, {failed} failed")
        assert len(during) == len(set(during)), f"duplicates from {s.name}: {during}"
        indices = [sent[s.name].index(t) for t in during]  # ValueError: never sent
        assert indices == sorted(indices), f"out of order from {s.name}: {during}"
        assert len(during) + failed == len(sent[s.name]), (s.name, sent[s.name], during, failed)
    print(
        f"partition {cut_s:.2f} s; {'; '.join(report)}; settled after the reconnect in "
        + ", ".join(f"{k} {v:.2f} s" for k, v in settled.items())
    )
    assert "lost contact" not in bob.transcript()


DUPLICATION = 0.3
DUPLICATED_MESSAGES = 30
PAUSE_S = 1.5
"""How long the server is frozen: under the 3 s a client waits for an answer to a request and
the 5 s of silence after which either side gives the other up."""


def test_duplicates_and_a_paused_server_change_nothing(compose_project: Compose) -> None:
    """30 % of the datagrams the server and both clients send go out twice (iptables TEE):
    every message still arrives exactly once, in order. Then the server is frozen (docker
    pause) while alice sends: once it thaws, those messages arrive too, and nobody lost
    anybody."""
    lab = compose_project
    alice, bob = lab.tty_clients("alice", "bob")
    doubled = {
        ref: faults.duplicate(lab.place(ref), DUPLICATION) for ref in ("server", "alice", "bob")
    }
    token = uuid.uuid4().hex[:8]
    lines = [f"d{i:02d}-{token}" for i in range(DUPLICATED_MESSAGES)]
    for line in lines:
        alice.enter(f"send bob {line}")
    wait_until(
        lambda: f"{lines[-1]}\n" in bob.read_available(), 30, "the last message", bob.transcript
    )
    # Sends to a live peer reuse the directory's answer (issue 24), so the server may have sent
    # only a few heartbeat answers so far: ask it for lists until one of its datagrams went out
    # twice (each `list` is one answer, duplicated with DUPLICATION's chance).
    def server_duplicated() -> bool:
        if doubled["server"].packets() > 0:
            return True
        alice.enter("list")
        return False

    wait_until(server_duplicated, 30, "a datagram of the server's sent twice", interval=0.3)
    copies = {ref: rule.packets() for ref, rule in doubled.items()}
    assert all(n > 0 for n in copies.values()), copies  # the duplication did happen

    during = [f"p{i}-{token}" for i in range(3)]
    with faults.paused(lab.container("server")):
        for line in during:
            alice.enter(f"send bob {line}")
        time.sleep(PAUSE_S)  # the length of the freeze, not a synchronisation
    wait_until(
        lambda: f"{during[-1]}\n" in bob.read_available(),
        15,
        "the messages sent while the server was frozen",
        lambda: f"alice:\n{alice.transcript()[-800:]}\nbob:\n{bob.transcript()[-800:]}",
    )
    assert bob.list_names() == ["alice", "bob"]  # a barrier for what bob printed, too
    got = [m["text"] for m in bob.messages("alice")]
    print(f"duplicated datagrams (copies counted twice): {copies}; bob got {len(got)} messages")
    assert got == lines + during
    for client in (alice, bob):
        assert "lost contact" not in client.transcript(), client.transcript()
        assert "error" not in client.transcript(), client.transcript()
