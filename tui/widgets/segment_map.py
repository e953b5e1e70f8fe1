"""The segment map: the file drawn across the width, done / in flight / pending, with each connection."""

from __future__ import annotations

from rich.console import RenderableType
from rich.text import Text
from textual.widget import Widget

from engine.models import SegmentState, TaskSnapshot
from engine.units import format_bytes
from tui.formatting import compact_bytes, compact_rate, connection_markers, segment_bar, segment_glyph
from tui.palette import PLAIN, Palette, theme_palette


def connection_lines(task: TaskSnapshot, palette: Palette = PLAIN) -> list[Text]:
    """One line per connection at work: its number, where it is in the file, how much is left, its speed."""
    lines: list[Text] = []
    size = task.size or 0
    for seg in task.segments:
        if seg.state is not SegmentState.ACTIVE:
            continue
        pos = seg.start + seg.done
        where = f"{pos / size:4.0%}" if size else compact_bytes(pos)
        line = Text(
            f"conn {seg.connection if seg.connection is not None else '?':>2} ", style=palette.warning
        )
        line.append(f"at {where}  {compact_bytes(seg.end - pos)} left  ")
        line.append(compact_rate(seg.speed), style=palette.active)
        lines.append(line)
    return lines


def legend(palette: Palette = PLAIN) -> Text:
    """What each glyph of the map means."""
    text = Text()
    for state, label in (
        ("done", "done"),
        ("partial", "partly done"),
        ("active", "in flight"),
        ("pending", "pending"),
    ):
        text.append_text(segment_glyph(state, palette))
        text.append(f" {label}  ")
    return text


class SegmentMap(Widget):
    """Draws one task's byte ranges at the widget's width."""

    def __init__(self, *, id: str | None = None, classes: str | None = None) -> None:
        super().__init__(id=id, classes=classes)
        self.task_snapshot: TaskSnapshot | None = None
        """The task drawn."""
        self._key: object = None
        self._rows = -1

    def show(self, task: TaskSnapshot) -> None:
        """Draw this task; refreshes only if what is drawn changed."""
        key = (task.state, task.size, task.done, task.segments, self.app.theme)
        self.task_snapshot = task
        if key != self._key:
            rows = len(connection_lines(task))
            self._key = key
            # Height is auto: a layout pass is needed only when the number of lines changes.
            self.refresh(layout=rows != self._rows)
            self._rows = rows

    def render(self) -> RenderableType:
        """The map, the connection markers, the legend and one line per connection."""
        task = self.task_snapshot
        width = self.content_region.width or self.size.width
        palette = theme_palette(self.app)
        if task is None:
            return Text("")
        if not task.size:
            received = format_bytes(task.done)
            return Text(f"size unknown: {received} received in one stream (no ranges)", style=palette.muted)
        if not task.segments and task.state.value != "completed":
            return Text("no segments yet", style=palette.muted)
        out = Text()
        out.append_text(segment_bar(task, width, palette))
        out.append("\n")
        out.append_text(connection_markers(task, width, palette))
        out.append("\n")
        out.append_text(legend(palette))
        for line in connection_lines(task, palette):
            out.append("\n")
            out.append_text(line)
        return out
