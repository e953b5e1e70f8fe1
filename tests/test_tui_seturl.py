"""``U`` in the dashboard: a new URL for a paused task, typed into the dialog, against a real Engine
and two local servers (the file's link expires; a mirror serves the same file)."""

from __future__ import annotations

from pathlib import Path

from textual.widgets import Static

from engine.engine import Engine
from engine.models import TaskSnapshot, TaskState
from faultserver.content import KiB, file_matches
from faultserver.server import FaultServer
from tests.support.downloads import fast_config, opts
from tests.support.pilot import wait_in_app
from tui.app import FetchtopApp
from tui.screens.main import MainScreen
from tui.screens.seturl import SetUrlDialog

SIZE = 768 * KiB + 5
TERMINAL = (100, 30)


def make_app(download_dir: Path, urls: list[str]) -> FetchtopApp:
    """The dashboard on a fresh Engine started by the app itself, the way ``fetchtop`` does."""
    options = opts(download_dir, connections=2)
    config = fast_config(defaults=options)
    return FetchtopApp(client_factory=lambda: Engine(config), urls=urls, options=options)


def only_task(app: FetchtopApp) -> TaskSnapshot:
    tasks = app.model.snapshot.tasks
    assert len(tasks) == 1, tasks
    return tasks[0]


def notes(app: FetchtopApp) -> list[str]:
    """The notifications shown so far."""
    return [n.message for n in app._notifications]


async def test_u_sets_a_new_url_and_the_download_goes_on_from_its_bytes(
    fault_server: FaultServer, download_dir: Path
) -> None:
    name = "expiring.bin"
    url = fault_server.add_file(name, SIZE, rate=96 * KiB, chunk_size=8 * KiB)
    async with FaultServer() as mirror:
        mirror_url = mirror.add_file(name, SIZE)
        other_url = mirror.add_file("other.bin", SIZE + 10)
        app = make_app(download_dir, [url])
        async with app.run_test(size=TERMINAL) as pilot:
            await wait_in_app(pilot, lambda: app.model.snapshot.tasks and only_task(app).done > 0, "bytes")
            tid = only_task(app).id
            await pilot.press("U")  # while it downloads: says what to do, opens nothing
            assert isinstance(app.screen, MainScreen)
            await wait_in_app(
                pilot,
                lambda: any(f"#{tid} is downloading: pause it (p) first" in n for n in notes(app)),
                "the hint",
            )

            await pilot.press("p")
            await wait_in_app(pilot, lambda: only_task(app).state is TaskState.PAUSED, "the pause")
            kept = only_task(app).done
            await pilot.press("U")
            assert isinstance(app.screen, SetUrlDialog)
            await pilot.press(*"ftp://x")
            error = app.screen.query_one("#new-url-error", Static)
            assert "http://" in str(error.render())  # validated as you type
            await pilot.press("enter")
            assert isinstance(app.screen, SetUrlDialog)  # not submitted

            # Another file: refused with the reason, nothing changes.
            await pilot.press("ctrl+u", *other_url, "enter")
            await wait_in_app(pilot, lambda: isinstance(app.screen, MainScreen), "the dialog to close")
            await wait_in_app(pilot, lambda: any("not changed" in n for n in notes(app)), "the refusal")
            assert any(f"serves {SIZE + 10} bytes" in n for n in notes(app))
            assert only_task(app).url == url

            await pilot.press("U", *mirror_url, "enter")
            await wait_in_app(pilot, lambda: only_task(app).url == mirror_url, "the new URL")
            await wait_in_app(pilot, lambda: any("new URL set" in n for n in notes(app)), "the note")
            assert only_task(app).state is TaskState.PAUSED and only_task(app).done == kept
            assert any("new URL" in line.text and "kept" in line.text for line in app.model.log)
            await pilot.press("p")
            await wait_in_app(pilot, lambda: only_task(app).state is TaskState.COMPLETED, "completion")
        assert file_matches(str(download_dir / name), name, SIZE)
        # The rest came from the mirror, and only the rest (plus the probe's byte).
        assert mirror.stats(name).bytes_sent <= SIZE - kept + 64 * KiB
