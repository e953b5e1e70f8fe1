"""What the dashboard redraws while downloads run: only the cells that changed are rendered again,
and what it draws after a change of order is still right. Real engine, real throttled downloads."""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from textual.app import App, ComposeResult
from textual.widgets import DataTable
from textual_plotext import PlotextPlot

from engine.models import TaskOptions, TaskSnapshot, TaskState
from faultserver.content import KiB
from faultserver.server import FaultServer
from tests.support.pilot import wait_in_app
from tests.test_tui_pilot import SIZE, cell, make_app
from tui.app import FetchtopApp
from tui.model import SpeedHistory
from tui.screens.main import MainScreen
from tui.widgets.charts import SpeedChart, redraw_step
from tui.widgets.task_table import TaskTable


def row_text(table: TaskTable, row: int) -> str:
    """The text the table draws on a row's line (the header is line 0)."""
    return table.render_line(row + 1).text


def downloading(app: FetchtopApp) -> bool:
    tasks = app.model.snapshot.tasks
    return len(tasks) == 2 and all(t.state is TaskState.DOWNLOADING and t.done > 0 for t in tasks)


@pytest.mark.slow
async def test_only_changed_cells_are_rendered_again(
    fault_server: FaultServer, download_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Names sorted the other way round from the queue, so sorting by name reorders the rows.
    urls = [
        fault_server.add_file(name, 512 * KiB, rate=32 * KiB, chunk_size=4 * KiB)
        for name in ("b-second.bin", "a-first.bin")
    ]
    app = make_app(download_dir, urls)
    async with app.run_test(size=SIZE) as pilot:
        await wait_in_app(pilot, lambda: downloading(app), "both downloads to move")
        first, second = (t.id for t in app.model.snapshot.tasks)
        table = app.screen.query_one(TaskTable)
        # Both rows drawn with what does not change while bytes flow (the size is known once probed).
        await wait_in_app(
            pilot,
            lambda: all(
                cell(app, tid, "state").startswith("downloading") and cell(app, tid, "size") == "512K"
                for tid in (first, second)
            ),
            "the table to show both downloading",
        )
        rendered: Counter[str] = Counter()
        # A cell rendered anew goes through DataTable's rendering, or the table's direct one.
        render_cell = DataTable._render_cell
        render_text_cell = TaskTable._render_text_cell

        def counting(self: DataTable[object], row: int, column: int, *args: Any) -> Any:
            if row >= 0:
                rendered[str(self.ordered_columns[column].key.value)] += 1
            return render_cell(self, row, column, *args)

        def counting_text(self: TaskTable, row: int, column: int, *args: Any) -> Any:
            lines = render_text_cell(self, row, column, *args)
            if lines is not None:
                rendered[str(self.ordered_columns[column].key.value)] += 1
            return lines

        monkeypatch.setattr(DataTable, "_render_cell", counting)
        monkeypatch.setattr(TaskTable, "_render_text_cell", counting_text)
        shown = cell(app, first, "progress"), cell(app, second, "progress")
        # Two table redraws with new progress (the pilot screen repaints after each).
        await wait_in_app(
            pilot,
            lambda: (cell(app, first, "progress"), cell(app, second, "progress")) != shown,
            "the progress to move",
        )
        shown = cell(app, first, "progress"), cell(app, second, "progress")
        await wait_in_app(
            pilot,
            lambda: (
                (cell(app, first, "progress"), cell(app, second, "progress")) != shown
                and rendered["progress"] >= 4
            ),
            "the progress to move again and be drawn",
        )
        monkeypatch.undo()
        # The moving cells were rendered again; the ones that cannot change while bytes flow were not.
        assert rendered["progress"] >= 4 and rendered["speed"] >= 1, rendered
        assert rendered["id"] == rendered["name"] == rendered["size"] == 0, rendered
        # A new order moves cells to other rows: what is drawn there follows.
        assert "b-second.bin" in row_text(table, 0) and "a-first.bin" in row_text(table, 1)
        await pilot.press("s")  # sort by name
        screen = app.screen
        assert isinstance(screen, MainScreen) and screen.sort == "name"
        await pilot.pause()
        assert row_text(table, 0).lstrip().startswith(str(second))
        assert "a-first.bin" in row_text(table, 0) and "b-second.bin" in row_text(table, 1)
        assert cell(app, second, "name") == "a-first.bin"


def test_a_chart_dot_column_covers_two_seconds_of_a_five_minute_window() -> None:
    assert redraw_step(300.0, 75) == 2.0
    assert redraw_step(60.0, 75) == 0.4
    assert redraw_step(60.0, 0) == 60.0  # not laid out yet: nothing to lose


class ChartApp(App[None]):
    """One chart, as wide as the dashboard's at 120 columns."""

    def compose(self) -> ComposeResult:
        yield SpeedChart(id="chart")


async def test_a_chart_is_built_again_only_when_it_can_have_moved_by_a_dot(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    builds: list[int] = []
    render = PlotextPlot.render

    def counting(self: PlotextPlot) -> object:
        builds.append(1)
        return render(self)

    monkeypatch.setattr(PlotextPlot, "render", counting)
    history = SpeedHistory()
    for t in range(200):  # a five-minute window: a dot column is 300 / (2 * 82) = 1.8 s
        history.record(float(t), 1000.0 * (t % 7))
    async with ChartApp().run_test(size=(82, 12)) as pilot:
        chart = pilot.app.query_one(SpeedChart)
        chart.show(history)
        await pilot.pause()
        assert builds
        builds.clear()  # from the first drawing on (mounting drew an empty chart too)
        history.record(200.0, 0.0)  # a second later: less than a dot
        chart.show(history)
        await pilot.pause()
        assert len(builds) == 0
        history.record(201.0, 0.0)  # two seconds after the last drawing: a dot further
        chart.show(history)
        await pilot.pause()
        assert len(builds) == 1
        history.record(202.0, 1e9)  # a new peak rescales the axis: drawn at once
        chart.show(history)
        await pilot.pause()
        assert len(builds) == 2 and chart.unit == "MiB/s"
        chart.forget()  # a new theme: drawn again whatever the history
        chart.show(history)
        await pilot.pause()
        assert len(builds) == 3


def varied_tasks() -> list[TaskSnapshot]:
    """One task per state, with and without sizes, speeds and ETAs, a long name and a long error."""
    states = list(TaskState)
    return [
        TaskSnapshot(
            id=i,
            url=f"http://example.org/{i}",
            state=state,
            options=TaskOptions(),
            name=("a-very-long-name-" * 4 + "ünïcødé-全角.bin") if i == 3 else f"file-{i}.bin",
            size=None if i % 4 == 0 else 7_000_000 * i,
            done=1_000_000 * i,
            speed=1234.5 * i,
            avg_speed=999.0 * i,
            eta=None if i % 3 == 0 else 61.0 * i,
            connections=i % 5,
            error="connection reset by peer, and then again " * 3 if state is TaskState.FAILED else None,
        )
        for i, state in enumerate(states, 1)
    ]


class TableApp(App[None]):
    """One task table."""

    def compose(self) -> ComposeResult:
        yield TaskTable(id="tasks")


@pytest.mark.parametrize("width", [80, 120, 160])
async def test_the_direct_cell_rendering_matches_datatables(width: int) -> None:
    """Every body cell built directly is what DataTable's own rendering makes of it, segment for
    segment, with and without the cursor or the mouse on it (the header is left to DataTable)."""
    async with TableApp().run_test(size=(width, 20)) as pilot:
        table = pilot.app.query_one(TaskTable)
        table.show(varied_tasks())
        await pilot.pause()
        base = table.rich_style
        direct = 0
        for row in range(table.row_count):
            for column, shown in enumerate(table.ordered_columns):
                cell_width = shown.get_render_width(table)
                for cursor, hover in ((False, False), (True, False), (False, True), (True, True)):
                    ours = table._render_text_cell(row, column, base, cell_width, cursor, hover)
                    theirs = DataTable._render_cell(table, row, column, base, cell_width, cursor, hover)
                    assert ours is None or ours == theirs, (row, shown.key.value, cursor, hover)
                    direct += ours is not None
        assert direct == table.row_count * len(table.ordered_columns) * 4
        assert table._render_text_cell(-1, 0, base, 5, False, False) is None
