"""Recording the events of one engine subscription, for the tests that check what the engine said."""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass, field
from typing import TypeVar

from engine.engine import Engine
from engine.events import Event, ProgressUpdated, TaskEvent
from tests.support.limits import LIMIT
from tests.support.waiting import wait_until

E = TypeVar("E", bound=Event)


@dataclass
class EventLog:
    """Records every event of one subscription in a background task.

    Use as ``async with EventLog(engine) as log:``; ``log.events`` grows while the engine runs.
    """

    engine: Engine
    """The engine subscribed to."""
    events: list[Event] = field(default_factory=list)
    """Everything received, in order."""
    _reader: asyncio.Task[None] | None = None

    async def __aenter__(self) -> EventLog:
        sub = self.engine.subscribe()

        async def read() -> None:
            async for event in sub:
                self.events.append(event)

        self._sub = sub
        self._reader = asyncio.create_task(read())
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    async def stop(self) -> None:
        """Stop recording (what arrived so far is kept)."""
        # Drain: events already published still reach the reader, then it ends.
        await self._sub.aclose()
        if self._reader is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.wait_for(self._reader, 5)

    def of(self, cls: type[E], task_id: int | None = None) -> list[E]:
        """Events of one type (optionally about one task), in order."""
        return [
            e
            for e in self.events
            if isinstance(e, cls) and (task_id is None or (isinstance(e, TaskEvent) and e.task_id == task_id))
        ]

    def lifecycle(self, task_id: int) -> list[str]:
        """Names of the events about one task (progress excluded), in order."""
        return [type(e).__name__ for e in self.events if isinstance(e, TaskEvent) and e.task_id == task_id]

    def progress(self) -> list[ProgressUpdated]:
        """The progress events received."""
        return [e for e in self.events if isinstance(e, ProgressUpdated)]

    async def wait_for(self, cls: type[E], task_id: int | None = None, limit: float = LIMIT) -> E:
        """Wait (bounded) until an event of this type (about this task) has arrived; the first one."""
        about = "" if task_id is None else f" about task {task_id}"
        found = await wait_until(
            lambda: self.of(cls, task_id), f"a {cls.__name__}{about}", limit=limit, interval=0.01
        )
        return found[0]
