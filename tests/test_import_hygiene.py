"""The engine, the fault server and the headless commands must never pull in the UI toolkit, and
``fetchtop get`` loads only what a download needs.

One subprocess per module, so a failure names the module that pulled the UI in (and a module that
imports fine only after another one does not hide behind it).
"""

from __future__ import annotations

import pkgutil
import subprocess
import sys
from pathlib import Path

import pytest

import engine
import faultserver
from faultserver.content import KiB, file_matches
from faultserver.server import FaultServer
from tests.support.limits import RUN_TIMEOUT
from tests.support.processes import assert_no_traceback, child_env

HEADLESS_TUI_MODULES = ["tui.cli", "tui.options", "tui.get", "tui.daemon_cli", "tui.demo"]
"""The command-line modules: ``fetchtop get``, ``ls``, ``add``... start without loading Textual."""
UI_MODULES = ("textual", "textual_plotext", "plotext", "tui.app")


def headless_modules() -> list[str]:
    """Every module of the engine and fault server packages (found, so new ones are covered), then the
    headless command modules of the UI package."""
    found = ["engine", "faultserver"]
    for package in (engine, faultserver):
        found += [m.name for m in pkgutil.walk_packages(package.__path__, package.__name__ + ".")]
    return found + HEADLESS_TUI_MODULES


@pytest.mark.parametrize("module", headless_modules())
def test_headless_module_does_not_import_the_ui(module: str) -> None:
    code = (
        f"import importlib, sys\nimportlib.import_module({module!r})\n"
        f"print(','.join(m for m in {UI_MODULES!r} if m in sys.modules))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, f"importing {module} failed:\n{out.stderr}"
    assert out.stdout.strip() == "", f"importing {module} pulled in: {out.stdout.strip()}"


GET_UNNEEDED = (
    # The dashboard.
    "textual",
    "textual_plotext",
    "plotext",
    "tui.app",
    # The metrics endpoint, loaded for --metrics-port only.
    "prometheus_client",
    "engine.metrics",
    # aiohttp itself (a third of a short run): a plain ranged download is the range client's alone.
    "aiohttp",
    "engine.connector",
    # The daemon.
    "engine.daemon",
    # The engine's file work runs in asyncio's own executor.
    "aiofiles",
    # Progress bars are drawn by Rich on a terminal only; -q draws none.
    "rich",
)
"""Packages and modules a quiet ``fetchtop get`` of one file must not load (each with its submodules)."""


def run_probe(code: str, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    """Run Python ``code`` in a fresh interpreter, as a child of the tests (private HOME, no proxies)."""
    home = tmp_path / "home"
    home.mkdir(exist_ok=True)
    return subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=RUN_TIMEOUT,
        cwd=tmp_path,
        env=child_env(home),
    )


def test_get_loads_no_dashboard_daemon_metrics_or_bars(
    threaded_fault_server: FaultServer, tmp_path: Path
) -> None:
    url = threaded_fault_server.add_file("one.bin", 256 * KiB)
    out = tmp_path / "out"
    code = (
        "import sys\nfrom tui.cli import main\n"
        f"status = main(['get', '-q', '-d', {str(out)!r}, {url!r}])\n"
        f"unneeded = {GET_UNNEEDED!r}\n"
        "loaded = (m for m in sys.modules if any(m == u or m.startswith(u + '.') for u in unneeded))\n"
        "print(','.join(sorted(loaded)))\n"
        "sys.exit(status)\n"
    )
    res = run_probe(code, tmp_path)
    assert_no_traceback(res.stdout, res.stderr)
    assert res.returncode == 0, res.stderr
    assert file_matches(str(out / "one.bin"), "one.bin", 256 * KiB)
    assert res.stdout.strip() == "", f"fetchtop get loaded: {res.stdout.strip()}"


EXIT_PROBE = """
import atexit, gc, sys
# Registered first, so it runs last of the exit handlers, just before the interpreter's teardown.
atexit.register(lambda: print(len(gc.get_objects()), gc.get_freeze_count()))
from tui.cli import main
sys.exit(main(["get", "-q", "-d", {out!r}, {url!r}]))
"""


def test_get_leaves_next_to_nothing_for_the_exit_collections(
    threaded_fault_server: FaultServer, tmp_path: Path
) -> None:
    """The interpreter's teardown runs full collections over every object the collector tracks: with
    aiohttp's and the engine's 50 000 objects, 0.1 s and more of a short ``get``. What the imports
    made is frozen (out of every collection), so only what the run itself left is scanned."""
    url = threaded_fault_server.add_file("one.bin", 64 * KiB)
    res = run_probe(EXIT_PROBE.format(out=str(tmp_path / "out"), url=url), tmp_path)
    assert res.returncode == 0, res.stderr
    assert file_matches(str(tmp_path / "out" / "one.bin"), "one.bin", 64 * KiB)
    tracked, frozen = map(int, res.stdout.split())
    assert tracked < frozen / 10, (tracked, frozen)
