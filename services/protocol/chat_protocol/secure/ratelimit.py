"""Token buckets by source (WireGuard's ``ratelimiter/``): the directory server's handshake and
ping limits, its relay's byte budgets, and a client's handshake gate
(:mod:`~chat_protocol.secure.handshake_gate`).

A :class:`RateLimiter` grants each key (a source IP) ``rate`` tokens a second, with a burst of the
same size; :meth:`RateLimiter.allow` takes one. A bucket untouched for ``BUCKET_REFILL_S`` is full
again, exactly as if it were not there: such buckets are dropped (the least recently touched come
first), so the table holds the sources of the last second, never more than ``max_tracked``.
"""

from __future__ import annotations

from collections import OrderedDict

from chat_protocol.const import BUCKET_REFILL_S, MAX_TRACKED_IPS

TOTAL = ""
"""The key of a limiter's one bucket when it limits all sources together."""


class RateLimiter:
    """``rate`` tokens a second per key, a burst of ``rate``; at most ``max_tracked`` keys."""

    __slots__ = ("_buckets", "max_tracked", "rate")

    def __init__(self, rate: float, *, max_tracked: int = MAX_TRACKED_IPS) -> None:
        self.rate = rate
        self.max_tracked = max_tracked
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()
        """Key -> (tokens, when last refilled), least recently touched first."""

    def __len__(self) -> int:
        return len(self._buckets)

    def allow(self, key: str, now: float) -> bool:
        """One token from ``key``'s bucket; False (and nothing taken) when it is empty."""
        return self.spend(key, 1.0, now)

    def spend(self, key: str, cost: float, now: float) -> bool:
        """``cost`` tokens from ``key``'s bucket (the relay's: bytes); False (and nothing
        taken) when it holds fewer."""
        buckets = self._buckets
        rate = self.rate
        tokens, at = buckets.pop(key, (rate, now))
        tokens = min(rate, tokens + (now - at) * rate)
        ok = tokens >= cost
        buckets[key] = (tokens - cost if ok else tokens, now)
        while len(buckets) > self.max_tracked:
            buckets.popitem(last=False)
        while buckets:
            oldest = next(iter(buckets))
            if now - buckets[oldest][1] < BUCKET_REFILL_S:
                break
            del buckets[oldest]
        return ok
