"""Running downloads in the engine tests: fast configs and options, bounded waits on a task, and checks
of the bytes that landed on disk. Everything drives the public Engine API against real servers on
127.0.0.1; nothing is mocked.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

from engine.config import EngineConfig
from engine.engine import Engine
from engine.models import TaskOptions, TaskSnapshot
from faultserver.content import KiB, expected_bytes, file_matches
from tests.support.limits import LIMIT
from tests.support.waiting import wait_until


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
    """Poll the engine's snapshot until ``predicate`` holds for the task; fails after ``limit``."""

    def reached() -> TaskSnapshot | None:
        task = engine.snapshot().task(task_id)
        assert task is not None, f"task {task_id} vanished"
        return task if predicate(task) else None

    return await wait_until(
        reached, f"task {task_id} to reach the state asked for", limit=limit, interval=interval
    )


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


def sha256_of(path: Path) -> str:
    """Hex SHA-256 of a whole file."""
    return hashlib.sha256(path.read_bytes()).hexdigest()


def rough(value: float, target: float, tolerance: float) -> bool:
    """Whether ``value`` is within ``tolerance`` (a fraction) of ``target``."""
    return abs(value - target) <= tolerance * target
