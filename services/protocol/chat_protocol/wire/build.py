"""Messages -> bytes: one builder per message kind, and :func:`encode`, which raises
:class:`InvalidMessage` for a message built here that the wire cannot carry (a field out of range,
an invalid name, too big a datagram): a local bug, never the network's fault. Whatever ``encode``
accepts, :func:`chat_protocol.wire.parse.decode` returns equal; it never lets a bare
``struct.error`` out.

Integer widths are left to ``struct`` to enforce; only when it refuses does :func:`_out_of_range`
look for the field to name, so valid messages pay nothing for the check.
"""

from __future__ import annotations

import functools
import ipaddress
import struct
from collections.abc import Callable
from typing import Any

from chat_protocol.const import (
    LOOKUP_BYTES,
    LOOKUP_REPLY_BYTES,
    MAX_ACK_PN_RANGES,
    MAX_ACK_RANGES,
    MAX_DATAGRAM_BYTES,
    MAX_LOCAL_ENDPOINTS,
    MAX_MESSAGE_BYTES,
    MAX_STRING_BYTES,
    MIN_HELLO_BYTES,
    PING_BYTES,
    STATIC_KEY_BYTES,
    TOKEN_BYTES,
)
from chat_protocol.errors import InvalidMessage
from chat_protocol.wire.layouts import (
    ACK,
    DATA,
    HEADERS,
    LIST_REPLY,
    LOOKUP,
    LOOKUP_PUNCH,
    MAX_RELAYED_BYTES,
    PN_RANGE,
    PORT,
    RANGE,
    TOKEN_KEY,
    TOKEN_KEY_U8,
    TOKEN_U32,
    TOKEN_U32_U8,
    U32,
    U32_U8,
    WELCOME,
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

# Integer fields and their widths in bits, only to name the culprit when ``struct`` refuses.
_INT_FIELDS: dict[type, tuple[tuple[str, int], ...]] = {
    Hello: (("req_id", 32),),
    Welcome: (("req_id", 32), ("heartbeat_ms", 32)),
    Refused: (("req_id", 32),),
    Lookup: (("req_id", 32),),
    LookupReply: (("req_id", 32),),
    ListUsers: (("req_id", 32),),
    ListReply: (("req_id", 32), ("total", 32)),
    HeartbeatAck: (("heartbeat_ms", 32),),
    Bye: (("req_id", 32),),
    ByeAck: (("req_id", 32),),
    Ping: (("nonce", 32),),
    Pong: (("nonce", 32),),
    Data: (
        ("session", 32),
        ("stream", 32),
        ("base", 32),
        ("seq", 32),
        ("pn", 64),
        ("msg_id", 64),
        ("offset", 32),
        ("total", 32),
    ),
    Ack: (("session", 32), ("stream", 32), ("seq", 32), ("ack_delay_us", 32)),
}


def _invalid(msg: object, why: str) -> InvalidMessage:
    return InvalidMessage(f"cannot encode {type(msg).__name__}: {why}")


def _utf8(msg: object, value: str) -> bytes:
    raw = value.encode("utf-8")
    if len(raw) > MAX_STRING_BYTES:
        raise _invalid(msg, f"string longer than {MAX_STRING_BYTES} bytes")
    return raw


@functools.lru_cache(maxsize=65536)
def _name(value: str) -> bytes:
    """A user name's bytes (without the length); InvalidMessage if the receiver would refuse it."""
    if not is_valid_name(value):
        raise InvalidMessage(f"cannot encode an invalid user name: {value[:40]!r}")
    return value.encode("ascii")


def _names(names: tuple[str, ...]) -> bytes:
    return b"".join(bytes((len(raw),)) + raw for raw in map(_name, names))


def _token(msg: object, token: bytes) -> bytes:
    if len(token) != TOKEN_BYTES:
        raise _invalid(msg, f"token of {len(token)} bytes, not {TOKEN_BYTES}")
    return token


@functools.lru_cache(maxsize=65536)
def _addr(addr: Addr | None) -> bytes:
    """An address's bytes, cached: the addresses LOOKUP_REPLY and PUNCH hand out, again and
    again."""
    return _addr_bytes(addr)


def _addr_bytes(addr: Addr | None) -> bytes:
    """An address's bytes, not cached: for WELCOME's ``observed``, said once per sign-in (a
    cached copy would hold about 180 bytes per signed-in user, for nothing)."""
    if addr is None:
        return b"\x00"
    try:
        ip = ipaddress.ip_address(addr[0])
        return bytes((ip.version,)) + ip.packed + PORT.pack(addr[1])
    except (ValueError, struct.error) as exc:
        raise InvalidMessage(f"cannot encode the address {addr!r}: {exc}") from None


def _endpoints(msg: object, addrs: tuple[Addr, ...]) -> bytes:
    """A count byte, then each address (a list of private endpoints)."""
    if not addrs:
        return b"\x00"
    if len(addrs) > MAX_LOCAL_ENDPOINTS:
        raise _invalid(msg, f"{len(addrs)} endpoints, more than {MAX_LOCAL_ENDPOINTS}")
    if None in addrs:
        raise _invalid(msg, "an endpoint is empty")
    return bytes((len(addrs),)) + b"".join(map(_addr, addrs))


def _build_hello(m: Hello) -> bytes:
    name = _utf8(m, m.name)  # any text: the server answers NAME_INVALID
    out = HEADERS[Kind.HELLO] + U32_U8.pack(m.req_id, len(name)) + name
    if m.endpoints:  # none: the count is 0, which the padding's first byte says already
        out += _endpoints(m, m.endpoints)
    return out.ljust(MIN_HELLO_BYTES, b"\x00")


def _build_welcome(m: Welcome) -> bytes:
    head = WELCOME.pack(m.req_id, _token(m, m.token), m.heartbeat_ms)
    return HEADERS[Kind.WELCOME] + head + _addr_bytes(m.observed)


def _build_refused(m: Refused) -> bytes:
    if not isinstance(m.reason, RefuseReason):
        raise _invalid(m, f"reason {m.reason!r} is not a RefuseReason")
    return HEADERS[Kind.REFUSED] + U32_U8.pack(m.req_id, m.reason)


def _build_lookup(m: Lookup) -> bytes:
    name = _name(m.name)
    flags = LOOKUP_PUNCH if m.punch else 0
    head = LOOKUP.pack(_token(m, m.token), m.req_id, flags, len(name))
    out = HEADERS[Kind.LOOKUP] + head + name
    # Every LOOKUP one size: its size does not tell the length of the name asked.
    if len(out) < LOOKUP_BYTES:  # guard: lookup-padding
        out += bytes(LOOKUP_BYTES - len(out))
    return out


def _build_lookup_reply(m: LookupReply) -> bytes:
    name = _name(m.name)
    head = U32_U8.pack(m.req_id, len(name))
    if (m.addr is None) != (not m.key) or len(m.key) not in (0, STATIC_KEY_BYTES):
        raise InvalidMessage("a LOOKUP_REPLY carries an address and a 32-byte key, or neither")
    if m.addr is None and m.local:
        raise InvalidMessage("a LOOKUP_REPLY without an address carries no private endpoints")
    out = HEADERS[Kind.LOOKUP_REPLY] + head + name + _addr(m.addr) + m.key
    if m.addr is not None:
        out += _endpoints(m, m.local)
    if len(out) < LOOKUP_REPLY_BYTES:  # guard: lookup-reply-padding
        out += bytes(LOOKUP_REPLY_BYTES - len(out))
    return out


def _build_punch(m: Punch) -> bytes:
    name = _name(m.name)
    if len(m.key) != STATIC_KEY_BYTES:
        raise _invalid(m, f"key of {len(m.key)} bytes, not {STATIC_KEY_BYTES}")
    head = TOKEN_KEY_U8.pack(_token(m, m.token), m.key, len(name))
    return b"".join(
        (HEADERS[Kind.PUNCH], head, name, _addr(m.addr), _endpoints(m, m.local))
    )


def _build_relay_body(m: Relay | Relayed, key: bytes) -> bytes:
    if len(key) != STATIC_KEY_BYTES:
        raise _invalid(m, f"key of {len(key)} bytes, not {STATIC_KEY_BYTES}")
    if not 0 < len(m.datagram) <= MAX_RELAYED_BYTES:
        raise _invalid(m, f"a relayed datagram of {len(m.datagram)} bytes (1..{MAX_RELAYED_BYTES})")
    return TOKEN_KEY.pack(_token(m, m.token), key) + m.datagram


def _build_relay(m: Relay) -> bytes:
    return HEADERS[Kind.RELAY] + _build_relay_body(m, m.to)


def _build_relayed(m: Relayed) -> bytes:
    return HEADERS[Kind.RELAYED] + _build_relay_body(m, m.sender)


def _build_list(m: ListUsers) -> bytes:
    after = _name(m.after) if m.after else b""
    head = TOKEN_U32_U8.pack(_token(m, m.token), m.req_id, len(after))
    return HEADERS[Kind.LIST] + head + after


def _build_list_reply(m: ListReply) -> bytes:
    head = LIST_REPLY.pack(m.req_id, m.total, 1 if m.more else 0, len(m.names))
    return HEADERS[Kind.LIST_REPLY] + head + _names(m.names)


def _build_heartbeat(m: Heartbeat) -> bytes:
    return HEADERS[Kind.HEARTBEAT] + _token(m, m.token)


def _build_heartbeat_ack(m: HeartbeatAck) -> bytes:
    return HEADERS[Kind.HEARTBEAT_ACK] + TOKEN_U32.pack(_token(m, m.token), m.heartbeat_ms)


def _build_bye(m: Bye) -> bytes:
    return HEADERS[Kind.BYE] + TOKEN_U32.pack(_token(m, m.token), m.req_id)


def _build_bye_ack(m: ByeAck) -> bytes:
    return HEADERS[Kind.BYE_ACK] + U32.pack(m.req_id)


def _build_shutdown(m: Shutdown) -> bytes:
    return HEADERS[Kind.SHUTDOWN] + _token(m, m.token)


def _build_unknown_session(m: UnknownSession) -> bytes:
    return HEADERS[Kind.UNKNOWN_SESSION] + _token(m, m.token)


def _build_ping(m: Ping) -> bytes:
    return (HEADERS[Kind.PING] + U32.pack(m.nonce)).ljust(PING_BYTES, b"\x00")


def _build_pong(m: Pong) -> bytes:
    return HEADERS[Kind.PONG] + U32.pack(m.nonce)


def _build_data(m: Data) -> bytes:
    name = _name(m.sender)
    n = len(m.payload)
    if not (n > 0 and m.offset + n <= m.total <= MAX_MESSAGE_BYTES and m.base <= m.seq):
        if not n:
            raise _invalid(m, "empty payload")
        if m.base > m.seq:
            raise _invalid(m, f"base {m.base} above seq {m.seq}")
        raise _invalid(m, f"chunk [{m.offset}, {m.offset + n}) outside a message of {m.total}")
    head = DATA.pack(
        m.session, m.stream, m.base, m.seq, m.pn, m.msg_id, m.offset, m.total, len(name)
    )
    return b"".join((HEADERS[Kind.DATA], head, name, m.payload))


def _build_ack(m: Ack) -> bytes:
    ranges = m.ranges
    n_ranges = len(ranges)
    if n_ranges > MAX_ACK_RANGES:
        raise _invalid(m, f"{n_ranges} ranges, more than {MAX_ACK_RANGES}")
    pns = m.pns
    n_pns = len(pns)
    if n_pns > MAX_ACK_PN_RANGES:
        raise _invalid(m, f"{n_pns} packet-number ranges, more than {MAX_ACK_PN_RANGES}")
    for a, b in ranges:
        if not a < b:
            raise _invalid(m, f"empty range [{a}, {b})")
    for a, b in pns:
        if not a < b:
            raise _invalid(m, f"empty packet-number range [{a}, {b})")
    parts = [
        HEADERS[Kind.ACK],
        ACK.pack(
            m.session, m.stream, m.seq, 1 if m.complete else 0, m.ack_delay_us, n_pns, n_ranges
        ),
    ]
    for a, b in pns:
        parts.append(PN_RANGE.pack(a, b))
    for a, b in ranges:
        parts.append(RANGE.pack(a, b))
    return b"".join(parts)


_BUILDERS: dict[type, Callable[[Any], bytes]] = {
    Data: _build_data,
    Ack: _build_ack,
    LookupReply: _build_lookup_reply,
    HeartbeatAck: _build_heartbeat_ack,
    Heartbeat: _build_heartbeat,
    Lookup: _build_lookup,
    Hello: _build_hello,
    Welcome: _build_welcome,
    Refused: _build_refused,
    ListUsers: _build_list,
    ListReply: _build_list_reply,
    Bye: _build_bye,
    ByeAck: _build_bye_ack,
    Shutdown: _build_shutdown,
    UnknownSession: _build_unknown_session,
    Ping: _build_ping,
    Pong: _build_pong,
    Punch: _build_punch,
    Relay: _build_relay,
    Relayed: _build_relayed,
}

if len(_BUILDERS) != len(Kind):  # pragma: no cover
    raise ImportError("a message kind lacks its builder")


def _out_of_range(msg: object, exc: Exception) -> InvalidMessage:
    """Name the integer field ``struct`` refused (the slow path: only for invalid messages)."""
    for name, bits in _INT_FIELDS.get(type(msg), ()):
        value = getattr(msg, name)
        if not isinstance(value, int):
            return _invalid(msg, f"{name}={value!r} is not an integer")
        if not 0 <= value < 1 << bits:
            return _invalid(msg, f"{name}={value} is outside u{bits}")
    if isinstance(msg, Ack):
        for a, b in msg.ranges:
            if not (0 <= a < 1 << 32 and 0 <= b < 1 << 32):
                return _invalid(msg, f"range [{a}, {b}) is outside u32")
        for a, b in msg.pns:
            if not (0 <= a < 1 << 64 and 0 <= b < 1 << 64):
                return _invalid(msg, f"packet-number range [{a}, {b}) is outside u64")
    if isinstance(msg, ListReply) and len(msg.names) >= 1 << 16:
        return _invalid(msg, f"{len(msg.names)} names, more than a u16 count")
    return _invalid(msg, f"a field is out of range ({exc})")


def encode(msg: Message) -> bytes:
    """Serialise one message, or raise :class:`InvalidMessage` saying which field cannot be."""
    build = _BUILDERS.get(type(msg))
    if build is None:
        raise InvalidMessage(f"not a message: {msg!r}")
    try:
        out = build(msg)
    except (struct.error, OverflowError, TypeError) as exc:
        raise _out_of_range(msg, exc) from None
    if len(out) > MAX_DATAGRAM_BYTES:
        raise _invalid(msg, f"{len(out)} bytes, more than {MAX_DATAGRAM_BYTES} in a datagram")
    return out
