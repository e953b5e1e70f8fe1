"""What the dashboard knows: the latest engine snapshot, speed histories and the event log.

The model is plain Python fed by the app's event worker; screens read it on their own timers.
Times come from the engine's snapshots, never from a local clock, so the same input always
gives the same picture (the snapshot tests rely on that).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass

from engine.events import Event, SegmentFinished, TaskRemoved
from engine.models import EngineSnapshot, TaskSnapshot, TaskState
from tui.formatting import LogLine, describe_event, task_name

HISTORY_SECONDS = 300
"""How much speed history the charts keep (one sample a second)."""
LOG_LINES = 500
"""Event log lines kept."""


class SpeedHistory:
    """Speed samples at least ``step`` seconds apart, the newest ``keep`` of them."""

    def __init__(self, step: float = 1.0, keep: int = HISTORY_SECONDS) -> None:
        self.step = step
        """Least time between two samples, in seconds."""
        self.samples: deque[tuple[float, float]] = deque(maxlen=keep)
        """``(time, bytes per second)`` pairs, oldest first."""

    def record(self, t: float, speed: float) -> bool:
        """Add a sample unless the previous one is too recent; True if added."""
        if self.samples and t - self.samples[-1][0] < self.step * 0.999:
            return False
        self.samples.append((t, speed))
        return True

    def window(self, seconds: float) -> list[tuple[float, float]]:
        """Samples of the last ``seconds``, as ``(seconds before the newest, speed)`` pairs."""
        if not self.samples:
            return []
        newest = self.samples[-1][0]
        return [(t - newest, s) for t, s in self.samples if newest - t <= seconds]

    @property
    def peak(self) -> float:
        """The highest speed kept."""
        return max((s for _, s in self.samples), default=0.0)


SORT_KEYS: tuple[str, ...] = ("queue", "name", "size", "progress", "speed", "eta", "state")
"""The sort orders ``s`` cycles through; ``queue`` is the engine's own order."""

_STATE_ORDER = {
    state: i
    for i, state in enumerate(
        (
            TaskState.DOWNLOADING,
            TaskState.PROBING,
            TaskState.VERIFYING,
            TaskState.QUEUED,
            TaskState.PAUSED,
            TaskState.FAILED,
            TaskState.CANCELLED,
            TaskState.COMPLETED,
        )
    )
}


def order_tasks(
    tasks: Iterable[TaskSnapshot], sort: str = "queue", filter_text: str = ""
) -> list[TaskSnapshot]:
    """The tasks to show, filtered by a case-insensitive name substring and sorted.

    Sizes, progress and speed sort largest first (the interesting rows on top); ties keep queue order.
    """
    needle = filter_text.strip().lower()
    rows = [t for t in tasks if not needle or needle in task_name(t).lower()]
    if sort == "name":
        rows.sort(key=lambda t: task_name(t).lower())
    elif sort == "size":
        rows.sort(key=lambda t: -(t.size or 0))
    elif sort == "progress":
        rows.sort(key=lambda t: -(t.progress or 0.0))
    elif sort == "speed":
        rows.sort(key=lambda t: -t.speed)
    elif sort == "eta":
        rows.sort(key=lambda t: (t.eta is None, t.eta or 0.0))
    elif sort == "state":
        rows.sort(key=lambda t: _STATE_ORDER[t.state])
    return rows


@dataclass(frozen=True)
class Totals:
    """The summary pane's numbers."""

    active: int
    """Tasks probing, downloading or verifying."""
    queued: int
    """Tasks waiting for a slot."""
    paused: int
    """Tasks paused by the user."""
    completed: int
    """Tasks finished successfully."""
    failed: int
    """Tasks that failed for good."""
    cancelled: int
    """Tasks cancelled."""

    @property
    def success_rate(self) -> float | None:
        """Completed over completed plus failed; None before anything finished."""
        finished = self.completed + self.failed
        return self.completed / finished if finished else None

    @property
    def unfinished(self) -> int:
        """Tasks that would still download if left alone."""
        return self.active + self.queued


class DashboardModel:
    """The dashboard's state, updated from engine events."""

    def __init__(self) -> None:
        self.snapshot = EngineSnapshot()
        """The latest engine snapshot."""
        self.version = 0
        """Bumped on every new snapshot, so views can tell whether to redraw."""
        self.history = SpeedHistory()
        """Total speed, one sample a second."""
        self.task_history: dict[int, SpeedHistory] = {}
        """Each task's speed, sampled with :attr:`history`."""
        self.history_version = 0
        """Bumped whenever a sample is added."""
        self.log: deque[LogLine] = deque(maxlen=LOG_LINES)
        """The newest event log lines."""
        self.log_count = 0
        """Lines ever logged; views compare it with what they have written."""
        self.last_event_time = 0.0
        """Engine time of the newest lifecycle event that changes a row (not a finished piece)."""
        self.names: dict[int, str] = {}
        """Display names of the tasks seen, for log lines about removed tasks."""

    def apply_snapshot(self, snap: EngineSnapshot) -> None:
        """Take a new snapshot for the table and summary (speeds are sampled by :meth:`record_history`)."""
        if snap.time < self.snapshot.time:
            return  # an older snapshot fetched on request arrived after a newer pushed one
        self.snapshot = snap
        self.version += 1
        for task in snap.tasks:
            self.names[task.id] = task_name(task)

    def record_history(self, snap: EngineSnapshot) -> bool:
        """Sample the total and per-task speeds if a second has passed since the last sample."""
        if not self.history.record(snap.time, snap.speed):
            return False
        alive = set()
        for task in snap.tasks:
            alive.add(task.id)
            if task.state.active or task.id in self.task_history:
                self.task_history.setdefault(task.id, SpeedHistory()).record(snap.time, task.speed)
        for tid in list(self.task_history):
            if tid not in alive:
                del self.task_history[tid]
        self.history_version += 1
        return True

    def apply_event(self, event: Event) -> LogLine | None:
        """Log a lifecycle event; returns the line added, if any."""
        if not isinstance(event, SegmentFinished):
            # A finished piece changes no row beyond what the next progress event brings; counting
            # it made the app fetch a whole snapshot for each one (50 downloads: more than one a second).
            self.last_event_time = max(self.last_event_time, event.time)
        line = describe_event(event, self.names)
        if isinstance(event, TaskRemoved):
            self.task_history.pop(event.task_id, None)
        if line is not None:
            self.log.append(line)
            self.log_count += 1
        return line

    @property
    def stale(self) -> bool:
        """True if a lifecycle event is newer than the snapshot, so the table may be out of date."""
        return self.last_event_time > self.snapshot.time

    def totals(self) -> Totals:
        """Task counts by state, from the snapshot's counts or, without them, from its tasks."""
        counts = dict(self.snapshot.counts)
        if not counts:
            for task in self.snapshot.tasks:
                counts[task.state.value] = counts.get(task.state.value, 0) + 1

        def n(*states: TaskState) -> int:
            return sum(counts.get(s.value, 0) for s in states)

        return Totals(
            active=n(TaskState.PROBING, TaskState.DOWNLOADING, TaskState.VERIFYING),
            queued=n(TaskState.QUEUED),
            paused=n(TaskState.PAUSED),
            completed=n(TaskState.COMPLETED),
            failed=n(TaskState.FAILED),
            cancelled=n(TaskState.CANCELLED),
        )

    @property
    def save_error(self) -> str | None:
        """Why the engine cannot save its queue right now (it keeps retrying); None while it can."""
        return self.snapshot.save_error

    def task(self, task_id: int) -> TaskSnapshot | None:
        """The latest snapshot of one task."""
        return self.snapshot.task(task_id)
