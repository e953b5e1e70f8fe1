"""Segments stay busy to the end: idle connections take over slow ranges, servers that refuse extra
connections get fewer, and connections per host are capped across tasks."""

from __future__ import annotations

import asyncio
import itertools
import time
from pathlib import Path

import pytest

from engine.engine import Engine
from engine.events import SegmentFinished, TaskFailed
from engine.models import TaskState
from faultserver.content import KiB, MiB
from faultserver.server import FaultServer
from tests.support.control import closed_range
from tests.support.downloads import assert_exact, download, fast_config, opts
from tests.support.events import EventLog


async def test_idle_connections_take_over_a_slow_range(fault_server: FaultServer, download_dir: Path) -> None:
    size = 4 * MiB
    # One response (whichever first passes 256 KiB) stops sending for a while, well within the timeout:
    # the other connections finish theirs meanwhile and must take over the stalled range's tail.
    url = fault_server.add_file("slowrange.bin", size, stall_after=256 * KiB, stall_for=1.5, stall_times=1)
    async with Engine(fast_config()) as engine, EventLog(engine) as log:
        task = await download(engine, url, opts(download_dir, connections=4, timeout=20.0))
    assert task.state is TaskState.COMPLETED, task.error
    assert_exact(task.path, "slowrange.bin", size)
    stats = fault_server.stats("slowrange.bin")
    assert stats.stalls == 1
    # More segments than connections: the stalled range was split among idle connections.
    assert len(task.segments) > 4
    assert len(log.of(SegmentFinished, task.id)) == len(task.segments)
    assert stats.peak_concurrent <= 4
    # Segments tile the file exactly: no byte twice, none missing.
    spans = sorted((s.start, s.end) for s in task.segments)
    assert spans[0][0] == 0 and spans[-1][1] == size
    assert all(a[1] == b[0] for a, b in itertools.pairwise(spans))
    # The takeover requests asked for the tail of the stalled range, as closed ranges.
    assert all(closed_range(h) is not None for h in stats.range_headers[1:])
    assert stats.requests > 4


@pytest.mark.slow
async def test_idle_connections_take_over_a_throttled_range(
    fault_server: FaultServer, download_dir: Path
) -> None:
    size = 2 * MiB
    # The first response (the probe, so the first segment) crawls at 64 KiB/s: alone it would need 8 s
    # for its 512 KiB. Its peers finish theirs at once and must take over its tail, again and again.
    url = fault_server.add_file("laggard.bin", size, slow_rate=64 * KiB, slow_times=1)
    started = time.monotonic()
    async with Engine(fast_config()) as engine, EventLog(engine) as log:
        task = await download(engine, url, opts(download_dir, connections=4, min_split=16 * KiB))
    elapsed = time.monotonic() - started
    assert task.state is TaskState.COMPLETED, task.error
    assert_exact(task.path, "laggard.bin", size)
    stats = fault_server.stats("laggard.bin")
    assert stats.slowed == 1
    # Its tail was taken over (more segments than connections) while it would still need seconds.
    assert len(task.segments) > 4
    assert len(log.of(SegmentFinished, task.id)) == len(task.segments)
    assert elapsed < 4.0
    assert stats.peak_concurrent <= 4


async def test_server_refusing_extra_connections_gets_fewer(
    fault_server: FaultServer, download_dir: Path
) -> None:
    size = 1 * MiB + 5
    url = fault_server.add_file("capped.bin", size, max_connections=2, rate=512 * KiB)
    async with Engine(fast_config()) as engine, EventLog(engine) as log:
        task = await download(engine, url, opts(download_dir, connections=6))
    assert task.state is TaskState.COMPLETED, task.error
    assert_exact(task.path, "capped.bin", size)
    stats = fault_server.stats("capped.bin")
    assert stats.rejections >= 1  # the engine did try more than 2
    assert stats.peak_concurrent <= 2
    assert not log.of(TaskFailed)


async def test_server_refusing_extra_connections_with_429(
    fault_server: FaultServer, download_dir: Path
) -> None:
    size = 1 * MiB
    url = fault_server.add_file(
        "capped429.bin", size, max_connections=1, over_limit_status=429, rate=768 * KiB
    )
    async with Engine(fast_config()) as engine:
        task = await download(engine, url, opts(download_dir, connections=4))
    assert task.state is TaskState.COMPLETED, task.error
    assert_exact(task.path, "capped429.bin", size)
    assert fault_server.stats("capped429.bin").rejections >= 1


async def test_connections_per_host_are_capped_across_tasks(
    fault_server: FaultServer, download_dir: Path
) -> None:
    size = 1 * MiB
    names = ["host-a.bin", "host-b.bin", "host-c.bin"]
    urls = [fault_server.add_file(n, size, rate=1 * MiB) for n in names]
    async with Engine(fast_config(per_host=3, jobs=3)) as engine:
        ids = [await engine.add(u, opts(download_dir, connections=4)) for u in urls]
        snap = await asyncio.wait_for(engine.wait(ids), 30)
    for tid, name in zip(ids, names, strict=True):
        task = snap.task(tid)
        assert task is not None and task.state is TaskState.COMPLETED, task
        assert_exact(task.path, name, size)
    assert 2 <= fault_server.peak_concurrent <= 3
    # Every task got to run; none starved.
    assert all(fault_server.stats(n).requests >= 1 for n in names)
