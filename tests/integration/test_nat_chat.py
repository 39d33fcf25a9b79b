"""The chat across the NAT lab (issue 21): hole punching between cone NATs, the directory's
relay between symmetric ones, ``--no-relay``'s error, a relay that never carries plaintext, a
direct session that outlives conntrack's idle timeout, and peers behind one router meeting on
their private addresses. Each configuration is one lab (fixture); clients are chat-client
containers in the network namespace of a host behind each router (labkit.natdemo.client),
driven by pipes.

"Direct" is proven by bytes, not by the client's word: the directory (which is also the
relay) counts what its interface received, and a 64 KiB message on a direct path adds less
than one such message to it.

The symmetric lab (router-a and router-b symmetric, router-c plain behind a full-cone CGN) is
one module fixture for five tests. The idle test's pair (carol behind the full cone, dave
behind router-b) exchanges its first message when the lab comes up (fixture ``idle_pair``);
the other tests run during its 150 s of idleness, and the idle test, last in the file, waits
only for what is left of them.
"""

from __future__ import annotations

import secrets
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import pytest

from labkit.natdemo import SERVER_IP, client, path_of
from labkit.natlab import NatKind, NatLab, Probe
from labkit.pcap import Tcpdump, leaks

TRIALS = 20
BIG = 64 * 1024
CONE = {"NAT_A": NatKind.FULL_CONE, "NAT_B": NatKind.PORT_RESTRICTED}
SYMMETRIC = {
    "NAT_A": NatKind.SYMMETRIC,
    "NAT_B": NatKind.SYMMETRIC,
    "NAT_C": NatKind.NONE,
    "NAT_CGN": NatKind.FULL_CONE,  # host-c1: behind a full cone, which reaches a symmetric NAT
}
IDLE_S = 150.0
"""Longer than Linux conntrack's 120 s for an assured UDP flow (and the full-cone map's 120 s,
scripts/nat/router.sh): without keepalives the routers would have forgotten the path."""
LINE_TIMEOUT_S = 30.0
"""A line not shown within this is a failure (the chat's own delivery timeout is 10 s)."""
RELAYED_TEXT_BYTES = 8 * 1024
"""The relayed message of the plaintext test: far more than the sign-ins, lookups and
heartbeats of the same capture, so that its relayed copies are told apart by volume."""
ROUTER_A_PUBLIC, ROUTER_B_PUBLIC = "198.51.100.2", "198.51.100.3"  # compose.nat.yaml
SERVER_PORT = 5000
CONTROL_PORT = 40100


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


@dataclass
class IdlePair:
    carol: Probe
    dave: Probe
    carol_name: str
    dave_name: str
    idle_since: float
    """time.monotonic() when dave showed carol's first message (the last message between them)."""
    path: str
    """carol's whois path to dave then: ``path: direct, to`` dave's mapping towards carol."""


@pytest.fixture(scope="module")
def idle_pair(symmetric_lab: NatLab) -> Iterator[IdlePair]:
    """carol (host-c1, behind the full-cone CGN) sends dave (host-b1, behind symmetric
    router-b) one message, directly; then they stay idle until the idle test. Their clients
    are kept out of ``lab.probes``, which the other tests stop after each test."""
    lab = symmetric_lab
    run = uuid.uuid4().hex[:6]
    names = (f"carol-{run}", f"dave-{run}")
    dave = client(lab, "host-b1", names[1])
    carol = client(lab, "host-c1", names[0])
    for probe in (carol, dave):
        lab.probes.remove(probe)
    try:
        say(carol, f"send {names[1]} before-idle-{run}")
        line = dave.wait_for(_endswith(f": before-idle-{run}"), "the first line", LINE_TIMEOUT_S)
        assert path_of(line) == "direct", line
        idle_since = time.monotonic()
        path = whois_path(carol, names[1])  # the directory's business: nothing to dave
        assert path.startswith("path: direct, to "), path
        yield IdlePair(carol, dave, names[0], names[1], idle_since, path)
    finally:
        carol.close()
        dave.close()


@pytest.fixture
def lab(symmetric_lab: NatLab, idle_pair: IdlePair) -> Iterator[NatLab]:
    """The symmetric lab, its idle pair started (so that its idle time runs during every test
    of the module); this test's own clients stopped after it."""
    yield symmetric_lab
    symmetric_lab.stop_probes()


def _contains(text: str) -> Callable[[str], bool]:
    return lambda line: text in line


def _endswith(text: str) -> Callable[[str], bool]:
    return lambda line: line.endswith(text)


def say(probe: Probe, line: str) -> None:
    """One input line to a client."""
    assert probe.proc.stdin is not None
    probe.proc.stdin.write(line + "\n")
    probe.proc.stdin.flush()


def server_rx_bytes(lab: NatLab) -> int:
    """Bytes the directory's (and relay's) interface received so far."""
    code, out = lab.exec("host-server", ["cat", "/sys/class/net/eth0/statistics/rx_bytes"])
    assert code == 0, out
    return int(out.strip())


def whois_path(probe: Probe, name: str) -> str:
    """The path line of ``whois NAME`` (docs/CLI.md)."""
    mark = len(probe.transcript().splitlines())
    say(probe, f"whois {name}")

    def path_line(_: str) -> bool:
        return any(x.startswith("  path: ") for x in probe.transcript().splitlines()[mark:])

    probe.wait_for(path_line, f"whois {name}'s path line", LINE_TIMEOUT_S)
    return next(
        x.strip() for x in probe.transcript().splitlines()[mark:] if x.startswith("  path: ")
    )


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
            say(alice, f"send bob-{run} {text}")
            line = bob.wait_for(_contains(f": {token}"), f"trial {trial}", 30)
            assert path_of(line) == "direct", line[:120]
            alice.close()
            lab.probes.remove(alice)
    finally:
        lab.stop_probes()
    received = server_rx_bytes(lab) - before
    assert received < BIG, f"the directory received {received} bytes during {TRIALS} x 64 KiB"


def test_symmetric_pair_goes_through_the_relay(lab: NatLab) -> None:
    run = uuid.uuid4().hex[:6]
    bob = client(lab, "host-b1", f"bob-{run}")
    alice = client(lab, "host-a1", f"alice-{run}")
    before = server_rx_bytes(lab)
    say(alice, f"send bob-{run} relayed-{run}")
    line = bob.wait_for(_endswith(f": relayed-{run}"), "the relayed line", LINE_TIMEOUT_S)
    assert path_of(line) == "relay", line
    assert line.startswith(f"alice-{run} (via relay)")  # then " (new)": a first contact
    assert server_rx_bytes(lab) - before > 0
    assert whois_path(alice, f"bob-{run}").startswith("path: via relay")


def test_symmetric_pair_without_the_relay_is_told_it_cannot_reach_directly(lab: NatLab) -> None:
    run = uuid.uuid4().hex[:6]
    client(lab, "host-b1", f"bob-{run}")
    alice = client(lab, "host-a1", f"alice-{run}", "--no-relay")
    say(alice, f"send bob-{run} hi")
    line = alice.wait_for(_contains("not delivered"), "the error", LINE_TIMEOUT_S)
    assert f"cannot reach bob-{run} directly" in line


def test_the_relay_never_carries_plaintext(lab: NatLab) -> None:
    """Every datagram on the directory's (and relay's) interface is captured whole (tcpdump in
    its namespace) while alice and bob sign in and alice's 8 KiB message to bob goes through
    the relay (symmetric x symmetric). No captured byte holds the message's text (nor any
    24-byte piece of it), the random token it carries, or either user's name.

    That the check can fail: the capture holds the relayed datagrams (at least the message's
    size went from alice's router to the relay and from the relay to bob's router), and a
    datagram sent to the directory's address in the clear by a plain UDP probe, during the
    same capture, is found by the same search."""
    run = uuid.uuid4().hex[:6]
    token = secrets.token_hex(16)
    names = (f"alice-{run}", f"bob-{run}")
    text = f"{token} " + secrets.token_hex(RELAYED_TEXT_BYTES // 2)
    control = f"control-{secrets.token_hex(16)}"
    capture = Tcpdump(lab, "host-server")
    try:
        bob = client(lab, "host-b1", names[1])
        alice = client(lab, "host-a1", names[0])
        say(alice, f"send {names[1]} {text}")
        line = bob.wait_for(_contains(token), "the relayed line", LINE_TIMEOUT_S)
        assert path_of(line) == "relay", line[:120]
        lab.probe("host-a2", CONTROL_PORT).send(SERVER_IP, CONTROL_PORT, control)
        # Sent last: once it is in the file, so is everything before it.
        capture.wait_for(lambda got: bool(leaks(got, [control])), "the control", LINE_TIMEOUT_S)
    finally:
        datagrams = capture.stop()
    relay = (SERVER_IP, SERVER_PORT)
    up = sum(len(d.payload) for d in datagrams if d.src[0] == ROUTER_A_PUBLIC and d.dst == relay)
    down = sum(len(d.payload) for d in datagrams if d.src == relay and d.dst[0] == ROUTER_B_PUBLIC)
    assert up >= len(text) and down >= len(text), (up, down, len(datagrams))
    assert leaks(datagrams, [control]) == [control]  # the search sees clear text
    assert leaks(datagrams, [text, token, *names]) == []


def test_two_clients_behind_one_router_talk_on_their_private_addresses(lab: NatLab) -> None:
    """alice (host-a1) and amy (host-a2) sit behind one symmetric router, which does not
    hairpin: amy's line shows alice's private address, alice's whois shows amy's private
    address as the path, and a 64 KiB message between them adds less than its size to the
    directory's interface."""
    run = uuid.uuid4().hex[:6]
    amy = client(lab, "host-a2", f"amy-{run}")
    alice = client(lab, "host-a1", f"alice-{run}")
    a1, a2 = lab.address("host-a1"), lab.address("host-a2")
    before = server_rx_bytes(lab)
    text = f"next-door-{run}-" + "x" * (BIG - 20)
    say(alice, f"send amy-{run} {text}")
    line = amy.wait_for(_contains(f"next-door-{run}-"), "the line", LINE_TIMEOUT_S)
    assert line.startswith(f"alice-{run} ({a1}:"), line[:120]
    received = server_rx_bytes(lab) - before
    assert received < BIG, f"the directory received {received} bytes during a 64 KiB message"
    assert whois_path(alice, f"amy-{run}").startswith(f"path: direct, to {a2}:")


def test_a_direct_session_survives_150_s_idle(lab: NatLab, idle_pair: IdlePair) -> None:
    """Last in the file: the pair of ``idle_pair`` has been idle since its first message
    (the module's other tests ran meanwhile); once IDLE_S have passed, carol's 64 KiB message
    reaches dave directly (his line shows an address, and the directory's interface received
    less than the message's size) on the very path of before: carol's whois shows the same
    address of dave's. dave's router is symmetric (a random port per new mapping), so a path
    lost in the idle time and punched anew would show another port: the mapping lived."""
    pair = idle_pair
    left = pair.idle_since + IDLE_S - time.monotonic()
    if left > 0:
        time.sleep(left)  # the premise: idle this long (no condition to wait for)
    assert whois_path(pair.carol, pair.dave_name) == pair.path  # the session is still there
    run = uuid.uuid4().hex[:6]
    text = f"after-idle-{run}-" + "y" * (BIG - 20)
    before = server_rx_bytes(lab)
    say(pair.carol, f"send {pair.dave_name} {text}")
    line = pair.dave.wait_for(_contains(f"after-idle-{run}-"), "the line", LINE_TIMEOUT_S)
    idle_for = time.monotonic() - pair.idle_since
    assert idle_for >= IDLE_S
    assert path_of(line) == "direct", line[:120]
    received = server_rx_bytes(lab) - before
    assert received < BIG, f"the directory received {received} bytes during a 64 KiB message"
    # The path the message took: where dave's datagrams now come from, as before the idle time.
    assert whois_path(pair.carol, pair.dave_name) == pair.path
