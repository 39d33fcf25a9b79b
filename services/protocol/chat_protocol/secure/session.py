"""One secure session: a pair of transport keys from one handshake, its counters, and its limits."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Final

from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305

from chat_protocol.const import (
    REJECT_AFTER_MESSAGES,
    REJECT_AFTER_TIME_S,
    REKEY_AFTER_MESSAGES,
    REKEY_AFTER_TIME_S,
    REPLAY_WINDOW_BITS,
    RESPONDER_REKEY_AFTER_TIME_S,
    UNCONFIRMED_SESSION_TIMEOUT_S,
)
from chat_protocol.counters import Counters
from chat_protocol.secure.errors import (
    DecryptFailed,
    LocalSecureError,
    ReplayedDatagram,
    ReplayRejected,
    SessionExpired,
    StaleDatagram,
    UnknownReceiver,
)
from chat_protocol.secure.noise import (
    KEYLEN,
    ContextCache,
    HandshakeResult,
    TransportCipher,
    decrypt_at,
    encrypt_at,
)
from chat_protocol.secure.packets import (
    MAX_TRANSPORT_PLAINTEXT_BYTES,
    TRANSPORT_HEAD,
    PacketType,
    Transport,
    split_transport,
)
from chat_protocol.secure.replay import window_accept, window_check, window_mask
from chat_protocol.wire.messages import Addr


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

SealTap = Callable[[bytes, bytes], None]
"""A debug hook: (TRANSPORT datagram, the plaintext it carries), for each one sealed."""


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


_WINDOW_MASK: Final = window_mask(REPLAY_WINDOW_BITS)


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
    from that shared, bounded cache (see :data:`chat_protocol.secure.noise.TransportCipher`), and
    drops the handshake hash (None).
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
        "tap",
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
        self.tap: SealTap | None = None
        """Called with (datagram, plaintext) for each datagram :meth:`encrypt` makes: a debug
        hook (the shells' ``CHAT_WIRE_LOG``), set by :class:`SecureEndpoint` from its own."""

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
        limits = self.limits
        # (Confirmed, so expired(now) is the age check alone.)
        if (
            counter >= limits.reject_after_messages
            or now - self.created_at >= limits.reject_after_time_s
        ):
            raise SessionExpired("session expired: start a new handshake")
        self._send_counter = counter + 1
        head = TRANSPORT_HEAD.pack(PacketType.TRANSPORT, self.remote_index, counter)
        own = self._send
        aead = own if isinstance(own, ChaCha20Poly1305) else self._aead(sending=True)
        datagram = head + encrypt_at(aead, counter, b"", plaintext)
        if self.tap is not None:
            self.tap(datagram, plaintext)
        return datagram

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
            receiver, counter, ciphertext = split_transport(datagram)
        return self.open(receiver, counter, ciphertext, addr, now)

    def open(
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
        if counter <= newest:  # (a counter above the newest is new: nothing to check)
            try:
                window_check(newest, self._bits, REPLAY_WINDOW_BITS, counter)
            except ReplayedDatagram:
                self._dropped().replayed += 1
                raise
            except StaleDatagram:
                self._dropped().stale += 1
                raise
        try:
            own = self._receive
            aead = own if isinstance(own, ChaCha20Poly1305) else self._aead(sending=False)
            plaintext = decrypt_at(aead, counter, b"", ciphertext)
        except DecryptFailed:
            self._dropped().forged += 1
            raise
        self._bits = window_accept(newest, self._bits, REPLAY_WINDOW_BITS, _WINDOW_MASK, counter)
        if counter > newest:
            self._newest = counter
            if addr != self.remote_addr:  # (the same address: keep the one object all share)
                self.remote_addr = addr
        self.confirmed = True
        self._received += 1
        return plaintext
