"""Shared helpers for the engine tests: fast configs, event recording, byte checks, a tiny rogue server.

Everything here drives the public Engine API against real HTTP servers on 127.0.0.1; nothing is mocked.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from aiohttp import web

from engine.engine import Engine, EngineConfig
from engine.events import Event, ProgressUpdated, TaskEvent
from engine.faultserver import KiB, MiB, expected_bytes, file_matches
from engine.models import TaskOptions, TaskSnapshot

__all__ = [
    "EventLog",
    "KiB",
    "MiB",
    "RogueServer",
    "assert_exact",
    "closed_range",
    "download",
    "fast_config",
    "listing",
    "opts",
    "rough",
    "wait_for_state",
    "wait_until_done",
]

E = TypeVar("E", bound=Event)

LIMIT = 30.0
"""Generous upper bound, in seconds, for any one wait in these tests."""

_CLOSED = re.compile(r"^bytes=(\d+)-(\d+)$")


def fast_config(**changes: Any) -> EngineConfig:
    """An EngineConfig with short backoff, checkpoints and ticks, so failure tests run in well under a
    second."""
    base: dict[str, Any] = {
        "backoff_base": 0.05,
        "backoff_cap": 0.2,
        "checkpoint_interval": 0.2,
        "tick": 0.05,
    }
    base.update(changes)
    return EngineConfig(**base)


def opts(directory: Path, **changes: Any) -> TaskOptions:
    """TaskOptions for a test: small split size (test files are small), short timeouts."""
    base: dict[str, Any] = {
        "directory": str(directory),
        "connections": 4,
        "min_split": 64 * KiB,
        "timeout": 10.0,
        "connect_timeout": 5.0,
        "retries": 5,
    }
    base.update(changes)
    return TaskOptions(**base)


async def download(engine: Engine, url: str, options: TaskOptions, limit: float = LIMIT) -> TaskSnapshot:
    """Add one download, wait (bounded) until it finishes, and return its final snapshot."""
    tid = await engine.add(url, options)
    snap = await asyncio.wait_for(engine.wait([tid]), limit)
    task = snap.task(tid)
    assert task is not None
    return task


async def wait_until_done(engine: Engine, task_id: int, limit: float = LIMIT) -> TaskSnapshot:
    """Wait (bounded) until a task is completed, failed or cancelled; its final snapshot."""
    snap = await asyncio.wait_for(engine.wait([task_id]), limit)
    task = snap.task(task_id)
    assert task is not None
    return task


async def wait_for_state(
    engine: Engine,
    task_id: int,
    predicate: Callable[[TaskSnapshot], bool],
    limit: float = LIMIT,
    interval: float = 0.01,
) -> TaskSnapshot:
    """Poll the engine's snapshot until ``predicate`` holds for the task; TimeoutError after ``limit``."""
    async with asyncio.timeout(limit):
        while True:
            task = engine.snapshot().task(task_id)
            assert task is not None, f"task {task_id} vanished"
            if predicate(task):
                return task
            await asyncio.sleep(interval)


def assert_exact(path: str | Path | None, name: str, size: int, version: int = 0) -> None:
    """The file at ``path`` holds exactly the server's bytes for ``name`` (at ``version``)."""
    assert path is not None, "no path"
    p = Path(path)
    assert p.is_file(), f"{p} does not exist"
    got = p.stat().st_size
    assert got == size, f"{p} has {got} bytes, expected {size}"
    if not file_matches(str(p), name, size, version):
        data = p.read_bytes()
        want = expected_bytes(name, size, version)
        first = next(i for i, (a, b) in enumerate(zip(data, want, strict=True)) if a != b)
        raise AssertionError(f"{p} differs from the served content from byte {first} on")


def listing(directory: Path) -> list[str]:
    """Sorted names in a directory (a plain function, so async tests can call it)."""
    return sorted(p.name for p in directory.iterdir())


def closed_range(header: str | None) -> tuple[int, int] | None:
    """``(first, last)`` of a ``bytes=first-last`` header, None for anything else (open, absent)."""
    if header is None:
        return None
    m = _CLOSED.match(header)
    return (int(m.group(1)), int(m.group(2))) if m else None


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
        async with asyncio.timeout(limit):
            while True:
                found = self.of(cls, task_id)
                if found:
                    return found[0]
                await asyncio.sleep(0.01)


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class RogueServer:
    """A minimal aiohttp server whose single handler the test writes, for misbehaviour FaultServer
    does not offer (such as a 206 whose Content-Range is not the one asked for).

    ``requests`` records the Range header of every request, in order.
    """

    def __init__(self, handler: Handler) -> None:
        self._handler = handler
        self._runner: web.AppRunner | None = None
        self.port = 0
        """Port listened on once started."""
        self.requests: list[str | None] = []
        """The Range header of every request received (None where absent)."""

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        self.requests.append(request.headers.get("Range"))
        return await self._handler(request)

    async def __aenter__(self) -> RogueServer:
        app = web.Application()
        app.router.add_route("GET", "/{tail:.*}", self._handle)
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.5)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.port = int(self._runner.addresses[0][1])
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    def url(self, path: str) -> str:
        """``http://127.0.0.1:port`` plus ``path``."""
        return f"http://127.0.0.1:{self.port}{path}"


def rough(value: float, target: float, tolerance: float) -> bool:
    """Whether ``value`` is within ``tolerance`` (a fraction) of ``target``."""
    return abs(value - target) <= tolerance * target
