"""A token bucket by reservation: callers reserve bytes and are told how long to wait. Pure.

Reservations are served strictly in arrival order, so connections sharing a bucket get
equal shares when they ask for equal amounts, and the long-run rate is exact.
"""

from __future__ import annotations

import time
from collections.abc import Callable


class TokenBucket:
    """Limits a byte stream to ``rate`` bytes per second with bursts up to ``burst`` bytes."""

    def __init__(
        self,
        rate: float | None,
        burst: float | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._clock = clock
        self._rate: float | None = None
        self._burst = 0.0
        self._tokens = 0.0
        self._stamp = clock()
        self.set_rate(rate, burst)

    @property
    def rate(self) -> float | None:
        """Bytes per second allowed; None means unlimited."""
        return self._rate

    def set_rate(self, rate: float | None, burst: float | None = None) -> None:
        """Change the rate now; debt already reserved is repaid at the new rate."""
        self._refill()
        if rate is not None and rate <= 0:
            raise ValueError("rate must be positive or None")
        self._rate = rate
        if rate is None:
            self._tokens = 0.0
            self._burst = 0.0
            return
        # A quarter second of burst keeps throttled connections smooth without overshooting.
        self._burst = burst if burst is not None else max(rate / 4, 16 * 1024)
        self._tokens = min(self._tokens, self._burst)

    def _refill(self) -> None:
        now = self._clock()
        if self._rate is not None:
            self._tokens = min(self._burst, self._tokens + (now - self._stamp) * self._rate)
        self._stamp = now

    def reserve(self, nbytes: int) -> float:
        """Take ``nbytes`` now (going into debt if needed); return seconds to wait before using them."""
        if self._rate is None:
            return 0.0
        self._refill()
        self._tokens -= nbytes
        return 0.0 if self._tokens >= 0 else -self._tokens / self._rate

    def chunk_size(self, default: int) -> int:
        """A read size that keeps the stream smooth at this rate (about 1/8 second of data).

        Never more than ``default``, the caller's own largest read.
        """
        if self._rate is None:
            return default
        return min(default, max(4096, int(self._rate / 8)))
