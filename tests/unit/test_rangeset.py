"""RangeSet against a naive model (a Python set of every integer), plus its bounded readers."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from chat_protocol.transfer.rangeset import RangeSet

UNIVERSE = 120
spans = st.tuples(st.integers(0, UNIVERSE - 1), st.integers(1, 24)).map(
    lambda t: (t[0], min(t[0] + t[1], UNIVERSE))
)


def runs(model: set[int]) -> list[tuple[int, int]]:
    """The maximal runs of consecutive integers in ``model``, as half-open ranges."""
    out: list[tuple[int, int]] = []
    for x in sorted(model):
        if out and out[-1][1] == x:
            out[-1] = (out[-1][0], x + 1)
        else:
            out.append((x, x + 1))
    return out


@given(st.lists(spans, max_size=40), st.lists(st.integers(0, UNIVERSE + 5), max_size=10))
def test_matches_a_set_of_integers(adds: list[tuple[int, int]], probes: list[int]) -> None:
    rs, model = RangeSet(), set[int]()
    for start, end in adds:
        new = set(range(start, end)) - model
        assert rs.add(start, end) == len(new)
        model |= new
        assert len(rs) == len(model)
        assert rs.ranges() == tuple(runs(model))
    assert rs.count == len(runs(model))
    assert rs.bounds() == ((min(model), max(model) + 1) if model else None)
    assert RangeSet(adds) == rs
    for x in [*probes, -1, 0, UNIVERSE]:
        assert (x in rs) == (x in model)
        gap = x if x >= 0 else 0
        while gap in model:
            gap += 1
        assert rs.first_gap(max(x, 0)) == gap
        for end in (x + 1, x + 7):
            assert rs.covers(x, end) == all(y in model for y in range(x, end))
    for limit in (0, 1, 3):
        assert rs.ranges(limit) == tuple(runs(model)[:limit])


@given(st.lists(spans, max_size=40), st.integers(1, 4))
def test_add_kept_is_add_then_the_lowest_range_forgotten(
    adds: list[tuple[int, int]], keep: int
) -> None:
    kept, model = RangeSet(), RangeSet()
    for start, end in adds:
        assert kept.add_kept(start, end, keep) == model.add(start, end)
        if model.count > keep:
            model.drop_lowest()
        assert kept == model and len(kept) == len(model)
        assert kept.count <= keep


def test_in_order_adds_stay_one_range() -> None:
    rs = RangeSet()
    for off in range(0, 1200 * 500, 1200):
        rs.add(off, off + 1200)
        assert rs.count == 1
    assert rs.first_gap() == len(rs) == 1200 * 500


def test_readers_are_bounded_by_limit() -> None:
    rs = RangeSet((i, i + 1) for i in range(0, 20_000, 2))  # 10 000 ranges
    assert rs.count == 10_000
    assert rs.ranges(32) == tuple((i, i + 1) for i in range(0, 64, 2))
    assert rs.first_gap() == 1
    assert rs.covers(100, 101) and not rs.covers(100, 102)


def test_edges() -> None:
    rs = RangeSet()
    assert rs.bounds() is None and len(rs) == 0 and not rs and rs.first_gap() == 0
    assert rs.covers(5, 5)  # an empty range is always covered
    with pytest.raises(ValueError, match="empty range"):
        rs.add(3, 3)
    assert rs.add(10, 20) == 10 and rs.add(0, 5) == 5 and rs.add(5, 10) == 5
    assert list(rs) == [(0, 20)]
    assert rs.add(0, 20) == 0
    assert repr(rs) == "RangeSet([0, 20))"
    assert "x" not in rs
    assert rs != RangeSet() and rs != [(0, 20)]
    rs.clear()
    assert rs == RangeSet()
