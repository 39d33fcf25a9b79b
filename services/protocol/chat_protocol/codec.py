"""Bytes <-> :mod:`chat_protocol.messages`. Decoding rejects anything malformed.

Every datagram starts with a 4-byte header: magic ``PC``, protocol version, kind. Integers are
big-endian. Strings are a 1-byte length then UTF-8. docs/PROTOCOL.md has the full table.
"""

from __future__ import annotations

import functools
import ipaddress
import struct

from chat_protocol.const import (
    MAGIC,
    MAX_ACK_RANGES,
    MAX_DATAGRAM_BYTES,
    MAX_MESSAGE_BYTES,
    MIN_HELLO_BYTES,
    PROTOCOL_VERSION,
)
from chat_protocol.errors import MalformedDatagram
from chat_protocol.messages import (
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
    Refused,
    RefuseReason,
    Shutdown,
    UnknownSession,
    Welcome,
)
from chat_protocol.names import is_valid_name

_KINDS = {k.value: k for k in Kind}
TOKEN_BYTES = 8
HEARTBEAT_BYTES = 12
LOOKUP_FIXED = struct.Struct("!4x8sIB")  # after the header: token, req_id, name length
PING_BYTES = 16
HEADER = struct.Struct("!2sBB")
DATA_FIXED = struct.Struct("!IIIIII")  # session, stream, base, seq, offset, total
ACK_FIXED = struct.Struct("!IIIBB")  # session, stream, seq, complete, range count
ACK_OVERHEAD_BYTES = HEADER.size + ACK_FIXED.size
RANGE = struct.Struct("!II")


class _Reader:
    __slots__ = ("_data", "_pos")

    def __init__(self, data: bytes) -> None:
        self._data = data
        self._pos = HEADER.size

    def take(self, n: int) -> bytes:
        end = self._pos + n
        if end > len(self._data):
            raise MalformedDatagram("truncated")
        out = self._data[self._pos : end]
        self._pos = end
        return out

    def u8(self) -> int:
        return self.take(1)[0]

    def u16(self) -> int:
        return int.from_bytes(self.take(2), "big")

    def u32(self) -> int:
        return int.from_bytes(self.take(4), "big")

    def text(self) -> str:
        raw = self.take(self.u8())
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise MalformedDatagram("string is not UTF-8") from exc

    def name(self, *, allow_empty: bool = False) -> str:
        value = self.text()
        if not (allow_empty and value == "") and not is_valid_name(value):
            raise MalformedDatagram("invalid user name")
        return value

    def addr(self) -> Addr | None:
        family = self.u8()
        if family == 0:
            return None
        if family not in (4, 6):
            raise MalformedDatagram("unknown address family")
        return (_ip_text(self.take(4 if family == 4 else 16)), self.u16())

    def rest(self) -> bytes:
        out = self._data[self._pos :]
        self._pos = len(self._data)
        return out

    def end(self) -> None:
        if self._pos != len(self._data):
            raise MalformedDatagram("trailing bytes")


def _text(value: str) -> bytes:
    raw = value.encode("utf-8")
    if len(raw) > 255:
        raise ValueError("string longer than 255 bytes")
    return bytes([len(raw)]) + raw


@functools.lru_cache(maxsize=65536)
def _addr(addr: Addr | None) -> bytes:
    if addr is None:
        return b"\x00"
    ip = ipaddress.ip_address(addr[0])
    return bytes([ip.version]) + ip.packed + addr[1].to_bytes(2, "big")


@functools.lru_cache(maxsize=65536)
def _valid_name(raw: bytes) -> str | None:
    try:
        name = raw.decode("utf-8")
    except UnicodeDecodeError:
        return None
    return name if is_valid_name(name) else None


@functools.lru_cache(maxsize=65536)
def _ip_text(packed: bytes) -> str:
    return str(ipaddress.ip_address(packed))


def _header(kind: Kind) -> bytes:
    return HEADER.pack(MAGIC, PROTOCOL_VERSION, kind)


def _u32(v: int) -> bytes:
    return v.to_bytes(4, "big")


def encode(msg: Message) -> bytes:
    """Serialise one message. Raises ValueError for values that cannot be represented."""
    match msg:
        case Data():
            return b"".join(
                (
                    _header(Kind.DATA),
                    DATA_FIXED.pack(
                        msg.session, msg.stream, msg.base, msg.seq, msg.offset, msg.total
                    ),
                    _text(msg.sender),
                    msg.payload,
                )
            )
        case Ack():
            return b"".join(
                (
                    _header(Kind.ACK),
                    ACK_FIXED.pack(
                        msg.session, msg.stream, msg.seq, int(msg.complete), len(msg.ranges)
                    ),
                    *(RANGE.pack(a, b) for a, b in msg.ranges),
                )
            )
        case LookupReply():
            return _header(Kind.LOOKUP_REPLY) + _u32(msg.req_id) + _text(msg.name) + _addr(msg.addr)
        case HeartbeatAck():
            return _header(Kind.HEARTBEAT_ACK) + msg.token + _u32(msg.heartbeat_ms)
        case Hello():
            out = _header(Kind.HELLO) + _u32(msg.req_id) + _text(msg.name)
            return out.ljust(MIN_HELLO_BYTES, b"\x00")
        case Welcome():
            return _header(Kind.WELCOME) + _u32(msg.req_id) + msg.token + _u32(msg.heartbeat_ms)
        case Refused():
            return _header(Kind.REFUSED) + _u32(msg.req_id) + bytes([msg.reason])
        case Lookup():
            return _header(Kind.LOOKUP) + msg.token + _u32(msg.req_id) + _text(msg.name)
        case ListUsers():
            return _header(Kind.LIST) + msg.token + _u32(msg.req_id) + _text(msg.after)
        case ListReply():
            return b"".join(
                (
                    _header(Kind.LIST_REPLY),
                    _u32(msg.req_id),
                    _u32(msg.total),
                    bytes([int(msg.more)]),
                    len(msg.names).to_bytes(2, "big"),
                    *(_text(n) for n in msg.names),
                )
            )
        case Heartbeat():
            return _header(Kind.HEARTBEAT) + msg.token
        case Bye():
            return _header(Kind.BYE) + msg.token + _u32(msg.req_id)
        case ByeAck():
            return _header(Kind.BYE_ACK) + _u32(msg.req_id)
        case Shutdown():
            return _header(Kind.SHUTDOWN) + msg.token
        case UnknownSession():
            return _header(Kind.UNKNOWN_SESSION) + msg.token
        case Ping():
            return (_header(Kind.PING) + _u32(msg.nonce)).ljust(PING_BYTES, b"\x00")
        case Pong():
            return _header(Kind.PONG) + _u32(msg.nonce) + _u32(msg.users)
    raise TypeError(f"not a message: {msg!r}")  # pragma: no cover


_DATA_HEAD = struct.Struct("!4xIIIIIIB")  # the fixed fields and the sender name's length
_ACK_HEAD = struct.Struct("!4xIIIBB")


def _decode_data(data: bytes) -> Data:
    if len(data) < _DATA_HEAD.size:
        raise MalformedDatagram("truncated")
    session, stream, base, seq, offset, total, n = _DATA_HEAD.unpack_from(data)
    start = _DATA_HEAD.size + n
    if len(data) < start:
        raise MalformedDatagram("truncated")
    sender = _valid_name(data[_DATA_HEAD.size : start])
    if sender is None:
        raise MalformedDatagram("invalid user name")
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
        offset=offset,
        total=total,
        sender=sender,
        payload=payload,
    )


def _decode_ack(data: bytes) -> Ack:
    if len(data) < _ACK_HEAD.size:
        raise MalformedDatagram("truncated")
    session, stream, seq, complete, count = _ACK_HEAD.unpack_from(data)
    if complete > 1 or count > MAX_ACK_RANGES:
        raise MalformedDatagram("bad ack")
    if len(data) != _ACK_HEAD.size + count * RANGE.size:
        raise MalformedDatagram("truncated" if len(data) < _ACK_HEAD.size else "trailing bytes")
    ranges = tuple(RANGE.iter_unpack(data[_ACK_HEAD.size :])) if count else ()
    if any(a >= b for a, b in ranges):
        raise MalformedDatagram("empty ack range")
    return Ack(session=session, stream=stream, seq=seq, complete=bool(complete), ranges=ranges)


def decode(data: bytes) -> Message:
    """Parse one datagram, or raise :class:`MalformedDatagram` saying what is wrong with it."""
    if len(data) > MAX_DATAGRAM_BYTES:
        raise MalformedDatagram("oversized")
    if len(data) < HEADER.size:
        raise MalformedDatagram("truncated")
    magic, version, kind_byte = HEADER.unpack_from(data)
    if magic != MAGIC:
        raise MalformedDatagram("bad magic")
    if version != PROTOCOL_VERSION:
        raise MalformedDatagram("unsupported version")
    kind = _KINDS.get(kind_byte)
    if kind is None:
        raise MalformedDatagram("unknown kind")
    # The server's hot requests, parsed without the general reader.
    if kind is Kind.HEARTBEAT and len(data) == HEARTBEAT_BYTES:
        return Heartbeat(token=data[4:12])
    if kind is Kind.LOOKUP and len(data) >= LOOKUP_FIXED.size:
        token, req_id, n = LOOKUP_FIXED.unpack_from(data)
        if len(data) == LOOKUP_FIXED.size + n:
            name = _valid_name(data[LOOKUP_FIXED.size :])
            if name is None:
                raise MalformedDatagram("invalid user name")
            return Lookup(token=token, req_id=req_id, name=name)
    if kind is Kind.DATA:
        return _decode_data(data)
    if kind is Kind.ACK:
        return _decode_ack(data)
    r = _Reader(data)
    msg: Message
    if kind is Kind.HELLO:
        if len(data) < MIN_HELLO_BYTES:
            raise MalformedDatagram("hello not padded")
        req_id = r.u32()
        name = r.text()  # validated by the server, which answers NAME_INVALID
        if any(r.rest()):
            raise MalformedDatagram("hello padding not zero")
        return Hello(req_id=req_id, name=name)
    elif kind is Kind.WELCOME:
        msg = Welcome(req_id=r.u32(), token=r.take(TOKEN_BYTES), heartbeat_ms=r.u32())
    elif kind is Kind.REFUSED:
        req_id = r.u32()
        try:
            reason = RefuseReason(r.u8())
        except ValueError:
            raise MalformedDatagram("unknown refusal reason") from None
        msg = Refused(req_id=req_id, reason=reason)
    elif kind is Kind.LOOKUP:
        msg = Lookup(token=r.take(TOKEN_BYTES), req_id=r.u32(), name=r.name())
    elif kind is Kind.LOOKUP_REPLY:
        msg = LookupReply(req_id=r.u32(), name=r.name(), addr=r.addr())
    elif kind is Kind.LIST:
        msg = ListUsers(token=r.take(TOKEN_BYTES), req_id=r.u32(), after=r.name(allow_empty=True))
    elif kind is Kind.LIST_REPLY:
        req_id, total, more, count = r.u32(), r.u32(), r.u8(), r.u16()
        names = tuple(r.name() for _ in range(count))
        msg = ListReply(req_id=req_id, total=total, more=bool(more), names=names)
    elif kind is Kind.HEARTBEAT:
        msg = Heartbeat(token=r.take(TOKEN_BYTES))
    elif kind is Kind.HEARTBEAT_ACK:
        msg = HeartbeatAck(token=r.take(TOKEN_BYTES), heartbeat_ms=r.u32())
    elif kind is Kind.BYE:
        msg = Bye(token=r.take(TOKEN_BYTES), req_id=r.u32())
    elif kind is Kind.BYE_ACK:
        msg = ByeAck(req_id=r.u32())
    elif kind is Kind.SHUTDOWN:
        msg = Shutdown(token=r.take(TOKEN_BYTES))
    elif kind is Kind.UNKNOWN_SESSION:
        msg = UnknownSession(token=r.take(TOKEN_BYTES))
    elif kind is Kind.PING:
        if len(data) != PING_BYTES:
            raise MalformedDatagram("ping not padded")
        msg = Ping(nonce=r.u32())
        r.rest()
    else:
        assert kind is Kind.PONG
        msg = Pong(nonce=r.u32(), users=r.u32())
    r.end()
    return msg
