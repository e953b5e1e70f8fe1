"""SVG snapshots of the dashboard's screens (pytest-textual-snapshot), made deterministic.

For these pictures only, the engine is a fixed script: a client that replays the same snapshots and
events every run, with engine times from a fixed clock, so the table, charts and log never differ.
The pilot tests (test_tui_pilot.py) drive the same screens against a real engine.
Update the pictures with ``pytest tests/test_tui_snapshots.py --snapshot-update`` and review them.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
from textual.pilot import Pilot

from engine.events import (
    Event,
    LimitChanged,
    ProgressUpdated,
    TaskCompleted,
    TaskFailed,
    TaskProbed,
    TaskRetrying,
    TaskStarted,
)
from engine.models import EngineSnapshot, SegmentSnapshot, SegmentState, TaskOptions, TaskSnapshot, TaskState
from tui.app import ANSI_THEME, FetchtopApp
from tui.screens.main import MainScreen
from tui.widgets.event_log import EventLog
from tui.widgets.task_table import TaskTable

KiB = 1024
MiB = KiB * KiB
GiB = KiB * MiB
T0 = 1_700_000_000.0
"""The fixed clock: engine time of the first snapshot."""
STEPS = 90
"""Snapshots replayed, one per engine second."""


def _segments(size: int, done_fraction: float, connections: int, speed: float) -> tuple[SegmentSnapshot, ...]:
    """``connections`` equal ranges, each ``done_fraction`` done and in flight, plus a done head."""
    head = size // 10
    part = (size - head) // connections
    segs = [SegmentSnapshot(0, head, head, SegmentState.DONE)]
    for i in range(connections):
        start = head + i * part
        end = size if i == connections - 1 else start + part
        segs.append(
            SegmentSnapshot(
                start,
                end,
                int((end - start) * done_fraction),
                SegmentState.ACTIVE,
                speed=speed / connections,
                connection=i + 1,
            )
        )
    return tuple(segs)


def tasks_at(step: int) -> tuple[TaskSnapshot, ...]:
    """The fixed task list ``step`` seconds into the script."""
    opts = TaskOptions(directory="/srv/data", connections=8)
    f = step / STEPS
    iso = 5_900 * MiB
    iso_done = int(iso * (0.1 + 0.25 * f))
    iso_speed = 4.2 * MiB + 0.6 * MiB * math.sin(step / 6)
    tar = 1200 * MiB
    tar_done = int(tar * (0.4 + 0.3 * f))
    return (
        TaskSnapshot(
            id=1,
            url="https://releases.example.org/24.04/ubuntu-24.04-desktop-amd64.iso",
            final_url="https://mirror-3.example.org/ubuntu/24.04/ubuntu-24.04-desktop-amd64.iso",
            state=TaskState.DOWNLOADING,
            options=opts,
            name="ubuntu-24.04-desktop-amd64.iso",
            path="/srv/data/ubuntu-24.04-desktop-amd64.iso",
            part_path="/srv/data/ubuntu-24.04-desktop-amd64.iso.part",
            size=iso,
            done=iso_done,
            speed=iso_speed,
            avg_speed=3.9 * MiB,
            eta=(iso - iso_done) / iso_speed,
            connections=8,
            resumable=True,
            etag='"66a1f2c4-170e00000"',
            last_modified="Thu, 25 Apr 2024 12:00:00 GMT",
            retries=3,
            last_errors=("connection reset by peer", "timeout after 30 s without data"),
            segments=_segments(iso, 0.1 + 0.2 * f, 8, iso_speed),
            added_at=T0 - 100,
        ),
        TaskSnapshot(
            id=2,
            url="https://data.example.net/dumps/dataset-2024.tar.zst",
            state=TaskState.DOWNLOADING,
            options=opts,
            name="dataset-2024.tar.zst",
            size=tar,
            done=tar_done,
            speed=2.1 * MiB,
            avg_speed=2.0 * MiB,
            eta=(tar - tar_done) / (2.1 * MiB),
            connections=4,
            resumable=True,
            segments=_segments(tar, 0.4 + 0.3 * f, 4, 2.1 * MiB),
            added_at=T0 - 90,
        ),
        TaskSnapshot(
            id=3,
            url="http://files.example.com/backup-2024-11-01.tar.gz",
            state=TaskState.PAUSED,
            options=opts,
            name="backup-2024-11-01.tar.gz",
            size=800 * MiB,
            done=96 * MiB,
            avg_speed=1.1 * MiB,
            resumable=True,
            added_at=T0 - 80,
        ),
        TaskSnapshot(
            id=4,
            url="https://downloads.example.com/fw/firmware-2.4.1.bin",
            state=TaskState.COMPLETED,
            options=opts,
            name="firmware-2.4.1.bin",
            size=32 * MiB,
            done=32 * MiB,
            avg_speed=5.3 * MiB,
            resumable=True,
            added_at=T0 - 70,
            finished_at=T0 + 12,
        ),
        TaskSnapshot(
            id=5,
            url="https://downloads.example.com/old/missing.bin",
            state=TaskState.FAILED,
            options=opts,
            name="missing.bin",
            error="HTTP 404 Not Found",
            added_at=T0 - 60,
            finished_at=T0 + 5,
        ),
        TaskSnapshot(
            id=6,
            url="http://legacy.example.com/archive/no-ranges.tar",
            state=TaskState.DOWNLOADING,
            options=opts,
            name="no-ranges.tar",
            size=24 * MiB,
            done=int(24 * MiB * 0.8 * f),
            speed=1.0 * MiB,
            avg_speed=0.9 * MiB,
            eta=(24 * MiB * (1 - 0.8 * f)) / MiB,
            connections=1,
            resumable=False,
            added_at=T0 - 50,
        ),
        TaskSnapshot(
            id=7,
            url="https://media.example.org/talks/keynote-4k.mkv",
            state=TaskState.QUEUED,
            options=opts,
            added_at=T0 - 40,
        ),
    )


def snapshot_at(step: int) -> EngineSnapshot:
    """The whole engine ``step`` seconds into the script."""
    tasks = tasks_at(step)
    counts: dict[str, int] = {}
    for t in tasks:
        counts[t.state.value] = counts.get(t.state.value, 0) + 1
    return EngineSnapshot(
        tasks=tasks,
        speed=sum(t.speed for t in tasks if t.state.active),
        avg_speed=6.8 * MiB,
        downloaded=int(2.3 * GiB + step * 7 * MiB),
        speed_limit=12 * MiB,
        jobs=5,
        connections=13,
        time=T0 + step,
        counts=counts,
    )


EVENTS: tuple[tuple[int, Event], ...] = (
    (1, TaskStarted(T0 + 1, 1, url="https://releases.example.org/24.04/ubuntu-24.04-desktop-amd64.iso")),
    (
        2,
        TaskProbed(
            T0 + 2,
            1,
            name="ubuntu-24.04-desktop-amd64.iso",
            path="/srv/data/ubuntu-24.04-desktop-amd64.iso",
            size=5_900 * MiB,
            resumable=True,
            final_url="https://mirror-3.example.org/ubuntu/24.04/ubuntu-24.04-desktop-amd64.iso",
        ),
    ),
    (5, TaskFailed(T0 + 5, 5, reason="HTTP 404 Not Found")),
    (9, TaskRetrying(T0 + 9, 1, reason="connection reset by peer", kind="connection", delay=0.8, attempt=1)),
    (12, TaskCompleted(T0 + 12, 4, path="/srv/data/firmware-2.4.1.bin", size=32 * MiB, duration=6.0)),
    (30, LimitChanged(T0 + 30, None, 12 * MiB)),
    (
        44,
        TaskRetrying(
            T0 + 44, 1, reason="timeout after 30 s without data", kind="timeout", delay=1.6, attempt=2
        ),
    ),
)
"""Lifecycle events of the script, by the step they come before."""


class ScriptedClient:
    """An EngineClient replaying :func:`snapshot_at` and :data:`EVENTS`; commands are refused."""

    def __init__(self) -> None:
        self.latest = snapshot_at(0)
        self.finished = asyncio.Event()

    async def subscribe_events(self) -> AsyncIterator[Event]:
        events = list(EVENTS)
        for step in range(STEPS):
            while events and events[0][0] <= step:
                yield events.pop(0)[1]
            self.latest = snapshot_at(step)
            yield ProgressUpdated(self.latest.time, self.latest)
        self.finished.set()
        await asyncio.Event().wait()  # an engine's stream stays open

    def subscribe(self) -> AsyncIterator[Event]:
        return self.subscribe_events()

    async def get_snapshot(self) -> EngineSnapshot:
        return self.latest

    async def _refuse(self, *args: Any, **kwargs: Any) -> Any:
        raise AssertionError("the snapshot script takes no commands")

    add = pause = resume = cancel = remove = pause_all = resume_all = set_limit = move = _refuse


@pytest.fixture(autouse=True)
def utc() -> Iterator[None]:
    """Log times in UTC, whatever the machine's zone."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("TZ", "UTC")
        time.tzset()
        yield
    time.tzset()


def scripted_app(theme: str = "textual-dark") -> tuple[FetchtopApp, ScriptedClient]:
    """The app on the script, in ``theme`` whatever the terminal running the tests supports."""
    client = ScriptedClient()
    app = FetchtopApp(client)
    app.theme = theme
    return app, client


async def settle(pilot: Pilot[Any], client: ScriptedClient) -> None:
    """Wait until the whole script is shown: last snapshot applied and drawn."""
    app = pilot.app
    assert isinstance(app, FetchtopApp)
    final = snapshot_at(STEPS - 1).time
    for _ in range(400):
        screen = app.screen
        drawn = not isinstance(screen, MainScreen) or screen.query_one(TaskTable).row_count == 7
        if client.finished.is_set() and app.model.snapshot.time == final and drawn:
            break
        await pilot.pause(0.02)
    await pilot.pause(0.3)  # a redraw tick (0.25 s) after the last snapshot


def test_main_screen_80x24(snap_compare: Any) -> None:
    app, client = scripted_app()

    async def run_before(pilot: Pilot[Any]) -> None:
        await settle(pilot, client)
        await pilot.press("down")
        await pilot.pause(0.3)

    assert snap_compare(app, terminal_size=(80, 24), run_before=run_before)


def test_main_screen_16_colours(snap_compare: Any) -> None:
    """The ANSI theme a 16-colour terminal gets: only the terminal's own colours."""
    app, client = scripted_app(ANSI_THEME)

    async def run_before(pilot: Pilot[Any]) -> None:
        await settle(pilot, client)

    assert snap_compare(app, terminal_size=(80, 24), run_before=run_before)


def test_main_screen_with_log_120x36(snap_compare: Any) -> None:
    app, client = scripted_app()

    async def run_before(pilot: Pilot[Any]) -> None:
        await settle(pilot, client)
        await pilot.press("e")
        await pilot.pause(0.3)

    assert snap_compare(app, terminal_size=(120, 36), run_before=run_before)


def test_detail_screen(snap_compare: Any) -> None:
    app, client = scripted_app()

    async def run_before(pilot: Pilot[Any]) -> None:
        await settle(pilot, client)
        await pilot.press("enter")
        await pilot.pause(0.3)

    assert snap_compare(app, terminal_size=(100, 34), run_before=run_before)


def test_add_dialog(snap_compare: Any) -> None:
    app, client = scripted_app()

    async def run_before(pilot: Pilot[Any]) -> None:
        await settle(pilot, client)
        await pilot.press("a", *"https://example.com/big file.iso")
        await pilot.pause(0.3)

    assert snap_compare(app, terminal_size=(80, 24), run_before=run_before)


def test_help_screen(snap_compare: Any) -> None:
    app, client = scripted_app()

    async def run_before(pilot: Pilot[Any]) -> None:
        await settle(pilot, client)
        await pilot.press("question_mark")
        await pilot.pause(0.3)

    assert snap_compare(app, terminal_size=(80, 24), run_before=run_before)


async def test_a_theme_change_recolours_what_is_drawn() -> None:
    """Table cells, log lines and charts are Rich renderables: they follow the theme too."""
    app, client = scripted_app()
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot, client)
        await pilot.press("e")
        await pilot.pause(0.3)
        table = app.screen.query_one(TaskTable)
        log = app.screen.query_one(EventLog)

        def colours() -> tuple[str, str]:
            cell = str(table.get_cell("5", "state").style)
            failed = next(line for line in log.lines if "failed" in line.text)
            return cell, " ".join(str(seg.style) for seg in failed)

        before = colours()
        app.theme = ANSI_THEME
        for _ in range(50):
            await pilot.pause(0.02)
            if all(a != b for a, b in zip(colours(), before, strict=True)):
                break
        cell, line = colours()
        assert "color(1)" in cell  # the terminal's own red
        assert "color(1)" in line
