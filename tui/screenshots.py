"""``python -m tui.screenshots DIR`` (``make screenshots``): SVG screenshots of the real dashboard.

Runs the demo (a real Engine downloading from the built-in fault server into a temporary directory)
headless, lets it work for a few seconds so charts have history, then saves the main screen, a
task's detail screen, the add dialog and the help screen at 120x36, then the main screen at 80x24.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import tempfile
from collections.abc import Sequence
from typing import Any

from textual.pilot import Pilot

from engine.models import TaskState
from tui.app import FetchtopApp
from tui.demo import demo_engine, demo_options
from tui.screens.main import MainScreen
from tui.widgets.task_table import TaskTable

WARMUP = 10.0
"""Seconds the demo runs before the first picture, so the charts have a shape."""


def _save(app: FetchtopApp, directory: str, name: str) -> str:
    path = os.path.join(directory, name)
    with open(path, "w", encoding="utf-8") as f:
        f.write(app.export_screenshot(title="fetchtop"))
    return path


async def _select_downloading(pilot: Pilot[Any], app: FetchtopApp) -> None:
    """Put the cursor on the fastest downloading task."""
    screen = app.screen
    assert isinstance(screen, MainScreen)
    running = [t for t in app.model.snapshot.tasks if t.state is TaskState.DOWNLOADING and t.size]
    if running:
        best = max(running, key=lambda t: len([s for s in t.segments if s.state.value == "active"]))
        screen.query_one(TaskTable).select_task(best.id)
    await pilot.pause(0.3)


async def take(directory: str, warmup: float = WARMUP) -> list[str]:
    """Run the demo and write the screenshots; returns their paths."""
    written: list[str] = []
    with tempfile.TemporaryDirectory(prefix="fetchtop-shots-") as downloads:
        app = FetchtopApp(client_factory=lambda: demo_engine(downloads), options=demo_options(downloads))
        async with app.run_test(size=(120, 36)) as pilot:
            await pilot.pause(warmup)
            await pilot.press("e")
            await _select_downloading(pilot, app)
            written.append(_save(app, directory, "dashboard.svg"))
            await pilot.press("enter")
            await pilot.pause(1.2)
            written.append(_save(app, directory, "detail.svg"))
            await pilot.press("escape", "a", *"https://example.com/images/disk.img")
            await pilot.pause(0.3)
            written.append(_save(app, directory, "add-dialog.svg"))
            await pilot.press("escape", "question_mark")
            await pilot.pause(0.3)
            written.append(_save(app, directory, "help.svg"))
            await pilot.press("escape", "e")
            await pilot.resize_terminal(80, 24)
            await pilot.pause(1.6)  # a table redraw at the slowest pace
            written.append(_save(app, directory, "dashboard-80x24.svg"))
            app.exit()
    return written


def main(argv: Sequence[str] | None = None) -> int:
    """Write the screenshots into the directory given."""
    parser = argparse.ArgumentParser(
        allow_abbrev=False, prog="python -m tui.screenshots", description=__doc__
    )
    parser.add_argument("directory", nargs="?", default="screenshots", help="where to write the SVGs")
    parser.add_argument("--warmup", type=float, default=WARMUP, help="seconds of demo before the pictures")
    args = parser.parse_args(argv)
    os.makedirs(args.directory, exist_ok=True)
    for path in asyncio.run(take(args.directory, args.warmup)):
        print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
