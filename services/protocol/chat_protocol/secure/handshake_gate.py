"""When a client makes an initiator prove its address before doing public-key work (issue 19,
point 5): the server's defences against handshake floods, for peers.

Any signed-in user can learn a peer's static key by lookup, and so build initiations whose mac1
checks; each costs the peer two Diffie-Hellman operations to read and two more to answer. A
:class:`HandshakeGate` decides, per initiation, whether the client is **under load** for it
(WireGuard's term): then the secure endpoint answers with a cookie reply (one MAC, 61 bytes) and
keeps nothing, and only an initiation that echoes the cookie (mac2) from the same address gets
the Noise work. Under load means either

* more than ``PEER_HANDSHAKES_PER_S_UNDER_LOAD`` initiations arrived in the last second, from
  anyone, or
* the source IP spent its bucket of ``PEER_HANDSHAKES_PER_IP_PER_S``.

A forged source never receives the cookie, so a flood from forged sources costs the client one
MAC per datagram once it is under load. Initiations that do carry a valid cookie while under
load take a token from a second, per-IP bucket (:meth:`HandshakeGate.proven`): an attacker at a
real address gets its own rate, no more. The buckets are the server's
(:class:`~chat_protocol.secure.ratelimit.RateLimiter`).
"""

from __future__ import annotations

from chat_protocol.const import (
    MAX_PEER_TRACKED_IPS,
    PEER_HANDSHAKES_PER_IP_PER_S,
    PEER_HANDSHAKES_PER_S_UNDER_LOAD,
    PEER_PROVEN_HANDSHAKES_PER_IP_PER_S,
)
from chat_protocol.secure.errors import LocalSecureError
from chat_protocol.secure.ratelimit import RateLimiter
from chat_protocol.wire.messages import Addr


class HandshakeGate:
    """Per initiation: cookie first (:meth:`under_load`), and whether a cookie-proven one may
    have the Noise work now (:meth:`proven`)."""

    __slots__ = ("_count", "_per_ip", "_proven", "_window_start", "rate_under_load")

    def __init__(
        self,
        *,
        rate_under_load: float = PEER_HANDSHAKES_PER_S_UNDER_LOAD,
        per_ip: float = PEER_HANDSHAKES_PER_IP_PER_S,
        proven_per_ip: float = PEER_PROVEN_HANDSHAKES_PER_IP_PER_S,
    ) -> None:
        if min(rate_under_load, per_ip, proven_per_ip) <= 0:
            raise LocalSecureError("a handshake gate lets some initiations through: rates > 0")
        self.rate_under_load = rate_under_load
        self._per_ip = RateLimiter(per_ip, max_tracked=MAX_PEER_TRACKED_IPS)
        self._proven = RateLimiter(proven_per_ip, max_tracked=MAX_PEER_TRACKED_IPS)
        self._window_start = float("-inf")
        self._count = 0

    def under_load(self, addr: Addr, now: float) -> bool:
        """Count one initiation from ``addr``; True if it must carry a valid cookie."""
        if now - self._window_start >= 1.0:
            self._window_start, self._count = now, 0
        self._count += 1
        over_ip = not self._per_ip.allow(addr[0], now)
        loaded = False
        if over_ip or self._count > self.rate_under_load:  # guard: client-cookie
            loaded = True
        return loaded

    def proven(self, addr: Addr, now: float) -> bool:
        """An initiation from ``addr`` carried a valid cookie while under load: True if its IP
        has a token left in its bucket for proven initiations (else drop it, no work)."""
        return self._proven.allow(addr[0], now)
