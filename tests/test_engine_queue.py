"""The queue: at most ``jobs`` tasks at once, in order; move() reorders; pause and resume at any time."""

from __future__ import annotations

import asyncio
import itertools
from pathlib import Path

import pytest

from engine.client import EngineError
from engine.engine import Engine
from engine.events import TaskCompleted, TaskMoved, TaskStarted
from engine.models import TaskState
from faultserver.content import KiB
from faultserver.server import FaultServer
from tests.support.downloads import assert_exact, fast_config, opts, wait_for_state, wait_until_done
from tests.support.events import EventLog
from tests.support.waiting import wait_until

SMALL = 256 * KiB


async def test_jobs_1_runs_tasks_one_at_a_time_in_order(
    fault_server: FaultServer, download_dir: Path
) -> None:
    names = [f"q{i}.bin" for i in range(3)]
    urls = [fault_server.add_file(n, SMALL, rate=1024 * KiB) for n in names]
    async with Engine(fast_config(jobs=1)) as engine, EventLog(engine) as log:
        ids = [await engine.add(u, opts(download_dir, connections=2)) for u in urls]
        await asyncio.wait_for(engine.wait(ids), 30)
        await log.wait_for(TaskCompleted, ids[-1])
    assert [e.task_id for e in log.of(TaskStarted)] == ids
    assert [e.task_id for e in log.of(TaskCompleted)] == ids
    # Each task started only after the one before completed.
    order = [(type(e).__name__, getattr(e, "task_id", None)) for e in log.events]
    for done_id, next_id in itertools.pairwise(ids):
        assert order.index(("TaskCompleted", done_id)) < order.index(("TaskStarted", next_id))
    # The server agrees: no request for a file arrived before the previous file's last response ended.
    for done_name, next_name in itertools.pairwise(names):
        last_end = max(r.ended or 0.0 for r in fault_server.stats(done_name).records)
        first_start = min(r.started for r in fault_server.stats(next_name).records)
        assert first_start >= last_end
    for tid, name in zip(ids, names, strict=True):
        task = engine.snapshot().task(tid)
        assert task is not None and task.state is TaskState.COMPLETED
        assert_exact(task.path, name, SMALL)


async def test_at_most_jobs_tasks_run_at_once(fault_server: FaultServer, download_dir: Path) -> None:
    urls = [fault_server.add_file(f"j{i}.bin", SMALL, rate=768 * KiB) for i in range(5)]
    peak = 0
    async with Engine(fast_config(jobs=2)) as engine:
        ids = [await engine.add(u, opts(download_dir, connections=2)) for u in urls]
        waiter = asyncio.ensure_future(engine.wait(ids))
        async with asyncio.timeout(30):
            while not waiter.done():
                snap = engine.snapshot()
                peak = max(peak, sum(1 for t in snap.tasks if t.state.active))
                await asyncio.sleep(0.005)
        final = waiter.result()
    assert peak == 2
    assert all(t.state is TaskState.COMPLETED for t in final.tasks)


async def test_move_reorders_the_queue(fault_server: FaultServer, download_dir: Path) -> None:
    blocker_url = fault_server.add_file("blocker.bin", 512 * KiB, rate=512 * KiB)
    urls = [fault_server.add_file(f"m{i}.bin", SMALL) for i in range(3)]
    async with Engine(fast_config(jobs=1)) as engine, EventLog(engine) as log:
        blocker = await engine.add(blocker_url, opts(download_dir))
        a, b, c = [await engine.add(u, opts(download_dir)) for u in urls]
        await engine.move(c, -2)  # c jumps ahead of a and b
        assert [t.id for t in engine.snapshot().tasks] == [blocker, c, a, b]
        await engine.move(b, 10)  # already last: clamped, nothing happens
        await engine.move(a, -100)  # to the very front, before the running blocker
        assert [t.id for t in engine.snapshot().tasks] == [a, blocker, c, b]
        with pytest.raises(EngineError):
            await engine.move(999, 1)
        await asyncio.wait_for(engine.wait(), 30)
        for tid in (blocker, a, c, b):
            await log.wait_for(TaskCompleted, tid)
    moved = [(e.task_id, e.position) for e in log.of(TaskMoved)]
    assert moved == [(c, 1), (a, 0)]
    # The running blocker kept its slot; the rest started in their new order.
    assert [e.task_id for e in log.of(TaskStarted)] == [blocker, a, c, b]


async def test_pause_and_resume_while_probing(fault_server: FaultServer, download_dir: Path) -> None:
    # The server waits before answering, so the task sits in PROBING.
    url = fault_server.add_file("slowstart.bin", SMALL, delay=0.6)
    async with Engine(fast_config()) as engine, EventLog(engine) as log:
        tid = await engine.add(url, opts(download_dir))
        await wait_for_state(engine, tid, lambda t: t.state is TaskState.PROBING)
        await engine.pause(tid)
        task = engine.snapshot().task(tid)
        assert task is not None and task.state is TaskState.PAUSED
        await engine.pause(tid)  # pausing twice is harmless
        fault_server.update("slowstart.bin", delay=0.0)
        await engine.resume(tid)
        task = await wait_until_done(engine, tid)
    assert task.state is TaskState.COMPLETED, task.error
    assert_exact(task.path, "slowstart.bin", SMALL)
    assert log.lifecycle(tid).count("TaskPaused") == 1


async def test_pause_all_and_resume_all(fault_server: FaultServer, download_dir: Path) -> None:
    size = 1024 * KiB
    names = [f"all{i}.bin" for i in range(3)]
    urls = [fault_server.add_file(n, size, rate=256 * KiB) for n in names]
    async with Engine(fast_config(jobs=2)) as engine:
        ids = [await engine.add(u, opts(download_dir, connections=2)) for u in urls]
        await wait_for_state(engine, ids[0], lambda t: t.done >= 100 * KiB)
        await engine.pause_all()
        snap = engine.snapshot()
        assert [t.state for t in snap.tasks] == [TaskState.PAUSED] * 3
        assert snap.connections == 0
        await wait_until(lambda: fault_server.active == 0, "the server to end every response", limit=5)
        kept = [t.done for t in snap.tasks]
        assert kept[0] >= 100 * KiB
        for name in names:
            fault_server.update(name, rate=None)
        await engine.resume_all()
        final = await asyncio.wait_for(engine.wait(ids), 30)
    for tid, name in zip(ids, names, strict=True):
        task = final.task(tid)
        assert task is not None and task.state is TaskState.COMPLETED
        assert_exact(task.path, name, size)


async def test_commands_on_finished_tasks_are_harmless(fault_server: FaultServer, download_dir: Path) -> None:
    url = fault_server.add_file("finished.bin", SMALL)
    async with Engine(fast_config()) as engine, EventLog(engine) as log:
        tid = await engine.add(url, opts(download_dir))
        await wait_until_done(engine, tid)
        await engine.pause(tid)
        await engine.cancel(tid)
        await engine.resume(tid)
        task = engine.snapshot().task(tid)
        assert task is not None and task.state is TaskState.COMPLETED
        await engine.remove(tid, delete_files=True)  # never deletes a completed file
    assert_exact(download_dir / "finished.bin", "finished.bin", SMALL)
    assert log.lifecycle(tid)[-1] == "TaskRemoved"
    assert "TaskPaused" not in log.lifecycle(tid) and "TaskCancelled" not in log.lifecycle(tid)


@pytest.mark.parametrize(
    "changes",
    [
        {"connections": 0},
        {"connections": 33},
        {"speed_limit": 0},
        {"checksum": "sha256"},
        {"checksum": "nosuchalgo=00"},
        {"checksum": "sha256=xyz"},
        {"timeout": 0},
        {"min_split": 1},
    ],
)
async def test_bad_options_are_refused(download_dir: Path, changes: dict[str, object]) -> None:
    async with Engine(fast_config()) as engine:
        with pytest.raises(EngineError) as err:
            await engine.add("http://127.0.0.1:9/x", opts(download_dir, **changes))
        assert "\n" not in str(err.value)
        assert engine.snapshot().tasks == ()


async def test_unknown_task_ids_raise(download_dir: Path) -> None:
    async with Engine(fast_config()) as engine:
        for call in (engine.pause, engine.resume, engine.cancel, engine.remove):
            with pytest.raises(EngineError):
                await call(42)
        with pytest.raises(EngineError):
            await engine.set_limit(1000, task_id=42)
        with pytest.raises(EngineError):
            await engine.set_limit(0)
