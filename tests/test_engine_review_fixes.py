"""Regressions found in review: host slots released once, restarts bounded, tiny HTTP chunks,
a pause that arrives during the final rename, and planted control files."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest

from engine.engine import Engine
from engine.models import TaskState
from faultserver.content import KiB, MiB
from faultserver.server import FaultServer
from tests.support.downloads import assert_exact, download, fast_config, opts, wait_for_state
from tests.support.limits import LIMIT


@pytest.mark.slow
async def test_pausing_many_times_never_raises_the_per_host_cap(
    fault_server: FaultServer, download_dir: Path
) -> None:
    size = 2 * MiB
    url = fault_server.add_file("capped-host.bin", size, rate=256 * KiB)
    async with Engine(fast_config(per_host=2)) as engine:
        tid = await engine.add(url, opts(download_dir, connections=4, min_split=64 * KiB))
        for _ in range(4):
            await wait_for_state(engine, tid, lambda t: t.state is TaskState.DOWNLOADING)
            await asyncio.sleep(0.2)
            await engine.pause(tid)
            await engine.resume(tid)
        snap = await asyncio.wait_for(engine.wait([tid]), LIMIT)
    task = snap.task(tid)
    assert task is not None and task.state is TaskState.COMPLETED, task
    assert_exact(task.path, "capped-host.bin", size)
    # A slot released twice would let a third and fourth connection in.
    assert fault_server.stats("capped-host.bin").peak_concurrent <= 2


async def test_validators_that_change_on_every_request_fail_instead_of_looping(
    fault_server: FaultServer, download_dir: Path
) -> None:
    url = fault_server.add_file("signed.bin", 512 * KiB, unstable_etag=True)
    async with Engine(fast_config()) as engine:
        task = await asyncio.wait_for(
            download(engine, url, opts(download_dir, connections=4, min_split=64 * KiB)), LIMIT
        )
    assert task.state is TaskState.FAILED
    assert task.error is not None and "--no-if-range" in task.error
    assert fault_server.stats("signed.bin").requests < 60
    # The documented way out works.
    async with Engine(fast_config()) as engine:
        task = await asyncio.wait_for(
            download(
                engine,
                url,
                opts(download_dir, connections=4, min_split=64 * KiB, check_validators=False),
            ),
            LIMIT,
        )
    assert task.state is TaskState.COMPLETED, task.error


async def test_chunked_body_of_tiny_chunks_is_written(fault_server: FaultServer, download_dir: Path) -> None:
    size = 1 * MiB + 7
    url = fault_server.add_file("tiny-chunks.bin", size, chunked=True, chunk_size=256)
    async with Engine(fast_config()) as engine:
        task = await asyncio.wait_for(download(engine, url, opts(download_dir)), LIMIT)
    assert task.state is TaskState.COMPLETED, task.error
    assert_exact(task.path, "tiny-chunks.bin", size)


async def test_a_planted_control_file_cannot_lead_outside_the_directory(
    fault_server: FaultServer, download_dir: Path
) -> None:
    url = fault_server.add_file("planted.bin", 256 * KiB)
    outside = download_dir.parent / "escaped.bin"
    (download_dir.parent / "escaped.bin.part").write_bytes(b"\0" * 10)
    (download_dir / "planted.bin.part.json").write_text(
        json.dumps(
            {
                "version": 1,
                "url": url,
                "name": "../escaped.bin",
                "size": 256 * KiB,
                "resumable": True,
                "etag": None,
                "last_modified": None,
                "done": [],
            }
        )
    )
    async with Engine(fast_config()) as engine:
        task = await asyncio.wait_for(download(engine, url, opts(download_dir)), LIMIT)
    assert task.state is TaskState.COMPLETED, task.error
    assert Path(task.path or "").parent == download_dir
    assert not outside.exists()
