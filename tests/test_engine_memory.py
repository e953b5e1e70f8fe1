"""Memory of many downloads at once: the range client's receive buffers share one engine-wide budget
(engine.transfer.ENGINE_BUFFER_BUDGET), against a real throttled server on 127.0.0.1."""

from __future__ import annotations

import tracemalloc
from pathlib import Path

from engine.engine import Engine
from engine.models import TaskState
from engine.transfer import ENGINE_BUFFER_BUDGET, PIECE_BLOCK_MAX
from faultserver.content import KiB, MiB
from faultserver.server import FaultServer
from tests.support.downloads import assert_exact, fast_config, opts
from tests.support.waiting import wait_until

DOWNLOADS = 40
"""Running at once: at a buffer of PIECE_BLOCK_MAX each they would hold 160 MiB."""


def range_client_bytes() -> int:
    """Bytes the range client's code holds now (its connections' buffers, mostly)."""
    snapshot = tracemalloc.take_snapshot().filter_traces(
        [tracemalloc.Filter(True, "*/engine/rangeclient.py")]
    )
    return sum(stat.size for stat in snapshot.statistics("filename"))


async def test_many_running_downloads_share_one_buffer_budget(
    fault_server: FaultServer, download_dir: Path
) -> None:
    size = 768 * KiB
    urls = [fault_server.add_file(f"many-{i}.bin", size, rate=192 * KiB) for i in range(DOWNLOADS)]
    tracemalloc.start()
    try:
        async with Engine(fast_config(jobs=DOWNLOADS, per_host=DOWNLOADS)) as engine:
            ids = [await engine.add(url, opts(download_dir, connections=1)) for url in urls]

            def all_past_the_probe() -> bool:
                # opts() probes 64 KiB: past it, every connection asked again with the shared size.
                tasks = [engine.snapshot().task(tid) for tid in ids]
                return all(t is not None and t.done >= 160 * KiB for t in tasks)

            await wait_until(all_past_the_probe, "every download past its probe")
            held = range_client_bytes()
            snap = await engine.wait(ids)
    finally:
        tracemalloc.stop()
    for i, tid in enumerate(ids):
        task = snap.task(tid)
        assert task is not None and task.state is TaskState.COMPLETED, task
        assert_exact(task.path, f"many-{i}.bin", size)
    # The budget, plus each connection's 64 KiB head buffer and 16 KiB scratch.
    bound = ENGINE_BUFFER_BUDGET + DOWNLOADS * 96 * KiB
    assert DOWNLOADS * PIECE_BLOCK_MAX > 2 * bound  # the test can tell the two apart
    assert held < bound, held / MiB
