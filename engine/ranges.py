"""A set of byte ranges: which parts of a file are on disk. Pure, no I/O."""

from __future__ import annotations

import bisect
from collections.abc import Iterable


class RangeSet:
    """Disjoint, sorted, merged half-open ranges ``[start, end)``."""

    def __init__(self, ranges: Iterable[tuple[int, int]] = ()) -> None:
        self._starts: list[int] = []
        self._ends: list[int] = []
        for start, end in ranges:
            self.add(start, end)

    def add(self, start: int, end: int) -> None:
        """Mark ``[start, end)`` as covered, merging with touching ranges."""
        if end <= start:
            return
        # Ranges whose end >= start and whose start <= end touch or overlap the new one.
        lo = bisect.bisect_left(self._ends, start)
        hi = bisect.bisect_right(self._starts, end)
        if lo < hi:
            start = min(start, self._starts[lo])
            end = max(end, self._ends[hi - 1])
        self._starts[lo:hi] = [start]
        self._ends[lo:hi] = [end]

    @property
    def covered(self) -> int:
        """Total bytes covered."""
        return sum(e - s for s, e in zip(self._starts, self._ends, strict=True))

    def gaps(self, size: int) -> list[tuple[int, int]]:
        """The ranges within ``[0, size)`` not covered, in order."""
        out: list[tuple[int, int]] = []
        pos = 0
        for s, e in zip(self._starts, self._ends, strict=True):
            if s >= size:
                break
            if s > pos:
                out.append((pos, s))
            pos = max(pos, e)
        if pos < size:
            out.append((pos, size))
        return out

    def contains(self, start: int, end: int) -> bool:
        """Whether all of ``[start, end)`` is covered."""
        if end <= start:
            return True
        i = bisect.bisect_right(self._starts, start) - 1
        return i >= 0 and self._ends[i] >= end

    def as_list(self) -> list[tuple[int, int]]:
        """The ranges as ``(start, end)`` pairs."""
        return list(zip(self._starts, self._ends, strict=True))

    def copy(self) -> RangeSet:
        """An independent copy."""
        other = RangeSet()
        other._starts = list(self._starts)
        other._ends = list(self._ends)
        return other

    def __eq__(self, other: object) -> bool:
        return isinstance(other, RangeSet) and self.as_list() == other.as_list()

    def __repr__(self) -> str:
        return f"RangeSet({self.as_list()!r})"
