"""The engine and the headless commands must never pull in the UI toolkit."""

from __future__ import annotations

import subprocess
import sys

HEADLESS_MODULES = [
    "engine",
    "engine.engine",
    "engine.codec",
    "engine.faultserver",
    "engine.metrics",
    "tui.cli",
    "tui.get",
]
UI_MODULES = ("textual", "textual_plotext", "plotext", "tui.app")


def test_headless_modules_do_not_import_the_ui() -> None:
    code = (
        "import sys\n"
        + "".join(f"import {m}\n" for m in HEADLESS_MODULES)
        + f"print(','.join(m for m in {UI_MODULES!r} if m in sys.modules))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60)
    assert out.stdout.strip() == "", f"headless import pulled in: {out.stdout.strip()}"


def test_cli_limit_matches_the_engine() -> None:
    from engine.engine import MAX_CONNECTIONS as ENGINE_MAX
    from tui.cli import MAX_CONNECTIONS as CLI_MAX

    assert CLI_MAX == ENGINE_MAX
