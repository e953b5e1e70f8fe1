"""The main screen: summary, bandwidth chart, task table, event log and footer."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, ClassVar

from textual import on
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal
from textual.events import Resize
from textual.widgets import DataTable, Footer, Input

from engine.models import TaskSnapshot
from tui.model import SORT_KEYS, order_tasks
from tui.screens.task_screen import TaskScreen
from tui.widgets.charts import SpeedChart
from tui.widgets.event_log import EventLog
from tui.widgets.summary import Summary
from tui.widgets.task_table import TaskTable

if TYPE_CHECKING:
    pass

TABLE_INTERVAL = 0.25
"""Seconds between table redraws at most (4 a second)."""
TABLE_INTERVAL_CAP = 2.0
"""Seconds between table redraws with 40 moving rows or more."""


def table_interval(active: int) -> float:
    """Seconds between table redraws for this many moving rows.

    Every moving row repaints a terminal line; with dozens of them the redraw rate drops so the
    output over SSH stays small (a person cannot read 50 rows four times a second anyway).
    """
    return min(TABLE_INTERVAL_CAP, max(TABLE_INTERVAL, active * 0.05))


class MainScreen(TaskScreen):
    """Everything at a glance; every action is a key."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("a", "add", "Add"),
        Binding("p,space", "toggle_pause", "Pause"),
        Binding("P", "toggle_all", "All"),
        Binding("r", "retry", "Retry"),
        Binding("d,delete", "remove", "Del"),
        Binding("l", "limit", "Limit"),
        Binding("U", "set_url", "URL", show=False),
        Binding("u", "move(-1)", "Up", show=False),
        Binding("n", "move(1)", "Down", show=False),
        Binding("s", "cycle_sort", "Sort"),
        Binding("slash", "filter", "Filter"),
        Binding("e", "toggle_log", "Log"),
        Binding("question_mark", "help", "Help"),
        Binding("q", "app.request_quit", "Quit"),
        Binding("escape", "clear_filter", "Clear filter", show=False),
    ]

    def __init__(self) -> None:
        super().__init__()
        self.sort = "queue"
        """The current sort order, one of :data:`tui.model.SORT_KEYS`."""
        self.filter_text = ""
        """Only names containing this are shown."""
        self.pending_select: int | None = None
        """A task to select as soon as it appears (one just added)."""
        self._drawn_version = -1
        self._drawn_history = -1
        self._view_key: tuple[str, str] = ("queue", "")
        self._drawn_at = 0.0
        self._summary_key: object = None

    def compose(self) -> ComposeResult:
        """Summary and chart on top, the table, the (hidden) log, the filter bar and the footer."""
        with Horizontal(id="top"):
            summary = Summary(id="summary", classes="pane")
            summary.border_title = "fetchtop"
            yield summary
            chart = SpeedChart(id="bandwidth", classes="pane")
            chart.border_title = "Bandwidth"
            yield chart
        yield TaskTable(id="tasks")
        log = EventLog(id="log", classes="pane")
        log.border_title = "Events"
        yield log
        yield Input(placeholder="filter by name (Enter keeps, Esc clears)", id="filter")
        yield Footer(compact=True)

    def on_mount(self) -> None:
        """Redraw on a timer, at most 4 times a second and only when the data changed."""
        self.query_one(TaskTable).focus()
        self.set_interval(TABLE_INTERVAL, self.redraw)

    def on_resize(self, event: Resize) -> None:
        """Give the charts and the log more rows on tall terminals."""
        self.set_class(event.size.height >= 36, "-tall")

    def on_screen_resume(self) -> None:
        """Catch up at once after a dialog or the detail screen closes."""
        self.redraw()

    def redraw(self) -> None:
        """Bring the visible widgets up to date with the model; skipped while the screen is hidden.

        Over SSH every repainted line costs bytes, so the table redraws less often when many rows
        move (:func:`table_interval`), and the summary, which shares its lines with the chart,
        redraws with the chart once a second unless something a person waits for changed.
        """
        if not self.is_current:
            return
        app = self.fetchtop
        model = app.model
        totals = model.totals()
        view_key = (self.sort, self.filter_text)
        now = time.monotonic()
        due = now - self._drawn_at >= table_interval(totals.active) - 0.01
        if (model.version != self._drawn_version and due) or view_key != self._view_key:
            self._drawn_version = model.version
            self._drawn_at = now
            self._view_key = view_key
            table = self.query_one(TaskTable)
            table.show(order_tasks(model.snapshot.tasks, self.sort, self.filter_text))
            if self.pending_select is not None and table.select_task(self.pending_select):
                self.pending_select = None
        new_sample = model.history_version != self._drawn_history
        snap = model.snapshot
        summary_key = (totals, snap.speed_limit, snap.schedule, snap.jobs, view_key, app.connected)
        if new_sample or summary_key != self._summary_key:
            self._summary_key = summary_key
            self.query_one(Summary).show(model, self.sort, self.filter_text, app.connected)
        if new_sample:
            self._drawn_history = model.history_version
            chart = self.query_one(SpeedChart)
            chart.show(model.history)
            chart.border_title = f"Bandwidth ({chart.unit})"
        log = self.query_one(EventLog)
        if log.display:
            log.catch_up(model)

    def restyle(self) -> None:
        """Forget what was drawn, so the next redraw uses the new colours everywhere."""
        self._drawn_version = self._drawn_history = -1
        self._summary_key = None
        self.query_one(SpeedChart).forget()
        self.query_one(EventLog).restyle(self.fetchtop.model)
        self.redraw()

    def selected_task(self) -> TaskSnapshot | None:
        """The task under the cursor, as of the latest snapshot."""
        tid = self.query_one(TaskTable).selected_id
        return None if tid is None else self.fetchtop.model.task(tid)

    def _need_task(self) -> TaskSnapshot | None:
        task = self.selected_task()
        if task is None:
            self.notify("No task selected.", severity="warning")
        return task

    @on(DataTable.RowSelected)
    def _open_detail(self, event: DataTable.RowSelected) -> None:
        task = self.selected_task()
        if task is not None:
            self.fetchtop.show_detail(task)

    def action_add(self) -> None:
        """Open the add dialog."""
        self.fetchtop.ask_add()

    def action_toggle_all(self) -> None:
        """Pause all or resume all."""
        self.fetchtop.toggle_all()

    def action_limit(self) -> None:
        """Set the global limit or the selected task's."""
        self.fetchtop.ask_limit(self.selected_task())

    def action_move(self, offset: int) -> None:
        """Move the selected queued task in the queue."""
        if task := self._need_task():
            self.fetchtop.move(task, offset)

    def action_cycle_sort(self) -> None:
        """Sort by the next column."""
        self.sort = SORT_KEYS[(SORT_KEYS.index(self.sort) + 1) % len(SORT_KEYS)]
        self.redraw()

    def action_filter(self) -> None:
        """Show the filter bar and type into it."""
        bar = self.query_one("#filter", Input)
        bar.display = True
        bar.focus()

    @on(Input.Changed, "#filter")
    def _filter_changed(self, event: Input.Changed) -> None:
        self.filter_text = event.value
        self.redraw()

    @on(Input.Submitted, "#filter")
    def _filter_kept(self) -> None:
        bar = self.query_one("#filter", Input)
        if not bar.value:
            bar.display = False
        self.query_one(TaskTable).focus()

    def action_clear_filter(self) -> None:
        """Esc clears the filter and hides its bar."""
        bar = self.query_one("#filter", Input)
        if bar.display:
            bar.value = ""
            bar.display = False
            self.query_one(TaskTable).focus()

    def action_toggle_log(self) -> None:
        """Show or hide the event log."""
        log = self.query_one(EventLog)
        log.display = not log.display
        if log.display:
            log.catch_up(self.fetchtop.model)
