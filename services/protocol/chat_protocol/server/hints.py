"""The directory's rendezvous hints (issue 21): when a signed-in user looks another up to send
to it, the directory tells the target, over the target's own session, where the asker is (a
PUNCH), so both send at once and each NAT sees outbound traffic first (RFC 5128's hole
punching, as Tailscale's disco and libp2p's DCUtR coordinate it).

What a hint can make the target do is bounded here:

* only a real LOOKUP with the punch flag, by a signed-in user, of another signed-in user;
* the endpoints in it are the asker's own: its public one as the directory observes it (the
  newest authenticated source of its session) and the private ones it declared at sign-in,
  filtered by :func:`chat_protocol.wire.endpoints.private_endpoints`; nothing the lookup says;
* at most ``HINTS_PER_ASKER_PER_S`` per asker and ``HINTS_PER_TARGET_PER_S`` per target (token
  buckets, :class:`chat_protocol.secure.ratelimit.RateLimiter`).
"""

from __future__ import annotations

from chat_protocol.const import HINTS_PER_ASKER_PER_S, HINTS_PER_TARGET_PER_S
from chat_protocol.secure.ratelimit import RateLimiter


class HintLimiter:
    """Whether a hint from ``asker`` to ``target`` (static keys) may go now."""

    __slots__ = ("_askers", "_targets", "by_asker", "by_target")

    def __init__(
        self,
        *,
        per_asker_per_s: float = HINTS_PER_ASKER_PER_S,
        per_target_per_s: float = HINTS_PER_TARGET_PER_S,
    ) -> None:
        self._askers = RateLimiter(per_asker_per_s)
        self._targets = RateLimiter(per_target_per_s)
        self.by_asker = 0
        """Hints refused for the asker's rate."""
        self.by_target = 0
        """Hints refused for the target's rate."""

    def allow(self, asker: bytes, target: bytes, now: float) -> bool:
        if asker == target:
            return False
        # The asker's bucket first: an asker over its own rate spends nothing of the target's.
        if not self._askers.allow(asker.hex(), now):  # guard: hints-per-asker
            self.by_asker += 1
            return False
        if not self._targets.allow(target.hex(), now):  # guard: hints-per-target
            self.by_target += 1
            return False
        return True
