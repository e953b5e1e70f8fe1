"""Speed charts: one PlotextPlot each, with its own figure, redrawn only when a sample was added."""

from __future__ import annotations

from textual_plotext import PlotextPlot

from tui.formatting import rate_axis
from tui.model import SpeedHistory
from tui.palette import plotext_color, theme_palette

SPANS: tuple[tuple[float, tuple[str, str, str]], ...] = (
    (60.0, ("-1m", "-30s", "now")),
    (120.0, ("-2m", "-1m", "now")),
    (300.0, ("-5m", "-2.5m", "now")),
)
"""Time windows a chart can show and their x tick labels; the smallest that holds the history wins."""


def pick_span(history: SpeedHistory) -> tuple[float, tuple[str, str, str]]:
    """The narrowest window that shows all of the history."""
    samples = history.samples
    age = samples[-1][0] - samples[0][0] if samples else 0.0
    for span, labels in SPANS:
        if age <= span:
            return span, labels
    return SPANS[-1]


class SpeedChart(PlotextPlot):
    """A filled line of speed over the last minutes, with a KiB/s or MiB/s axis."""

    def __init__(self, *, id: str | None = None, classes: str | None = None) -> None:
        super().__init__(id=id, classes=classes)
        self.unit = "B/s"
        """Unit of the y axis at the last redraw."""

    def show(self, history: SpeedHistory) -> None:
        """Redraw from a history."""
        span, xlabels = pick_span(history)
        points = history.window(span)
        axis = rate_axis(max((s for _, s in points), default=0.0))
        self.unit = axis.unit
        plt = self.plt
        plt.clear_figure()
        if points:
            plt.plot(
                [x for x, _ in points],
                [s / axis.factor for _, s in points],
                marker="braille",
                color=plotext_color(theme_palette(self.app).active),
                fillx=True,
            )
        plt.xlim(-span, 0)
        plt.ylim(0, axis.top)
        plt.xticks([-span, -span / 2, 0], list(xlabels))
        plt.yticks(list(axis.ticks), list(axis.labels))
        self.refresh()
