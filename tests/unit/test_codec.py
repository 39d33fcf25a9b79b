"""Codec: every valid message round-trips; any bytes either decode or raise MalformedDatagram;
a message with a field the wire cannot carry raises InvalidMessage, never a bare struct.error."""

from __future__ import annotations

import contextlib
import dataclasses
import struct
from collections.abc import Callable
from pathlib import Path

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

import chat_protocol
from budget import examples
from chat_protocol.const import (
    ACK_HEADER_BYTES,
    ACK_PN_RANGE_BYTES,
    ACK_RANGE_BYTES,
    CHUNK_PAYLOAD_BYTES,
    LOOKUP_BYTES,
    LOOKUP_REPLY_BYTES,
    MAX_ACK_PN_RANGES,
    MAX_ACK_RANGES,
    MAX_DATAGRAM_BYTES,
    MAX_LOCAL_ENDPOINTS,
    MAX_MESSAGE_BYTES,
    MIN_HELLO_BYTES,
    NAME_MAX_CHARS,
    PING_BYTES,
    TOKEN_BYTES,
)
from chat_protocol.errors import InvalidMessage, MalformedDatagram
from chat_protocol.wire.codec import decode, encode
from chat_protocol.wire.messages import (
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
    Message,
    Ping,
    Pong,
    Punch,
    Refused,
    RefuseReason,
    Relay,
    Relayed,
    Shutdown,
    UnknownSession,
    Welcome,
)

U32_MAX = 2**32 - 1
U64_MAX = 2**64 - 1
u32 = st.integers(0, U32_MAX)
u64 = st.integers(0, U64_MAX)
token = st.binary(min_size=TOKEN_BYTES, max_size=TOKEN_BYTES)
name = st.from_regex(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,31}", fullmatch=True)
hello_name = name | st.text(max_size=80).filter(lambda s: len(s.encode("utf-8")) <= 255)
"""HELLO carries any text: the server, not the codec, refuses invalid names."""
ipv4 = st.ip_addresses(v=4).map(str)
ipv6 = st.ip_addresses(v=6).map(str)
addr = st.tuples(st.one_of(ipv4, ipv6), st.integers(0, 65535))
endpoints = st.lists(addr, max_size=MAX_LOCAL_ENDPOINTS).map(tuple)
key32 = st.binary(min_size=32, max_size=32)


@st.composite
def data_msgs(draw: st.DrawFn) -> Data:
    payload = draw(st.binary(min_size=1, max_size=CHUNK_PAYLOAD_BYTES))
    total = draw(st.integers(len(payload), MAX_MESSAGE_BYTES))
    offset = draw(st.integers(0, total - len(payload)))
    seq = draw(u32)
    return Data(
        session=draw(u32),
        stream=draw(u32),
        base=draw(st.integers(0, seq)),
        seq=seq,
        pn=draw(u64),
        msg_id=draw(u64),
        offset=offset,
        total=total,
        sender=draw(name),
        payload=payload,
    )


ack_range = st.integers(0, U32_MAX - 1).flatmap(
    lambda start: st.tuples(st.just(start), st.integers(start + 1, U32_MAX))
)
"""A half-open [start, end) range that fits the wire: end is at most 2**32 - 1."""
ranges = st.lists(ack_range, max_size=MAX_ACK_RANGES).map(tuple)
pn_range = st.integers(0, U64_MAX - 1).flatmap(
    lambda start: st.tuples(st.just(start), st.integers(start + 1, U64_MAX))
)
pn_ranges = st.lists(pn_range, max_size=MAX_ACK_PN_RANGES).map(tuple)

messages = st.one_of(
    st.builds(Hello, req_id=u32, name=hello_name, endpoints=endpoints),
    st.builds(Welcome, req_id=u32, token=token, heartbeat_ms=u32, observed=st.none() | addr),
    st.builds(Refused, req_id=u32, reason=st.sampled_from(RefuseReason)),
    st.builds(Lookup, token=token, req_id=u32, name=name, punch=st.booleans()),
    st.builds(LookupReply, req_id=u32, name=name, addr=st.none(), key=st.just(b"")),
    st.builds(LookupReply, req_id=u32, name=name, addr=addr, key=key32, local=endpoints),
    st.builds(Punch, token=token, name=name, key=key32, addr=addr, local=endpoints),
    st.builds(Relay, token=token, to=key32, datagram=st.binary(min_size=1, max_size=1327)),
    st.builds(Relayed, token=token, sender=key32, datagram=st.binary(min_size=1, max_size=1327)),
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
    st.builds(Pong, nonce=u32),
    data_msgs(),
    st.builds(
        Ack,
        session=u32,
        stream=u32,
        seq=u32,
        complete=st.just(False),
        ranges=ranges,
        ack_delay_us=u32,
        pns=pn_ranges,
    ),
    st.builds(
        Ack,
        session=u32,
        stream=u32,
        seq=u32,
        complete=st.just(True),
        ranges=st.just(()),
        ack_delay_us=u32,
        pns=pn_ranges,
    ),
)

EDGE_ACK = Ack(session=U32_MAX, stream=0, seq=U32_MAX, complete=False, ranges=((0, U32_MAX),))
EDGE_DATA = Data(
    session=U32_MAX,
    stream=U32_MAX,
    base=U32_MAX,
    seq=U32_MAX,
    pn=U64_MAX,
    msg_id=U64_MAX,
    offset=MAX_MESSAGE_BYTES - CHUNK_PAYLOAD_BYTES,
    total=MAX_MESSAGE_BYTES,
    sender="z" * NAME_MAX_CHARS,
    payload=b"\xff" * CHUNK_PAYLOAD_BYTES,
)


@given(messages)
@settings(max_examples=examples(2000))
@example(EDGE_ACK)  # the largest range end the wire carries (2**32 broke the old strategy)
@example(EDGE_DATA)
def test_round_trip(msg: Message) -> None:
    raw = encode(msg)
    assert len(raw) <= MAX_DATAGRAM_BYTES
    assert decode(raw) == msg


@given(st.binary(max_size=1500))
@settings(max_examples=examples(3000))
def test_random_bytes_never_crash(raw: bytes) -> None:
    with contextlib.suppress(MalformedDatagram):
        decode(raw)


@given(messages, st.data())
@settings(max_examples=examples(2000))
def test_truncated_or_corrupted_valid_messages(msg: Message, data: st.DataObject) -> None:
    raw = bytearray(encode(msg))
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
        (b"PC\x01\x01\x00\x00\x00\x01\x03bob\x00" + b"\x01" * 59, "padding not zero"),
        (b"PC\x01\x01\x00\x00\x00\x01\x03bob\x04" + bytes(59), "too many endpoints"),
        (b"PC\x01\x01\x00\x00\x00\x01\x03bob\x01\x00" + bytes(58), "empty endpoint"),
        (b"PC\x01\x08" + bytes(7), "truncated"),
        (b"PC\x01\x08" + bytes(9), "trailing bytes"),
        (b"PC\x01\x0e" + bytes(8), "ping not padded"),
        (b"PC\x01\x03" + bytes(4) + b"\x09", "unknown refusal reason"),
        (
            (b"PC\x01\x05" + bytes(4) + b"\x03bob\x05").ljust(LOOKUP_REPLY_BYTES, b"\0"),
            "unknown address family",
        ),
        (b"PC\x01\x04" + bytes(13) + b"\x03bob", "truncated"),  # a LOOKUP not padded
        (
            (b"PC\x01\x04" + bytes(13) + b"\x03bob").ljust(LOOKUP_BYTES - 1, b"\0") + b"\1",
            "padding not zero",
        ),
        ((b"PC\x01\x04" + bytes(12) + b"\x02\x03bob").ljust(LOOKUP_BYTES, b"\0"), "flags"),
        (b"PC\x01\x05" + bytes(4) + b"\x03bob\x00", "truncated"),  # a reply not padded
        (
            (b"PC\x01\x05" + bytes(4) + b"\x03bob").ljust(LOOKUP_REPLY_BYTES - 1, b"\0") + b"\1",
            "padding not zero",
        ),
        (b"PC\x01\x12" + bytes(40) + b"\x03bob\x00\x00", "without an address"),
        (b"PC\x01\x07" + bytes(8) + b"\x02\x00\x00", "bad flag"),
        (b"PC\x01\x11" + bytes(12) + b"\x02" + bytes(4) + b"\x00\x00", "bad ack"),
        (b"PC\x01\x11" + bytes(12) + b"\x00" + bytes(4) + b"\x09\x00", "bad ack"),
        (b"PC\x01\x11" + bytes(17) + b"\x00\x01" + bytes(8), "empty ack range"),
        (b"PC\x01\x11" + bytes(17) + b"\x01\x00" + bytes(16), "empty ack range"),
        (b"PC\x01\x10" + bytes(MAX_DATAGRAM_BYTES), "oversized"),
    ],
)
def test_malformed_reasons(raw: bytes, why: str) -> None:
    with pytest.raises(MalformedDatagram, match=why):
        decode(raw)


PROTOCOL_MD = Path(__file__).parents[2] / "docs" / "PROTOCOL.md"


def documented_sizes() -> dict[str, str]:
    """Message name -> its size as docs/PROTOCOL.md's message table gives it."""
    doc = PROTOCOL_MD.read_text()
    return {
        cells[2]: cells[-2]
        for line in doc.splitlines()
        if line.startswith("| 0x")
        for cells in [[c.strip() for c in line.split("|")]]
    }


def test_hello_is_padded_so_replies_never_amplify() -> None:
    hello = encode(Hello(req_id=1, name="a"))
    assert len(hello) == MIN_HELLO_BYTES
    biggest_reply = max(
        len(encode(Welcome(req_id=1, token=b"x" * 8, heartbeat_ms=1, observed=("::1", 1)))),
        len(encode(Refused(req_id=1, reason=RefuseReason.NAME_TAKEN))),
    )
    assert biggest_reply <= len(hello)
    assert len(encode(Ping(nonce=1))) == PING_BYTES
    assert len(encode(Pong(nonce=1))) <= PING_BYTES
    assert len(encode(UnknownSession(token=b"t" * 8))) <= len(encode(Heartbeat(token=b"t" * 8)))


def test_sizes_match_const_and_docs() -> None:
    """const.py's sizes (used by transfer.py's amplification bound) and the PROTOCOL.md table."""
    ack = Ack(session=1, stream=1, seq=1, complete=True, ranges=())
    assert len(encode(ack)) == ACK_HEADER_BYTES == 23
    two = dataclasses.replace(ack, complete=False, ranges=((0, 1), (2, 3)), pns=((5, 9),))
    assert len(encode(two)) == ACK_HEADER_BYTES + ACK_PN_RANGE_BYTES + 2 * ACK_RANGE_BYTES
    most = dataclasses.replace(
        ack,
        complete=False,
        ranges=((0, 1),) * MAX_ACK_RANGES,
        pns=((0, 1),) * MAX_ACK_PN_RANGES,
        ack_delay_us=U32_MAX,
    )
    assert len(encode(most)) == 407
    assert decode(encode(most)) == most
    smallest = Data(
        session=1, stream=1, base=0, seq=0, msg_id=0, offset=0, total=1, sender="a", payload=b"x"
    )
    assert len(encode(smallest)) == 47
    assert len(encode(EDGE_DATA)) == 1277
    # The smallest DATA leaves room for a packet-number range and a byte range in its ACK: an
    # ACK never amplifies.
    assert len(encode(smallest)) >= ACK_HEADER_BYTES + ACK_PN_RANGE_BYTES + ACK_RANGE_BYTES
    # ... and docs/PROTOCOL.md's table says the same sizes.
    size = documented_sizes()
    assert size["DATA"] == f"{len(encode(smallest))}–{len(encode(EDGE_DATA))}"
    assert size["ACK"] == f"{len(encode(ack))}–{len(encode(most))}"


@pytest.mark.guard("lookup-padding", "lookup-reply-padding")
def test_lookup_and_its_reply_are_one_size_whatever_the_name() -> None:
    """Issue 19, point 6: the size of a LOOKUP (and so of the TRANSPORT datagram carrying it)
    does not give away the length of the name asked; nor does its answer's, nor whether the
    user was found, nor the address family."""
    token = b"t" * TOKEN_BYTES
    short, long = "a", "z" * NAME_MAX_CHARS
    sizes = {len(encode(Lookup(token=token, req_id=1, name=n))) for n in (short, long)}
    assert sizes == {LOOKUP_BYTES}
    key = b"k" * 32
    replies = [
        LookupReply(req_id=1, name=short, addr=None),
        LookupReply(req_id=1, name=long, addr=None),
        LookupReply(req_id=1, name=short, addr=("10.0.0.1", 1), key=key),
        LookupReply(req_id=1, name=long, addr=("2001:db8::1", 65535), key=key),
        LookupReply(
            req_id=1,
            name=long,
            addr=("2001:db8::1", 65535),
            key=key,
            local=(("fd00::1", 1),) * MAX_LOCAL_ENDPOINTS,
        ),
    ]
    assert {len(encode(r)) for r in replies} == {LOOKUP_REPLY_BYTES}
    assert [decode(encode(r)) for r in replies] == replies


def test_protocol_md_gives_the_padded_sizes() -> None:
    """docs/PROTOCOL.md's message table and limits say what the codec makes."""
    size = documented_sizes()
    assert size["LOOKUP"] == f"{LOOKUP_BYTES} (padded)"
    assert size["LOOKUP_REPLY"] == f"{LOOKUP_REPLY_BYTES} (padded)"
    assert size["PONG"] == str(len(encode(Pong(nonce=1))))
    doc = PROTOCOL_MD.read_text()
    assert f"| `LOOKUP_BYTES`, `LOOKUP_REPLY_BYTES` | {LOOKUP_BYTES}, {LOOKUP_REPLY_BYTES} |" in doc


def test_data_chunk_outside_message_is_rejected() -> None:
    raw = bytearray(encode(dataclasses.replace(EDGE_DATA, offset=0, total=CHUNK_PAYLOAD_BYTES)))
    raw[36:40] = (1).to_bytes(4, "big")  # offset: after the header, 4 x u32, u64 pn and msg_id
    with pytest.raises(MalformedDatagram, match="outside"):
        decode(bytes(raw))


# --- local errors: InvalidMessage --------------------------------------------------------------

INT_FIELDS: dict[type, dict[str, int]] = {
    Hello: {"req_id": 32},
    Welcome: {"req_id": 32, "heartbeat_ms": 32},
    Refused: {"req_id": 32},
    Lookup: {"req_id": 32},
    LookupReply: {"req_id": 32},
    ListUsers: {"req_id": 32},
    ListReply: {"req_id": 32, "total": 32},
    HeartbeatAck: {"heartbeat_ms": 32},
    Bye: {"req_id": 32},
    ByeAck: {"req_id": 32},
    Ping: {"nonce": 32},
    Pong: {"nonce": 32},
    Data: {
        "session": 32,
        "stream": 32,
        "base": 32,
        "seq": 32,
        "msg_id": 64,
        "offset": 32,
        "total": 32,
    },
    Ack: {"session": 32, "stream": 32, "seq": 32},
}
"""Every integer field and its width on the wire (docs/PROTOCOL.md)."""


@given(messages, st.data())
@settings(max_examples=examples(500))
def test_integer_field_out_of_range_raises_invalid_message(
    msg: Message, data: st.DataObject
) -> None:
    fields = INT_FIELDS.get(type(msg))
    if not fields:
        return
    field = data.draw(st.sampled_from(sorted(fields)))
    bad = data.draw(st.integers(max_value=-1) | st.integers(min_value=1 << fields[field]))
    with pytest.raises(InvalidMessage):  # a struct.error (or anything else) fails the test
        encode(dataclasses.replace(msg, **{field: bad}))  # type: ignore[arg-type]


@given(st.lists(ack_range, min_size=1, max_size=MAX_ACK_RANGES), st.integers(0, 2**16))
def test_ack_range_past_u32_raises_invalid_message(rs: list[tuple[int, int]], i: int) -> None:
    i %= len(rs)
    rs[i] = (rs[i][0], 2**32)  # seeds 65537 and 123457 drew this and got a bare struct.error
    with pytest.raises(InvalidMessage, match="outside u32"):
        encode(Ack(session=1, stream=1, seq=1, complete=False, ranges=tuple(rs)))


VALID_DATA = Data(
    session=1, stream=1, base=0, seq=0, msg_id=0, offset=0, total=3, sender="a", payload=b"abc"
)
VALID_ACK = Ack(session=1, stream=1, seq=0, complete=False, ranges=((0, 3),))


@pytest.mark.parametrize(
    ("msg", "why"),
    [
        (dataclasses.replace(VALID_DATA, payload=b""), "empty payload"),
        (dataclasses.replace(VALID_DATA, base=1), "base 1 above seq 0"),
        (dataclasses.replace(VALID_DATA, total=2), "outside a message"),
        (dataclasses.replace(VALID_DATA, offset=1), "outside a message"),
        (dataclasses.replace(VALID_DATA, total=MAX_MESSAGE_BYTES + 1), "outside a message"),
        (dataclasses.replace(VALID_DATA, sender="no spaces"), "invalid user name"),
        (dataclasses.replace(VALID_DATA, msg_id=2**64), "msg_id=18446744073709551616"),
        (dataclasses.replace(VALID_DATA, payload=b"x" * 1400, total=1400), "more than 1400"),
        (dataclasses.replace(VALID_ACK, ranges=((0, 1),) * 33), "33 ranges"),
        (dataclasses.replace(VALID_ACK, ranges=((5, 5),)), "empty range"),
        (dataclasses.replace(VALID_ACK, ranges=((-1, 5),)), "outside u32"),
        (dataclasses.replace(VALID_ACK, seq=-1), "seq=-1 is outside u32"),
        (Heartbeat(token=b"short"), "token of 5 bytes"),
        (Welcome(req_id=1, token=b"x" * 9, heartbeat_ms=1), "token of 9 bytes"),
        (Lookup(token=b"t" * 8, req_id=1, name=""), "invalid user name"),
        (ListUsers(token=b"t" * 8, req_id=1, after="a b"), "invalid user name"),
        (LookupReply(req_id=1, name="bob", addr=("not an ip", 1), key=bytes(32)), "address"),
        (LookupReply(req_id=1, name="bob", addr=("10.0.0.1", 65536), key=bytes(32)), "address"),
        (LookupReply(req_id=1, name="bob", addr=("10.0.0.1", 1)), "key"),
        (Hello(req_id=1, name="é" * 128), "longer than 255"),
        (ListReply(req_id=1, total=1, more=False, names=("n" * 32,) * 60), "more than 1400"),
        (ListReply(req_id=1, total=1, more=False, names=("a",) * 65536), "u16"),
    ],
)
def test_invalid_messages_name_the_problem(msg: Message, why: str) -> None:
    with pytest.raises(InvalidMessage, match=why) as info:
        encode(msg)
    assert isinstance(info.value, ValueError)  # callers may catch ValueError
    assert not isinstance(info.value, struct.error)


def _ill_typed_refused() -> object:
    return Refused(req_id=1, reason=9)  # type: ignore[arg-type]


def _not_a_message() -> object:
    return encode("not a message")  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("make", "why"), [(_ill_typed_refused, "RefuseReason"), (_not_a_message, "message")]
)
def test_ill_typed_values_are_refused_by_either_core(make: Callable[[], object], why: str) -> None:
    # What mypy already rejects: the pure-Python core refuses it at encode (InvalidMessage), the
    # compiled one (mypyc checks the declared types) at once, with a TypeError. Never a
    # struct.error, never a datagram.
    try:
        value = make()
        if isinstance(value, Refused):
            encode(value)
    except InvalidMessage as exc:
        assert not chat_protocol.compiled() and why.casefold() in str(exc).casefold()
    except TypeError as exc:
        assert chat_protocol.compiled() and why in str(exc)
    else:
        pytest.fail("an ill-typed message was encoded")


def test_protocol_md_gives_the_endpoint_message_sizes() -> None:
    """Issue 21: WELCOME's and PUNCH's size ranges in docs/PROTOCOL.md are what the codec makes
    (smallest: IPv4, shortest name, no private endpoints; largest: IPv6 everywhere, all of them)."""
    size = documented_sizes()
    t, k, v4, v6 = b"t" * TOKEN_BYTES, b"k" * 32, ("1.2.3.4", 1), ("2001:db8::1", 1)
    welcome = [encode(Welcome(req_id=1, token=t, heartbeat_ms=1, observed=a)) for a in (None, v6)]
    assert size["WELCOME"] == f"{len(welcome[0])}–{len(welcome[1])}"
    small = encode(Punch(token=t, name="a", key=k, addr=v4))
    big = encode(
        Punch(token=t, name="z" * NAME_MAX_CHARS, key=k, addr=v6, local=(v6,) * MAX_LOCAL_ENDPOINTS)
    )
    assert size["PUNCH"] == f"{len(small)}–{len(big)}"


def test_relay_messages_fit_a_datagram_and_never_grow() -> None:
    """Issue 21: a RELAY with the largest peer datagram it may carry still fits one TRANSPORT
    on the directory session; the RELAYED forwarding it is exactly as large; PROTOCOL.md says so."""
    from chat_protocol.const import RELAY_OVERHEAD_BYTES
    from chat_protocol.wire.codec import MAX_RELAYED_BYTES

    t, k = b"t" * TOKEN_BYTES, b"k" * 32
    big = Relay(token=t, to=k, datagram=b"x" * MAX_RELAYED_BYTES)
    assert len(encode(big)) + 29 == MAX_DATAGRAM_BYTES  # 29: the session's TRANSPORT overhead
    assert MAX_RELAYED_BYTES + RELAY_OVERHEAD_BYTES == MAX_DATAGRAM_BYTES
    out = Relayed(token=t, sender=k, datagram=big.datagram)
    assert len(encode(out)) == len(encode(big))
    with pytest.raises(InvalidMessage):
        encode(Relay(token=t, to=k, datagram=b"x" * (MAX_RELAYED_BYTES + 1)))
    doc = (Path(__file__).parents[2] / "docs" / "PROTOCOL.md").read_text()
    small = len(encode(Relay(token=t, to=k, datagram=b"x")))
    for kind in ("RELAY", "RELAYED"):
        assert f"| {kind} |" in doc
        line = next(x for x in doc.splitlines() if f"| {kind} |" in x)
        assert line.rstrip().endswith(f"| {small}–{len(encode(big))} |")
