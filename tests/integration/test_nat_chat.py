"""The chat across the NAT lab (issue 21): hole punching between cone NATs, the directory's
relay between symmetric ones, ``--no-relay``'s error. Each configuration is one lab (module
fixture); clients are chat-client containers in the network namespace of a host behind each
router (labkit.natdemo.client), driven by pipes.

"Direct" is proven by bytes, not by the client's word: the directory (which is also the
relay) counts what its interface received, and 20 messages of 64 KiB between a cone pair add
less than one such message to it.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING

import pytest

from labkit.natdemo import client, path_of
from labkit.natlab import NatKind, NatLab

if TYPE_CHECKING:
    pass

TRIALS = 20
BIG = 64 * 1024
CONE = {"NAT_A": NatKind.FULL_CONE, "NAT_B": NatKind.PORT_RESTRICTED}
SYMMETRIC = {"NAT_A": NatKind.SYMMETRIC, "NAT_B": NatKind.SYMMETRIC}


@pytest.fixture  # one test uses it: down before the symmetric lab (one NAT lab per engine)
def cone_lab(start_nat_lab: Callable[..., NatLab], chat_images: dict[str, str]) -> Iterator[NatLab]:
    lab = start_nat_lab("natchat-it", CONE)
    yield lab
    lab.close()


@pytest.fixture(scope="module")
def symmetric_lab(
    start_nat_lab: Callable[..., NatLab], chat_images: dict[str, str]
) -> Iterator[NatLab]:
    lab = start_nat_lab("natchat-it", SYMMETRIC)
    yield lab
    lab.close()


def _contains(text: str) -> Callable[[str], bool]:
    return lambda line: text in line


def server_rx_bytes(lab: NatLab) -> int:
    """Bytes the directory's (and relay's) interface received so far."""
    code, out = lab.exec("host-server", ["cat", "/sys/class/net/eth0/statistics/rx_bytes"])
    assert code == 0, out
    return int(out.strip())


def test_cone_pair_delivers_directly_20_of_20(cone_lab: NatLab) -> None:
    """Full-cone x port-restricted: every trial a new alice (a new container, a new mapping,
    a new punch) sends bob a 64 KiB message; each arrives, each line shows an address (not
    the relay), and the directory's interface saw less than one message's bytes in all.

    Both run with ``--no-relay``: the relay would take over a handshake still unanswered after
    RELAY_AFTER_S (3 s), which a loaded CI machine can reach while the punch is under way, and
    then the test would time the race instead of proving the punch. Without the relay a trial
    passes only if punching opened the path within the delivery timeout."""
    lab = cone_lab
    run = uuid.uuid4().hex[:6]
    bob = client(lab, "host-b1", f"bob-{run}", "--no-relay")
    before = server_rx_bytes(lab)
    try:
        for trial in range(TRIALS):
            alice = client(lab, "host-a1", f"alice-{run}-{trial}", "--no-relay")
            token = f"t{trial}-{run}-"
            text = token + "x" * (BIG - len(token))
            assert alice.proc.stdin is not None
            alice.proc.stdin.write(f"send bob-{run} {text}\n")
            alice.proc.stdin.flush()
            line = bob.wait_for(_contains(f": {token}"), f"trial {trial}", 30)
            assert path_of(line) == "direct", line[:120]
            alice.close()
            lab.probes.remove(alice)
    finally:
        lab.stop_probes()
    received = server_rx_bytes(lab) - before
    assert received < BIG, f"the directory received {received} bytes during {TRIALS} x 64 KiB"


def test_symmetric_pair_goes_through_the_relay(symmetric_lab: NatLab) -> None:
    lab = symmetric_lab
    run = uuid.uuid4().hex[:6]
    bob = client(lab, "host-b1", f"bob-{run}")
    alice = client(lab, "host-a1", f"alice-{run}")
    before = server_rx_bytes(lab)
    try:
        assert alice.proc.stdin is not None
        alice.proc.stdin.write(f"send bob-{run} relayed-{run}\n")
        alice.proc.stdin.flush()
        line = bob.wait_for(lambda x: x.endswith(f": relayed-{run}"), "the relayed line", 30)
        assert path_of(line) == "relay", line
        assert line.startswith(f"alice-{run} (via relay)")  # then " (new)": a first contact
    finally:
        lab.stop_probes()
    assert server_rx_bytes(lab) - before > 0


def test_symmetric_pair_without_the_relay_is_told_it_cannot_reach_directly(
    symmetric_lab: NatLab,
) -> None:
    lab = symmetric_lab
    run = uuid.uuid4().hex[:6]
    client(lab, "host-b1", f"bob-{run}")
    alice = client(lab, "host-a1", f"alice-{run}", "--no-relay")
    try:
        assert alice.proc.stdin is not None
        alice.proc.stdin.write(f"send bob-{run} hi\n")
        alice.proc.stdin.flush()
        line = alice.wait_for(lambda x: "not delivered" in x, "the error", 30)
        assert f"cannot reach bob-{run} directly" in line
    finally:
        lab.stop_probes()
