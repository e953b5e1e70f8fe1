"""The event bus: ordered lifecycle events, coalesced progress, a publisher that never waits."""

from __future__ import annotations

import asyncio
import time

import pytest

from engine import bus as bus_module
from engine.bus import MAX_BACKLOG, PROGRESS_CAP, EventBus, Subscription, progress_interval
from engine.events import Event, ProgressUpdated, SegmentFinished, TaskAdded, TaskPaused, TaskRemoved
from engine.models import EngineSnapshot, TaskOptions, TaskSnapshot, TaskState
from tests.support.limits import LIMIT


def progress(n: int) -> ProgressUpdated:
    """The n-th progress tick, recognisable by its snapshot's ``downloaded``."""
    return ProgressUpdated(float(n), EngineSnapshot(downloaded=n))


def lifecycle(n: int) -> SegmentFinished:
    """The n-th lifecycle event, recognisable by its ``start``."""
    return SegmentFinished(float(n), 1, start=n, end=n + 1)


async def drain(sub: Subscription) -> list[Event]:
    """Everything the subscription yields until it ends."""
    async with asyncio.timeout(LIMIT):
        return [event async for event in sub]


async def take(sub: Subscription, n: int) -> list[Event]:
    """The next ``n`` events."""
    async with asyncio.timeout(LIMIT):
        return [await anext(sub) for _ in range(n)]


async def nothing_pending(sub: Subscription) -> bool:
    """True if the subscription has no event ready right now."""
    try:
        await asyncio.wait_for(anext(sub), 0.05)
    except TimeoutError:
        return True
    return False


async def test_lifecycle_events_reach_every_subscriber_in_order() -> None:
    bus = EventBus()
    subs = [bus.subscribe() for _ in range(3)]
    events = [lifecycle(i) for i in range(200)]
    for event in events:
        bus.publish(event)
    bus.close()
    for sub in subs:
        assert await drain(sub) == events


async def test_subscribers_only_see_events_after_subscribing() -> None:
    bus = EventBus()
    early = bus.subscribe()
    bus.publish(lifecycle(1))
    late = bus.subscribe()
    bus.publish(lifecycle(2))
    bus.close()
    assert await drain(early) == [lifecycle(1), lifecycle(2)]
    assert await drain(late) == [lifecycle(2)]


async def test_reader_waiting_is_woken_by_publish() -> None:
    bus = EventBus()
    sub = bus.subscribe()
    reader = asyncio.create_task(take(sub, 3))
    await asyncio.sleep(0.01)
    assert not reader.done()
    bus.publish(lifecycle(1))
    await asyncio.sleep(0)
    bus.publish(progress(5))
    await asyncio.sleep(0)
    bus.publish(lifecycle(2))
    assert await reader == [lifecycle(1), progress(5), lifecycle(2)]


async def test_progress_is_coalesced_to_the_latest() -> None:
    bus = EventBus()
    sub = bus.subscribe()
    for i in range(1000):
        bus.publish(progress(i))
    assert await take(sub, 1) == [progress(999)]
    assert await nothing_pending(sub)
    sub.close()


async def test_progress_does_not_overtake_lifecycle_events() -> None:
    # A snapshot taken before an event must not be handed out after it: a dashboard would
    # otherwise show a task it was just told was removed, until the next tick.
    bus = EventBus()
    sub = bus.subscribe()
    bus.publish(lifecycle(1))
    bus.publish(progress(1))
    bus.publish(lifecycle(2))
    bus.publish(lifecycle(3))
    assert await take(sub, 4) == [lifecycle(1), progress(1), lifecycle(2), lifecycle(3)]
    assert await nothing_pending(sub)


async def test_newer_progress_supersedes_and_moves_after_later_events() -> None:
    bus = EventBus()
    sub = bus.subscribe()
    bus.publish(progress(1))
    bus.publish(lifecycle(1))
    bus.publish(progress(2))
    bus.publish(lifecycle(2))
    assert await take(sub, 3) == [lifecycle(1), progress(2), lifecycle(2)]
    assert await nothing_pending(sub)


async def test_task_removed_is_not_followed_by_a_stale_snapshot() -> None:
    bus = EventBus()
    sub = bus.subscribe()
    task = TaskSnapshot(7, "http://127.0.0.1/x", TaskState.DOWNLOADING, TaskOptions())
    bus.publish(ProgressUpdated(1.0, EngineSnapshot(tasks=(task,))))
    bus.publish(TaskPaused(1.1, 7))
    bus.publish(ProgressUpdated(1.2, EngineSnapshot(tasks=())))
    bus.publish(TaskRemoved(1.3, 7, deleted_files=False))
    got = await take(sub, 3)
    assert [type(e) for e in got] == [TaskPaused, ProgressUpdated, TaskRemoved]
    last = got[1]
    assert isinstance(last, ProgressUpdated) and last.snapshot.task(7) is None


async def test_publisher_never_blocks_on_a_reader_that_never_reads() -> None:
    bus = EventBus()
    stuck = bus.subscribe()
    live = bus.subscribe()
    started = time.monotonic()
    for i in range(2000):
        bus.publish(lifecycle(i))
        bus.publish(progress(i))
    assert time.monotonic() - started < 1.0
    assert not stuck.overflowed
    # The live reader gets everything, whatever the stuck one does.
    got = await take(live, 2001)
    assert got[:2] == [lifecycle(0), lifecycle(1)]
    assert got[-2:] == [lifecycle(1999), progress(1999)]
    stuck.close()
    live.close()


def test_publish_works_outside_a_running_loop() -> None:
    # publish() is plain synchronous code, callable from a thread or a sync callback.
    bus = EventBus()
    sub = bus.subscribe()
    bus.publish(lifecycle(1))
    bus.publish(progress(1))
    assert bus.subscriber_count == 1
    sub.close()


async def test_a_reader_falling_too_far_behind_is_cut_off() -> None:
    bus = EventBus()
    slow = bus.subscribe()
    ok = bus.subscribe()
    seen: list[Event] = []

    async def keep_up() -> None:
        async for event in ok:
            seen.append(event)

    reader = asyncio.create_task(keep_up())
    for i in range(MAX_BACKLOG):
        bus.publish(lifecycle(i))
        if i % 500 == 0:
            await asyncio.sleep(0)  # the healthy reader gets to run now and then
    assert not slow.overflowed
    assert bus.subscriber_count == 2
    bus.publish(lifecycle(MAX_BACKLOG))
    assert slow.overflowed
    assert bus.subscriber_count == 1
    assert await drain(slow) == []  # the iteration ends at once
    # Later events no longer reach it; the healthy reader is unaffected.
    bus.publish(lifecycle(MAX_BACKLOG + 1))
    bus.close()
    await asyncio.wait_for(reader, 2.0)
    assert not ok.overflowed
    assert seen == [lifecycle(i) for i in range(MAX_BACKLOG + 2)]


async def test_progress_alone_never_overflows() -> None:
    bus = EventBus()
    sub = bus.subscribe()
    for i in range(3 * MAX_BACKLOG):
        bus.publish(progress(i))
    assert not sub.overflowed
    assert await take(sub, 1) == [progress(3 * MAX_BACKLOG - 1)]
    sub.close()


async def test_overflow_limit_is_the_module_constant(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(bus_module, "MAX_BACKLOG", 5)
    bus = EventBus()
    sub = bus.subscribe()
    for i in range(5):
        bus.publish(lifecycle(i))
    assert not sub.overflowed
    bus.publish(lifecycle(5))
    assert sub.overflowed


async def test_bus_close_ends_iteration_after_what_was_published() -> None:
    bus = EventBus()
    sub = bus.subscribe()
    bus.publish(lifecycle(1))
    bus.publish(progress(9))
    bus.close()
    bus.publish(lifecycle(2))  # after close: goes nowhere
    assert bus.subscriber_count == 0
    assert await drain(sub) == [lifecycle(1), progress(9)]
    assert not sub.overflowed


async def test_bus_close_wakes_a_waiting_reader() -> None:
    bus = EventBus()
    sub = bus.subscribe()
    reader = asyncio.create_task(drain(sub))
    await asyncio.sleep(0.01)
    assert not reader.done()
    bus.close()
    assert await reader == []


async def test_subscribing_to_a_closed_bus_ends_at_once() -> None:
    bus = EventBus()
    bus.close()
    sub = bus.subscribe()
    assert bus.subscriber_count == 0
    assert await drain(sub) == []


async def test_subscription_close_drops_pending_and_ends() -> None:
    bus = EventBus()
    sub = bus.subscribe()
    bus.publish(lifecycle(1))
    bus.publish(progress(1))
    sub.close()
    assert bus.subscriber_count == 0
    assert await drain(sub) == []
    bus.publish(lifecycle(2))
    assert await drain(sub) == []


async def test_subscription_close_wakes_a_waiting_reader() -> None:
    bus = EventBus()
    sub = bus.subscribe()
    reader = asyncio.create_task(drain(sub))
    await asyncio.sleep(0.01)
    sub.close()
    assert await reader == []


async def test_context_manager_closes() -> None:
    bus = EventBus()
    async with bus.subscribe() as sub:
        assert bus.subscriber_count == 1
        bus.publish(TaskAdded(1.0, 1, task=TaskSnapshot(1, "u", TaskState.QUEUED, TaskOptions())))
        event = await take(sub, 1)
        assert isinstance(event[0], TaskAdded)
    assert bus.subscriber_count == 0


async def test_a_lifecycle_only_subscriber_gets_no_progress() -> None:
    bus = EventBus()
    quiet = bus.subscribe(progress=False)
    assert not bus.wants_progress
    loud = bus.subscribe()
    assert bus.wants_progress
    bus.publish(progress(1))
    bus.publish(lifecycle(2))
    bus.publish(progress(3))
    bus.close()
    assert await drain(quiet) == [lifecycle(2)]
    assert await drain(loud) == [lifecycle(2), progress(3)]
    assert not bus.wants_progress


def test_progress_interval_stretches_with_many_tasks_up_to_a_cap() -> None:
    assert progress_interval(0, 0.25) == 0.25
    assert progress_interval(12, 0.25) == 0.25
    assert progress_interval(25, 0.25) == pytest.approx(0.5)
    assert progress_interval(50, 0.25) == PROGRESS_CAP == 1.0
    assert progress_interval(5000, 0.25) == PROGRESS_CAP
    # A tick longer than the cap is kept: progress is never more frequent than ticks.
    assert progress_interval(50, 2.0) == 2.0
