"""``fetchtop get``: download URLs with live progress on a terminal, plain lines otherwise.

No Textual here: this is the headless path and must start fast.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import sys
import time
from typing import TYPE_CHECKING, TextIO, TypedDict

from engine.engine import Engine
from engine.escaping import escape_controls
from engine.events import (
    CheckpointFailed,
    Event,
    ExtraBytesIgnored,
    HookFailed,
    ProgressUpdated,
    ScheduledLimitChanged,
    TaskAdded,
    TaskCompleted,
    TaskFailed,
    TaskRestarted,
    TaskRetrying,
)
from engine.models import EngineSnapshot, ScheduleStatus, TaskSnapshot, TaskState
from engine.schedule import status_note
from engine.units import format_bytes, format_duration, format_rate

if TYPE_CHECKING:
    from rich.console import RenderableType
    from rich.progress import Progress, ProgressColumn, Task, TaskID

    from tui.options import DownloadRequest

PLAIN_INTERVAL = 5.0
"""Seconds between progress lines when output is not a terminal."""


class Reporter:
    """Shows progress; the base class shows nothing but errors."""

    def __init__(self, out: TextIO, err: TextIO) -> None:
        self.out = out
        self.err = err
        self._urls: dict[int, str] = {}
        self._overlong: set[int] = set()

    def url_of(self, task_id: int) -> str:
        """The (password-free) URL of a task, as announced when it was added."""
        return self._urls.get(task_id, f"task {task_id}")

    def event(self, event: Event) -> None:
        """React to a lifecycle event."""
        if isinstance(event, TaskAdded):
            self._urls[event.task_id] = event.task.url
        elif isinstance(event, TaskFailed):
            self.error(f"{self.url_of(event.task_id)}: {event.reason}")
        elif isinstance(event, HookFailed):
            # Never fatal (the file is there), but the user asked for it to run: always a line.
            self.error(f"{self.url_of(event.task_id)}: {event.hook} hook failed: {event.reason}")
        elif isinstance(event, CheckpointFailed):
            # Not fatal, but a crash now would lose progress: worth a line even when quiet.
            self.error(f"{self.url_of(event.task_id)}: control file not written: {event.reason} (retrying)")
        elif isinstance(event, ExtraBytesIgnored) and event.task_id not in self._overlong:
            # The file is right, but the server is broken: say so once per task, even when quiet.
            self._overlong.add(event.task_id)
            self.error(
                f"{self.url_of(event.task_id)}: server sent more than its Content-Length; "
                f"kept the declared length, ignored {event.extra} extra bytes"
            )

    def progress(self, snapshot: EngineSnapshot) -> None:
        """React to a progress tick."""

    def scheduled(self, status: ScheduleStatus) -> None:
        """Say which limit the bandwidth schedule applies: at start and at each change."""

    def error(self, line: str) -> None:
        """Print one error line to stderr, always."""
        # The engine escaped what the server sent; escaping again is free and catches anything missed.
        print(f"fetchtop: {escape_controls(line)}", file=self.err, flush=True)

    def close(self, snapshot: EngineSnapshot) -> None:
        """The end: leave the terminal tidy."""


class PlainReporter(Reporter):
    """Periodic one-line-per-task progress for logs and pipes."""

    def __init__(self, out: TextIO, err: TextIO) -> None:
        super().__init__(out, err)
        self._last = 0.0

    def event(self, event: Event) -> None:
        super().event(event)
        if isinstance(event, TaskCompleted):
            rate = event.size / event.duration if event.duration > 0 else 0.0
            self._line(f"completed {event.path} ({format_bytes(event.size)}, {format_rate(rate)})")
        elif isinstance(event, TaskRetrying):
            self._line(f"task {event.task_id}: retrying in {event.delay:.1f}s: {event.reason}")
        elif isinstance(event, TaskRestarted):
            self._line(f"task {event.task_id}: restarting: {event.reason}")
        elif isinstance(event, ScheduledLimitChanged):
            self.scheduled(ScheduleStatus(event.rule, event.limit, event.next_change))

    def scheduled(self, status: ScheduleStatus) -> None:
        self._line(f"limit {format_limit(status.limit)} ({status_note(status)})")

    def progress(self, snapshot: EngineSnapshot) -> None:
        now = time.monotonic()
        if now - self._last < PLAIN_INTERVAL:
            return
        self._last = now
        for task in snapshot.tasks:
            if task.state in (TaskState.DOWNLOADING, TaskState.VERIFYING):
                self._line(describe(task))

    def _line(self, text: str) -> None:
        print(escape_controls(text), file=self.out, flush=True)


def format_limit(limit: int | None) -> str:
    """``1.0 MiB/s``, or ``none`` for no limit."""
    return "none" if limit is None else format_rate(limit)


def describe(task: TaskSnapshot) -> str:
    """One line of a task's progress."""
    pct = f"{task.progress * 100:5.1f}%" if task.progress is not None else "    ?"
    return (
        f"{task.name or task.url}  {pct}  {format_bytes(task.done)}/{format_bytes(task.size)}  "
        f"{format_rate(task.speed)} now  {format_rate(task.avg_speed)} avg  ETA {format_duration(task.eta)}"
    )


NAME_WIDTH = 20
"""Most columns a file name takes in a progress row; a longer one is cut, never the bar."""
WIDE = 110
"""Terminal columns from which a row also shows the average speed."""


class RichReporter(Reporter):
    """Live progress bars, one per file; a failed file's row says why instead of a bar."""

    def __init__(self, out: TextIO, err: TextIO, width: int | None = None) -> None:
        super().__init__(out, err)
        from rich.console import Console
        from rich.progress import Progress, TextColumn
        from rich.table import Column

        console = Console(file=out, width=width)
        fields: list[str | ProgressColumn] = [
            # No markup: the description is a name the server chose, and "[/x]" would crash Rich.
            TextColumn(
                "{task.description}",
                style="bold",
                markup=False,
                table_column=Column(width=NAME_WIDTH, no_wrap=True, overflow="ellipsis"),
            ),
            _bar_or_failure(),
            TextColumn("{task.fields[pct]}", markup=False),
            TextColumn("{task.fields[amount]}", markup=False),
            TextColumn("{task.fields[speed]}", style="green", markup=False),
        ]
        if console.width >= WIDE:
            fields.append(TextColumn("{task.fields[avg]}", markup=False))
        fields.append(TextColumn("{task.fields[eta]}", style="cyan", markup=False))
        self._progress: Progress = Progress(
            *fields,
            console=console,
            # The row fills the terminal: the bar takes what the other columns leave.
            expand=True,
            auto_refresh=True,
            refresh_per_second=4,
            # Rich would send stderr into the bars' console (stdout); errors must stay on stderr.
            redirect_stderr=False,
        )
        self._rows: dict[int, TaskID] = {}
        self._err_is_screen = err.isatty()
        self._progress.start()

    def error(self, line: str) -> None:
        from rich.text import Text

        line = escape_controls(line)
        if self._err_is_screen:
            # Same screen as the bars: print through their console so the display stays intact.
            self._progress.console.print(Text.assemble(("fetchtop: ", "red"), line))
        else:
            super().error(line)

    def event(self, event: Event) -> None:
        from rich.text import Text

        super().event(event)
        if isinstance(event, TaskRetrying):
            self._progress.console.print(
                Text.assemble(
                    ("retry ", "yellow"),
                    f"task {event.task_id} in {event.delay:.1f}s: {escape_controls(event.reason)}",
                )
            )

    def progress(self, snapshot: EngineSnapshot) -> None:
        for task in snapshot.tasks:
            row = self._rows.get(task.id)
            fields = row_fields(task)
            total = float(task.size) if task.size else None
            name = escape_controls(task.name or task.url)
            if row is None:
                self._rows[task.id] = self._progress.add_task(
                    name, total=total, completed=task.done, **fields
                )
            else:
                self._progress.update(row, description=name, total=total, completed=task.done, **fields)

    def close(self, snapshot: EngineSnapshot) -> None:
        self.progress(snapshot)
        self._progress.stop()


class RowFields(TypedDict):
    """The text cells of one progress row, besides its name and bar."""

    failed: str
    """Why the download failed; empty while it has not."""
    pct: str
    """Percent done."""
    amount: str
    """Bytes done of the size."""
    speed: str
    """Current speed."""
    avg: str
    """Average speed (wide terminals only)."""
    eta: str
    """Time left, or ``done``."""


def row_fields(task: TaskSnapshot) -> RowFields:
    """The text cells of a task's progress row; a failed task's reason replaces its figures."""
    if task.state is TaskState.FAILED:
        reason = escape_controls(task.error or "unknown error")
        return RowFields(failed=reason, pct="", amount="", speed="", avg="", eta="")
    pct = f"{100 * task.done / task.size:5.1f}%" if task.size else "    ?"
    eta = "done" if task.state is TaskState.COMPLETED else f"ETA {format_duration(task.eta)}"
    return RowFields(
        failed="",
        pct=pct,
        amount=f"{format_bytes(task.done)}/{format_bytes(task.size)}",
        speed=format_rate(task.speed),
        avg=f"avg {format_rate(task.avg_speed)}",
        eta=eta,
    )


def _bar_or_failure() -> ProgressColumn:
    """A column that draws the bar, or ``failed: <reason>`` in its place; it takes the room left.

    Built on first use: Rich is only imported when bars are shown.
    """
    from rich.progress import BarColumn, ProgressColumn
    from rich.table import Column
    from rich.text import Text

    class BarOrFailure(ProgressColumn):
        def __init__(self) -> None:
            super().__init__(table_column=Column(ratio=1, min_width=10, no_wrap=True, overflow="ellipsis"))
            self._bar = BarColumn(bar_width=None)

        def render(self, task: Task) -> RenderableType:
            failed = task.fields.get("failed")
            if failed:
                return Text(f"failed: {failed}", style="red", no_wrap=True, overflow="ellipsis")
            return self._bar.render(task)

    return BarOrFailure()


def make_reporter(quiet: bool, out: TextIO = sys.stdout, err: TextIO = sys.stderr) -> Reporter:
    """Bars on a terminal, lines elsewhere, nothing with ``-q``."""
    if quiet:
        return Reporter(out, err)
    if out.isatty():
        return RichReporter(out, err)
    return PlainReporter(out, err)


async def download(request: DownloadRequest, reporter: Reporter) -> int:
    """Run every download of the request; the exit status says whether all completed."""
    async with Engine(request.config) as engine:
        metrics = None
        if request.metrics_port is not None:
            from engine.metrics import start_metrics

            metrics = await start_metrics(engine, request.metrics_addr, request.metrics_port)
        try:
            # Quiet runs only need failures: not building snapshots each tick saves CPU.
            events = engine.subscribe(progress=not request.quiet)
            schedule = engine.snapshot().schedule
            if schedule is not None:  # applied at start, before there was anyone to tell
                reporter.scheduled(schedule)
            downloads = request.downloads or tuple((url, request.options) for url in request.urls)
            ids = [await engine.add(url, options) for url, options in downloads]

            async def pump() -> None:
                async for event in events:
                    if isinstance(event, ProgressUpdated):
                        reporter.progress(event.snapshot)
                    else:
                        reporter.event(event)

            pumping = asyncio.create_task(pump())
            try:
                final = await engine.wait(ids)
                # A download's hook is part of it: its failure is reported before the pump ends.
                await engine.hooks_idle()
            finally:
                # Drain: the reporter still gets every event published so far, then the pump ends.
                await events.aclose()
                with contextlib.suppress(asyncio.CancelledError):
                    await pumping
            reporter.close(final)
        finally:
            if metrics is not None:
                await metrics.close()
    failed = [t for t in final.tasks if t.state is not TaskState.COMPLETED]
    return 1 if failed else 0


def run_get(request: DownloadRequest) -> int:
    """``fetchtop get``: returns 0 if all completed, 1 if any failed, 130 if interrupted."""
    reporter = make_reporter(request.quiet)

    async def main() -> int:
        # SIGTERM stops as cleanly as Ctrl-C: the engine saves resumable state on the way out.
        current = asyncio.current_task()
        loop = asyncio.get_running_loop()
        if current is not None:
            with contextlib.suppress(NotImplementedError, RuntimeError):
                loop.add_signal_handler(signal.SIGTERM, current.cancel)
        try:
            return await download(request, reporter)
        except asyncio.CancelledError:
            return 130

    try:
        status = asyncio.run(main())
    except KeyboardInterrupt:
        status = 130
    if status == 130:
        reporter.error("interrupted; partial downloads are saved, run the same command to resume")
    return status
