"""The engine, the fault server and the headless commands must never pull in the UI toolkit.

One subprocess per module, so a failure names the module that pulled the UI in (and a module that
imports fine only after another one does not hide behind it).
"""

from __future__ import annotations

import pkgutil
import subprocess
import sys

import pytest

import engine
import faultserver

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
