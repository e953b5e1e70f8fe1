"""Segment planning: pieces never overlap, exactly cover the gaps, and splits respect min_split."""

from __future__ import annotations

import itertools

from hypothesis import given, settings
from hypothesis import strategies as st

from engine.segments import Segment, first_range, initial_plan, split_largest, split_slowest


@st.composite
def gap_lists(draw: st.DrawFn) -> list[tuple[int, int]]:
    """Sorted, disjoint, non-empty gaps like ``RangeSet.gaps`` returns."""
    points = sorted(draw(st.sets(st.integers(0, 5000), max_size=12)))
    pairs = list(zip(points[::2], points[1::2], strict=False))
    return [(s, e) for s, e in pairs if e > s]


def covered_bytes(pairs: list[tuple[int, int]]) -> set[int]:
    """Every byte in the half-open ranges."""
    out: set[int] = set()
    for s, e in pairs:
        out.update(range(s, e))
    return out


def test_single_gap_split_evenly() -> None:
    plan = initial_plan([(0, 1000)], connections=4, min_split=10)
    assert [(s.start, s.end, s.pos) for s in plan] == [
        (0, 250, 0),
        (250, 500, 250),
        (500, 750, 500),
        (750, 1000, 750),
    ]


def test_small_gap_is_not_split() -> None:
    assert [(s.start, s.end) for s in initial_plan([(0, 150)], 8, min_split=100)] == [(0, 150)]


def test_gap_just_big_enough_is_halved() -> None:
    plan = initial_plan([(0, 200)], 8, min_split=100)
    assert [(s.start, s.end) for s in plan] == [(0, 100), (100, 200)]


def test_small_gaps_stay_whole_and_count() -> None:
    # Gaps below min_split are still downloaded, as they are.
    plan = initial_plan([(0, 3), (10, 12), (20, 1020)], 3, min_split=100)
    assert [(s.start, s.end) for s in plan] == [(0, 3), (10, 12), (20, 1020)]


def test_empty_gaps_give_no_segments() -> None:
    assert initial_plan([], 4, 10) == []
    assert initial_plan([(5, 5)], 4, 10) == []


def test_split_largest_takes_back_half_of_what_is_left() -> None:
    a = Segment(0, 100, 90)  # 10 left
    b = Segment(100, 400, 160)  # 240 left: the largest by remaining, not by size
    c = Segment(400, 600, 400)  # 200 left
    new = split_largest([a, b, c], min_split=10)
    assert new == Segment(280, 400, 280)
    assert b == Segment(100, 280, 160)
    assert a == Segment(0, 100, 90) and c == Segment(400, 600, 400)


def test_split_largest_refuses_pieces_below_min_split() -> None:
    seg = Segment(0, 1000, 801)  # 199 left: halves would be 99 and 100
    assert split_largest([seg], min_split=100) is None
    assert seg.end == 1000
    seg.pos = 800  # exactly 2 * min_split
    assert split_largest([seg], min_split=100) == Segment(900, 1000, 900)


def test_split_largest_of_nothing() -> None:
    assert split_largest([], 1) is None
    assert split_largest([Segment(0, 10, 10)], 1) is None
    # min_split 0 still never makes an empty piece.
    assert split_largest([Segment(0, 1, 0)], 0) is None


def test_remaining_never_negative() -> None:
    assert Segment(0, 10, 12).remaining == 0


@settings(max_examples=300, deadline=None)
@given(gap_lists(), st.integers(1, 32), st.integers(0, 700))
def test_initial_plan_properties(gaps: list[tuple[int, int]], connections: int, min_split: int) -> None:
    plan = initial_plan(gaps, connections, min_split)
    pieces = [(s.start, s.end) for s in plan]

    # Sorted, non-overlapping, each untouched yet.
    assert all(s.pos == s.start < s.end for s in plan)
    assert all(a[1] <= b[0] for a, b in itertools.pairwise(pieces))
    # Exactly the missing bytes, no more, no less.
    assert covered_bytes(pieces) == covered_bytes(gaps)
    assert sum(e - s for s, e in pieces) == sum(e - s for s, e in gaps)

    # Splitting never adds segments beyond the connection count; separate gaps cannot be merged,
    # so each is at least one segment.
    assert len(plan) <= max(connections, len(gaps))
    assert len(plan) >= len(gaps)

    for gs, ge in gaps:
        inside = [(s, e) for s, e in pieces if gs <= s and e <= ge]
        if len(inside) > 1:
            assert all(e - s >= max(1, min_split) for s, e in inside), (gs, ge, inside)

    # It stops early only when nothing is left big enough to halve.
    if len(plan) < connections:
        assert all(s.remaining < 2 * max(1, min_split) for s in plan)


@settings(max_examples=300, deadline=None)
@given(
    st.lists(st.tuples(st.integers(1, 3000), st.integers(0, 3000)), min_size=1, max_size=8),
    st.integers(0, 500),
)
def test_split_largest_properties(shapes: list[tuple[int, int]], min_split: int) -> None:
    # Lay segments end to end, each part-way through its range.
    segments: list[Segment] = []
    offset = 0
    for size, done in shapes:
        segments.append(Segment(offset, offset + size, offset + min(done, size)))
        offset += size
    before = [(s.start, s.end, s.pos, s.remaining) for s in segments]
    largest = max(s.remaining for s in segments)
    first_largest = next(i for i, s in enumerate(segments) if s.remaining == largest)

    new = split_largest(segments, min_split)

    if largest < 2 * max(1, min_split):
        assert new is None
        assert [(s.start, s.end, s.pos, s.remaining) for s in segments] == before
        return
    assert new is not None
    victim = segments[first_largest]
    start, end, pos, remaining = before[first_largest]
    # The victim keeps its start and progress, and the first half of what it had left.
    assert (victim.start, victim.pos) == (start, pos)
    assert victim.end == new.start == new.pos == pos + remaining // 2
    assert new.end == end
    assert victim.remaining >= max(1, min_split) and new.remaining >= max(1, min_split)
    assert abs(victim.remaining - new.remaining) <= 1
    # Nobody else moved.
    others = [b for i, b in enumerate(before) if i != first_largest]
    rest = [(s.start, s.end, s.pos, s.remaining) for i, s in enumerate(segments) if i != first_largest]
    assert rest == others


@settings(max_examples=100, deadline=None)
@given(st.integers(1, 2000), st.integers(1, 200))
def test_splitting_to_exhaustion_keeps_every_piece_big(min_split: int, pieces: int) -> None:
    # At most ~200 pieces keeps the quadratic search cheap.
    size = min_split * pieces + pieces // 3
    segments = [Segment(0, size, 0)]
    while (new := split_largest(segments, min_split)) is not None:
        segments.append(new)
        assert len(segments) <= size  # bounded: every piece holds at least a byte
    segments.sort(key=lambda s: s.start)
    assert segments[0].start == 0 and segments[-1].end == size
    assert all(a.end == b.start for a, b in itertools.pairwise(segments))
    if len(segments) > 1:
        assert all(min_split <= s.end - s.start < 2 * min_split for s in segments)


def test_split_never_takes_bytes_already_requested() -> None:
    """Bytes up to ``committed`` are on their way on the old connection; splitting them would fetch twice."""
    seg = Segment(0, 100 * 1024 * 1024, 10 * 1024 * 1024, committed=60 * 1024 * 1024)
    new = split_largest([seg], 1024 * 1024)
    assert new is not None
    assert new.start == seg.end == 80 * 1024 * 1024
    assert new.end == 100 * 1024 * 1024


def test_fully_requested_segment_is_not_split() -> None:
    seg = Segment(0, 8 * 1024 * 1024, 0, committed=8 * 1024 * 1024)
    assert split_largest([seg], 1024 * 1024) is None


@given(
    start=st.integers(0, 10**9),
    length=st.integers(1, 10**9),
    pos_frac=st.floats(0, 1),
    commit_frac=st.floats(0, 1.5),
    min_split=st.integers(1, 10**8),
)
def test_split_point_is_past_committed(
    start: int, length: int, pos_frac: float, commit_frac: float, min_split: int
) -> None:
    pos = start + int(length * pos_frac)
    committed = start + int(length * commit_frac)
    seg = Segment(start, start + length, min(pos, start + length), committed=committed)
    before_end = seg.end
    new = split_largest([seg], min_split)
    if new is not None:
        assert new.start >= max(seg.pos, committed)
        assert new.start == seg.end and new.end == before_end
        assert new.end - new.start >= min_split and seg.end - max(seg.pos, committed) >= min_split


def test_split_slowest_takes_the_segment_that_would_finish_last() -> None:
    fast = Segment(0, 8 * 1024 * 1024, 0, committed=8 * 1024 * 1024)
    slow = Segment(8 * 1024 * 1024, 16 * 1024 * 1024, 8 * 1024 * 1024, committed=16 * 1024 * 1024)
    new = split_slowest([(fast, 100e6), (slow, 64e3)], 1024 * 1024, patience=2.0)
    assert new is not None
    assert (new.start, new.end) == (12 * 1024 * 1024, 16 * 1024 * 1024)
    assert slow.end == 12 * 1024 * 1024 and fast.end == 8 * 1024 * 1024


def test_split_slowest_leaves_segments_that_finish_soon() -> None:
    seg = Segment(0, 8 * 1024 * 1024, 0, committed=8 * 1024 * 1024)
    assert split_slowest([(seg, 100e6)], 1024 * 1024, patience=2.0) is None


def test_split_slowest_treats_a_stalled_connection_as_never_finishing() -> None:
    seg = Segment(0, 4 * 1024 * 1024, 1024, committed=4 * 1024 * 1024)
    new = split_slowest([(seg, 0.0)], 1024 * 1024, patience=2.0)
    assert new is not None and new.start == seg.end


@given(
    length=st.integers(1, 10**9),
    pos_frac=st.floats(0, 1),
    speed=st.floats(0, 1e9),
    min_split=st.integers(1, 10**8),
)
def test_split_slowest_halves_what_is_left(
    length: int, pos_frac: float, speed: float, min_split: int
) -> None:
    seg = Segment(0, length, int(length * pos_frac))
    end = seg.end
    new = split_slowest([(seg, speed)], min_split, patience=1.0)
    if new is not None:
        assert seg.end == new.start and new.end == end
        assert seg.end - seg.pos >= min_split and new.end - new.start >= min_split


def test_first_range_of_a_fresh_download_is_the_first_piece() -> None:
    assert first_range([], None, 1024) == (0, 1023)


def test_first_range_of_a_resume_is_the_first_piece_of_the_first_gap() -> None:
    assert first_range([(5000, 9000), (12000, 13000)], 13000, 1024) == (5000, 6023)
    assert first_range([(5000, 5100), (12000, 13000)], 13000, 1024) == (5000, 5099)  # a short gap


def test_first_range_with_nothing_missing_is_the_last_byte() -> None:
    assert first_range([], 13000, 1024) == (12999, 12999)


@settings(max_examples=300, deadline=None)
@given(gap_lists(), st.integers(1, 32), st.integers(0, 700))
def test_first_range_lies_in_the_first_planned_segment(
    gaps: list[tuple[int, int]], connections: int, min_split: int
) -> None:
    # The probe asks for min_split bytes: whatever the plan, its answer is the first segment's to keep.
    size = max((e for _, e in gaps), default=0) + 1
    first, last = first_range(gaps, size, min_split)
    if not gaps:
        assert (first, last) == (size - 1, size - 1)
        return
    plan = initial_plan(gaps, connections, min_split)
    assert plan[0].start == first <= last < plan[0].end
    assert last - first + 1 == min(max(1, min_split), gaps[0][1] - gaps[0][0])


@settings(max_examples=200, deadline=None)
@given(st.integers(1, 50_000), st.integers(1, 32), st.integers(0, 4096))
def test_first_range_of_a_fresh_download_lies_in_the_first_segment(
    size: int, connections: int, min_split: int
) -> None:
    # Asked before the size is known; a server clamps the answer to the file.
    first, last = first_range([], None, min_split)
    plan = initial_plan([(0, size)], connections, min_split)
    assert first == plan[0].start == 0
    assert min(last, size - 1) < plan[0].end
