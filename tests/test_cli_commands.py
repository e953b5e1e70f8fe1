"""The command line as a user meets it, as real processes: ``--help`` and the light client commands."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.limits import RUN_TIMEOUT
from tests.support.processes import FETCHTOP, child_env
from tui.daemon_cli import NO_DAEMON

EVERY_COMMAND = (
    "get",
    "demo",
    "daemon",
    "add",
    "ls",
    "pause",
    "resume",
    "rm",
    "limit",
    "seturl",
    "stop",
    "attach",
)
"""Every command ``fetchtop --help`` must name."""
HEAVY = ("aiohttp.web", "textual")
"""What a client command must not load: the daemon's server and the UI toolkit (and their kin:
``aiohttp.web_app``, ``textual_plotext``)."""


def test_help_lists_every_command_with_a_summary(tmp_path: Path) -> None:
    result = subprocess.run(
        [*FETCHTOP, "--help"],
        capture_output=True,
        text=True,
        timeout=RUN_TIMEOUT,
        env=child_env(tmp_path),
        stdin=subprocess.DEVNULL,
    )
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    for command in EVERY_COMMAND:
        listed = [line.split(None, 1) for line in lines if line.startswith(f"  {command} ")]
        assert len(listed) == 1, f"{command} is not listed once in --help:\n{result.stdout}"
        assert len(listed[0]) == 2 and listed[0][1].strip(), f"{command} has no summary"


@pytest.mark.parametrize(
    "command",
    [("ls",), ("add", "http://127.0.0.1:9/x"), ("pause", "1"), ("seturl", "1", "http://127.0.0.1:9/y")],
)
def test_a_client_command_without_a_daemon_loads_neither_the_server_nor_the_ui(
    tmp_path: Path, command: tuple[str, ...]
) -> None:
    # -X importtime names every module the real command imports, on stderr, ahead of its own output.
    result = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "tui.cli", *command, "--state-dir", str(tmp_path / "s")],
        capture_output=True,
        text=True,
        timeout=RUN_TIMEOUT,
        env=child_env(tmp_path),
        stdin=subprocess.DEVNULL,
        cwd=tmp_path,
    )
    timings = [line for line in result.stderr.splitlines() if line.startswith("import time:")]
    said = [line for line in result.stderr.splitlines() if not line.startswith("import time:")]
    loaded = {line.rsplit("|", 1)[-1].strip() for line in timings}
    assert "tui.daemon_cli" in loaded  # the timing lines were read
    assert result.returncode == 1
    assert said == [NO_DAEMON]
    heavy = sorted(m for m in loaded if m.startswith(HEAVY))
    assert heavy == [], f"fetchtop {command[0]} loaded {heavy}"
