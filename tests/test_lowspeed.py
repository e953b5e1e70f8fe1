"""The lowest-speed check on made-up timelines: a trickle is judged, a fast stream never, and every
verdict is measured over a real span of at least a window."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from engine.lowspeed import DEFAULT_WINDOW_BYTES, SAMPLES, LowSpeedCheck, TooSlow, floor_rate


def test_floor_rate_default_off_and_set() -> None:
    assert floor_rate(None, 2.0) == DEFAULT_WINDOW_BYTES / 2.0
    assert floor_rate(0, 2.0) is None
    assert floor_rate(100 * 1024, 2.0) == 100 * 1024


def test_a_byte_every_half_second_is_too_slow_after_one_window() -> None:
    check = LowSpeedCheck(floor_rate(None, 1.0) or 0, window=1.0)
    assert check.update(0.5, 1) is None  # less than a window: not judged yet
    assert check.update(1.0, 2) == TooSlow(rate=2.0, seconds=1.0, before=0)


def test_a_fast_start_then_a_trickle_is_judged_on_the_trickle_alone() -> None:
    check = LowSpeedCheck(1000.0, window=1.0)
    t, total = 0.0, 0
    for _ in range(20):  # 2 s at 100 kB/s
        t += 0.1
        total += 10_000
        assert check.update(t, total) is None
    fast = total
    verdict = None
    while verdict is None and t < 10:
        t += 0.5
        total += 1
        verdict = check.update(t, total)
    assert verdict is not None
    assert t <= 2.0 + 1.0 + 1.0 / SAMPLES + 0.5  # within a window (and a sample and a gap) of slowing
    assert verdict.before >= fast - 10_000  # the fast bytes came before the judged span
    assert verdict.rate < 1000.0


def test_nonpositive_floor_or_window_is_refused() -> None:
    with pytest.raises(ValueError):
        LowSpeedCheck(0.0, 1.0)
    with pytest.raises(ValueError):
        LowSpeedCheck(1.0, 0.0)


# A timeline: gaps between chunks (seconds) and their sizes (bytes).
timelines = st.lists(st.tuples(st.floats(0.001, 3.0), st.integers(0, 50_000)), min_size=1, max_size=200)


@given(
    floor=st.floats(1.0, 1e7),
    window=st.floats(0.1, 10.0),
    gaps=st.lists(st.integers(1, 192), min_size=1, max_size=200),
    per_tick=st.integers(0, 100_000),
)
def test_a_steady_stream_is_too_slow_exactly_when_under_the_floor(
    floor: float, window: float, gaps: list[int], per_tick: int
) -> None:
    # Chunks at irregular times on a 1/64 s grid (exact in binary), each carrying per_tick bytes
    # for every tick since the last: every span between two chunks has exactly the same rate.
    rate = per_tick * 64
    check = LowSpeedCheck(floor, window)
    ticks = 0
    for gap in gaps:
        ticks += gap
        t = ticks / 64
        verdict = check.update(t, per_tick * ticks)
        assert (verdict is not None) == (t >= window and rate < floor), (t, verdict)
        if verdict is not None:
            assert verdict.rate == rate


@given(floor=st.floats(1.0, 1e5), window=st.floats(0.1, 10.0), timeline=timelines)
def test_every_verdict_is_measured_over_a_real_span(
    floor: float, window: float, timeline: list[tuple[float, int]]
) -> None:
    check = LowSpeedCheck(floor, window)
    points = [(0.0, 0)]  # the curve of bytes received so far, as fed
    t, total, widest = 0.0, 0, 0.0
    for gap, size in timeline:
        t += gap
        total += size
        widest = max(widest, gap)
        verdict = check.update(t, total)
        earlier = [(pt, pb) for pt, pb in points if pt <= t - window]
        if not earlier:
            assert verdict is None  # nothing is judged before a whole window has passed
        elif all(total - pb >= floor * (t - pt) for pt, pb in earlier):
            assert verdict is None  # every span of a window or more was fast enough
        if total < floor * window and earlier:
            assert verdict is not None  # fewer bytes than one window's worth, ever: always caught
        if verdict is not None:
            assert verdict.rate < floor
            assert window - 1e-9 <= verdict.seconds <= window + window / SAMPLES + widest + 1e-9
            start = (t - verdict.seconds, verdict.before)
            assert any(abs(pt - start[0]) < 1e-9 and pb == start[1] for pt, pb in earlier), (start, earlier)
            assert verdict.rate * verdict.seconds == pytest.approx(total - verdict.before)
        points.append((t, total))
