"""The engine's mutable record of one download, and its plain-data snapshot."""

from __future__ import annotations

import asyncio
import time
from collections import deque
from dataclasses import dataclass, field, replace
from pathlib import Path

from engine.control import FileId
from engine.escaping import escape_controls
from engine.models import SegmentSnapshot, SegmentState, TaskOptions, TaskSnapshot, TaskState
from engine.ranges import RangeSet
from engine.ratemeter import RateMeter
from engine.redaction import redact, redact_options
from engine.segments import Segment
from engine.tokenbucket import TokenBucket


@dataclass
class Connection:
    """One connection of a task: the segment it fetches and how fast."""

    number: int
    """Small number identifying the connection within its task."""
    segment: Segment | None = None
    """What it is fetching now."""
    meter: RateMeter = field(default_factory=lambda: RateMeter(window=2.0))
    """Its own speed, to spot a connection far slower than its peers."""
    started: float = field(default_factory=time.monotonic)
    """When it began its current request."""
    restart_requested: bool = False
    """Set when it should drop its connection and request its remaining bytes again."""
    slow_from: int | None = None
    """Where the span began that got it dropped as too slow: bytes past it are not progress."""


class Task:
    """Everything the engine knows about one download; only the engine mutates it."""

    def __init__(self, task_id: int, url: str, options: TaskOptions) -> None:
        self.id = task_id
        self.url = url
        """The URL as given, credentials included: never shown."""
        self.display_url = redact(url) if url else url
        self.options = options
        self.state = TaskState.QUEUED
        self.error: str | None = None
        self.retries = 0
        self.last_errors: deque[str] = deque(maxlen=5)
        self.name: str | None = None
        self.path: Path | None = None
        self.final_url: str | None = None
        self.size: int | None = None
        self.resumable: bool | None = None
        self.etag: str | None = None
        self.last_modified: str | None = None
        self.done = RangeSet()
        self.part_id: FileId | None = None
        """The part file's ``(st_dev, st_ino)`` once claimed or adopted: every reopen must find it."""
        self.plan: list[Segment] = []
        self.connections: dict[int, Connection] = {}
        self.max_connections = options.connections
        self.meter = RateMeter()
        self.bucket = TokenBucket(options.speed_limit)
        self.added_at = time.time()
        self.finished_at: float | None = None
        self.control_checked = False
        self.checkpoint_error: str | None = None
        """Why the control file could not be written, while checkpoints fail; None when they work."""
        self.runner: asyncio.Task[None] | None = None
        self.done_event = asyncio.Event()
        self._still: TaskSnapshot | None = None

    @property
    def part_path(self) -> Path | None:
        """Where the partial data lives, once the name is known."""
        return None if self.path is None else self.path.with_name(self.path.name + ".part")

    @property
    def control_path(self) -> Path | None:
        """Where the control file lives, once the name is known."""
        return None if self.path is None else self.path.with_name(self.path.name + ".part.json")

    def set_limit(self, limit: int | None) -> None:
        """Change this task's speed limit now."""
        self.options = replace(self.options, speed_limit=limit)
        self.bucket.set_rate(limit)
        self._still = None

    def set_url(self, url: str, final_url: str | None) -> None:
        """Take a new URL for the same file (an expired link replaced); the engine checked it first."""
        self.url = url
        self.display_url = redact(url) if url else url
        self.final_url = final_url
        self._still = None

    def changed(self) -> None:
        """Say the task changed outside set_state/set_limit (its run ended), so snapshots are rebuilt."""
        self._still = None

    def set_state(self, state: TaskState) -> None:
        """Move to ``state``, keeping the finished flag in step."""
        self.state = state
        self._still = None
        if state.finished:
            self.finished_at = time.time()
            self.done_event.set()
        else:
            self.finished_at = None
            self.done_event.clear()

    @property
    def bytes_done(self) -> int:
        """Bytes received: written ranges plus what connections hold in their buffers."""
        written = self.done.covered
        if self.resumable is False or not self.plan:
            return max(written, sum(s.pos - s.start for s in self.plan))
        in_flight = 0
        for seg in self.plan:
            # Bytes received but not yet written are counted from the segment's position.
            written_here = _covered_within(self.done, seg.start, seg.pos)
            in_flight += (seg.pos - seg.start) - written_here
        return written + in_flight

    def segment_snapshots(self) -> tuple[SegmentSnapshot, ...]:
        """The file's ranges for the segment map: done, in flight, pending."""
        out: list[SegmentSnapshot] = []
        active = {id(c.segment): c for c in self.connections.values() if c.segment is not None}
        covered = RangeSet()
        for seg in sorted(self.plan, key=lambda s: s.start):
            conn = active.get(id(seg))
            if seg.pos >= seg.end:
                state = SegmentState.DONE
            elif conn is not None:
                state = SegmentState.ACTIVE
            else:
                state = SegmentState.PENDING
            out.append(
                SegmentSnapshot(
                    start=seg.start,
                    end=seg.end,
                    done=seg.pos - seg.start,
                    state=state,
                    speed=conn.meter.speed if conn is not None else 0.0,
                    connection=conn.number if conn is not None else None,
                )
            )
            covered.add(seg.start, seg.end)
        # Ranges finished in an earlier run are not in this run's plan.
        for start, end in self.done.as_list():
            for gs, ge in _subtract(start, end, covered):
                out.append(SegmentSnapshot(gs, ge, ge - gs, SegmentState.DONE))
        if self.size and not out:
            out.append(SegmentSnapshot(0, self.size, 0, SegmentState.PENDING))
        elif self.size:
            pending = RangeSet((s.start, s.end) for s in out)
            for gs, ge in pending.gaps(self.size):
                out.append(SegmentSnapshot(gs, ge, 0, SegmentState.PENDING))
        out.sort(key=lambda s: s.start)
        return tuple(out)

    def snapshot(self) -> TaskSnapshot:
        """A frozen, JSON-friendly copy of the task's state.

        A task that is not running only changes through set_state or set_limit, so its snapshot
        is kept until then: with hundreds of queued or finished tasks, each tick stays cheap.
        """
        if self._still is not None:
            return self._still
        snap = self._build_snapshot()
        if self.state not in (TaskState.PROBING, TaskState.DOWNLOADING, TaskState.VERIFYING):
            self._still = snap
        return snap

    def _build_snapshot(self) -> TaskSnapshot:
        done = self.bytes_done
        remaining = None if self.size is None else max(0, self.size - done)
        running = self.state in (TaskState.PROBING, TaskState.DOWNLOADING)
        return TaskSnapshot(
            id=self.id,
            url=self.display_url,
            state=self.state,
            options=_shown_options(self.options),
            name=self.name,
            path=None if self.path is None else str(self.path),
            part_path=None if self.part_path is None else str(self.part_path),
            final_url=self.final_url,
            size=self.size,
            done=done,
            speed=self.meter.speed if running else 0.0,
            avg_speed=self.meter.avg_speed,
            eta=self.meter.eta(remaining) if running else None,
            connections=sum(1 for c in self.connections.values() if c.segment is not None),
            resumable=self.resumable,
            # Kept raw on the task (If-Range sends them back as they came), escaped where shown.
            etag=_shown(self.etag),
            last_modified=_shown(self.last_modified),
            error=self.error,
            retries=self.retries,
            last_errors=tuple(self.last_errors),
            segments=self.segment_snapshots(),
            added_at=self.added_at,
            finished_at=self.finished_at,
        )


def _shown_options(options: TaskOptions) -> TaskOptions:
    """The options a snapshot carries: redacted, and without the checksum file's table (up to
    thousands of rows, sent with every snapshot otherwise; the task keeps it)."""
    if options.checksum_table:
        options = replace(options, checksum_table=())
    return redact_options(options)


def _shown(value: str | None) -> str | None:
    """A string the server sent, as a snapshot may carry it: control characters escaped."""
    return None if value is None else escape_controls(value)


def _covered_within(ranges: RangeSet, start: int, end: int) -> int:
    total = 0
    for a, b in ranges.as_list():
        lo, hi = max(a, start), min(b, end)
        if hi > lo:
            total += hi - lo
    return total


def _subtract(start: int, end: int, covered: RangeSet) -> list[tuple[int, int]]:
    out = []
    for gs, ge in covered.gaps(end):
        lo, hi = max(gs, start), min(ge, end)
        if hi > lo:
            out.append((lo, hi))
    return out
