"""Speed over a sliding window, average speed over active time, and a smoothed ETA. Pure."""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable

Clock = Callable[[], float]


class RateMeter:
    """Measures bytes per second from timestamped totals on a monotonic clock.

    ``speed`` is the rate over the last ``window`` seconds; ``avg_speed`` divides the bytes
    counted while running by the time spent running (pauses excluded); ``eta`` uses an
    exponentially smoothed rate so it does not jump with every burst.
    """

    def __init__(self, window: float = 3.0, smoothing: float = 0.3, clock: Clock = time.monotonic):
        self.window = window
        """Seconds of history the instantaneous speed looks at."""
        self.smoothing = smoothing
        """Weight of the newest speed in the smoothed rate (0..1]."""
        self._clock = clock
        self._samples: deque[tuple[float, int]] = deque()
        self.total = 0
        """Bytes counted so far."""
        self._active_time = 0.0
        self._active_bytes = 0
        self._running_since: float | None = None
        self._smoothed: float | None = None

    def start(self) -> None:
        """Begin counting active time (idempotent)."""
        if self._running_since is None:
            now = self._clock()
            self._running_since = now
            self._samples.clear()
            self._samples.append((now, self.total))

    def stop(self) -> None:
        """Stop counting active time; the instantaneous speed drops to zero."""
        if self._running_since is not None:
            self._active_time += self._clock() - self._running_since
            self._running_since = None
        self._samples.clear()
        self._smoothed = None

    @property
    def running(self) -> bool:
        """Whether active time is being counted."""
        return self._running_since is not None

    def add(self, nbytes: int) -> None:
        """Count bytes that just arrived."""
        self.total += nbytes
        if self._running_since is not None:
            self._active_bytes += nbytes
            now = self._clock()
            self._samples.append((now, self.total))
            self._trim(now)

    def _trim(self, now: float) -> None:
        # Keep the newest sample at or before the window's start: it gives the total there.
        while len(self._samples) > 1 and self._samples[1][0] <= now - self.window:
            self._samples.popleft()

    @property
    def speed(self) -> float:
        """Bytes per second over the sliding window (or the time running, if shorter)."""
        if self._running_since is None or not self._samples:
            return 0.0
        now = self._clock()
        self._trim(now)
        span = min(self.window, now - self._running_since)
        if span <= 0:
            return 0.0
        since = now - span
        # The total at the window's start, interpolated between the samples either side:
        # a chunk stamped at t arrived over the interval before t, so counting it whole or
        # not at all would make the speed jump by a chunk per window as the window slides.
        prev_t, first = self._samples[0]
        base = float(first)
        for t, total in self._samples:
            if t > since:
                if t > prev_t:
                    base += (total - base) * (since - prev_t) / (t - prev_t)
                break
            prev_t, base = t, float(total)
        return max(0.0, (self.total - base) / span)

    @property
    def active_time(self) -> float:
        """Seconds spent running."""
        extra = 0.0 if self._running_since is None else self._clock() - self._running_since
        return self._active_time + extra

    @property
    def avg_speed(self) -> float:
        """Bytes counted while running divided by the time spent running."""
        t = self.active_time
        return self._active_bytes / t if t > 0 else 0.0

    def tick(self) -> float:
        """Fold the current speed into the smoothed rate and return it; call at a steady pace."""
        current = self.speed
        if self._smoothed is None:
            # Seed with the first real measurement: seeding with the zero seen while stopped
            # or still connecting would make the ETA start far too long and crawl down.
            if self._running_since is None or current <= 0:
                return 0.0
            self._smoothed = current
        else:
            self._smoothed += self.smoothing * (current - self._smoothed)
        return self._smoothed

    def eta(self, remaining: int | None) -> float | None:
        """Seconds left for ``remaining`` bytes at the smoothed rate, if it can be told."""
        if remaining is None:
            return None
        if remaining <= 0:
            return 0.0
        rate = self._smoothed if self._smoothed is not None else self.speed
        if rate <= 1e-9:
            return None
        return remaining / rate
