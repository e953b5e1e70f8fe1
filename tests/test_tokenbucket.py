"""TokenBucket on a fake clock: exact long-run rate, FIFO fairness, live rate changes."""

from __future__ import annotations

import heapq

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from engine.tokenbucket import TokenBucket


class FakeClock:
    """A monotonic clock the test moves by hand."""

    def __init__(self, now: float = 500.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def simulate(
    bucket: TokenBucket,
    clock: FakeClock,
    chunks: list[int],
    seconds: float,
    changes: dict[float, float | None] | None = None,
) -> list[int]:
    """Run one consumer per entry of ``chunks`` the way a download connection does.

    Each consumer reads its chunk, reserves it, sleeps the time it is told, and repeats.
    Returns the bytes each consumer got through within ``seconds`` of fake time.
    ``changes`` maps a time offset to a new rate, applied when the simulation reaches it.
    """
    start = clock.now
    got = [0] * len(chunks)
    # (wake time, arrival order, consumer): ties resolve in arrival order like asyncio's timers.
    heap = [(start, i, i) for i in range(len(chunks))]
    order = len(chunks)
    pending = sorted((changes or {}).items())
    while heap:
        when, _, who = heapq.heappop(heap)
        while pending and start + pending[0][0] <= when:
            at, rate = pending.pop(0)
            clock.now = start + at
            bucket.set_rate(rate)
        if when > start + seconds:
            break
        clock.now = when
        wait = bucket.reserve(chunks[who])
        assert wait >= 0
        if when + wait <= start + seconds:
            got[who] += chunks[who]
        heapq.heappush(heap, (when + wait, order, who))
        order += 1
    return got


def test_long_run_rate_is_exact() -> None:
    clock = FakeClock()
    bucket = TokenBucket(100_000, clock=clock)
    got = simulate(bucket, clock, [8192], seconds=10)
    assert sum(got) == pytest.approx(1_000_000, rel=0.05)


def test_long_run_rate_with_many_consumers_and_odd_chunks() -> None:
    clock = FakeClock()
    bucket = TokenBucket(250_000, clock=clock)
    got = simulate(bucket, clock, [1000, 4096, 16384, 65536, 777], seconds=10)
    assert sum(got) == pytest.approx(2_500_000, rel=0.05)


def test_fifo_fairness_across_consumers() -> None:
    clock = FakeClock()
    bucket = TokenBucket(200_000, clock=clock)
    got = simulate(bucket, clock, [4096] * 4, seconds=10)
    assert sum(got) == pytest.approx(2_000_000, rel=0.05)
    # Equal asks, equal shares: nobody is ahead by more than one chunk.
    assert max(got) - min(got) <= 4096


def test_reservations_are_served_in_arrival_order() -> None:
    clock = FakeClock()
    bucket = TokenBucket(1000, burst=1000, clock=clock)
    waits = [bucket.reserve(500) for _ in range(4)]
    assert waits == pytest.approx([0.5, 1.0, 1.5, 2.0])
    clock.now += 1.0
    # A newcomer queues behind the debt already reserved: it may go 2.5 s after the first
    # reservation, after the fourth one's 2.0 s, not ahead of it.
    assert bucket.reserve(500) == pytest.approx(1.5)


def test_burst_after_idle_is_bounded() -> None:
    clock = FakeClock()
    bucket = TokenBucket(1000, burst=300, clock=clock)
    clock.now += 100  # a long idle period earns at most one burst
    assert bucket.reserve(300) == 0.0
    assert bucket.reserve(100) == pytest.approx(0.1)


def test_default_burst_is_a_quarter_second_or_16_kib() -> None:
    clock = FakeClock()
    big = TokenBucket(1_000_000, clock=clock)
    small = TokenBucket(1000, clock=clock)
    clock.now += 60
    assert big.reserve(250_000) == 0.0
    assert big.reserve(1000) > 0
    assert small.reserve(16 * 1024) == 0.0
    assert small.reserve(1) > 0


def test_set_rate_while_running() -> None:
    clock = FakeClock()
    bucket = TokenBucket(100_000, clock=clock)
    got = simulate(bucket, clock, [4096, 4096], seconds=10, changes={5.0: 300_000})
    assert sum(got) == pytest.approx(5 * 100_000 + 5 * 300_000, rel=0.05)
    assert bucket.rate == 300_000


def test_lowering_the_rate_repays_debt_at_the_new_rate() -> None:
    clock = FakeClock()
    bucket = TokenBucket(1000, burst=1000, clock=clock)
    assert bucket.reserve(2000) == pytest.approx(2.0)
    bucket.set_rate(500, burst=500)
    assert bucket.reserve(0) == pytest.approx(4.0)


def test_none_is_unlimited() -> None:
    clock = FakeClock()
    bucket = TokenBucket(None, clock=clock)
    assert bucket.rate is None
    assert all(bucket.reserve(10**9) == 0.0 for _ in range(100))
    assert bucket.chunk_size(65536) == 65536


def test_switching_to_unlimited_forgives_debt_and_back() -> None:
    clock = FakeClock()
    bucket = TokenBucket(1000, clock=clock)
    assert bucket.reserve(100_000) > 50
    bucket.set_rate(None)
    assert bucket.reserve(100_000) == 0.0
    bucket.set_rate(1000, burst=1000)
    # Limited again from here on: nothing saved up while unlimited, no old debt.
    assert bucket.reserve(500) == pytest.approx(0.5)
    got = simulate(bucket, clock, [100], seconds=10)
    assert sum(got) == pytest.approx(10_000, rel=0.05)


@pytest.mark.parametrize("rate", [0, -1, -0.5])
def test_non_positive_rate_is_refused(rate: float) -> None:
    with pytest.raises(ValueError, match="positive"):
        TokenBucket(rate)
    bucket = TokenBucket(1000)
    with pytest.raises(ValueError, match="positive"):
        bucket.set_rate(rate)
    assert bucket.rate == 1000


def test_chunk_size_is_about_an_eighth_of_a_second() -> None:
    assert TokenBucket(800_000).chunk_size(1 << 20) == 100_000
    assert TokenBucket(80_000_000).chunk_size(1 << 20) == 1 << 20
    assert TokenBucket(1000).chunk_size(1 << 20) == 4096
    # Never more than the caller's own read size.
    assert TokenBucket(1000).chunk_size(1024) == 1024


@settings(max_examples=40, deadline=None)
@given(
    rate=st.integers(10_000, 5_000_000),
    chunks=st.lists(st.sampled_from([512, 4096, 16384, 65536]), min_size=1, max_size=6),
)
def test_long_run_rate_property(rate: int, chunks: list[int]) -> None:
    clock = FakeClock()
    bucket = TokenBucket(rate, clock=clock)
    got = simulate(bucket, clock, chunks, seconds=10)
    # Within 5%, plus the last chunk of each consumer that straddles the end.
    assert abs(sum(got) - 10 * rate) <= 0.05 * 10 * rate + sum(chunks)
