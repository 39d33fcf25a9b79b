"""Handshakes at peers (issue 19, points 4, 5, 7, 8 and the rekey of point 9): recorded
initiations from an earlier run, floods of spoofed initiations, replayed datagrams from forged
sources, and sessions that grow old while messages are in flight.

Each protection is marked ``# guard: NAME`` in the product; the tests that must fail without it
carry ``@pytest.mark.guard("NAME")`` (``make mutate`` removes each in turn).
"""

from __future__ import annotations

import itertools
import random
import re
from collections.abc import Callable
from pathlib import Path

import pytest

from chat_protocol import const
from chat_protocol.client.core import ClientCore
from chat_protocol.const import (
    MAX_HALF_OPEN_PEER_SESSIONS,
    PEER_HANDSHAKES_PER_S_UNDER_LOAD,
    REKEY_AFTER_TIME_S,
    RESPONDER_REKEY_AFTER_TIME_S,
    Timings,
)
from chat_protocol.events import MessageDelivered, MessageReceived, SendFailed
from chat_protocol.secure.endpoint import (
    HandshakeRequested,
    SecureEndpoint,
    SessionEstablished,
    TransportReceived,
)
from chat_protocol.secure.errors import LocalSecureError, ReplayedDatagram
from chat_protocol.secure.handshake_floor import MemoryFloors
from chat_protocol.secure.handshake_gate import HandshakeGate
from chat_protocol.secure.noise import KeyPair
from chat_protocol.secure.packets import PacketType
from chat_protocol.secure.session import SecureSession
from chat_protocol.server.hints import HintLimiter
from chat_protocol.wire.codec import encode
from chat_protocol.wire.messages import Addr, Hello
from netsim import FakeNetwork

A: Addr = ("192.0.2.1", 4000)
B: Addr = ("198.51.100.2", 5000)
EVIL: Addr = ("203.0.113.66", 666)
NS = 10**9
"""Initiation timestamps are nanoseconds."""


def seeded(seed: int) -> Callable[[int], bytes]:
    return random.Random(seed).randbytes


def establish(
    a: SecureEndpoint, b: SecureEndpoint, *, now: float, timestamp: int
) -> tuple[SecureSession, SecureSession]:
    """a initiates to b (a at A, b at B); returns (a's session, b's session), both confirmed."""
    requested = b.receive(a.connect(b.static.public, b"", now, timestamp=timestamp), A, now)
    assert isinstance(requested, HandshakeRequested)
    established = a.receive(b.accept(requested.incoming, b"", now), B, now)
    assert isinstance(established, SessionEstablished)
    got = b.receive(established.session.encrypt(b"", now), A, now)
    assert isinstance(got, TransportReceived) and got.session.confirmed
    return established.session, got.session


# --- point 8: the replay window and the initiation timestamp --------------------------------------


@pytest.mark.guard("replay-window")
def test_a_transport_datagram_replayed_inside_the_window_is_refused() -> None:
    rnd = seeded(1)
    a = SecureEndpoint(static=KeyPair.generate(rnd), random_bytes=rnd)
    b = SecureEndpoint(static=KeyPair.generate(rnd), random_bytes=rnd)
    sa, sb = establish(a, b, now=0.0, timestamp=1)
    sent = [sa.encrypt(bytes([i]), 1.0) for i in range(5)]
    for datagram in sent:
        assert isinstance(b.receive(datagram, A, 1.0), TransportReceived)
    for datagram in (sent[1], sent[4]):  # inside the window: one below the newest, the newest
        with pytest.raises(ReplayedDatagram):
            b.receive(datagram, A, 1.0)
    assert sb.counters.replayed == 2 and sb.counters.received == 6


@pytest.mark.guard("init-timestamp")
def test_a_replayed_initiation_is_refused_by_its_timestamp_without_any_floor_store() -> None:
    rnd = seeded(2)
    a = SecureEndpoint(static=KeyPair.generate(rnd), random_bytes=rnd)
    b = SecureEndpoint(static=KeyPair.generate(rnd), random_bytes=rnd)  # no floors: memory only
    init = a.connect(b.static.public, b"", 0.0, timestamp=5 * NS)
    requested = b.receive(init, A, 0.0)
    assert isinstance(requested, HandshakeRequested)
    b.accept(requested.incoming, b"", 0.0)
    with pytest.raises(ReplayedDatagram):
        b.receive(init, EVIL, 1.0)
    assert b.counters.replayed_initiations == 1


# --- point 4: floors that survive a restart, and sessions the victim initiated --------------------


@pytest.mark.guard("handshake-floor")
def test_a_recorded_initiation_from_an_earlier_run_is_refused_after_a_restart() -> None:
    rnd = seeded(3)
    alice_key, bob_key = KeyPair.generate(rnd), KeyPair.generate(rnd)
    floors = MemoryFloors()  # what the home keeps (chat_shell.floors: a file)
    alice = SecureEndpoint(static=alice_key, random_bytes=rnd, floors=floors)
    bob = SecureEndpoint(static=bob_key, random_bytes=rnd)
    recorded = bob.connect(alice_key.public, b"hi", 0.0, timestamp=1_000 * NS)
    requested = alice.receive(recorded, B, 0.0)
    assert isinstance(requested, HandshakeRequested)
    alice.accept(requested.incoming, b"", 0.0)
    assert floors.get(bob_key.public) == 1_000 * NS
    # Alice restarts: a new endpoint, the same keys, the same home.
    alice = SecureEndpoint(static=alice_key, random_bytes=rnd, floors=floors)
    with pytest.raises(ReplayedDatagram):
        alice.receive(recorded, EVIL, 50.0)
    assert alice.counters.replayed_initiations == 1 and alice.peers() == 0
    # Bob's next run, later, gets through.
    bob = SecureEndpoint(static=bob_key, random_bytes=rnd)
    fresh = bob.connect(alice_key.public, b"", 60.0, timestamp=1_060 * NS)
    assert isinstance(alice.receive(fresh, B, 60.0), HandshakeRequested)


@pytest.mark.guard("handshake-floor")
def test_a_recorded_initiation_cannot_replace_a_session_the_victim_initiated() -> None:
    rnd = seeded(4)
    alice_key, bob_key = KeyPair.generate(rnd), KeyPair.generate(rnd)
    # An initiation of bob's earlier run that alice never received (the attacker kept it).
    earlier_bob = SecureEndpoint(static=bob_key, random_bytes=rnd)
    recorded = earlier_bob.connect(alice_key.public, b"", 0.0, timestamp=1_000 * NS)
    alice = SecureEndpoint(static=alice_key, random_bytes=rnd, floors=MemoryFloors())
    bob = SecureEndpoint(static=bob_key, random_bytes=rnd)
    mine, _ = establish(alice, bob, now=3_600.0, timestamp=4_600 * NS)  # an hour later
    with pytest.raises(ReplayedDatagram):
        alice.receive(recorded, EVIL, 3_601.0)
    assert alice.session(bob_key.public, 3_601.0) is mine and mine.remote_addr == B
    assert alice.sessions() == 1  # no half-open session either


def test_our_own_initiations_raise_the_floor_less_the_clock_skew_allowance() -> None:
    rnd = seeded(5)
    alice = SecureEndpoint(static=KeyPair.generate(rnd), random_bytes=rnd, floors=MemoryFloors())
    bob = SecureEndpoint(static=KeyPair.generate(rnd), random_bytes=rnd)
    # Both start a handshake at once; bob's clock is 10 s behind alice's: still accepted.
    alice.connect(bob.static.public, b"", 0.0, timestamp=1_000 * NS)
    crossing = bob.connect(alice.static.public, b"", 0.0, timestamp=990 * NS)
    assert isinstance(alice.receive(crossing, B, 0.0), HandshakeRequested)


def test_a_memory_floor_store_keeps_the_greatest_and_is_bounded() -> None:
    floors = MemoryFloors(capacity=2)
    floors.raise_to(b"k1", 5)
    floors.raise_to(b"k1", 3)
    assert floors.get(b"k1") == 5
    floors.raise_to(b"k2", 1)
    floors.raise_to(b"k3", 1)
    assert len(floors) == 2 and floors.get(b"k1") is None
    with pytest.raises(LocalSecureError):
        MemoryFloors(capacity=0)


# --- the same on the in-memory network, with the real client cores -------------------------------

T = Timings()
S: Addr = ("10.0.0.1", 5000)
NA: Addr = ("10.0.0.2", 40000)
NB: Addr = ("10.0.0.3", 40001)


def signed_in(net: FakeNetwork) -> tuple[ClientCore, ClientCore]:
    """alice and bob signed in. The directory sends no punching hints (issue 21): these tests
    are about who initiated a session, and a hinted bob would open one of his own at once."""
    srv = net.add_server(S, T)
    srv.hints = HintLimiter(per_asker_per_s=1e-9, per_target_per_s=1e-9)
    a = net.add_client("alice", NA, S, T)
    b = net.add_client("bob", NB, S, T)
    assert net.run_until(lambda: a.online and b.online and len(srv.users) == 2, 30)
    return a, b


def advance(net: FakeNetwork, seconds: float) -> None:
    """Move the clock by exactly ``seconds``, delivering and firing what falls due meanwhile
    (``FakeNetwork.run`` may jump past its end to the next event)."""
    end = net.now + seconds
    while True:
        timers = [
            t
            for a, n in net.nodes.items()
            if a not in net.down and (t := n.next_timer()) is not None
        ]
        due = min([*timers, net._wire[0].at if net._wire else float("inf")])
        if due > end or not net.step():
            break
    net.now = end


def delivered(net: FakeNetwork, addr: Addr) -> int:
    return sum(isinstance(e, MessageDelivered) for e in net.client_events[addr])


def failed(net: FakeNetwork, addr: Addr) -> list[SendFailed]:
    return [e for e in net.client_events[addr] if isinstance(e, SendFailed)]


def shown(net: FakeNetwork, addr: Addr) -> list[str]:
    return [e.text for e in net.client_events[addr] if isinstance(e, MessageReceived)]


def initiation_of_an_earlier_run(
    net: FakeNetwork, owner: str, to: ClientCore, age_s: float
) -> bytes:
    """A genuine initiation of ``owner``'s (its real key, its hello) from a run ``age_s`` ago,
    which the attacker captured and kept from ``to``."""
    then = net.now - age_s
    old = SecureEndpoint(static=net.key(owner), random_bytes=net.random_bytes)
    hello = encode(Hello(req_id=12345, name=owner))
    return old.connect(to.identity.public, hello, then, timestamp=int((then + 1.7e9) * 1e9))


@pytest.mark.guard("handshake-floor")
def test_a_recorded_initiation_fails_no_message_in_flight_and_moves_nothing() -> None:
    net = FakeNetwork(seed=51)
    a, b = signed_in(net)
    a.send("bob", "first", net.now)  # alice starts the session with bob
    net.flush()
    assert net.run_until(lambda: delivered(net, NA) == 1, 15)
    session = a.secure.session(b.identity.public, net.now)
    assert session is not None and session.is_initiator
    recorded = initiation_of_an_earlier_run(net, "bob", a, age_s=3_600.0)
    net.blocked.add((NA, NB))  # alice's next message stays in flight ...
    a.send("bob", "in flight", net.now)
    net.flush()
    net.run(0.5)
    a.receive_datagram(recorded, EVIL, net.now)  # ... when the replay arrives from anywhere
    net.flush()
    net.blocked.clear()
    assert net.run_until(lambda: delivered(net, NA) == 2, 15)
    assert failed(net, NA) == []
    assert a.secure.session(b.identity.public, net.now) is session
    assert session.remote_addr == NB
    assert not any(dst == EVIL for _, dst, _ in net.trace)  # not even a response
    assert a.secure.counters.replayed_initiations == 1
    assert shown(net, NB) == ["first", "in flight"]


def test_an_answered_initiation_that_nobody_confirms_fails_no_message_in_flight() -> None:
    # An initiation of bob's earlier run, only 10 s older than alice's own handshake: inside
    # the clock-skew allowance, so alice answers it (to wherever it came from); but only bob's
    # real run could confirm that session, and until then it changes nothing.
    net = FakeNetwork(seed=55)
    a, _ = signed_in(net)
    recorded = initiation_of_an_earlier_run(net, "bob", a, age_s=10.0)
    a.send("bob", "first", net.now)
    net.flush()
    assert net.run_until(lambda: delivered(net, NA) == 1, 15)
    net.blocked.add((NA, NB))
    a.send("bob", "in flight", net.now)
    net.flush()
    net.run(0.5)
    a.receive_datagram(recorded, EVIL, net.now)
    net.flush()
    assert any(dst == EVIL for _, dst, _ in net.trace)  # answered: the floor let it through
    net.blocked.clear()
    assert net.run_until(lambda: delivered(net, NA) == 2, 15)
    assert failed(net, NA) == [] and shown(net, NB) == ["first", "in flight"]


# --- point 7: addresses follow only the newest datagram ------------------------------------------


@pytest.mark.guard("newest-address-follow")
def test_a_datagram_of_an_older_session_replayed_from_a_forged_source_moves_nothing() -> None:
    rnd = seeded(6)
    a = SecureEndpoint(static=KeyPair.generate(rnd), random_bytes=rnd)
    b = SecureEndpoint(static=KeyPair.generate(rnd), random_bytes=rnd)
    old_a, old_b = establish(a, b, now=0.0, timestamp=1)
    captured = old_a.encrypt(b"never delivered: the attacker kept it", 1.0)
    new_a, new_b = establish(a, b, now=100.0, timestamp=2)  # a rekey
    got = b.receive(new_a.encrypt(b"on the new session", 101.0), A, 101.0)
    assert isinstance(got, TransportReceived) and got.session is new_b
    got = b.receive(captured, EVIL, 102.0)  # genuine, and new to the old session
    assert isinstance(got, TransportReceived) and got.session is old_b
    assert b.session(a.static.public, 102.0) is new_b
    assert new_b.remote_addr == A  # (the old session's own may point anywhere: nothing uses it)
    _, addr = b.send(a.static.public, b"reply", 102.0)
    assert addr == A
    # A genuine move (a NAT rebinding) on the newest session is still followed.
    assert isinstance(b.receive(new_a.encrypt(b"moved", 103.0), EVIL, 103.0), TransportReceived)
    assert b.send(a.static.public, b"reply", 103.0)[1] == EVIL


def test_a_replayed_datagram_from_a_forged_source_never_moves_the_address() -> None:
    rnd = seeded(7)
    a = SecureEndpoint(static=KeyPair.generate(rnd), random_bytes=rnd)
    b = SecureEndpoint(static=KeyPair.generate(rnd), random_bytes=rnd)
    sa, sb = establish(a, b, now=0.0, timestamp=1)
    datagram = sa.encrypt(b"genuine", 1.0)
    assert isinstance(b.receive(datagram, A, 1.0), TransportReceived)
    with pytest.raises(ReplayedDatagram):
        b.receive(datagram, EVIL, 2.0)
    assert sb.remote_addr == A


# --- point 5: floods of spoofed initiations -------------------------------------------------------


def test_the_gate_asks_a_cookie_beyond_a_sources_bucket_or_the_global_rate() -> None:
    gate = HandshakeGate(rate_under_load=4.0, per_ip=2.0, proven_per_ip=1.0)
    assert [gate.under_load(("10.0.0.1", 1), 0.0) for _ in range(3)] == [False, False, True]
    assert not gate.under_load(("10.0.0.2", 1), 0.0)
    assert gate.under_load(("10.0.0.3", 1), 0.0)  # the 5th this second: over the global rate
    assert not gate.under_load(("10.0.0.3", 1), 1.0)  # a new second
    assert gate.proven(("10.0.0.3", 1), 1.0) and not gate.proven(("10.0.0.3", 1), 1.0)
    with pytest.raises(LocalSecureError):
        HandshakeGate(per_ip=0.0)


@pytest.mark.guard("client-cookie", "half-open-bound")
def test_a_flood_of_spoofed_initiations_costs_bob_bounded_work_and_cuts_nobody() -> None:
    net = FakeNetwork(seed=52)
    a, b = signed_in(net)
    a.send("bob", "before", net.now)
    net.flush()
    assert net.run_until(lambda: delivered(net, NA) == 1, 15)
    live = b.secure.session(a.identity.public, net.now)
    assert live is not None
    rng = random.Random(9052)  # not the network's seed: its keys would be alice's
    # Alice's own initiation, captured, and attackers' keys (anyone may look bob's key up).
    alices = [
        d for s, d2, d in net.trace if s == NA and d2 == NB and d[0] == PacketType.HANDSHAKE_INIT
    ]
    seconds, per_s = 10, 200
    n = seconds * per_s
    flood = []
    for i in range(n):
        if i % 4 == 0:
            flood.append(alices[0])
        else:  # a key of its own each (keys are free), so no one replaces another's half-open
            evil = SecureEndpoint(
                static=KeyPair.generate(rng.randbytes), random_bytes=rng.randbytes
            )
            hello = encode(Hello(req_id=i, name=f"evil{i}"))
            flood.append(evil.connect(b.identity.public, hello, net.now, timestamp=2 * 10**18))
    half_open_max = 0
    start = net.now
    for i, datagram in enumerate(flood):
        if i % per_s == 0:
            a.send("bob", f"during {i // per_s}", net.now)
            net.flush()
        spoofed: Addr = (
            f"10.{rng.randrange(64, 128)}.{rng.randrange(256)}.{rng.randrange(1, 255)}",
            4242,
        )
        b.receive_datagram(datagram, spoofed, net.now)
        net.flush()
        half_open_max = max(half_open_max, len(b.secure._unconfirmed))
        advance(net, 1.0 / per_s)
    elapsed = net.now - start
    assert net.run_until(lambda: delivered(net, NA) == 1 + seconds, 20)
    assert failed(net, NA) == [] and len(shown(net, NB)) == 1 + seconds
    assert b.secure.session(a.identity.public, net.now) is live and live.remote_addr == NA
    cookies = b.stats.cookies
    noise_reads = n - cookies  # initiations bob did the public-key work for (2 DH each)
    answered = sum(
        1
        for s, d, data in net.trace
        if s == NB and d not in (NA, S) and data[0] == PacketType.HANDSHAKE_RESPONSE
    )  # each 2 DH more, and a half-open session
    dh = 2 * noise_reads + 2 * answered
    print(
        f"\nflood: {n} spoofed initiations in {elapsed:.1f} s ({n // 4} replays of alice's): "
        f"{cookies} cookie replies, {noise_reads} Noise reads, {answered} answered, {dh} DH "
        f"operations (no gate: {4 * n - 2 * (n // 4)}); half-open at most {half_open_max} "
        f"(bound {MAX_HALF_OPEN_PEER_SESSIONS}); alice's session kept, {seconds} messages delivered"
    )
    budget = PEER_HANDSHAKES_PER_S_UNDER_LOAD * (elapsed + 1)
    assert noise_reads <= budget and answered <= budget
    assert half_open_max <= MAX_HALF_OPEN_PEER_SESSIONS
    assert b.secure.counters.replayed_initiations >= 1  # alice's replays that got a Noise read


def test_a_real_peer_gets_through_a_client_under_load_with_one_cookie_round_trip() -> None:
    net = FakeNetwork(seed=54)
    a, b = signed_in(net)
    b._gate = HandshakeGate(rate_under_load=0.5)  # every initiation needs a cookie
    a.send("bob", "through the cookie", net.now)
    net.flush()
    assert net.run_until(lambda: delivered(net, NA) == 1, 15)
    assert b.stats.cookies >= 1 and shown(net, NB) == ["through the cookie"]
    cookie_replies = [d for s, dst, d in net.trace if s == NB and d[0] == PacketType.COOKIE_REPLY]
    inits = [d for s, dst, d in net.trace if s == NA and d[0] == PacketType.HANDSHAKE_INIT]
    assert cookie_replies and all(len(r) < len(inits[0]) for r in cookie_replies)


# --- point 9: peers rekey, messages in flight survive ---------------------------------------------


@pytest.mark.parametrize("talker", ["initiator", "responder", "both"])
def test_peers_rekey_before_their_session_expires_and_no_message_is_lost(talker: str) -> None:
    net = FakeNetwork(seed=53)
    a, b = signed_in(net)
    a.send("bob", "hello", net.now)  # alice starts the session: she is its initiator
    net.flush()
    assert net.run_until(lambda: delivered(net, NA) == 1, 15)
    sent = 1
    born: set[float] = set()
    step_s = 10.0
    for i in range(48):  # 8 minutes: past REJECT_AFTER_TIME_S twice over
        by_alice = talker == "initiator" or (talker == "both" and i % 2 == 0)
        sender, to = (a, "bob") if by_alice else (b, "alice")
        sender.send(to, f"m{i}", net.now)
        sent += 1
        net.flush()
        advance(net, step_s)
        session = a.secure.session(b.identity.public, net.now)
        assert session is not None, f"no working session at {i}"
        born.add(session.created_at)
    assert net.run_until(lambda: delivered(net, NA) + delivered(net, NB) == sent, 30)
    assert failed(net, NA) == [] and failed(net, NB) == []
    # A new session before the old one stops working, whoever talks: the initiator rekeys after
    # REKEY_AFTER_TIME_S, the responder after RESPONDER_REKEY_AFTER_TIME_S (+ one step).
    times = sorted(born)
    gaps = [later - earlier for earlier, later in itertools.pairwise(times)]
    assert len(times) >= 3 and max(gaps) <= RESPONDER_REKEY_AFTER_TIME_S + step_s + 1, times
    if talker == "initiator":
        assert max(gaps) <= REKEY_AFTER_TIME_S + step_s + 1, times


def test_security_md_states_these_limits_as_const_does() -> None:
    """(README's row of them: test_docs.README_LIMITS.)"""
    doc = (Path(__file__).parents[2] / "docs" / "SECURITY.md").read_text()
    rows = dict(re.findall(r"^\| `([A-Z_]+)` \| ([0-9.]+) \|", doc, flags=re.MULTILINE))
    for name in (
        "HANDSHAKE_CLOCK_SKEW_S",
        "MAX_HANDSHAKE_FLOORS",
        "PEER_HANDSHAKES_PER_S_UNDER_LOAD",
        "PEER_HANDSHAKES_PER_IP_PER_S",
        "PEER_PROVEN_HANDSHAKES_PER_IP_PER_S",
        "MAX_HALF_OPEN_PEER_SESSIONS",
    ):
        assert float(rows[name]) == getattr(const, name), name
