"""The event bus: ordered lifecycle events for every subscriber, coalesced progress.

Publishing never waits on a subscriber. Lifecycle events are rare (a handful per task)
and queue per subscriber; progress is kept as one slot per subscriber that each tick
overwrites, so a slow reader sees the latest state and never a backlog.
"""

from __future__ import annotations

import asyncio
from collections import deque

from engine.events import Event, ProgressUpdated

MAX_BACKLOG = 10_000
"""Lifecycle events a subscriber may fall behind by before it is cut off."""
PROGRESS_CAP = 1.0
"""Longest time between two progress events, in seconds, however many tasks run."""
PROGRESS_PER_TASK = 0.02
"""Seconds added to the progress interval per active task."""


def progress_interval(active: int, tick: float) -> float:
    """Seconds between progress events with ``active`` tasks running: every ``tick`` up to a dozen
    tasks, then longer, up to :data:`PROGRESS_CAP` (a second, from 50 tasks on).

    Each event carries every task's snapshot, so with 50 downloads four events a second cost the
    engine 200 snapshots and each reader as many rows to take in, while a screen of 50 rows
    redraws less often than that anyway (``tui.screens.main.table_interval``).
    """
    return max(tick, min(PROGRESS_CAP, active * PROGRESS_PER_TASK))


class Subscription:
    """An async iterator over the events published after it was made: an :class:`~engine.client.EventStream`.

    Order is kept between the two kinds too: the coalesced progress is only handed out once
    every lifecycle event published before it has been, so a reader never applies a
    snapshot older than an event it already saw (a task it saw removed cannot come back).
    """

    def __init__(self, bus: EventBus, progress: bool = True) -> None:
        self._bus = bus
        self.progress = progress
        """Whether this subscriber receives ProgressUpdated at all."""
        self._queue: deque[Event] = deque()
        self._pushed = 0
        self._taken = 0
        self._progress: ProgressUpdated | None = None
        self._progress_after = 0
        self._wake = asyncio.Event()
        self._closed = False
        self._ending = False
        self.overflowed = False
        """True if this subscriber fell so far behind that it was cut off."""

    def _push(self, event: Event) -> None:
        if self._closed or self._ending:
            return
        if len(self._queue) >= MAX_BACKLOG:
            # A reader this far behind is gone or stuck; dropping it keeps memory bounded.
            self.overflowed = True
            self.close()
            return
        self._queue.append(event)
        self._pushed += 1
        self._wake.set()

    def _offer_progress(self, event: ProgressUpdated) -> None:
        if self.progress and not (self._closed or self._ending):
            self._progress = event
            self._progress_after = self._pushed
            self._wake.set()

    def _end(self) -> None:
        # The bus is closing: hand out what was already published, then stop.
        self._ending = True
        self._wake.set()

    def close(self) -> None:
        """Stop the iteration; pending events are dropped."""
        self._closed = True
        self._queue.clear()
        self._progress = None
        self._bus._unsubscribe(self)
        self._wake.set()

    async def aclose(self) -> None:
        """Drain, then close: nothing published from now on arrives, but a reader still gets every
        event published before the call (in order), then the end of the iteration."""
        self._bus._unsubscribe(self)
        self._end()

    def __aiter__(self) -> Subscription:
        return self

    async def __anext__(self) -> Event:
        while True:
            if self._closed:
                raise StopAsyncIteration
            if self._progress is not None and self._taken >= self._progress_after:
                event, self._progress = self._progress, None
                return event
            if self._queue:
                self._taken += 1
                return self._queue.popleft()
            if self._ending:
                self._closed = True
                raise StopAsyncIteration
            self._wake.clear()
            await self._wake.wait()

    async def __aenter__(self) -> Subscription:
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.close()


class EventBus:
    """Fans events out to subscribers without ever blocking the publisher."""

    def __init__(self) -> None:
        self._subscribers: list[Subscription] = []
        self._closed = False

    def subscribe(self, progress: bool = True) -> Subscription:
        """A new subscription receiving every event published from now on.

        With ``progress=False`` it gets lifecycle events only. After :meth:`close` the
        subscription is already at its end.
        """
        sub = Subscription(self, progress)
        if self._closed:
            sub._end()
        else:
            self._subscribers.append(sub)
        return sub

    def _unsubscribe(self, sub: Subscription) -> None:
        if sub in self._subscribers:
            self._subscribers.remove(sub)

    def publish(self, event: Event) -> None:
        """Deliver an event: progress is coalesced, everything else queued in order."""
        if isinstance(event, ProgressUpdated):
            for sub in list(self._subscribers):
                sub._offer_progress(event)
        else:
            for sub in list(self._subscribers):
                sub._push(event)

    def close(self) -> None:
        """End every subscription once it has read what was already published."""
        self._closed = True
        subs, self._subscribers = self._subscribers, []
        for sub in subs:
            sub._end()

    @property
    def wants_progress(self) -> bool:
        """Whether any subscriber takes progress events (if none, there is no need to build them)."""
        return any(sub.progress for sub in self._subscribers)

    @property
    def subscriber_count(self) -> int:
        """How many subscriptions are open."""
        return len(self._subscribers)
