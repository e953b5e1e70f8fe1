"""The dashboard's pure helpers: compact sizes, bars, axes, segment maps, event lines, ordering."""

from __future__ import annotations

import pytest

from engine.events import LimitChanged, SegmentFinished, TaskCompleted, TaskFailed, TaskRetrying
from engine.models import EngineSnapshot, SegmentSnapshot, SegmentState, TaskOptions, TaskSnapshot, TaskState
from engine.units import parse_rate
from tui.formatting import (
    compact_bytes,
    compact_rate,
    connection_markers,
    describe_event,
    ellipsize,
    limit_input,
    nice_ceiling,
    progress_cell,
    rate_axis,
    segment_cells,
    state_label,
    task_name,
)
from tui.model import DashboardModel, SpeedHistory, order_tasks
from tui.widgets.task_table import PADDING, layout

KiB = 1024
MiB = KiB * KiB


def task(tid: int = 1, **kw: object) -> TaskSnapshot:
    fields: dict[str, object] = {"url": f"http://h/f{tid}.bin", "state": TaskState.DOWNLOADING}
    fields.update(kw)
    return TaskSnapshot(id=tid, options=TaskOptions(), **fields)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("n", "text"),
    [
        (0, "0B"),
        (999, "999B"),
        (1000, "1.0K"),
        (1536, "1.5K"),
        (99 * KiB, "99.0K"),
        (500 * KiB, "500K"),
        (1023 * KiB, "1.0M"),
        (64 * MiB, "64.0M"),
        (256 * MiB, "256M"),
        (3 * 1024 * MiB, "3.0G"),
    ],
)
def test_compact_bytes_fits_five_cells(n: int, text: str) -> None:
    assert compact_bytes(n) == text
    assert len(text) <= 5


def test_compact_rate_and_unknowns() -> None:
    assert compact_rate(0) == "-"
    assert compact_rate(2 * MiB) == "2.0M/s"
    assert compact_bytes(None) == "?"


def test_progress_cell_width_and_percent() -> None:
    for p in (0.0, 0.123, 0.5, 0.999, 1.0, None):
        cell = progress_cell(p, 14)
        assert cell.cell_len == 14
    assert progress_cell(0.999, 14).plain.endswith(" 99%")  # never 100% before the end
    assert progress_cell(1.0, 14).plain.endswith("100%")
    assert progress_cell(None, 14).plain.endswith("   ?")
    half = progress_cell(0.5, 14).plain
    assert half.count("█") == 4  # 9-cell bar, half of it is 4.5 cells: 4 full and a half block
    assert "▌" in half


def test_ellipsize() -> None:
    assert ellipsize("short", 10) == "short"
    assert ellipsize("a-very-long-name.iso", 8) == "a-very-…"
    assert ellipsize("x", 0) == ""


def test_limit_input_round_trips_through_parse_rate() -> None:
    for limit in (None, 1, 1000, 64 * KiB, 1536 * KiB, 2 * MiB, 3 * 1024 * MiB):
        assert parse_rate(limit_input(limit)) == limit


def test_nice_ceiling() -> None:
    assert [nice_ceiling(v) for v in (0, 0.7, 1, 1.1, 3, 7, 42, 999)] == [1, 1, 1, 2, 5, 10, 50, 1000]


def test_rate_axis_picks_a_readable_unit() -> None:
    axis = rate_axis(3.2 * MiB)
    assert (axis.unit, axis.factor, axis.top) == ("MiB/s", MiB, 5.0)
    assert axis.labels == ("0", "2.5M", "5M")
    assert rate_axis(700 * KiB).unit == "KiB/s"
    assert rate_axis(0).labels == ("0", "0.5", "1")


def test_state_label_shows_failure_reason() -> None:
    assert (
        state_label(task(state=TaskState.FAILED, error="HTTP 404 Not Found")) == "failed: HTTP 404 Not Found"
    )
    assert state_label(task(state=TaskState.PAUSED)) == "paused"


def test_task_name_falls_back_to_url_tail() -> None:
    assert task_name(task(url="http://h/dir/file.iso?sig=1")) == "file.iso"
    assert task_name(task(name="named.bin")) == "named.bin"


def test_segment_cells_show_done_active_pending() -> None:
    t = task(
        size=100,
        segments=(
            SegmentSnapshot(0, 25, 25, SegmentState.DONE),
            SegmentSnapshot(25, 50, 10, SegmentState.ACTIVE, speed=5.0, connection=1),
            SegmentSnapshot(50, 100, 0, SegmentState.PENDING),
        ),
    )
    cells = segment_cells(t, 10)
    assert cells[:2] == ["done", "done"]
    assert cells[3] == "active"  # bytes 30..40: in flight
    assert cells[5:] == ["pending"] * 5
    markers = connection_markers(t, 10).plain
    assert markers.index("1") == 3  # connection 1 is at byte 35 of 100


def test_segment_cells_completed_and_unknown_size() -> None:
    assert segment_cells(task(size=50, state=TaskState.COMPLETED), 5) == ["done"] * 5
    assert segment_cells(task(size=None), 5) == []


def test_describe_event_lines() -> None:
    names = {3: "file.iso"}
    line = describe_event(
        TaskRetrying(10.0, 3, reason="connection reset", kind="connection", delay=1.5, attempt=2), names
    )
    assert line is not None and line.level == "warning"
    assert line.text == "#3 file.iso retry 2 in 1.5s: connection reset"
    failed = describe_event(TaskFailed(11.0, 3, reason="HTTP 404 Not Found"), names)
    assert failed is not None and failed.level == "error" and "HTTP 404" in failed.text
    done = describe_event(TaskCompleted(12.0, 3, path="/x/file.iso", size=2 * MiB, duration=2.0), names)
    assert done is not None and done.level == "success" and "1.0 MiB/s" in done.text
    limit = describe_event(LimitChanged(13.0, None, 64 * KiB), names)
    assert limit is not None and limit.text == "global limit: 64 KiB/s"
    assert describe_event(SegmentFinished(14.0, 3, start=0, end=10), names) is None


def test_order_tasks_sorts_and_filters() -> None:
    tasks = [
        task(1, name="b.iso", size=10, speed=5.0),
        task(2, name="a.bin", size=30, speed=1.0),
        task(3, name="c.iso", size=20, speed=9.0, state=TaskState.QUEUED),
    ]
    assert [t.id for t in order_tasks(tasks)] == [1, 2, 3]
    assert [t.id for t in order_tasks(tasks, "name")] == [2, 1, 3]
    assert [t.id for t in order_tasks(tasks, "size")] == [2, 3, 1]
    assert [t.id for t in order_tasks(tasks, "speed")] == [3, 1, 2]
    assert [t.id for t in order_tasks(tasks, "state")] == [1, 2, 3]
    assert [t.id for t in order_tasks(tasks, "queue", "ISO")] == [1, 3]


def test_speed_history_samples_once_a_second() -> None:
    hist = SpeedHistory(step=1.0, keep=3)
    assert hist.record(0.0, 1.0)
    assert not hist.record(0.5, 2.0)
    assert hist.record(1.0, 3.0)
    hist.record(2.0, 4.0)
    hist.record(3.0, 5.0)
    assert [s for _, s in hist.samples] == [3.0, 4.0, 5.0]
    assert hist.window(1.0) == [(-1.0, 4.0), (0.0, 5.0)]
    assert hist.peak == 5.0


def test_model_totals_stale_and_history() -> None:
    model = DashboardModel()
    snap = EngineSnapshot(
        tasks=(task(1, speed=10.0), task(2, state=TaskState.COMPLETED), task(3, state=TaskState.FAILED)),
        speed=10.0,
        time=100.0,
    )
    assert model.record_history(snap)
    model.apply_snapshot(snap)
    totals = model.totals()
    assert (totals.active, totals.completed, totals.failed, totals.success_rate) == (1, 1, 1, 0.5)
    assert list(model.task_history) == [1]
    # A finished piece changes no row: no reason to fetch a snapshot before the next progress.
    model.apply_event(SegmentFinished(100.5, 1, start=0, end=1024))
    assert not model.stale
    model.apply_event(TaskFailed(101.0, 1, reason="boom"))
    assert model.stale
    assert model.log[-1].text == "#1 f1.bin failed: boom"
    # An older snapshot (a slow reply) never replaces a newer one.
    model.apply_snapshot(EngineSnapshot(time=50.0))
    assert model.snapshot is snap


def test_table_layout_fits_the_width() -> None:
    for width in (80, 100, 120, 200):
        cols = layout(width)
        total = sum(c.width + 2 * PADDING for c in cols)
        assert total == width - 1, width  # one cell left for the scrollbar
    assert "avg" not in {c.key for c in layout(80)}
    assert "avg" in {c.key for c in layout(120)}
