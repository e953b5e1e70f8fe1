"""Keeping progress: pause/resume, cancel, remove, engine restarts via the control file, a remote file
that changed in between, and check_validators=False for signed URLs."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest

from engine.client import EngineError
from engine.engine import Engine
from engine.events import TaskCancelled, TaskProbed, TaskRemoved, TaskRestarted
from engine.models import TaskSnapshot, TaskState
from engine.ranges import RangeSet
from faultserver.content import KiB, MiB, content_view, etag_for
from faultserver.server import FaultServer
from tests.support.control import closed_range
from tests.support.downloads import assert_exact, fast_config, listing, opts, wait_for_state, wait_until_done
from tests.support.events import EventLog
from tests.support.waiting import wait_until

SIZE = 2 * MiB + 4321


def read_control(task: TaskSnapshot) -> dict[str, object]:
    """The JSON of a task's control file."""
    assert task.part_path is not None
    return dict(json.loads(Path(task.part_path + ".json").read_text()))


def done_ranges(control: dict[str, object]) -> RangeSet:
    """The ranges a control file claims are on disk."""
    done = control["done"]
    assert isinstance(done, list)
    return RangeSet((int(a), int(b)) for a, b in done)


def assert_claims_are_on_disk(part_path: str, name: str, done: RangeSet, version: int = 0) -> None:
    """Every byte the control file claims is in the part file, and right."""
    with open(part_path, "rb") as f:
        for start, end in done.as_list():
            f.seek(start)
            data = f.read(end - start)
            pos = 0
            while pos < len(data):
                n = min(512 * KiB, len(data) - pos)
                assert data[pos : pos + n] == content_view(name, start + pos, n, version), (start, pos)
                pos += n


def overlaps(done: RangeSet, first: int, last: int) -> bool:
    """Whether ``[first, last]`` (inclusive) shares a byte with ``done``."""
    return any(a <= last and first < b for a, b in done.as_list())


async def start_throttled(
    engine: Engine, server: FaultServer, name: str, directory: Path, rate: int, **options: object
) -> int:
    """Add a download of ``name`` paced at ``rate`` bytes/s per response."""
    url = server.add_file(name, SIZE, rate=rate)
    return await engine.add(url, opts(directory, **options))


async def test_pause_and_resume_keep_progress(fault_server: FaultServer, download_dir: Path) -> None:
    async with Engine(fast_config()) as engine, EventLog(engine) as log:
        tid = await start_throttled(engine, fault_server, "pause.bin", download_dir, 512 * KiB, connections=4)
        await wait_for_state(engine, tid, lambda t: t.done >= 600 * KiB)
        await engine.pause(tid)
        paused = engine.snapshot().task(tid)
        assert paused is not None
        assert paused.state is TaskState.PAUSED
        assert paused.connections == 0
        assert 600 * KiB <= paused.done < SIZE
        stats = fault_server.stats("pause.bin")
        await wait_until(lambda: stats.active == 0, "the server to end every response", limit=5)
        # What the snapshot says is done is what the control file says is on disk, and it is right.
        control = read_control(paused)
        done = done_ranges(control)
        assert done.covered == paused.done
        assert paused.part_path is not None
        assert_claims_are_on_disk(paused.part_path, "pause.bin", done)
        # Paused means no traffic.
        before = stats.requests
        await asyncio.sleep(0.3)
        assert stats.requests == before
        sent_before = stats.bytes_sent
        await engine.resume(tid)
        task = await wait_until_done(engine, tid)
    assert task.state is TaskState.COMPLETED, task.error
    assert_exact(task.path, "pause.bin", SIZE)
    # After the resume no request asked for a byte that was already done: the new probe asks for the
    # first piece of the first gap and every later request is a closed range in the gaps too.
    after = stats.records[before:]
    first_gap = done.gaps(SIZE)[0]
    assert closed_range(after[0].range) == (first_gap[0], min(first_gap[1], first_gap[0] + 64 * KiB) - 1)
    for rec in after:
        rng = closed_range(rec.range)
        assert rng is not None, rec.range
        assert not overlaps(done, *rng), (rng, done.as_list())
    # Nothing but the missing bytes was sent again.
    assert stats.bytes_sent - sent_before == SIZE - done.covered
    names = log.lifecycle(tid)
    assert names.index("TaskPaused") < names.index("TaskResumed") < names.index("TaskCompleted")


async def test_pause_before_start_and_pause_all(fault_server: FaultServer, download_dir: Path) -> None:
    url = fault_server.add_file("later.bin", 300 * KiB)
    async with Engine(fast_config(jobs=1)) as engine:
        blocker = await start_throttled(engine, fault_server, "blocker.bin", download_dir, 1 * MiB)
        tid = await engine.add(url, opts(download_dir))
        await engine.pause(tid)  # still queued: it must not start when the slot frees
        await wait_until_done(engine, blocker)
        await asyncio.sleep(0.2)
        task = engine.snapshot().task(tid)
        assert task is not None and task.state is TaskState.PAUSED
        assert fault_server.stats("later.bin").requests == 0
        await engine.resume_all()
        task = await wait_until_done(engine, tid)
    assert task.state is TaskState.COMPLETED
    assert_exact(task.path, "later.bin", 300 * KiB)


async def test_cancel_stops_and_keeps_the_part_file(fault_server: FaultServer, download_dir: Path) -> None:
    async with Engine(fast_config()) as engine, EventLog(engine) as log:
        tid = await start_throttled(engine, fault_server, "cancel.bin", download_dir, 512 * KiB)
        await wait_for_state(engine, tid, lambda t: t.done >= 300 * KiB)
        await engine.cancel(tid)
        task = await wait_until_done(engine, tid, limit=5)
        assert task.state is TaskState.CANCELLED
        assert task.connections == 0
        stats = fault_server.stats("cancel.bin")
        await wait_until(lambda: stats.active == 0, "the server to end every response", limit=5)
        requests = stats.requests
        await asyncio.sleep(0.3)
        assert stats.requests == requests
        assert len(log.of(TaskCancelled, tid)) == 1
        assert listing(download_dir) == ["cancel.bin.part", "cancel.bin.part.json"]
        # A cancelled task can be taken up again and keeps what it had.
        kept = task.done
        await engine.resume(tid)
        task = await wait_until_done(engine, tid)
        assert task.state is TaskState.COMPLETED
    assert_exact(task.path, "cancel.bin", SIZE)
    assert kept >= 300 * KiB


@pytest.mark.parametrize("delete_files", [True, False])
async def test_remove(fault_server: FaultServer, download_dir: Path, delete_files: bool) -> None:
    async with Engine(fast_config()) as engine, EventLog(engine) as log:
        tid = await start_throttled(engine, fault_server, "remove.bin", download_dir, 512 * KiB)
        running = await wait_for_state(engine, tid, lambda t: t.done >= 200 * KiB)
        await engine.remove(tid, delete_files=delete_files)
        assert engine.snapshot().task(tid) is None
        await log.wait_for(TaskRemoved, tid)
        removed = log.of(TaskRemoved, tid)
        assert len(removed) == 1 and removed[0].deleted_files is delete_files
        with pytest.raises(EngineError):
            await engine.pause(tid)
        with pytest.raises(EngineError):
            await engine.resume(tid)
        stats = fault_server.stats("remove.bin")
        await wait_until(lambda: stats.active == 0, "the server to end every response", limit=5)
    assert running.part_path is not None
    if delete_files:
        assert listing(download_dir) == []
    else:
        assert sorted(listing(download_dir)) == ["remove.bin.part", "remove.bin.part.json"]


async def test_resume_after_engine_restart_via_control_file(
    fault_server: FaultServer, download_dir: Path
) -> None:
    options = opts(download_dir, connections=4)
    url = fault_server.add_file("restart.bin", SIZE, rate=512 * KiB)
    async with Engine(fast_config()) as engine:
        tid = await engine.add(url, options)
        await wait_for_state(engine, tid, lambda t: t.done >= 700 * KiB)
    # Closing the engine paused the download and left a part file and its control file.
    assert sorted(listing(download_dir)) == ["restart.bin.part", "restart.bin.part.json"]
    control = json.loads((download_dir / "restart.bin.part.json").read_text())
    assert control["url"] == url
    assert control["size"] == SIZE
    assert control["etag"] == etag_for("restart.bin", SIZE)
    done = done_ranges(control)
    assert 700 * KiB <= done.covered < SIZE
    assert_claims_are_on_disk(str(download_dir / "restart.bin.part"), "restart.bin", done)

    stats = fault_server.stats("restart.bin")
    before, sent_before = stats.requests, stats.bytes_sent
    fault_server.update("restart.bin", rate=None)
    async with Engine(fast_config()) as engine, EventLog(engine) as log:
        tid = await engine.add(url, options)
        task = await wait_until_done(engine, tid)
    assert task.state is TaskState.COMPLETED, task.error
    assert task.name == "restart.bin"  # the same file, not restart.1.bin
    assert_exact(task.path, "restart.bin", SIZE)
    assert listing(download_dir) == ["restart.bin"]
    assert not log.of(TaskRestarted)
    probed = log.of(TaskProbed, tid)
    assert probed and probed[0].path == str(download_dir / "restart.bin")
    after = stats.records[before:]
    # The resumed probe asks for the first piece of the first gap and carries If-Range with the ETag.
    first_gap, gap_end = done.gaps(SIZE)[0]
    assert after[0].range == f"bytes={first_gap}-{min(gap_end, first_gap + 64 * KiB) - 1}"
    assert after[0].if_range == etag_for("restart.bin", SIZE)
    assert all(r.if_range == etag_for("restart.bin", SIZE) for r in after)
    for rec in after[1:]:
        rng = closed_range(rec.range)
        assert rng is not None and not overlaps(done, *rng)
    # Re-downloaded nothing but the missing bytes: no request reached into a done range.
    assert stats.bytes_sent - sent_before == SIZE - done.covered


async def test_resume_with_output_option(fault_server: FaultServer, download_dir: Path) -> None:
    options = opts(download_dir, connections=2, output="named.out")
    url = fault_server.add_file("o.bin", SIZE, rate=768 * KiB)
    async with Engine(fast_config()) as engine:
        tid = await engine.add(url, options)
        await wait_for_state(engine, tid, lambda t: t.done >= 400 * KiB)
    assert sorted(listing(download_dir)) == ["named.out.part", "named.out.part.json"]
    before = fault_server.stats("o.bin").requests
    fault_server.update("o.bin", rate=None)
    async with Engine(fast_config()) as engine:
        tid = await engine.add(url, options)
        task = await wait_until_done(engine, tid)
    assert task.state is TaskState.COMPLETED, task.error
    assert task.name == "named.out"
    assert_exact(task.path, "o.bin", SIZE)
    resumed = closed_range(fault_server.stats("o.bin").records[before].range)
    assert resumed is not None and resumed[0] > 0


async def test_remote_changed_between_runs_restarts(fault_server: FaultServer, download_dir: Path) -> None:
    options = opts(download_dir, connections=4)
    url = fault_server.add_file("changing.bin", SIZE, rate=512 * KiB)
    async with Engine(fast_config()) as engine:
        tid = await engine.add(url, options)
        await wait_for_state(engine, tid, lambda t: t.done >= 500 * KiB)
    assert (download_dir / "changing.bin.part.json").exists()
    fault_server.update("changing.bin", rate=None)
    version = fault_server.bump_version("changing.bin")
    before = fault_server.stats("changing.bin").requests
    async with Engine(fast_config()) as engine, EventLog(engine) as log:
        tid = await engine.add(url, options)
        task = await wait_until_done(engine, tid)
    assert task.state is TaskState.COMPLETED, task.error
    assert task.name == "changing.bin"
    # New bytes only: a mix of old and new content would fail this.
    assert_exact(task.path, "changing.bin", SIZE, version=version)
    restarted = log.of(TaskRestarted, tid)
    assert len(restarted) == 1 and "changed" in restarted[0].reason
    assert task.etag == etag_for("changing.bin", SIZE, version)
    records = fault_server.stats("changing.bin").records[before:]
    assert records[0].if_range == etag_for("changing.bin", SIZE, 0)
    # The server still honours ranges: starting over, the download is segmented again.
    assert task.resumable is True
    assert sum(1 for r in records if closed_range(r.range) is not None) >= 2


async def test_remote_size_changed_between_runs_restarts(
    fault_server: FaultServer, download_dir: Path
) -> None:
    options = opts(download_dir, connections=2, check_validators=False)
    url = fault_server.add_file("grows.bin", SIZE, rate=768 * KiB, etag=False, last_modified=False)
    async with Engine(fast_config()) as engine:
        tid = await engine.add(url, options)
        await wait_for_state(engine, tid, lambda t: t.done >= 300 * KiB)
    new_size = SIZE + 100 * KiB
    fault_server.update("grows.bin", size=new_size, rate=None)
    async with Engine(fast_config()) as engine, EventLog(engine) as log:
        tid = await engine.add(url, options)
        task = await wait_until_done(engine, tid)
    assert task.state is TaskState.COMPLETED, task.error
    assert_exact(task.path, "grows.bin", new_size)
    assert log.of(TaskRestarted, tid)


async def test_check_validators_off_skips_if_range(fault_server: FaultServer, download_dir: Path) -> None:
    # Like a signed-URL store: the ETag differs on every response, so If-Range could never match.
    options = opts(download_dir, connections=4, check_validators=False)
    url = fault_server.add_file("signed.bin", SIZE, rate=512 * KiB, unstable_etag=True)
    async with Engine(fast_config()) as engine:
        tid = await engine.add(url, options)
        await wait_for_state(engine, tid, lambda t: t.done >= 500 * KiB)
    control = json.loads((download_dir / "signed.bin.part.json").read_text())
    done = done_ranges(control)
    fault_server.update("signed.bin", rate=None)
    stats = fault_server.stats("signed.bin")
    before = stats.requests
    async with Engine(fast_config()) as engine, EventLog(engine) as log:
        tid = await engine.add(url, options)
        task = await wait_until_done(engine, tid)
    assert task.state is TaskState.COMPLETED, task.error
    assert_exact(task.path, "signed.bin", SIZE)
    assert all(r.if_range is None for r in stats.records)
    assert not log.of(TaskRestarted)
    # It really resumed: no request of the second run asked for a byte already done.
    for rec in stats.records[before + 1 :]:
        rng = closed_range(rec.range)
        assert rng is not None and not overlaps(done, *rng)


async def test_queue_restored_from_session_file(
    fault_server: FaultServer, download_dir: Path, tmp_path: Path
) -> None:
    session = str(tmp_path / "session.json")
    url = fault_server.add_file("session.bin", SIZE, rate=512 * KiB)
    queued_url = fault_server.add_file("session2.bin", 100 * KiB)
    options = opts(download_dir, connections=3)
    async with Engine(fast_config(session_path=session, jobs=1)) as engine:
        tid = await engine.add(url, options)
        other = await engine.add(queued_url, options)
        await engine.pause(other)
        await wait_for_state(engine, tid, lambda t: t.done >= 300 * KiB)
    fault_server.update("session.bin", rate=None)
    before = fault_server.stats("session.bin").requests
    async with Engine(fast_config(session_path=session, jobs=1)) as engine:
        snap = engine.snapshot()
        assert [t.url for t in snap.tasks] == [url, queued_url]
        assert [t.options for t in snap.tasks] == [options, options]
        # Running when the engine closed: it goes on by itself. Paused by the user: it stays paused.
        assert snap.tasks[0].state in (TaskState.QUEUED, TaskState.PROBING, TaskState.DOWNLOADING)
        assert snap.tasks[1].state is TaskState.PAUSED
        first = await wait_until_done(engine, snap.tasks[0].id)
        assert first.state is TaskState.COMPLETED, first.error
        assert_exact(first.path, "session.bin", SIZE)
        await asyncio.sleep(0.1)
        paused = engine.snapshot().tasks[1]
        assert paused.state is TaskState.PAUSED
        assert fault_server.stats("session2.bin").requests == 0
        await engine.resume(paused.id)
        second = await wait_until_done(engine, paused.id)
    assert second.state is TaskState.COMPLETED
    assert_exact(second.path, "session2.bin", 100 * KiB)
    # The restored task continued from its control file instead of starting over.
    resumed = closed_range(fault_server.stats("session.bin").records[before].range)
    assert resumed is not None and resumed[0] > 0
