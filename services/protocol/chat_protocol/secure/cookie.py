"""MACs and cookies: mac1 (who the initiation is for), mac2 and the cookie jar (that the sender
receives at its address), and the seal of a COOKIE_REPLY (WireGuard's ``cookie.go``)."""

from __future__ import annotations

import math

from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305
from cryptography.hazmat.primitives.constant_time import bytes_eq

from chat_protocol.const import COOKIE_SECRET_LIFETIME_S
from chat_protocol.secure.errors import LocalSecureError
from chat_protocol.secure.noise import RandomBytes, hash_bytes, hmac_hash
from chat_protocol.secure.packets import HASH, MAC_BYTES
from chat_protocol.wire.messages import Addr


def mac(key: bytes, data: bytes) -> bytes:
    return hmac_hash(HASH, key, data)[:MAC_BYTES]


def mac_key(label: bytes, static_public: bytes) -> bytes:
    """``HASH(label | static key)``: the mac1 key (label ``mac1----``) or cookie key (``cookie--``)
    of the party owning ``static_public``; anyone who knows that public key can compute it."""
    return hash_bytes(HASH, label + static_public)


def _addr_bytes(addr: Addr) -> bytes:
    return f"{addr[0]}\x00{addr[1]}".encode("utf-8", "surrogateescape")


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
        return mac(self._current, period.to_bytes(8, "big", signed=True) + _addr_bytes(addr))

    def mac2_valid(self, addr: Addr, now: float, signed: bytes, mac2: bytes) -> bool:
        """True if ``mac2`` is ``MAC(cookie, signed)`` for a cookie ``addr`` holds this period or
        the last."""
        period = self._rotate(now)
        candidates = [(self._current, period)]
        if self._previous is not None:
            candidates.append((self._previous, period - 1))
        ok = False
        for secret, p in candidates:
            cookie = mac(secret, p.to_bytes(8, "big", signed=True) + _addr_bytes(addr))
            ok |= bytes_eq(mac(cookie, signed), mac2)
        return ok


def cookie_aead(cookie_key: bytes, nonce: bytes) -> ChaCha20Poly1305:
    # A fresh subkey per random 24-byte nonce (as XChaCha20 does with HChaCha20), so the 96-bit
    # AEAD nonce can stay zero and random nonces never collide under one key.
    return ChaCha20Poly1305(hmac_hash(HASH, cookie_key, nonce))
