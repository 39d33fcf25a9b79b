"""The directory's relay (issue 21): the last resort when no direct path between two peers
opens (symmetric NATs on both sides, or UDP between them blocked).

A signed-in user sends a RELAY on its session with the directory: the peer's key and one
secure-layer packet for that peer (a handshake message or a TRANSPORT: the peers' own Noise
ciphertext, which the directory cannot read). The directory forwards it, as a RELAYED naming
the sender's key, on the peer's session. So:

* **no open proxy**: it forwards only between two signed-in users' sessions, never to an
  address anyone names; the receiver's client learns the sender's key from the directory,
  and the peers' handshake proves it;
* **no amplifier**: a RELAYED is exactly as large as the RELAY it forwards, one for one;
* **a budget**: ``RELAY_BYTES_PER_S`` per sender (a token bucket of bytes, burst one second's:
  :class:`~chat_protocol.secure.ratelimit.RateLimiter`)
  and ``RELAY_TOTAL_BYTES_PER_S`` for all; what is over is dropped and counted (the peers'
  transfer layer retransmits later, as for any loss);
* only secure-layer packets a peer answers (HANDSHAKE_INIT, HANDSHAKE_RESPONSE, TRANSPORT)
  are forwarded, nothing in clear.

Why in the directory and not TURN (RFC 8656) is the closing note of docs/PROTOCOL.md's
"Relay" section.
"""

from __future__ import annotations

from chat_protocol.const import RELAY_BYTES_PER_S, RELAY_TOTAL_BYTES_PER_S
from chat_protocol.secure.packets import PacketType
from chat_protocol.secure.ratelimit import TOTAL, RateLimiter

RELAYABLE = frozenset(
    (PacketType.HANDSHAKE_INIT, PacketType.HANDSHAKE_RESPONSE, PacketType.TRANSPORT)
)
"""The secure-layer packets the relay forwards (by their first byte)."""


class RelayPolicy:
    """Whether the relay forwards ``size`` bytes from ``sender`` now."""

    __slots__ = ("_all", "_per_user")

    def __init__(
        self,
        *,
        per_user_bytes_per_s: float = RELAY_BYTES_PER_S,
        total_bytes_per_s: float = RELAY_TOTAL_BYTES_PER_S,
    ) -> None:
        self._per_user = RateLimiter(per_user_bytes_per_s)
        """Bytes a second per sender (keyed by its static key in hex), a burst of one second's."""
        self._all = RateLimiter(total_bytes_per_s, max_tracked=1)
        """... and for all senders together (one bucket, :data:`TOTAL`)."""

    def allow(self, sender: bytes, datagram: bytes, now: float) -> bool:
        if datagram[:1] not in _RELAYABLE_BYTES:  # guard: relay-secure-only
            return False
        size = len(datagram)
        if not self._per_user.spend(sender.hex(), size, now):  # guard: relay-budget
            return False
        return self._all.spend(TOTAL, size, now)


_RELAYABLE_BYTES = frozenset(bytes((t,)) for t in RELAYABLE)
