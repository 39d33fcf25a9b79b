"""ServerCore on a fake clock: sign-in, uniqueness, tokens, listing, expiry, shutdown."""

from __future__ import annotations

import itertools

import pytest

from chat_protocol.codec import decode, encode
from chat_protocol.const import LIST_PAGE_MAX_BYTES, Timings
from chat_protocol.events import UserJoined, UserLeft
from chat_protocol.messages import (
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
from chat_protocol.server import ServerCore

T = Timings()


class Harness:
    def __init__(self, timings: Timings = T) -> None:
        counter = itertools.count(1)
        self.core = ServerCore(
            timings=timings, random_bytes=lambda n: next(counter).to_bytes(n, "big")
        )
        self.now = 0.0

    def ask(self, msg: Message, addr: Addr) -> list[tuple[Message, Addr]]:
        self.core.receive_datagram(encode(msg), addr, self.now)
        return [(decode(d), a) for d, a in self.core.datagrams_to_send(self.now)]

    def sign_in(self, name: str, addr: Addr, req_id: int = 7) -> bytes:
        [(reply, to)] = self.ask(Hello(req_id=req_id, name=name), addr)
        assert isinstance(reply, Welcome) and to == addr and reply.req_id == req_id
        return reply.token

    def advance(self, seconds: float) -> None:
        self.now += seconds
        self.core.handle_timer(self.now)


A: Addr = ("10.0.0.1", 4000)
B: Addr = ("10.0.0.2", 4000)
C: Addr = ("10.0.0.3", 4000)


def test_sign_in_and_lookup() -> None:
    h = Harness()
    ta = h.sign_in("alice", A)
    h.sign_in("Bob", B)
    [(reply, to)] = h.ask(Lookup(token=ta, req_id=3, name="bob"), A)
    assert reply == LookupReply(req_id=3, name="Bob", addr=B) and to == A
    [(reply, _)] = h.ask(Lookup(token=ta, req_id=4, name="zed"), A)
    assert reply == LookupReply(req_id=4, name="zed", addr=None)
    assert [type(e) for e in h.core.events()] == [UserJoined, UserJoined]


def test_duplicate_name_refused_case_insensitively_and_first_user_unaffected() -> None:
    h = Harness()
    ta = h.sign_in("alice", A)
    [(reply, to)] = h.ask(Hello(req_id=9, name="ALICE"), B)
    assert reply == Refused(req_id=9, reason=RefuseReason.NAME_TAKEN) and to == B
    [(reply, _)] = h.ask(Lookup(token=ta, req_id=1, name="alice"), A)
    assert isinstance(reply, LookupReply) and reply.addr == A


def test_retransmitted_hello_gets_the_same_welcome() -> None:
    h = Harness()
    t1 = h.sign_in("alice", A, req_id=5)
    t2 = h.sign_in("alice", A, req_id=5)
    assert t1 == t2 and len(h.core.users) == 1


def test_invalid_name_refused() -> None:
    h = Harness()
    [(reply, _)] = h.ask(Hello(req_id=1, name="no spaces"), A)
    assert reply == Refused(req_id=1, reason=RefuseReason.NAME_INVALID)


def test_requests_need_the_token_from_the_signed_in_address() -> None:
    h = Harness()
    ta = h.sign_in("alice", A)
    # Right token, wrong address: dropped silently (someone replaying alice's token).
    assert h.ask(Bye(token=ta, req_id=1), C) == []
    assert h.core.stats.unauthenticated == 1 and "alice" in h.core.users
    # Unknown token: a same-size UNKNOWN_SESSION, nothing else changes.
    [(reply, _)] = h.ask(Bye(token=b"\xff" * 8, req_id=1), C)
    assert reply == UnknownSession(token=b"\xff" * 8)
    assert "alice" in h.core.users
    [(reply, _)] = h.ask(Bye(token=ta, req_id=2), A)
    assert reply == ByeAck(req_id=2) and "alice" not in h.core.users


def test_malformed_and_unexpected_datagrams_are_counted_not_fatal() -> None:
    h = Harness()
    h.core.receive_datagram(b"garbage", A, 0.0)
    h.core.receive_datagram(
        encode(
            Data(
                session=1, stream=1, base=0, seq=0, msg_id=1, offset=0, total=1, sender="a",
                payload=b"x",
            )
        ),
        A,
        0.0,
    )
    assert h.core.datagrams_to_send(h.now) == []
    assert h.core.stats.malformed == 1 and h.core.stats.unexpected == 1


def test_heartbeats_keep_a_user_and_silence_removes_it() -> None:
    h = Harness()
    ta = h.sign_in("alice", A)
    h.sign_in("bob", B)
    for _ in range(10):
        h.advance(T.heartbeat_interval_s)
        [(ack, _)] = h.ask(Heartbeat(token=ta), A)
        assert isinstance(ack, HeartbeatAck) and ack.heartbeat_ms == 1500
    assert set(h.core.users) == {"alice"}  # bob went silent 15 s ago
    left = [e for e in h.core.events() if isinstance(e, UserLeft)]
    assert [(e.name, e.timed_out) for e in left] == [("bob", True)]


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
    tokens = [h.sign_in(f"user{i:04d}-{'x' * 20}", ("10.1.0.1", 1000 + i)) for i in range(300)]
    seen: list[str] = []
    after = ""
    while True:
        h.core.receive_datagram(
            encode(ListUsers(token=tokens[0], req_id=1, after=after)), ("10.1.0.1", 1000), 0.0
        )
        [(raw, _)] = h.core.datagrams_to_send(h.now)
        assert len(raw) <= LIST_PAGE_MAX_BYTES
        page = decode(raw)
        assert isinstance(page, ListReply) and page.total == 300
        seen.extend(page.names)
        if not page.more:
            break
        after = page.names[-1]
    assert seen == sorted(seen) and len(seen) == len(set(seen)) == 300


def test_shutdown_notifies_every_user_with_their_token() -> None:
    h = Harness()
    ta, tb = h.sign_in("alice", A), h.sign_in("bob", B)
    h.core.shutdown()
    out = [(decode(d), a) for d, a in h.core.datagrams_to_send(h.now)]
    assert out.count((Shutdown(token=ta), A)) == T.shutdown_copies
    assert out.count((Shutdown(token=tb), B)) == T.shutdown_copies


def test_ping_needs_no_sign_in_and_reply_is_smaller() -> None:
    h = Harness()
    h.sign_in("alice", A)
    h.core.receive_datagram(encode(Ping(nonce=42)), C, 0.0)
    [(raw, to)] = h.core.datagrams_to_send(h.now)
    assert decode(raw) == Pong(nonce=42, users=1) and to == C
    assert len(raw) <= len(encode(Ping(nonce=42)))


@pytest.mark.parametrize("users", [10, 50_000])
def test_heartbeat_interval_stretches_with_directory_size(users: int) -> None:
    h = Harness(Timings(max_heartbeats_per_s=10_000))
    for i in range(users):
        h.core.receive_datagram(
            encode(Hello(req_id=1, name=f"u{i}")), (f"10.{i >> 16}.{(i >> 8) & 255}.1", i & 255), 0
        )
    h.core.datagrams_to_send(h.now)
    expected = max(T.heartbeat_interval_s, users / 10_000)
    assert h.core.heartbeat_interval_s() == pytest.approx(expected)
