"""``fetchtop daemon`` as a subprocess on a private state directory, and CLI commands run against it.

Every process started here is killed in teardown whatever the outcome, and every wait is bounded.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support.limits import LIMIT, RUN_TIMEOUT, START_TIMEOUT
from tests.support.processes import FETCHTOP, child_env
from tests.support.waiting import wait_until_sync


class DaemonProcess:
    """One ``fetchtop daemon`` child on ``state_dir``; :meth:`kill` always ends it."""

    def __init__(self, state_dir: Path, home: Path, extra: list[str]) -> None:
        self.state_dir = state_dir
        self.log_path = state_dir.parent / f"daemon-{time.monotonic_ns()}.log"
        self._log = open(self.log_path, "wb")  # closed in kill()
        self.proc = subprocess.Popen(
            [*FETCHTOP, "daemon", "--state-dir", str(state_dir), *extra],
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            env=child_env(home),
            cwd=str(state_dir.parent),
        )

    @property
    def socket(self) -> Path:
        """The control socket."""
        return self.state_dir / "daemon.sock"

    def output(self) -> str:
        """Everything the daemon printed so far."""
        return self.log_path.read_text(errors="replace")

    def info(self) -> dict[str, Any] | None:
        """The daemon.json this very process wrote, once it listens."""
        try:
            info: dict[str, Any] = json.loads((self.state_dir / "daemon.json").read_text())
        except (OSError, ValueError):
            return None
        return info if info.get("pid") == self.proc.pid else None

    def wait_ready(self) -> dict[str, Any]:
        """Wait until it listens; fail with its output if it exits first."""

        def ready() -> dict[str, Any] | None:
            if self.proc.poll() is not None:
                pytest.fail(f"daemon exited with {self.proc.returncode}:\n{self.output()}")
            return self.info()

        return wait_until_sync(ready, "the daemon to listen", limit=START_TIMEOUT, interval=0.05)

    def wait_exit(self, limit: float = 20.0) -> int:
        """Wait for the process to end by itself; returns its status."""
        try:
            return self.proc.wait(timeout=limit)
        except subprocess.TimeoutExpired:
            pytest.fail(f"daemon did not exit within {limit}s:\n{self.output()}")

    def kill(self) -> None:
        """SIGKILL if still running, reap, close the log."""
        if self.proc.poll() is None:
            self.proc.kill()
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(timeout=10)
        self._log.close()


class Daemons:
    """Starts daemons and runs CLI commands against a state directory; cleans everything up."""

    def __init__(self, base: Path) -> None:
        self.base = base
        self.state_dir = base / "s"
        self.home = base / "home"
        self.home.mkdir()
        self.downloads = base / "dl"
        self.downloads.mkdir()
        self.started: list[DaemonProcess] = []

    def start(self, *extra: str, wait: bool = True) -> DaemonProcess:
        """Start a daemon downloading into ``downloads`` by default; waits until it listens."""
        daemon = DaemonProcess(self.state_dir, self.home, ["-d", str(self.downloads), *extra])
        self.started.append(daemon)
        if wait:
            daemon.wait_ready()
        return daemon

    def cli(self, *args: str, timeout: float = RUN_TIMEOUT) -> subprocess.CompletedProcess[str]:
        """Run ``fetchtop ARGS --state-dir STATE`` in ``downloads`` (bounded); returns the result."""
        command, *rest = args
        return subprocess.run(
            [*FETCHTOP, command, *rest, "--state-dir", str(self.state_dir)],
            capture_output=True,
            text=True,
            timeout=timeout,
            env=child_env(self.home),
            cwd=str(self.downloads),
            stdin=subprocess.DEVNULL,
        )

    def ok(self, *args: str) -> str:
        """Run a CLI command that must succeed; returns its stdout."""
        result = self.cli(*args)
        assert result.returncode == 0, f"{args}: exit {result.returncode}\n{result.stdout}{result.stderr}"
        assert "Traceback" not in result.stderr, result.stderr
        return result.stdout

    def snapshot(self) -> dict[str, Any]:
        """``fetchtop ls --json``, parsed."""
        data: dict[str, Any] = json.loads(self.ok("ls", "--json"))
        return data

    def task(self, task_id: int) -> dict[str, Any]:
        """One task from ``ls --json``."""
        for task in self.snapshot()["tasks"]:
            if task["id"] == task_id:
                return dict(task)
        pytest.fail(f"task {task_id} is not listed")

    def wait_state(self, task_id: int, state: str, limit: float = LIMIT) -> dict[str, Any]:
        """Poll ``ls --json`` until the task reaches ``state``; fails early if it failed."""

        def reached() -> dict[str, Any] | None:
            task = self.task(task_id)
            if task["state"] == "failed" and state != "failed":
                pytest.fail(f"task {task_id} failed: {task['error']}")
            return task if task["state"] == state else None

        return wait_until_sync(reached, f"task {task_id} to be {state}", limit=limit, interval=0.2)

    def kill_all(self) -> None:
        """End every daemon this test started."""
        for daemon in self.started:
            daemon.kill()
        # A detached daemon is not our child: end it by the pid it wrote, if it still runs.
        pid_file = self.state_dir / "daemon.pid"
        with contextlib.suppress(OSError, ValueError):
            pid = int(pid_file.read_text().strip())
            if pid not in {d.proc.pid for d in self.started}:
                os.kill(pid, signal.SIGKILL)


@contextlib.contextmanager
def daemon_area() -> Iterator[Daemons]:
    """A :class:`Daemons` on a short private directory (Unix socket paths are limited to 108 bytes),
    removed with every process in it at the end."""
    base = Path(tempfile.mkdtemp(prefix="ftd-", dir="/tmp"))
    manager = Daemons(base)
    try:
        yield manager
    finally:
        manager.kill_all()
        shutil.rmtree(base, ignore_errors=True)
