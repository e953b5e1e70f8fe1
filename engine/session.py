"""The saved queue: unfinished tasks with their options, so a restart picks them up again."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from engine.atomicfile import write_atomic_async
from engine.codec import from_plain, to_plain
from engine.models import TaskOptions, TaskState

VERSION = 1


@dataclass(frozen=True)
class SessionEntry:
    """One saved task."""

    url: str
    """The URL as given (credentials included; the file is private to the user)."""
    options: TaskOptions
    """The task's options."""
    paused: bool
    """Whether it comes back paused rather than queued."""


async def save_session(path: Path, tasks: Iterable[tuple[str, TaskOptions, TaskState]]) -> None:
    """Write the queue atomically, readable by the user alone."""
    data = {
        "version": VERSION,
        "tasks": [
            {"url": url, "options": to_plain(opts), "paused": state is TaskState.PAUSED}
            for url, opts, state in tasks
        ],
    }
    await asyncio.to_thread(path.parent.mkdir, parents=True, exist_ok=True)
    await write_atomic_async(path, json.dumps(data, indent=1).encode())


async def load_session(path: Path) -> list[SessionEntry]:
    """The saved queue; empty if the file is missing or unreadable."""
    try:
        data = json.loads(await asyncio.to_thread(path.read_bytes))
    except (OSError, ValueError):
        return []
    if not isinstance(data, dict) or data.get("version") != VERSION:
        return []
    out = []
    for item in data.get("tasks", []):
        try:
            out.append(
                SessionEntry(
                    url=str(item["url"]),
                    options=from_plain(TaskOptions, item["options"]),
                    paused=bool(item.get("paused", False)),
                )
            )
        except (KeyError, TypeError, ValueError):
            continue
    return out
