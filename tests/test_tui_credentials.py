"""The dashboard with ``-u`` and ``--load-cookies`` (Textual pilot, real Engine, the fault server on
127.0.0.1): they go with the URLs of the command line, never with one typed into the add dialog."""

from __future__ import annotations

import base64
from pathlib import Path

from engine.cookiefile import Cookie
from engine.engine import Engine
from engine.models import TaskState
from faultserver.content import KiB, file_matches
from faultserver.server import FaultServer
from tests.support.downloads import fast_config, opts
from tests.support.pilot import wait_in_app
from tui.app import FetchtopApp
from tui.screens.dialogs import AddDialog
from tui.screens.main import MainScreen

PASSWORD = "dash-s3cret"


async def test_the_add_dialog_does_not_carry_the_command_lines_credentials(
    fault_server: FaultServer, download_dir: Path
) -> None:
    given = fault_server.add_file("given.bin", 96 * KiB, auth=("alice", PASSWORD))
    typed = fault_server.add_file("typed.bin", 96 * KiB)
    cookies = (Cookie("127.0.0.1", False, "/", False, 0, "sid", "c00kie"),)
    options = opts(download_dir, connections=2, user=f"alice:{PASSWORD}", cookies=cookies)
    defaults = opts(download_dir, connections=2)  # what tui.options gives the engine
    app = FetchtopApp(
        client_factory=lambda: Engine(fast_config(defaults=defaults)), urls=[given], options=options
    )
    async with app.run_test(size=(100, 30)) as pilot:
        await wait_in_app(pilot, lambda: app.model.snapshot.tasks, "the given URL's task")
        await pilot.press("a")
        assert isinstance(app.screen, AddDialog)
        await pilot.press("ctrl+u", *typed, "enter")
        await wait_in_app(pilot, lambda: isinstance(app.screen, MainScreen), "the dialog to close")
        await wait_in_app(
            pilot,
            lambda: (
                len(app.model.snapshot.tasks) == 2
                and all(t.state is TaskState.COMPLETED for t in app.model.snapshot.tasks)
            ),
            "both downloads to complete",
        )
    assert file_matches(str(download_dir / "given.bin"), "given.bin", 96 * KiB)
    assert file_matches(str(download_dir / "typed.bin"), "typed.bin", 96 * KiB)
    token = "Basic " + base64.b64encode(f"alice:{PASSWORD}".encode()).decode()
    assert all(r.headers.get("Authorization") == token for r in fault_server.stats("given.bin").records)
    assert all(r.headers.get("Cookie") == "sid=c00kie" for r in fault_server.stats("given.bin").records)
    for rec in fault_server.stats("typed.bin").records:
        assert "Authorization" not in rec.headers and "Cookie" not in rec.headers, rec.headers
