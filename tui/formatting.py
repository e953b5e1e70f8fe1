"""Pure text helpers for the dashboard: compact sizes, progress bars, states, event lines, chart axes.

Nothing here needs a running app, so every function is cheap to test and the table can compare the
plain strings it produced last time to decide which cells changed. Colours come in as a
:class:`~tui.palette.Palette` of the app's theme; without one the text is plain.

Every name, URL and reason shown goes through :func:`engine.escaping.escape_controls` here: the
engine already escapes what servers send, and this catches whatever did not come through it
(an older daemon's history, say). Escaping twice changes nothing.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, replace

from rich.text import Text

from engine.escaping import escape_controls
from engine.events import (
    CheckpointFailed,
    CheckpointRecovered,
    Event,
    ExtraBytesIgnored,
    HookFailed,
    LimitChanged,
    ScheduledLimitChanged,
    SessionSaveFailed,
    SessionSaveRecovered,
    TaskAdded,
    TaskCancelled,
    TaskCompleted,
    TaskFailed,
    TaskMoved,
    TaskPaused,
    TaskProbed,
    TaskRemoved,
    TaskRestarted,
    TaskResumed,
    TaskRetrying,
    TaskStarted,
    TaskUrlChanged,
    TaskVerifying,
)
from engine.models import SegmentState, TaskSnapshot, TaskState
from engine.units import format_bytes, format_duration, format_rate
from tui.palette import PLAIN, Palette

KiB = 1024

_EIGHTHS = " ▏▎▍▌▋▊▉"


def compact_bytes(n: float | None) -> str:
    """A size in at most five characters, binary units: ``999B``, ``1.5K``, ``12.3M``, ``123G``."""
    if n is None:
        return "?"
    value = float(max(0.0, n))
    if value < 1000:
        return f"{int(value)}B"
    for unit in "KMGTP":
        value /= 1024
        # Switch unit before the number needs four digits, so the result stays five wide.
        if value < 999.5 or unit == "P":
            return f"{value:.1f}{unit}" if value < 99.95 else f"{value:.0f}{unit}"
    return "?"  # pragma: no cover - the loop always returns


def compact_rate(n: float | None) -> str:
    """A speed like ``1.5M/s``; ``-`` for nothing."""
    if n is None or n <= 0:
        return "-"
    return compact_bytes(n) + "/s"


def short_bytes(n: float | None) -> str:
    """A size in at most eight characters with a spaced unit: ``512 B``, ``7.8 MiB``, ``1023 KiB``."""
    if n is None:
        return "?"
    value = float(max(0.0, n))
    if value < 1024:
        return f"{int(value)} B"
    for unit in ("KiB", "MiB", "GiB", "TiB"):
        value /= 1024
        if value < 1023.5 or unit == "TiB":
            return f"{value:.1f} {unit}" if value < 9.95 else f"{value:.0f} {unit}"
    return "?"  # pragma: no cover - the loop always returns


def short_rate(n: float | None) -> str:
    """A speed in at most ten characters: ``7.8 MiB/s``; ``0 B/s`` for nothing."""
    return short_bytes(0 if n is None else n) + "/s"


def percent(progress: float | None) -> str:
    """``42%``; ``?`` when unknown. Never shows 100% before the end."""
    if progress is None:
        return "?"
    pct = math.floor(progress * 100)
    return f"{pct}%"


def bar(progress: float | None, width: int, palette: Palette = PLAIN) -> Text:
    """A progress bar ``width`` cells wide with eighth-cell resolution; hatched when the size is unknown."""
    if width <= 0:
        return Text()
    if progress is None:
        return Text().append("╌" * width, style=palette.muted)
    eighths = round(max(0.0, min(1.0, progress)) * width * 8)
    full, part = divmod(eighths, 8)
    done = "█" * full + (_EIGHTHS[part] if part and full < width else "")
    text = Text()
    text.append(done, style=palette.success)
    text.append("─" * (width - len(done)), style=palette.muted)
    return text


def progress_cell(progress: float | None, width: int, palette: Palette = PLAIN) -> Text:
    """Bar and percentage in ``width`` cells: ``████▌─── 56%``."""
    label = percent(progress).rjust(4)
    text = bar(progress, max(0, width - len(label) - 1), palette)
    text.append(" " + label)
    return text


def ellipsize(text: str, width: int) -> str:
    """``text`` cut to ``width`` cells with a trailing ellipsis when it does not fit."""
    if width <= 0:
        return ""
    if len(text) <= width:
        return text
    return text[: width - 1] + "…"


def task_name(task: TaskSnapshot) -> str:
    """The file name, or the last part of the URL until the name is known."""
    if task.name:
        return escape_controls(task.name)
    tail = task.url.rstrip("/").rsplit("/", 1)[-1].split("?", 1)[0]
    return escape_controls(tail or task.url)


def state_label(task: TaskSnapshot) -> str:
    """The state as shown in the table; a failed task shows why."""
    if task.state is TaskState.FAILED and task.error:
        return f"failed: {escape_controls(task.error)}"
    return task.state.value


def state_text(task: TaskSnapshot, width: int, palette: Palette = PLAIN) -> Text:
    """The state label cut to ``width`` and coloured."""
    return Text(ellipsize(state_label(task), width), style=palette.state(task.state))


def eta_text(task: TaskSnapshot) -> str:
    """Time left while downloading; blank otherwise."""
    if task.state is not TaskState.DOWNLOADING:
        return "-"
    return format_duration(task.eta)


def clock_time(t: float) -> str:
    """``HH:MM:SS`` in local time."""
    return time.strftime("%H:%M:%S", time.localtime(t))


def limit_text(limit: int | None) -> str:
    """A speed limit for people: ``none`` or ``500 KiB/s``."""
    return "none" if limit is None else short_rate(limit)


def limit_input(limit: int | None) -> str:
    """A speed limit in the form :func:`engine.units.parse_rate` reads back: ``''``, ``500K``, ``2M``."""
    if limit is None:
        return ""
    for suffix, factor in (("G", KiB**3), ("M", KiB**2), ("K", KiB)):
        if limit % factor == 0:
            return f"{limit // factor}{suffix}"
    return str(limit)


@dataclass(frozen=True)
class LogLine:
    """One line of the event log."""

    time: float
    """When the event happened (wall clock)."""
    text: str
    """What happened, without the time."""
    level: str
    """``info``, ``success``, ``warning`` or ``error``: picks the colour."""

    def render(self, palette: Palette = PLAIN) -> Text:
        """The line with its time, coloured by level."""
        styles = {"success": palette.success, "warning": palette.warning, "error": palette.error}
        # Spans, not a base style: a muted (dimmed) base would dim a coloured line's text too.
        line = Text()
        line.append(clock_time(self.time) + " ", style=palette.muted)
        line.append(self.text, style=styles.get(self.level, palette.muted))
        return line


def describe_event(event: Event, names: dict[int, str]) -> LogLine | None:
    """The log line for a lifecycle event, or None for events too chatty to log.

    ``names`` maps task ids to display names, so lines say which file they are about.
    """
    line = _event_line(event, names)
    return None if line is None else replace(line, text=escape_controls(line.text))


def _event_line(event: Event, names: dict[int, str]) -> LogLine | None:
    def who(task_id: int) -> str:
        name = names.get(task_id)
        return f"#{task_id} {name}" if name else f"#{task_id}"

    t = event.time
    match event:
        case TaskAdded(task_id=tid, task=task):
            return LogLine(t, f"#{tid} added {task_name(task)}", "info")
        case TaskStarted(task_id=tid):
            return LogLine(t, f"{who(tid)} started", "info")
        case TaskProbed(task_id=tid, name=name, size=size, resumable=resumable):
            ranges = "ranges" if resumable else "no ranges, 1 connection"
            return LogLine(t, f"#{tid} {name}: {format_bytes(size)}, {ranges}", "info")
        case TaskRestarted(task_id=tid, reason=reason):
            return LogLine(t, f"{who(tid)} restarted from zero: {reason}", "warning")
        case TaskPaused(task_id=tid):
            return LogLine(t, f"{who(tid)} paused", "info")
        case TaskResumed(task_id=tid):
            return LogLine(t, f"{who(tid)} resumed", "info")
        case TaskRetrying(task_id=tid, reason=reason, delay=delay, attempt=attempt):
            return LogLine(t, f"{who(tid)} retry {attempt} in {delay:.1f}s: {reason}", "warning")
        case ExtraBytesIgnored(task_id=tid, extra=extra):
            return LogLine(
                t, f"{who(tid)} server sent {extra} bytes past its Content-Length (ignored)", "warning"
            )
        case TaskVerifying(task_id=tid):
            return LogLine(t, f"{who(tid)} verifying checksum", "info")
        case TaskCompleted(task_id=tid, size=size, duration=duration):
            speed = format_rate(size / duration) if duration > 0 else "-"
            return LogLine(
                t,
                f"{who(tid)} completed: {format_bytes(size)} in {format_duration(duration)}, {speed}",
                "success",
            )
        case TaskFailed(task_id=tid, reason=reason):
            return LogLine(t, f"{who(tid)} failed: {reason}", "error")
        case HookFailed(task_id=tid, hook=hook, reason=reason):
            return LogLine(t, f"{who(tid)} {hook} hook failed: {reason}", "warning")
        case TaskCancelled(task_id=tid):
            return LogLine(t, f"{who(tid)} cancelled", "info")
        case TaskRemoved(task_id=tid, deleted_files=deleted):
            return LogLine(t, f"{who(tid)} removed" + (", partial file deleted" if deleted else ""), "info")
        case TaskMoved(task_id=tid, position=position):
            return LogLine(t, f"{who(tid)} moved to position {position + 1}", "info")
        case TaskUrlChanged(task_id=tid, url=url, kept=kept, restarted=restarted):
            if restarted:
                return LogLine(t, f"{who(tid)} new URL {url}, starting over: {restarted}", "warning")
            return LogLine(t, f"{who(tid)} new URL {url}, {format_bytes(kept)} kept", "info")
        case LimitChanged(task_id=tid, limit=limit):
            scope = "global limit" if tid is None else f"{who(tid)} limit"
            return LogLine(t, f"{scope}: {limit_text(limit)}", "info")
        case ScheduledLimitChanged(rule=rule, limit=limit):
            where = "gap between rules" if rule is None else rule
            return LogLine(t, f"schedule {where}: global limit {limit_text(limit)}", "info")
        case SessionSaveFailed(reason=reason):
            return LogLine(t, f"queue not saved: {reason} (retrying)", "error")
        case SessionSaveRecovered():
            return LogLine(t, "queue saved again", "success")
        case CheckpointFailed(task_id=tid, reason=reason):
            return LogLine(t, f"{who(tid)} control file not written: {reason} (retrying)", "warning")
        case CheckpointRecovered(task_id=tid):
            return LogLine(t, f"{who(tid)} control file written again", "info")
    return None


def nice_ceiling(value: float) -> float:
    """The smallest of 1, 2, 5 times a power of ten that is at least ``value`` (1 for nothing)."""
    if value <= 0:
        return 1.0
    power = 10 ** math.floor(math.log10(value))
    for step in (1, 2, 5, 10):
        if step * power >= value * (1 - 1e-9):
            return float(step * power)
    return float(10 * power)  # pragma: no cover - the loop always returns


@dataclass(frozen=True)
class RateAxis:
    """How to draw speeds on a chart's y axis: the unit and tick labels."""

    unit: str
    """``B/s``, ``KiB/s``, ``MiB/s`` or ``GiB/s``."""
    factor: int
    """Bytes per second in one unit."""
    top: float
    """Upper limit of the axis, in units."""
    ticks: tuple[float, ...]
    """Tick positions, in units."""
    labels: tuple[str, ...]
    """Tick labels such as ``512K``."""


def rate_axis(peak: float) -> RateAxis:
    """A y axis for speeds up to ``peak`` bytes per second, with a readable unit and round ticks."""
    factor, unit = 1, "B/s"
    for f, u in ((KiB**3, "GiB/s"), (KiB**2, "MiB/s"), (KiB, "KiB/s")):
        if peak >= f:
            factor, unit = f, u
            break
    top = nice_ceiling(peak / factor) if peak > 0 else 1.0
    ticks = (0.0, top / 2, top)
    suffix = "" if factor == 1 else unit[0]
    labels = tuple(_tick_label(v) + (suffix if v else "") for v in ticks)
    return RateAxis(unit=unit, factor=factor, top=top, ticks=ticks, labels=labels)


def _tick_label(value: float) -> str:
    if value == 0:
        return "0"
    if value == int(value):
        return str(int(value))
    return f"{value:.1f}".rstrip("0").rstrip(".")


def segment_cells(task: TaskSnapshot, width: int) -> list[str]:
    """The segment map of a file in ``width`` cells, one state per cell.

    Each cell covers an equal share of the file and reads ``done`` (all its bytes are in),
    ``partial`` (some are), ``active`` (a connection is fetching it) or ``pending``.
    """
    size = task.size
    if not size or width <= 0:
        return []
    done_ranges: list[tuple[int, int]] = []
    active_ranges: list[tuple[int, int]] = []
    for seg in task.segments:
        if seg.state is SegmentState.DONE:
            done_ranges.append((seg.start, seg.end))
            continue
        if seg.done:
            done_ranges.append((seg.start, seg.start + seg.done))
        if seg.state is SegmentState.ACTIVE:
            active_ranges.append((seg.start + seg.done, seg.end))
    if task.state is TaskState.COMPLETED:
        done_ranges = [(0, size)]
    cells: list[str] = []
    for i in range(width):
        lo = size * i // width
        hi = max(lo + 1, size * (i + 1) // width)
        span = hi - lo
        covered = sum(max(0, min(hi, e) - max(lo, s)) for s, e in done_ranges)
        if covered >= span:
            cells.append("done")
        elif any(min(hi, e) > max(lo, s) for s, e in active_ranges):
            cells.append("active")
        elif covered > 0:
            cells.append("partial")
        else:
            cells.append("pending")
    return cells


SEGMENT_GLYPHS: dict[str, str] = {"done": "█", "partial": "▓", "active": "▒", "pending": "░"}
"""Glyph of each segment-map cell state; distinct glyphs so the map reads without colour."""


def segment_glyph(cell: str, palette: Palette = PLAIN) -> Text:
    """One cell of the segment map, coloured: bytes in, in flight, or still to come."""
    styles = {
        "done": palette.success,
        "partial": palette.success,
        "active": palette.warning,
        "pending": palette.muted,
    }
    return Text(SEGMENT_GLYPHS[cell], style=styles[cell])


def segment_bar(task: TaskSnapshot, width: int, palette: Palette = PLAIN) -> Text:
    """The segment map as one coloured line."""
    text = Text()
    for cell in segment_cells(task, width):
        text.append_text(segment_glyph(cell, palette))
    return text


def connection_markers(task: TaskSnapshot, width: int, palette: Palette = PLAIN) -> Text:
    """A line under the segment map with each connection's number at the byte it is fetching."""
    line = [" "] * max(0, width)
    size = task.size
    if not size or width <= 0:
        return Text("".join(line))
    for seg in task.segments:
        if seg.state is SegmentState.ACTIVE and seg.connection is not None:
            col = min(width - 1, (seg.start + seg.done) * width // size)
            label = str(seg.connection)
            start = min(col, width - len(label))
            line[start : start + len(label)] = list(label)
    return Text("".join(line), style=palette.warning)
