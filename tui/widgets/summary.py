"""The summary pane: task counts, speeds, session total, limit and success rate."""

from __future__ import annotations

from rich.text import Text
from textual.widgets import Static

from tui.formatting import limit_text, short_bytes, short_rate
from tui.model import DashboardModel


def summary_text(model: DashboardModel, sort: str, filter_text: str) -> Text:
    """The pane's lines for the model's latest snapshot."""
    snap = model.snapshot
    totals = model.totals()
    rate = totals.success_rate
    text = Text(no_wrap=True, overflow="ellipsis")

    def pair(label: str, value: str, style: str = "", width: int = 10) -> None:
        text.append(f"{label} ", style="bold")
        text.append(value.ljust(width), style=style)

    pair("Active ", str(totals.active), "cyan" if totals.active else "", 4)
    pair("Queued", str(totals.queued), "", 4)
    pair("Paused", str(totals.paused), "yellow" if totals.paused else "", 0)
    text.append("\n")
    pair("Done   ", str(totals.completed), "green" if totals.completed else "", 4)
    pair("Failed", str(totals.failed), "bold red" if totals.failed else "", 4)
    pair("OK", "-" if rate is None else f"{rate:.0%}", "", 0)
    text.append("\n")
    pair("Speed  ", short_rate(snap.speed), "bold cyan", 11)
    pair("avg", short_rate(snap.avg_speed), "", 0)
    text.append("\n")
    pair("Session", short_bytes(snap.downloaded), "", 11)
    pair("conns", str(snap.connections), "", 0)
    text.append("\n")
    pair("Limit  ", limit_text(snap.speed_limit), "yellow" if snap.speed_limit else "", 11)
    pair("jobs ", str(snap.jobs), "", 0)
    text.append("\n")
    pair("Sort   ", sort, "", 11)
    pair("filter", filter_text or "-", "bold" if filter_text else "", 0)
    return text


class Summary(Static):
    """The summary pane; redrawn only when its text changes."""

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__("", id=id)
        self._last = ""

    def show(self, model: DashboardModel, sort: str, filter_text: str, connected: bool = True) -> None:
        """Redraw from the model if anything visible changed."""
        # The border shows a lost engine even when the pane is too short for another line.
        self.border_subtitle = "" if connected else "[b red]engine lost, retrying[/]"
        text = summary_text(model, sort, filter_text)
        key = text.plain + repr(text.spans)
        if key != self._last:
            self._last = key
            self.update(text, layout=False)  # fixed size: a relayout would repaint the screen
