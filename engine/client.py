"""The one small interface a UI uses to drive an engine, local or remote, and the errors it raises.

:class:`engine.engine.Engine` implements :class:`EngineClient` in-process and
:class:`engine.daemon.client.RemoteClient` over the daemon's API. A UI catches only the errors
defined here: :class:`EngineError` (a refused request; :class:`Unauthorized` is one) and
:class:`DaemonUnavailable` (the remote engine cannot be reached). An in-process engine never raises
DaemonUnavailable.
"""

from __future__ import annotations

from typing import Protocol, Self, runtime_checkable

from engine.events import Event
from engine.models import EngineSnapshot, TaskOptions


class EngineError(Exception):
    """A request the engine refused (unknown task, bad argument); the message is one line."""


class Unauthorized(EngineError):
    """The daemon refused the token (HTTP 401)."""


class DaemonUnavailable(ConnectionError):
    """The daemon cannot be reached (not running, connection refused or lost); one-line message."""

    def __init__(self, message: str, not_running: bool = False) -> None:
        super().__init__(message)
        self.not_running = not_running
        """True when nothing listens on the daemon's socket (missing, or refusing: left by a crash)."""


@runtime_checkable
class EventStream(Protocol):
    """The events of one subscription, in order: ``async for event in stream``.

    Iteration ends (StopAsyncIteration) when the stream is closed or the engine shuts down; a remote
    stream raises DaemonUnavailable when its connection breaks and Unauthorized when refused.
    """

    def __aiter__(self) -> Self:
        """The stream itself."""
        ...

    async def __anext__(self) -> Event:
        """The next event; raises StopAsyncIteration at the end, or DaemonUnavailable / Unauthorized."""
        ...

    def close(self) -> None:
        """End the stream now: events not yet read are dropped. Safe to call twice, never raises."""
        ...

    async def aclose(self) -> None:
        """Drain, then close: take no new events, let the reader have those already received, end.

        A reader still iterating gets every event that reached the stream before the call, then
        StopAsyncIteration; any connection is released before this returns. Never raises.
        """
        ...


class EngineClient(Protocol):
    """What a dashboard can ask of an engine.

    Every command raises EngineError when the engine refuses it (unknown task, bad argument;
    Unauthorized for a remote engine that refuses the token) and, for a remote engine,
    DaemonUnavailable when it cannot be reached.
    """

    async def add(self, url: str, options: TaskOptions | None = None) -> int:
        """Queue a download; returns its task id. Raises EngineError, DaemonUnavailable."""
        ...

    async def pause(self, task_id: int) -> None:
        """Pause a task, keeping its progress. Raises EngineError, DaemonUnavailable."""
        ...

    async def resume(self, task_id: int) -> None:
        """Queue a paused, failed or cancelled task again, keeping its progress.

        Raises EngineError, DaemonUnavailable.
        """
        ...

    async def cancel(self, task_id: int) -> None:
        """Stop a task for good; its partial file stays until removed.

        Raises EngineError, DaemonUnavailable.
        """
        ...

    async def remove(self, task_id: int, delete_files: bool = False) -> None:
        """Cancel a task and forget it, optionally deleting its partial file.

        Raises EngineError, DaemonUnavailable.
        """
        ...

    async def pause_all(self) -> None:
        """Pause every queued or active task. Raises DaemonUnavailable (remote)."""
        ...

    async def resume_all(self) -> None:
        """Resume every paused task. Raises DaemonUnavailable (remote)."""
        ...

    async def set_limit(self, limit: int | None, task_id: int | None = None) -> None:
        """Set the global limit, or one task's, in bytes per second (None: unlimited).

        Raises EngineError (bad limit, unknown task), DaemonUnavailable.
        """
        ...

    async def move(self, task_id: int, offset: int) -> None:
        """Move a queued task ``offset`` places in the queue (negative: towards the front).

        Raises EngineError, DaemonUnavailable.
        """
        ...

    async def set_url(self, task_id: int, url: str, restart: bool = False) -> int:
        """Replace the URL of a paused, failed or cancelled task (an expired link); the bytes kept.

        Kept when the new URL serves the same size and validators; otherwise refused with the
        reason, or with ``restart`` started over. The task is left paused. Raises EngineError
        (refused, with why), DaemonUnavailable.
        """
        ...

    async def get_snapshot(self) -> EngineSnapshot:
        """The current state of every task. Raises EngineError (unreadable answer), DaemonUnavailable."""
        ...

    def subscribe(self) -> EventStream:
        """Events from now on: lifecycle in order, progress coalesced. Raises nothing itself:
        a remote stream's failures come out of the iteration (see :class:`EventStream`)."""
        ...
