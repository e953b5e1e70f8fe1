"""One engine per state directory: the dashboard attaches to a running daemon, owns the state directory
(lock and control socket) when none runs, and hands its downloads over to a detached daemon when it
quits or loses its terminal.

The dashboard runs under Textual's pilot against real ``fetchtop daemon`` processes and a fault
server on 127.0.0.1.
"""

from __future__ import annotations

import asyncio
import json
import os
import shlex
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from engine.models import TaskState
from faultserver.content import KiB, MiB, file_matches
from faultserver.server import FaultServer
from faultserver.specs import FileSpec
from tests.support.daemons import Daemons, daemon_area
from tests.support.downloads import fast_config, opts
from tests.support.limits import RUN_TIMEOUT
from tests.support.pilot import wait_in_app
from tests.support.processes import FETCHTOP, child_env
from tests.support.waiting import wait_until, wait_until_sync
from tui.app import FetchtopApp, dashboard_app
from tui.screens.dialogs import QuitDialog

SIZE = (120, 36)
"""Terminal size for the pilot."""


@pytest.fixture
def daemons() -> Iterator[Daemons]:
    with daemon_area() as area:
        yield area


def dashboard(daemons: Daemons, urls: list[str] | None = None) -> FetchtopApp:
    """The dashboard ``fetchtop --state-dir STATE -d DOWNLOADS URL...`` opens."""
    options = opts(daemons.downloads, connections=2)
    return dashboard_app(urls or [], options, fast_config(defaults=options), state_dir=str(daemons.state_dir))


def leftovers(directory: Path) -> list[str]:
    """Part and control files left in a directory."""
    return sorted(p.name for p in directory.iterdir() if p.name.endswith((".part", ".part.json")))


def info(daemons: Daemons) -> dict[str, Any] | None:
    """The daemon.json of whichever engine owns the state directory now."""
    try:
        data: dict[str, Any] = json.loads((daemons.state_dir / "daemon.json").read_text())
    except (OSError, ValueError):
        return None
    return data


@pytest.mark.slow
async def test_the_dashboard_attaches_to_a_running_daemon_instead_of_downloading_its_tasks_again(
    daemons: Daemons, threaded_fault_server: FaultServer
) -> None:
    # Regression: the dashboard loaded the daemon's session.json and downloaded the same task into
    # the same .part file at the same time (1.9x the bytes, an I/O error, a stale control file).
    srv = threaded_fault_server
    size = 1 * MiB
    url = srv.add(FileSpec("shared.bin", size=size, rate=128 * KiB, chunk_size=8 * KiB))
    extra = srv.add(FileSpec("extra.bin", size=64 * KiB))
    await asyncio.to_thread(daemons.start)
    task_id = int(await asyncio.to_thread(daemons.ok, "add", "-x", "2", url))
    await asyncio.to_thread(daemons.wait_state, task_id, "downloading")

    app = dashboard(daemons, [extra])
    async with app.run_test(size=SIZE) as pilot:
        await wait_in_app(pilot, lambda: app.model.task(task_id) is not None, "the daemon's task")
        # The URL given to the dashboard went into the daemon's queue.
        snapshot = await asyncio.to_thread(daemons.snapshot)
        assert [t["url"] for t in snapshot["tasks"]] == [url, extra], snapshot
        srv.update("shared.bin", rate=None)
        await wait_in_app(
            pilot,
            lambda: (
                len(app.model.snapshot.tasks) == 2
                and all(t.state is TaskState.COMPLETED for t in app.model.snapshot.tasks)
            ),
            "both downloads to complete",
        )
        await pilot.press("q")  # nothing active: quits without asking
        await wait_in_app(pilot, lambda: not app.is_running, "the dashboard to quit")
    assert file_matches(str(daemons.downloads / "shared.bin"), "shared.bin", size)
    assert file_matches(str(daemons.downloads / "extra.bin"), "extra.bin", 64 * KiB)
    assert srv.stats("shared.bin").bytes_sent <= size + 64 * KiB, srv.stats("shared.bin").bytes_sent
    assert leftovers(daemons.downloads) == []
    # The daemon still owns the state directory and serves its queue.
    assert daemons.started[-1].proc.poll() is None
    assert len((await asyncio.to_thread(daemons.snapshot))["tasks"]) == 2


async def _wait_owner(daemons: Daemons, pid: int) -> dict[str, Any]:
    return await wait_until(
        lambda: (data := info(daemons)) is not None and data.get("pid") == pid and data,
        f"pid {pid} to own the state directory",
    )


@pytest.mark.slow
async def test_the_dashboard_owns_the_state_dir_and_serves_the_cli_and_a_second_dashboard(
    daemons: Daemons, threaded_fault_server: FaultServer
) -> None:
    srv = threaded_fault_server
    size = 512 * KiB
    url = srv.add(FileSpec("own.bin", size=size, rate=64 * KiB, chunk_size=8 * KiB))
    later = srv.add(FileSpec("later.bin", size=32 * KiB))
    app = dashboard(daemons, [url])
    async with app.run_test(size=SIZE) as pilot:
        await _wait_owner(daemons, os.getpid())
        await wait_in_app(pilot, lambda: app.model.snapshot.tasks != (), "the task")
        # fetchtop ls and add reach the dashboard's engine.
        listed = await asyncio.to_thread(daemons.snapshot)
        assert [t["url"] for t in listed["tasks"]] == [url]
        added = int((await asyncio.to_thread(daemons.ok, "add", later)).strip())
        await wait_in_app(pilot, lambda: app.model.task(added) is not None, "the added task in the dashboard")
        # No second engine: a daemon refuses the state directory, a second dashboard attaches.
        refused = await asyncio.to_thread(daemons.cli, "daemon", "-d", str(daemons.downloads))
        assert refused.returncode == 1, refused
        assert "already running" in refused.stderr and "Traceback" not in refused.stderr
        second = dashboard(daemons)
        async with second.run_test(size=SIZE) as pilot2:
            await wait_in_app(pilot2, lambda: second.model.task(added) is not None, "the second dashboard")
            srv.update("own.bin", rate=None)
            await wait_in_app(
                pilot2,
                lambda: all(t.state is TaskState.COMPLETED for t in second.model.snapshot.tasks),
                "completion, seen from the second dashboard",
            )
            await pilot2.press("q")
            await wait_in_app(pilot2, lambda: not second.is_running, "the second dashboard to quit")
        assert app.is_running, "the owner goes on when an attached dashboard quits"
        await wait_in_app(pilot, lambda: app.model.totals().unfinished == 0, "the owner to see it")
        await pilot.press("q")
        await wait_in_app(pilot, lambda: not app.is_running, "the owner to quit")
    assert file_matches(str(daemons.downloads / "own.bin"), "own.bin", size)
    assert leftovers(daemons.downloads) == []
    # Quitting released the state directory: nothing listens, a daemon may start.
    assert info(daemons) is None
    assert not (daemons.state_dir / "daemon.sock").exists()
    await asyncio.to_thread(daemons.start)


def _daemon_pid(daemons: Daemons, not_pid: int) -> int | None:
    """The pid of a live engine other than ``not_pid`` that owns the state directory."""
    data = info(daemons)
    pid = None if data is None else data.get("pid")
    if not isinstance(pid, int) or pid == not_pid:
        return None
    try:
        os.kill(pid, 0)
    except OSError:
        return None
    return pid


@pytest.mark.slow
async def test_quitting_with_keep_running_hands_the_downloads_to_a_detached_daemon(
    daemons: Daemons, threaded_fault_server: FaultServer
) -> None:
    srv = threaded_fault_server
    size = 768 * KiB
    url = srv.add(FileSpec("handed.bin", size=size, rate=64 * KiB, chunk_size=8 * KiB))
    app = dashboard(daemons, [url])
    async with app.run_test(size=SIZE) as pilot:
        tasks = lambda: app.model.snapshot.tasks  # noqa: E731
        await wait_in_app(pilot, lambda: tasks() and tasks()[0].done > 64 * KiB, "progress")
        await pilot.press("q")
        assert isinstance(app.screen, QuitDialog) and app.screen.background
        await pilot.press("n")  # stay
        assert app.is_running and not isinstance(app.screen, QuitDialog)
        before = srv.stats("handed.bin").requests
        await pilot.press("q", "b")  # keep them running in the background
        await wait_in_app(pilot, lambda: not app.is_running, "the dashboard to quit", limit=60)
    assert app.host is not None and app.host.report is not None
    assert "daemon started" in app.host.report, app.host.report
    pid = await wait_until(lambda: _daemon_pid(daemons, os.getpid()), "a daemon to own the state directory")
    srv.update("handed.bin", rate=None)
    listed = await asyncio.to_thread(daemons.snapshot)
    [task] = listed["tasks"]
    done = await asyncio.to_thread(daemons.wait_state, task["id"], "completed")
    assert file_matches(done["path"], "handed.bin", size)
    # The daemon resumed from the control file rather than starting over.
    headers = srv.stats("handed.bin").range_headers[before:]
    assert headers and all(h is not None and not h.startswith("bytes=0-") for h in headers), headers
    assert leftovers(daemons.downloads) == []
    await asyncio.to_thread(daemons.ok, "stop")
    await wait_until(lambda: _daemon_pid(daemons, os.getpid()) is None, f"daemon {pid} to stop")


@pytest.mark.slow
@pytest.mark.parametrize("hang_up", ["sighup", "terminal-closed"])
def test_losing_the_terminal_keeps_the_downloads_running_in_a_daemon(
    daemons: Daemons, threaded_fault_server: FaultServer, hang_up: str
) -> None:
    # The real dashboard in a real terminal (tmux); then SIGHUP, or the terminal itself goes away
    # (what a dropped SSH connection does): the download must go on, in a daemon, to the last byte.
    srv = threaded_fault_server
    size = 768 * KiB
    url = srv.add(FileSpec("ssh.bin", size=size, rate=64 * KiB, chunk_size=8 * KiB))
    tmux = ["tmux", "-S", str(daemons.base / "tmux.sock")]
    env = child_env(daemons.home)
    command = [*FETCHTOP, "--state-dir", str(daemons.state_dir), "-d", str(daemons.downloads), "-x", "2", url]
    try:
        subprocess.run(
            [*tmux, "new-session", "-d", "-x", "120", "-y", "36", f"exec {shlex.join(command)}"],
            env=env,
            cwd=str(daemons.downloads),
            check=True,
            timeout=RUN_TIMEOUT,
        )
        owner = wait_until_sync(lambda: (data := info(daemons)) is not None and data.get("pid"), "its owner")
        [task] = daemons.snapshot()["tasks"]
        wait_until_sync(lambda: daemons.task(task["id"])["done"] > 64 * KiB, "progress in the dashboard")
        before = srv.stats("ssh.bin").requests
        if hang_up == "sighup":
            os.kill(owner, signal.SIGHUP)
        else:
            subprocess.run([*tmux, "kill-server"], env=env, timeout=RUN_TIMEOUT, check=True)
        pid = wait_until_sync(lambda: _daemon_pid(daemons, owner), "a daemon to take over", limit=60)
        wait_until_sync(lambda: not _alive(owner), "the dashboard to exit")
        srv.update("ssh.bin", rate=None)
        done = daemons.wait_state(task["id"], "completed")
        assert file_matches(done["path"], "ssh.bin", size)
        headers = srv.stats("ssh.bin").range_headers[before:]
        assert headers and all(h is not None and not h.startswith("bytes=0-") for h in headers), headers
        assert leftovers(daemons.downloads) == []
        daemons.ok("stop")
        wait_until_sync(lambda: not _alive(pid), f"daemon {pid} to stop")
    finally:
        subprocess.run([*tmux, "kill-server"], env=env, timeout=RUN_TIMEOUT, capture_output=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except OSError:
        return False
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as f:
            return f.read().rsplit(")", 1)[-1].split()[0] != "Z"
    except OSError:
        return False
