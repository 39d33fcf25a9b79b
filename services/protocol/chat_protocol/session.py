"""Secure sessions over UDP: Noise IK handshakes, then ChaCha20-Poly1305 datagrams.

The design is WireGuard's (its paper, sections 5 and 6), on :mod:`chat_protocol.noise`'s
``Noise_IK_25519_ChaChaPoly_SHA256``. Every datagram of the chat travels inside one of the packets
below; the codec's plaintext datagrams (``PC`` ...) become the payload of a TRANSPORT packet. The
packet type byte has its high bit set, so it never equals the ``P`` that starts a plaintext one.

Layers, bottom up: the packet formats (``parse_packet`` and the builders), :class:`ReplayWindow`,
:class:`SecureSession` (one pair of transport keys), :class:`CookieJar` (stateless proof of
address), :class:`Initiator` and :class:`Responder` (the two roles of one handshake), and
:class:`SecureEndpoint`, which owns them for one UDP socket. All of it is sans-I/O: datagrams,
``now`` (seconds, any monotonic origin) and ``random_bytes`` go in; datagrams and events come out.

Packets (integers big-endian; ``MAC(k, x)`` is HMAC-SHA256(k, x) cut to 16 bytes; ``HASH`` is
SHA-256; ``enc(x)`` is a Noise ``EncryptAndHash``, 16 bytes longer than ``x``):

HANDSHAKE_INIT, initiator -> responder; padded to at least ``HANDSHAKE_INIT_MIN_BYTES`` (256)::

    offset  size    field
    0       1       type 0x81
    1       4       sender index: the initiator's index for this session
    5       32      e: the initiator's ephemeral public key
    37      48      enc(s): the initiator's static public key
    85      26+n+p  enc(timestamp u64 | payload length u16 | payload (n) | p zero bytes of padding)
    -32     16      mac1 = MAC(HASH("mac1----" | responder's static key), bytes [0, -32))
    -16     16      mac2 = MAC(cookie, bytes [0, -16)), or 16 zero bytes without a cookie

HANDSHAKE_RESPONSE, responder -> initiator; 75 + n bytes, never more than the initiation::

    0       1       type 0x82
    1       4       sender index: the responder's index for this session
    5       4       receiver index: the initiation's sender index
    9       32      e: the responder's ephemeral public key
    41      18+n    enc(payload length u16 | payload (n))
    -16     16      mac1 = MAC(HASH("mac1----" | initiator's static key), bytes [0, -16))

COOKIE_REPLY, responder under load -> initiator; 61 bytes::

    0       1       type 0x83
    1       4       receiver index: the initiation's sender index
    5       24      nonce, random
    29      32      the 16-byte cookie, sealed with ChaCha20-Poly1305: key = HMAC-SHA256(
                    HASH("cookie--" | responder's static key), nonce), nonce 0, AD = the
                    initiation's mac1 (so only who saw that initiation can forge a reply)

TRANSPORT, either way once a session exists; 29 + n bytes::

    0       1       type 0x84
    1       4       receiver index: the index the recipient chose for this session
    5       8       counter: the AEAD nonce, 0, 1, 2, ... per direction
    13      n+16    ChaCha20-Poly1305(key of this direction, counter, AD empty, plaintext (n))

KEY_REQUEST, anyone -> a responder; at least ``KEY_REQUEST_MIN_BYTES`` (64)::

    0       1       type 0x85
    1       8       nonce, random, echoed
    9       ...     zero padding

KEY_REPLY, responder -> requester; 41 bytes::

    0       1       type 0x86
    1       8       the request's nonce
    9       32      the responder's static public key (unauthenticated: check its fingerprint)

Who may send what to whom, and when (the anti-amplification rule: before an address has proven
it receives, nothing sent to it is larger than what it sent):

* A responder keeps **no state at all** for an initiation until message 1 authenticates: mac1 is
  checked first (one HMAC), then, under load, mac2 (one more); only then the Noise work. Under
  load an initiation without a valid mac2 gets a COOKIE_REPLY (61 bytes < 256) and nothing is
  kept. The cookie is a MAC, under a secret the responder draws anew every
  ``COOKIE_SECRET_LIFETIME_S``, over the source address and the secret's period number: an
  initiator that echoes it proved it receives at that address.
* After message 1 authenticates, the caller decides (:class:`IncomingHandshake`); accepting
  allocates one **unconfirmed** session (bounded in number, keyed by index, owned by the
  authenticated static key) and sends the response, which is never larger than the initiation.
* The initiator's address counts as proven only when its **first TRANSPORT datagram** arrives
  (it could only build it from the response). Until then the responder sends nothing more:
  :meth:`SecureSession.encrypt` refuses. The initiator therefore sends one at once, even an
  empty one (a keepalive), when its handshake completes.

Sessions are found by the receiver index, never by source address, so a peer whose NAT rebinds
keeps its session; :attr:`SecureSession.remote_addr` follows the source of the newest
authenticated datagram.
"""

from __future__ import annotations

import functools
import math
import struct
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from enum import IntEnum
from typing import Final

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305
from cryptography.hazmat.primitives.constant_time import bytes_eq

from chat_protocol.const import (
    COOKIE_LATENCY_S,
    COOKIE_SECRET_LIFETIME_S,
    EVICTION_SCAN,
    HANDSHAKE_INIT_MIN_BYTES,
    KEY_REQUEST_MIN_BYTES,
    LEAN_CONTEXTS,
    MAX_DATAGRAM_BYTES,
    MAX_SECURE_PEERS,
    MAX_UNCONFIRMED_SESSIONS,
    REJECT_AFTER_MESSAGES,
    REJECT_AFTER_TIME_S,
    REKEY_AFTER_MESSAGES,
    REKEY_AFTER_TIME_S,
    REPLAY_WINDOW_BITS,
    RESPONDER_REKEY_AFTER_TIME_S,
    SECURE_PROLOGUE,
    UNCONFIRMED_SESSION_TIMEOUT_S,
)
from chat_protocol.counters import Counters
from chat_protocol.errors import MalformedDatagram
from chat_protocol.messages import Addr
from chat_protocol.noise import (
    DHLEN,
    IK,
    KEYLEN,
    TAGLEN,
    ContextCache,
    HandshakeResult,
    HandshakeState,
    HashName,
    KeyPair,
    RandomBytes,
    TransportCipher,
    decrypt_at,
    encrypt_at,
    hash_bytes,
    hmac_hash,
)
from chat_protocol.secure_errors import (
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

HASH = HashName.SHA256
"""The Noise hash of the session layer; the MACs and cookie keys use it too."""


class PacketType(IntEnum):
    """The first byte of every secure datagram (high bit set: never a codec ``PC`` datagram)."""

    HANDSHAKE_INIT = 0x81
    HANDSHAKE_RESPONSE = 0x82
    COOKIE_REPLY = 0x83
    TRANSPORT = 0x84
    KEY_REQUEST = 0x85
    KEY_REPLY = 0x86


MAC_BYTES = 16
COOKIE_BYTES = 16
COOKIE_NONCE_BYTES = 24
KEY_NONCE_BYTES = 8
_LABEL_MAC1 = b"mac1----"
_LABEL_COOKIE = b"cookie--"
_ZERO_MAC = bytes(MAC_BYTES)
_ZERO_NONCE = bytes(12)

_U32 = struct.Struct("!I")
_INIT_HEAD = struct.Struct("!BI")  # type, sender
_RESPONSE_HEAD = struct.Struct("!BII")  # type, sender, receiver
_COOKIE_HEAD = struct.Struct("!BI")  # type, receiver
_TRANSPORT_HEAD = struct.Struct("!BIQ")  # type, receiver, counter
_INIT_FRAMING = struct.Struct("!QH")  # timestamp, payload length
_RESPONSE_FRAMING = struct.Struct("!H")  # payload length

INIT_NOISE_MIN_BYTES = DHLEN + (DHLEN + TAGLEN) + TAGLEN
"""IK message 1 with an empty Noise payload: e, enc(s), enc(empty)."""
INIT_OVERHEAD_BYTES = _INIT_HEAD.size + INIT_NOISE_MIN_BYTES + _INIT_FRAMING.size + 2 * MAC_BYTES
"""An initiation with an empty payload and no padding: 143 bytes."""
RESPONSE_OVERHEAD_BYTES = _RESPONSE_HEAD.size + DHLEN + TAGLEN + _RESPONSE_FRAMING.size + MAC_BYTES
"""A response with an empty payload: 75 bytes."""
COOKIE_REPLY_BYTES = _COOKIE_HEAD.size + COOKIE_NONCE_BYTES + COOKIE_BYTES + TAGLEN
"""61 bytes."""
TRANSPORT_OVERHEAD_BYTES = _TRANSPORT_HEAD.size + TAGLEN
"""29 bytes: a TRANSPORT datagram is its plaintext plus this."""
KEY_REPLY_BYTES = 1 + KEY_NONCE_BYTES + DHLEN
"""41 bytes."""
MAX_TRANSPORT_PLAINTEXT_BYTES = MAX_DATAGRAM_BYTES - TRANSPORT_OVERHEAD_BYTES
"""Largest plaintext one TRANSPORT datagram carries (1371 bytes)."""
MAX_INIT_PAYLOAD_BYTES = MAX_DATAGRAM_BYTES - INIT_OVERHEAD_BYTES
MAX_RESPONSE_PAYLOAD_BYTES = MAX_DATAGRAM_BYTES - RESPONSE_OVERHEAD_BYTES


def _mac(key: bytes, data: bytes) -> bytes:
    return hmac_hash(HASH, key, data)[:MAC_BYTES]


def mac_key(label: bytes, static_public: bytes) -> bytes:
    """``HASH(label | static key)``: the mac1 key (label ``mac1----``) or cookie key (``cookie--``)
    of the party owning ``static_public``; anyone who knows that public key can compute it."""
    return hash_bytes(HASH, label + static_public)


def _addr_bytes(addr: Addr) -> bytes:
    return f"{addr[0]}\x00{addr[1]}".encode("utf-8", "surrogateescape")


# --- packets -------------------------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True, slots=True)
class HandshakeInit:
    sender: int
    noise: bytes
    """IK message 1: e, enc(s), enc(framed payload)."""
    mac1: bytes
    mac2: bytes
    raw: bytes
    """The whole datagram (the MACs cover its prefix)."""


@dataclass(frozen=True, kw_only=True, slots=True)
class HandshakeResponse:
    sender: int
    receiver: int
    noise: bytes
    """IK message 2: e, enc(framed payload)."""
    mac1: bytes
    raw: bytes


@dataclass(frozen=True, kw_only=True, slots=True)
class CookieReply:
    receiver: int
    nonce: bytes
    sealed_cookie: bytes


@dataclass(frozen=True, kw_only=True, slots=True)
class Transport:
    receiver: int
    counter: int
    ciphertext: bytes


@dataclass(frozen=True, kw_only=True, slots=True)
class KeyRequest:
    nonce: bytes


@dataclass(frozen=True, kw_only=True, slots=True)
class KeyReply:
    nonce: bytes
    key: bytes


Packet = HandshakeInit | HandshakeResponse | CookieReply | Transport | KeyRequest | KeyReply

_TYPES = {t.value: t for t in PacketType}


def packet_type(datagram: bytes) -> PacketType | None:
    """The packet type of ``datagram``, or None if it is no secure packet at all."""
    return _TYPES.get(datagram[0]) if datagram else None


def parse_packet(datagram: bytes) -> Packet:
    """Split a datagram into its fields; checks sizes only (MACs and keys are checked by their
    owners). Raises :class:`MalformedDatagram` on anything else."""
    kind = packet_type(datagram)
    size = len(datagram)
    if kind is None:
        raise MalformedDatagram("not a secure packet")
    if size > MAX_DATAGRAM_BYTES:
        raise MalformedDatagram("oversized datagram")
    if kind is PacketType.TRANSPORT:
        if size < TRANSPORT_OVERHEAD_BYTES:
            raise MalformedDatagram("truncated transport datagram")
        _, receiver, counter = _TRANSPORT_HEAD.unpack_from(datagram)
        return Transport(
            receiver=receiver, counter=counter, ciphertext=datagram[_TRANSPORT_HEAD.size :]
        )
    if kind is PacketType.HANDSHAKE_INIT:
        if size < INIT_OVERHEAD_BYTES:
            raise MalformedDatagram("truncated handshake initiation")
        _, sender = _INIT_HEAD.unpack_from(datagram)
        return HandshakeInit(
            sender=sender,
            noise=datagram[_INIT_HEAD.size : -2 * MAC_BYTES],
            mac1=datagram[-2 * MAC_BYTES : -MAC_BYTES],
            mac2=datagram[-MAC_BYTES:],
            raw=datagram,
        )
    if kind is PacketType.HANDSHAKE_RESPONSE:
        if size < RESPONSE_OVERHEAD_BYTES:
            raise MalformedDatagram("truncated handshake response")
        _, sender, receiver = _RESPONSE_HEAD.unpack_from(datagram)
        return HandshakeResponse(
            sender=sender,
            receiver=receiver,
            noise=datagram[_RESPONSE_HEAD.size : -MAC_BYTES],
            mac1=datagram[-MAC_BYTES:],
            raw=datagram,
        )
    if kind is PacketType.COOKIE_REPLY:
        if size != COOKIE_REPLY_BYTES:
            raise MalformedDatagram("cookie reply of the wrong size")
        _, receiver = _COOKIE_HEAD.unpack_from(datagram)
        start = _COOKIE_HEAD.size
        return CookieReply(
            receiver=receiver,
            nonce=datagram[start : start + COOKIE_NONCE_BYTES],
            sealed_cookie=datagram[start + COOKIE_NONCE_BYTES :],
        )
    if kind is PacketType.KEY_REQUEST:
        if size < KEY_REQUEST_MIN_BYTES:
            raise MalformedDatagram("key request not padded")
        return KeyRequest(nonce=datagram[1 : 1 + KEY_NONCE_BYTES])
    if size != KEY_REPLY_BYTES:
        raise MalformedDatagram("key reply of the wrong size")
    return KeyReply(nonce=datagram[1 : 1 + KEY_NONCE_BYTES], key=datagram[1 + KEY_NONCE_BYTES :])


_TRANSPORT_TYPE = PacketType.TRANSPORT.value
_TRANSPORT_BYTE = bytes([_TRANSPORT_TYPE])


def _split_transport(datagram: bytes) -> tuple[int, int, bytes]:
    """(receiver, counter, ciphertext) of a TRANSPORT datagram, without building a Transport."""
    if (
        not TRANSPORT_OVERHEAD_BYTES <= len(datagram) <= MAX_DATAGRAM_BYTES
        or datagram[0] != _TRANSPORT_TYPE
    ):
        raise MalformedDatagram("not a transport datagram")
    _, receiver, counter = _TRANSPORT_HEAD.unpack_from(datagram)
    return receiver, counter, datagram[_TRANSPORT_HEAD.size :]


def build_key_request(nonce: bytes) -> bytes:
    if len(nonce) != KEY_NONCE_BYTES:
        raise LocalSecureError(f"a key request nonce is {KEY_NONCE_BYTES} bytes")
    return bytes([PacketType.KEY_REQUEST]) + nonce.ljust(KEY_REQUEST_MIN_BYTES - 1, b"\x00")


def build_key_reply(request: KeyRequest, static_public: bytes) -> bytes:
    return bytes([PacketType.KEY_REPLY]) + request.nonce + static_public


# --- replay window -------------------------------------------------------------------------------


@functools.lru_cache(maxsize=8)
def _mask(size: int) -> int:
    """``size`` one bits: shared by every window of that size (an 8192-bit int is 1 KiB)."""
    return (1 << size) - 1


def _window_check(newest: int, bits: int, size: int, counter: int) -> None:
    """:meth:`ReplayWindow.check` on a window's two ints (a session keeps them inline)."""
    if counter > newest:
        return
    back = newest - counter
    if back >= size:
        raise StaleDatagram("counter older than the replay window")
    if (bits >> back) & 1:
        raise ReplayedDatagram("counter already received")


def _window_accept(newest: int, bits: int, size: int, mask: int, counter: int) -> int:
    """The bitmap after recording ``counter`` (already checked) in a window of ``size`` (``mask``
    is ``_mask(size)``); the newest counter is then ``max(newest, counter)``."""
    if counter > newest:
        shift = counter - newest
        return 1 if shift >= size else ((bits << shift) | 1) & mask
    return bits | (1 << (newest - counter))


class ReplayWindow:
    """Which counters a receiver has accepted (RFC 6479; WireGuard's ``receive.c``).

    Holds the newest accepted counter and a bitmap of the ``size`` counters ending at it (a Python
    int; bit ``i`` stands for ``newest - i``). A counter above the newest is new; one in the
    window is new if its bit is clear; one ``size`` or more below the newest is too old to tell
    and is refused. :meth:`check` before decrypting (cheap, changes nothing), :meth:`accept` only
    after the datagram authenticated, so forged counters cannot move the window.

    (A :class:`SecureSession` keeps the same two ints in its own slots, through the same
    functions, rather than one of these per session.)
    """

    __slots__ = ("_bits", "_mask", "_newest", "size")

    def __init__(self, size: int = REPLAY_WINDOW_BITS) -> None:
        if size < 1:
            raise LocalSecureError("a replay window holds at least one counter")
        self.size = size
        self._mask = _mask(size)
        self._newest = -1
        self._bits = 0

    @property
    def newest(self) -> int | None:
        """The highest counter accepted so far, or None before the first."""
        return None if self._newest < 0 else self._newest

    def check(self, counter: int) -> None:
        """Raise :class:`ReplayedDatagram` or :class:`StaleDatagram` unless ``counter`` is new."""
        _window_check(self._newest, self._bits, self.size, counter)

    def accept(self, counter: int) -> bool:
        """Record ``counter`` as received; True if it is the newest now. Checks it first."""
        self.check(counter)
        self._bits = _window_accept(self._newest, self._bits, self.size, self._mask, counter)
        if counter > self._newest:
            self._newest = counter
            return True
        return False


# --- transport sessions --------------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True, slots=True)
class SessionLimits:
    """When a session asks for a new handshake, and when it stops working (tests shrink these)."""

    rekey_after_messages: int = REKEY_AFTER_MESSAGES
    reject_after_messages: int = REJECT_AFTER_MESSAGES
    rekey_after_time_s: float = REKEY_AFTER_TIME_S
    responder_rekey_after_time_s: float = RESPONDER_REKEY_AFTER_TIME_S
    reject_after_time_s: float = REJECT_AFTER_TIME_S
    unconfirmed_timeout_s: float = UNCONFIRMED_SESSION_TIMEOUT_S


DEFAULT_SESSION_LIMITS = SessionLimits()


@dataclass(kw_only=True, slots=True)
class SessionCounters(Counters):
    """One session's counts, as :attr:`SecureSession.counters` reads them (a snapshot)."""

    sent: int = 0
    received: int = 0
    replayed: int = 0
    """Datagrams dropped because their counter was already received."""
    stale: int = 0
    """Datagrams dropped because their counter was older than the replay window."""
    forged: int = 0
    """Datagrams dropped because they did not authenticate."""


_WINDOW_MASK: Final = _mask(REPLAY_WINDOW_BITS)


class SecureSession:
    """One pair of transport keys with one peer, from one handshake.

    :meth:`encrypt` turns a plaintext into a TRANSPORT datagram for the peer; :meth:`decrypt`
    turns one of the peer's back. The responder's side is *unconfirmed* until the first
    datagram from the initiator authenticates (that proves the initiator's address and, for IK,
    gives the responder's keys strong forward secrecy); before that it refuses to send.

    States::

        unconfirmed --first datagram authenticates--> confirmed       (responder only)
        unconfirmed --age >= unconfirmed_timeout_s--> expired
        confirmed   --age >= rekey time, or rekey_after_messages sent--> confirmed, needs_rekey()
        confirmed   --age >= reject_after_time_s, or reject_after_messages sent--> expired

    An initiator's session starts confirmed. Expired sessions raise :class:`SessionExpired`
    on :meth:`encrypt` and :class:`UnknownReceiver` on :meth:`decrypt`.

    A server holds one of these per signed-in user, so it is kept small: the replay window
    (:class:`ReplayWindow`'s two ints) and the counts live in its own slots. A lean session (one
    given ``contexts``) keeps its two directions as bare keys and borrows their AEAD contexts
    from that shared, bounded cache (see :data:`chat_protocol.noise.TransportCipher`), and drops
    the handshake hash (None).
    """

    __slots__ = (
        "_bits",
        "_drops",
        "_newest",
        "_receive",
        "_received",
        "_send",
        "_send_counter",
        "confirmed",
        "created_at",
        "handshake_hash",
        "is_initiator",
        "limits",
        "local_index",
        "remote_addr",
        "remote_index",
        "remote_static",
    )

    def __init__(
        self,
        *,
        result: HandshakeResult,
        local_index: int,
        remote_index: int,
        is_initiator: bool,
        remote_addr: Addr,
        now: float,
        limits: SessionLimits = DEFAULT_SESSION_LIMITS,
        contexts: ContextCache | None = None,
    ) -> None:
        send_key, receive_key = result.send.key, result.receive.key
        if send_key is None or receive_key is None:
            raise LocalSecureError("a handshake result without transport keys")
        lean = contexts is not None
        # A lean session keeps its two keys as one 64-byte string (33 bytes less than two):
        # the send key, then the receive key; in _receive, the cache it borrows contexts from.
        self._send: TransportCipher = (
            send_key + receive_key if lean else ChaCha20Poly1305(send_key)
        )
        self._receive: ChaCha20Poly1305 | ContextCache = (
            contexts if contexts is not None else ChaCha20Poly1305(receive_key)
        )
        self._send_counter = 0
        self._newest = -1
        """The replay window: the newest counter accepted (-1 before the first) ..."""
        self._bits = 0
        """... and the bitmap of the ``REPLAY_WINDOW_BITS`` counters ending at it."""
        self._received = 0
        self._drops: SessionCounters | None = None
        """Datagrams dropped, by cause (``replayed``, ``stale``, ``forged``): made at the first."""
        self.remote_static = result.remote_static
        self.handshake_hash: bytes | None = None if lean else result.handshake_hash
        """The Noise handshake hash (a unique name of this session, for channel binding), or
        None in a lean session."""
        self.local_index = local_index
        """Our index: the peer's TRANSPORT datagrams carry it as their receiver."""
        self.remote_index = remote_index
        """The peer's index, written into our TRANSPORT datagrams."""
        self.is_initiator = is_initiator
        self.remote_addr = remote_addr
        """Where the newest authenticated datagram came from: send replies here."""
        self.confirmed = is_initiator
        self.created_at = now
        self.limits = limits

    @property
    def counters(self) -> SessionCounters:
        """What this session sent and received, and what it dropped, by cause."""
        drops = self._drops
        return SessionCounters(
            sent=self._send_counter,
            received=self._received,
            replayed=drops.replayed if drops else 0,
            stale=drops.stale if drops else 0,
            forged=drops.forged if drops else 0,
        )

    def _dropped(self) -> SessionCounters:
        if self._drops is None:
            self._drops = SessionCounters()
        return self._drops

    def expired(self, now: float) -> bool:
        """True once the session may neither send nor receive (too old, or never confirmed)."""
        age = now - self.created_at
        if not self.confirmed and age >= self.limits.unconfirmed_timeout_s:
            return True
        return age >= self.limits.reject_after_time_s

    def needs_rekey(self, now: float) -> bool:
        """True when this side should start a new handshake (the old session keeps working)."""
        if self._send_counter >= self.limits.rekey_after_messages:
            return True
        limit = (
            self.limits.rekey_after_time_s
            if self.is_initiator
            else self.limits.responder_rekey_after_time_s
        )
        return self.confirmed and now - self.created_at >= limit

    def encrypt(self, plaintext: bytes, now: float) -> bytes:
        """A TRANSPORT datagram carrying ``plaintext`` (b"" is a keepalive) to the peer."""
        if not self.confirmed:
            raise LocalSecureError("the initiator has not confirmed this session yet")
        if len(plaintext) > MAX_TRANSPORT_PLAINTEXT_BYTES:
            raise LocalSecureError(
                f"a transport datagram carries at most {MAX_TRANSPORT_PLAINTEXT_BYTES} bytes"
            )
        counter = self._send_counter
        if counter >= self.limits.reject_after_messages or self.expired(now):
            raise SessionExpired("session expired: start a new handshake")
        self._send_counter = counter + 1
        head = _TRANSPORT_HEAD.pack(PacketType.TRANSPORT, self.remote_index, counter)
        return head + encrypt_at(self._aead(sending=True), counter, b"", plaintext)

    def _aead(self, *, sending: bool) -> ChaCha20Poly1305:
        """The context to send (or receive) with: the session's own, or, in a lean session,
        the one its cache holds for the first (or second) of its two keys."""
        own = self._send if sending else self._receive
        if isinstance(own, ChaCha20Poly1305):
            return own
        keys, contexts = self._send, self._receive
        if not isinstance(keys, bytes) or not isinstance(contexts, ContextCache):
            raise LocalSecureError("a lean session keeps its two keys and a context cache")
        return contexts.get(keys[:KEYLEN] if sending else keys[KEYLEN:])

    def decrypt(self, datagram: bytes | Transport, addr: Addr, now: float) -> bytes:
        """The plaintext of one of the peer's TRANSPORT datagrams, received from ``addr``.

        Raises :class:`DecryptFailed`, :class:`ReplayedDatagram`, :class:`StaleDatagram`,
        :class:`UnknownReceiver` (not ours, or expired) or :class:`MalformedDatagram`; each drop
        is counted in :attr:`counters`.
        """
        if isinstance(datagram, Transport):
            receiver, counter, ciphertext = datagram.receiver, datagram.counter, datagram.ciphertext
        else:
            receiver, counter, ciphertext = _split_transport(datagram)
        return self._open(receiver, counter, ciphertext, addr, now)

    def _open(
        self, receiver: int, counter: int, ciphertext: bytes, addr: Addr, now: float
    ) -> bytes:
        if receiver != self.local_index:
            raise UnknownReceiver("transport datagram for another session")
        if self.expired(now):
            raise UnknownReceiver("session expired")
        if counter >= self.limits.reject_after_messages:
            self._dropped().stale += 1
            raise ReplayRejected("counter beyond the session's limit")
        newest = self._newest
        try:
            _window_check(newest, self._bits, REPLAY_WINDOW_BITS, counter)
        except ReplayedDatagram:
            self._dropped().replayed += 1
            raise
        except StaleDatagram:
            self._dropped().stale += 1
            raise
        try:
            plaintext = decrypt_at(self._aead(sending=False), counter, b"", ciphertext)
        except DecryptFailed:
            self._dropped().forged += 1
            raise
        self._bits = _window_accept(newest, self._bits, REPLAY_WINDOW_BITS, _WINDOW_MASK, counter)
        if counter > newest:
            self._newest = counter
            if addr != self.remote_addr:  # (the same address: keep the one object all share)
                self.remote_addr = addr
        self.confirmed = True
        self._received += 1
        return plaintext


# --- cookies -------------------------------------------------------------------------------------


class CookieJar:
    """A responder's stateless proof of address (WireGuard's cookie, QUIC's Retry token).

    ``cookie(addr) = MAC(secret, period | addr)``, where ``period = floor(now / lifetime_s)`` and
    the secret is drawn anew (from ``random_bytes``) in each period. A cookie made in one period
    is accepted in it and the next, so it is good for at least ``lifetime_s``; an initiator uses
    one for ``lifetime_s - COOKIE_LATENCY_S`` after receiving it. The jar holds two secrets and
    nothing per address.
    """

    __slots__ = ("_current", "_period", "_previous", "_random_bytes", "lifetime_s")

    def __init__(
        self, *, random_bytes: RandomBytes, lifetime_s: float = COOKIE_SECRET_LIFETIME_S
    ) -> None:
        if lifetime_s <= 0:
            raise LocalSecureError("a cookie lifetime is positive")
        self._random_bytes = random_bytes
        self.lifetime_s = lifetime_s
        self._period: int | None = None
        self._current = b""
        self._previous: bytes | None = None

    def _rotate(self, now: float) -> int:
        period = math.floor(now / self.lifetime_s)
        if self._period is None or period > self._period:
            self._previous = (
                self._current if self._period is not None and period == self._period + 1 else None
            )
            self._current = self._random_bytes(32)
            self._period = period
        return self._period

    def cookie(self, addr: Addr, now: float) -> bytes:
        period = self._rotate(now)
        return _mac(self._current, period.to_bytes(8, "big", signed=True) + _addr_bytes(addr))

    def mac2_valid(self, addr: Addr, now: float, signed: bytes, mac2: bytes) -> bool:
        """True if ``mac2`` is ``MAC(cookie, signed)`` for a cookie ``addr`` holds this period or
        the last."""
        period = self._rotate(now)
        candidates = [(self._current, period)]
        if self._previous is not None:
            candidates.append((self._previous, period - 1))
        ok = False
        for secret, p in candidates:
            cookie = _mac(secret, p.to_bytes(8, "big", signed=True) + _addr_bytes(addr))
            ok |= bytes_eq(_mac(cookie, signed), mac2)
        return ok


def _cookie_aead(cookie_key: bytes, nonce: bytes) -> ChaCha20Poly1305:
    # A fresh subkey per random 24-byte nonce (as XChaCha20 does with HChaCha20), so the 96-bit
    # AEAD nonce can stay zero and random nonces never collide under one key.
    return ChaCha20Poly1305(hmac_hash(HASH, cookie_key, nonce))


# --- the two handshake roles ---------------------------------------------------------------------


class Initiator:
    """The initiator's side of IK handshakes towards one responder static key.

    :meth:`initiation` builds a HANDSHAKE_INIT (call it again after ``REKEY_TIMEOUT_S`` without an
    answer: each call starts over with a fresh ephemeral key, and only the latest attempt can
    complete). A COOKIE_REPLY is fed to :meth:`handle_cookie_reply`; the next initiation then
    carries mac2. The HANDSHAKE_RESPONSE goes to :meth:`handle_response`, which returns the session.
    """

    __slots__ = (
        "_cookie",
        "_cookie_at",
        "_cookie_key",
        "_handshake",
        "_last_mac1",
        "_mac1_key",
        "_own_mac1_key",
        "_prologue",
        "_random_bytes",
        "_static",
        "limits",
        "local_index",
        "remote_static",
        "sent_at",
        "started_at",
    )

    def __init__(
        self,
        *,
        static: KeyPair,
        remote_static: bytes,
        local_index: int,
        random_bytes: RandomBytes,
        prologue: bytes = SECURE_PROLOGUE,
        limits: SessionLimits = DEFAULT_SESSION_LIMITS,
    ) -> None:
        if len(remote_static) != DHLEN:
            raise LocalSecureError(f"a static public key is {DHLEN} bytes")
        self._static = static
        self.remote_static = remote_static
        self.local_index = local_index
        self._random_bytes = random_bytes
        self._prologue = prologue
        self.limits = limits
        self._mac1_key = mac_key(_LABEL_MAC1, remote_static)
        self._cookie_key = mac_key(_LABEL_COOKIE, remote_static)
        self._own_mac1_key = mac_key(_LABEL_MAC1, static.public)
        self._handshake: HandshakeState | None = None
        self._last_mac1: bytes | None = None
        self._cookie: bytes | None = None
        self._cookie_at = 0.0
        self.started_at: float | None = None
        """When the first attempt was built (to give up on an unreachable peer)."""
        self.sent_at: float | None = None
        """When the latest initiation was built (for the retransmission timer)."""

    def initiation(
        self,
        payload: bytes,
        now: float,
        *,
        timestamp: int,
        pad_to: int = HANDSHAKE_INIT_MIN_BYTES,
    ) -> bytes:
        """A new HANDSHAKE_INIT carrying ``payload`` (encrypted to the responder, authenticated
        as ours, but without forward secrecy: keep it small and harmless, like a name).

        ``timestamp`` must grow with every initiation this static key makes, across restarts
        (pass ``time.time_ns()``): the responder drops an initiation whose timestamp is not
        above the last it accepted from this key, so recorded initiations cannot be replayed.
        The datagram is padded to ``pad_to`` bytes so the response may be that large.
        """
        if not 0 <= timestamp < 2**64:
            raise LocalSecureError("the timestamp is an unsigned 64-bit integer")
        natural = INIT_OVERHEAD_BYTES + len(payload)
        if natural > MAX_DATAGRAM_BYTES or pad_to > MAX_DATAGRAM_BYTES:
            raise LocalSecureError(
                f"an initiation carries at most {MAX_INIT_PAYLOAD_BYTES} bytes of payload"
            )
        padding = bytes(max(0, pad_to - natural))
        handshake = HandshakeState(
            pattern=IK,
            initiator=True,
            random_bytes=self._random_bytes,
            prologue=self._prologue,
            s=self._static,
            rs=self.remote_static,
            hash_name=HASH,
        )
        framed = _INIT_FRAMING.pack(timestamp, len(payload)) + payload + padding
        head = _INIT_HEAD.pack(PacketType.HANDSHAKE_INIT, self.local_index)
        body = head + handshake.write_message(framed)
        mac1 = _mac(self._mac1_key, body)
        body += mac1
        cookie_fresh = (
            self._cookie is not None
            and now - self._cookie_at < COOKIE_SECRET_LIFETIME_S - COOKIE_LATENCY_S
        )
        mac2 = _mac(self._cookie, body) if cookie_fresh and self._cookie else _ZERO_MAC
        self._handshake = handshake
        self._last_mac1 = mac1
        if self.started_at is None:
            self.started_at = now
        self.sent_at = now
        return body + mac2

    def handle_cookie_reply(self, packet: CookieReply, now: float) -> None:
        """Keep the cookie of a COOKIE_REPLY answering our latest initiation (once only)."""
        if packet.receiver != self.local_index or self._last_mac1 is None:
            raise HandshakeFailed("unexpected cookie reply")
        try:
            cookie = _cookie_aead(self._cookie_key, packet.nonce).decrypt(
                _ZERO_NONCE, packet.sealed_cookie, self._last_mac1
            )
        except InvalidTag:
            raise HandshakeFailed("cookie reply does not authenticate") from None
        self._cookie = cookie
        self._cookie_at = now
        self._last_mac1 = None

    def handle_response(
        self,
        packet: HandshakeResponse,
        addr: Addr,
        now: float,
        *,
        contexts: ContextCache | None = None,
    ) -> tuple[SecureSession, bytes]:
        """The session a HANDSHAKE_RESPONSE completes, and the response's payload."""
        handshake = self._handshake
        if packet.receiver != self.local_index or handshake is None:
            raise HandshakeFailed("unexpected handshake response")
        if not bytes_eq(_mac(self._own_mac1_key, packet.raw[:-MAC_BYTES]), packet.mac1):
            raise BadMac("bad mac1 on handshake response")
        framed = handshake.read_message(packet.noise)
        self._handshake = None  # finished: this attempt is over whatever its payload says
        self._last_mac1 = None
        payload = _unframe(framed, _RESPONSE_FRAMING)[1]
        session = SecureSession(
            result=handshake.result(),
            local_index=self.local_index,
            remote_index=packet.sender,
            is_initiator=True,
            remote_addr=addr,
            now=now,
            limits=self.limits,
            contexts=contexts,
        )
        return session, payload


def _unframe(framed: bytes, framing: struct.Struct) -> tuple[int, bytes]:
    """(timestamp or 0, payload) of a framed handshake payload; padding after it is ignored."""
    if len(framed) < framing.size:
        raise HandshakeFailed("handshake payload truncated")
    fields = framing.unpack_from(framed)
    length = fields[-1]
    end = framing.size + length
    if end > len(framed):
        raise HandshakeFailed("handshake payload length exceeds the message")
    return (fields[0] if len(fields) > 1 else 0), framed[framing.size : end]


@dataclass(frozen=True, kw_only=True, slots=True)
class CookieChallenge:
    """The responder is under load and the initiation had no valid cookie: send this
    COOKIE_REPLY back to ``addr`` (smaller than the initiation) and keep nothing."""

    datagram: bytes
    addr: Addr


class IncomingHandshake:
    """An initiation that authenticated: who sent it, and what it carries.

    Nothing is stored anywhere until :meth:`accept` is called. Check :attr:`remote_static`
    (against a pin or the directory) and the payload, then accept or just drop this object.
    """

    __slots__ = (
        "_handshake",
        "_limits",
        "addr",
        "payload",
        "remote_index",
        "remote_static",
        "request_bytes",
        "timestamp",
    )

    def __init__(
        self,
        *,
        handshake: HandshakeState,
        remote_static: bytes,
        payload: bytes,
        timestamp: int,
        addr: Addr,
        remote_index: int,
        request_bytes: int,
        limits: SessionLimits,
    ) -> None:
        self._handshake: HandshakeState | None = handshake
        self._limits = limits
        self.remote_static = remote_static
        """The initiator's static public key, proven by the handshake."""
        self.payload = payload
        self.timestamp = timestamp
        self.addr = addr
        """Unproven: the initiation's source address."""
        self.remote_index = remote_index
        self.request_bytes = request_bytes
        """Size of the initiation; the response may not be larger."""

    @property
    def max_response_payload(self) -> int:
        return self.request_bytes - RESPONSE_OVERHEAD_BYTES

    def accept(
        self,
        payload: bytes,
        *,
        local_index: int,
        now: float,
        contexts: ContextCache | None = None,
    ) -> tuple[bytes, SecureSession]:
        """The HANDSHAKE_RESPONSE carrying ``payload`` and the new, unconfirmed session
        (``contexts``: a lean one, see :class:`SecureSession`)."""
        handshake = self._handshake
        if handshake is None:
            raise LocalSecureError("this handshake was already answered")
        if len(payload) > self.max_response_payload:
            raise LocalSecureError(
                f"the response may carry at most {self.max_response_payload} bytes: "
                "no reply to an unproven address is larger than its request"
            )
        head = _RESPONSE_HEAD.pack(PacketType.HANDSHAKE_RESPONSE, local_index, self.remote_index)
        body = head + handshake.write_message(_RESPONSE_FRAMING.pack(len(payload)) + payload)
        datagram = body + _mac(mac_key(_LABEL_MAC1, self.remote_static), body)
        self._handshake = None
        session = SecureSession(
            result=handshake.result(),
            local_index=local_index,
            remote_index=self.remote_index,
            is_initiator=False,
            remote_addr=self.addr,
            now=now,
            limits=self._limits,
            contexts=contexts,
        )
        return datagram, session


class Responder:
    """The responder's side: turns an initiation into a :class:`CookieChallenge` or an
    :class:`IncomingHandshake`, keeping no state (apart from the cookie jar's two secrets)."""

    __slots__ = (
        "_cookie_key",
        "_mac1_key",
        "_prologue",
        "_random_bytes",
        "cookies",
        "limits",
        "static",
    )

    def __init__(
        self,
        *,
        static: KeyPair,
        random_bytes: RandomBytes,
        cookies: CookieJar | None = None,
        prologue: bytes = SECURE_PROLOGUE,
        limits: SessionLimits = DEFAULT_SESSION_LIMITS,
    ) -> None:
        self.static = static
        self._random_bytes = random_bytes
        self.cookies = cookies or CookieJar(random_bytes=random_bytes)
        self._prologue = prologue
        self.limits = limits
        self._mac1_key = mac_key(_LABEL_MAC1, static.public)
        self._cookie_key = mac_key(_LABEL_COOKIE, static.public)

    def handle_initiation(
        self, packet: HandshakeInit, addr: Addr, now: float, *, under_load: bool
    ) -> CookieChallenge | IncomingHandshake:
        """Check mac1, then (``under_load``) mac2, then the Noise message; raise
        :class:`BadMac` / :class:`HandshakeFailed` on failure."""
        raw = packet.raw
        if not bytes_eq(_mac(self._mac1_key, raw[: -2 * MAC_BYTES]), packet.mac1):
            raise BadMac("bad mac1 on handshake initiation")
        # No cookie attached (mac2 all zero, as in every first initiation and every flood of
        # them): nothing to check, the answer is a cookie.
        if under_load and (
            packet.mac2 == _ZERO_MAC
            or not self.cookies.mac2_valid(addr, now, raw[:-MAC_BYTES], packet.mac2)
        ):
            nonce = self._random_bytes(COOKIE_NONCE_BYTES)
            sealed = _cookie_aead(self._cookie_key, nonce).encrypt(
                _ZERO_NONCE, self.cookies.cookie(addr, now), packet.mac1
            )
            datagram = _COOKIE_HEAD.pack(PacketType.COOKIE_REPLY, packet.sender) + nonce + sealed
            return CookieChallenge(datagram=datagram, addr=addr)
        handshake = HandshakeState(
            pattern=IK,
            initiator=False,
            random_bytes=self._random_bytes,
            prologue=self._prologue,
            s=self.static,
            hash_name=HASH,
        )
        framed = handshake.read_message(packet.noise)
        timestamp, payload = _unframe(framed, _INIT_FRAMING)
        remote_static = handshake.rs
        if remote_static is None:  # IK message 1 always carries it
            raise HandshakeFailed("initiation without a static key")
        return IncomingHandshake(
            handshake=handshake,
            remote_static=remote_static,
            payload=payload,
            timestamp=timestamp,
            addr=addr,
            remote_index=packet.sender,
            request_bytes=len(raw),
            limits=self.limits,
        )


# --- the endpoint --------------------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True, slots=True)
class SendReply:
    """Send ``datagram`` to ``addr`` (a cookie or key reply: never larger than its request)."""

    datagram: bytes
    addr: Addr


@dataclass(frozen=True, kw_only=True, slots=True)
class HandshakeRequested:
    """An initiation authenticated; call :meth:`SecureEndpoint.accept` to answer it, or drop it."""

    incoming: IncomingHandshake


@dataclass(frozen=True, kw_only=True, slots=True)
class RetryWithCookie:
    """The responder at ``addr`` is under load and sent a cookie: send a new initiation now."""

    remote_static: bytes
    addr: Addr


@dataclass(frozen=True, kw_only=True, slots=True)
class SessionEstablished:
    """Our initiation was answered; send a first TRANSPORT datagram (b"" will do) at once, so the
    responder may start sending too."""

    session: SecureSession
    payload: bytes


class TransportReceived:
    """An authenticated datagram (``plaintext`` b"" is a keepalive) on ``session``.

    (A plain class, not a dataclass: one is made per datagram, and the compiled core builds
    it natively, where a dataclass's generated ``__init__`` runs as Python.)"""

    __slots__ = ("plaintext", "session")
    __match_args__ = ("session", "plaintext")

    def __init__(self, *, session: SecureSession, plaintext: bytes) -> None:
        self.session: Final = session
        self.plaintext: Final = plaintext


@dataclass(frozen=True, kw_only=True, slots=True)
class KeyReceived:
    """The (unauthenticated) static key of the responder at ``addr``, which we asked for."""

    key: bytes
    addr: Addr


Received = (
    SendReply
    | HandshakeRequested
    | RetryWithCookie
    | SessionEstablished
    | TransportReceived
    | KeyReceived
)


@dataclass(kw_only=True, slots=True)
class EndpointCounters(Counters):
    bad_mac: int = 0
    handshakes_failed: int = 0
    replayed_initiations: int = 0
    cookie_replies: int = 0
    key_replies: int = 0
    unknown_receiver: int = 0
    replayed: int = 0
    stale: int = 0
    forged: int = 0
    malformed: int = 0
    evicted_peers: int = 0
    evicted_unconfirmed: int = 0


class _Peer:
    """What an endpoint holds for one authenticated static key (WireGuard's keypairs)."""

    __slots__ = ("current", "initiator", "key", "newer", "next", "older", "previous", "timestamp")

    def __init__(self, key: bytes) -> None:
        self.key = key
        """The peer's static public key."""
        self.older: _Peer | None = None
        """The peer active just before this one (:class:`_PeerTable`'s order) ..."""
        self.newer: _Peer | None = None
        """... and the one active just after."""
        self.current: SecureSession | None = None
        """The session we send on."""
        self.previous: SecureSession | None = None
        """The one before, kept to decrypt datagrams still in flight."""
        self.next: SecureSession | None = None
        """A responder session whose initiator has not confirmed it yet."""
        self.initiator: Initiator | None = None
        self.timestamp = -1
        """The greatest initiation timestamp accepted from this key."""

    def sessions(self) -> list[SecureSession]:
        return [s for s in (self.current, self.previous, self.next) if s is not None]


class _PeerTable:
    """An endpoint's peers by static key, least recently active first.

    A dict, and the recency order as a list threaded through the peers themselves: what an
    OrderedDict does, for about 50 bytes less per peer (a directory server holds one peer per
    signed-in user). Every operation is O(1); :meth:`oldest` walks only as far as it is asked.
    """

    __slots__ = ("_by_key", "_newest", "_oldest")

    def __init__(self) -> None:
        self._by_key: dict[bytes, _Peer] = {}
        self._oldest: _Peer | None = None
        self._newest: _Peer | None = None

    def __len__(self) -> int:
        return len(self._by_key)

    def get(self, key: bytes) -> _Peer | None:
        return self._by_key.get(key)

    def add(self, key: bytes) -> _Peer:
        """A new peer for ``key`` (not in the table), the most recently active."""
        peer = self._by_key[key] = _Peer(key)
        self._append(peer)
        return peer

    def touch(self, peer: _Peer) -> None:
        """``peer`` (in the table) becomes the most recently active."""
        if peer is not self._newest:
            self._unlink(peer)
            self._append(peer)

    def pop(self, key: bytes) -> _Peer | None:
        peer = self._by_key.pop(key, None)
        if peer is not None:
            self._unlink(peer)
        return peer

    def oldest(self, n: int) -> list[_Peer]:
        """The ``n`` least recently active peers (fewer if there are fewer), oldest first."""
        out: list[_Peer] = []
        peer = self._oldest
        while peer is not None and len(out) < n:
            out.append(peer)
            peer = peer.newer
        return out

    def _append(self, peer: _Peer) -> None:
        peer.older, peer.newer = self._newest, None
        if self._newest is None:
            self._oldest = peer
        else:
            self._newest.newer = peer
        self._newest = peer

    def _unlink(self, peer: _Peer) -> None:
        older, newer = peer.older, peer.newer
        if older is None:
            self._oldest = newer
        else:
            older.newer = newer
        if newer is None:
            self._newest = older
        else:
            newer.older = older
        peer.older = peer.newer = None


class SecureEndpoint:
    """The secure layer of one UDP socket: both handshake roles and every session.

    Feed every received datagram to :meth:`receive`; it returns what happened (a
    :data:`Received` event) or raises a :class:`MalformedDatagram` subclass, which means "drop
    and count it". Send with :meth:`session` (then :meth:`SecureSession.encrypt` to its
    ``remote_addr``) or :meth:`send`; open sessions with :meth:`connect`; answer initiations with
    :meth:`accept`. Call :meth:`expire` every few seconds.

    State is kept only for authenticated static keys (at most ``max_peers``, least recently
    active dropped first) and their sessions; unconfirmed responder sessions are capped at
    ``max_unconfirmed``, oldest dropped first. A peer holds at most three sessions: current,
    previous, and one unconfirmed.

    ``lean_sessions`` is the memory/latency policy of every session this endpoint makes: False
    (the default, for a client with few sessions) keeps an AEAD context per direction; True (for
    the directory server, a session per user) keeps only the two 32-byte keys, and the contexts
    of the most recently used keys in :attr:`contexts` (:class:`SecureSession`'s ``contexts``).
    """

    __slots__ = (
        "_by_index",
        "_key_requests",
        "_peers",
        "_random_bytes",
        "_unconfirmed",
        "contexts",
        "counters",
        "keep",
        "limits",
        "max_peers",
        "max_unconfirmed",
        "prologue",
        "responder",
        "static",
    )

    def __init__(
        self,
        *,
        static: KeyPair,
        random_bytes: RandomBytes,
        prologue: bytes = SECURE_PROLOGUE,
        limits: SessionLimits = DEFAULT_SESSION_LIMITS,
        cookie_lifetime_s: float = COOKIE_SECRET_LIFETIME_S,
        max_peers: int = MAX_SECURE_PEERS,
        max_unconfirmed: int = MAX_UNCONFIRMED_SESSIONS,
        lean_sessions: bool = False,
    ) -> None:
        self.static = static
        self._random_bytes = random_bytes
        self.prologue = prologue
        self.limits = limits
        if max_peers < 1 or max_unconfirmed < 1:
            raise LocalSecureError(
                "an endpoint keeps at least one peer and one unconfirmed session"
            )
        self.max_peers = max_peers
        self.max_unconfirmed = max_unconfirmed
        self.contexts = ContextCache(LEAN_CONTEXTS) if lean_sessions else None
        """Set (``lean_sessions``): every session is lean (:class:`SecureSession`), with no AEAD
        context per direction (about 4.4 KB of OpenSSL memory per session) and no handshake
        hash, and borrows the contexts of the most recently used keys from here (building one
        costs about 1 us). For a server with a session per user."""
        self.responder = Responder(
            static=static,
            random_bytes=random_bytes,
            cookies=CookieJar(random_bytes=random_bytes, lifetime_s=cookie_lifetime_s),
            prologue=prologue,
            limits=limits,
        )
        self.counters = EndpointCounters()
        self.keep: Callable[[bytes], bool] | None = None
        """Peers for which this returns True are never evicted to make room (the owner's
        signed-in users, its server, its proven peers): new keys cannot push them out."""
        self._peers = _PeerTable()
        self._by_index: dict[int, SecureSession | Initiator] = {}
        self._unconfirmed: OrderedDict[int, SecureSession] = OrderedDict()
        self._key_requests: dict[Addr, bytes] = {}

    # --- sending ---------------------------------------------------------------------------------

    def connect(
        self,
        remote_static: bytes,
        payload: bytes,
        now: float,
        *,
        timestamp: int,
        pad_to: int = HANDSHAKE_INIT_MIN_BYTES,
    ) -> bytes:
        """A HANDSHAKE_INIT to the peer holding ``remote_static``; send it to the peer's address.

        Call again to retransmit (after ``REKEY_TIMEOUT_S``), after a :class:`RetryWithCookie`,
        or to rekey; an existing session keeps working until the new one is established.
        """
        peer = self._peer(remote_static, create=True)
        assert peer is not None
        initiator = peer.initiator
        if initiator is None:
            initiator = Initiator(
                static=self.static,
                remote_static=remote_static,
                local_index=self._new_index(),
                random_bytes=self._random_bytes,
                prologue=self.prologue,
                limits=self.limits,
            )
            peer.initiator = initiator
            self._by_index[initiator.local_index] = initiator
        return initiator.initiation(payload, now, timestamp=timestamp, pad_to=pad_to)

    def request_key(self, addr: Addr) -> bytes:
        """A KEY_REQUEST for the static key of the responder at ``addr`` (trust on first use:
        compare the answer with a fingerprint, or pin it)."""
        nonce = self._random_bytes(KEY_NONCE_BYTES)
        self._key_requests[addr] = nonce
        return build_key_request(nonce)

    def session(self, remote_static: bytes, now: float) -> SecureSession | None:
        """The session to send on to ``remote_static``, if one works now."""
        peer = self._peers.get(remote_static)
        current = peer.current if peer else None
        if current is None or current.expired(now):
            return None
        return current

    def send(self, remote_static: bytes, plaintext: bytes, now: float) -> tuple[bytes, Addr]:
        """``(datagram, address)`` carrying ``plaintext`` to ``remote_static``."""
        session = self.session(remote_static, now)
        if session is None:
            raise SessionExpired("no working session with this peer: connect first")
        return session.encrypt(plaintext, now), session.remote_addr

    def initiating(self, remote_static: bytes) -> Initiator | None:
        """The handshake we have in flight towards ``remote_static`` (see ``sent_at``)."""
        peer = self._peers.get(remote_static)
        return peer.initiator if peer else None

    # --- receiving -------------------------------------------------------------------------------

    def receive(
        self, datagram: bytes, addr: Addr, now: float, *, under_load: bool = False
    ) -> Received:
        """Handle one datagram from ``addr``. ``under_load``: answer initiations that carry no
        valid cookie with a cookie reply instead of doing the public-key work (set it when the
        handshakes of the last second exceed what this machine should spend on them)."""
        try:
            if datagram[:1] == _TRANSPORT_BYTE:  # the common case, without a Transport object
                return self._transport(*_split_transport(datagram), addr, now)
            packet = parse_packet(datagram)
            if isinstance(packet, Transport):  # pragma: no cover - taken by the fast path
                return self._transport(
                    packet.receiver, packet.counter, packet.ciphertext, addr, now
                )
            if isinstance(packet, HandshakeInit):
                return self._initiation(packet, addr, now, under_load)
            if isinstance(packet, HandshakeResponse):
                return self._response(packet, addr, now)
            if isinstance(packet, CookieReply):
                initiator = self._initiator(packet.receiver)
                initiator.handle_cookie_reply(packet, now)
                return RetryWithCookie(remote_static=initiator.remote_static, addr=addr)
            if isinstance(packet, KeyRequest):
                self.counters.key_replies += 1
                return SendReply(datagram=build_key_reply(packet, self.static.public), addr=addr)
            return self._key_reply(packet, addr)
        except UnknownReceiver:
            self.counters.unknown_receiver += 1
            raise
        except BadMac:
            self.counters.bad_mac += 1
            raise
        except HandshakeFailed:
            self.counters.handshakes_failed += 1
            raise
        except ReplayedDatagram:
            self.counters.replayed += 1
            raise
        except ReplayRejected:
            self.counters.stale += 1
            raise
        except DecryptFailed:
            self.counters.forged += 1
            raise
        except MalformedDatagram:
            self.counters.malformed += 1
            raise

    def _transport(
        self, receiver: int, counter: int, ciphertext: bytes, addr: Addr, now: float
    ) -> TransportReceived:
        session = self._by_index.get(receiver)
        if not isinstance(session, SecureSession):
            raise UnknownReceiver("no session with this index")
        was_confirmed = session.confirmed
        was_at = session.remote_addr
        plaintext = session._open(receiver, counter, ciphertext, addr, now)
        peer = self._peer(session.remote_static, create=False)
        if peer is not None and session.remote_addr != was_at:
            # The peer's newest datagram came from a new address: every session with it
            # follows (both sides may have initiated one; a NAT rebinding moves them all).
            for other in peer.sessions():
                other.remote_addr = session.remote_addr
        if not was_confirmed and peer is not None and peer.next is session:
            peer.next = None
            self._unconfirmed.pop(session.local_index, None)
            self._install(peer, session)
        return TransportReceived(session=session, plaintext=plaintext)

    def _initiation(
        self, packet: HandshakeInit, addr: Addr, now: float, under_load: bool
    ) -> HandshakeRequested | SendReply:
        outcome = self.responder.handle_initiation(packet, addr, now, under_load=under_load)
        if isinstance(outcome, CookieChallenge):
            self.counters.cookie_replies += 1
            return SendReply(datagram=outcome.datagram, addr=outcome.addr)
        peer = self._peers.get(outcome.remote_static)
        if peer is not None and outcome.timestamp <= peer.timestamp:
            self.counters.replayed_initiations += 1
            raise ReplayedDatagram("initiation replayed (timestamp not newer)")
        return HandshakeRequested(incoming=outcome)

    def accept(self, incoming: IncomingHandshake, payload: bytes, now: float) -> bytes:
        """Answer an initiation: the HANDSHAKE_RESPONSE to send to ``incoming.addr``.

        Raises :class:`ReplayedDatagram` if a newer initiation from the same key was accepted
        since ``incoming`` was received, and :class:`LocalSecureError` if ``payload`` is larger
        than ``incoming.max_response_payload``.
        """
        peer = self._peer(incoming.remote_static, create=True)
        assert peer is not None
        if incoming.timestamp <= peer.timestamp:
            self.counters.replayed_initiations += 1
            raise ReplayedDatagram("a newer initiation from this key was accepted meanwhile")
        local_index = self._new_index()
        datagram, session = incoming.accept(
            payload, local_index=local_index, now=now, contexts=self.contexts
        )
        peer.timestamp = incoming.timestamp
        if peer.next is not None:
            self._drop(peer.next)
        peer.next = session
        self._by_index[local_index] = session
        self._unconfirmed[local_index] = session
        while len(self._unconfirmed) > self.max_unconfirmed:
            _, oldest = self._unconfirmed.popitem(last=False)
            self.counters.evicted_unconfirmed += 1
            self._drop(oldest)
        return datagram

    def _initiator(self, index: int) -> Initiator:
        initiator = self._by_index.get(index)
        if not isinstance(initiator, Initiator):
            raise UnknownReceiver("no handshake in flight with this index")
        return initiator

    def _response(self, packet: HandshakeResponse, addr: Addr, now: float) -> SessionEstablished:
        initiator = self._initiator(packet.receiver)
        session, payload = initiator.handle_response(packet, addr, now, contexts=self.contexts)
        peer = self._peer(initiator.remote_static, create=True)
        assert peer is not None
        peer.initiator = None
        self._by_index[session.local_index] = session  # same index, now a session
        self._install(peer, session)
        return SessionEstablished(session=session, payload=payload)

    def _key_reply(self, packet: KeyReply, addr: Addr) -> KeyReceived:
        expected = self._key_requests.get(addr)
        if expected is None or not bytes_eq(expected, packet.nonce):
            raise MalformedDatagram("unexpected key reply")
        del self._key_requests[addr]
        return KeyReceived(key=packet.key, addr=addr)

    # --- housekeeping ----------------------------------------------------------------------------

    def expire(self, now: float) -> None:
        """Forget expired sessions and handshakes abandoned for ``reject_after_time_s``."""
        for entry in list(self._by_index.values()):
            if isinstance(entry, SecureSession):
                if entry.expired(now):
                    self._drop(entry)
            elif (
                entry.sent_at is not None and now - entry.sent_at >= self.limits.reject_after_time_s
            ):
                self._drop_initiator(entry)

    def abandon(self, remote_static: bytes) -> None:
        """Drop the unconfirmed session just accepted for ``remote_static`` (its response said
        no): a later datagram on it cannot displace the peer's working session."""
        peer = self._peers.get(remote_static)
        if peer is not None and peer.next is not None:
            self._drop(peer.next)

    def forget(self, remote_static: bytes) -> None:
        """Drop everything held for ``remote_static`` (sessions, handshake, timestamp)."""
        peer = self._peers.pop(remote_static)
        if peer is not None:
            self._clear(peer)

    def peers(self) -> int:
        return len(self._peers)

    def sessions(self) -> int:
        return sum(1 for e in self._by_index.values() if isinstance(e, SecureSession))

    def _install(self, peer: _Peer, session: SecureSession) -> None:
        if peer.previous is not None:
            self._drop_index(peer.previous)
        peer.previous = peer.current
        peer.current = session

    def _drop(self, session: SecureSession) -> None:
        self._drop_index(session)
        self._unconfirmed.pop(session.local_index, None)
        peer = self._peers.get(session.remote_static)
        if peer is None:
            return
        if peer.current is session:
            peer.current = None
        if peer.previous is session:
            peer.previous = None
        if peer.next is session:
            peer.next = None

    def _drop_index(self, session: SecureSession) -> None:
        if self._by_index.get(session.local_index) is session:
            del self._by_index[session.local_index]

    def _drop_initiator(self, initiator: Initiator) -> None:
        if self._by_index.get(initiator.local_index) is initiator:
            del self._by_index[initiator.local_index]
        peer = self._peers.get(initiator.remote_static)
        if peer is not None and peer.initiator is initiator:
            peer.initiator = None

    def _clear(self, peer: _Peer) -> None:
        for session in peer.sessions():
            self._drop_index(session)
            self._unconfirmed.pop(session.local_index, None)
        if peer.initiator is not None:
            self._drop_initiator(peer.initiator)
        peer.current = peer.previous = peer.next = None

    def _peer(self, remote_static: bytes, *, create: bool) -> _Peer | None:
        peer = self._peers.get(remote_static)
        if peer is not None:
            self._peers.touch(peer)
            return peer
        if not create:
            return None
        peer = self._peers.add(remote_static)
        if len(self._peers) > self.max_peers:
            self._evict_one()
        return peer

    def _evict_one(self) -> None:
        """Drop the least recently active peer that :attr:`keep` does not protect (a bounded
        look from the oldest; if every one looked at is protected, keep them all for now)."""
        keep = self.keep
        for peer in self._peers.oldest(EVICTION_SCAN):
            if keep is not None and keep(peer.key):
                self._peers.touch(peer)
                continue
            self._peers.pop(peer.key)
            self.counters.evicted_peers += 1
            self._clear(peer)
            return

    def _new_index(self) -> int:
        while True:
            index = int.from_bytes(self._random_bytes(4), "big")
            if index not in self._by_index:
                return index
