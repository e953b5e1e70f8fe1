"""RateMeter on a fake clock: window speed, paused time, smoothed ETA, stop and start."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from engine.ratemeter import RateMeter


class FakeClock:
    """A monotonic clock the test moves by hand."""

    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def feed(meter: RateMeter, clock: FakeClock, rate: float, seconds: float, step: float = 0.05) -> None:
    """Deliver ``rate`` bytes/s in small chunks for ``seconds`` of fake time."""
    for _ in range(round(seconds / step)):
        clock.advance(step)
        meter.add(int(rate * step))


def test_constant_rate_gives_that_speed() -> None:
    clock = FakeClock()
    meter = RateMeter(window=3.0, clock=clock)
    meter.start()
    feed(meter, clock, 100_000, 10)
    assert meter.speed == pytest.approx(100_000, rel=0.02)
    assert meter.avg_speed == pytest.approx(100_000, rel=0.02)
    assert meter.total == 1_000_000
    # Between two chunks the estimate stays close too.
    clock.advance(0.025)
    assert meter.speed == pytest.approx(100_000, rel=0.05)


def test_speed_does_not_jump_as_the_window_slides() -> None:
    # Clock steps that do not add up exactly in floating point put samples a hair either side
    # of the window's start; the speed must not jump by a whole chunk when that happens.
    clock = FakeClock(0.1)
    meter = RateMeter(window=1.0, clock=clock)
    meter.start()
    feed(meter, clock, 100_000, 2, step=0.05)
    readings = []
    for _ in range(50):
        feed(meter, clock, 100_000, 0.05, step=0.05)
        readings.append(meter.speed)
    assert min(readings) == pytest.approx(100_000, rel=0.005)
    assert max(readings) == pytest.approx(100_000, rel=0.005)


def test_speed_follows_a_rate_change_within_the_window() -> None:
    clock = FakeClock()
    meter = RateMeter(window=2.0, clock=clock)
    meter.start()
    feed(meter, clock, 100_000, 5)
    feed(meter, clock, 20_000, 2.5)
    assert meter.speed == pytest.approx(20_000, rel=0.05)
    # The average remembers both phases.
    assert meter.avg_speed == pytest.approx((500_000 + 50_000) / 7.5, rel=0.02)


def test_speed_before_the_window_fills_uses_time_running() -> None:
    clock = FakeClock()
    meter = RateMeter(window=3.0, clock=clock)
    meter.start()
    assert meter.speed == 0.0  # no time has passed yet
    feed(meter, clock, 50_000, 1)
    assert meter.speed == pytest.approx(50_000, rel=0.02)


def test_speed_drops_to_zero_after_a_silent_window() -> None:
    clock = FakeClock()
    meter = RateMeter(window=3.0, clock=clock)
    meter.start()
    feed(meter, clock, 100_000, 5)
    clock.advance(1.5)
    assert 30_000 < meter.speed < 70_000  # half the window is silent
    clock.advance(1.6)
    assert meter.speed == 0.0
    clock.advance(100)
    assert meter.speed == 0.0
    assert meter.running


def test_avg_speed_excludes_paused_time() -> None:
    clock = FakeClock()
    meter = RateMeter(clock=clock)
    meter.start()
    feed(meter, clock, 10_000, 2)
    meter.stop()
    assert not meter.running
    assert meter.speed == 0.0
    clock.advance(60)  # a long pause
    meter.add(12345)  # bytes counted while stopped do not skew the average
    assert meter.active_time == pytest.approx(2.0)
    meter.start()
    meter.start()  # idempotent: does not reset the running clock
    feed(meter, clock, 30_000, 2)
    assert meter.active_time == pytest.approx(4.0)
    assert meter.avg_speed == pytest.approx((20_000 + 60_000) / 4, rel=0.01)
    assert meter.total == 20_000 + 12345 + 60_000


def test_restart_forgets_speed_before_the_pause() -> None:
    clock = FakeClock()
    meter = RateMeter(window=3.0, clock=clock)
    meter.start()
    feed(meter, clock, 1_000_000, 3)
    meter.stop()
    clock.advance(1)
    meter.start()
    feed(meter, clock, 10_000, 1)
    assert meter.speed == pytest.approx(10_000, rel=0.02)


def test_stop_twice_and_never_started() -> None:
    clock = FakeClock()
    meter = RateMeter(clock=clock)
    assert meter.speed == 0.0 and meter.avg_speed == 0.0 and meter.active_time == 0.0
    meter.stop()
    meter.stop()
    assert meter.active_time == 0.0


def test_eta_uses_the_smoothed_rate() -> None:
    clock = FakeClock()
    meter = RateMeter(window=1.0, smoothing=0.3, clock=clock)
    meter.start()
    for _ in range(40):
        feed(meter, clock, 100_000, 0.25)
        meter.tick()
    assert meter.eta(1_000_000) == pytest.approx(10.0, rel=0.03)
    # A one-tick burst moves the estimate by the smoothing weight, not all the way.
    feed(meter, clock, 1_000_000, 0.25)
    instant = meter.speed
    smoothed = meter.tick()
    assert instant > 300_000
    assert 100_000 < smoothed < instant
    assert smoothed == pytest.approx(100_000 + 0.3 * (instant - 100_000), rel=0.03)
    assert meter.eta(1_000_000) == pytest.approx(1_000_000 / smoothed)


def test_eta_edge_cases() -> None:
    clock = FakeClock()
    meter = RateMeter(clock=clock)
    assert meter.eta(None) is None
    assert meter.eta(0) == 0.0
    assert meter.eta(-5) == 0.0
    assert meter.eta(100) is None  # no rate yet
    meter.start()
    feed(meter, clock, 1000, 1)
    # Before any tick the instantaneous speed stands in.
    assert meter.eta(1000) == pytest.approx(1.0, rel=0.02)


def test_eta_right_after_a_slow_start() -> None:
    # The first ticks see no data (still connecting): the smoothed rate must be seeded by the
    # first real measurement, not by those zeros, or the ETA starts far too long and crawls down.
    clock = FakeClock()
    meter = RateMeter(window=3.0, smoothing=0.3, clock=clock)
    meter.start()
    for _ in range(2):
        clock.advance(0.25)
        assert meter.tick() == 0.0
    assert meter.eta(1000) is None
    feed(meter, clock, 100_000, 0.25)
    speed = meter.speed
    assert speed > 0
    assert meter.tick() == pytest.approx(speed)
    assert meter.eta(1000) == pytest.approx(1000 / speed)


def test_eta_after_resume_is_not_inflated_by_ticks_while_paused() -> None:
    clock = FakeClock()
    meter = RateMeter(window=2.0, smoothing=0.3, clock=clock)
    meter.start()
    for _ in range(20):
        feed(meter, clock, 100_000, 0.25)
        meter.tick()
    meter.stop()
    for _ in range(10):  # the dashboard keeps ticking while the task is paused
        clock.advance(0.25)
        assert meter.tick() == 0.0
    assert meter.eta(1000) is None
    meter.start()
    for _ in range(2):
        feed(meter, clock, 100_000, 0.25)
        meter.tick()
    assert meter.eta(1_000_000) == pytest.approx(10.0, rel=0.05)


@settings(max_examples=60, deadline=None)
@given(
    rate=st.integers(1_000, 50_000_000),
    window=st.sampled_from([1.0, 2.0, 3.0, 5.0]),
    step=st.sampled_from([0.01, 0.05, 0.1, 0.25]),
)
def test_constant_rate_property(rate: int, window: float, step: float) -> None:
    clock = FakeClock()
    meter = RateMeter(window=window, clock=clock)
    meter.start()
    per_step = rate * step
    sent = 0
    ticks = round((window + 2) / step)
    for i in range(1, ticks + 1):
        clock.now = 1000.0 + i * step
        # Whole bytes, with no drift: the total after i steps is floor(i * per_step).
        due = int(i * per_step)
        meter.add(due - sent)
        sent = due
    assert meter.speed == pytest.approx(rate, rel=0.01, abs=2 / step)
