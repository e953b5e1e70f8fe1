"""The Engine: a queue of downloads run concurrently, steered by commands, observed through events."""

from __future__ import annotations

import asyncio
import contextlib
import math
import time
from collections.abc import Callable, Iterable
from datetime import datetime
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING

from engine import control
from engine.backoff import backoff_delay
from engine.bus import EventBus, Subscription, progress_interval
from engine.client import EngineError
from engine.config import EngineConfig, resolve_output, validate_options
from engine.control import ControlData
from engine.download import Download
from engine.errors import DownloadError
from engine.events import (
    Event,
    LimitChanged,
    ProgressUpdated,
    ScheduledLimitChanged,
    SessionSaveFailed,
    SessionSaveRecovered,
    TaskAdded,
    TaskCancelled,
    TaskFailed,
    TaskMoved,
    TaskPaused,
    TaskRemoved,
    TaskResumed,
    TaskStarted,
    TaskUrlChanged,
)
from engine.hooks import HookRunner
from engine.http import classify
from engine.models import EngineSnapshot, ScheduleStatus, TaskOptions, TaskSnapshot, TaskState
from engine.rangeclient import RangeClient
from engine.ranges import RangeSet
from engine.ratemeter import RateMeter
from engine.redaction import redact
from engine.schedule import Active
from engine.session import load_session, save_session
from engine.seturl import probe_url
from engine.task import Task
from engine.tokenbucket import TokenBucket
from engine.urlcheck import Held, Remote, mismatch

if TYPE_CHECKING:
    import aiohttp

READ_BUFSIZE = 256 * 1024
"""aiohttp's per-response buffer: big enough that fast loopback reads come in large pieces."""
SAVE_BACKOFF_BASE = 0.5
"""Ceiling in seconds of the wait before the first retry of a failed session save (doubling)."""
SAVE_BACKOFF_CAP = 30.0
"""Largest wait ceiling between retries of a failed session save: the most a fix waits to be used."""
SAVE_RETRY_FLOOR = 0.1
"""Least wait between two failed saves, so full jitter never makes the retries spin."""
FINAL_SAVE_TRIES = 3
"""Attempts of the last save on close before the engine gives up and reports it."""
FINAL_SAVE_DELAY = 0.5
"""Seconds between those attempts (a passing EIO gets a chance; a full disk is not waited out)."""
_FINISHED = frozenset(state for state in TaskState if state.finished)
"""States of a task that claims no file name any more."""
SCHEDULE_RECHECK = 60.0
"""Most seconds between two looks at the schedule: a wall clock set forward or back (NTP, suspend,
a time-zone change) is noticed within this, since sleeping runs on the monotonic clock."""
SCHEDULE_MIN_SLEEP = 0.01
"""Least sleep between two looks, so rounding at a boundary never makes the loop spin."""


class Engine:
    """Runs downloads; implements :class:`engine.client.EngineClient` in-process."""

    def __init__(self, config: EngineConfig | None = None, clock: Callable[[], float] = time.time) -> None:
        self.config = config or EngineConfig()
        self._clock = clock  # wall clock the schedule reads local time from (tests move it)
        self._bus = EventBus()
        self._tasks: dict[int, Task] = {}
        self._order: list[int] = []
        self._next_id = 1
        self._host_slots: dict[str, asyncio.Semaphore] = {}
        self.global_bucket = TokenBucket(self.config.speed_limit)
        self.backoff_base = self.config.backoff_base
        self.backoff_cap = self.config.backoff_cap
        self.checkpoint_interval = self.config.checkpoint_interval
        self._meter = RateMeter()
        self._downloaded = 0
        self._session: aiohttp.ClientSession | None = None
        self._started = False
        self._running = 0
        self._range_client = RangeClient()
        self._ticker: asyncio.Task[None] | None = None
        self._closed = False
        self._control_index: dict[str, dict[str, list[tuple[Path, ControlData]]]] = {}
        self._save_wanted = asyncio.Event()
        self._closing = asyncio.Event()
        self._saver: asyncio.Task[None] | None = None
        self._save_error: str | None = None
        self._hooks = HookRunner(
            self.config.on_complete,
            self.config.on_error,
            self.config.hook_timeout,
            lookup=self.task_snapshot,
            publish=self._bus.publish,
        )
        self._relinking: set[int] = set()
        """Tasks whose new URL is being asked about (set_url): not started until it has answered."""
        self._scheduled: Active | None = None
        self._schedule_overridden = False
        self._scheduler: asyncio.Task[None] | None = None

    # ----- context ---------------------------------------------------------------------------

    async def __aenter__(self) -> Engine:
        await self.start()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    async def start(self) -> None:
        """Restore a saved queue, start publishing progress (the HTTP session opens when first used)."""
        self._started = True
        self._meter.start()
        if self.config.session_path:
            for entry in await load_session(Path(self.config.session_path)):
                task = self._new_task(entry.url, entry.options)
                if entry.paused:
                    task.set_state(TaskState.PAUSED)
                self._bus.publish(TaskAdded(time.time(), task.id, task=task.snapshot()))
        self._ticker = asyncio.create_task(self._tick_loop())
        if self.config.schedule is not None:
            self._apply_schedule()  # before any download starts, so none runs at the wrong rate
            self._scheduler = asyncio.create_task(self._schedule_loop())
        if self.config.session_path:
            self._saver = asyncio.create_task(self._save_loop(Path(self.config.session_path)))
        self._schedule()

    async def close(self) -> None:
        """Pause what is running (saving resumable state), save the queue, close everything."""
        if self._closed:
            return
        self._closed = True
        self._closing.set()  # cuts short a saver waiting out its backoff
        # A runner clears task.runner when it ends, so hold on to them before awaiting any.
        runners = [t.runner for t in self._tasks.values() if t.runner is not None]
        for runner in runners:
            runner.cancel()
        for runner in runners:
            with contextlib.suppress(asyncio.CancelledError):
                await runner
        if self._saver is not None:
            self._save_wanted.set()  # the last save, of the state the runners left
            await self._saver
        for loop in (self._ticker, self._scheduler):
            if loop is not None:
                loop.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await loop
        # Hooks of downloads that ended are waited for (each is killed at its timeout), before the
        # bus closes so their failures still reach subscribers (the daemon's log).
        try:
            await self._hooks.close()
        finally:
            # Cancelled while hooks ran (they are killed then), the engine still closes all the way.
            self._publish_progress()
            if self._session is not None:
                await self._session.close()
            self._range_client.close()
            self._bus.close()

    # ----- what downloads need (engine.transfer.Context) -----------------------------------

    @property
    def session(self) -> aiohttp.ClientSession:
        """The shared HTTP client session, made when first asked for.

        Not at start: importing aiohttp is a third of a short download's run, and a download the
        range client carries alone (engine.transfer.Transfer.open_first) never needs it.
        """
        if self._session is None:
            if not self._started or self._closed:
                raise EngineError("the engine is not running")
            import aiohttp

            from engine.connector import BoundedConnector

            self._session = aiohttp.ClientSession(
                connector=BoundedConnector(limit=0, limit_per_host=0, ttl_dns_cache=60),
                trust_env=True,
                auto_decompress=False,
                read_bufsize=READ_BUFSIZE,
                timeout=aiohttp.ClientTimeout(total=None),
            )
        return self._session

    @property
    def has_cookies(self) -> bool:
        """Whether the HTTP client session holds cookies a server set (the range client sends none)."""
        return self._session is not None and len(self._session.cookie_jar) > 0

    @property
    def running_downloads(self) -> int:
        """Downloads running now, all tasks together (they share the receive-buffer budget)."""
        return self._running

    @property
    def range_client(self) -> RangeClient:
        """The shared client for ranged pieces received into reusable buffers."""
        return self._range_client

    def host_slot(self, host: str) -> asyncio.Semaphore:
        """The semaphore capping connections to one host across tasks."""
        slot = self._host_slots.get(host)
        if slot is None:
            slot = self._host_slots[host] = asyncio.Semaphore(self.config.per_host)
        return slot

    def publish(self, event: Event) -> None:
        """Publish an event to every subscriber (and start the hook a completion calls for)."""
        self._bus.publish(event)
        if self._hooks.enabled:
            self._hooks.observe(event)

    async def hooks_idle(self) -> None:
        """Return once the hooks started so far have ended (``fetchtop get`` waits for them)."""
        await self._hooks.idle()

    def received(self, nbytes: int) -> None:
        """Count bytes for the engine-wide totals."""
        self._downloaded += nbytes
        self._meter.add(nbytes)

    async def controls_for(self, directory: Path, url: str) -> list[tuple[Path, ControlData]]:
        """Control files in ``directory`` left for ``url`` by an earlier run.

        The directory is read once per engine, not once per task: with hundreds of small
        files queued, reading every control file for every task would be quadratic.
        """
        key = str(directory)
        index = self._control_index.get(key)
        if index is None:
            index = self._control_index[key] = await control.index_controls(directory)
        return index.get(url, [])

    def claimed_paths(self) -> set[Path]:
        """Final paths claimed by unfinished tasks."""
        # Called a few times per file over every task of the engine: with hundreds of small files
        # queued it is quadratic, so the loop stays lean (a set lookup, not a property per task).
        return {t.path for t in self._tasks.values() if t.path is not None and t.state not in _FINISHED}

    # ----- commands --------------------------------------------------------------------------

    async def add(self, url: str, options: TaskOptions | None = None) -> int:
        """Queue a download; returns its task id. Bad options raise EngineError."""
        if self._closed:
            raise EngineError("the engine is closed")
        opts = resolve_output(options or self.config.defaults)
        validate_options(opts)
        task = self._new_task(url, opts)
        self._bus.publish(TaskAdded(time.time(), task.id, task=task.snapshot()))
        self._schedule()
        self._save_soon()
        return task.id

    def _new_task(self, url: str, options: TaskOptions) -> Task:
        task = Task(self._next_id, url, options)
        self._next_id += 1
        self._tasks[task.id] = task
        self._order.append(task.id)
        return task

    def _get(self, task_id: int) -> Task:
        task = self._tasks.get(task_id)
        if task is None:
            raise EngineError(f"no task with id {task_id}")
        return task

    async def pause(self, task_id: int) -> None:
        """Pause a queued or running task, keeping its progress."""
        task = self._get(task_id)
        if task.state.finished or task.state is TaskState.PAUSED:
            return
        await self._stop(task, TaskState.PAUSED)
        self._bus.publish(TaskPaused(time.time(), task.id))
        self._schedule()
        self._save_soon()

    async def resume(self, task_id: int) -> None:
        """Queue a paused, failed or cancelled task again; it continues where it stopped."""
        task = self._get(task_id)
        if task.state not in (TaskState.PAUSED, TaskState.FAILED, TaskState.CANCELLED):
            return
        task.error = None
        task.set_state(TaskState.QUEUED)
        self._bus.publish(TaskResumed(time.time(), task.id))
        self._schedule()
        self._save_soon()

    async def cancel(self, task_id: int) -> None:
        """Stop a task for good; its partial file stays until it is removed."""
        task = self._get(task_id)
        if task.state.finished:
            return
        await self._stop(task, TaskState.CANCELLED)
        self._bus.publish(TaskCancelled(time.time(), task.id))
        self._schedule()
        self._save_soon()

    async def remove(self, task_id: int, delete_files: bool = False) -> None:
        """Cancel a task and forget it, deleting its partial and control files if asked."""
        task = self._get(task_id)
        if not task.state.finished:
            await self._stop(task, TaskState.CANCELLED)
        deleted = False
        if delete_files and task.state is not TaskState.COMPLETED:
            paths = [p for p in (task.part_path, task.control_path) if p is not None]
            await asyncio.to_thread(control.remove_quietly, *paths)
            deleted = bool(paths)
        del self._tasks[task_id]
        self._order.remove(task_id)
        self._bus.publish(TaskRemoved(time.time(), task_id, deleted_files=deleted))
        self._schedule()
        self._save_soon()

    async def pause_all(self) -> None:
        """Pause every task that is queued or running."""
        for task_id in list(self._order):
            task = self._tasks[task_id]
            if task.state is TaskState.QUEUED or task.state.active:
                await self.pause(task_id)

    async def resume_all(self) -> None:
        """Resume every paused task."""
        for task_id in list(self._order):
            if self._tasks[task_id].state is TaskState.PAUSED:
                await self.resume(task_id)

    async def set_limit(self, limit: int | None, task_id: int | None = None) -> None:
        """Set the global speed limit, or one task's (bytes/s; None for unlimited).

        With a schedule, a global limit set here holds until the schedule's next change.
        """
        if limit is not None and limit <= 0:
            raise EngineError("speed limit must be positive")
        if task_id is None:
            self.global_bucket.set_rate(limit)
            self._schedule_overridden = self._scheduled is not None
        else:
            self._get(task_id).set_limit(limit)
        self._bus.publish(LimitChanged(time.time(), task_id=task_id, limit=limit))
        self._save_soon()

    async def move(self, task_id: int, offset: int) -> None:
        """Move a task ``offset`` places in the queue (negative: towards the front)."""
        self._get(task_id)
        index = self._order.index(task_id)
        new = max(0, min(len(self._order) - 1, index + offset))
        if new == index:
            return
        self._order.insert(new, self._order.pop(index))
        self._bus.publish(TaskMoved(time.time(), task_id, position=new))
        self._schedule()
        self._save_soon()

    async def set_url(self, task_id: int, url: str, restart: bool = False) -> int:
        """Replace the URL of a paused, failed or cancelled task (an expired link); the bytes kept.

        The new URL is asked for its first byte; the bytes on disk are kept when it serves the same
        size and validators (see :func:`engine.urlcheck.mismatch`), else the change is refused with the
        reason, or with ``restart`` the partial file is deleted and the task starts over. The task is
        left paused (a failed or cancelled one too), as aria2's changeUri leaves a paused download
        paused: the user resumes it. One resumed while the new URL answered stays queued, and starts
        on the new URL. Raises EngineError, with the reason, when the change is refused.
        """
        task = self._get(task_id)
        url = url.strip()
        _check_url_changeable(task)
        if task_id in self._relinking:
            raise EngineError("the task's URL is being changed already")
        self._relinking.add(task_id)
        try:
            if not task.control_checked:
                # Restored paused from the session, it has not looked for its files yet: it must, so
                # that what it holds is known (and its control file is the one rewritten below).
                task.control_checked = True
                await Download(task, self)._adopt_existing_control()
            probed = await probe_url(task, self, url)
            if self._tasks.get(task_id) is not task:
                raise EngineError("the task was removed while its new URL was checked")
            if task.state is not TaskState.QUEUED:  # resumed meanwhile: it waited for this
                _check_url_changeable(task)
            kept = task.done.covered if task.resumable else 0
            held = Held(kept, task.size, task.etag, task.last_modified)
            reason = mismatch(held, probed.remote, task.options.check_validators)
            if reason is not None and not restart:
                raise EngineError(f"{reason} (restart to download it again from the new URL)")
            if reason is not None:
                await self._forget_files(task)
                kept = 0
            else:
                # Written before the task changes: if it cannot be, the task stays as it was.
                await self._record_url(task, url, probed.remote if kept else None)
                if kept:
                    # The same file: If-Range from now on sends what the new URL sent.
                    task.etag, task.last_modified = probed.remote.etag, probed.remote.last_modified
                else:
                    # Nothing to keep: the next run learns the file afresh from the new URL.
                    task.done, task.plan = RangeSet(), []
                    task.size = task.resumable = task.etag = task.last_modified = None
            task.set_url(url, probed.final_url)
            task.error = None
            if task.state in (TaskState.FAILED, TaskState.CANCELLED):
                task.set_state(TaskState.PAUSED)
        except BaseException:
            self._relinking.discard(task_id)
            self._schedule()  # one resumed meanwhile waited for the answer
            raise
        self._relinking.discard(task_id)
        self._bus.publish(
            TaskUrlChanged(time.time(), task.id, url=task.display_url, kept=kept, restarted=reason)
        )
        self._schedule()
        self._save_soon()
        return kept

    async def _forget_files(self, task: Task) -> None:
        """Delete a task's partial and control files and forget its name: it starts over."""
        paths = [p for p in (task.part_path, task.control_path) if p is not None]
        await asyncio.to_thread(control.remove_quietly, *paths)
        task.done, task.plan = RangeSet(), []
        task.size = task.resumable = task.etag = task.last_modified = None
        task.name = task.path = task.part_id = None

    async def _record_url(self, task: Task, url: str, same: Remote | None) -> None:
        """Rewrite the control file naming ``url``, so a restarted engine adopts the part file for it:
        with the bytes held and the validators of ``same``, or (None) claiming nothing."""
        if task.control_path is None or task.part_id is None or task.name is None:
            return  # no files yet
        data = ControlData(url=redact(url), name=task.name, part_id=task.part_id)
        if same is not None:
            data.size, data.resumable, data.done = task.size, True, task.done.as_list()
            data.etag, data.last_modified = same.etag, same.last_modified
        try:
            await asyncio.to_thread(control.write_control, task.control_path, data)
        except OSError as exc:
            reason = exc.strerror or type(exc).__name__
            raise EngineError(f"cannot record the new URL in {task.control_path.name}: {reason}") from None

    @property
    def save_error(self) -> str | None:
        """Why the queue is not saved, while saves fail (after :meth:`close`: why the last one did)."""
        return self._save_error

    def snapshot(self) -> EngineSnapshot:
        """The full state of every task, as plain data."""
        tasks = tuple(self._tasks[i].snapshot() for i in self._order)
        counts = {state.value: 0 for state in TaskState}
        for t in tasks:
            counts[t.state.value] += 1
        return EngineSnapshot(
            tasks=tasks,
            speed=self._meter.speed,
            avg_speed=self._meter.avg_speed,
            downloaded=self._downloaded,
            speed_limit=None if self.global_bucket.rate is None else int(self.global_bucket.rate),
            jobs=self.config.jobs,
            connections=sum(t.connections for t in tasks),
            time=time.time(),
            counts=counts,
            save_error=self._save_error,
            schedule=self._schedule_status(),
        )

    def task_snapshot(self, task_id: int) -> TaskSnapshot | None:
        """One task's state, without building every other task's."""
        task = self._tasks.get(task_id)
        return None if task is None else task.snapshot()

    async def get_snapshot(self) -> EngineSnapshot:
        """The same as :meth:`snapshot`, for the EngineClient interface."""
        return self.snapshot()

    def subscribe(self, progress: bool = True) -> Subscription:
        """Events from now on: lifecycle in order, progress coalesced (or left out)."""
        return self._bus.subscribe(progress)

    async def wait(self, task_ids: Iterable[int] | None = None) -> EngineSnapshot:
        """Wait until the given tasks (default: all) are completed, failed or cancelled."""
        ids = list(self._order) if task_ids is None else list(task_ids)
        for task_id in ids:
            task = self._tasks.get(task_id)
            if task is not None:
                await task.done_event.wait()
        return self.snapshot()

    # ----- scheduling ------------------------------------------------------------------------

    def _schedule(self) -> None:
        """Start queued tasks in order while download slots are free."""
        if self._closed or not self._started:
            return
        running = sum(1 for t in self._tasks.values() if t.runner is not None)
        for task_id in self._order:
            if running >= self.config.jobs:
                break
            task = self._tasks[task_id]
            if task.state is TaskState.QUEUED and task.runner is None and task_id not in self._relinking:
                task.runner = asyncio.create_task(self._run(task), name=f"fetchtop-task-{task.id}")
                running += 1

    async def _run(self, task: Task) -> None:
        self._bus.publish(TaskStarted(time.time(), task.id, url=task.display_url))
        self._running += 1
        try:
            await Download(task, self).run()
        except asyncio.CancelledError:
            # Paused, cancelled or closing: the caller has set the state already.
            if not (task.state.finished or task.state is TaskState.PAUSED):
                # Closing the engine is not the user pausing: saved, the task comes back queued.
                task.set_state(TaskState.QUEUED if self._closed else TaskState.PAUSED)
            raise
        except DownloadError as exc:
            self._fail(task, exc.reason)
        except Exception as exc:  # a bug must fail one task, not the engine
            self._fail(task, classify(exc).reason)
        finally:
            self._running -= 1
            task.runner = None
            task.changed()  # the run's cleanup (last writes, connections closed) came after the state
            if not self._closed:
                self._schedule()
                self._save_soon()

    def _fail(self, task: Task, reason: str) -> None:
        task.error = reason
        task.set_state(TaskState.FAILED)
        self.publish(TaskFailed(time.time(), task.id, reason=reason))

    async def _stop(self, task: Task, state: TaskState) -> None:
        runner = task.runner
        task.set_state(state)
        if runner is not None:
            runner.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await runner

    # ----- the bandwidth schedule ------------------------------------------------------------

    def _apply_schedule(self) -> float | None:
        """Look at the schedule now; on a change of rule set the global limit and say so.

        Returns the wall-clock time of the next change, if any. A manual limit is kept while the
        rule is the same (it overrides the schedule until the next change).
        """
        schedule = self.config.schedule
        assert schedule is not None
        active = schedule.active(datetime.fromtimestamp(self._clock()), self.config.speed_limit)
        nxt = None if active.next_change is None else active.next_change.timestamp()
        previous, self._scheduled = self._scheduled, active
        if previous is None or previous.rule != active.rule or previous.limit != active.limit:
            self._schedule_overridden = False
            self.global_bucket.set_rate(active.limit)
            rule = None if active.rule is None else active.rule.span
            self._bus.publish(
                ScheduledLimitChanged(time.time(), rule=rule, limit=active.limit, next_change=nxt)
            )
        return nxt

    async def _schedule_loop(self) -> None:
        # Sleeps run on the monotonic clock while rules follow the wall clock, so the loop wakes at
        # least every SCHEDULE_RECHECK seconds to notice the wall clock jumping.
        while True:
            nxt = self._apply_schedule()
            wait = SCHEDULE_RECHECK if nxt is None else min(SCHEDULE_RECHECK, nxt - self._clock())
            await asyncio.sleep(max(SCHEDULE_MIN_SLEEP, wait))

    def _schedule_status(self) -> ScheduleStatus | None:
        active = self._scheduled
        if active is None:
            return None
        return ScheduleStatus(
            rule=None if active.rule is None else active.rule.span,
            limit=active.limit,
            next_change=None if active.next_change is None else active.next_change.timestamp(),
            overridden=self._schedule_overridden,
        )

    # ----- progress and persistence ----------------------------------------------------------

    async def _tick_loop(self) -> None:
        tick = self.config.tick
        published = -math.inf
        while True:
            await asyncio.sleep(tick)
            active = 0
            for task in self._tasks.values():
                if task.state.active:
                    task.meter.tick()
                    active += 1
            # Many running tasks stretch the interval (see progress_interval); half a tick of slack
            # so a two-tick interval is not missed by a tick that came a little early.
            now = time.monotonic()
            if self._bus.wants_progress and now - published >= progress_interval(active, tick) - tick / 2:
                published = now
                self._publish_progress()

    def _publish_progress(self) -> None:
        self._bus.publish(ProgressUpdated(time.time(), self.snapshot()))

    def _save_soon(self) -> None:
        """Ask for the queue to be saved; requests made while a save runs share the next one."""
        self._save_wanted.set()

    async def _save_loop(self, path: Path) -> None:
        # One writer, so saves never overlap (they share a temp file), and a burst of commands
        # (hundreds of URLs added at start) costs a few saves rather than one each. A failed save
        # never ends the loop: it is retried with backoff until one works, and on close a few times.
        failures = final_tries = 0
        while True:
            await self._save_wanted.wait()
            self._save_wanted.clear()
            closing = self._closed
            if await self._save_once(path):
                if closing:
                    return
                failures = 0
                continue
            self._save_wanted.set()  # still owed: what was acknowledged is not on disk
            if closing:
                final_tries += 1
                if final_tries >= FINAL_SAVE_TRIES:
                    return
                await asyncio.sleep(FINAL_SAVE_DELAY)
                continue
            failures += 1
            delay = max(SAVE_RETRY_FLOOR, backoff_delay(failures, SAVE_BACKOFF_BASE, SAVE_BACKOFF_CAP))
            # Commands meanwhile do not cut the wait short (a full disk would be hammered), a close does.
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._closing.wait(), delay)

    async def _save_once(self, path: Path) -> bool:
        """Save the queue as it is now; True if it is on disk. Failures are published once per cause."""
        entries = [
            (t.url, t.options, t.state)
            for t in (self._tasks[i] for i in self._order)
            if t.state not in (TaskState.COMPLETED, TaskState.CANCELLED)
        ]
        try:
            await save_session(path, entries)
        except Exception as exc:  # ENOSPC, EIO, EACCES, EROFS... or a bug: the saver must live on
            reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
            reason = reason or type(exc).__name__
            if reason != self._save_error:
                self._save_error = reason
                self._bus.publish(SessionSaveFailed(time.time(), reason=reason))
            return False
        if self._save_error is not None:
            self._save_error = None
            self._bus.publish(SessionSaveRecovered(time.time()))
        return True


def _check_url_changeable(task: Task) -> None:
    """Raise EngineError, saying what to do, unless the task is stopped with something left to fetch."""
    if task.state is TaskState.COMPLETED:
        raise EngineError("the task is completed: there is nothing left to download")
    if task.state not in (TaskState.PAUSED, TaskState.FAILED, TaskState.CANCELLED):
        raise EngineError(f"the task is {task.state.value}: pause it first, then change its URL")


__all__ = ["Engine", "EngineConfig", "validate_options"]
