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
* **a budget**: ``RELAY_BYTES_PER_S`` per sender (a token bucket of bytes, burst one second's)
  and ``RELAY_TOTAL_BYTES_PER_S`` for all; what is over is dropped and counted (the peers'
  transfer layer retransmits later, as for any loss);
* only secure-layer packets a peer answers (HANDSHAKE_INIT, HANDSHAKE_RESPONSE, TRANSPORT)
  are forwarded, nothing in clear.

Why in the directory and not TURN (RFC 8656) is the closing note of docs/PROTOCOL.md's
"Relay" section.
"""

from __future__ import annotations

from collections import OrderedDict

from chat_protocol.const import (
    BUCKET_REFILL_S,
    MAX_TRACKED_IPS,
    RELAY_BYTES_PER_S,
    RELAY_TOTAL_BYTES_PER_S,
)
from chat_protocol.secure.packets import PacketType

RELAYABLE = frozenset(
    (PacketType.HANDSHAKE_INIT, PacketType.HANDSHAKE_RESPONSE, PacketType.TRANSPORT)
)
"""The secure-layer packets the relay forwards (by their first byte)."""


class ByteBudget:
    """``rate`` bytes a second per key, a burst of ``rate``; at most ``max_tracked`` keys (a
    bucket untouched for ``BUCKET_REFILL_S`` is full again, and dropped)."""

    __slots__ = ("_buckets", "max_tracked", "rate")

    def __init__(self, rate: float, *, max_tracked: int = MAX_TRACKED_IPS) -> None:
        self.rate = rate
        self.max_tracked = max_tracked
        self._buckets: OrderedDict[bytes, tuple[float, float]] = OrderedDict()

    def spend(self, key: bytes, size: int, now: float) -> bool:
        """Take ``size`` bytes from ``key``'s bucket; False (nothing taken) if it has fewer."""
        buckets = self._buckets
        tokens, at = buckets.pop(key, (self.rate, now))
        tokens = min(self.rate, tokens + (now - at) * self.rate)
        ok = tokens >= size
        buckets[key] = (tokens - size if ok else tokens, now)
        while len(buckets) > self.max_tracked:
            buckets.popitem(last=False)
        while buckets:
            oldest = next(iter(buckets))
            if now - buckets[oldest][1] < BUCKET_REFILL_S:
                break
            del buckets[oldest]
        return ok


class RelayPolicy:
    """Whether the relay forwards ``size`` bytes from ``sender`` now."""

    __slots__ = ("_all", "_per_user")

    def __init__(
        self,
        *,
        per_user_bytes_per_s: float = RELAY_BYTES_PER_S,
        total_bytes_per_s: float = RELAY_TOTAL_BYTES_PER_S,
    ) -> None:
        self._per_user = ByteBudget(per_user_bytes_per_s)
        self._all = ByteBudget(total_bytes_per_s, max_tracked=1)

    def allow(self, sender: bytes, datagram: bytes, now: float) -> bool:
        if datagram[:1] not in _RELAYABLE_BYTES:  # guard: relay-secure-only
            return False
        if not self._per_user.spend(sender, len(datagram), now):  # guard: relay-budget
            return False
        return self._all.spend(b"", len(datagram), now)


_RELAYABLE_BYTES = frozenset(bytes((t,)) for t in RELAYABLE)
