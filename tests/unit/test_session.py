"""chat_protocol.secure: packets, the replay window, sessions, cookies and the endpoint."""

from __future__ import annotations

import contextlib
import random
from collections import OrderedDict
from collections.abc import Callable

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from budget import examples
from chat_protocol.const import (
    COOKIE_LATENCY_S,
    COOKIE_SECRET_LIFETIME_S,
    HANDSHAKE_INIT_MIN_BYTES,
    KEY_REQUEST_MIN_BYTES,
    MAX_DATAGRAM_BYTES,
    REJECT_AFTER_MESSAGES,
    REPLAY_WINDOW_BITS,
)
from chat_protocol.errors import MalformedDatagram
from chat_protocol.secure.cookie import CookieJar
from chat_protocol.secure.endpoint import (
    HandshakeRequested,
    KeyReceived,
    RetryWithCookie,
    SecureEndpoint,
    SendReply,
    SessionEstablished,
    TransportReceived,
)
from chat_protocol.secure.errors import (
    BadMac,
    DecryptFailed,
    HandshakeFailed,
    LocalSecureError,
    ReplayedDatagram,
    ReplayRejected,
    SessionExpired,
    StaleDatagram,
    UnknownReceiver,
)
from chat_protocol.secure.handshake import CookieChallenge, IncomingHandshake, Initiator, Responder
from chat_protocol.secure.noise import ContextCache, KeyPair
from chat_protocol.secure.packets import (
    COOKIE_REPLY_BYTES,
    INIT_OVERHEAD_BYTES,
    KEY_REPLY_BYTES,
    MAX_TRANSPORT_PLAINTEXT_BYTES,
    RESPONSE_OVERHEAD_BYTES,
    TRANSPORT_OVERHEAD_BYTES,
    CookieReply,
    HandshakeInit,
    HandshakeResponse,
    PacketType,
    Transport,
    build_key_request,
    packet_type,
    parse_packet,
)
from chat_protocol.secure.peers import PeerTable
from chat_protocol.secure.replay import ReplayWindow
from chat_protocol.secure.session import SecureSession, SessionLimits
from chat_protocol.wire.messages import Addr

A: Addr = ("192.0.2.1", 4000)
B: Addr = ("198.51.100.2", 5000)
A2: Addr = ("203.0.113.9", 61000)  # A after its NAT rebinds
EVIL: Addr = ("203.0.113.66", 666)


def seeded(seed: int) -> Callable[[int], bytes]:
    return random.Random(seed).randbytes


def endpoints(seed: int = 0, **kwargs: object) -> tuple[SecureEndpoint, SecureEndpoint]:
    rnd = seeded(seed)
    a = SecureEndpoint(static=KeyPair.generate(rnd), random_bytes=rnd, **kwargs)  # type: ignore[arg-type]
    b = SecureEndpoint(static=KeyPair.generate(rnd), random_bytes=rnd, **kwargs)  # type: ignore[arg-type]
    return a, b


def establish(
    a: SecureEndpoint,
    b: SecureEndpoint,
    *,
    now: float = 0.0,
    timestamp: int = 1,
    a_addr: Addr = A,
    b_addr: Addr = B,
) -> tuple[SecureSession, SecureSession]:
    """a initiates to b; returns (a's session, b's session), both confirmed."""
    init = a.connect(b.static.public, b"hello", now, timestamp=timestamp)
    requested = b.receive(init, a_addr, now)
    assert isinstance(requested, HandshakeRequested)
    assert requested.incoming.payload == b"hello"
    assert requested.incoming.remote_static == a.static.public
    response = b.accept(requested.incoming, b"welcome", now)
    established = a.receive(response, b_addr, now)
    assert isinstance(established, SessionEstablished)
    assert established.payload == b"welcome"
    keepalive = established.session.encrypt(b"", now)
    got = b.receive(keepalive, a_addr, now)
    assert isinstance(got, TransportReceived) and got.plaintext == b""
    assert got.session.confirmed
    return established.session, got.session


# --- the replay window ---------------------------------------------------------------------------


def test_window_first_packet_may_be_any_counter() -> None:
    for first in (0, 1, 5000, 2**63):
        window = ReplayWindow()
        assert window.newest is None
        assert window.accept(first)
        assert window.newest == first


def test_window_counter_zero_once() -> None:
    window = ReplayWindow()
    window.accept(0)
    with pytest.raises(ReplayedDatagram):
        window.check(0)
    with pytest.raises(ReplayedDatagram):
        window.accept(0)


def test_window_edges() -> None:
    window = ReplayWindow()
    top = 100_000
    window.accept(top)
    window.check(top - (REPLAY_WINDOW_BITS - 1))  # the oldest counter still in the window
    with pytest.raises(StaleDatagram):
        window.check(top - REPLAY_WINDOW_BITS)  # exactly the window size back
    with pytest.raises(StaleDatagram):
        window.check(top - REPLAY_WINDOW_BITS - 1)  # one past
    assert not window.accept(top - (REPLAY_WINDOW_BITS - 1))
    with pytest.raises(ReplayedDatagram):
        window.check(top - (REPLAY_WINDOW_BITS - 1))
    # one step up pushes that oldest one out
    window.accept(top + 1)
    with pytest.raises(StaleDatagram):
        window.check(top - (REPLAY_WINDOW_BITS - 1))


def test_window_huge_jump_forgets_everything_below() -> None:
    window = ReplayWindow()
    for n in range(10):
        window.accept(n)
    window.accept(2**62)
    with pytest.raises(StaleDatagram):
        window.check(9)
    window.accept(2**62 - 1)  # just below the new top: new
    with pytest.raises(ReplayedDatagram):
        window.check(2**62)


def test_window_jump_of_exactly_its_size() -> None:
    window = ReplayWindow(size=8)
    window.accept(0)
    window.accept(8)  # shift == size: the bitmap restarts
    with pytest.raises(StaleDatagram):
        window.check(0)
    window.accept(1)
    with pytest.raises(ReplayedDatagram):
        window.check(1)


def test_window_check_changes_nothing() -> None:
    window = ReplayWindow()
    window.check(5)
    window.check(5)
    assert window.newest is None


@given(counters=st.lists(st.integers(0, 300), max_size=200), size=st.sampled_from([1, 8, 64]))
def test_window_matches_a_model(counters: list[int], size: int) -> None:
    """Accept iff never accepted and newer than (newest - size): checked against a plain set."""
    window = ReplayWindow(size=size)
    seen: set[int] = set()
    for counter in counters:
        newest = max(seen) if seen else -1
        expected = counter not in seen and counter > newest - size
        try:
            window.accept(counter)
            accepted = True
        except (ReplayedDatagram, StaleDatagram) as exc:
            accepted = False
            assert isinstance(exc, ReplayedDatagram) == (
                counter in seen and counter > newest - size
            )
        assert accepted == expected
        if accepted:
            seen.add(counter)


@given(order=st.permutations(list(range(200))))
def test_window_any_reordering_within_the_window_is_accepted_once(order: list[int]) -> None:
    window = ReplayWindow()
    for counter in order:
        window.accept(counter)
    for counter in order:
        with pytest.raises(ReplayedDatagram):
            window.check(counter)


def test_window_size_must_be_positive() -> None:
    with pytest.raises(LocalSecureError):
        ReplayWindow(size=0)


# --- packets -------------------------------------------------------------------------------------


def test_packet_types_never_look_like_plaintext_codec_datagrams() -> None:
    for t in PacketType:
        assert t & 0x80 and t != ord("P")
    assert packet_type(b"PC\x01\x01") is None
    assert packet_type(b"") is None


def test_sizes_are_what_the_docstring_says() -> None:
    assert INIT_OVERHEAD_BYTES == 143
    assert RESPONSE_OVERHEAD_BYTES == 75
    assert COOKIE_REPLY_BYTES == 61
    assert TRANSPORT_OVERHEAD_BYTES == 29
    assert KEY_REPLY_BYTES == 41
    assert MAX_TRANSPORT_PLAINTEXT_BYTES == MAX_DATAGRAM_BYTES - 29
    a, b = endpoints(1)
    init = a.connect(b.static.public, b"", 0.0, timestamp=1)
    assert len(init) == HANDSHAKE_INIT_MIN_BYTES
    assert len(a.connect(b.static.public, bytes(500), 0.0, timestamp=2)) == 143 + 500
    assert len(build_key_request(bytes(8))) == KEY_REQUEST_MIN_BYTES


@given(data=st.binary(max_size=1500))
@settings(max_examples=examples(300))
def test_parse_random_bytes(data: bytes) -> None:
    try:
        packet = parse_packet(data)
    except MalformedDatagram:
        return
    assert packet_type(data) is not None and len(data) <= MAX_DATAGRAM_BYTES
    if isinstance(packet, Transport):
        assert len(packet.ciphertext) == len(data) - 13
    elif isinstance(packet, HandshakeInit):
        assert packet.raw == data and len(packet.mac1) == len(packet.mac2) == 16
    elif isinstance(packet, CookieReply):
        assert len(packet.nonce) == 24 and len(packet.sealed_cookie) == 32


def test_parse_rejects_wrong_sizes() -> None:
    for kind, good in (
        (PacketType.TRANSPORT, TRANSPORT_OVERHEAD_BYTES),
        (PacketType.HANDSHAKE_INIT, INIT_OVERHEAD_BYTES),
        (PacketType.HANDSHAKE_RESPONSE, RESPONSE_OVERHEAD_BYTES),
        (PacketType.COOKIE_REPLY, COOKIE_REPLY_BYTES),
        (PacketType.KEY_REQUEST, KEY_REQUEST_MIN_BYTES),
        (PacketType.KEY_REPLY, KEY_REPLY_BYTES),
    ):
        parse_packet(bytes([kind]) + bytes(good - 1))
        with pytest.raises(MalformedDatagram):
            parse_packet(bytes([kind]) + bytes(good - 2))
    with pytest.raises(MalformedDatagram):
        parse_packet(bytes([PacketType.TRANSPORT]) + bytes(MAX_DATAGRAM_BYTES))
    with pytest.raises(MalformedDatagram):
        parse_packet(bytes([PacketType.COOKIE_REPLY]) + bytes(COOKIE_REPLY_BYTES))


# --- sessions ------------------------------------------------------------------------------------


def test_round_trip_both_ways() -> None:
    a, b = endpoints(2)
    sa, sb = establish(a, b)
    for i in range(5):
        got = b.receive(sa.encrypt(f"to b {i}".encode(), 1.0), A, 1.0)
        assert isinstance(got, TransportReceived) and got.plaintext == f"to b {i}".encode()
        got = a.receive(sb.encrypt(f"to a {i}".encode(), 1.0), B, 1.0)
        assert isinstance(got, TransportReceived) and got.plaintext == f"to a {i}".encode()
    assert sa.handshake_hash == sb.handshake_hash
    assert sa.remote_static == b.static.public and sb.remote_static == a.static.public
    assert sa.counters.sent == 6 and sb.counters.received == 6


@pytest.mark.parametrize(("lean_a", "lean_b"), [(True, True), (False, True), (True, False)])
def test_lean_sessions_keep_only_keys_and_interoperate(lean_a: bool, lean_b: bool) -> None:
    """A lean endpoint's sessions (the server's) hold bare keys, no AEAD context and no handshake
    hash; on the wire nothing differs, and replays and forgeries are still refused and counted."""
    rnd = seeded(40)
    a = SecureEndpoint(static=KeyPair.generate(rnd), random_bytes=rnd, lean_sessions=lean_a)
    b = SecureEndpoint(static=KeyPair.generate(rnd), random_bytes=rnd, lean_sessions=lean_b)
    sa, sb = establish(a, b)
    for session, lean in ((sa, lean_a), (sb, lean_b)):
        assert (session.handshake_hash is None) == lean
        assert isinstance(session._send, bytes) == lean  # (lean: both keys, 64 bytes)
        assert isinstance(session._receive, ContextCache) == lean
    for i in range(3):
        datagram = sa.encrypt(f"to b {i}".encode(), 1.0)
        got = b.receive(datagram, A, 1.0)
        assert isinstance(got, TransportReceived) and got.plaintext == f"to b {i}".encode()
        got = a.receive(sb.encrypt(f"to a {i}".encode(), 1.0), B, 1.0)
        assert isinstance(got, TransportReceived) and got.plaintext == f"to a {i}".encode()
    with pytest.raises(ReplayedDatagram):
        b.receive(datagram, A, 1.0)
    forged = bytearray(sa.encrypt(b"x", 1.0))
    forged[-1] ^= 1
    with pytest.raises(DecryptFailed):
        b.receive(bytes(forged), A, 1.0)
    assert sb.counters.received == 4 and sb.counters.replayed == 1 and sb.counters.forged == 1
    assert sa.counters.sent == 5 and sb.counters.sent == 3


def test_the_datagram_layout() -> None:
    a, b = endpoints(3)
    sa, sb = establish(a, b)
    datagram = sa.encrypt(b"x" * 1200, 0.0)
    assert len(datagram) == 1200 + TRANSPORT_OVERHEAD_BYTES
    assert datagram[0] == PacketType.TRANSPORT
    assert int.from_bytes(datagram[1:5], "big") == sb.local_index == sa.remote_index
    assert int.from_bytes(datagram[5:13], "big") == 1  # the keepalive used counter 0


@pytest.mark.guard("replay-window")
@given(order=st.permutations(list(range(40))), seed=st.integers(0, 1000))
@settings(max_examples=examples(20), deadline=None)
def test_reordered_datagrams_all_decrypt_once(order: list[int], seed: int) -> None:
    a, b = endpoints(seed)
    sa, sb = establish(a, b)
    sent = [sa.encrypt(i.to_bytes(2, "big"), 1.0) for i in range(40)]
    for i in order:
        got = b.receive(sent[i], A, 1.0)
        assert isinstance(got, TransportReceived) and got.plaintext == i.to_bytes(2, "big")
    for i in order[:5]:
        with pytest.raises(ReplayedDatagram):
            b.receive(sent[i], A, 1.0)
    assert sb.counters.replayed == 5 and b.counters.replayed == 5


def test_too_old_datagrams_are_dropped_and_counted() -> None:
    a, b = endpoints(4)
    sa, sb = establish(a, b)
    old = sa.encrypt(b"old", 1.0)
    for _ in range(REPLAY_WINDOW_BITS):
        b.receive(sa.encrypt(b"", 1.0), A, 1.0)
    with pytest.raises(StaleDatagram):
        b.receive(old, A, 1.0)
    assert sb.counters.stale == 1 and b.counters.stale == 1


def test_every_flipped_bit_and_every_truncation_is_rejected() -> None:
    a, b = endpoints(5)
    sa, _ = establish(a, b)
    datagram = sa.encrypt(b"attack at dawn", 1.0)
    for i in range(len(datagram)):
        for bit in (0x01, 0x80):
            tampered = bytearray(datagram)
            tampered[i] ^= bit
            with pytest.raises(MalformedDatagram):
                b.receive(bytes(tampered), A, 1.0)
    for n in range(len(datagram)):
        with pytest.raises(MalformedDatagram):
            b.receive(datagram[:n], A, 1.0)
    got = b.receive(datagram, A, 1.0)  # the genuine one still works: no failure moved the window
    assert isinstance(got, TransportReceived) and got.plaintext == b"attack at dawn"


def test_a_session_with_other_keys_cannot_decrypt() -> None:
    a, b = endpoints(6)
    c, d = endpoints(7)
    sa, _ = establish(a, b)
    _, sd = establish(c, d)
    datagram = bytearray(sa.encrypt(b"secret", 1.0))
    datagram[1:5] = sd.local_index.to_bytes(4, "big")  # aim it at d's session
    with pytest.raises(DecryptFailed):
        d.receive(bytes(datagram), A, 1.0)
    assert sd.counters.forged == 1


def test_the_responder_sends_nothing_before_the_initiator_confirms() -> None:
    a, b = endpoints(8)
    init = a.connect(b.static.public, b"", 0.0, timestamp=1)
    requested = b.receive(init, A, 0.0)
    assert isinstance(requested, HandshakeRequested)
    response = b.accept(requested.incoming, b"", 0.0)
    assert b.session(a.static.public, 0.0) is None  # unconfirmed sessions are not for sending
    with pytest.raises(SessionExpired):
        b.send(a.static.public, b"too early", 0.0)
    established = a.receive(response, B, 0.0)
    assert isinstance(established, SessionEstablished)
    unconfirmed = b._unconfirmed[established.session.remote_index]
    with pytest.raises(LocalSecureError):
        unconfirmed.encrypt(b"too early", 0.0)
    b.receive(established.session.encrypt(b"", 0.0), A, 0.0)
    assert b.session(a.static.public, 0.0) is unconfirmed
    assert unconfirmed.encrypt(b"now", 0.0)


def test_nat_rebinding_keeps_the_session_and_follows_the_newest_datagram() -> None:
    a, b = endpoints(9)
    sa, sb = establish(a, b)
    assert sb.remote_addr == A
    late = sa.encrypt(b"sent before the rebinding", 1.0)
    moved = sa.encrypt(b"after", 1.0)
    got = b.receive(moved, A2, 1.0)
    assert isinstance(got, TransportReceived) and got.session is sb
    assert sb.remote_addr == A2
    got = b.receive(late, A, 1.0)  # older counter from the old address: accepted...
    assert isinstance(got, TransportReceived)
    assert sb.remote_addr == A2  # ...but it does not move the session back
    datagram, addr = b.send(a.static.public, b"reply", 1.0)
    assert addr == A2
    assert isinstance(a.receive(datagram, B, 1.0), TransportReceived)


def test_sessions_expire() -> None:
    limits = SessionLimits(
        rekey_after_time_s=10, responder_rekey_after_time_s=15, reject_after_time_s=20
    )
    a, b = endpoints(10, limits=limits)
    sa, sb = establish(a, b)
    assert not sa.needs_rekey(9.9) and sa.needs_rekey(10.0)
    assert not sb.needs_rekey(14.9) and sb.needs_rekey(15.0)
    in_flight = sa.encrypt(b"late", 19.9)
    with pytest.raises(SessionExpired):
        sa.encrypt(b"", 20.0)
    with pytest.raises(UnknownReceiver):
        b.receive(in_flight, A, 20.0)
    assert a.session(b.static.public, 20.0) is None
    a.expire(20.0)
    b.expire(20.0)
    assert a.sessions() == 0 and b.sessions() == 0


def test_message_limits() -> None:
    limits = SessionLimits(rekey_after_messages=3, reject_after_messages=5)
    a, b = endpoints(11, limits=limits)
    sa, sb = establish(a, b)  # the keepalive was message 1
    sa.encrypt(b"", 0.0)
    assert not sa.needs_rekey(0.0)
    sa.encrypt(b"", 0.0)
    assert sa.needs_rekey(0.0)
    sa.encrypt(b"", 0.0)
    sa.encrypt(b"", 0.0)
    with pytest.raises(SessionExpired):
        sa.encrypt(b"", 0.0)
    forged_counter = bytearray(sb.encrypt(b"", 0.0))
    forged_counter[5:13] = (5).to_bytes(8, "big")
    with pytest.raises(ReplayRejected):
        a.receive(bytes(forged_counter), B, 0.0)


def test_default_reject_limit_is_wireguards() -> None:
    assert REJECT_AFTER_MESSAGES == 2**64 - 2**13 - 1


def test_plaintext_size_limit() -> None:
    a, b = endpoints(12)
    sa, _ = establish(a, b)
    assert len(sa.encrypt(bytes(MAX_TRANSPORT_PLAINTEXT_BYTES), 0.0)) == MAX_DATAGRAM_BYTES
    with pytest.raises(LocalSecureError):
        sa.encrypt(bytes(MAX_TRANSPORT_PLAINTEXT_BYTES + 1), 0.0)


def test_session_decrypt_directly() -> None:
    a, b = endpoints(13)
    sa, sb = establish(a, b)
    assert sb.decrypt(sa.encrypt(b"x", 0.0), A, 0.0) == b"x"
    with pytest.raises(MalformedDatagram):
        sb.decrypt(build_key_request(bytes(8)), A, 0.0)
    other = bytearray(sa.encrypt(b"x", 0.0))
    other[1:5] = (sb.local_index ^ 1).to_bytes(4, "big")
    with pytest.raises(UnknownReceiver):
        sb.decrypt(bytes(other), A, 0.0)


def test_unknown_receiver() -> None:
    a, b = endpoints(14)
    sa, _ = establish(a, b)
    c, _ = endpoints(15)
    with pytest.raises(UnknownReceiver):
        c.receive(sa.encrypt(b"x", 0.0), A, 0.0)
    assert c.counters.unknown_receiver == 1


# --- cookies -------------------------------------------------------------------------------------


def test_cookie_is_bound_to_the_address_and_the_period() -> None:
    jar = CookieJar(random_bytes=seeded(16), lifetime_s=10.0)
    cookie = jar.cookie(A, 1.0)
    assert jar.cookie(A, 9.9) == cookie
    assert jar.cookie(B, 1.0) != cookie
    assert jar.cookie((A[0], A[1] + 1), 1.0) != cookie
    assert jar.cookie(A, 10.0) != cookie  # a new period, a new secret


def test_cookie_validity_spans_one_rotation_not_two() -> None:
    from chat_protocol.secure.cookie import mac

    jar = CookieJar(random_bytes=seeded(17), lifetime_s=10.0)
    cookie = jar.cookie(A, 9.0)
    message = b"initiation bytes"
    mac2 = mac(cookie, message)
    assert jar.mac2_valid(A, 9.5, message, mac2)
    assert jar.mac2_valid(A, 19.9, message, mac2)  # the next period still knows the old secret
    assert not jar.mac2_valid(B, 9.5, message, mac2)  # another address
    assert not jar.mac2_valid(A, 9.5, message + b"!", mac2)
    assert not jar.mac2_valid(A, 20.0, message, mac2)  # two rotations later: gone
    fresh = CookieJar(random_bytes=seeded(17), lifetime_s=10.0)
    fresh.cookie(A, 0.0)
    assert not fresh.mac2_valid(A, 55.0, message, mac2)  # a jump past several periods


def test_cookie_jar_rotation_draws_new_secrets() -> None:
    draws: list[int] = []
    rnd = seeded(18)

    def counting(n: int) -> bytes:
        draws.append(n)
        return rnd(n)

    jar = CookieJar(random_bytes=counting, lifetime_s=10.0)
    for now in (0.0, 5.0, 9.0):
        jar.cookie(A, now)
    assert len(draws) == 1
    jar.cookie(A, 10.0)
    jar.cookie(A, 35.0)
    assert len(draws) == 3
    with pytest.raises(LocalSecureError):
        CookieJar(random_bytes=rnd, lifetime_s=0)


@pytest.mark.guard("cookie-check")
def test_under_load_an_initiation_without_cookie_gets_a_small_reply_and_leaves_no_state() -> None:
    a, b = endpoints(19)
    init = a.connect(b.static.public, b"", 0.0, timestamp=1)
    reply = b.receive(init, A, 0.0, under_load=True)
    assert isinstance(reply, SendReply) and reply.addr == A
    assert len(reply.datagram) == COOKIE_REPLY_BYTES < len(init)
    assert b.peers() == 0 and b.sessions() == 0
    retry = a.receive(reply.datagram, B, 0.0)
    assert isinstance(retry, RetryWithCookie) and retry.remote_static == b.static.public
    init2 = a.connect(b.static.public, b"", 0.1, timestamp=2)
    requested = b.receive(init2, A, 0.1, under_load=True)
    assert isinstance(requested, HandshakeRequested)
    # the cookie proves A, not another address
    again = b.receive(init2, EVIL, 0.1, under_load=True)
    assert isinstance(again, SendReply)
    assert b.counters.cookie_replies == 2


def test_the_initiator_stops_using_a_cookie_before_it_could_expire() -> None:
    a, b = endpoints(20)
    init = a.connect(b.static.public, b"", 0.0, timestamp=1)
    reply = b.receive(init, A, 0.0, under_load=True)
    assert isinstance(reply, SendReply)
    a.receive(reply.datagram, B, 0.0)
    late = COOKIE_SECRET_LIFETIME_S - COOKIE_LATENCY_S
    init2 = a.connect(b.static.public, b"", late - 0.01, timestamp=2)
    assert init2[-16:] != bytes(16)
    init3 = a.connect(b.static.public, b"", late, timestamp=3)
    assert init3[-16:] == bytes(16)  # no mac2 any more
    assert isinstance(b.receive(init3, A, late, under_load=True), SendReply)


def test_a_cookie_reply_is_used_once_and_must_match_the_initiation() -> None:
    a, b = endpoints(21)
    init = a.connect(b.static.public, b"", 0.0, timestamp=1)
    reply = b.receive(init, A, 0.0, under_load=True)
    assert isinstance(reply, SendReply)
    forged = bytearray(reply.datagram)
    forged[-1] ^= 1
    with pytest.raises(HandshakeFailed):
        a.receive(bytes(forged), B, 0.0)
    a.receive(reply.datagram, B, 0.0)
    with pytest.raises(HandshakeFailed):
        a.receive(reply.datagram, B, 0.0)
    # a reply to a different initiation (another mac1) does not authenticate
    init2 = a.connect(b.static.public, b"", 1.0, timestamp=2)
    c, _ = endpoints(22)
    other_init = c.connect(b.static.public, b"", 1.0, timestamp=1)
    other_reply = b.receive(other_init, A, 1.0, under_load=True)
    assert isinstance(other_reply, SendReply)
    redirected = bytearray(other_reply.datagram)
    redirected[1:5] = init2[1:5]
    with pytest.raises(HandshakeFailed):
        a.receive(bytes(redirected), B, 1.0)


def test_not_under_load_no_cookie_is_needed() -> None:
    a, b = endpoints(23)
    init = a.connect(b.static.public, b"", 0.0, timestamp=1)
    assert isinstance(b.receive(init, EVIL, 0.0), HandshakeRequested)


# --- responder rules -----------------------------------------------------------------------------


def test_bad_mac1_is_dropped_before_any_public_key_work() -> None:
    a, b = endpoints(24)
    c, _ = endpoints(25)
    init = a.connect(c.static.public, b"", 0.0, timestamp=1)  # built for c's key, sent to b
    with pytest.raises(BadMac):
        b.receive(init, A, 0.0)
    assert b.counters.bad_mac == 1 and b.peers() == 0


def test_an_initiation_is_not_kept_unless_accepted() -> None:
    a, b = endpoints(26)
    init = a.connect(b.static.public, b"", 0.0, timestamp=1)
    for _ in range(3):
        assert isinstance(b.receive(init, A, 0.0), HandshakeRequested)
    assert b.peers() == 0 and b.sessions() == 0


@pytest.mark.guard("init-timestamp")
def test_replayed_initiations_are_refused_by_timestamp() -> None:
    a, b = endpoints(27)
    init = a.connect(b.static.public, b"", 0.0, timestamp=100)
    requested = b.receive(init, A, 0.0)
    assert isinstance(requested, HandshakeRequested)
    b.accept(requested.incoming, b"", 0.0)
    with pytest.raises(ReplayedDatagram):
        b.receive(init, EVIL, 1.0)
    old = a.connect(b.static.public, b"", 1.0, timestamp=99)
    with pytest.raises(ReplayedDatagram):
        b.receive(old, A, 1.0)
    assert b.counters.replayed_initiations == 2
    newer = a.connect(b.static.public, b"", 1.0, timestamp=101)
    assert isinstance(b.receive(newer, A, 1.0), HandshakeRequested)


@pytest.mark.guard("accept-timestamp")
def test_accepting_a_stale_incoming_handshake_is_a_replay() -> None:
    a, b = endpoints(28)
    first = b.receive(a.connect(b.static.public, b"", 0.0, timestamp=1), A, 0.0)
    second = b.receive(a.connect(b.static.public, b"", 0.0, timestamp=2), A, 0.0)
    assert isinstance(first, HandshakeRequested) and isinstance(second, HandshakeRequested)
    b.accept(second.incoming, b"", 0.0)
    with pytest.raises(ReplayedDatagram):
        b.accept(first.incoming, b"", 0.0)


@given(request_payload=st.integers(0, 600), response_payload=st.integers(0, 800))
@settings(max_examples=examples(60), deadline=None)
def test_no_response_is_larger_than_its_initiation(
    request_payload: int, response_payload: int
) -> None:
    a, b = endpoints(29)
    init = a.connect(b.static.public, bytes(request_payload), 0.0, timestamp=1)
    requested = b.receive(init, A, 0.0)
    assert isinstance(requested, HandshakeRequested)
    incoming = requested.incoming
    if response_payload > incoming.max_response_payload:
        with pytest.raises(LocalSecureError):
            b.accept(incoming, bytes(response_payload), 0.0)
        assert b.sessions() == 0
        return
    response = b.accept(incoming, bytes(response_payload), 0.0)
    assert len(response) <= len(init)
    assert len(response) == RESPONSE_OVERHEAD_BYTES + response_payload


def test_padding_makes_room_for_a_larger_response() -> None:
    a, b = endpoints(30)
    init = a.connect(b.static.public, b"", 0.0, timestamp=1, pad_to=1000)
    assert len(init) == 1000
    requested = b.receive(init, A, 0.0)
    assert isinstance(requested, HandshakeRequested)
    assert requested.incoming.max_response_payload == 1000 - RESPONSE_OVERHEAD_BYTES
    assert len(b.accept(requested.incoming, bytes(900), 0.0)) == 975
    with pytest.raises(LocalSecureError):
        a.connect(b.static.public, bytes(MAX_DATAGRAM_BYTES), 0.0, timestamp=2)
    with pytest.raises(LocalSecureError):
        a.connect(b.static.public, b"", 0.0, timestamp=3, pad_to=MAX_DATAGRAM_BYTES + 1)
    with pytest.raises(LocalSecureError):
        a.connect(b.static.public, b"", 0.0, timestamp=-1)


def test_an_incoming_handshake_is_answered_once() -> None:
    rnd = seeded(31)
    responder = Responder(static=KeyPair.generate(rnd), random_bytes=rnd)
    initiator = Initiator(
        static=KeyPair.generate(rnd),
        remote_static=responder.static.public,
        local_index=7,
        random_bytes=rnd,
    )
    packet = parse_packet(initiator.initiation(b"hi", 0.0, timestamp=1))
    assert isinstance(packet, HandshakeInit)
    incoming = responder.handle_initiation(packet, A, 0.0, under_load=False)
    assert isinstance(incoming, IncomingHandshake)
    datagram, session = incoming.accept(b"", local_index=9, now=0.0)
    with pytest.raises(LocalSecureError):
        incoming.accept(b"", local_index=10, now=0.0)
    response = parse_packet(datagram)
    assert isinstance(response, HandshakeResponse)
    assert (response.sender, response.receiver) == (9, 7)
    mine, payload = initiator.handle_response(response, B, 0.0)
    assert payload == b"" and mine.remote_index == 9 and session.remote_index == 7
    with pytest.raises(HandshakeFailed):  # that attempt is over
        initiator.handle_response(response, B, 0.0)
    challenge = responder.handle_initiation(packet, A, 0.0, under_load=True)
    assert isinstance(challenge, CookieChallenge) and len(challenge.datagram) < len(packet.raw)


def test_a_response_to_an_older_attempt_fails_and_the_latest_still_completes() -> None:
    a, b = endpoints(32)
    first = b.receive(a.connect(b.static.public, b"", 0.0, timestamp=1), A, 0.0)
    assert isinstance(first, HandshakeRequested)
    old_response = b.accept(first.incoming, b"", 0.0)
    second = b.receive(a.connect(b.static.public, b"", 5.0, timestamp=2), A, 5.0)  # retransmit
    assert isinstance(second, HandshakeRequested)
    with pytest.raises(HandshakeFailed):
        a.receive(old_response, B, 5.0)
    established = a.receive(b.accept(second.incoming, b"", 5.0), B, 5.0)
    assert isinstance(established, SessionEstablished)


def test_a_forged_response_is_rejected_and_the_handshake_survives() -> None:
    a, b = endpoints(33)
    requested = b.receive(a.connect(b.static.public, b"", 0.0, timestamp=1), A, 0.0)
    assert isinstance(requested, HandshakeRequested)
    response = b.accept(requested.incoming, b"ok", 0.0)
    for i in range(len(response)):
        tampered = bytearray(response)
        tampered[i] ^= 0x04
        with pytest.raises(MalformedDatagram):
            a.receive(bytes(tampered), B, 0.0)
    assert isinstance(a.receive(response, B, 0.0), SessionEstablished)


# --- the endpoint --------------------------------------------------------------------------------


def test_rekey_replaces_the_session_and_the_old_one_still_decrypts_in_flight() -> None:
    a, b = endpoints(34)
    old_a, old_b = establish(a, b)
    in_flight = old_a.encrypt(b"in flight", 100.0)
    new_a, new_b = establish(a, b, now=100.0, timestamp=2)
    assert a.session(b.static.public, 100.0) is new_a
    assert b.session(a.static.public, 100.0) is new_b
    got = b.receive(in_flight, A, 100.0)
    assert isinstance(got, TransportReceived) and got.session is old_b
    # a third handshake drops the oldest (not yet expired: the table dropped it)
    very_late = old_a.encrypt(b"", 100.0)
    establish(a, b, now=150.0, timestamp=3)
    with pytest.raises(UnknownReceiver):
        b.receive(very_late, A, 150.0)
    assert not old_b.expired(150.0)


def test_simultaneous_initiation_gives_both_sides_working_sessions() -> None:
    a, b = endpoints(35)
    init_a = a.connect(b.static.public, b"", 0.0, timestamp=1)
    init_b = b.connect(a.static.public, b"", 0.0, timestamp=1)
    req_at_b = b.receive(init_a, A, 0.0)
    req_at_a = a.receive(init_b, B, 0.0)
    assert isinstance(req_at_b, HandshakeRequested) and isinstance(req_at_a, HandshakeRequested)
    resp_b = b.accept(req_at_b.incoming, b"", 0.0)
    resp_a = a.accept(req_at_a.incoming, b"", 0.0)
    est_a = a.receive(resp_b, B, 0.0)
    est_b = b.receive(resp_a, A, 0.0)
    assert isinstance(est_a, SessionEstablished) and isinstance(est_b, SessionEstablished)
    for src, dst, addr in ((a, b, A), (b, a, B)):
        datagram, _ = src.send(dst.static.public, b"hi", 0.0)
        got = dst.receive(datagram, addr, 0.0)
        assert isinstance(got, TransportReceived) and got.plaintext == b"hi"


@pytest.mark.guard("half-open-bound")
def test_unconfirmed_sessions_are_bounded() -> None:
    rnd = seeded(36)
    b = SecureEndpoint(static=KeyPair.generate(rnd), random_bytes=rnd, max_unconfirmed=2)
    initiators = [SecureEndpoint(static=KeyPair.generate(rnd), random_bytes=rnd) for _ in range(3)]
    for i, a in enumerate(initiators):
        requested = b.receive(a.connect(b.static.public, b"", 0.0, timestamp=1), A, float(i))
        assert isinstance(requested, HandshakeRequested)
        b.accept(requested.incoming, b"", float(i))
    assert b.sessions() == 2 and b.counters.evicted_unconfirmed == 1
    b.expire(100.0)
    assert b.sessions() == 0


def test_peers_are_bounded_least_recently_active_first() -> None:
    rnd = seeded(37)
    b = SecureEndpoint(static=KeyPair.generate(rnd), random_bytes=rnd, max_peers=2)
    peers = [SecureEndpoint(static=KeyPair.generate(rnd), random_bytes=rnd) for _ in range(3)]
    sessions = [establish(p, b, a_addr=A)[0] for p in peers[:2]]
    b.receive(sessions[0].encrypt(b"", 1.0), A, 1.0)  # peer 0 active again: peer 1 is oldest
    establish(peers[2], b)
    assert b.peers() == 2 and b.counters.evicted_peers == 1
    with pytest.raises(UnknownReceiver):
        b.receive(sessions[1].encrypt(b"", 2.0), A, 2.0)
    assert isinstance(b.receive(sessions[0].encrypt(b"", 2.0), A, 2.0), TransportReceived)
    with pytest.raises(LocalSecureError):
        SecureEndpoint(static=KeyPair.generate(rnd), random_bytes=rnd, max_peers=0)


def test_forget_and_abandoned_handshakes() -> None:
    a, b = endpoints(38)
    establish(a, b)
    a.forget(b.static.public)
    assert a.session(b.static.public, 0.0) is None and a.sessions() == 0
    a.connect(b.static.public, b"", 0.0, timestamp=5)
    assert a.initiating(b.static.public) is not None
    a.expire(1000.0)
    assert a.initiating(b.static.public) is None


def test_key_request_and_reply() -> None:
    a, b = endpoints(39)
    request = a.request_key(B)
    reply = b.receive(request, A, 0.0)
    assert isinstance(reply, SendReply) and len(reply.datagram) <= len(request)
    with pytest.raises(MalformedDatagram):
        a.receive(reply.datagram, EVIL, 0.0)  # not from where we asked
    got = a.receive(reply.datagram, B, 0.0)
    assert isinstance(got, KeyReceived) and got.key == b.static.public and got.addr == B
    with pytest.raises(MalformedDatagram):
        a.receive(reply.datagram, B, 0.0)  # answered already
    with pytest.raises(LocalSecureError):
        build_key_request(b"short")


# --- hostile input -------------------------------------------------------------------------------

ALLOWED = MalformedDatagram


@given(data=st.binary(max_size=1500), under_load=st.booleans())
@settings(max_examples=examples(300), deadline=None)
def test_random_bytes_into_an_endpoint(data: bytes, under_load: bool) -> None:
    a, b = endpoints(40)
    establish(a, b)
    a.connect(b.static.public, b"", 1.0, timestamp=9)  # a handshake in flight too
    for endpoint in (a, b):
        with contextlib.suppress(ALLOWED):
            endpoint.receive(data, EVIL, 1.0, under_load=under_load)


@st.composite
def typed_junk(draw: st.DrawFn) -> bytes:
    kind = draw(st.sampled_from(list(PacketType)))
    size = draw(st.integers(0, 400))
    return bytes([kind]) + draw(st.binary(min_size=size, max_size=size))


@given(data=typed_junk())
@settings(max_examples=examples(300), deadline=None)
def test_junk_of_every_packet_type(data: bytes) -> None:
    a, b = endpoints(41)
    establish(a, b)
    for endpoint in (a, b):
        try:
            result = endpoint.receive(data, EVIL, 1.0, under_load=True)
        except ALLOWED:
            continue
        # the only thing junk can get is a reply to a key request, never larger than it
        assert isinstance(result, SendReply) and len(result.datagram) <= len(data)


@given(seed=st.integers(0, 2**16), which=st.integers(0, 3), flips=st.data())
@settings(max_examples=examples(120), deadline=None)
def test_mutated_genuine_packets(seed: int, which: int, flips: st.DataObject) -> None:
    """Bit flips in real initiations, responses, cookie replies and transports: dropped with a
    MalformedDatagram subclass, or (a flipped mac2 / padding-free bit) still accepted - never
    anything else."""
    a, b = endpoints(seed)
    init = a.connect(b.static.public, b"", 0.0, timestamp=1)
    cookie = b.receive(init, A, 0.0, under_load=True)
    assert isinstance(cookie, SendReply)
    requested = b.receive(init, A, 0.0)
    assert isinstance(requested, HandshakeRequested)
    response = b.accept(requested.incoming, b"", 0.0)
    genuine = [init, response, cookie.datagram]
    established = a.receive(response, B, 0.0)
    assert isinstance(established, SessionEstablished)
    genuine.append(established.session.encrypt(b"data", 0.0))
    datagram = bytearray(genuine[which])
    for _ in range(flips.draw(st.integers(1, 4))):
        i = flips.draw(st.integers(0, len(datagram) - 1))
        datagram[i] ^= 1 << flips.draw(st.integers(0, 7))
    for endpoint, src in ((b, A), (a, B)):
        with contextlib.suppress(ALLOWED):
            endpoint.receive(bytes(datagram), src, 0.0, under_load=flips.draw(st.booleans()))


@given(actions=st.lists(st.tuples(st.integers(0, 3), st.binary(max_size=300)), max_size=12))
@settings(max_examples=examples(60), deadline=None)
def test_nothing_sent_to_an_unproven_address_is_larger_than_what_it_sent(
    actions: list[tuple[int, bytes]],
) -> None:
    """From unproven addresses: junk, key requests, initiations (with and without load). Every
    datagram the responder sends back - cookie replies, key replies, handshake responses - is no
    larger than the datagram that caused it, and it keeps no state unless it accepted one."""
    a, b = endpoints(42)
    accepted = 0
    for n, (action, data) in enumerate(actions):
        src: Addr = ("198.18.0.1", 1000 + n)
        if action == 0:
            datagram = data
        elif action == 1:
            datagram = build_key_request(bytes(8)) + data
        else:
            datagram = a.connect(b.static.public, data[:200], float(n), timestamp=n + 1)
        try:
            result = b.receive(datagram, src, float(n), under_load=action == 2)
        except ALLOWED:
            continue
        if isinstance(result, SendReply):
            assert len(result.datagram) <= len(datagram)
        elif isinstance(result, HandshakeRequested):
            response = b.accept(result.incoming, b"", float(n))
            accepted += 1
            assert len(response) <= len(datagram)
        else:
            pytest.fail(f"unexpected {result!r}")
    assert b.sessions() == min(accepted, 1)  # one unconfirmed session for a's key, at most
    assert b.session(a.static.public, 100.0) is None  # and it may not send


@given(
    schedule=st.lists(st.integers(0, 59), min_size=1, max_size=200),
    seed=st.integers(0, 2**16),
)
@settings(max_examples=examples(40), deadline=None)
def test_a_lossy_duplicating_reordering_network(schedule: list[int], seed: int) -> None:
    """60 datagrams delivered in any order, any number of times (or never): each one that arrives
    decrypts exactly once, every further copy is dropped as a replay, and the counts add up."""
    a, b = endpoints(seed)
    sa, sb = establish(a, b)
    sent = [sa.encrypt(i.to_bytes(1, "big"), 1.0) for i in range(60)]
    delivered: list[int] = []
    replays = 0
    for i in schedule:
        try:
            got = b.receive(sent[i], A, 1.0)
        except ReplayedDatagram:
            replays += 1
            continue
        assert isinstance(got, TransportReceived)
        delivered.append(got.plaintext[0])
    assert sorted(delivered) == sorted(set(schedule))
    assert replays == len(schedule) - len(set(schedule))
    assert sb.counters.replayed == replays and sb.counters.received == len(delivered) + 1


_TABLE_OPS = st.lists(
    st.tuples(st.sampled_from(["add", "touch", "pop", "oldest"]), st.integers(0, 7)), max_size=60
)


@given(_TABLE_OPS)
def test_peer_table_keeps_recency_as_an_ordered_dict_does(ops: list[tuple[str, int]]) -> None:
    """The endpoint's peer table (a dict and a list through the peers) against OrderedDict."""
    table = PeerTable()
    model: OrderedDict[bytes, None] = OrderedDict()
    for op, i in ops:
        key = bytes([i]) * 32
        if op == "add" and key not in model:
            assert table.add(key).key == key
            model[key] = None
        elif op == "touch" and key in model:
            peer = table.get(key)
            assert peer is not None
            table.touch(peer)
            model.move_to_end(key)
        elif op == "pop":
            popped = table.pop(key)
            assert (popped is not None) == (key in model)
            model.pop(key, None)
        elif op == "oldest":
            assert [p.key for p in table.oldest(i)] == list(model)[:i]
        assert len(table) == len(model)
        assert [p.key for p in table.oldest(len(model) + 1)] == list(model)


def test_a_lean_endpoint_keeps_contexts_only_for_its_most_recently_used_keys() -> None:
    """The server's context cache is bounded (its memory does not grow with its users) and
    keeps the busiest keys: a key used again soon is a hit, the least recently used goes."""
    cache = ContextCache(2)
    k1, k2, k3 = (bytes([i]) * 32 for i in (1, 2, 3))
    first = cache.get(k1)
    cache.get(k2)
    assert cache.get(k1) is first and (cache.hits, cache.misses) == (1, 2)
    cache.get(k3)  # k2 is the least recently used now: it goes
    assert len(cache) == 2
    assert cache.get(k1) is first and cache.hits == 2
    cache.get(k2)
    assert cache.misses == 4 and len(cache) == 2
    with pytest.raises(LocalSecureError):
        cache.get(b"short")
    rnd = seeded(41)
    server = SecureEndpoint(static=KeyPair.generate(rnd), random_bytes=rnd, lean_sessions=True)
    client = SecureEndpoint(static=KeyPair.generate(rnd), random_bytes=rnd)
    sc, _ = establish(client, server)
    assert server.contexts is not None and client.contexts is None
    for i in range(5):
        got = server.receive(sc.encrypt(f"{i}".encode(), 1.0), A, 1.0)
        assert isinstance(got, TransportReceived) and got.plaintext == f"{i}".encode()
    assert server.contexts.misses <= 2 and server.contexts.hits >= 4
