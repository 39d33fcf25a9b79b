"""The two roles of one IK handshake: :class:`Initiator` and :class:`Responder` (and what the
responder hands its caller: :class:`CookieChallenge` or :class:`IncomingHandshake`)."""

from __future__ import annotations

import struct
from dataclasses import dataclass

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.constant_time import bytes_eq

from chat_protocol.const import (
    COOKIE_LATENCY_S,
    COOKIE_SECRET_LIFETIME_S,
    HANDSHAKE_INIT_MIN_BYTES,
    MAX_DATAGRAM_BYTES,
    SECURE_PROLOGUE,
)
from chat_protocol.secure.cookie import CookieJar, cookie_aead, mac, mac_key
from chat_protocol.secure.errors import BadMac, HandshakeFailed, LocalSecureError
from chat_protocol.secure.noise import DHLEN, IK, ContextCache, HandshakeState, KeyPair, RandomBytes
from chat_protocol.secure.packets import (
    COOKIE_HEAD,
    COOKIE_NONCE_BYTES,
    HASH,
    INIT_FRAMING,
    INIT_HEAD,
    INIT_OVERHEAD_BYTES,
    LABEL_COOKIE,
    LABEL_MAC1,
    MAC_BYTES,
    MAX_INIT_PAYLOAD_BYTES,
    RESPONSE_FRAMING,
    RESPONSE_HEAD,
    RESPONSE_OVERHEAD_BYTES,
    ZERO_MAC,
    ZERO_NONCE,
    CookieReply,
    HandshakeInit,
    HandshakeResponse,
    PacketType,
)
from chat_protocol.secure.session import DEFAULT_SESSION_LIMITS, SecureSession, SessionLimits
from chat_protocol.wire.messages import Addr


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
        self._mac1_key = mac_key(LABEL_MAC1, remote_static)
        self._cookie_key = mac_key(LABEL_COOKIE, remote_static)
        self._own_mac1_key = mac_key(LABEL_MAC1, static.public)
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
        framed = INIT_FRAMING.pack(timestamp, len(payload)) + payload + padding
        head = INIT_HEAD.pack(PacketType.HANDSHAKE_INIT, self.local_index)
        body = head + handshake.write_message(framed)
        mac1 = mac(self._mac1_key, body)
        body += mac1
        cookie_fresh = (
            self._cookie is not None
            and now - self._cookie_at < COOKIE_SECRET_LIFETIME_S - COOKIE_LATENCY_S
        )
        mac2 = mac(self._cookie, body) if cookie_fresh and self._cookie else ZERO_MAC
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
            cookie = cookie_aead(self._cookie_key, packet.nonce).decrypt(
                ZERO_NONCE, packet.sealed_cookie, self._last_mac1
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
        if not bytes_eq(mac(self._own_mac1_key, packet.raw[:-MAC_BYTES]), packet.mac1):
            raise BadMac("bad mac1 on handshake response")
        framed = handshake.read_message(packet.noise)
        self._handshake = None  # finished: this attempt is over whatever its payload says
        self._last_mac1 = None
        payload = _unframe(framed, RESPONSE_FRAMING)[1]
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
        head = RESPONSE_HEAD.pack(PacketType.HANDSHAKE_RESPONSE, local_index, self.remote_index)
        body = head + handshake.write_message(RESPONSE_FRAMING.pack(len(payload)) + payload)
        datagram = body + mac(mac_key(LABEL_MAC1, self.remote_static), body)
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
        self._mac1_key = mac_key(LABEL_MAC1, static.public)
        self._cookie_key = mac_key(LABEL_COOKIE, static.public)

    def handle_initiation(
        self, packet: HandshakeInit, addr: Addr, now: float, *, under_load: bool
    ) -> CookieChallenge | IncomingHandshake:
        """Check mac1, then (``under_load``) mac2, then the Noise message; raise
        :class:`BadMac` / :class:`HandshakeFailed` on failure."""
        raw = packet.raw
        if not bytes_eq(mac(self._mac1_key, raw[: -2 * MAC_BYTES]), packet.mac1):
            raise BadMac("bad mac1 on handshake initiation")
        # No cookie attached (mac2 all zero, as in every first initiation and every flood of
        # them): nothing to check, the answer is a cookie.
        no_cookie = under_load and (
            packet.mac2 == ZERO_MAC
            or not self.cookies.mac2_valid(addr, now, raw[:-MAC_BYTES], packet.mac2)
        )
        if no_cookie:  # guard: cookie-check
            nonce = self._random_bytes(COOKIE_NONCE_BYTES)
            sealed = cookie_aead(self._cookie_key, nonce).encrypt(
                ZERO_NONCE, self.cookies.cookie(addr, now), packet.mac1
            )
            datagram = COOKIE_HEAD.pack(PacketType.COOKIE_REPLY, packet.sender) + nonce + sealed
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
        timestamp, payload = _unframe(framed, INIT_FRAMING)
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
