"""A set of integers (byte offsets) kept as sorted, disjoint half-open ranges ``[start, end)``.

After aioquic's ``quic/rangeset.py``, with two changes for a per-datagram hot path: ranges are
found by binary search (``bisect``) instead of a linear scan, and readers take a bounded prefix
(:meth:`RangeSet.ranges` with a ``limit``) instead of copying or sorting the whole set. Adjacent
ranges are merged, so a set filled in order is always one range.

Costs, with ``n`` ranges held: :meth:`add` O(log n) to find its place plus the merge (each range
merged away was created by an earlier ``add``, so that part is amortised O(1)) and a list splice
(a C ``memmove`` of n pointers); :meth:`covers`, ``in`` and :meth:`first_gap` O(log n);
:meth:`ranges` O(limit); ``len`` (bytes held) O(1).
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right
from collections.abc import Iterable, Iterator


class RangeSet:
    """Integers as sorted, disjoint, non-adjacent ranges ``[start, end)``; ``len`` is their count
    of integers (bytes), :attr:`count` the number of ranges."""

    __slots__ = ("_ends", "_size", "_starts")

    def __init__(self, ranges: Iterable[tuple[int, int]] = ()) -> None:
        self._starts: list[int] = []
        self._ends: list[int] = []
        self._size = 0
        for start, end in ranges:
            self.add(start, end)

    def add(self, start: int, end: int) -> int:
        """Add ``[start, end)``; return how many of its integers were not in the set before."""
        if start >= end:
            raise ValueError(f"empty range [{start}, {end})")
        starts, ends = self._starts, self._ends
        if not ends or start > ends[-1]:  # past every range (the usual case): a new last one
            starts.append(start)
            ends.append(end)
            self._size += end - start
            return end - start
        if start == ends[-1]:  # right after the last range: it grows
            ends[-1] = end
            self._size += end - start
            return end - start
        # Ranges i .. j-1 overlap or touch [start, end): their end >= start and start <= end.
        i = bisect_left(ends, start)
        j = bisect_right(starts, end, i)
        if i == j:
            starts.insert(i, start)
            ends.insert(i, end)
            self._size += end - start
            return end - start
        lo, hi = starts[i], ends[j - 1]
        if j == i + 1 and lo <= start and end <= hi:
            return 0  # already held: the common duplicate, no change
        held = hi - lo if j == i + 1 else sum(ends[k] - starts[k] for k in range(i, j))
        if start < lo:
            lo = start
        if end > hi:
            hi = end
        starts[i:j] = (lo,)
        ends[i:j] = (hi,)
        added = hi - lo - held
        self._size += added
        return added

    def add_kept(self, start: int, end: int, keep: int) -> int:
        """:meth:`add`, then forget the lowest range if more than ``keep`` are held (a bounded
        memory: of packet numbers)."""
        added = self.add(start, end)
        if len(self._starts) > keep:
            self.drop_lowest()
        return added

    def covers(self, start: int, end: int) -> bool:
        """Is every integer of ``[start, end)`` in the set? (True for an empty range.)"""
        if start >= end:
            return True
        i = bisect_right(self._starts, start) - 1
        return i >= 0 and self._ends[i] >= end

    def __contains__(self, value: object) -> bool:
        return isinstance(value, int) and self.covers(value, value + 1)

    def first_gap(self, start: int = 0) -> int:
        """The lowest integer ``>= start`` not in the set. ``first_gap()`` is the length of the
        contiguous prefix from 0 (for a message being reassembled: every byte below it is here)."""
        i = bisect_right(self._starts, start) - 1
        if i >= 0 and self._ends[i] > start:
            return self._ends[i]
        return start

    def ranges(self, limit: int | None = None) -> tuple[tuple[int, int], ...]:
        """The lowest ``limit`` ranges (all if None), lowest first. Costs O(limit), not O(n)."""
        if limit is None:
            return tuple(zip(self._starts, self._ends, strict=True))
        return tuple(zip(self._starts[:limit], self._ends[:limit], strict=True))

    def newest(self, limit: int) -> tuple[tuple[int, int], ...]:
        """The highest ``limit`` ranges, lowest first. Costs O(limit)."""
        n = len(self._starts)
        k = max(0, n - limit)
        return tuple(zip(self._starts[k:], self._ends[k:], strict=True))

    def drop_lowest(self) -> None:
        """Forget the lowest range (a bounded memory of packet numbers)."""
        if self._starts:
            self._size -= self._ends[0] - self._starts[0]
            del self._starts[0]
            del self._ends[0]

    def bounds(self) -> tuple[int, int] | None:
        """``(lowest, highest + 1)`` of the set, or None when it is empty."""
        if not self._starts:
            return None
        return (self._starts[0], self._ends[-1])

    @property
    def count(self) -> int:
        """How many disjoint ranges the set is made of."""
        return len(self._starts)

    def clear(self) -> None:
        self._starts.clear()
        self._ends.clear()
        self._size = 0

    def __len__(self) -> int:
        """How many integers (bytes) the set holds."""
        return self._size

    def __iter__(self) -> Iterator[tuple[int, int]]:
        return zip(self._starts, self._ends, strict=True)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, RangeSet):
            return NotImplemented
        return self._starts == other._starts and self._ends == other._ends

    __hash__ = None  # type: ignore[assignment]  # mutable

    def __repr__(self) -> str:
        inner = ", ".join(f"[{s}, {e})" for s, e in self)
        return f"RangeSet({inner})"
