"""The lowest-speed check, as curl's ``--speed-limit/--speed-time``: is a connection too slow? Pure.

A read timeout starts over with every byte, so a server sending one byte every half second keeps a
connection alive for ever. This judges instead the bytes of a whole window: a connection averaging
under a floor for ``window`` seconds is too slow, and is dropped and retried.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

DEFAULT_WINDOW_BYTES = 1024
"""Without ``--lowest-speed``, a connection receiving fewer bytes than this in one window is a stall."""
SAMPLES = 8
"""Samples kept per window: the judged span is at most a window plus an eighth (or one gap between
chunks, if longer), and a chunk costs a comparison, not a list entry."""


def floor_rate(lowest_speed: int | None, window: float) -> float | None:
    """Bytes per second a connection must average over ``window`` seconds; None for no check.

    ``lowest_speed`` as in :class:`engine.models.TaskOptions`: None for the default
    (:data:`DEFAULT_WINDOW_BYTES` in a window), 0 for no check, else bytes per second.
    """
    if lowest_speed is None:
        return DEFAULT_WINDOW_BYTES / window
    if lowest_speed <= 0:
        return None
    return float(lowest_speed)


@dataclass(frozen=True)
class TooSlow:
    """The verdict on a connection found too slow."""

    rate: float
    """Bytes per second it averaged over the judged span."""
    seconds: float
    """Length of the judged span, at least a window."""
    before: int
    """Bytes it had received when the judged span began: those came fast enough, the rest did not."""


class LowSpeedCheck:
    """Judges one connection by the bytes it received over its last ``window`` seconds.

    Feed it ``update(now, total)`` after each received chunk. ``now`` is the connection's own clock:
    the caller may stop it while it holds the connection back on purpose (a speed limit, a disk
    write), so that only the time spent waiting for the server counts. Nothing is judged before a
    whole window has passed.
    """

    def __init__(self, floor: float, window: float, now: float = 0.0) -> None:
        if floor <= 0 or window <= 0:
            raise ValueError("floor and window must be positive")
        self.floor = floor
        """Bytes per second the connection must average over a window."""
        self.window = window
        """Seconds a judged span lasts at least."""
        self._step = window / SAMPLES
        # (time, total) points on the curve of bytes received, oldest first, at least _step apart.
        self._samples: deque[tuple[float, int]] = deque([(now, 0)])

    def update(self, now: float, total: int) -> TooSlow | None:
        """Count that ``total`` bytes have arrived by ``now``; the verdict if that is too slow."""
        samples = self._samples
        start = now - self.window
        # Keep the newest point at or before the window's start: the span is measured from it.
        while len(samples) > 1 and samples[1][0] <= start:
            samples.popleft()
        verdict = None
        then, before = samples[0]
        if then <= start:
            span = now - then
            rate = (total - before) / span
            if rate < self.floor:
                verdict = TooSlow(rate, span, before)
        if now - samples[-1][0] >= self._step:
            samples.append((now, total))
        return verdict
