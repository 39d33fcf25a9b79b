"""The token buckets (secure/ratelimit.py): a burst of ``rate``, refilled at ``rate`` a
second, per key; a bounded table of the keys of the last ``BUCKET_REFILL_S``."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from chat_protocol.const import BUCKET_REFILL_S
from chat_protocol.secure.ratelimit import TOTAL, RateLimiter


def test_a_burst_of_rate_then_nothing_until_refilled() -> None:
    limiter = RateLimiter(5.0)
    assert [limiter.allow("10.0.0.1", 0.0) for _ in range(6)] == [True] * 5 + [False]
    assert not limiter.allow("10.0.0.1", 0.1)  # half a token back: not enough
    assert limiter.allow("10.0.0.1", 0.21)  # a whole one
    assert limiter.allow("10.0.0.2", 0.21)  # another key has its own bucket


def test_one_bucket_for_all() -> None:
    limiter = RateLimiter(2.0, max_tracked=1)
    assert [limiter.allow(TOTAL, 0.0) for _ in range(3)] == [True, True, False]
    assert len(limiter) == 1


def test_the_table_holds_at_most_max_tracked_keys() -> None:
    limiter = RateLimiter(1.0, max_tracked=3)
    for i in range(10):
        assert limiter.allow(f"10.0.0.{i}", 0.0)
    assert len(limiter) == 3
    assert limiter.allow("10.0.0.0", 0.0)  # evicted, so full again (a forged-source flood
    # costs a real address at most its own bucket)
    assert not limiter.allow("10.0.0.9", 0.0)  # still held, still empty


def test_buckets_untouched_for_the_refill_time_are_dropped() -> None:
    limiter = RateLimiter(1.0)
    limiter.allow("a", 0.0)
    limiter.allow("b", 0.5)
    limiter.allow("c", BUCKET_REFILL_S + 0.1)
    assert len(limiter) == 2  # a went; b is younger than the refill time


@given(st.lists(st.tuples(st.sampled_from("abc"), st.floats(0.0, 0.5)), max_size=60))
def test_never_more_than_the_burst_plus_the_refill(steps: list[tuple[str, float]]) -> None:
    rate = 3.0
    limiter = RateLimiter(rate)
    now = 0.0
    granted: dict[str, int] = {}
    for key, dt in steps:
        now += dt
        if limiter.allow(key, now):
            granted[key] = granted.get(key, 0) + 1
    for n in granted.values():
        assert n <= rate + rate * now + 1e-9
