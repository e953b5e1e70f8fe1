"""The bandwidth schedule in the engine: the global bucket follows the rules on a real download.

The engine reads local time from an injected wall clock that runs at real speed from a chosen
moment (a second before a boundary), so a change happens during the test without waiting for 08:00.
Assertions are on the bucket's rate, the snapshot and the events, not on measured speed.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import pytest

import engine.engine as engine_module
from engine.engine import Engine
from engine.events import LimitChanged, ScheduledLimitChanged
from engine.models import TaskState
from engine.schedule import parse_schedule
from faultserver.content import KiB, MiB
from faultserver.server import FaultServer
from tests.support.clock import Clock, local
from tests.support.downloads import fast_config, opts, wait_for_state
from tests.support.events import EventLog
from tests.support.waiting import wait_until

SCHEDULE = "06:00-08:00=100K,08:00-10:00=300K"


def rate(engine: Engine) -> float | None:
    return engine.global_bucket.rate


async def rate_becomes(engine: Engine, expected: float | None) -> None:
    await wait_until(lambda: rate(engine) == expected, lambda: f"global rate {rate(engine)} != {expected}")


def changes(log: EventLog) -> list[tuple[str | None, int | None]]:
    return [(e.rule, e.limit) for e in log.of(ScheduledLimitChanged)]


async def test_limit_changes_at_the_boundary_during_a_download(
    fault_server: FaultServer, download_dir: Path
) -> None:
    url = fault_server.add_file("scheduled.bin", 8 * MiB)
    clock = Clock(local(7, 59, 58.5))
    config = fast_config(schedule=parse_schedule(SCHEDULE))
    async with Engine(config, clock=clock) as engine, EventLog(engine) as log:
        # Applied at start, before any download: the first rule's limit.
        assert rate(engine) == 100 * KiB
        status = engine.snapshot().schedule
        assert status is not None and (status.rule, status.limit) == ("06:00-08:00", 100 * KiB)
        assert status.next_change == local(8, 0).timestamp() and not status.overridden
        tid = await engine.add(url, opts(download_dir, connections=2))
        await wait_for_state(engine, tid, lambda t: t.done > 0)
        await rate_becomes(engine, 300 * KiB)
        snap = engine.snapshot()
        task = snap.task(tid)
        assert task is not None and task.state is TaskState.DOWNLOADING  # changed under a live download
        assert snap.speed_limit == 300 * KiB
        assert snap.schedule is not None and snap.schedule.rule == "08:00-10:00"
        assert snap.schedule.next_change == local(10, 0).timestamp()
        # Still moving after the change, through the re-rated bucket.
        done = task.done
        await wait_for_state(engine, tid, lambda t: t.done > done)
        await engine.cancel(tid)
    assert changes(log) == [("08:00-10:00", 300 * KiB)]
    event = log.of(ScheduledLimitChanged)[0]
    assert event.next_change == local(10, 0).timestamp()


async def test_a_manual_limit_holds_until_the_next_change(download_dir: Path) -> None:
    clock = Clock(local(7, 59, 58.0))
    async with Engine(fast_config(schedule=parse_schedule(SCHEDULE)), clock=clock) as engine:
        async with EventLog(engine) as log:
            await engine.set_limit(50 * KiB)
            status = engine.snapshot().schedule
            assert rate(engine) == 50 * KiB
            assert status is not None and status.overridden and status.rule == "06:00-08:00"
            await rate_becomes(engine, 300 * KiB)
            status = engine.snapshot().schedule
            assert status is not None and not status.overridden and status.rule == "08:00-10:00"
            # And a manual limit in the new rule holds too, until the one after it.
            await engine.set_limit(None)
            assert rate(engine) is None
            schedule = engine.snapshot().schedule
            assert schedule is not None and schedule.overridden
    assert [(e.task_id, e.limit) for e in log.of(LimitChanged)] == [(None, 50 * KiB), (None, None)]
    assert changes(log) == [("08:00-10:00", 300 * KiB)]


async def test_a_gap_takes_limit_rate_and_a_clock_jump_is_noticed(
    monkeypatch: pytest.MonkeyPatch, download_dir: Path
) -> None:
    # The loop sleeps on the monotonic clock until the next change, an hour away here; a wall clock
    # set forward is caught at the next recheck (60 s in use, shortened so the test is quick).
    monkeypatch.setattr(engine_module, "SCHEDULE_RECHECK", 0.2)
    clock = Clock(local(11, 0))
    config = fast_config(schedule=parse_schedule(SCHEDULE), speed_limit=2 * MiB)
    async with Engine(config, clock=clock) as engine, EventLog(engine) as log:
        assert rate(engine) == 2 * MiB  # no rule at 11:00: --limit-rate
        status = engine.snapshot().schedule
        assert status is not None and status.rule is None and status.limit == 2 * MiB
        assert status.next_change == local(6, 0).timestamp() + 86400  # tomorrow's first rule
        clock.set(local(9, 0))  # set back into the second rule
        await rate_becomes(engine, 300 * KiB)
    assert changes(log) == [("08:00-10:00", 300 * KiB)]


async def test_without_a_schedule_nothing_changes(download_dir: Path) -> None:
    make: Callable[[], float] = time.time
    async with Engine(fast_config(speed_limit=KiB * 64), clock=make) as engine:
        assert engine.snapshot().schedule is None
        await engine.set_limit(None)
        assert engine.snapshot().schedule is None
