"""Retry delays: exponential backoff with full jitter, and Retry-After parsing. Pure."""

from __future__ import annotations

import random
from email.utils import parsedate_to_datetime


def backoff_delay(
    attempt: int,
    base: float = 0.5,
    cap: float = 30.0,
    rand: random.Random | None = None,
) -> float:
    """Seconds to wait before retry number ``attempt`` (1-based): uniform in [0, min(cap, base*2^(n-1))]."""
    ceiling = min(cap, base * 2.0 ** max(0, attempt - 1))
    r = float(rand.random() if rand is not None else random.random())
    return r * ceiling


def parse_retry_after(value: str | None, now: float, cap: float = 300.0) -> float | None:
    """Seconds a ``Retry-After`` header asks for (seconds or HTTP date), capped; None if absent or bad."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return min(cap, float(value))
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when is None:
        return None
    return max(0.0, min(cap, when.timestamp() - now))
