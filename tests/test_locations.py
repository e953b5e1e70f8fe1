"""Every command finds its state in the same place: ``--state-dir``, ``$FETCHTOP_STATE_DIR``, then XDG."""

from __future__ import annotations

from pathlib import Path

import pytest

from engine.config import EngineConfig
from engine.locations import Locations
from engine.models import TaskOptions
from tui.app import dashboard_app
from tui.cli import build_parser


@pytest.fixture
def xdg(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Private XDG state and runtime directories, and no state directory chosen by the environment."""
    monkeypatch.delenv("FETCHTOP_STATE_DIR", raising=False)
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "xdg-state"))
    runtime = tmp_path / "runtime"
    runtime.mkdir(mode=0o700)
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(runtime))
    return tmp_path


def test_without_a_choice_state_is_in_xdg_and_the_socket_in_the_runtime_dir(xdg: Path) -> None:
    where = Locations.resolve()
    assert where.state_dir == str(xdg / "xdg-state" / "fetchtop")
    assert where.socket == str(xdg / "runtime" / "fetchtop" / "daemon.sock")
    assert where.session == str(xdg / "xdg-state" / "fetchtop" / "session.json")
    assert {Path(p).name for p in (where.history, where.lock, where.pid, where.info, where.log)} == {
        "history.json",
        "daemon.lock",
        "daemon.pid",
        "daemon.json",
        "daemon.log",
    }


def test_the_environment_and_the_option_choose_the_state_dir_and_the_socket_follows(
    xdg: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FETCHTOP_STATE_DIR", str(xdg / "env"))
    assert Locations.resolve() == Locations(str(xdg / "env"), str(xdg / "env" / "daemon.sock"))
    # The option wins over the variable; a relative one is taken from the working directory.
    monkeypatch.chdir(xdg)
    assert Locations.resolve("opt") == Locations(str(xdg / "opt"), str(xdg / "opt" / "daemon.sock"))
    assert Locations.resolve("opt", "s.sock").socket == str(xdg / "s.sock")


async def test_the_dashboard_saves_its_session_in_fetchtop_state_dir(
    xdg: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Regression: the dashboard used the platform directory even when the variable named another.
    monkeypatch.setenv("FETCHTOP_STATE_DIR", str(xdg / "chosen"))
    app = dashboard_app([], TaskOptions(directory=str(xdg)), EngineConfig())
    async with app.run_test(size=(100, 30)) as pilot:
        await pilot.press("q")
    assert (xdg / "chosen" / "session.json").is_file()
    assert not (xdg / "xdg-state").exists()


async def test_the_dashboard_takes_a_state_dir_option(xdg: Path) -> None:
    args = build_parser(None).parse_args(["--state-dir", str(xdg / "opt")])
    app = dashboard_app([], TaskOptions(directory=str(xdg)), EngineConfig(), state_dir=args.state_dir)
    async with app.run_test(size=(100, 30)) as pilot:
        await pilot.press("q")
    assert (xdg / "opt" / "session.json").is_file()
    assert not (xdg / "xdg-state").exists()
