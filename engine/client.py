"""The one small interface a UI uses to drive an engine, local or remote."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Protocol

from engine.events import Event
from engine.models import EngineSnapshot, TaskOptions


class EngineError(Exception):
    """A request the engine refused (unknown task, bad argument); the message is one line."""


class EngineClient(Protocol):
    """What a dashboard can ask of an engine. :class:`engine.Engine` implements it in-process."""

    async def add(self, url: str, options: TaskOptions | None = None) -> int:
        """Queue a download and return its task id."""
        ...

    async def pause(self, task_id: int) -> None:
        """Pause a task, keeping its progress."""
        ...

    async def resume(self, task_id: int) -> None:
        """Queue a paused, failed or cancelled task again, keeping its progress."""
        ...

    async def cancel(self, task_id: int) -> None:
        """Stop a task for good; its partial file stays until removed."""
        ...

    async def remove(self, task_id: int, delete_files: bool = False) -> None:
        """Cancel a task and forget it, optionally deleting its partial file."""
        ...

    async def pause_all(self) -> None:
        """Pause every queued or active task."""
        ...

    async def resume_all(self) -> None:
        """Resume every paused task."""
        ...

    async def set_limit(self, limit: int | None, task_id: int | None = None) -> None:
        """Set the global limit, or one task's, in bytes per second (None: unlimited)."""
        ...

    async def move(self, task_id: int, offset: int) -> None:
        """Move a queued task ``offset`` places in the queue (negative: towards the front)."""
        ...

    async def get_snapshot(self) -> EngineSnapshot:
        """The current state of every task."""
        ...

    def subscribe(self) -> AsyncIterator[Event]:
        """Events from now on; lifecycle in order, progress coalesced."""
        ...
