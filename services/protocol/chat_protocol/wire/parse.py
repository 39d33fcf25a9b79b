"""Bytes -> messages: one parser per message kind, and :func:`decode`, which raises
:class:`MalformedDatagram` for anything a remote party sent that is not a valid message (the
caller drops and counts it). The hot path (DATA, ACK, HEARTBEAT, LOOKUP) is one dict lookup and
one ``unpack_from`` each.
"""

from __future__ import annotations

import functools
import ipaddress
from collections.abc import Callable

from chat_protocol.const import (
    ACK_HEADER_BYTES,
    ACK_PN_RANGE_BYTES,
    ACK_RANGE_BYTES,
    LOOKUP_BYTES,
    LOOKUP_REPLY_BYTES,
    MAGIC,
    MAX_ACK_PN_RANGES,
    MAX_ACK_RANGES,
    MAX_DATAGRAM_BYTES,
    MAX_LOCAL_ENDPOINTS,
    MAX_MESSAGE_BYTES,
    MIN_HELLO_BYTES,
    PING_BYTES,
    PROTOCOL_VERSION,
    STATIC_KEY_BYTES,
)
from chat_protocol.errors import MalformedDatagram
from chat_protocol.wire.layouts import (
    ACK,
    DATA,
    DATA_HEADER_BYTES,
    HEADER,
    HEARTBEAT_BYTES,
    LIST_REPLY,
    LOOKUP,
    LOOKUP_PUNCH,
    MAX_RELAYED_BYTES,
    PN_RANGE,
    PORT,
    RANGE,
    TOKEN,
    TOKEN_KEY,
    TOKEN_KEY_U8,
    TOKEN_U32,
    TOKEN_U32_U8,
    U32,
    U32_U8,
    WELCOME,
    H,
)
from chat_protocol.wire.messages import (
    Ack,
    Addr,
    Bye,
    ByeAck,
    Data,
    Heartbeat,
    HeartbeatAck,
    Hello,
    Kind,
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
from chat_protocol.wire.names import is_valid_name

_ZEROS = bytes(MAX_DATAGRAM_BYTES)
"""Padding is compared with a slice of this (a datagram is never longer)."""

def _exact(data: bytes, size: int) -> None:
    if len(data) != size:
        raise MalformedDatagram("truncated" if len(data) < size else "trailing bytes")


def _at_least(data: bytes, size: int) -> None:
    if len(data) < size:
        raise MalformedDatagram("truncated")


@functools.lru_cache(maxsize=65536)
def _valid_name(raw: bytes) -> str | None:
    try:
        name = raw.decode("utf-8")
    except UnicodeDecodeError:
        return None
    return name if is_valid_name(name) else None


def _name_at(data: bytes, start: int, n: int, *, allow_empty: bool = False) -> str:
    """The user name of ``n`` bytes at ``start``."""
    end = start + n
    if end > len(data):
        raise MalformedDatagram("truncated")
    if allow_empty and n == 0:
        return ""
    name = _valid_name(data[start:end])
    if name is None:
        raise MalformedDatagram("invalid user name")
    return name


@functools.lru_cache(maxsize=65536)
def _ip_text(packed: bytes) -> str:
    return str(ipaddress.ip_address(packed))


def _addr_at(data: bytes, pos: int) -> tuple[Addr | None, int]:
    """The address at ``pos`` and where it ends."""
    _at_least(data, pos + 1)
    family = data[pos]
    if family == 0:
        return None, pos + 1
    if family not in (4, 6):
        raise MalformedDatagram("unknown address family")
    end = pos + 1 + (4 if family == 4 else 16)
    _at_least(data, end + PORT.size)
    (port,) = PORT.unpack_from(data, end)
    return (_ip_text(data[pos + 1 : end]), port), end + PORT.size


def _endpoints_at(data: bytes, pos: int) -> tuple[tuple[Addr, ...], int]:
    """The list of endpoints at ``pos`` (a count byte, then addresses) and where it ends."""
    _at_least(data, pos + 1)
    count = data[pos]
    if count > MAX_LOCAL_ENDPOINTS:
        raise MalformedDatagram("too many endpoints")
    pos += 1
    addrs: list[Addr] = []
    for _ in range(count):
        addr, pos = _addr_at(data, pos)
        if addr is None:
            raise MalformedDatagram("empty endpoint")
        addrs.append(addr)
    return tuple(addrs), pos


def _parse_hello(data: bytes) -> Hello:
    if len(data) < MIN_HELLO_BYTES:
        raise MalformedDatagram("hello not padded")
    req_id, n = U32_U8.unpack_from(data, H)
    start = H + U32_U8.size
    end = start + n
    _at_least(data, end)
    try:
        name = data[start:end].decode("utf-8")  # validated by the server: NAME_INVALID
    except UnicodeDecodeError:
        raise MalformedDatagram("string is not UTF-8") from None
    endpoints: tuple[Addr, ...] = ()
    if end < len(data):
        endpoints, end = _endpoints_at(data, end)
    if data[end:] != _ZEROS[: len(data) - end]:
        raise MalformedDatagram("hello padding not zero")
    return Hello(req_id=req_id, name=name, endpoints=endpoints)


def _parse_welcome(data: bytes) -> Welcome:
    _at_least(data, H + WELCOME.size)
    req_id, token, heartbeat_ms = WELCOME.unpack_from(data, H)
    observed, end = _addr_at(data, H + WELCOME.size)
    _exact(data, end)
    return Welcome(req_id=req_id, token=token, heartbeat_ms=heartbeat_ms, observed=observed)


def _relay_body(data: bytes) -> tuple[bytes, bytes, bytes]:
    _at_least(data, H + TOKEN_KEY.size + 1)
    token, key = TOKEN_KEY.unpack_from(data, H)
    datagram = data[H + TOKEN_KEY.size :]
    if len(datagram) > MAX_RELAYED_BYTES:
        raise MalformedDatagram("relayed datagram too large")
    return token, key, datagram


def _parse_relay(data: bytes) -> Relay:
    token, key, datagram = _relay_body(data)
    return Relay(token=token, to=key, datagram=datagram)


def _parse_relayed(data: bytes) -> Relayed:
    token, key, datagram = _relay_body(data)
    return Relayed(token=token, sender=key, datagram=datagram)


def _parse_punch(data: bytes) -> Punch:
    _at_least(data, H + TOKEN_KEY_U8.size)
    token, key, n = TOKEN_KEY_U8.unpack_from(data, H)
    start = H + TOKEN_KEY_U8.size
    name = _name_at(data, start, n)
    addr, end = _addr_at(data, start + n)
    if addr is None:
        raise MalformedDatagram("punch hint without an address")
    local, end = _endpoints_at(data, end)
    _exact(data, end)
    return Punch(token=token, name=name, key=key, addr=addr, local=local)


def _parse_refused(data: bytes) -> Refused:
    _exact(data, H + U32_U8.size)
    req_id, reason = U32_U8.unpack_from(data, H)
    try:
        return Refused(req_id=req_id, reason=RefuseReason(reason))
    except ValueError:
        raise MalformedDatagram("unknown refusal reason") from None


def _zero_padding(data: bytes, end: int) -> None:
    """Bytes from ``end`` on are padding: all zero."""
    if data[end:] != _ZEROS[: len(data) - end]:  # (one memcmp; strip tests byte by byte)
        raise MalformedDatagram("padding not zero")


def _parse_lookup(data: bytes) -> Lookup:
    _exact(data, LOOKUP_BYTES)
    token, req_id, flags, n = LOOKUP.unpack_from(data, H)
    if flags & ~LOOKUP_PUNCH:
        raise MalformedDatagram("unknown lookup flags")
    start = H + LOOKUP.size
    name = _name_at(data, start, n)
    _zero_padding(data, start + n)
    return Lookup(token=token, req_id=req_id, name=name, punch=bool(flags & LOOKUP_PUNCH))


def _parse_lookup_reply(data: bytes) -> LookupReply:
    _exact(data, LOOKUP_REPLY_BYTES)
    req_id, n = U32_U8.unpack_from(data, H)
    start = H + U32_U8.size
    name = _name_at(data, start, n)
    addr, end = _addr_at(data, start + n)
    if addr is None:
        _zero_padding(data, end)
        return LookupReply(req_id=req_id, name=name, addr=None)
    _at_least(data, end + STATIC_KEY_BYTES)
    key = data[end : end + STATIC_KEY_BYTES]
    local, end = _endpoints_at(data, end + STATIC_KEY_BYTES)
    _zero_padding(data, end)
    return LookupReply(req_id=req_id, name=name, addr=addr, key=key, local=local)


def _parse_list(data: bytes) -> ListUsers:
    _at_least(data, H + TOKEN_U32_U8.size)
    token, req_id, n = TOKEN_U32_U8.unpack_from(data, H)
    start = H + TOKEN_U32_U8.size
    _exact(data, start + n)
    return ListUsers(token=token, req_id=req_id, after=_name_at(data, start, n, allow_empty=True))


def _parse_list_reply(data: bytes) -> ListReply:
    _at_least(data, H + LIST_REPLY.size)
    req_id, total, more, count = LIST_REPLY.unpack_from(data, H)
    if more > 1:
        raise MalformedDatagram("bad flag")
    pos = H + LIST_REPLY.size
    names = []
    for _ in range(count):
        _at_least(data, pos + 1)
        n = data[pos]
        names.append(_name_at(data, pos + 1, n))
        pos += 1 + n
    _exact(data, pos)
    return ListReply(req_id=req_id, total=total, more=bool(more), names=tuple(names))


def _parse_heartbeat(data: bytes) -> Heartbeat:
    _exact(data, HEARTBEAT_BYTES)
    return Heartbeat(token=data[H:HEARTBEAT_BYTES])


def _parse_heartbeat_ack(data: bytes) -> HeartbeatAck:
    _exact(data, H + TOKEN_U32.size)
    token, heartbeat_ms = TOKEN_U32.unpack_from(data, H)
    return HeartbeatAck(token=token, heartbeat_ms=heartbeat_ms)


def _parse_bye(data: bytes) -> Bye:
    _exact(data, H + TOKEN_U32.size)
    token, req_id = TOKEN_U32.unpack_from(data, H)
    return Bye(token=token, req_id=req_id)


def _parse_bye_ack(data: bytes) -> ByeAck:
    _exact(data, H + U32.size)
    (req_id,) = U32.unpack_from(data, H)
    return ByeAck(req_id=req_id)


def _parse_shutdown(data: bytes) -> Shutdown:
    _exact(data, H + TOKEN.size)
    return Shutdown(token=data[H:])


def _parse_unknown_session(data: bytes) -> UnknownSession:
    _exact(data, H + TOKEN.size)
    return UnknownSession(token=data[H:])


def _parse_ping(data: bytes) -> Ping:
    if len(data) != PING_BYTES:
        raise MalformedDatagram("ping not padded")
    (nonce,) = U32.unpack_from(data, H)
    return Ping(nonce=nonce)


def _parse_pong(data: bytes) -> Pong:
    _exact(data, H + U32.size)
    (nonce,) = U32.unpack_from(data, H)
    return Pong(nonce=nonce)


def _parse_data(data: bytes) -> Data:
    _at_least(data, DATA_HEADER_BYTES)
    session, stream, base, seq, pn, msg_id, offset, total, n = DATA.unpack_from(data, H)
    start = DATA_HEADER_BYTES + n
    sender = _name_at(data, DATA_HEADER_BYTES, n)
    payload = data[start:]
    if total > MAX_MESSAGE_BYTES or offset + len(payload) > total:
        raise MalformedDatagram("chunk outside the message")
    if not payload:
        raise MalformedDatagram("empty chunk")
    if base > seq:
        raise MalformedDatagram("base above seq")
    return Data(
        session=session,
        stream=stream,
        base=base,
        seq=seq,
        pn=pn,
        msg_id=msg_id,
        offset=offset,
        total=total,
        sender=sender,
        payload=payload,
    )


def _parse_ack(data: bytes) -> Ack:
    _at_least(data, ACK_HEADER_BYTES)
    session, stream, seq, complete, delay, n_pns, count = ACK.unpack_from(data, H)
    if complete > 1 or count > MAX_ACK_RANGES or n_pns > MAX_ACK_PN_RANGES:
        raise MalformedDatagram("bad ack")
    at = ACK_HEADER_BYTES + n_pns * ACK_PN_RANGE_BYTES
    if len(data) != at + count * ACK_RANGE_BYTES:
        _exact(data, at + count * ACK_RANGE_BYTES)  # (raises, saying which)
    pns = tuple(PN_RANGE.iter_unpack(data[ACK_HEADER_BYTES:at])) if n_pns else ()
    ranges = tuple(RANGE.iter_unpack(data[at:])) if count else ()
    for a, b in pns:
        if a >= b:
            raise MalformedDatagram("empty ack range")
    for a, b in ranges:
        if a >= b:
            raise MalformedDatagram("empty ack range")
    return Ack(
        session=session,
        stream=stream,
        seq=seq,
        complete=bool(complete),
        ranges=ranges,
        ack_delay_us=delay,
        pns=pns,
    )


_PARSERS: dict[int, Callable[[bytes], Message]] = {
    Kind.HELLO: _parse_hello,
    Kind.WELCOME: _parse_welcome,
    Kind.REFUSED: _parse_refused,
    Kind.LOOKUP: _parse_lookup,
    Kind.LOOKUP_REPLY: _parse_lookup_reply,
    Kind.LIST: _parse_list,
    Kind.LIST_REPLY: _parse_list_reply,
    Kind.HEARTBEAT: _parse_heartbeat,
    Kind.HEARTBEAT_ACK: _parse_heartbeat_ack,
    Kind.BYE: _parse_bye,
    Kind.BYE_ACK: _parse_bye_ack,
    Kind.SHUTDOWN: _parse_shutdown,
    Kind.UNKNOWN_SESSION: _parse_unknown_session,
    Kind.PING: _parse_ping,
    Kind.PONG: _parse_pong,
    Kind.DATA: _parse_data,
    Kind.ACK: _parse_ack,
    Kind.PUNCH: _parse_punch,
    Kind.RELAY: _parse_relay,
    Kind.RELAYED: _parse_relayed,
}
if set(_PARSERS) != set(Kind):  # pragma: no cover
    raise ImportError("a message kind lacks its parser")



def decode(data: bytes) -> Message:
    """Parse one datagram, or raise :class:`MalformedDatagram` saying what is wrong with it."""
    n = len(data)
    if n > MAX_DATAGRAM_BYTES:
        raise MalformedDatagram("oversized")
    if n < H:
        raise MalformedDatagram("truncated")
    magic, version, kind = HEADER.unpack_from(data)
    if magic != MAGIC:
        raise MalformedDatagram("bad magic")
    if version != PROTOCOL_VERSION:
        raise MalformedDatagram("unsupported version")
    parse = _PARSERS.get(kind)
    if parse is None:
        raise MalformedDatagram("unknown kind")
    return parse(data)
