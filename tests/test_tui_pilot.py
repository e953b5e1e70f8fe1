"""The dashboard driven by real keys (Textual pilot) against a real Engine and a local fault server.

Each test opens FetchtopApp with a factory that starts an Engine inside the app's event loop, the way
``fetchtop`` does, and checks both what the screen shows and what happened on disk and on the server.
"""

from __future__ import annotations

import asyncio
import os
from pathlib import Path
from typing import Any

import pytest
from textual.widgets import Static
from textual.widgets.data_table import CellDoesNotExist

from engine.client import DaemonUnavailable
from engine.config import EngineConfig
from engine.engine import Engine
from engine.events import Event
from engine.models import TaskSnapshot, TaskState
from faultserver.content import KiB, file_matches
from faultserver.server import FaultServer
from tests.support.downloads import fast_config, opts
from tests.support.pilot import wait_in_app
from tui.app import FetchtopApp, dashboard_app
from tui.screens.detail import DetailScreen
from tui.screens.dialogs import AddDialog, LimitDialog, QuitDialog, RemoveDialog
from tui.screens.help import HelpScreen
from tui.screens.main import MainScreen
from tui.widgets.segment_map import SegmentMap
from tui.widgets.task_table import TaskTable

SIZE = (100, 30)
"""Terminal size for the pilot."""


def make_app(download_dir: Path, urls: list[str] | None = None, **config: Any) -> FetchtopApp:
    """The dashboard on a fresh Engine (fast ticks and backoff) started by the app itself."""
    options = opts(download_dir, connections=2)
    engine_config: EngineConfig = fast_config(defaults=options, **config)
    return FetchtopApp(client_factory=lambda: Engine(engine_config), urls=urls or [], options=options)


def exists(path: str | Path) -> bool:
    """Whether a file exists (a plain function: the check is instant, not worth a thread)."""
    return os.path.exists(path)


def names_in(directory: Path) -> list[str]:
    """The file names in a directory."""
    return sorted(p.name for p in directory.iterdir())


def only_task(app: FetchtopApp) -> TaskSnapshot:
    tasks = app.model.snapshot.tasks
    assert len(tasks) == 1, tasks
    return tasks[0]


def state_of(app: FetchtopApp, tid: int) -> TaskState | None:
    task = app.model.task(tid)
    return None if task is None else task.state


def cell(app: FetchtopApp, tid: int, column: str) -> str:
    """The text the table shows for a task's cell ("" while its row is not drawn yet)."""
    try:
        return app.screen.query_one(TaskTable).get_cell(str(tid), column).plain
    except CellDoesNotExist:
        return ""


@pytest.mark.slow
async def test_add_through_dialog_and_watch_it_complete(
    fault_server: FaultServer, download_dir: Path
) -> None:
    url = fault_server.add_file("added.bin", 96 * KiB)
    app = make_app(download_dir)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("a")
        assert isinstance(app.screen, AddDialog)
        await pilot.press(*"ftp://x")
        error = app.screen.query_one("#url-error", Static)
        assert "http://" in str(error.render())  # validated as you type
        await pilot.press("enter")
        assert isinstance(app.screen, AddDialog)  # an invalid URL is not submitted
        await pilot.press("ctrl+u", *url, "tab", *"renamed.bin", "enter")
        await wait_in_app(pilot, lambda: isinstance(app.screen, MainScreen), "the dialog to close")
        await wait_in_app(pilot, lambda: app.model.snapshot.tasks, "the task to appear")
        tid = only_task(app).id
        await wait_in_app(pilot, lambda: state_of(app, tid) is TaskState.COMPLETED, "completion")
        await wait_in_app(pilot, lambda: cell(app, tid, "state") == "completed", "the table to show it")
        assert cell(app, tid, "name") == "renamed.bin"
        assert cell(app, tid, "progress").endswith("100%")
        assert file_matches(str(download_dir / "renamed.bin"), "added.bin", 96 * KiB)
        assert any("completed" in line.text for line in app.model.log)


@pytest.mark.slow
async def test_pause_and_resume_with_p_and_space(fault_server: FaultServer, download_dir: Path) -> None:
    size = 256 * KiB
    url = fault_server.add_file("slow.bin", size, rate=64 * KiB, chunk_size=8 * KiB)
    app = make_app(download_dir, [url])
    async with app.run_test(size=SIZE) as pilot:
        await wait_in_app(
            pilot, lambda: app.model.snapshot.tasks and only_task(app).done > 0, "bytes to flow"
        )
        tid = only_task(app).id
        await pilot.press("p")
        await wait_in_app(pilot, lambda: state_of(app, tid) is TaskState.PAUSED, "pause")
        await wait_in_app(pilot, lambda: cell(app, tid, "state") == "paused", "the table to show paused")
        done_when_paused = only_task(app).done
        await pilot.pause(0.4)
        assert only_task(app).done == done_when_paused  # nothing moves while paused
        await pilot.press("space")
        await wait_in_app(pilot, lambda: state_of(app, tid) is TaskState.COMPLETED, "completion after resume")
        assert file_matches(str(download_dir / "slow.bin"), "slow.bin", size)
        # It resumed from its partial file rather than starting over.
        assert any(h and not h.startswith("bytes=0-") for h in fault_server.stats("slow.bin").range_headers)


async def test_remove_keeping_the_partial_file(fault_server: FaultServer, download_dir: Path) -> None:
    url = fault_server.add_file("keep.bin", 512 * KiB, rate=32 * KiB, chunk_size=4 * KiB)
    app = make_app(download_dir, [url])
    async with app.run_test(size=SIZE) as pilot:
        await wait_in_app(
            pilot, lambda: app.model.snapshot.tasks and only_task(app).done > 0, "bytes to flow"
        )
        part = only_task(app).part_path
        assert part is not None
        await pilot.press("d")
        assert isinstance(app.screen, RemoveDialog)
        await pilot.press("n")  # keeps the task
        assert isinstance(app.screen, MainScreen)
        assert app.model.snapshot.tasks
        await pilot.press("delete", "y")
        await wait_in_app(pilot, lambda: not app.model.snapshot.tasks, "the task to go")
        await wait_in_app(pilot, lambda: app.screen.query_one(TaskTable).row_count == 0, "the row to go")
        assert exists(part)


async def test_remove_deleting_the_partial_file(fault_server: FaultServer, download_dir: Path) -> None:
    url = fault_server.add_file("drop.bin", 512 * KiB, rate=32 * KiB, chunk_size=4 * KiB)
    app = make_app(download_dir, [url])
    async with app.run_test(size=SIZE) as pilot:
        await wait_in_app(
            pilot, lambda: app.model.snapshot.tasks and only_task(app).done > 0, "bytes to flow"
        )
        part = only_task(app).part_path
        assert part is not None and exists(part)
        await pilot.press("d", "x")
        await wait_in_app(pilot, lambda: not app.model.snapshot.tasks, "the task to go")
        await wait_in_app(pilot, lambda: not os.path.exists(part), "the partial file to be deleted")
        assert not [n for n in names_in(download_dir) if n.startswith("drop.bin")]
        assert any("partial file deleted" in line.text for line in app.model.log)


@pytest.mark.slow
async def test_global_limit_from_dialog_slows_the_download(
    fault_server: FaultServer, download_dir: Path
) -> None:
    url = fault_server.add_file("limited.bin", 4096 * KiB)
    limit = 128 * KiB
    app = make_app(download_dir)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("l")
        assert isinstance(app.screen, LimitDialog)
        await pilot.press(*"12x")
        assert "Invalid rate '12x'" in str(app.screen.query_one("#rate-error", Static).render())
        await pilot.press("backspace", "8", "K", "enter")
        await wait_in_app(pilot, lambda: app.model.snapshot.speed_limit == limit, "the limit to apply")
        app.add_urls([url], app.options)
        await wait_in_app(
            pilot, lambda: app.model.snapshot.tasks and only_task(app).done > 0, "bytes to flow"
        )
        await pilot.pause(0.5)
        start = only_task(app).done
        loop = asyncio.get_running_loop()
        t0 = loop.time()
        await pilot.pause(1.5)
        rate = (only_task(app).done - start) / (loop.time() - t0)
        assert rate < limit * 1.6, rate  # unlimited, loopback would do many MiB/s
        assert only_task(app).state is TaskState.DOWNLOADING
        # Clearing the field lifts the limit.
        await pilot.press("l", "ctrl+u", "enter")
        await wait_in_app(pilot, lambda: app.model.snapshot.speed_limit is None, "the limit to go")
        tid = only_task(app).id
        await wait_in_app(
            pilot, lambda: state_of(app, tid) is TaskState.COMPLETED, "completion without limit"
        )


async def test_task_limit_from_the_detail_screen(fault_server: FaultServer, download_dir: Path) -> None:
    url = fault_server.add_file("one.bin", 512 * KiB, rate=64 * KiB, chunk_size=8 * KiB)
    app = make_app(download_dir, [url])
    async with app.run_test(size=SIZE) as pilot:
        await wait_in_app(pilot, lambda: app.model.snapshot.tasks and only_task(app).segments, "segments")
        tid = only_task(app).id
        await pilot.press("enter")
        assert isinstance(app.screen, DetailScreen)
        await wait_in_app(
            pilot, lambda: app.screen.query_one(SegmentMap).task_snapshot is not None, "the map"
        )
        await pilot.press("l")
        assert isinstance(app.screen, LimitDialog)
        await pilot.press(*"32K", "enter")
        await wait_in_app(pilot, lambda: only_task(app).options.speed_limit == 32 * KiB, "the task limit")
        assert app.model.snapshot.speed_limit is None
        assert isinstance(app.screen, DetailScreen)
        await pilot.press("escape")
        assert isinstance(app.screen, MainScreen)
        assert app.screen.query_one(TaskTable).selected_id == tid


async def test_retry_a_failed_task(fault_server: FaultServer, download_dir: Path) -> None:
    url = fault_server.add_file("later.bin", 64 * KiB, status=404)
    app = make_app(download_dir, [url])
    async with app.run_test(size=SIZE) as pilot:
        await wait_in_app(
            pilot, lambda: app.model.snapshot.tasks and only_task(app).state is TaskState.FAILED, "failure"
        )
        tid = only_task(app).id
        await wait_in_app(
            pilot, lambda: cell(app, tid, "state").startswith("failed: "), "the reason in the table"
        )
        assert "404" in cell(app, tid, "state")
        fault_server.update("later.bin", status=None)
        await pilot.press("r")
        await wait_in_app(pilot, lambda: state_of(app, tid) is TaskState.COMPLETED, "completion after retry")
        assert file_matches(str(download_dir / "later.bin"), "later.bin", 64 * KiB)


async def test_quit_asks_and_downloads_resume_next_time(
    fault_server: FaultServer, download_dir: Path, tmp_path: Path
) -> None:
    size = 384 * KiB
    names = ["long-1.bin", "long-2.bin"]
    urls = [fault_server.add_file(name, size, rate=48 * KiB, chunk_size=4 * KiB) for name in names]
    state = tmp_path / "state"
    session = str(state / "session.json")
    options = opts(download_dir, connections=2)
    app = dashboard_app(urls, options, fast_config(defaults=options), state_dir=str(state))

    def both_started() -> bool:
        tasks = app.model.snapshot.tasks
        return len(tasks) == 2 and all(t.done > 32 * KiB for t in tasks)

    async with app.run_test(size=SIZE) as pilot:
        await wait_in_app(pilot, both_started, "progress on both")
        await pilot.press("q")
        assert isinstance(app.screen, QuitDialog)
        await pilot.press("n")  # stay
        assert isinstance(app.screen, MainScreen)
        assert app.is_running
        await pilot.press("q")
        # The dashboard owns its engine: it may keep the downloads running, stop them, or stay.
        assert isinstance(app.screen, QuitDialog) and app.screen.background
        await pilot.press("s")  # stop them
        await wait_in_app(pilot, lambda: not app.is_running, "the app to exit")
    assert app.return_code == 0
    assert exists(session)
    assert not set(names) & set(names_in(download_dir))
    for name in names:
        fault_server.reset_stats(name)
        fault_server.update(name, rate=None)

    again = dashboard_app([], options, fast_config(defaults=options), state_dir=str(state))
    async with again.run_test(size=SIZE) as pilot:
        await wait_in_app(pilot, lambda: len(again.model.snapshot.tasks) == 2, "the restored tasks")
        ids = [t.id for t in again.model.snapshot.tasks]
        # Nobody presses a key: they resume by themselves.
        await wait_in_app(
            pilot,
            lambda: all(state_of(again, tid) is TaskState.COMPLETED for tid in ids),
            "completion after restart",
        )
        await wait_in_app(pilot, lambda: all(cell(again, t, "state") == "completed" for t in ids), "the rows")
        await pilot.press("q")  # nothing active: quits without asking
        await wait_in_app(pilot, lambda: not again.is_running, "the app to exit")
    for name in names:
        assert file_matches(str(download_dir / name), name, size)
        # The second run fetched only what was missing.
        headers = fault_server.stats(name).range_headers
        assert headers and all(h is not None and not h.startswith("bytes=0-") for h in headers), headers


async def test_help_lists_every_key_and_sort_filter_log_work(
    fault_server: FaultServer, download_dir: Path
) -> None:
    urls = [fault_server.add_file(name, size) for name, size in (("b.iso", 32 * KiB), ("a.bin", 64 * KiB))]
    app = make_app(download_dir, urls)
    async with app.run_test(size=(80, 24)) as pilot:
        await wait_in_app(pilot, lambda: app.model.totals().completed == 2, "both downloads")
        table = app.screen.query_one(TaskTable)
        await wait_in_app(pilot, lambda: table.row_count == 2, "both rows")
        await pilot.press("s", "s")  # queue -> name -> size
        await wait_in_app(pilot, lambda: table.get_row_at(0)[1].plain == "a.bin", "sort by size")
        await pilot.press("slash", *"iso", "enter")
        await wait_in_app(pilot, lambda: table.row_count == 1, "the filter")
        assert table.get_row_at(0)[1].plain == "b.iso"
        await pilot.press("escape")
        await wait_in_app(pilot, lambda: table.row_count == 2, "the filter to clear")
        await pilot.press("e")
        log = app.screen.query_one("#log")
        assert log.display
        await wait_in_app(pilot, lambda: len(log.lines) >= 2, "log lines")  # type: ignore[attr-defined]
        await pilot.press("question_mark")
        assert isinstance(app.screen, HelpScreen)
        await pilot.press("escape")
        assert isinstance(app.screen, MainScreen)


async def test_dashboard_app_saves_its_session_in_the_state_dir(
    fault_server: FaultServer, download_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))
    url = fault_server.add_file("cli.bin", 512 * KiB, rate=64 * KiB, chunk_size=8 * KiB)
    app = dashboard_app([url], opts(download_dir, connections=2), fast_config())
    async with app.run_test(size=SIZE) as pilot:
        await wait_in_app(
            pilot, lambda: app.model.snapshot.tasks and only_task(app).done > 0, "the URL to start"
        )
        await wait_in_app(pilot, lambda: cell(app, only_task(app).id, "name") == "cli.bin", "the row")
        await pilot.press("q", "y")
        await wait_in_app(pilot, lambda: not app.is_running, "the app to exit")
    session = tmp_path / "state" / "fetchtop" / "session.json"
    assert exists(session)
    assert url in session.read_text()


class DroppingLink:
    """A real Engine behind a link whose event stream breaks once, like a remote daemon's socket."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.drops = 1

    def subscribe(self) -> Any:
        return self._events()

    async def _events(self) -> Any:
        seen = 0
        async with self.engine.subscribe() as sub:
            async for event in sub:
                yield event
                seen += 1
                if self.drops and seen >= 5:
                    self.drops -= 1
                    raise DaemonUnavailable("link dropped")

    def __getattr__(self, name: str) -> Any:
        return getattr(self.engine, name)


async def test_a_broken_event_stream_is_shown_and_retried(
    fault_server: FaultServer, download_dir: Path
) -> None:
    url = fault_server.add_file("steady.bin", 384 * KiB, rate=96 * KiB, chunk_size=8 * KiB)
    async with Engine(fast_config()) as engine:
        app = FetchtopApp(DroppingLink(engine), urls=[url], options=opts(download_dir, connections=2))
        events: list[Event] = []
        async with app.run_test(size=SIZE) as pilot:
            await wait_in_app(pilot, lambda: not app.connected, "the link to drop")
            summary = app.screen.query_one("#summary", Static)
            await wait_in_app(
                pilot, lambda: "engine lost" in str(summary.border_subtitle), "the summary to say so"
            )
            await wait_in_app(pilot, lambda: app.connected, "the link to come back")
            await wait_in_app(pilot, lambda: app.model.snapshot.tasks, "the task")
            tid = only_task(app).id
            await wait_in_app(pilot, lambda: state_of(app, tid) is TaskState.COMPLETED, "completion")
            await wait_in_app(pilot, lambda: cell(app, tid, "state") == "completed", "the table to show it")
            events.extend(app.model.log)  # type: ignore[arg-type]
            await pilot.press("q")
        assert any("completed" in line.text for line in events)  # type: ignore[attr-defined]


@pytest.mark.slow
async def test_pause_all_resume_all_and_move_in_queue(fault_server: FaultServer, download_dir: Path) -> None:
    names = ["first.bin", "second.bin", "third.bin"]
    urls = [fault_server.add_file(n, 256 * KiB, rate=64 * KiB, chunk_size=8 * KiB) for n in names]
    app = make_app(download_dir, urls, jobs=1)
    async with app.run_test(size=SIZE) as pilot:
        await wait_in_app(pilot, lambda: len(app.model.snapshot.tasks) == 3, "three tasks")
        table = app.screen.query_one(TaskTable)
        await wait_in_app(pilot, lambda: table.row_count == 3, "three rows")
        ids = [t.id for t in app.model.snapshot.tasks]
        await pilot.press("down", "down")  # the third, queued behind the others
        assert table.selected_id == ids[2]
        await pilot.press("u")
        await wait_in_app(
            pilot, lambda: [t.id for t in app.model.snapshot.tasks] == [ids[0], ids[2], ids[1]], "move up"
        )
        await wait_in_app(pilot, lambda: table.get_row_at(1)[0].plain == str(ids[2]), "the table order")
        assert table.selected_id == ids[2]  # the selection follows the task
        await pilot.press("n")
        await wait_in_app(pilot, lambda: [t.id for t in app.model.snapshot.tasks] == ids, "move down")
        await pilot.press("P")
        await wait_in_app(pilot, lambda: app.model.totals().paused == 3, "pause all")
        await pilot.press("P")
        await wait_in_app(pilot, lambda: app.model.totals().paused == 0, "resume all")
        await wait_in_app(pilot, lambda: app.model.totals().completed == 3, "all three", limit=45)


async def test_an_engine_that_cannot_start_ends_the_app_with_a_message(tmp_path: Path) -> None:
    bad_session = tmp_path / "not-a-dir" / "session.json"
    (tmp_path / "not-a-dir").write_text("a file where a directory should be")

    def failing() -> Any:
        raise OSError(f"cannot open {bad_session}")

    app = FetchtopApp(client_factory=failing)
    async with app.run_test(size=SIZE) as pilot:
        await wait_in_app(pilot, lambda: not app.is_running, "the app to give up")
    assert app.return_code == 1
