"""The dashboard with a bandwidth schedule: the summary shows the rule and when it changes, and ``l``
overrides the scheduled limit until the next change. Real keys against a real engine whose wall
clock is injected (set to just before a boundary instead of waiting for 08:00)."""

from __future__ import annotations

from pathlib import Path

import pytest
from textual.widgets import Static

import engine.engine as engine_module
from engine.engine import Engine
from engine.models import EngineSnapshot, ScheduleStatus
from engine.schedule import parse_schedule, status_note
from faultserver.content import KiB
from tests.support.clock import Clock, local
from tests.support.downloads import fast_config, opts
from tests.support.pilot import wait_in_app
from tui.app import FetchtopApp
from tui.formatting import limit_text
from tui.model import DashboardModel
from tui.screens.dialogs import LimitDialog
from tui.widgets.summary import summary_text

SUMMARY_COLUMNS = 36
"""The summary pane's width (38) less its padding: what one of its lines may take."""


def summary_lines(app: FetchtopApp) -> list[str]:
    return str(app.screen.query_one("#summary", Static).render()).splitlines()


def limit_line(app: FetchtopApp) -> str:
    return next((line for line in summary_lines(app) if line.startswith("Limit")), "")


def subtitle(app: FetchtopApp) -> str:
    return str(app.screen.query_one("#summary", Static).border_subtitle)


async def test_summary_shows_the_rule_and_l_overrides_it_until_the_next_change(
    monkeypatch: pytest.MonkeyPatch, download_dir: Path
) -> None:
    # The next change is an hour away at first; the clock is then set to just before it, which the
    # engine notices at its recheck (60 s in use, shortened here).
    monkeypatch.setattr(engine_module, "SCHEDULE_RECHECK", 0.2)
    clock = Clock(local(7, 0))
    config = fast_config(
        defaults=opts(download_dir), schedule=parse_schedule("06:00-08:00=100K,08:00-10:00=300K")
    )
    app = FetchtopApp(client_factory=lambda: Engine(config, clock=clock), options=opts(download_dir))
    async with app.run_test(size=(120, 30)) as pilot:
        await wait_in_app(pilot, lambda: "sched till 08:00" in limit_line(app), lambda: limit_line(app))
        assert limit_text(100 * KiB) in limit_line(app), limit_line(app)
        assert subtitle(app) == "sched 06:00-08:00"

        await pilot.press("l")
        assert isinstance(app.screen, LimitDialog)
        await pilot.press("ctrl+u", *"50K", "enter")
        await wait_in_app(pilot, lambda: "manual till 08:00" in limit_line(app), lambda: limit_line(app))
        assert limit_text(50 * KiB) in limit_line(app)
        assert app.model.snapshot.speed_limit == 50 * KiB

        clock.set(local(7, 59, 59.5))
        await wait_in_app(pilot, lambda: "sched till 10:00" in limit_line(app), lambda: limit_line(app))
        assert limit_text(300 * KiB) in limit_line(app)
        await wait_in_app(pilot, lambda: subtitle(app) == "sched 08:00-10:00", lambda: subtitle(app))
        assert app.model.snapshot.speed_limit == 300 * KiB
        for line in summary_lines(app):
            assert len(line) <= SUMMARY_COLUMNS and "…" not in line, summary_lines(app)


@pytest.mark.parametrize("overridden", [False, True])
@pytest.mark.parametrize("rule", ["08:00-18:00", None])
@pytest.mark.parametrize("limit", [None, 999, 1023 * KiB + 1000, 1023 * 1024 * KiB])
@pytest.mark.parametrize("next_change", [None, 1_700_000_000.0])
def test_every_schedule_line_fits_the_pane(
    overridden: bool, rule: str | None, limit: int | None, next_change: float | None
) -> None:
    model = DashboardModel()
    status = ScheduleStatus(rule=rule, limit=limit, next_change=next_change, overridden=overridden)
    model.apply_snapshot(EngineSnapshot(speed_limit=limit, schedule=status, time=1.0))
    lines = summary_text(model, "queue", "").plain.splitlines()
    limit_row = next(line for line in lines if line.startswith("Limit"))
    assert status_note(status, short=True) in limit_row and limit_text(limit) in limit_row
    assert all(len(line) <= SUMMARY_COLUMNS for line in lines), lines
