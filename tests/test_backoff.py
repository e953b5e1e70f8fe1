"""Retry delays with full jitter, and Retry-After in both its forms."""

from __future__ import annotations

import random
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from email.utils import format_datetime

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from engine.backoff import backoff_delay, parse_retry_after

NOW = 1_700_000_000.0
"""A fixed "now" for Retry-After dates (2023-11-14 22:13:20 UTC)."""


class FixedRandom(random.Random):
    """A Random whose ``random()`` returns a chosen value, to pin the jitter."""

    def __init__(self, value: float) -> None:
        super().__init__(0)
        self.value = value

    def random(self) -> float:
        return self.value


def test_ceiling_doubles_then_caps() -> None:
    top = FixedRandom(0.999999)
    ceilings = [backoff_delay(n, base=0.5, cap=30.0, rand=top) for n in range(1, 10)]
    expected = [0.5, 1, 2, 4, 8, 16, 30, 30, 30]
    assert ceilings == pytest.approx([e * 0.999999 for e in expected])


def test_jitter_spans_the_whole_range() -> None:
    assert backoff_delay(3, base=1.0, rand=FixedRandom(0.0)) == 0.0
    assert backoff_delay(3, base=1.0, rand=FixedRandom(0.5)) == 2.0
    rng = random.Random(42)
    delays = [backoff_delay(4, base=1.0, cap=100.0, rand=rng) for _ in range(2000)]
    assert min(delays) < 0.1 and max(delays) > 7.9
    assert sum(delays) / len(delays) == pytest.approx(4.0, rel=0.1)


def test_attempt_zero_or_negative_uses_base() -> None:
    assert backoff_delay(0, base=2.0, rand=FixedRandom(0.5)) == 1.0
    assert backoff_delay(-3, base=2.0, rand=FixedRandom(0.5)) == 1.0


def test_huge_attempt_numbers_stay_at_the_cap() -> None:
    # A connection that keeps failing for hours must not crash the retry loop.
    for attempt in (64, 1024, 1100, 10**6):
        assert backoff_delay(attempt, base=0.5, cap=30.0, rand=FixedRandom(0.5)) == 15.0


def test_default_random_source_is_in_range() -> None:
    for _ in range(100):
        assert 0.0 <= backoff_delay(2, base=1.0) <= 2.0


@settings(max_examples=300, deadline=None)
@given(
    attempt=st.integers(-5, 5000),
    base=st.floats(0.0, 10.0),
    cap=st.floats(0.0, 600.0),
    seed=st.integers(0, 2**32),
)
def test_delay_in_bounds(attempt: int, base: float, cap: float, seed: int) -> None:
    delay = backoff_delay(attempt, base=base, cap=cap, rand=random.Random(seed))
    ceiling = min(cap, base * 2.0 ** min(max(0, attempt - 1), 1000))
    assert 0.0 <= delay <= ceiling


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("120", 120.0),
        ("0", 0.0),
        ("  7 ", 7.0),
        ("007", 7.0),
        ("86400", 300.0),  # capped
        ("99999999999999999999999999999", 300.0),
    ],
)
def test_seconds(value: str, expected: float) -> None:
    assert parse_retry_after(value, NOW) == expected


def test_http_date_in_the_future() -> None:
    when = datetime.fromtimestamp(NOW + 90, tz=UTC)
    assert parse_retry_after(format_datetime(when, usegmt=True), NOW) == pytest.approx(90.0)
    # The obsolete RFC 850 and asctime forms HTTP also allows.
    assert parse_retry_after("Tuesday, 14-Nov-23 22:14:50 GMT", NOW) == pytest.approx(90.0)
    assert parse_retry_after("Tue Nov 14 22:14:50 2023", NOW) == pytest.approx(90.0)


@pytest.fixture
def far_east_local_time(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Run with the local zone nine hours off UTC, to catch dates read as local time."""
    monkeypatch.setenv("TZ", "JST-9")
    time.tzset()
    yield
    monkeypatch.undo()
    time.tzset()


@pytest.mark.usefixtures("far_east_local_time")
def test_http_date_with_unknown_zone_is_taken_as_utc() -> None:
    # "-0000" means "UTC, origin zone unknown"; it must not be read as local time.
    assert parse_retry_after("Tue, 14 Nov 2023 22:14:50 -0000", NOW) == pytest.approx(90.0)
    assert parse_retry_after("Tue, 14 Nov 2023 22:14:50 GMT", NOW) == pytest.approx(90.0)


def test_http_date_with_offset() -> None:
    assert parse_retry_after("Wed, 15 Nov 2023 00:14:50 +0200", NOW) == pytest.approx(90.0)


def test_http_date_in_the_past_means_now() -> None:
    assert parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT", NOW) == 0.0


def test_http_date_far_future_is_capped() -> None:
    assert parse_retry_after("Fri, 31 Dec 9999 23:59:59 GMT", NOW, cap=60.0) == 60.0


@pytest.mark.parametrize(
    "value",
    [
        None,
        "",
        "   ",
        "soon",
        "-5",
        "1.5",
        "1e3",
        "+30",
        "²",  # a Unicode digit: isdigit() says yes, float() says no
        "١٢٠",  # Arabic-Indic digits are not HTTP delta-seconds either
        "Wed, 32 Oct 2015 07:28:00 GMT",
        "Wed, 21 Foo 2015 07:28:00 GMT",
        "\x00\x01",
        "12 34",
    ],
)
def test_garbage_is_ignored(value: str | None) -> None:
    assert parse_retry_after(value, NOW) is None


@pytest.mark.slow
@settings(max_examples=300, deadline=None)
@given(st.text(max_size=40))
def test_any_text_gives_none_or_a_bounded_delay(value: str) -> None:
    result = parse_retry_after(value, NOW, cap=300.0)
    assert result is None or 0.0 <= result <= 300.0


@settings(max_examples=200, deadline=None)
@given(st.integers(0, 10**12))
def test_any_delta_seconds(seconds: int) -> None:
    assert parse_retry_after(str(seconds), NOW, cap=300.0) == min(300.0, float(seconds))
