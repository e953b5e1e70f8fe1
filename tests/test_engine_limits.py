"""Speed limits: per-task and global token buckets hold the asked rate, and changes apply while running.

These check behaviour over a few seconds with a generous tolerance; precision over long runs is the
benchmark's business.
"""

from __future__ import annotations

import asyncio
import statistics
import time
from pathlib import Path

import pytest

from engine.engine import Engine
from engine.events import LimitChanged
from engine.models import TaskState
from faultserver.content import KiB, MiB
from faultserver.server import FaultServer
from tests.support.downloads import assert_exact, fast_config, opts, wait_for_state, wait_until_done
from tests.support.events import EventLog


async def measured_rate(engine: Engine, ids: list[int], seconds: float, interval: float = 0.05) -> float:
    """Bytes per second the tasks gained together over the next ``seconds``: the least-squares slope of
    their summed progress, sampled every ``interval`` (robust to the chunky steps a bucket makes)."""
    times: list[float] = []
    done: list[float] = []
    start = time.monotonic()
    while True:
        now = time.monotonic()
        snap = engine.snapshot()
        total = 0
        for tid in ids:
            task = snap.task(tid)
            assert task is not None
            assert task.state is not TaskState.COMPLETED, "finished before the measurement ended"
            total += task.done
        times.append(now - start)
        done.append(float(total))
        if now - start >= seconds:
            break
        await asyncio.sleep(interval)
    slope, _ = statistics.linear_regression(times, done)
    return slope


@pytest.mark.slow
async def test_per_task_limit(fault_server: FaultServer, download_dir: Path) -> None:
    limit = 200 * KiB
    size = 1 * MiB
    url = fault_server.add_file("limited.bin", size)
    async with Engine(fast_config()) as engine:
        tid = await engine.add(url, opts(download_dir, connections=2, speed_limit=limit))
        await wait_for_state(engine, tid, lambda t: t.done >= 80 * KiB)  # past the initial burst
        rate = await measured_rate(engine, [tid], 2.5)
        task = engine.snapshot().task(tid)
        assert task is not None and task.options.speed_limit == limit
        await engine.set_limit(None, task_id=tid)
        task = await wait_until_done(engine, tid)
    assert 0.9 * limit <= rate <= 1.1 * limit, f"{rate / KiB:.1f} KiB/s for a {limit / KiB:.0f} KiB/s limit"
    assert task.state is TaskState.COMPLETED
    assert_exact(task.path, "limited.bin", size)


@pytest.mark.slow
async def test_global_limit_is_shared_by_all_tasks(fault_server: FaultServer, download_dir: Path) -> None:
    limit = 240 * KiB
    size = 1 * MiB
    urls = [fault_server.add_file(f"shared-{i}.bin", size) for i in range(2)]
    async with Engine(fast_config(speed_limit=limit)) as engine:
        assert engine.snapshot().speed_limit == limit
        ids = [await engine.add(u, opts(download_dir, connections=2)) for u in urls]
        await wait_for_state(engine, ids[1], lambda t: t.done >= 40 * KiB)
        rate = await measured_rate(engine, ids, 2.5)
        shares = [t.done for t in engine.snapshot().tasks]
        await engine.set_limit(None)
        assert engine.snapshot().speed_limit is None
        final = await asyncio.wait_for(engine.wait(ids), 30)
    assert 0.9 * limit <= rate <= 1.1 * limit, f"{rate / KiB:.1f} KiB/s for a {limit / KiB:.0f} KiB/s limit"
    # Both tasks moved: the bucket is shared, not taken by one of them.
    assert min(shares) >= 0.25 * max(shares), shares
    for tid, i in zip(ids, range(2), strict=True):
        task = final.task(tid)
        assert task is not None and task.state is TaskState.COMPLETED
        assert_exact(task.path, f"shared-{i}.bin", size)


@pytest.mark.slow
async def test_limit_changed_while_running_takes_effect(
    fault_server: FaultServer, download_dir: Path
) -> None:
    size = 2 * MiB
    url = fault_server.add_file("retuned.bin", size)
    async with Engine(fast_config()) as engine, EventLog(engine) as log:
        tid = await engine.add(url, opts(download_dir, connections=2, speed_limit=100 * KiB))
        await wait_for_state(engine, tid, lambda t: t.done >= 40 * KiB)
        slow = await measured_rate(engine, [tid], 1.5)
        await engine.set_limit(400 * KiB, task_id=tid)
        await asyncio.sleep(0.3)  # let the bucket settle at the new rate
        fast = await measured_rate(engine, [tid], 1.5)
        task = engine.snapshot().task(tid)
        assert task is not None and task.options.speed_limit == 400 * KiB
        started = time.monotonic()
        await engine.set_limit(None, task_id=tid)
        task = await wait_until_done(engine, tid)
        unlimited_for = time.monotonic() - started
    assert 0.85 * 100 * KiB <= slow <= 1.15 * 100 * KiB, slow / KiB
    assert 0.85 * 400 * KiB <= fast <= 1.15 * 400 * KiB, fast / KiB
    # Lifting the limit lets the rest (over 1 MiB) arrive at loopback speed.
    assert unlimited_for < 2.0
    assert task.state is TaskState.COMPLETED and task.options.speed_limit is None
    assert_exact(task.path, "retuned.bin", size)
    changes = log.of(LimitChanged)
    assert [(c.task_id, c.limit) for c in changes] == [(tid, 400 * KiB), (tid, None)]


@pytest.mark.slow
async def test_global_limit_set_while_running(fault_server: FaultServer, download_dir: Path) -> None:
    size = 3 * MiB
    url = fault_server.add_file("later-limited.bin", size, rate=2 * MiB)
    async with Engine(fast_config()) as engine, EventLog(engine) as log:
        tid = await engine.add(url, opts(download_dir, connections=2))
        await wait_for_state(engine, tid, lambda t: t.done >= 100 * KiB)
        await engine.set_limit(150 * KiB)
        await asyncio.sleep(0.3)
        rate = await measured_rate(engine, [tid], 2.0)
        await engine.set_limit(None)
        task = await wait_until_done(engine, tid)
    assert 0.85 * 150 * KiB <= rate <= 1.15 * 150 * KiB, rate / KiB
    assert task.state is TaskState.COMPLETED
    assert_exact(task.path, "later-limited.bin", size)
    assert [(c.task_id, c.limit) for c in log.of(LimitChanged)] == [(None, 150 * KiB), (None, None)]
