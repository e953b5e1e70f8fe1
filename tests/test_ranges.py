"""RangeSet against a naive set-of-bytes model, plus the edge cases resuming depends on."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from engine.ranges import RangeSet

SIZE = 200
"""Byte positions used by the property tests: small enough to model as a Python set."""

intervals = st.lists(
    st.tuples(st.integers(0, SIZE), st.integers(0, SIZE)),
    max_size=25,
)


def model_of(pairs: list[tuple[int, int]]) -> set[int]:
    """Every byte the added intervals cover, the slow obvious way."""
    covered: set[int] = set()
    for start, end in pairs:
        covered.update(range(start, end))
    return covered


def runs(covered: set[int], lo: int, hi: int, want: bool) -> list[tuple[int, int]]:
    """Maximal runs in ``[lo, hi)`` of bytes whose membership in ``covered`` is ``want``."""
    out: list[tuple[int, int]] = []
    start: int | None = None
    for i in range(lo, hi):
        if (i in covered) == want:
            if start is None:
                start = i
        elif start is not None:
            out.append((start, i))
            start = None
    if start is not None:
        out.append((start, hi))
    return out


def test_empty() -> None:
    rs = RangeSet()
    assert rs.covered == 0
    assert rs.as_list() == []
    assert rs.gaps(10) == [(0, 10)]
    assert rs.gaps(0) == []
    assert not rs.contains(0, 1)
    assert rs.contains(5, 5)  # an empty range is trivially covered


def test_touching_ranges_merge() -> None:
    rs = RangeSet([(0, 10), (10, 20)])
    assert rs.as_list() == [(0, 20)]
    rs.add(30, 40)
    rs.add(20, 30)
    assert rs.as_list() == [(0, 40)]


def test_add_bridging_many_ranges() -> None:
    rs = RangeSet([(0, 2), (4, 6), (8, 10), (12, 14)])
    rs.add(1, 13)
    assert rs.as_list() == [(0, 14)]
    assert rs.covered == 14


def test_add_inside_existing_range_is_a_no_op() -> None:
    rs = RangeSet([(10, 100)])
    rs.add(20, 30)
    assert rs.as_list() == [(10, 100)]


def test_empty_or_reversed_add_is_ignored() -> None:
    rs = RangeSet([(5, 5), (9, 3)])
    assert rs.as_list() == []


def test_gaps_clip_to_size() -> None:
    rs = RangeSet([(2, 4), (8, 50)])
    assert rs.gaps(10) == [(0, 2), (4, 8)]
    assert rs.gaps(6) == [(0, 2), (4, 6)]
    assert rs.gaps(3) == [(0, 2)]


def test_contains() -> None:
    rs = RangeSet([(10, 20), (30, 40)])
    assert rs.contains(10, 20)
    assert rs.contains(12, 15)
    assert not rs.contains(9, 12)
    assert not rs.contains(15, 31)
    assert not rs.contains(20, 21)


def test_copy_is_independent_and_equality() -> None:
    rs = RangeSet([(0, 5)])
    other = rs.copy()
    other.add(5, 9)
    assert rs.as_list() == [(0, 5)]
    assert other == RangeSet([(0, 9)])
    assert rs != other
    assert rs != [(0, 5)]
    assert repr(rs) == "RangeSet([(0, 5)])"


@settings(max_examples=300, deadline=None)
@given(intervals)
def test_matches_set_model(pairs: list[tuple[int, int]]) -> None:
    rs = RangeSet()
    for start, end in pairs:
        rs.add(start, end)
    covered = model_of(pairs)

    assert rs.covered == len(covered)
    # Stored ranges are exactly the maximal covered runs: sorted, disjoint, merged.
    assert rs.as_list() == runs(covered, 0, SIZE + 1, want=True)
    for size in (0, 1, SIZE // 2, SIZE, SIZE + 7):
        assert rs.gaps(size) == runs(covered, 0, size, want=False)


@settings(max_examples=200, deadline=None)
@given(intervals, st.integers(0, SIZE), st.integers(0, SIZE))
def test_contains_matches_model(pairs: list[tuple[int, int]], a: int, b: int) -> None:
    rs = RangeSet(pairs)
    covered = model_of(pairs)
    assert rs.contains(a, b) == all(i in covered for i in range(a, b))


@settings(max_examples=100, deadline=None)
@given(intervals)
def test_order_of_adds_does_not_matter(pairs: list[tuple[int, int]]) -> None:
    assert RangeSet(pairs) == RangeSet(reversed(pairs))
