"""Retry delays: exponential backoff with full jitter, and Retry-After parsing. Pure."""

from __future__ import annotations

import random
from datetime import UTC

_MAX_DOUBLINGS = 64
"""Past this many doublings every realistic cap has been reached; stops 2**n overflowing a float."""


def backoff_delay(
    attempt: int,
    base: float = 0.5,
    cap: float = 30.0,
    rand: random.Random | None = None,
) -> float:
    """Seconds to wait before retry number ``attempt`` (1-based): uniform in [0, min(cap, base*2^(n-1))]."""
    doublings = min(_MAX_DOUBLINGS, max(0, attempt - 1))
    ceiling = min(cap, base * 2.0**doublings)
    r = float(rand.random() if rand is not None else random.random())
    return r * ceiling


def parse_retry_after(value: str | None, now: float, cap: float = 300.0) -> float | None:
    """Seconds a ``Retry-After`` header asks for (seconds or HTTP date), capped; None if absent or bad."""
    if not value:
        return None
    value = value.strip()
    # HTTP's delta-seconds are ASCII digits only; str.isdigit() also accepts "²" and other scripts' digits.
    if value.isascii() and value.isdigit():
        return min(cap, float(value))
    from email.utils import parsedate_to_datetime  # rare, and the email package is slow to import

    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    if when is None:
        return None
    if when.tzinfo is None:
        # HTTP dates are always GMT; "-0000" or no zone must not be read as local time.
        when = when.replace(tzinfo=UTC)
    try:
        delay = when.timestamp() - now
    except (OverflowError, ValueError, OSError):
        return None
    return max(0.0, min(cap, delay))
