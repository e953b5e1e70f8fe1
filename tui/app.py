"""The fetchtop dashboard: a Textual app that watches and steers an engine through EngineClient only.

The app never touches engine internals: it reads ``client.subscribe()`` in one worker, asks for
``client.get_snapshot()`` when it needs a fresh picture, and sends commands through the protocol's
async methods in workers, so the same screens can drive an in-process Engine or a remote daemon.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import os
import signal
import sys
import time
from collections.abc import Awaitable, Callable, Sequence
from contextlib import AbstractAsyncContextManager, AsyncExitStack
from typing import TYPE_CHECKING, ClassVar

from textual import work
from textual.app import App
from textual.binding import Binding, BindingType
from textual.driver import Driver
from textual.drivers.linux_driver import LinuxDriver
from textual.notifications import SeverityLevel
from textual.screen import Screen

from engine.client import DaemonUnavailable, EngineClient, EngineError
from engine.daemon.config import DaemonConfig
from engine.escaping import escape_controls
from engine.events import ProgressUpdated
from engine.locations import Locations
from engine.models import EngineSnapshot, TaskOptions, TaskSnapshot, TaskState
from engine.units import format_bytes, format_rate
from tui.host import DashboardEngine
from tui.messages import ConnectionChanged, EngineEventArrived, SnapshotArrived
from tui.model import DashboardModel
from tui.sgr import compact_sgr

if TYPE_CHECKING:
    from engine.config import EngineConfig

ClientFactory = Callable[[], AbstractAsyncContextManager[EngineClient]]
"""Makes a client whose context the app enters at start and leaves at exit (e.g. ``Engine(config)``)."""

ANSI_THEME = "ansi-dark"
"""Theme for 16-colour terminals: only the terminal's own ANSI colours (like any theme, see tui.palette)."""

RECONNECT_DELAYS = (0.5, 1.0, 2.0, 5.0)
"""Seconds between attempts to resubscribe after the event stream broke (last one repeats)."""


class CompactLinuxDriver(LinuxDriver):
    """Textual's terminal driver, writing each update without the style resets it would undo at
    once (see :mod:`tui.sgr`): the same screen in fewer bytes, which is what counts over SSH."""

    def write(self, data: str) -> None:
        """Write ``data`` to the terminal, compacted."""
        super().write(compact_sgr(data))


class FetchtopApp(App[int]):
    """The dashboard. Give it a running ``client``, or a ``client_factory`` it opens and closes itself."""

    CSS_PATH = "app.tcss"
    TITLE = "fetchtop"
    # Every action has its own key; the palette would only take footer room over SSH.
    ENABLE_COMMAND_PALETTE = False
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("ctrl+c", "request_quit", "Quit", show=False, priority=True),
    ]

    def __init__(
        self,
        client: EngineClient | None = None,
        *,
        client_factory: ClientFactory | None = None,
        urls: Sequence[str] = (),
        options: TaskOptions | None = None,
        quit_note: str = "They will resume the next time fetchtop starts.",
        stale_after: float = 2.0,
    ) -> None:
        super().__init__()
        if self.console.color_system == "standard":
            # The terminal's own palette rather than approximations of the default theme's colours.
            self.theme = ANSI_THEME
        if (client is None) == (client_factory is None):
            raise ValueError("give exactly one of client and client_factory")
        self._client = client
        self._factory = client_factory
        self._stack = AsyncExitStack()
        self._startup_error: str | None = None
        self.urls = list(urls)
        """URLs to queue once the engine is up."""
        self.options = options or TaskOptions()
        """Defaults for downloads added from the dashboard."""
        self.quit_note = quit_note
        """What the quit confirmation says happens to active downloads."""
        self.model = DashboardModel()
        """Everything the screens show."""
        self.connected = True
        """False while the event stream is broken and being retried."""
        self.host: DashboardEngine | None = None
        """The state directory's engine, when the factory is ``fetchtop``'s (own or attached)."""
        self._stale_after = stale_after
        self._last_snapshot_at = 0.0
        self._fetching = False
        self._hangup_handler = False

    @property
    def client(self) -> EngineClient:
        """The engine the dashboard drives."""
        if self._client is None:
            raise RuntimeError("the engine is not started")
        return self._client

    def get_driver_class(self) -> type[Driver]:
        """Textual's own choice, except that its usual terminal driver writes compacted output."""
        chosen = super().get_driver_class()
        return CompactLinuxDriver if chosen is LinuxDriver else chosen

    def get_default_screen(self) -> Screen[None]:
        """The main screen with the task table."""
        from tui.screens.main import MainScreen

        return MainScreen()

    async def on_load(self) -> None:
        """Open the client from the factory, inside the app's own event loop."""
        if self._factory is not None:
            try:
                opened = self._factory()
                self._client = await self._stack.enter_async_context(opened)
            except (EngineError, OSError) as exc:  # reported in one line, not a traceback
                self._startup_error = f"cannot start the engine: {exc}"
                return
            if isinstance(opened, DashboardEngine):
                self.host = opened

    def on_mount(self) -> None:
        """Start following the engine and queue the URLs given on the command line."""
        if self._startup_error is not None:
            # After the first refresh, so the screens finish mounting before the app closes.
            message = self._startup_error
            self.call_after_refresh(lambda: self.exit(return_code=1, message=message))
            return
        self.consume_events()
        self.set_interval(0.5, self._check_stale)
        if self.host is not None and self.host.hosted is not None:
            # Losing the terminal must not stop a download: hand it over, as the quit dialog can.
            asyncio.get_running_loop().add_signal_handler(signal.SIGHUP, self._hung_up)
            self._hangup_handler = True
            self.run_worker(self._until_stopped(self.host.hosted.stopped()), group="host")
        elif self.host is not None:
            self.quit_note = "They keep running in the engine this dashboard attached to."
            self.notify(
                "Attached to the fetchtop engine already running on this state directory; "
                "it keeps its own settings."
            )
        if self.urls:
            self.add_urls(self.urls, self.options)

    async def on_unmount(self) -> None:
        """Close the client if the app opened it (an Engine saves its session here; the dashboard's
        own engine may hand its downloads over to a daemon)."""
        if self._hangup_handler:
            asyncio.get_running_loop().remove_signal_handler(signal.SIGHUP)
            self._hangup_handler = False
        await self._stack.aclose()

    async def _until_stopped(self, stopped: Awaitable[None]) -> None:
        # ``fetchtop stop`` stops the engine, whichever process runs it: here, the dashboard quits.
        await stopped
        self.exit(return_code=0)

    def _hung_up(self) -> None:
        """The terminal is gone (SIGHUP): keep active downloads running in a daemon, then exit."""
        # Nothing can be shown any more, and writes to a hung-up terminal fail: point the
        # terminal's descriptors at /dev/null so the exit (and the hand-over) cannot trip on them.
        null = os.open(os.devnull, os.O_RDWR)
        for fd in (0, 1, 2):
            with contextlib.suppress(OSError):
                os.dup2(null, fd)
        os.close(null)
        if self.host is not None and self.model.totals().unfinished:
            self.host.keep_running = True
        self.exit(return_code=0)

    # -- following the engine -------------------------------------------------------------------

    @work(exclusive=True, group="events")
    async def consume_events(self) -> None:
        """Read the event stream for the app's lifetime, resubscribing if it breaks."""
        failures = 0
        while True:
            try:
                events = self.client.subscribe()
                self._accept_snapshot(await self.client.get_snapshot())
                if not self.connected:
                    self.post_message(ConnectionChanged(True))
                failures = 0
                async for event in events:
                    if isinstance(event, ProgressUpdated):
                        self._accept_snapshot(event.snapshot)
                    else:
                        self.post_message(EngineEventArrived(event))
                return  # the engine closed its stream: it is shutting down
            except (EngineError, DaemonUnavailable) as exc:  # what a broken stream raises; retry
                self.post_message(ConnectionChanged(False, str(exc) or type(exc).__name__))
                await asyncio.sleep(RECONNECT_DELAYS[min(failures, len(RECONNECT_DELAYS) - 1)])
                failures += 1

    def _accept_snapshot(self, snapshot: EngineSnapshot) -> None:
        # Speed history is sampled here, before messages merge, so charts never lose a sample
        # to a burst; the table only needs the newest snapshot, which the message carries.
        self._last_snapshot_at = time.monotonic()
        self.model.record_history(snapshot)
        self.post_message(SnapshotArrived(snapshot))

    def on_snapshot_arrived(self, message: SnapshotArrived) -> None:
        """Keep the newest snapshot; the screens redraw from it on their own timers."""
        self.model.apply_snapshot(message.snapshot)

    def notify_plain(self, message: str, *, severity: SeverityLevel = "information") -> None:
        """A notification of text that quotes an error, a URL or a name: escaped, and never markup."""
        self.notify(escape_controls(message), severity=severity, markup=False)

    def on_engine_event_arrived(self, message: EngineEventArrived) -> None:
        """Log the event; ask for a snapshot if the table may be behind it."""
        self.model.apply_event(message.event)

    def on_connection_changed(self, message: ConnectionChanged) -> None:
        """Show a broken or restored event stream."""
        if message.connected != self.connected:
            self.connected = message.connected
            if message.connected:
                self.notify("Reconnected to the engine.")
            else:
                self.notify_plain(f"Lost the engine: {message.reason}. Retrying...", severity="error")

    def _check_stale(self) -> None:
        # Progress arrives every tick while tasks run; when nothing runs, or a lifecycle event is
        # newer than the last snapshot, ask for one so the table never shows an old state.
        quiet = time.monotonic() - self._last_snapshot_at > self._stale_after
        if (self.model.stale or quiet) and not self._fetching and self.connected:
            self.fetch_snapshot()

    @work(group="fetch")
    async def fetch_snapshot(self) -> None:
        """Ask the engine for its state now."""
        self._fetching = True
        try:
            self._accept_snapshot(await self.client.get_snapshot())
        except (EngineError, DaemonUnavailable):
            pass  # the event worker reports connection trouble; nothing to add here
        finally:
            self._fetching = False

    # -- commands -------------------------------------------------------------------------------

    def command(self, action: Callable[[], Awaitable[object]], done: str | None = None) -> None:
        """Run an engine command in a worker; report refusals as notifications, never block."""

        async def run() -> None:
            try:
                await action()
            except EngineError as exc:
                self.notify_plain(str(exc), severity="error")
                return
            except DaemonUnavailable as exc:  # a remote client may fail in transport; say so
                self.notify_plain(f"{type(exc).__name__}: {exc}", severity="error")
                return
            if done:
                self.notify(done)
            if not self._fetching:
                self.fetch_snapshot()

        self.run_worker(run(), group="commands")

    @work(group="commands")
    async def add_urls(self, urls: Sequence[str], options: TaskOptions, select: bool = False) -> None:
        """Queue downloads; with ``select``, move the cursor to the last one added."""
        for url in urls:
            try:
                tid = await self.client.add(url, options)
            except (EngineError, DaemonUnavailable) as exc:
                self.notify_plain(f"Cannot add {url}: {exc}", severity="error")
                continue
            if select:
                self.notify(f"Added #{tid}")
                self.select_later(tid)
        self.fetch_snapshot()

    def select_later(self, task_id: int) -> None:
        """Select a task in the table as soon as it shows up there."""
        from tui.screens.main import MainScreen

        for screen in self.screen_stack:
            if isinstance(screen, MainScreen):
                screen.pending_select = task_id

    def toggle_pause(self, task: TaskSnapshot) -> None:
        """Pause a running or queued task, resume a paused one."""
        client = self.client
        if task.state is TaskState.PAUSED:
            self.command(lambda: client.resume(task.id))
        elif task.state.finished:
            hint = "press r to retry" if task.state is not TaskState.COMPLETED else "it is complete"
            self.notify(f"#{task.id} is {task.state.value}: {hint}.", severity="warning")
        else:
            self.command(lambda: client.pause(task.id))

    def toggle_all(self) -> None:
        """Pause everything if anything runs or waits, else resume everything paused."""
        client = self.client
        if self.model.totals().unfinished:
            self.command(client.pause_all, "Paused all")
        else:
            self.command(client.resume_all, "Resumed all")

    def retry(self, task: TaskSnapshot) -> None:
        """Queue a failed or cancelled task again, keeping its partial file."""
        if task.state not in (TaskState.FAILED, TaskState.CANCELLED):
            self.notify(f"#{task.id} has not failed: nothing to retry.", severity="warning")
            return
        client = self.client
        self.command(lambda: client.resume(task.id), f"Retrying #{task.id}")

    def move(self, task: TaskSnapshot, offset: int) -> None:
        """Move a queued task up (negative) or down the queue."""
        if task.state is not TaskState.QUEUED:
            self.notify("Only queued tasks can be moved.", severity="warning")
            return
        client = self.client
        self.command(lambda: client.move(task.id, offset))

    def ask_add(self) -> None:
        """Open the add dialog."""
        from tui.screens.dialogs import AddDialog, AddRequest

        def done(request: AddRequest | None) -> None:
            if request is not None:
                self.add_urls([request.url], request.options, select=True)

        # -u and --load-cookies were for the URLs on the command line, not for one typed here.
        self.push_screen(AddDialog(dataclasses.replace(self.options, user=None, cookies=())), done)

    def ask_remove(self, task: TaskSnapshot) -> None:
        """Confirm, then cancel and remove a task, deleting its partial file if asked."""
        from tui.screens.dialogs import RemoveDialog

        client = self.client

        def done(choice: str | None) -> None:
            if choice is not None:
                delete = choice == "delete"
                self.command(lambda: client.remove(task.id, delete_files=delete))

        self.push_screen(RemoveDialog(task), done)

    def ask_limit(self, task: TaskSnapshot | None, task_first: bool = False) -> None:
        """Ask for a speed limit, global or for ``task`` (preselected with ``task_first``), and set it."""
        from tui.screens.dialogs import LimitDialog, LimitRequest

        client = self.client

        def done(request: LimitRequest | None) -> None:
            if request is None:
                return
            scope = "Global limit" if request.task_id is None else f"Limit of #{request.task_id}"
            text = "none" if request.limit is None else format_rate(request.limit)
            self.command(lambda: client.set_limit(request.limit, request.task_id), f"{scope}: {text}")

        self.push_screen(LimitDialog(self.model.snapshot.speed_limit, task, task_first), done)

    def ask_set_url(self, task: TaskSnapshot) -> None:
        """Ask for a new URL of a paused or failed task (an expired link), and set it."""
        from tui.screens.seturl import SetUrlDialog, SetUrlRequest

        if task.state is TaskState.COMPLETED:
            self.notify(f"#{task.id} is complete: it needs no URL.", severity="warning")
            return
        if task.state not in (TaskState.PAUSED, TaskState.FAILED, TaskState.CANCELLED):
            self.notify(f"#{task.id} is {task.state.value}: pause it (p) first.", severity="warning")
            return
        client = self.client

        async def change(request: SetUrlRequest) -> None:
            try:
                kept = await client.set_url(task.id, request.url, restart=request.restart)
            except EngineError as exc:
                raise EngineError(f"URL of #{task.id} not changed: {exc}") from None
            how = f"{format_bytes(kept)} kept" if kept else "starting from the beginning"
            self.notify(f"#{task.id}: new URL set, {how}. Press p to resume.")

        def done(request: SetUrlRequest | None) -> None:
            if request is not None:
                self.command(lambda: change(request))

        self.push_screen(SetUrlDialog(task), done)

    def show_help(self) -> None:
        """Open the help screen."""
        from tui.screens.help import HelpScreen

        self.push_screen(HelpScreen())

    def show_detail(self, task: TaskSnapshot) -> None:
        """Open a task's detail screen."""
        from tui.screens.detail import DetailScreen

        self.push_screen(DetailScreen(task.id))

    def action_request_quit(self) -> None:
        """Quit, asking first if downloads are active or waiting.

        A dashboard whose own engine owns the state directory offers three answers: keep the
        downloads running in a background daemon, stop them (they resume the next time), or stay.
        """
        from tui.screens.dialogs import QuitChoice, QuitDialog

        unfinished = self.model.totals().unfinished
        if not unfinished:
            self.exit(return_code=0)
            return
        if any(isinstance(s, QuitDialog) for s in self.screen_stack):
            return
        host = self.host if self.host is not None and self.host.owner else None

        def done(choice: QuitChoice | None) -> None:
            if choice is None:
                return
            if host is not None and choice is QuitChoice.BACKGROUND:
                host.keep_running = True
                self.notify("Handing the downloads over to a background daemon...")
            self.exit(return_code=0)

        plural = "s are" if unfinished != 1 else " is"
        question = f"{unfinished} download{plural} active."
        if host is None:
            self.push_screen(QuitDialog(f"{question} Quit?", self.quit_note), done)
            return
        note = "Keep them running in a background daemon, or stop them (they resume the next time)?"
        self.push_screen(QuitDialog(question, note, background=True), done)


def dashboard_app(
    urls: list[str],
    options: TaskOptions,
    config: EngineConfig,
    *,
    metrics_addr: str = "127.0.0.1",
    metrics_port: int | None = None,
    state_dir: str | None = None,
) -> FetchtopApp:
    """The app :func:`run_dashboard` runs: the state directory's engine, opened inside the app.

    The state directory is ``state_dir`` (``--state-dir``), else ``$FETCHTOP_STATE_DIR``, else the
    user's (see :mod:`engine.locations`). When an engine (a daemon, another dashboard) already runs
    there, the dashboard attaches to it and adds ``urls`` to its queue; otherwise its own engine
    takes the state directory's lock, saves its session there and serves the control socket.
    """
    where = Locations.resolve(state_dir)
    # Absolute, as the daemon's: the queue may be handed over to a daemon that runs in "/".
    download_dir = os.path.abspath(os.path.expanduser(options.directory))
    options = dataclasses.replace(options, directory=download_dir)
    engine_config = dataclasses.replace(
        config,
        defaults=dataclasses.replace(config.defaults, directory=download_dir),
        session_path=where.session,
    )
    daemon_config = DaemonConfig(
        state_dir=where.state_dir,
        socket_path=where.socket,
        engine=engine_config,
        download_dir=download_dir,
        metrics_addr=metrics_addr,
        metrics_port=metrics_port,
    )
    return FetchtopApp(client_factory=lambda: DashboardEngine(daemon_config), urls=urls, options=options)


def run_dashboard(
    urls: list[str],
    options: TaskOptions,
    config: EngineConfig,
    *,
    metrics_addr: str = "127.0.0.1",
    metrics_port: int | None = None,
    state_dir: str | None = None,
) -> int:
    """Run the dashboard on the state directory's engine with ``urls`` queued; returns the exit code.

    Its own engine is created inside the app's event loop and closed when the app exits, which saves
    the session so unfinished downloads resume the next time, or hands them over to a daemon.
    """
    app = dashboard_app(
        urls, options, config, metrics_addr=metrics_addr, metrics_port=metrics_port, state_dir=state_dir
    )
    app.run()
    if app.host is not None and app.host.report is not None:
        print(f"fetchtop: {app.host.report}", file=sys.stderr)
    return app.return_code or 0
