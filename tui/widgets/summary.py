"""The summary pane: task counts, speeds, session total, limit and success rate."""

from __future__ import annotations

from rich.style import Style
from rich.text import Span, Text
from textual.widgets import Static

from engine.escaping import escape_controls
from engine.schedule import status_note
from tui.formatting import limit_text, short_bytes, short_rate
from tui.model import DashboardModel
from tui.palette import BOLD, NO_STYLE, PLAIN, Palette, theme_palette


def summary_text(model: DashboardModel, sort: str, filter_text: str, palette: Palette = PLAIN) -> Text:
    """The pane's lines for the model's latest snapshot, coloured by ``palette``."""
    snap = model.snapshot
    totals = model.totals()
    rate = totals.success_rate
    text = Text(no_wrap=True, overflow="ellipsis")

    def pair(label: str, value: str, style: Style = NO_STYLE, width: int = 10) -> None:
        text.append(f"{label} ", style=BOLD)
        text.append(value.ljust(width), style=style)

    def when(count: int, style: Style) -> Style:
        return style if count else NO_STYLE

    pair("Active ", str(totals.active), when(totals.active, palette.active), 4)
    pair("Queued", str(totals.queued), NO_STYLE, 4)
    pair("Paused", str(totals.paused), when(totals.paused, palette.warning), 0)
    text.append("\n")
    pair("Done   ", str(totals.completed), when(totals.completed, palette.success), 4)
    pair("Failed", str(totals.failed), when(totals.failed, palette.error), 4)
    pair("OK", "-" if rate is None else f"{rate:.0%}", NO_STYLE, 0)
    text.append("\n")
    pair("Speed  ", short_rate(snap.speed), palette.active + BOLD, 11)
    pair("avg", short_rate(snap.avg_speed), NO_STYLE, 0)
    text.append("\n")
    pair("Session", short_bytes(snap.downloaded), NO_STYLE, 11)
    pair("conns", str(snap.connections), NO_STYLE, 0)
    text.append("\n")
    if snap.schedule is None:
        pair("Limit  ", limit_text(snap.speed_limit), when(snap.speed_limit or 0, palette.warning), 11)
        pair("jobs ", str(snap.jobs), NO_STYLE, 0)
    else:
        # No room for the jobs as well: the pane is 36 columns, and the rule's span is in its border.
        pair("Limit  ", limit_text(snap.speed_limit), when(snap.speed_limit or 0, palette.warning), 11)
        text.append(status_note(snap.schedule, short=True))
    text.append("\n")
    if model.save_error is not None:
        # The pane has no spare line: losing the queue matters more than the sort order.
        pair("Unsaved", escape_controls(model.save_error), palette.error + BOLD, 0)
    else:
        pair("Sort   ", sort, NO_STYLE, 11)
        pair("filter", filter_text or "-", when(len(filter_text), BOLD), 0)
    return text


class Summary(Static):
    """The summary pane; redrawn only when its text changes."""

    def __init__(self, *, id: str | None = None, classes: str | None = None) -> None:
        super().__init__("", id=id, classes=classes)
        self._last: tuple[str, tuple[Span, ...]] | None = None

    def show(self, model: DashboardModel, sort: str, filter_text: str, connected: bool = True) -> None:
        """Redraw from the model if anything visible changed."""
        # The border shows a lost engine even when the pane is too short for another line.
        if not connected:
            self.border_subtitle = "[b $error]engine lost, retrying[/]"
        elif model.save_error is not None:
            self.border_subtitle = "[b $error]queue not saved[/]"
        elif model.snapshot.schedule is not None:
            rule = model.snapshot.schedule.rule
            self.border_subtitle = "no rule" if rule is None else f"sched {rule}"
        else:
            self.border_subtitle = ""
        text = summary_text(model, sort, filter_text, theme_palette(self.app))
        key = (text.plain, tuple(text.spans))
        if key != self._last:
            self._last = key
            self.update(text, layout=False)  # fixed size: a relayout would repaint the screen
