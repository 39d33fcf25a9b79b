"""The secure layer's packet formats: types, sizes, parsing, and the key request/reply.

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

"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from enum import IntEnum

from chat_protocol.const import KEY_REQUEST_MIN_BYTES, MAX_DATAGRAM_BYTES
from chat_protocol.errors import MalformedDatagram
from chat_protocol.secure.errors import LocalSecureError
from chat_protocol.secure.noise import DHLEN, TAGLEN, HashName

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
LABEL_MAC1 = b"mac1----"
LABEL_COOKIE = b"cookie--"
ZERO_MAC = bytes(MAC_BYTES)
ZERO_NONCE = bytes(12)

INIT_HEAD = struct.Struct("!BI")  # type, sender
RESPONSE_HEAD = struct.Struct("!BII")  # type, sender, receiver
COOKIE_HEAD = struct.Struct("!BI")  # type, receiver
TRANSPORT_HEAD = struct.Struct("!BIQ")  # type, receiver, counter
INIT_FRAMING = struct.Struct("!QH")  # timestamp, payload length
RESPONSE_FRAMING = struct.Struct("!H")  # payload length

INIT_NOISE_MIN_BYTES = DHLEN + (DHLEN + TAGLEN) + TAGLEN
"""IK message 1 with an empty Noise payload: e, enc(s), enc(empty)."""
INIT_OVERHEAD_BYTES = INIT_HEAD.size + INIT_NOISE_MIN_BYTES + INIT_FRAMING.size + 2 * MAC_BYTES
"""An initiation with an empty payload and no padding: 143 bytes."""
RESPONSE_OVERHEAD_BYTES = RESPONSE_HEAD.size + DHLEN + TAGLEN + RESPONSE_FRAMING.size + MAC_BYTES
"""A response with an empty payload: 75 bytes."""
COOKIE_REPLY_BYTES = COOKIE_HEAD.size + COOKIE_NONCE_BYTES + COOKIE_BYTES + TAGLEN
"""61 bytes."""
TRANSPORT_OVERHEAD_BYTES = TRANSPORT_HEAD.size + TAGLEN
"""29 bytes: a TRANSPORT datagram is its plaintext plus this."""
KEY_REPLY_BYTES = 1 + KEY_NONCE_BYTES + DHLEN
"""41 bytes."""
MAX_TRANSPORT_PLAINTEXT_BYTES = MAX_DATAGRAM_BYTES - TRANSPORT_OVERHEAD_BYTES
"""Largest plaintext one TRANSPORT datagram carries (1371 bytes)."""
MAX_INIT_PAYLOAD_BYTES = MAX_DATAGRAM_BYTES - INIT_OVERHEAD_BYTES
MAX_RESPONSE_PAYLOAD_BYTES = MAX_DATAGRAM_BYTES - RESPONSE_OVERHEAD_BYTES


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
        _, receiver, counter = TRANSPORT_HEAD.unpack_from(datagram)
        return Transport(
            receiver=receiver, counter=counter, ciphertext=datagram[TRANSPORT_HEAD.size :]
        )
    if kind is PacketType.HANDSHAKE_INIT:
        if size < INIT_OVERHEAD_BYTES:
            raise MalformedDatagram("truncated handshake initiation")
        _, sender = INIT_HEAD.unpack_from(datagram)
        return HandshakeInit(
            sender=sender,
            noise=datagram[INIT_HEAD.size : -2 * MAC_BYTES],
            mac1=datagram[-2 * MAC_BYTES : -MAC_BYTES],
            mac2=datagram[-MAC_BYTES:],
            raw=datagram,
        )
    if kind is PacketType.HANDSHAKE_RESPONSE:
        if size < RESPONSE_OVERHEAD_BYTES:
            raise MalformedDatagram("truncated handshake response")
        _, sender, receiver = RESPONSE_HEAD.unpack_from(datagram)
        return HandshakeResponse(
            sender=sender,
            receiver=receiver,
            noise=datagram[RESPONSE_HEAD.size : -MAC_BYTES],
            mac1=datagram[-MAC_BYTES:],
            raw=datagram,
        )
    if kind is PacketType.COOKIE_REPLY:
        if size != COOKIE_REPLY_BYTES:
            raise MalformedDatagram("cookie reply of the wrong size")
        _, receiver = COOKIE_HEAD.unpack_from(datagram)
        start = COOKIE_HEAD.size
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


TRANSPORT_TYPE = PacketType.TRANSPORT.value
TRANSPORT_BYTE = bytes([TRANSPORT_TYPE])


def split_transport(datagram: bytes) -> tuple[int, int, bytes]:
    """(receiver, counter, ciphertext) of a TRANSPORT datagram, without building a Transport."""
    if (
        not TRANSPORT_OVERHEAD_BYTES <= len(datagram) <= MAX_DATAGRAM_BYTES
        or datagram[0] != TRANSPORT_TYPE
    ):
        raise MalformedDatagram("not a transport datagram")
    _, receiver, counter = TRANSPORT_HEAD.unpack_from(datagram)
    return receiver, counter, datagram[TRANSPORT_HEAD.size :]


def build_key_request(nonce: bytes) -> bytes:
    if len(nonce) != KEY_NONCE_BYTES:
        raise LocalSecureError(f"a key request nonce is {KEY_NONCE_BYTES} bytes")
    return bytes([PacketType.KEY_REQUEST]) + nonce.ljust(KEY_REQUEST_MIN_BYTES - 1, b"\x00")


def build_key_reply(request: KeyRequest, static_public: bytes) -> bytes:
    return bytes([PacketType.KEY_REPLY]) + request.nonce + static_public
