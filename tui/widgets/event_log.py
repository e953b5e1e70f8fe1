"""The event log pane: retries, errors and completions with their times."""

from __future__ import annotations

from textual.widgets import RichLog

from tui.model import DashboardModel
from tui.palette import theme_palette


class EventLog(RichLog):
    """A RichLog that catches up with the model's log lines when asked."""

    def __init__(self, *, id: str | None = None, classes: str | None = None) -> None:
        super().__init__(
            id=id, classes=classes, max_lines=500, wrap=False, markup=False, highlight=False, auto_scroll=True
        )
        self._written = 0

    def catch_up(self, model: DashboardModel) -> None:
        """Write the lines logged since the last call."""
        new = min(model.log_count - self._written, len(model.log))
        if new <= 0:
            return
        palette = theme_palette(self.app)
        for line in list(model.log)[-new:]:
            self.write(line.render(palette))
        self._written = model.log_count

    def restyle(self, model: DashboardModel) -> None:
        """Write the kept lines again in the current theme's colours (a written line keeps its own)."""
        self.clear()
        self._written = model.log_count - len(model.log)
        if self.display:
            self.catch_up(model)
