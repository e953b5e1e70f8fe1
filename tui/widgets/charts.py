"""Speed charts: one PlotextPlot each, with its own figure, redrawn only when a sample was added
that can move the picture."""

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


def redraw_step(span: float, width: int) -> float:
    """Seconds of history one braille dot column of a ``width``-cell chart covers (two per cell).

    A chart redrawn more often than this shows the same picture shifted by less than a dot: with a
    five-minute window that is every other second, and plotext's filled line, the dashboard's
    costliest drawing, is built half as often.
    """
    return span / max(1, 2 * width)


class SpeedChart(PlotextPlot):
    """A filled line of speed over the last minutes, with a KiB/s or MiB/s axis."""

    def __init__(self, *, id: str | None = None, classes: str | None = None) -> None:
        super().__init__(id=id, classes=classes)
        self.unit = "B/s"
        """Unit of the y axis at the last redraw."""
        self._drawn: tuple[float, float, float] | None = None  # span, newest sample, peak

    def forget(self) -> None:
        """Draw at the next :meth:`show` whatever the history (new colours, say)."""
        self._drawn = None

    def show(self, history: SpeedHistory) -> None:
        """Redraw from a history, unless the picture cannot have moved by a dot since the last time
        (same window and scale, newest sample less than :func:`redraw_step` newer)."""
        span, xlabels = pick_span(history)
        samples = history.samples
        newest = samples[-1][0] if samples else 0.0
        peak = history.peak
        if self._drawn is not None:
            drawn_span, drawn_newest, drawn_peak = self._drawn
            moved = newest - drawn_newest
            step = redraw_step(span, self.size.width)
            if span == drawn_span and peak == drawn_peak and 0 <= moved < step * 0.999:
                return
        self._drawn = (span, newest, peak)
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
