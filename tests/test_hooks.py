"""Hooks in the engine, with real scripts against the fault server on 127.0.0.1: what a hook is given
(argv, environment, no password), on-error for a failed download, and that a failing, hanging or
missing hook is an event and never changes how the download ends."""

from __future__ import annotations

import asyncio
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from engine.engine import Engine
from engine.events import HookFailed
from engine.models import TaskState
from faultserver.content import KiB, file_matches
from faultserver.server import FaultServer
from tests.support.downloads import download, fast_config, opts
from tests.support.events import EventLog
from tests.support.waiting import wait_until

RECORDER = """\
import json, os, sys
env = {k: v for k, v in os.environ.items() if k.startswith("FETCHTOP_")}
with open(sys.argv[1], "a", encoding="utf-8") as f:
    f.write(json.dumps({"argv": sys.argv[2:], "env": env}) + "\\n")
"""


def recorder(tmp_path: Path) -> tuple[tuple[str, ...], Path]:
    """A hook command that appends its arguments and FETCHTOP_* variables to a file, and that file."""
    script = tmp_path / "record.py"
    script.write_text(RECORDER)
    out = tmp_path / "calls.jsonl"
    return (sys.executable, str(script), str(out)), out


def calls(out: Path) -> list[dict[str, Any]]:
    if not out.exists():
        return []
    return [json.loads(line) for line in out.read_text().splitlines()]


async def test_on_complete_gets_the_path_last_and_the_task_in_its_environment(
    fault_server: FaultServer, tmp_path: Path, download_dir: Path
) -> None:
    url = fault_server.add_file("secret.bin", 96 * KiB, auth=("alice", "pw-123"))
    authed = url.replace("http://", "http://alice:pw-123@")
    command, out = recorder(tmp_path)
    (tmp_path / "e").mkdir()
    on_error, errors = recorder(tmp_path / "e")
    async with Engine(fast_config(on_complete=(*command, "--flag"), on_error=on_error)) as engine:
        task = await download(engine, authed, opts(download_dir))
        await engine.hooks_idle()
    assert task.state is TaskState.COMPLETED
    path = str(download_dir / "secret.bin")
    assert file_matches(path, "secret.bin", 96 * KiB)
    assert calls(out) == [
        {
            "argv": ["--flag", path],
            "env": {
                "FETCHTOP_ID": str(task.id),
                "FETCHTOP_URL": url,
                "FETCHTOP_PATH": path,
                "FETCHTOP_STATUS": "completed",
                "FETCHTOP_ERROR": "",
            },
        }
    ]
    assert "pw-123" not in out.read_text()
    assert calls(errors) == []  # on-error is for failures only


async def test_on_error_runs_for_a_failed_download_with_its_reason(
    fault_server: FaultServer, tmp_path: Path, download_dir: Path
) -> None:
    missing = fault_server.status_url(404)
    command, out = recorder(tmp_path)
    async with Engine(fast_config(on_error=command)) as engine:
        task = await download(engine, missing, opts(download_dir))
        await engine.hooks_idle()
    assert task.state is TaskState.FAILED
    [call] = calls(out)
    assert call["argv"] == [""]  # it failed before it had a name: the argument is still there
    assert call["env"]["FETCHTOP_STATUS"] == "failed"
    assert call["env"]["FETCHTOP_ID"] == str(task.id)
    assert "404" in call["env"]["FETCHTOP_ERROR"]
    assert call["env"]["FETCHTOP_ERROR"] == task.error


async def test_a_failing_hook_is_an_event_and_the_downloads_go_on(
    fault_server: FaultServer, download_dir: Path
) -> None:
    a = fault_server.add_file("a.bin", 64 * KiB)
    b = fault_server.add_file("b.bin", 64 * KiB)
    failing = (
        sys.executable,
        "-c",
        "import sys; print('first'); print('the disk is full', file=sys.stderr); sys.exit(3)",
    )
    async with Engine(fast_config(on_complete=failing)) as engine, EventLog(engine) as log:
        first = await download(engine, a, opts(download_dir))
        second = await download(engine, b, opts(download_dir))
        await engine.hooks_idle()
        failures = await wait_until(lambda: log.of(HookFailed) if len(log.of(HookFailed)) == 2 else None, "2")
    assert (first.state, second.state) == (TaskState.COMPLETED, TaskState.COMPLETED)
    assert sorted(f.task_id for f in failures) == [first.id, second.id]
    assert {(f.hook, f.reason) for f in failures} == {("on-complete", "exit status 3: the disk is full")}
    assert file_matches(str(download_dir / "b.bin"), "b.bin", 64 * KiB)


async def test_a_hanging_hook_is_killed_with_what_it_started_after_the_timeout(
    fault_server: FaultServer, tmp_path: Path, download_dir: Path
) -> None:
    url = fault_server.add_file("c.bin", 64 * KiB)
    pid_file = tmp_path / "child.pid"
    # The hook starts a child of its own, then hangs: the timeout must end both.
    hang = (
        sys.executable,
        "-c",
        "import subprocess, sys, time\n"
        "child = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(600)'])\n"
        f"open({str(pid_file)!r}, 'w').write(str(child.pid))\n"
        "print('waiting for ever', flush=True)\n"
        "time.sleep(600)\n",
    )
    async with Engine(fast_config(on_complete=hang, hook_timeout=1.0)) as engine, EventLog(engine) as log:
        task = await download(engine, url, opts(download_dir))
        started = time.monotonic()
        failed = await log.wait_for(HookFailed, task.id)
        waited = time.monotonic() - started
        snapshot = engine.task_snapshot(task.id)
    assert task.state is TaskState.COMPLETED
    assert snapshot is not None and snapshot.state is TaskState.COMPLETED
    assert failed.reason == "still running after 1s, killed: waiting for ever"
    assert waited < 20  # generous: killed at 1 s, not at the 600 s it would sleep
    child = int(pid_file.read_text())

    def gone() -> bool:
        try:
            os.kill(child, 0)
        except ProcessLookupError:
            return True
        with open(f"/proc/{child}/stat", encoding="ascii") as f:
            return f.read().rsplit(")", 1)[-1].split()[0] == "Z"

    await wait_until(gone, "the hook's own child to be killed too")


async def test_a_hook_that_cannot_start_is_an_event(fault_server: FaultServer, download_dir: Path) -> None:
    url = fault_server.add_file("d.bin", 32 * KiB)
    async with (
        Engine(fast_config(on_complete=("/nonexistent/fetchtop-hook",))) as engine,
        EventLog(engine) as log,
    ):
        task = await download(engine, url, opts(download_dir))
        failed = await log.wait_for(HookFailed, task.id)
    assert task.state is TaskState.COMPLETED
    assert failed.reason == "cannot run '/nonexistent/fetchtop-hook': No such file or directory"


async def test_closing_the_engine_waits_for_a_running_hook(
    fault_server: FaultServer, tmp_path: Path, download_dir: Path
) -> None:
    url = fault_server.add_file("e.bin", 32 * KiB)
    done = tmp_path / "slow-hook-done"
    slow = (sys.executable, "-c", f"import time; time.sleep(0.5); open({str(done)!r}, 'w').write('ok')")
    async with Engine(fast_config(on_complete=slow)) as engine:
        task = await download(engine, url, opts(download_dir))
    assert task.state is TaskState.COMPLETED
    assert done.read_text() == "ok"  # the engine closed only once the hook had ended


async def test_a_close_cancelled_while_a_hook_runs_kills_it_and_still_closes(
    fault_server: FaultServer, tmp_path: Path, download_dir: Path
) -> None:
    url = fault_server.add_file("f.bin", 32 * KiB)
    pid_file = tmp_path / "hook.pid"
    hang = (
        sys.executable,
        "-c",
        f"import os, time; open({str(pid_file)!r}, 'w').write(str(os.getpid())); time.sleep(600)",
    )
    engine = Engine(fast_config(on_complete=hang))
    await engine.start()
    task = await download(engine, url, opts(download_dir))
    await wait_until(lambda: pid_file.exists() and pid_file.read_text(), "the hook to start")
    closing = asyncio.create_task(engine.close())
    await asyncio.sleep(0.2)
    assert not closing.done()  # waiting for the hook, as a first Ctrl-C does
    closing.cancel()  # a second one
    with pytest.raises(asyncio.CancelledError):
        await asyncio.wait_for(closing, 20)
    hook = int(pid_file.read_text())
    with pytest.raises(ProcessLookupError):
        os.kill(hook, 0)  # killed and reaped
    assert task.state is TaskState.COMPLETED
    assert engine.range_client.closed  # the last step of a close: it went all the way
