"""Codec: every message round-trips; any bytes either decode or raise MalformedDatagram."""

from __future__ import annotations

import contextlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from chat_protocol.codec import decode, encode
from chat_protocol.const import MAX_DATAGRAM_BYTES, MIN_HELLO_BYTES
from chat_protocol.errors import MalformedDatagram
from chat_protocol.messages import (
    Ack,
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
    Ping,
    Pong,
    Refused,
    RefuseReason,
    Shutdown,
    UnknownSession,
    Welcome,
)

u32 = st.integers(0, 2**32 - 1)
token = st.binary(min_size=8, max_size=8)
name = st.from_regex(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,31}", fullmatch=True)
ipv4 = st.ip_addresses(v=4).map(str)
ipv6 = st.ip_addresses(v=6).map(str)
addr = st.tuples(st.one_of(ipv4, ipv6), st.integers(0, 65535))


@st.composite
def data_msgs(draw: st.DrawFn) -> Data:
    payload = draw(st.binary(min_size=1, max_size=1200))
    offset = draw(st.integers(0, 10**6))
    total = offset + len(payload) + draw(st.integers(0, 1000))
    seq = draw(u32)
    return Data(
        session=draw(u32),
        stream=draw(u32),
        base=draw(st.integers(0, seq)),
        seq=seq,
        offset=offset,
        total=total,
        sender=draw(name),
        payload=payload,
    )


ranges = st.lists(
    st.tuples(st.integers(0, 2**31), st.integers(1, 2**31)).map(lambda r: (r[0], r[0] + r[1])),
    max_size=32,
).map(tuple)

messages = st.one_of(
    st.builds(Hello, req_id=u32, name=name),
    st.builds(Welcome, req_id=u32, token=token, heartbeat_ms=u32),
    st.builds(Refused, req_id=u32, reason=st.sampled_from(RefuseReason)),
    st.builds(Lookup, token=token, req_id=u32, name=name),
    st.builds(LookupReply, req_id=u32, name=name, addr=st.none() | addr),
    st.builds(ListUsers, token=token, req_id=u32, after=st.just("") | name),
    st.builds(
        ListReply,
        req_id=u32,
        total=u32,
        more=st.booleans(),
        names=st.lists(name, max_size=20).map(tuple),
    ),
    st.builds(Heartbeat, token=token),
    st.builds(HeartbeatAck, token=token, heartbeat_ms=u32),
    st.builds(Bye, token=token, req_id=u32),
    st.builds(ByeAck, req_id=u32),
    st.builds(Shutdown, token=token),
    st.builds(UnknownSession, token=token),
    st.builds(Ping, nonce=u32),
    st.builds(Pong, nonce=u32, users=u32),
    data_msgs(),
    st.builds(Ack, session=u32, stream=u32, seq=u32, complete=st.just(False), ranges=ranges),
    st.builds(Ack, session=u32, stream=u32, seq=u32, complete=st.just(True), ranges=st.just(())),
)


@given(messages)
@settings(max_examples=2000)
def test_round_trip(msg: object) -> None:
    raw = encode(msg)  # type: ignore[arg-type]
    assert len(raw) <= MAX_DATAGRAM_BYTES
    assert decode(raw) == msg


@given(st.binary(max_size=1500))
@settings(max_examples=3000)
def test_random_bytes_never_crash(raw: bytes) -> None:
    with contextlib.suppress(MalformedDatagram):
        decode(raw)


@given(messages, st.data())
@settings(max_examples=2000)
def test_truncated_or_corrupted_valid_messages(msg: object, data: st.DataObject) -> None:
    raw = bytearray(encode(msg))  # type: ignore[arg-type]
    cut = data.draw(st.integers(0, len(raw)))
    flips = data.draw(st.lists(st.tuples(st.integers(0, len(raw) - 1), st.integers(0, 255))))
    for pos, val in flips:
        raw[pos] = val
    for candidate in (bytes(raw[:cut]), bytes(raw)):
        with contextlib.suppress(MalformedDatagram):
            decode(candidate)


@pytest.mark.parametrize(
    ("raw", "why"),
    [
        (b"", "truncated"),
        (b"PC", "truncated"),
        (b"XX\x01\x01" + bytes(60), "bad magic"),
        (b"PC\x09\x01" + bytes(60), "unsupported version"),
        (b"PC\x01\x7f", "unknown kind"),
        (b"PC\x01\x01\x00\x00\x00\x01\x03bob", "hello not padded"),
        (b"PC\x01\x08" + bytes(7), "truncated"),
        (b"PC\x01\x08" + bytes(9), "trailing bytes"),
        (b"PC\x01\x10" + bytes(MAX_DATAGRAM_BYTES), "oversized"),
    ],
)
def test_malformed_reasons(raw: bytes, why: str) -> None:
    with pytest.raises(MalformedDatagram, match=why):
        decode(raw)


def test_hello_is_padded_so_replies_never_amplify() -> None:
    hello = encode(Hello(req_id=1, name="a"))
    assert len(hello) == MIN_HELLO_BYTES
    biggest_reply = max(
        len(encode(Welcome(req_id=1, token=b"x" * 8, heartbeat_ms=1500))),
        len(encode(Refused(req_id=1, reason=RefuseReason.NAME_TAKEN))),
    )
    assert biggest_reply <= len(hello)
    assert len(encode(Pong(nonce=1, users=5))) <= len(encode(Ping(nonce=1)))
    assert len(encode(UnknownSession(token=b"t" * 8))) <= len(encode(Heartbeat(token=b"t" * 8)))


def test_data_chunk_outside_message_is_rejected() -> None:
    raw = encode(
        Data(session=1, stream=1, base=0, seq=0, offset=10, total=5, sender="a", payload=b"xyz")
    )
    with pytest.raises(MalformedDatagram, match="outside"):
        decode(raw)
