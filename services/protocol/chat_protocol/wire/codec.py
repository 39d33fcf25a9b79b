"""Bytes <-> :mod:`chat_protocol.wire.messages`: one parser and one builder per message kind.

Every datagram starts with a 4-byte header: magic ``PC``, protocol version, kind. Integers are
big-endian. Strings are a 1-byte length then UTF-8. docs/PROTOCOL.md has the full table.

Errors are split by fault:

* :func:`decode` raises :class:`MalformedDatagram` for anything a remote party sent that is not a
  valid message (the caller drops and counts it).
* :func:`encode` raises :class:`InvalidMessage` for a message built here that the wire cannot
  carry (a field out of range, an invalid name, too big a datagram): a local bug. Whatever
  ``encode`` accepts, ``decode`` returns equal; it never lets a bare ``struct.error`` out.

Each fixed layout is one :class:`struct.Struct`, used both to build and to parse; the hot path
(DATA, ACK, HEARTBEAT, LOOKUP) is one dict lookup and one ``unpack_from`` or ``pack`` each. Integer
widths are left to ``struct`` to enforce; only when it refuses does :func:`_out_of_range` look
for the field to name, so valid messages pay nothing for the check.
"""

from __future__ import annotations

import functools
import ipaddress
import struct
from collections.abc import Callable
from typing import Any

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
    MAX_STRING_BYTES,
    MIN_HELLO_BYTES,
    NAME_MAX_CHARS,
    PING_BYTES,
    PROTOCOL_VERSION,
    RELAY_OVERHEAD_BYTES,
    STATIC_KEY_BYTES,
    TOKEN_BYTES,
)
from chat_protocol.errors import InvalidMessage, MalformedDatagram
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

# --- layouts ------------------------------------------------------------------------------------
# One Struct per layout. All but HEADER describe what follows the 4-byte header.

HEADER = struct.Struct("!2sBB")  # magic, version, kind
H = HEADER.size
_U32 = struct.Struct("!I")  # BYE_ACK req_id; PING, PONG nonce
_U32_U8 = struct.Struct("!IB")  # HELLO, LOOKUP_REPLY: req_id, name length; REFUSED: req_id, reason
_U32_U32 = struct.Struct("!II")  # an ACK range: start, end
_TOKEN = struct.Struct(f"!{TOKEN_BYTES}s")  # HEARTBEAT, SHUTDOWN, UNKNOWN_SESSION
_TOKEN_U32 = struct.Struct(f"!{TOKEN_BYTES}sI")  # HEARTBEAT_ACK: heartbeat_ms; BYE: req_id
_TOKEN_U32_U8 = struct.Struct(f"!{TOKEN_BYTES}sIB")  # LIST: token, req_id, name length
_LOOKUP = struct.Struct(f"!{TOKEN_BYTES}sIBB")  # token, req_id, flags, name length
_LOOKUP_PUNCH = 0x01  # LOOKUP flags: the asker means to send (hint the target to punch)
_TOKEN_KEY = struct.Struct(f"!{TOKEN_BYTES}s{STATIC_KEY_BYTES}s")  # RELAY, RELAYED: token, key
MAX_RELAYED_BYTES = MAX_DATAGRAM_BYTES - RELAY_OVERHEAD_BYTES
"""Largest peer datagram a RELAY carries (its TRANSPORT on the directory session fits then)."""
_TOKEN_KEY_U8 = struct.Struct(f"!{TOKEN_BYTES}s{STATIC_KEY_BYTES}sB")  # PUNCH: token, key, name len
_WELCOME = struct.Struct(f"!I{TOKEN_BYTES}sI")  # req_id, token, heartbeat_ms
_LIST_REPLY = struct.Struct("!IIBH")  # req_id, total, more, count
# session, stream, base, seq, pn, msg_id, offset, total, name length
_DATA = struct.Struct("!IIIIQQIIB")
_ACK = struct.Struct("!IIIBIBB")  # session, stream, seq, complete, ack delay, pn count, range count
_RANGE = _U32_U32
_PN_RANGE = struct.Struct("!QQ")  # an ACK's packet-number range: start, end
_PORT = struct.Struct("!H")

HEARTBEAT_BYTES = H + _TOKEN.size
DATA_HEADER_BYTES = H + _DATA.size
"""A DATA datagram's bytes besides the sender's name and the payload."""
if (  # pragma: no cover
    H + _ACK.size != ACK_HEADER_BYTES
    or _RANGE.size != ACK_RANGE_BYTES
    or _PN_RANGE.size != ACK_PN_RANGE_BYTES
):
    raise ImportError("const.ACK_*_BYTES disagree with the ACK layout")
_ADDR_MAX = 1 + 16 + _PORT.size  # an IPv6 address
if (  # pragma: no cover
    H + _LOOKUP.size + NAME_MAX_CHARS != LOOKUP_BYTES
    or H + _U32_U8.size + NAME_MAX_CHARS + _ADDR_MAX + STATIC_KEY_BYTES
    + 1 + MAX_LOCAL_ENDPOINTS * _ADDR_MAX
    != LOOKUP_REPLY_BYTES
):
    raise ImportError("const.LOOKUP_BYTES / LOOKUP_REPLY_BYTES disagree with the layouts")

_HEADERS = {k: HEADER.pack(MAGIC, PROTOCOL_VERSION, k) for k in Kind}

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


# --- building -----------------------------------------------------------------------------------


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
    if addr is None:
        return b"\x00"
    try:
        ip = ipaddress.ip_address(addr[0])
        return bytes((ip.version,)) + ip.packed + _PORT.pack(addr[1])
    except (ValueError, struct.error) as exc:
        raise InvalidMessage(f"cannot encode the address {addr!r}: {exc}") from None


def _endpoints(msg: object, addrs: tuple[Addr, ...]) -> bytes:
    """A count byte, then each address (a list of private endpoints)."""
    if len(addrs) > MAX_LOCAL_ENDPOINTS:
        raise _invalid(msg, f"{len(addrs)} endpoints, more than {MAX_LOCAL_ENDPOINTS}")
    if any(a is None for a in addrs):
        raise _invalid(msg, "an endpoint is empty")
    return bytes((len(addrs),)) + b"".join(_addr(a) for a in addrs)


def _build_hello(m: Hello) -> bytes:
    name = _utf8(m, m.name)  # any text: the server answers NAME_INVALID
    out = _HEADERS[Kind.HELLO] + _U32_U8.pack(m.req_id, len(name)) + name
    if m.endpoints:  # none: the count is 0, which the padding's first byte says already
        out += _endpoints(m, m.endpoints)
    return out.ljust(MIN_HELLO_BYTES, b"\x00")


def _build_welcome(m: Welcome) -> bytes:
    head = _WELCOME.pack(m.req_id, _token(m, m.token), m.heartbeat_ms)
    return _HEADERS[Kind.WELCOME] + head + _addr(m.observed)


def _build_refused(m: Refused) -> bytes:
    if not isinstance(m.reason, RefuseReason):
        raise _invalid(m, f"reason {m.reason!r} is not a RefuseReason")
    return _HEADERS[Kind.REFUSED] + _U32_U8.pack(m.req_id, m.reason)


def _build_lookup(m: Lookup) -> bytes:
    name = _name(m.name)
    flags = _LOOKUP_PUNCH if m.punch else 0
    head = _LOOKUP.pack(_token(m, m.token), m.req_id, flags, len(name))
    out = _HEADERS[Kind.LOOKUP] + head + name
    # Every LOOKUP one size: its size does not tell the length of the name asked.
    if len(out) < LOOKUP_BYTES:  # guard: lookup-padding
        out += bytes(LOOKUP_BYTES - len(out))
    return out


def _build_lookup_reply(m: LookupReply) -> bytes:
    name = _name(m.name)
    head = _U32_U8.pack(m.req_id, len(name))
    if (m.addr is None) != (not m.key) or len(m.key) not in (0, STATIC_KEY_BYTES):
        raise InvalidMessage("a LOOKUP_REPLY carries an address and a 32-byte key, or neither")
    if m.addr is None and m.local:
        raise InvalidMessage("a LOOKUP_REPLY without an address carries no private endpoints")
    out = _HEADERS[Kind.LOOKUP_REPLY] + head + name + _addr(m.addr) + m.key
    if m.addr is not None:
        out += _endpoints(m, m.local)
    if len(out) < LOOKUP_REPLY_BYTES:  # guard: lookup-reply-padding
        out += bytes(LOOKUP_REPLY_BYTES - len(out))
    return out


def _build_punch(m: Punch) -> bytes:
    name = _name(m.name)
    if len(m.key) != STATIC_KEY_BYTES:
        raise _invalid(m, f"key of {len(m.key)} bytes, not {STATIC_KEY_BYTES}")
    head = _TOKEN_KEY_U8.pack(_token(m, m.token), m.key, len(name))
    return b"".join(
        (_HEADERS[Kind.PUNCH], head, name, _addr(m.addr), _endpoints(m, m.local))
    )


def _build_relay_body(m: Relay | Relayed, key: bytes) -> bytes:
    if len(key) != STATIC_KEY_BYTES:
        raise _invalid(m, f"key of {len(key)} bytes, not {STATIC_KEY_BYTES}")
    if not 0 < len(m.datagram) <= MAX_RELAYED_BYTES:
        raise _invalid(m, f"a relayed datagram of {len(m.datagram)} bytes (1..{MAX_RELAYED_BYTES})")
    return _TOKEN_KEY.pack(_token(m, m.token), key) + m.datagram


def _build_relay(m: Relay) -> bytes:
    return _HEADERS[Kind.RELAY] + _build_relay_body(m, m.to)


def _build_relayed(m: Relayed) -> bytes:
    return _HEADERS[Kind.RELAYED] + _build_relay_body(m, m.sender)


def _build_list(m: ListUsers) -> bytes:
    after = _name(m.after) if m.after else b""
    head = _TOKEN_U32_U8.pack(_token(m, m.token), m.req_id, len(after))
    return _HEADERS[Kind.LIST] + head + after


def _build_list_reply(m: ListReply) -> bytes:
    head = _LIST_REPLY.pack(m.req_id, m.total, 1 if m.more else 0, len(m.names))
    return _HEADERS[Kind.LIST_REPLY] + head + _names(m.names)


def _build_heartbeat(m: Heartbeat) -> bytes:
    return _HEADERS[Kind.HEARTBEAT] + _token(m, m.token)


def _build_heartbeat_ack(m: HeartbeatAck) -> bytes:
    return _HEADERS[Kind.HEARTBEAT_ACK] + _TOKEN_U32.pack(_token(m, m.token), m.heartbeat_ms)


def _build_bye(m: Bye) -> bytes:
    return _HEADERS[Kind.BYE] + _TOKEN_U32.pack(_token(m, m.token), m.req_id)


def _build_bye_ack(m: ByeAck) -> bytes:
    return _HEADERS[Kind.BYE_ACK] + _U32.pack(m.req_id)


def _build_shutdown(m: Shutdown) -> bytes:
    return _HEADERS[Kind.SHUTDOWN] + _token(m, m.token)


def _build_unknown_session(m: UnknownSession) -> bytes:
    return _HEADERS[Kind.UNKNOWN_SESSION] + _token(m, m.token)


def _build_ping(m: Ping) -> bytes:
    return (_HEADERS[Kind.PING] + _U32.pack(m.nonce)).ljust(PING_BYTES, b"\x00")


def _build_pong(m: Pong) -> bytes:
    return _HEADERS[Kind.PONG] + _U32.pack(m.nonce)


def _build_data(m: Data) -> bytes:
    name = _name(m.sender)
    n = len(m.payload)
    if not (n > 0 and m.offset + n <= m.total <= MAX_MESSAGE_BYTES and m.base <= m.seq):
        if not n:
            raise _invalid(m, "empty payload")
        if m.base > m.seq:
            raise _invalid(m, f"base {m.base} above seq {m.seq}")
        raise _invalid(m, f"chunk [{m.offset}, {m.offset + n}) outside a message of {m.total}")
    head = _DATA.pack(
        m.session, m.stream, m.base, m.seq, m.pn, m.msg_id, m.offset, m.total, len(name)
    )
    return b"".join((_HEADERS[Kind.DATA], head, name, m.payload))


def _build_ack(m: Ack) -> bytes:
    ranges = m.ranges
    if len(ranges) > MAX_ACK_RANGES:
        raise _invalid(m, f"{len(ranges)} ranges, more than {MAX_ACK_RANGES}")
    pns = m.pns
    if len(pns) > MAX_ACK_PN_RANGES:
        raise _invalid(m, f"{len(pns)} packet-number ranges, more than {MAX_ACK_PN_RANGES}")
    for a, b in ranges:
        if not a < b:
            raise _invalid(m, f"empty range [{a}, {b})")
    for a, b in pns:
        if not a < b:
            raise _invalid(m, f"empty packet-number range [{a}, {b})")
    head = _ACK.pack(
        m.session, m.stream, m.seq, 1 if m.complete else 0, m.ack_delay_us, len(pns), len(ranges)
    )
    if not ranges and not pns:
        return _HEADERS[Kind.ACK] + head
    return b"".join(
        (
            _HEADERS[Kind.ACK],
            head,
            *(_PN_RANGE.pack(a, b) for a, b in pns),
            *(_RANGE.pack(a, b) for a, b in ranges),
        )
    )


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


# --- parsing ------------------------------------------------------------------------------------


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
    _at_least(data, end + _PORT.size)
    (port,) = _PORT.unpack_from(data, end)
    return (_ip_text(data[pos + 1 : end]), port), end + _PORT.size


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
    req_id, n = _U32_U8.unpack_from(data, H)
    start = H + _U32_U8.size
    end = start + n
    _at_least(data, end)
    try:
        name = data[start:end].decode("utf-8")  # validated by the server: NAME_INVALID
    except UnicodeDecodeError:
        raise MalformedDatagram("string is not UTF-8") from None
    endpoints: tuple[Addr, ...] = ()
    if end < len(data):
        endpoints, end = _endpoints_at(data, end)
    if data[end:].lstrip(b"\x00"):
        raise MalformedDatagram("hello padding not zero")
    return Hello(req_id=req_id, name=name, endpoints=endpoints)


def _parse_welcome(data: bytes) -> Welcome:
    _at_least(data, H + _WELCOME.size)
    req_id, token, heartbeat_ms = _WELCOME.unpack_from(data, H)
    observed, end = _addr_at(data, H + _WELCOME.size)
    _exact(data, end)
    return Welcome(req_id=req_id, token=token, heartbeat_ms=heartbeat_ms, observed=observed)


def _relay_body(data: bytes) -> tuple[bytes, bytes, bytes]:
    _at_least(data, H + _TOKEN_KEY.size + 1)
    token, key = _TOKEN_KEY.unpack_from(data, H)
    datagram = data[H + _TOKEN_KEY.size :]
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
    _at_least(data, H + _TOKEN_KEY_U8.size)
    token, key, n = _TOKEN_KEY_U8.unpack_from(data, H)
    start = H + _TOKEN_KEY_U8.size
    name = _name_at(data, start, n)
    addr, end = _addr_at(data, start + n)
    if addr is None:
        raise MalformedDatagram("punch hint without an address")
    local, end = _endpoints_at(data, end)
    _exact(data, end)
    return Punch(token=token, name=name, key=key, addr=addr, local=local)


def _parse_refused(data: bytes) -> Refused:
    _exact(data, H + _U32_U8.size)
    req_id, reason = _U32_U8.unpack_from(data, H)
    try:
        return Refused(req_id=req_id, reason=RefuseReason(reason))
    except ValueError:
        raise MalformedDatagram("unknown refusal reason") from None


def _zero_padding(data: bytes, end: int) -> None:
    """Bytes from ``end`` on are padding: all zero."""
    if data[end:].strip(b"\x00"):
        raise MalformedDatagram("padding not zero")


def _parse_lookup(data: bytes) -> Lookup:
    _exact(data, LOOKUP_BYTES)
    token, req_id, flags, n = _LOOKUP.unpack_from(data, H)
    if flags & ~_LOOKUP_PUNCH:
        raise MalformedDatagram("unknown lookup flags")
    start = H + _LOOKUP.size
    name = _name_at(data, start, n)
    _zero_padding(data, start + n)
    return Lookup(token=token, req_id=req_id, name=name, punch=bool(flags & _LOOKUP_PUNCH))


def _parse_lookup_reply(data: bytes) -> LookupReply:
    _exact(data, LOOKUP_REPLY_BYTES)
    req_id, n = _U32_U8.unpack_from(data, H)
    start = H + _U32_U8.size
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
    _at_least(data, H + _TOKEN_U32_U8.size)
    token, req_id, n = _TOKEN_U32_U8.unpack_from(data, H)
    start = H + _TOKEN_U32_U8.size
    _exact(data, start + n)
    return ListUsers(token=token, req_id=req_id, after=_name_at(data, start, n, allow_empty=True))


def _parse_list_reply(data: bytes) -> ListReply:
    _at_least(data, H + _LIST_REPLY.size)
    req_id, total, more, count = _LIST_REPLY.unpack_from(data, H)
    if more > 1:
        raise MalformedDatagram("bad flag")
    pos = H + _LIST_REPLY.size
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
    _exact(data, H + _TOKEN_U32.size)
    token, heartbeat_ms = _TOKEN_U32.unpack_from(data, H)
    return HeartbeatAck(token=token, heartbeat_ms=heartbeat_ms)


def _parse_bye(data: bytes) -> Bye:
    _exact(data, H + _TOKEN_U32.size)
    token, req_id = _TOKEN_U32.unpack_from(data, H)
    return Bye(token=token, req_id=req_id)


def _parse_bye_ack(data: bytes) -> ByeAck:
    _exact(data, H + _U32.size)
    (req_id,) = _U32.unpack_from(data, H)
    return ByeAck(req_id=req_id)


def _parse_shutdown(data: bytes) -> Shutdown:
    _exact(data, H + _TOKEN.size)
    return Shutdown(token=data[H:])


def _parse_unknown_session(data: bytes) -> UnknownSession:
    _exact(data, H + _TOKEN.size)
    return UnknownSession(token=data[H:])


def _parse_ping(data: bytes) -> Ping:
    if len(data) != PING_BYTES:
        raise MalformedDatagram("ping not padded")
    (nonce,) = _U32.unpack_from(data, H)
    return Ping(nonce=nonce)


def _parse_pong(data: bytes) -> Pong:
    _exact(data, H + _U32.size)
    (nonce,) = _U32.unpack_from(data, H)
    return Pong(nonce=nonce)


def _parse_data(data: bytes) -> Data:
    _at_least(data, DATA_HEADER_BYTES)
    session, stream, base, seq, pn, msg_id, offset, total, n = _DATA.unpack_from(data, H)
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
    session, stream, seq, complete, delay, n_pns, count = _ACK.unpack_from(data, H)
    if complete > 1 or count > MAX_ACK_RANGES or n_pns > MAX_ACK_PN_RANGES:
        raise MalformedDatagram("bad ack")
    at = ACK_HEADER_BYTES + n_pns * ACK_PN_RANGE_BYTES
    _exact(data, at + count * ACK_RANGE_BYTES)
    pns = tuple(_PN_RANGE.iter_unpack(data[ACK_HEADER_BYTES:at])) if n_pns else ()
    ranges = tuple(_RANGE.iter_unpack(data[at:])) if count else ()
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
if set(_PARSERS) != set(Kind) or len(_BUILDERS) != len(Kind):  # pragma: no cover
    raise ImportError("a message kind lacks its parser or builder")


def decode(data: bytes) -> Message:
    """Parse one datagram, or raise :class:`MalformedDatagram` saying what is wrong with it."""
    if len(data) > MAX_DATAGRAM_BYTES:
        raise MalformedDatagram("oversized")
    if len(data) < H:
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
