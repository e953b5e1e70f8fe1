"""The checkpoint interval and the writeback kicks (engine.checkpointing): pure, tested directly."""

from __future__ import annotations

import math

from hypothesis import given
from hypothesis import strategies as st

from engine.checkpointing import (
    BASE_INTERVAL,
    MAX_INTERVAL,
    MIN_KICK_PERIOD,
    OFF,
    SYNC_FACTOR,
    WRITEBACK_KICKS,
    interval_from_env,
    kick_period,
    next_interval,
)


def test_quick_syncs_keep_the_base_interval() -> None:
    assert next_interval(0.0) == BASE_INTERVAL
    assert next_interval(0.01) == BASE_INTERVAL
    assert next_interval(BASE_INTERVAL / SYNC_FACTOR) == BASE_INTERVAL


def test_a_slow_sync_stretches_the_interval_to_four_times_its_duration() -> None:
    assert next_interval(0.5) == 2.0
    assert next_interval(1.5) == 6.0


def test_the_stretch_is_capped() -> None:
    assert next_interval(2.5) == MAX_INTERVAL
    assert next_interval(60.0) == MAX_INTERVAL
    assert next_interval(math.inf) == MAX_INTERVAL


def test_a_base_above_the_cap_is_kept() -> None:
    assert next_interval(0.0, base=OFF) == OFF
    assert next_interval(100.0, base=OFF) == OFF


def test_nonsense_durations_count_as_instant() -> None:
    assert next_interval(-3.0) == BASE_INTERVAL
    assert next_interval(math.nan) == BASE_INTERVAL


@given(
    st.floats(min_value=0, max_value=1e6, allow_nan=False),
    st.floats(min_value=0.01, max_value=100, allow_nan=False),
)
def test_interval_bounds(last_sync: float, base: float) -> None:
    got = next_interval(last_sync, base)
    assert got >= base
    assert got <= max(base, MAX_INTERVAL)
    # At most a 1/SYNC_FACTOR share of the time goes to syncing, unless the cap says otherwise.
    assert got >= min(SYNC_FACTOR * last_sync, MAX_INTERVAL)


@given(
    st.floats(min_value=0, max_value=100, allow_nan=False),
    st.floats(min_value=0, max_value=100, allow_nan=False),
)
def test_a_longer_sync_never_shortens_the_interval(a: float, b: float) -> None:
    lo, hi = sorted((a, b))
    assert next_interval(lo) <= next_interval(hi)


def test_kicks_split_the_interval() -> None:
    assert kick_period(1.0) == 1.0 / WRITEBACK_KICKS
    assert kick_period(10.0) == 10.0 / WRITEBACK_KICKS
    assert kick_period(0.01) == MIN_KICK_PERIOD


@given(st.floats(min_value=0.001, max_value=OFF, allow_nan=False))
def test_kick_period_bounds(interval: float) -> None:
    period = kick_period(interval)
    assert period >= MIN_KICK_PERIOD
    assert period <= max(interval, MIN_KICK_PERIOD)


def test_interval_from_the_environment() -> None:
    assert interval_from_env(None) == BASE_INTERVAL
    assert interval_from_env("") == BASE_INTERVAL
    assert interval_from_env("2.5") == 2.5
    assert interval_from_env(" OFF ") == OFF
    assert interval_from_env("off") == OFF


def test_an_unusable_environment_value_keeps_checkpoints_on() -> None:
    for value in ("0", "-1", "nan", "inf", "soon", "1s"):
        assert interval_from_env(value) == BASE_INTERVAL, value
    assert interval_from_env("1e12") == OFF


@given(st.text(max_size=20))
def test_any_environment_value_gives_a_usable_interval(value: str) -> None:
    got = interval_from_env(value)
    assert math.isfinite(got) and 0 < got <= OFF
