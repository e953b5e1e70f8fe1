"""Events: lifecycle in order for every subscriber, progress coalesced for slow ones, everything
round-trips through JSON, and credentials never show."""

from __future__ import annotations

import asyncio
import itertools
import json
import time
from pathlib import Path

import pytest

from engine.bus import progress_interval
from engine.codec import event_from_json, event_to_json, to_plain
from engine.engine import Engine
from engine.events import (
    Event,
    ProgressUpdated,
    SegmentFinished,
    TaskCancelled,
    TaskCompleted,
    TaskFailed,
    TaskRemoved,
)
from engine.models import SegmentState, TaskState
from faultserver.content import KiB, MiB
from faultserver.server import FaultServer
from tests.support.downloads import assert_exact, fast_config, listing, opts, wait_for_state, wait_until_done
from tests.support.events import EventLog
from tests.support.waiting import wait_until


def without_segments(names: list[str]) -> list[str]:
    """Lifecycle names minus SegmentFinished (how many there are depends on timing)."""
    return [n for n in names if n != "SegmentFinished"]


async def test_lifecycle_events_in_order_for_every_subscriber(
    fault_server: FaultServer, download_dir: Path
) -> None:
    size = 1 * MiB
    url = fault_server.add_file("life.bin", size, rate=1 * MiB, fail_status=503, retry_after="0")
    async with Engine(fast_config()) as engine, EventLog(engine) as one, EventLog(engine) as two:
        tid = await engine.add(url, opts(download_dir, connections=2))
        await wait_for_state(engine, tid, lambda t: t.done >= 100 * KiB)
        await engine.pause(tid)
        await engine.resume(tid)
        await wait_until_done(engine, tid)
        async with EventLog(engine) as late:
            await engine.remove(tid)
            await late.wait_for(TaskRemoved, tid, limit=5)
        await one.wait_for(TaskRemoved, tid)
        await two.wait_for(TaskRemoved, tid)
    expected = [
        "TaskAdded",
        "TaskStarted",
        "TaskRetrying",
        "TaskProbed",
        "TaskPaused",
        "TaskResumed",
        "TaskStarted",
        "TaskProbed",
        "TaskCompleted",
        "TaskRemoved",
    ]
    assert without_segments(one.lifecycle(tid)) == expected
    # Every subscriber sees the very same lifecycle events, in the same order.
    lifecycle_one = [e for e in one.events if not isinstance(e, ProgressUpdated)]
    lifecycle_two = [e for e in two.events if not isinstance(e, ProgressUpdated)]
    assert lifecycle_one == lifecycle_two
    # A subscriber sees only what happens after it subscribed.
    assert late.lifecycle(tid) == ["TaskRemoved"]
    # Lifecycle events carry non-decreasing wall-clock times.
    times = [e.time for e in lifecycle_one]
    assert times == sorted(times)


async def test_failed_and_cancelled_lifecycles(fault_server: FaultServer, download_dir: Path) -> None:
    url = fault_server.add_file("slow.bin", 1 * MiB, rate=256 * KiB)
    async with Engine(fast_config()) as engine, EventLog(engine) as log:
        failed = await engine.add(fault_server.status_url(404), opts(download_dir))
        cancelled = await engine.add(url, opts(download_dir))
        await wait_until_done(engine, failed)
        await wait_for_state(engine, cancelled, lambda t: t.done > 0)
        await engine.cancel(cancelled)
        await log.wait_for(TaskCancelled, cancelled)
    assert log.lifecycle(failed) == ["TaskAdded", "TaskStarted", "TaskFailed"]
    assert without_segments(log.lifecycle(cancelled)) == [
        "TaskAdded",
        "TaskStarted",
        "TaskProbed",
        "TaskCancelled",
    ]


async def test_progress_is_coalesced_for_a_slow_subscriber(
    fault_server: FaultServer, download_dir: Path
) -> None:
    size = 1 * MiB
    url = fault_server.add_file("coalesce.bin", size, rate=768 * KiB)
    tick = 0.02
    async with Engine(fast_config(tick=tick)) as engine, EventLog(engine) as fast:
        idle = engine.subscribe()  # never read while the download runs
        started = time.monotonic()
        tid = await engine.add(url, opts(download_dir, connections=1))
        task = await wait_until_done(engine, tid)
        elapsed = time.monotonic() - started
        await asyncio.sleep(3 * tick)  # at least one tick after completion
        # Drain what the idle subscriber holds: everything is ready at once, so reads do not wait.
        backlog: list[Event] = []
        while True:
            try:
                backlog.append(await asyncio.wait_for(idle.__anext__(), 0.005))
            except TimeoutError:
                break
        idle.close()
    assert task.state is TaskState.COMPLETED
    # A reader that never read did not slow the download down (1 MiB at 768 KiB/s is ~1.3 s).
    assert elapsed < 3.0
    # The fast subscriber saw many progress ticks; the idle one holds at most the latest (plus one that
    # may land during the drain), yet every lifecycle event, in order.
    assert len(fast.progress()) >= 20
    progress = [e for e in backlog if isinstance(e, ProgressUpdated)]
    assert 1 <= len(progress) <= 2
    assert without_segments([type(e).__name__ for e in backlog if not isinstance(e, ProgressUpdated)]) == [
        "TaskAdded",
        "TaskStarted",
        "TaskProbed",
        "TaskCompleted",
    ]
    # The one kept is the latest state, not a stale one.
    latest = progress[0].snapshot.task(tid)
    assert latest is not None and latest.state is TaskState.COMPLETED and latest.done == size


async def test_many_running_tasks_stretch_the_progress_interval(
    fault_server: FaultServer, download_dir: Path
) -> None:
    """With 30 downloads running, progress comes every 0.6 s rather than every 0.05 s tick: each event
    carries 30 snapshots, and no screen redraws 30 moving rows that often."""
    count, tick = 30, 0.05
    urls = [fault_server.add_file(f"many{i}.bin", 1 * MiB, rate=64 * KiB) for i in range(count)]
    config = fast_config(tick=tick, jobs=count, per_host=count)
    async with Engine(config) as engine:
        for url in urls:
            await engine.add(url, opts(download_dir, connections=1))
        await wait_until(
            lambda: engine.snapshot().counts.get("downloading", 0) == count, "all of them downloading"
        )
        async with EventLog(engine) as log:
            await asyncio.sleep(3.0)
        running = [e for e in log.progress() if e.snapshot.counts.get("downloading", 0) == count]
    assert progress_interval(count, tick) == pytest.approx(0.6)
    gaps = [b.time - a.time for a, b in itertools.pairwise(running)]
    # About five events in the 3 s (every tick would be about 60); a loaded machine only spaces them more.
    assert len(gaps) >= 2
    assert min(gaps) >= 0.5, gaps


async def test_progress_snapshots_carry_speed_eta_and_segments(
    fault_server: FaultServer, download_dir: Path
) -> None:
    size = 2 * MiB
    url = fault_server.add_file("progress.bin", size, rate=512 * KiB)
    async with Engine(fast_config()) as engine, EventLog(engine) as log:
        tid = await engine.add(url, opts(download_dir, connections=4))
        await wait_for_state(engine, tid, lambda t: t.done >= 1 * MiB)
        mid = engine.snapshot()
        task = await wait_until_done(engine, tid)
    running = mid.task(tid)
    assert running is not None
    assert running.state is TaskState.DOWNLOADING
    assert running.size == size and 0 < running.done < size
    assert running.speed > 0 and running.avg_speed > 0
    assert running.eta is not None and running.eta > 0
    assert running.connections >= 2
    active = [s for s in running.segments if s.state is SegmentState.ACTIVE]
    assert active and all(s.connection is not None for s in active)
    spans = sorted((s.start, s.end) for s in running.segments)
    assert spans[0][0] == 0 and spans[-1][1] == size
    assert mid.connections == running.connections
    assert mid.counts["downloading"] == 1
    # The progress events over the run were published at the tick and grew monotonically.
    done = [t.done for e in log.progress() if (t := e.snapshot.task(tid)) is not None]
    assert len(done) >= 5
    assert done == sorted(done)
    assert task.state is TaskState.COMPLETED and task.done == size
    completed = log.of(TaskCompleted, tid)
    assert completed[0].size == size and completed[0].path == task.path and completed[0].duration > 0


async def test_every_event_round_trips_through_json(fault_server: FaultServer, download_dir: Path) -> None:
    """A run with every kind of event: each one encodes to strict JSON and decodes equal."""
    urls = {
        "ok": fault_server.add_file("rt-ok.bin", 1 * MiB, rate=1 * MiB, fail_status=503, retry_after="0"),
        "sum": fault_server.add_file("rt-sum.bin", 64 * KiB),
        "gone": fault_server.status_url(410),
        "queued": fault_server.add_file("rt-queued.bin", 64 * KiB),
    }
    async with Engine(fast_config(jobs=2)) as engine, EventLog(engine) as log:
        ok = await engine.add(urls["ok"], opts(download_dir, connections=3))
        await engine.add(urls["sum"], opts(download_dir, checksum="md5=" + "0" * 32))
        await engine.add(urls["gone"], opts(download_dir))
        queued = await engine.add(urls["queued"], opts(download_dir, output="r\u00e9sum\u00e9 \u2603.bin"))
        await engine.move(queued, -1)
        await engine.set_limit(800 * KiB, task_id=ok)
        await engine.set_limit(5 * MiB)
        await wait_for_state(engine, ok, lambda t: t.done >= 200 * KiB)
        await engine.pause(ok)
        await engine.resume(ok)
        await asyncio.wait_for(engine.wait(), 30)
        await engine.remove(queued)
        await log.wait_for(TaskRemoved, queued)
    kinds = {type(e).__name__ for e in log.events}
    assert kinds >= {
        "TaskAdded",
        "TaskStarted",
        "TaskProbed",
        "TaskRetrying",
        "TaskPaused",
        "TaskResumed",
        "SegmentFinished",
        "TaskVerifying",
        "TaskCompleted",
        "TaskFailed",
        "TaskMoved",
        "LimitChanged",
        "TaskRemoved",
        "ProgressUpdated",
    }, kinds
    for event in log.events:
        text = json.dumps(event_to_json(event), allow_nan=False)
        back = event_from_json(json.loads(text))
        assert back == event, type(event).__name__
    # Snapshots on their own too, at the end and mid-run.
    for event in log.progress():
        json.dumps(to_plain(event.snapshot), allow_nan=False)
    assert log.of(SegmentFinished)


async def test_credentials_never_appear(
    fault_server: FaultServer, download_dir: Path, tmp_path: Path
) -> None:
    secret = "s3cr3t-pa55"
    size = 1 * MiB + 1
    spec = {"auth": ("alice", secret), "rate": 2 * MiB}
    plain = fault_server.add_file("private.bin", size, **spec)
    redirected = fault_server.add_file("private2.bin", size, redirects=2, **spec)

    def with_creds(url: str) -> str:
        return url.replace("http://", f"http://alice:{secret}@")

    session = tmp_path / "session.json"
    async with (
        Engine(fast_config(session_path=str(session))) as engine,
        EventLog(engine) as log,
    ):
        ids = [
            await engine.add(with_creds(plain), opts(download_dir, connections=4)),
            await engine.add(with_creds(redirected), opts(download_dir, connections=4)),
            await engine.add(with_creds(fault_server.status_url(404)), opts(download_dir)),
            await engine.add(f"http://alice:{secret}@nonexistent.invalid/x", opts(download_dir)),
        ]
        mid = engine.snapshot()
        await wait_for_state(engine, ids[0], lambda t: t.done > 0)
        # The first control file comes with the first checkpoint, an interval into the download.
        control_texts = await wait_until(
            lambda: [p.read_text() for p in download_dir.glob("*.part.json")],
            "a control file",
        )
        final = await asyncio.wait_for(engine.wait(ids), 30)
        for tid, ending in zip(ids, [TaskCompleted, TaskCompleted, TaskFailed, TaskFailed], strict=True):
            await log.wait_for(ending, tid)
    # The credentials worked for every request, including segments after the probe and redirects.
    for tid, name in zip(ids[:2], ["private.bin", "private2.bin"], strict=True):
        task = final.task(tid)
        assert task is not None and task.state is TaskState.COMPLETED, task.error if task else None
        assert_exact(task.path, name, size)
        stats = fault_server.stats(name)
        assert stats.requests >= 4
        assert all(s == 206 for s in stats.statuses), stats.statuses
    assert final.tasks[2].error == "HTTP 404 Not Found"
    assert final.tasks[3].error == "unknown host: nonexistent.invalid"
    # ...and never showed: not in snapshots, events, errors or control files.
    assert final.tasks[0].url == plain
    assert final.tasks[1].final_url == fault_server.final_url("private2.bin")
    texts = [json.dumps(to_plain(mid)), json.dumps(to_plain(final)), *control_texts]
    texts += [json.dumps(event_to_json(e)) for e in log.events]
    assert control_texts
    for text in texts:
        assert secret not in text
        assert "alice:" not in text
    assert sorted(listing(download_dir)) == ["private.bin", "private2.bin"]
