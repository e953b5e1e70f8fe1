"""The retry budget: counting failures, giving the budget back on progress, and the delays it asks for."""

from __future__ import annotations

import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from engine.errors import DownloadError, ErrorKind
from engine.retry import Retry


def transient(retry_after: float | None = None) -> DownloadError:
    return DownloadError("HTTP 503 Service Unavailable", kind=ErrorKind.HTTP_5XX, retry_after=retry_after)


def test_permanent_error_is_raised_at_once_without_spending_the_budget() -> None:
    retry = Retry(5)
    err = DownloadError("HTTP 404 Not Found", permanent=True, kind=ErrorKind.HTTP_4XX)
    assert Retry.is_permanent(err)
    with pytest.raises(DownloadError) as caught:
        retry.increment(err)
    assert caught.value is err
    assert retry.attempt == 0 and retry.left == 5


def test_budget_runs_out_after_total_retries_keeping_the_kind() -> None:
    retry = Retry(2, rand=random.Random(1))
    retry.increment(transient())
    retry.increment(transient())
    assert retry.left == 0
    with pytest.raises(DownloadError) as caught:
        retry.increment(transient())
    assert str(caught.value) == "HTTP 503 Service Unavailable (gave up after 2 retries)"
    assert caught.value.kind is ErrorKind.HTTP_5XX
    assert not caught.value.permanent


def test_zero_retries_gives_up_on_the_first_failure() -> None:
    with pytest.raises(DownloadError, match="gave up after 0 retries"):
        Retry(0).increment(transient())


def test_progress_gives_the_budget_back() -> None:
    retry = Retry(1, rand=random.Random(1))
    for _ in range(10):
        retry.increment(transient())
        retry.progressed()
    assert retry.attempt == 0 and retry.left == 1


def test_retry_after_wins_over_backoff() -> None:
    retry = Retry(3, backoff_base=100.0, backoff_cap=100.0)
    assert retry.increment(transient(retry_after=7.0)) == 7.0
    assert retry.increment(transient(retry_after=0.0)) == 0.0


def test_backoff_ceiling_doubles_per_attempt_up_to_the_cap() -> None:
    class Top(random.Random):
        def random(self) -> float:
            return 1.0

    retry = Retry(10, backoff_base=0.5, backoff_cap=3.0, rand=Top())
    assert [retry.increment(transient()) for _ in range(5)] == [0.5, 1.0, 2.0, 3.0, 3.0]


@settings(max_examples=200, deadline=None)
@given(
    total=st.integers(min_value=0, max_value=8),
    events=st.lists(
        st.one_of(
            st.just("progress"),
            st.none(),
            st.floats(min_value=0.0, max_value=300.0, allow_nan=False),
        ),
        max_size=40,
    ),
    base=st.floats(min_value=0.01, max_value=5.0),
    cap=st.floats(min_value=0.01, max_value=60.0),
    seed=st.integers(min_value=0, max_value=2**32 - 1),
)
def test_budget_property(
    total: int, events: list[str | float | None], base: float, cap: float, seed: int
) -> None:
    """Against a model: gives up exactly when more than ``total`` failures follow the last progress,
    honours Retry-After exactly, and otherwise waits within the jittered backoff ceiling."""
    retry = Retry(total, backoff_base=base, backoff_cap=cap, rand=random.Random(seed))
    since_progress = 0
    for event in events:
        if event == "progress":
            retry.progressed()
            since_progress = 0
            continue
        retry_after = event if isinstance(event, float) else None
        since_progress += 1
        if since_progress > total:
            with pytest.raises(DownloadError, match=f"gave up after {total} retries"):
                retry.increment(transient(retry_after))
            return
        delay = retry.increment(transient(retry_after))
        assert retry.attempt == since_progress
        assert retry.left == total - since_progress
        if retry_after is not None:
            assert delay == retry_after
        else:
            assert 0.0 <= delay <= min(cap, base * 2 ** (since_progress - 1))
