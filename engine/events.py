"""Typed events the engine publishes, named in the past tense like aiohttp's tracing signals.

Lifecycle events reach every subscriber in order. :class:`ProgressUpdated` is the only
high-rate event and is coalesced: a subscriber only ever sees the latest one.
"""

from __future__ import annotations

from dataclasses import dataclass

from engine.models import EngineSnapshot, TaskSnapshot


@dataclass(frozen=True)
class Event:
    """Base of every engine event."""

    time: float
    """Wall-clock time the event happened."""


@dataclass(frozen=True)
class TaskEvent(Event):
    """An event about one task."""

    task_id: int
    """The task it is about."""


@dataclass(frozen=True)
class TaskAdded(TaskEvent):
    """A task entered the queue."""

    task: TaskSnapshot
    """The new task's state."""


@dataclass(frozen=True)
class TaskStarted(TaskEvent):
    """A task took a download slot and began probing."""

    url: str
    """The URL, with any password removed."""


@dataclass(frozen=True)
class TaskProbed(TaskEvent):
    """The first response arrived: size, name and range support are known."""

    name: str
    """File name chosen."""
    path: str
    """Final path the file will have."""
    size: int | None
    """Total bytes, if known."""
    resumable: bool
    """Whether the server honours ranges."""
    final_url: str
    """URL after redirects."""


@dataclass(frozen=True)
class TaskRestarted(TaskEvent):
    """The remote file changed since the partial download, so it started again from zero."""

    reason: str
    """Why, one line."""


@dataclass(frozen=True)
class TaskPaused(TaskEvent):
    """A task was paused; its progress is kept."""


@dataclass(frozen=True)
class TaskResumed(TaskEvent):
    """A paused, failed or cancelled task was queued again."""


@dataclass(frozen=True)
class TaskRetrying(TaskEvent):
    """A connection of a task failed transiently and will retry."""

    reason: str
    """What went wrong, one line."""
    kind: str
    """Short machine-readable cause: timeout, connection, http_5xx, http_429, ..."""
    delay: float
    """Seconds until the retry."""
    attempt: int
    """Attempt number since the last progress."""


@dataclass(frozen=True)
class ExtraBytesIgnored(TaskEvent):
    """The server sent more body than its Content-Length; the declared length was kept.

    The bytes past it were dropped and their connection closed. Published once per run of a task.
    """

    extra: int
    """Bytes past the declared length that arrived before the connection was closed."""


@dataclass(frozen=True)
class SegmentFinished(TaskEvent):
    """One byte range of a task is complete."""

    start: int
    """First byte of the range."""
    end: int
    """One past the last byte."""


@dataclass(frozen=True)
class TaskVerifying(TaskEvent):
    """All bytes are in; the checksum is being computed."""


@dataclass(frozen=True)
class TaskCompleted(TaskEvent):
    """A task finished and its file is in place."""

    path: str
    """Final path of the file."""
    size: int
    """Bytes in the file."""
    duration: float
    """Seconds spent downloading (paused time excluded)."""


@dataclass(frozen=True)
class TaskFailed(TaskEvent):
    """A task stopped for good; its partial file is kept for a retry."""

    reason: str
    """Why, one line, e.g. ``HTTP 404 Not Found``."""


@dataclass(frozen=True)
class HookFailed(TaskEvent):
    """A task's ``--on-complete``/``--on-error`` command failed, hung (and was killed) or could not start.

    Never fatal: the task's own state is what it was.
    """

    hook: str
    """Which hook: ``on-complete`` or ``on-error``."""
    reason: str
    """Why, one line (``exit status 3: <its last line of output>``, ``killed after 60s``)."""


@dataclass(frozen=True)
class TaskCancelled(TaskEvent):
    """A task was cancelled by the user."""


@dataclass(frozen=True)
class TaskRemoved(TaskEvent):
    """A task left the engine."""

    deleted_files: bool
    """Whether its partial file was deleted."""


@dataclass(frozen=True)
class TaskMoved(TaskEvent):
    """A queued task moved in the queue."""

    position: int
    """Its new index in the task list."""


@dataclass(frozen=True)
class TaskUrlChanged(TaskEvent):
    """A stopped task's URL was replaced (an expired link); it waits paused to be resumed."""

    url: str
    """The new URL, with any password removed."""
    kept: int
    """Bytes downloaded before that the new URL goes on from (0 if none)."""
    restarted: str | None
    """Why the bytes on disk were dropped to start over (``--restart``); None if nothing was dropped."""


@dataclass(frozen=True)
class LimitChanged(Event):
    """A speed limit changed."""

    task_id: int | None
    """The task whose limit changed, or None for the global limit."""
    limit: int | None
    """The new limit in bytes per second, None for unlimited."""


@dataclass(frozen=True)
class ScheduledLimitChanged(Event):
    """The bandwidth schedule moved to another rule (or a gap) and set the global limit."""

    rule: str | None
    """The new rule's span, ``08:00-18:00``; None in a gap between rules (the default limit)."""
    limit: int | None
    """The global limit now, bytes per second; None for unlimited."""
    next_change: float | None
    """Wall-clock time of the next scheduled change; None if there is none."""


@dataclass(frozen=True)
class SessionSaveFailed(Event):
    """Saving the queue failed; published once per run of failures (and again if the cause changes).

    The engine keeps retrying with backoff; :class:`SessionSaveRecovered` follows once a save works.
    """

    reason: str
    """Why, one line, e.g. ``No space left on device``."""


@dataclass(frozen=True)
class SessionSaveRecovered(Event):
    """The queue was saved again after failed saves: everything acknowledged is on disk."""


@dataclass(frozen=True)
class CheckpointFailed(TaskEvent):
    """A task's control file could not be written; published once per run of failures.

    The download goes on and the previous control file (claiming less) stays, so the part file
    remains resumable; the write is tried again at the next checkpoint.
    """

    reason: str
    """Why, one line, e.g. ``No space left on device``."""


@dataclass(frozen=True)
class CheckpointRecovered(TaskEvent):
    """A task's control file was written again after failed checkpoints."""


@dataclass(frozen=True)
class ProgressUpdated(Event):
    """The latest state of every task; published each tick and coalesced."""

    snapshot: EngineSnapshot
    """The engine's state."""


EVENT_TYPES: dict[str, type[Event]] = {
    cls.__name__: cls
    for cls in (
        TaskAdded,
        TaskStarted,
        TaskProbed,
        TaskRestarted,
        TaskPaused,
        TaskResumed,
        TaskRetrying,
        ExtraBytesIgnored,
        SegmentFinished,
        TaskVerifying,
        TaskCompleted,
        TaskFailed,
        HookFailed,
        TaskCancelled,
        TaskRemoved,
        TaskMoved,
        TaskUrlChanged,
        LimitChanged,
        ScheduledLimitChanged,
        SessionSaveFailed,
        SessionSaveRecovered,
        CheckpointFailed,
        CheckpointRecovered,
        ProgressUpdated,
    )
}
"""Every concrete event class by name, for decoding."""
