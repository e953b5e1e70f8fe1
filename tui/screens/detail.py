"""The task detail screen: its own speed chart, the segment map, URLs, validators, paths and errors."""

from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar

from rich.style import Style
from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, VerticalScroll
from textual.widgets import Footer, Static

from engine.escaping import escape_controls
from engine.models import TaskSnapshot, TaskState
from engine.units import format_bytes, format_duration, format_rate
from tui.formatting import limit_text, percent, state_label, task_name
from tui.model import SpeedHistory
from tui.palette import BOLD, NO_STYLE, PLAIN, Palette, theme_palette
from tui.screens.task_screen import TaskScreen
from tui.widgets.charts import SpeedChart
from tui.widgets.segment_map import SegmentMap

if TYPE_CHECKING:
    pass

REDRAW_INTERVAL = 0.25
"""Seconds between redraws at most."""


def info_text(task: TaskSnapshot, palette: Palette = PLAIN) -> Text:
    """The task's facts, one per line; URLs, validators and paths with control characters escaped."""
    text = Text(no_wrap=True, overflow="ellipsis")

    def row(label: str, value: str | Text, style: Style = NO_STYLE) -> None:
        if text:
            text.append("\n")
        text.append(f"{label:<9}", style=BOLD)
        if isinstance(value, Text):
            text.append_text(value)
        else:
            text.append(escape_controls(value), style=style)

    row("Name", task_name(task))
    row("State", state_label(task), palette.state(task.state))
    size = format_bytes(task.size) if task.size is not None else "unknown size"
    row("Progress", f"{format_bytes(task.done)} of {size}  {percent(task.progress)}")
    speeds = Text(format_rate(task.speed if task.state.active else 0.0), style=palette.active)
    speeds.append(f"  avg {format_rate(task.avg_speed)}")
    if task.state is TaskState.DOWNLOADING:
        speeds.append(f"  ETA {format_duration(task.eta)}")
    row("Speed", speeds)
    limit = limit_text(task.options.speed_limit)
    row("Conns", f"{task.connections} open of {task.options.connections}  limit {limit}")
    row("URL", task.url)
    row("Final", task.final_url or "-")
    ranges = "-" if task.resumable is None else "yes" if task.resumable else "no (one connection)"
    row("Ranges", ranges)
    row("ETag", task.etag or "-")
    row("Modified", task.last_modified or "-")
    row("Part", task.part_path or "-")
    row("File", task.path or "-")
    row("Retries", str(task.retries))
    return text


def errors_text(task: TaskSnapshot, palette: Palette = PLAIN) -> Text:
    """The task's failure reason and latest transient errors, newest last."""
    text = Text()
    lines = list(task.last_errors)
    if task.error and (not lines or lines[-1] != task.error):
        lines.append(task.error)
    if not lines:
        return Text("no errors", style=palette.muted)
    for i, line in enumerate(lines):
        if i:
            text.append("\n")
        text.append(escape_controls(line), style=palette.error if line == task.error else palette.warning)
    return text


class DetailScreen(TaskScreen):
    """Everything about one task. Esc goes back; the task keys work here too."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "app.pop_screen", "Back"),
        Binding("p,space", "toggle_pause", "Pause"),
        Binding("r", "retry", "Retry"),
        Binding("d,delete", "remove", "Del"),
        Binding("l", "limit", "Limit"),
        Binding("U", "set_url", "URL", show=False),
        Binding("question_mark", "help", "Help"),
        Binding("q", "app.request_quit", "Quit"),
    ]

    def __init__(self, task_id: int) -> None:
        super().__init__()
        self.task_id = task_id
        """The task shown."""
        self._drawn_version = -1
        self._drawn_history = -1

    def compose(self) -> ComposeResult:
        """Facts and chart side by side, the segment map, the errors, the footer."""
        with VerticalScroll(id="detail"):
            with Horizontal(id="detail-top"):
                info = Static(id="info", classes="pane")
                info.border_title = f"Task #{self.task_id}"
                yield info
                chart = SpeedChart(id="task-speed", classes="pane")
                chart.border_title = "Speed"
                yield chart
            segments = SegmentMap(id="segments", classes="pane")
            segments.border_title = "Segments"
            yield segments
            errors = Static(id="errors", classes="pane")
            errors.border_title = "Last errors"
            yield errors
        yield Footer(compact=True)

    def on_mount(self) -> None:
        """Draw now, then on a timer while visible."""
        self.redraw()
        self.set_interval(REDRAW_INTERVAL, self.redraw)

    def on_screen_resume(self) -> None:
        """Catch up at once after a dialog closes."""
        self.redraw()

    @property
    def task_snapshot(self) -> TaskSnapshot | None:
        """The task as of the latest snapshot; None once removed."""
        return self.fetchtop.model.task(self.task_id)

    def redraw(self) -> None:
        """Bring the screen up to date; skipped while hidden; closes itself if the task is gone."""
        if not self.is_current:
            return
        model = self.fetchtop.model
        task = model.task(self.task_id)
        if task is None:
            if model.version > 0:
                self.notify(f"Task #{self.task_id} is gone.")
                self.dismiss()
            return
        if model.version != self._drawn_version:
            self._drawn_version = model.version
            palette = theme_palette(self.app)
            self.query_one("#info", Static).update(info_text(task, palette))
            self.query_one(SegmentMap).show(task)
            self.query_one("#errors", Static).update(errors_text(task, palette))
        if model.history_version != self._drawn_history:
            self._drawn_history = model.history_version
            chart = self.query_one(SpeedChart)
            chart.show(model.task_history.get(self.task_id) or SpeedHistory())
            chart.border_title = f"Speed ({chart.unit})"

    def restyle(self) -> None:
        """Forget what was drawn, so the next redraw uses the new colours everywhere."""
        self._drawn_version = self._drawn_history = -1
        self.query_one(SpeedChart).forget()
        self.redraw()

    def _need_task(self) -> TaskSnapshot | None:
        task = self.task_snapshot
        if task is None:
            self.notify("The task is gone.", severity="warning")
        return task

    def action_limit(self) -> None:
        """Set this task's limit (or the global one)."""
        self.fetchtop.ask_limit(self.task_snapshot, task_first=True)
