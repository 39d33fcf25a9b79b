"""Typed, immutable wire messages. :mod:`chat_protocol.wire.codec` turns them into bytes and back.

Most are frozen dataclasses. The few made for every datagram (LOOKUP and its reply, HEARTBEAT and
its ack, DATA, ACK; and in events.py and transfer/ the records of every message) are
dataclasses with ``Final`` fields and a written-out ``__init__`` instead: the compiled core
(mypyc) builds those natively, 18x faster than the ``__init__`` dataclasses generates, which
runs as Python even there. ``Final`` keeps them immutable to the type checker; equality, hashing
and ``repr`` are the dataclass's, as before.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum
from typing import Final

Addr = tuple[str, int]
"""A UDP address: (IP literal, port)."""


class Kind(IntEnum):
    """The type byte of every datagram (docs/PROTOCOL.md has the table)."""

    HELLO = 0x01
    WELCOME = 0x02
    REFUSED = 0x03
    LOOKUP = 0x04
    LOOKUP_REPLY = 0x05
    LIST = 0x06
    LIST_REPLY = 0x07
    HEARTBEAT = 0x08
    HEARTBEAT_ACK = 0x09
    BYE = 0x0A
    BYE_ACK = 0x0B
    SHUTDOWN = 0x0C
    UNKNOWN_SESSION = 0x0D
    PING = 0x0E
    PONG = 0x0F
    DATA = 0x10
    ACK = 0x11
    PUNCH = 0x12
    RELAY = 0x13
    RELAYED = 0x14


class RefuseReason(IntEnum):
    NAME_TAKEN = 1
    NAME_INVALID = 2
    SERVER_FULL = 3
    TOO_MANY_FROM_ADDRESS = 4
    NAME_BOUND = 5
    """The name belongs to another key: the first key that signed it in owns it for good."""

    def explain(self, name: str) -> str:
        return {
            RefuseReason.NAME_TAKEN: f"the name {name!r} is already signed in; pick another",
            RefuseReason.NAME_INVALID: f"the server does not accept the name {name!r}",
            RefuseReason.SERVER_FULL: "the server is full; try again later",
            RefuseReason.TOO_MANY_FROM_ADDRESS: (
                "too many users from your address are signed in; try again later"
            ),
            RefuseReason.NAME_BOUND: (
                f"the name {name!r} belongs to another key; pick another name, or sign in "
                "with the home directory that holds its key (only the server's operator can "
                "release a name whose key was lost)"
            ),
        }[self]


# --- client -> server ---------------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True, slots=True)
class Hello:
    req_id: int
    name: str
    endpoints: tuple[Addr, ...] = ()
    """The sender's local (private) endpoints, at most ``MAX_LOCAL_ENDPOINTS``: a sign-in
    declares them so peers behind the same NAT can reach it without a hairpin (empty in the
    HELLO a peer's handshake carries)."""


@dataclass(kw_only=True, slots=True, init=False, unsafe_hash=True)
class Lookup:
    # Made per datagram: __init__ written out, fields Final (see chat_protocol.wire.messages).
    token: Final[bytes]
    req_id: Final[int]
    name: Final[str]
    punch: Final[bool]
    """The asker means to send to ``name``: the directory also hints ``name`` to punch towards
    the asker (a PUNCH), rate-limited. ``whois`` and a receiver's sender check ask without it."""

    def __init__(self, *, token: bytes, req_id: int, name: str, punch: bool = False) -> None:
        self.token = token
        self.req_id = req_id
        self.name = name
        self.punch = punch


@dataclass(frozen=True, kw_only=True, slots=True)
class ListUsers:
    token: bytes
    req_id: int
    after: str
    """Return names sorting after this one ('' for the first page)."""


@dataclass(kw_only=True, slots=True, init=False, unsafe_hash=True)
class Heartbeat:
    # Made per datagram: __init__ written out, fields Final (see chat_protocol.wire.messages).
    token: Final[bytes]

    def __init__(self, *, token: bytes) -> None:
        self.token = token


@dataclass(frozen=True, kw_only=True, slots=True)
class Bye:
    token: bytes
    req_id: int


# --- server -> client ---------------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True, slots=True)
class Welcome:
    req_id: int
    token: bytes
    heartbeat_ms: int
    observed: Addr | None = None
    """The user's public endpoint as the directory saw it (the source of its sign-in)."""


@dataclass(frozen=True, kw_only=True, slots=True)
class Refused:
    req_id: int
    reason: RefuseReason


@dataclass(kw_only=True, slots=True, init=False, unsafe_hash=True)
class LookupReply:
    # Made per datagram: __init__ written out, fields Final (see chat_protocol.wire.messages).
    req_id: Final[int]
    name: Final[str]
    """The name as the user signed in with it (case preserved), or the asked name if not found."""
    addr: Final[Addr | None]
    """None: no such user signed in."""
    key: Final[bytes]
    """The user's static public key (32 bytes) as registered at sign-in; b"" when not found."""
    local: Final[tuple[Addr, ...]]
    """The user's private endpoints as it declared them at sign-in (peers behind the same NAT
    reach it there); ``addr`` is its public one, as the directory observes it."""

    def __init__(
        self,
        *,
        req_id: int,
        name: str,
        addr: Addr | None,
        key: bytes = b"",
        local: tuple[Addr, ...] = (),
    ) -> None:
        self.req_id = req_id
        self.name = name
        self.addr = addr
        self.key = key
        self.local = local


@dataclass(frozen=True, kw_only=True, slots=True)
class ListReply:
    req_id: int
    total: int
    more: bool
    names: tuple[str, ...]


@dataclass(kw_only=True, slots=True, init=False, unsafe_hash=True)
class HeartbeatAck:
    # Made per datagram: __init__ written out, fields Final (see chat_protocol.wire.messages).
    token: Final[bytes]
    heartbeat_ms: Final[int]

    def __init__(self, *, token: bytes, heartbeat_ms: int) -> None:
        self.token = token
        self.heartbeat_ms = heartbeat_ms


@dataclass(frozen=True, kw_only=True, slots=True)
class ByeAck:
    req_id: int


@dataclass(frozen=True, kw_only=True, slots=True)
class Shutdown:
    token: bytes


@dataclass(frozen=True, kw_only=True, slots=True)
class UnknownSession:
    token: bytes


@dataclass(frozen=True, kw_only=True, slots=True)
class Ping:
    """Health probe; needs no sign-in. The PONG echoes the nonce and is never larger."""

    nonce: int


@dataclass(frozen=True, kw_only=True, slots=True)
class Pong:
    """Only the nonce: an unauthenticated prober learns that the server answers, nothing else
    (signed-in users learn the user count from LIST_REPLY)."""

    nonce: int


@dataclass(frozen=True, kw_only=True, slots=True)
class Punch:
    """A rendezvous hint (server -> client, inside the client's session): the signed-in user
    ``name`` (key ``key``) looked this client up to send to it; it is at ``addr`` (public, as
    the directory observes it) and ``local`` (private, as it declared them). The receiver sends
    handshake initiations there for a bounded time, so both NATs see outbound traffic first."""

    token: bytes
    name: str
    key: bytes
    addr: Addr
    local: tuple[Addr, ...] = ()


@dataclass(frozen=True, kw_only=True, slots=True)
class Relay:
    """Client -> server: forward ``datagram`` (a secure-layer packet of ours to the peer holding
    ``to``: its own Noise ciphertext, which the directory cannot read) to that peer, over its
    session with the directory. The last resort when no direct path opens."""

    token: bytes
    to: bytes
    datagram: bytes


@dataclass(frozen=True, kw_only=True, slots=True)
class Relayed:
    """Server -> client: ``datagram`` relayed from the signed-in user holding ``sender``. The
    same size as the RELAY it forwards: the relay never amplifies."""

    token: bytes
    sender: bytes
    datagram: bytes


# --- peer <-> peer ------------------------------------------------------------------------------


@dataclass(kw_only=True, slots=True, init=False, unsafe_hash=True)
class Data:
    # Made per datagram: __init__ written out, fields Final (see chat_protocol.wire.messages).
    session: Final[int]
    """Random per client run: a restarted sender starts a new sequence space."""
    stream: Final[int]
    """Sender-wide counter, new for every destination state the sender creates: a receiver that
    sees a higher stream from the same address starts a fresh sequence space."""
    base: Final[int]
    """Lowest seq in this stream the sender has not resolved (acknowledged complete, or given up):
    the receiver need not wait for anything below it."""
    seq: Final[int]
    """Message number within (session, stream), from 0."""
    pn: Final[int]
    """Packet number (u64) in the stream's packet-number space: new for every DATA sent,
    retransmissions included (RFC 9002), so an ACK names exactly which datagrams arrived."""
    msg_id: Final[int]
    """The sender's id for the message (u64): unique within the sender's session, the same in
    every chunk and retransmission."""
    offset: Final[int]
    """Where ``payload`` starts in the message (a multiple of ``CHUNK_PAYLOAD_BYTES``)."""
    total: Final[int]
    """The message's length in bytes."""
    sender: Final[str]
    payload: Final[bytes]

    def __init__(
        self,
        *,
        session: int,
        stream: int,
        base: int,
        seq: int,
        pn: int = 0,
        msg_id: int,
        offset: int,
        total: int,
        sender: str,
        payload: bytes,
    ) -> None:
        self.session = session
        self.stream = stream
        self.base = base
        self.seq = seq
        self.pn = pn
        self.msg_id = msg_id
        self.offset = offset
        self.total = total
        self.sender = sender
        self.payload = payload


@dataclass(kw_only=True, slots=True, init=False, unsafe_hash=True)
class Ack:
    # Made per datagram: __init__ written out, fields Final (see chat_protocol.wire.messages).
    session: Final[int]
    stream: Final[int]
    seq: Final[int]
    complete: Final[bool]
    """The message was shown to the receiver's user. Having all its bytes is not enough: a whole
    message not yet shown is acknowledged with ``complete=False`` and its full range."""
    ranges: Final[tuple[tuple[int, int], ...]]
    """Half-open byte ranges [start, end) received so far, lowest first (empty when
    ``complete``)."""
    ack_delay_us: Final[int]
    """Microseconds (u32) between the arrival of the newest packet number in ``pns`` and this
    ACK leaving (RFC 9002's ack delay; the sender subtracts it from its RTT sample)."""
    pns: Final[tuple[tuple[int, int], ...]]
    """Half-open ranges [start, end) of packet numbers received in this stream, lowest first:
    the newest ones the receiver holds (QUIC's ACK ranges; the sender's loss detection)."""

    def __init__(
        self,
        *,
        session: int,
        stream: int,
        seq: int,
        complete: bool,
        ranges: tuple[tuple[int, int], ...],
        ack_delay_us: int = 0,
        pns: tuple[tuple[int, int], ...] = (),
    ) -> None:
        self.session = session
        self.stream = stream
        self.seq = seq
        self.complete = complete
        self.ranges = ranges
        self.ack_delay_us = ack_delay_us
        self.pns = pns


Message = (
    Hello
    | Welcome
    | Refused
    | Lookup
    | LookupReply
    | ListUsers
    | ListReply
    | Heartbeat
    | HeartbeatAck
    | Bye
    | ByeAck
    | Shutdown
    | UnknownSession
    | Ping
    | Pong
    | Data
    | Ack
    | Punch
    | Relay
    | Relayed
)
