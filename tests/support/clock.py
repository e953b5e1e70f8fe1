"""A wall clock for the bandwidth schedule's tests: it starts at a chosen local time and can be set."""

from __future__ import annotations

import time
from datetime import datetime


class Clock:
    """Runs at real speed from a chosen naive local time; :meth:`set` jumps it like an NTP step."""

    def __init__(self, start: datetime) -> None:
        self.offset = 0.0
        self.set(start)

    def set(self, local: datetime) -> None:
        """Jump to ``local`` (a naive local time) and run on from there."""
        self.offset = local.timestamp() - time.time()

    def __call__(self) -> float:
        return time.time() + self.offset


def local(hour: int, minute: int, second: float = 0.0) -> datetime:
    """A naive local time on a day with no daylight-saving change near it."""
    whole = int(second)
    return datetime(2026, 7, 15, hour, minute, whole, int((second - whole) * 1e6))
