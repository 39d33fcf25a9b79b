"""ServerCore on a fake clock, driven by scripted secure clients: sign-in in the handshake,
uniqueness, tokens bound to sessions, listing, expiry, shutdown, and what an unproven address
may be sent."""

from __future__ import annotations

import itertools
import random

import pytest

from chat_protocol.const import (
    DEFAULT_TIMINGS,
    HANDSHAKE_INIT_MIN_BYTES,
    HANDSHAKES_PER_S_UNDER_LOAD,
    LIST_PAGE_MAX_BYTES,
    UNCONFIRMED_SESSION_TIMEOUT_S,
    Timings,
)
from chat_protocol.events import UserJoined, UserLeft
from chat_protocol.secure.endpoint import (
    KeyReceived,
    RetryWithCookie,
    SecureEndpoint,
    SessionEstablished,
    TransportReceived,
)
from chat_protocol.secure.noise import KeyPair
from chat_protocol.secure.packets import PacketType
from chat_protocol.secure.session import SecureSession
from chat_protocol.server.bindings import NameBindings
from chat_protocol.server.core import ServerCore
from chat_protocol.server.signin import PendingSignIn
from chat_protocol.server.users import UserTrigger
from chat_protocol.wire.codec import decode, encode
from chat_protocol.wire.messages import (
    Addr,
    Bye,
    ByeAck,
    Data,
    Heartbeat,
    HeartbeatAck,
    Hello,
    ListReply,
    ListUsers,
    Lookup,
    LookupReply,
    Message,
    Ping,
    Pong,
    Refused,
    RefuseReason,
    Shutdown,
    UnknownSession,
    Welcome,
)

T = DEFAULT_TIMINGS
SERVER: Addr = ("10.0.0.100", 5000)
A: Addr = ("10.0.0.1", 4000)
B: Addr = ("10.0.0.2", 4000)
C: Addr = ("10.0.0.3", 4000)
D: Addr = ("10.0.0.4", 4000)


class Harness:
    """A ServerCore at ``SERVER`` on a fake clock; every random draw comes from one seed."""

    def __init__(
        self, timings: Timings = T, *, seed: int = 0, names: NameBindings | None = None
    ) -> None:
        self.rng = random.Random(seed)
        self.core = ServerCore(
            identity=KeyPair.generate(self.rng.randbytes),
            timings=timings,
            random_bytes=self.rng.randbytes,
            names=names,
        )
        self.now = 0.0
        self.clients: dict[Addr, Client] = {}
        self._timestamps = itertools.count(1)

    def client(self, addr: Addr, key: KeyPair | None = None) -> Client:
        """A new fake client at ``addr`` (its own key unless ``key`` is given); the server's
        datagrams to ``addr`` are opened by the newest client there."""
        client = Client(self, addr, key or KeyPair.generate(self.rng.randbytes))
        self.clients[addr] = client
        return client

    def sign_in(self, name: str, addr: Addr, req_id: int = 7) -> bytes:
        return self.client(addr).sign_in(name, req_id)

    def timestamp(self) -> int:
        """Initiation timestamps: increasing across every client (and every key) of a test."""
        return next(self._timestamps)

    def send(self, datagram: bytes, src: Addr) -> list[tuple[bytes, Addr]]:
        """Hand ``datagram`` from ``src`` to the server; what the server sends in answer."""
        self.core.receive_datagram(datagram, src, self.now)
        return self.core.datagrams_to_send(self.now)

    def opened(self, out: list[tuple[bytes, Addr]]) -> list[tuple[Message, Addr]]:
        """Every datagram of ``out`` decrypted by the client it is addressed to."""
        return [(self.clients[to].open(d), to) for d, to in out]

    def advance(self, seconds: float) -> None:
        self.now += seconds
        self.core.handle_timer(self.now)


class Client:
    """A scripted secure client: its own static key and SecureEndpoint, talking to the harness'
    server by hand (ClientCore does the same with timers and retries)."""

    def __init__(self, h: Harness, addr: Addr, key: KeyPair) -> None:
        self.h = h
        self.addr = addr
        self.key = key
        self.endpoint = SecureEndpoint(static=key, random_bytes=h.rng.randbytes)
        self.server_key: bytes | None = None
        self.session: SecureSession | None = None
        self.token = b""
        self.initiations: list[bytes] = []

    def learn_key(self) -> bytes:
        """KEY_REQUEST, KEY_REPLY: the server's static key (trust on first use)."""
        request = self.endpoint.request_key(SERVER)
        [(reply, to)] = self.h.send(request, self.addr)
        assert to == self.addr and reply[0] == PacketType.KEY_REPLY
        got = self.endpoint.receive(reply, SERVER, self.h.now)
        assert isinstance(got, KeyReceived) and got.key == self.h.core.identity.public
        self.server_key = got.key
        return reply

    def initiation(
        self, name: str, req_id: int = 7, *, pad_to: int = HANDSHAKE_INIT_MIN_BYTES
    ) -> bytes:
        """A HANDSHAKE_INIT carrying HELLO (not sent)."""
        if self.server_key is None:
            self.learn_key()
        assert self.server_key is not None
        hello = encode(Hello(req_id=req_id, name=name))
        init = self.endpoint.connect(
            self.server_key, hello, self.h.now, timestamp=self.h.timestamp(), pad_to=pad_to
        )
        self.initiations.append(init)
        return init

    def complete(self, response: bytes) -> Message:
        """Take the HANDSHAKE_RESPONSE: the session (not yet confirmed) and the server's answer."""
        got = self.endpoint.receive(response, SERVER, self.h.now)
        assert isinstance(got, SessionEstablished)
        self.session = got.session
        return decode(got.payload)

    def handshake(self, name: str, req_id: int = 7) -> Message:
        """Send an initiation carrying HELLO; the WELCOME or REFUSED of its response."""
        [(response, to)] = self.h.send(self.initiation(name, req_id), self.addr)
        assert to == self.addr and response[0] == PacketType.HANDSHAKE_RESPONSE
        return self.complete(response)

    def confirm(self) -> None:
        """The first TRANSPORT datagram (an empty keepalive): it proves this address receives."""
        assert self.session is not None
        assert self.h.send(self.session.encrypt(b"", self.h.now), self.addr) == []

    def sign_in(self, name: str, req_id: int = 7) -> bytes:
        answer = self.handshake(name, req_id)
        assert isinstance(answer, Welcome) and answer.req_id == req_id, answer
        self.confirm()
        self.token = answer.token
        return answer.token

    def seal(self, msg: Message | bytes) -> bytes:
        """A TRANSPORT datagram carrying ``msg`` on this client's session."""
        assert self.session is not None
        plaintext = msg if isinstance(msg, bytes) else encode(msg)
        return self.session.encrypt(plaintext, self.h.now)

    def ask(self, msg: Message | bytes) -> list[Message]:
        """Send ``msg`` on the session; the server's replies, decrypted (all must be to us)."""
        out = self.h.send(self.seal(msg), self.addr)
        assert all(to == self.addr for _, to in out)
        return [self.open(d) for d, _ in out]

    def open(self, datagram: bytes) -> Message:
        got = self.endpoint.receive(datagram, SERVER, self.h.now)
        assert isinstance(got, TransportReceived) and got.session is self.session
        return decode(got.plaintext)


def _dropped(h: Harness) -> int:
    """Datagrams the server dropped as not coming from a user: on a session whose key signed
    nobody in (``unauthenticated``), or on a session it no longer holds (``malformed``)."""
    return h.core.stats.unauthenticated + h.core.stats.malformed


def test_sign_in_and_lookup() -> None:
    h = Harness()
    alice, bob = h.client(A), h.client(B)
    ta = alice.sign_in("alice")
    bob.sign_in("Bob")
    assert alice.ask(Lookup(token=ta, req_id=3, name="bob")) == [
        LookupReply(req_id=3, name="Bob", addr=B, key=bob.key.public)
    ]
    assert alice.ask(Lookup(token=ta, req_id=4, name="zed")) == [
        LookupReply(req_id=4, name="zed", addr=None)
    ]
    assert h.core.events() == [UserJoined(name="alice", addr=A), UserJoined(name="Bob", addr=B)]
    assert h.core.stats.sign_ins == 2


@pytest.mark.guard("name-binding")
def test_name_of_another_key_refused_case_insensitively_and_first_user_unaffected() -> None:
    h = Harness()
    alice = h.client(A)
    ta = alice.sign_in("alice")
    other = h.client(B)  # another key
    assert other.handshake("ALICE", req_id=9) == Refused(req_id=9, reason=RefuseReason.NAME_BOUND)
    before = _dropped(h)
    other.confirm()  # its session signed nobody in: dropped and counted, nothing changes
    assert _dropped(h) == before + 1
    [reply] = alice.ask(Lookup(token=ta, req_id=1, name="alice"))
    assert reply == LookupReply(req_id=1, name="alice", addr=A, key=alice.key.public)
    [ack] = alice.ask(Heartbeat(token=ta))
    assert isinstance(ack, HeartbeatAck) and list(h.core.users) == ["alice"]
    assert [type(e) for e in h.core.events()] == [UserJoined]


def test_retransmitted_initiation_gets_the_same_welcome() -> None:
    h = Harness()
    first = h.client(A)
    # The first initiation is answered, but the response is lost: the client never confirms.
    # (A second endpoint with the same key stands in for the retransmission, so the test can
    # read both answers; the server sees the same key from the same address twice.)
    lost = first.handshake("alice", req_id=5)
    again = h.client(A, key=first.key)
    answer = again.handshake("alice", req_id=5)
    assert isinstance(answer, Welcome) and answer == lost
    again.confirm()
    assert len(h.core.users) == 1 and h.core.users["alice"].token == answer.token
    # Signed in, the same key from the same address may hand-shake again (a lost WELCOME, or a
    # rekey): the same token, still one user, and the new session serves it.
    third = h.client(A, key=first.key)
    assert third.handshake("alice", req_id=6) == Welcome(
        req_id=6, token=answer.token, heartbeat_ms=answer.heartbeat_ms, observed=A
    )
    third.confirm()
    assert third.ask(Heartbeat(token=answer.token)) == [
        HeartbeatAck(token=answer.token, heartbeat_ms=answer.heartbeat_ms)
    ]
    assert len(h.core.users) == 1 and [type(e) for e in h.core.events()] == [UserJoined]
    # The same key from elsewhere is another process with the same home: refused.
    elsewhere = h.client(B, key=first.key)
    assert elsewhere.handshake("alice", req_id=8) == Refused(
        req_id=8, reason=RefuseReason.NAME_TAKEN
    )
    assert h.core.users["alice"].addr == A
    assert third.ask(Heartbeat(token=answer.token)) != []  # and alice's session still serves


@pytest.mark.guard("newest-address", "newest-address-follow")
def test_an_address_moves_only_with_the_newest_datagram_of_the_current_session() -> None:
    """Issue 19, point 7: a genuine datagram, held back by an attacker and re-sent from a
    forged source after the user rekeyed, is authentic and unseen, but older than what the
    user's current session carried: it moves neither the address LOOKUP hands out nor where
    the server sends. A fresh datagram from a new source (NAT rebinding) still moves both."""
    h = Harness()
    alice, bob = h.client(A), h.client(B)
    token = alice.sign_in("alice")
    tb = bob.sign_in("bob")
    held = alice.seal(Heartbeat(token=token))  # captured, never delivered
    assert isinstance(alice.handshake("alice", req_id=8), Welcome)  # alice rekeys
    alice.confirm()
    forged: Addr = ("10.6.6.6", 666)
    out = h.send(held, forged)
    assert h.core.users["alice"].addr == A
    assert [to for _, to in out] == [A]  # (its answer goes where alice is)
    assert bob.ask(Lookup(token=tb, req_id=1, name="alice")) == [
        LookupReply(req_id=1, name="alice", addr=A, key=alice.key.public)
    ]
    # Alice's NAT rebinds: her next datagram, the newest, comes from a new port.
    moved: Addr = (A[0], 4001)
    out = h.send(alice.seal(Heartbeat(token=token)), moved)
    assert [to for _, to in out] == [moved] and h.core.users["alice"].addr == moved


@pytest.mark.parametrize("name", ["no spaces", "", "x" * 33, "-dash", "caf\u00e9"])
def test_invalid_name_refused(name: str) -> None:
    h = Harness()
    assert h.client(A).handshake(name, req_id=1) == Refused(
        req_id=1, reason=RefuseReason.NAME_INVALID
    )
    assert h.core.users == {} and h.core.stats.refused == 1


def test_requests_need_the_users_own_session_and_token() -> None:
    h = Harness()
    alice, bob, carol = h.client(A), h.client(B), h.client(C)
    ta = alice.sign_in("alice")
    bob.sign_in("bob")
    stats = h.core.stats
    # Alice's token on bob's session (bob stole it): dropped silently.
    assert bob.ask(Bye(token=ta, req_id=1)) == []
    assert stats.unauthenticated == 1 and "alice" in h.core.users
    # Bob's session with a token nobody has: dropped silently.
    assert bob.ask(Heartbeat(token=b"\xff" * 8)) == []
    assert stats.unauthenticated == 2
    # A session whose key signed nobody in (refused), carrying alice's token.
    assert isinstance(carol.handshake("no spaces"), Refused)
    before = _dropped(h)
    carol.confirm()
    assert carol.ask(Bye(token=ta, req_id=1)) == []
    assert _dropped(h) == before + 2 and "alice" in h.core.users
    # Alice's token in plaintext, from alice's own address: not even looked at.
    assert h.send(encode(Bye(token=ta, req_id=1)), A) == []
    assert stats.unexpected == 1 and "alice" in h.core.users
    # Alice's own session and token.
    assert alice.ask(Bye(token=ta, req_id=2)) == [ByeAck(req_id=2)]
    assert "alice" not in h.core.users and "bob" in h.core.users
    left = [e for e in h.core.events() if isinstance(e, UserLeft)]
    assert left == [UserLeft(name="alice", addr=A, timed_out=False)]


def test_malformed_and_unexpected_datagrams_are_counted_not_fatal() -> None:
    h = Harness()
    alice = h.client(A)
    ta = alice.sign_in("alice")
    stats = h.core.stats
    data = Data(
        session=1, stream=1, base=0, seq=0, msg_id=1, offset=0, total=1, sender="a", payload=b"x"
    )
    malformed = [
        b"",
        b"garbage",
        b"PC\xff\xff",  # plaintext magic, nothing valid after it
        bytes([PacketType.TRANSPORT]) + bytes(40),  # no session with index 0
        bytes([PacketType.HANDSHAKE_INIT]) + bytes(300),  # bad mac1
        bytes([PacketType.HANDSHAKE_RESPONSE]) + bytes(100),  # no handshake in flight
        bytes([PacketType.KEY_REPLY]) + bytes(40),  # never asked for
        bytes([PacketType.COOKIE_REPLY]) + bytes(60),
        alice.seal(b"not a message"),
    ]
    for raw in malformed:
        assert h.send(raw, A) == []
    assert stats.malformed == len(malformed)
    unexpected = [
        encode(data),  # plaintext kinds other than PING
        encode(Hello(req_id=1, name="mallory")),
        encode(Heartbeat(token=ta)),
        encode(Pong(nonce=1)),
        alice.seal(data),  # peer DATA inside a session
        alice.seal(Welcome(req_id=1, token=ta, heartbeat_ms=1)),  # a server's message
    ]
    for raw in unexpected:
        assert h.send(raw, A) == []
    assert stats.unexpected == len(unexpected)
    # An initiation that authenticates but carries no HELLO: dropped, no response, no state.
    mallory = h.client(D)
    mallory.learn_key()
    assert mallory.server_key is not None
    for payload, counter in ((encode(Ping(nonce=1)), "unexpected"), (b"junk", "malformed")):
        before = getattr(stats, counter)
        init = mallory.endpoint.connect(mallory.server_key, payload, h.now, timestamp=h.timestamp())
        assert h.send(init, D) == []
        assert getattr(stats, counter) == before + 1
    assert stats.unauthenticated == 0 and stats.sign_ins == 1
    assert alice.ask(Heartbeat(token=ta)) == [HeartbeatAck(token=ta, heartbeat_ms=1500)]


def test_heartbeats_keep_a_user_and_silence_removes_it() -> None:
    h = Harness()
    alice = h.client(A)
    ta = alice.sign_in("alice")
    h.sign_in("bob", B)
    for _ in range(10):
        h.advance(T.heartbeat_interval_s)
        [ack] = alice.ask(Heartbeat(token=ta))
        assert isinstance(ack, HeartbeatAck) and ack.heartbeat_ms == 1500
    assert set(h.core.users) == {"alice"}  # bob went silent 15 s ago
    left = [e for e in h.core.events() if isinstance(e, UserLeft)]
    assert [(e.name, e.timed_out) for e in left] == [("bob", True)]
    assert h.core.stats.timeouts == 1


def test_silent_user_removed_within_timeout_plus_sweep() -> None:
    h = Harness()
    h.sign_in("bob", B)
    h.advance(T.client_timeout_s - 0.01)
    assert "bob" in h.core.users
    timer = h.core.next_timer()
    assert timer is not None and timer <= T.client_timeout_s + T.sweep_interval_s
    h.advance(0.02)
    assert "bob" not in h.core.users


def test_list_pages_cover_everyone_once_and_fit_a_datagram() -> None:
    h = Harness()
    clients = [h.client((f"10.1.{i >> 8}.{i & 255}", 1000)) for i in range(300)]
    tokens = [c.sign_in(f"user{i:04d}-{'x' * 20}") for i, c in enumerate(clients)]
    seen: list[str] = []
    after = ""
    while True:
        [(raw, to)] = h.send(
            clients[0].seal(ListUsers(token=tokens[0], req_id=1, after=after)), clients[0].addr
        )
        page = clients[0].open(raw)
        assert to == clients[0].addr and len(encode(page)) <= LIST_PAGE_MAX_BYTES
        assert isinstance(page, ListReply) and page.total == 300
        seen.extend(page.names)
        if not page.more:
            break
        after = page.names[-1]
    assert seen == sorted(seen) and len(seen) == len(set(seen)) == 300


def test_shutdown_notifies_every_user_with_their_token() -> None:
    h = Harness()
    ta, tb = h.sign_in("alice", A), h.sign_in("bob", B)
    unconfirmed = h.client(C)
    assert isinstance(unconfirmed.handshake("carol"), Welcome)  # never confirmed: not a user
    h.advance(1.0)
    h.core.shutdown(h.now)
    out = h.core.datagrams_to_send(h.now)
    assert all(d[0] == PacketType.TRANSPORT for d, _ in out)
    assert sorted(h.opened(out), key=repr) == sorted(
        [(Shutdown(token=ta), A)] * T.shutdown_copies
        + [(Shutdown(token=tb), B)] * T.shutdown_copies,
        key=repr,
    )


def test_ping_needs_no_sign_in_and_reply_is_not_larger() -> None:
    h = Harness()
    h.sign_in("alice", A)
    ping = encode(Ping(nonce=42))
    [(raw, to)] = h.send(ping, C)
    assert decode(raw) == Pong(nonce=42) and to == C
    assert len(raw) <= len(ping)


def test_pong_tells_a_stranger_nothing_but_that_the_server_answers() -> None:
    """Issue 19, point 6: no user count on an unauthenticated PONG (the same bytes, header and
    nonce only, whether one user or three are signed in)."""
    h = Harness()
    h.sign_in("alice", A)
    [(one, _)] = h.send(encode(Ping(nonce=42)), D)
    h.sign_in("bob", B)
    h.sign_in("carol", C)
    h.advance(1.0)  # (a new second of PING budget)
    [(three, _)] = h.send(encode(Ping(nonce=42)), D)
    assert one == three == b"PC\x01\x0f" + (42).to_bytes(4, "big")


def _fill(h: Harness, users: int) -> None:
    """``users`` signed-in users, filed through the server's registration directly (a real
    handshake each would take a minute for 25 000); their keys are placeholders."""
    for i in range(users):
        name = f"u{i}"
        pending = PendingSignIn(
            name=name, key=name, token=i.to_bytes(8, "big"), req_id=1, at=h.now
        )
        addr = (f"10.{i >> 16}.{(i >> 8) & 255}.{i & 255}", 4000)
        assert h.core.sign_ins.register(pending, i.to_bytes(32, "big"), addr, h.now) is not None
    h.core.events()


def test_a_request_extends_a_user_by_the_timeout_of_the_directorys_size_now() -> None:
    """expires_at keeps the lifetime between requests: a join or a leave changes it."""
    timings = Timings(max_heartbeats_per_s=2)
    h = Harness(timings)
    table = h.core.table
    factor = timings.client_timeout_s / timings.heartbeat_interval_s
    _fill(h, 3)
    seen = set()
    for users in (3, 10, 4):
        for i in range(len(table), users):  # more join
            pending = PendingSignIn(name=f"v{i}", key=f"v{i}", token=b"v" * 8, req_id=1, at=h.now)
            assert h.core.sign_ins.register(pending, b"v" * 31 + bytes([i]), ("10.9.0.1", i), h.now)
        while len(table) > users:  # some leave
            table.remove(next(iter(table.users.values())), UserTrigger.BYE)
        lifetime = table.heartbeat_interval_s() * factor
        assert table.expires_at(100.0) == 100.0 + lifetime
        assert table.expires_at(101.0) == 101.0 + lifetime
        seen.add(lifetime)
    assert len(seen) == 3


@pytest.mark.parametrize("users", [10, 25_000])
def test_heartbeat_interval_stretches_with_directory_size(users: int) -> None:
    timings = Timings(max_heartbeats_per_s=10_000)
    h = Harness(timings)
    _fill(h, users - 1)
    alice = h.client(A)
    welcome = alice.handshake("alice")
    alice.confirm()
    expected = max(T.heartbeat_interval_s, users / 10_000)
    assert h.core.heartbeat_interval_s() == pytest.approx(expected)
    assert isinstance(welcome, Welcome) and welcome.heartbeat_ms == round(expected * 1000)
    [ack] = alice.ask(Heartbeat(token=welcome.token))
    assert isinstance(ack, HeartbeatAck) and ack.heartbeat_ms == round(expected * 1000)


def test_a_sign_in_not_confirmed_by_a_transport_datagram_never_registers() -> None:
    h = Harness()
    alice, bob = h.client(A), h.client(B)
    welcome = alice.handshake("alice")  # WELCOME received, but no TRANSPORT datagram follows
    assert isinstance(welcome, Welcome)
    tb = bob.sign_in("bob")
    assert bob.ask(Lookup(token=tb, req_id=1, name="alice")) == [
        LookupReply(req_id=1, name="alice", addr=None)
    ]
    assert h.core.events() == [UserJoined(name="bob", addr=B)]
    assert set(h.core.users) == {"bob"} and h.core.stats.sign_ins == 1
    # The session from the WELCOME stays unconfirmed past its timeout; a late keepalive finds
    # nothing (bob heartbeats meanwhile, to stay signed in).
    for _ in range(int(UNCONFIRMED_SESSION_TIMEOUT_S / T.heartbeat_interval_s) + 2):
        h.advance(T.heartbeat_interval_s)
        assert bob.ask(Heartbeat(token=tb)) != []
    malformed = h.core.stats.malformed
    assert alice.session is not None
    assert h.send(alice.session.encrypt(b"", h.now), A) == []
    assert h.core.stats.malformed == malformed + 1
    assert set(h.core.users) == {"bob"} and h.core.events() == []


def test_a_replayed_initiation_is_dropped_and_does_not_disturb_the_user() -> None:
    h = Harness()
    alice = h.client(A)
    ta = alice.sign_in("alice")
    [init] = alice.initiations
    stats = h.core.stats
    for src in (A, C):  # the same bytes again, from alice's address or another
        before = stats.malformed
        assert h.send(init, src) == []
        assert stats.malformed == before + 1
    # Recorded requests replayed: no second answer either.
    lookup = alice.seal(Lookup(token=ta, req_id=2, name="alice"))
    assert len(h.send(lookup, A)) == 1
    assert h.send(lookup, C) == [] and h.send(lookup, A) == []
    assert stats.malformed == 4
    assert alice.ask(Heartbeat(token=ta)) == [HeartbeatAck(token=ta, heartbeat_ms=1500)]
    assert h.core.users["alice"].addr == A and stats.sign_ins == 1
    assert h.core.events() == [UserJoined(name="alice", addr=A)]


def test_no_reply_to_an_unproven_address_is_larger_than_what_it_sent() -> None:
    h = Harness()
    sizes: list[tuple[int, int]] = []  # (sent, largest reply) per exchange

    def exchange(datagram: bytes, src: Addr) -> list[tuple[bytes, Addr]]:
        out = h.send(datagram, src)
        assert all(to == src for _, to in out)
        sizes.append((len(datagram), max((len(d) for d, _ in out), default=0)))
        return out

    # The key: KEY_REPLY (41 bytes) to a KEY_REQUEST (64).
    alice = h.client(A)
    [(reply, _)] = exchange(alice.endpoint.request_key(SERVER), A)
    got = alice.endpoint.receive(reply, SERVER, h.now)
    assert isinstance(got, KeyReceived)
    alice.server_key = got.key
    # The response to an initiation: padded as ClientCore pads it, and not padded at all.
    for pad_to in (HANDSHAKE_INIT_MIN_BYTES, 0):
        for name in ("alice", "x" * 32, "no spaces"):  # WELCOME, long name, REFUSED
            [(response, _)] = exchange(alice.initiation(name, pad_to=pad_to), A)
            assert response[0] == PacketType.HANDSHAKE_RESPONSE
    # A PONG to a PING.
    exchange(encode(Ping(nonce=7)), A)
    # Under load, a COOKIE_REPLY to an initiation without a cookie; retried with it, signed in.
    for _ in range(int(HANDSHAKES_PER_S_UNDER_LOAD)):
        assert h.send(bytes([PacketType.HANDSHAKE_INIT]) + bytes(300), C) == []
    bob = h.client(B)
    bob.learn_key()
    [(cookie, _)] = exchange(bob.initiation("bob", pad_to=0), B)
    assert cookie[0] == PacketType.COOKIE_REPLY and h.core.stats.cookies == 1
    assert isinstance(bob.endpoint.receive(cookie, SERVER, h.now), RetryWithCookie)
    [(response, _)] = exchange(bob.initiation("bob", pad_to=0), B)
    assert isinstance(bob.complete(response), Welcome)
    assert all(reply <= sent for sent, reply in sizes), sizes
    # Until the first TRANSPORT datagram proves the address, nothing else goes there.
    h.core.shutdown(h.now)
    assert h.core.datagrams_to_send(h.now) == []
    bob.confirm()
    assert "bob" in h.core.users


# --- known bugs ----------------------------------------------------------------------------------


def test_shutdown_survives_a_user_whose_session_expired() -> None:
    h = Harness()
    alice = h.client(A)
    ta = alice.sign_in("alice")
    tb = h.sign_in("bob", B)
    # Alice keeps heartbeating on her first session and never rekeys (her rekeys were lost):
    # the session is 180 s old while she is still signed in.
    while h.now + T.heartbeat_interval_s < 180.0:
        h.advance(T.heartbeat_interval_s)
        assert alice.ask(Heartbeat(token=ta)) != []
        assert h.clients[B].ask(Heartbeat(token=tb)) != []
    h.advance(1.5)
    assert "alice" in h.core.users
    h.core.shutdown(h.now)  # no working session for alice, nor bob: nothing to send them
    assert h.core.datagrams_to_send(h.now) == []


def test_an_unconfirmed_sign_in_does_not_hold_its_name_after_its_session_expired() -> None:
    h = Harness()
    squatter = h.client(C)
    assert isinstance(squatter.handshake("alice"), Welcome)  # never confirmed
    for _ in range(int(UNCONFIRMED_SESSION_TIMEOUT_S) * 4):
        h.advance(1.0)
    alice = h.client(A)  # alice's own key, later
    assert isinstance(alice.handshake("alice"), Welcome)


def test_handshakes_from_new_keys_do_not_evict_a_signed_in_users_session() -> None:
    h = Harness()
    h.core.secure.max_peers = 8  # MAX_SECURE_PEERS, shrunk so the test needs 8 keys, not 262144
    alice = h.client(A)
    ta = alice.sign_in("alice")
    for i in range(8):
        assert isinstance(h.client((f"10.9.0.{i}", 1000)).handshake("no spaces"), Refused)
    assert "alice" in h.core.users
    assert alice.ask(Heartbeat(token=ta)) == [HeartbeatAck(token=ta, heartbeat_ms=1500)]


def test_a_request_from_a_user_timed_out_is_answered_unknown_session() -> None:
    """A client paused past the timeout comes back on its still-working session: the server
    says it no longer knows it (UNKNOWN_SESSION, with the token), at once and no larger than
    the request, instead of dropping its heartbeats until the client gives up on the server."""
    h = Harness()
    bob = h.client(B)
    token = bob.sign_in("bob")
    h.advance(T.client_timeout_s + T.sweep_interval_s + 0.1)
    assert "bob" not in h.core.users
    request = bob.seal(Heartbeat(token=token))
    out = h.send(request, B)
    assert [bob.open(d) for d, _ in out] == [UnknownSession(token=token)]
    assert all(len(d) <= len(request) for d, _ in out)
    assert h.core.stats.unknown_session == 1
