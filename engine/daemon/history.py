"""The daemon's record of what happened: the history of finished tasks, saved as JSON, and the log.

The file is small and read or replaced a few times a minute at most, off the download path, so it
goes through aiofiles (its thread pool) rather than blocking the loop that serves the API.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import logging
from pathlib import Path

import aiofiles

from engine.atomicfile import write_atomic_async
from engine.codec import from_plain, to_plain
from engine.daemon.config import HISTORY_LIMIT
from engine.events import (
    CheckpointFailed,
    CheckpointRecovered,
    Event,
    ExtraBytesIgnored,
    HookFailed,
    SessionSaveFailed,
    SessionSaveRecovered,
    TaskAdded,
    TaskCancelled,
    TaskCompleted,
    TaskFailed,
    TaskRemoved,
    TaskRetrying,
    TaskStarted,
    TaskUrlChanged,
)
from engine.models import TaskSnapshot

log = logging.getLogger("fetchtop.daemon")


class History:
    """Finished tasks, newest last, saved as JSON in the state directory."""

    def __init__(self, path: Path, limit: int = HISTORY_LIMIT) -> None:
        self.path = path
        """The history file."""
        self.limit = limit
        """Most entries kept."""
        self.tasks: list[TaskSnapshot] = []
        """The entries, oldest first."""
        self._lock = asyncio.Lock()

    async def load(self) -> None:
        """Read the file; a missing or damaged one means an empty history."""
        try:
            async with aiofiles.open(self.path, "rb") as f:
                raw = await f.read()
            data = json.loads(raw)
            items = data["tasks"] if isinstance(data, dict) else []
        except (OSError, ValueError, KeyError, TypeError):
            return
        for item in items[-self.limit :]:
            with contextlib.suppress(KeyError, TypeError, ValueError, AttributeError):
                self.tasks.append(from_plain(TaskSnapshot, item))

    async def record(self, task: TaskSnapshot) -> None:
        """Remember a finished task (without its segment map) and save; raises OSError."""
        self.tasks.append(dataclasses.replace(task, segments=(), speed=0.0, eta=None, connections=0))
        del self.tasks[: -self.limit]
        async with self._lock:
            payload = json.dumps({"version": 1, "tasks": [to_plain(t) for t in self.tasks]}).encode()
            await write_atomic_async(self.path, payload)


def log_event(event: Event) -> None:
    """Write a lifecycle event to the daemon's log, one line."""
    if isinstance(event, TaskAdded):
        log.info("task %d added: %s", event.task_id, event.task.url)
    elif isinstance(event, TaskStarted):
        log.info("task %d started", event.task_id)
    elif isinstance(event, TaskCompleted):
        log.info("task %d completed: %s (%d bytes)", event.task_id, event.path, event.size)
    elif isinstance(event, TaskFailed):
        log.warning("task %d failed: %s", event.task_id, event.reason)
    elif isinstance(event, HookFailed):
        log.warning("task %d: %s hook failed: %s", event.task_id, event.hook, event.reason)
    elif isinstance(event, TaskRetrying):
        log.info("task %d retrying in %.1fs: %s", event.task_id, event.delay, event.reason)
    elif isinstance(event, TaskUrlChanged):
        # The URL is redacted in the event: a signed link's password never reaches the log.
        how = f"started over ({event.restarted})" if event.restarted else f"{event.kept} bytes kept"
        log.info("task %d URL changed to %s: %s", event.task_id, event.url, how)
    elif isinstance(event, SessionSaveFailed):
        log.error("cannot save the queue: %s (retrying; what was added is not on disk yet)", event.reason)
    elif isinstance(event, SessionSaveRecovered):
        log.warning("the queue is saved again")
    elif isinstance(event, CheckpointFailed):
        log.warning(
            "task %d: cannot write its control file: %s (downloading on, retrying each checkpoint)",
            event.task_id,
            event.reason,
        )
    elif isinstance(event, ExtraBytesIgnored):
        log.warning(
            "task %d: server sent more than its Content-Length; ignored %d extra bytes",
            event.task_id,
            event.extra,
        )
    elif isinstance(event, CheckpointRecovered):
        log.warning("task %d: its control file is written again", event.task_id)
    elif isinstance(event, TaskCancelled | TaskRemoved):
        log.info("task %d %s", event.task_id, "cancelled" if isinstance(event, TaskCancelled) else "removed")
