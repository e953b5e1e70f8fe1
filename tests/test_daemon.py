"""``fetchtop daemon`` end to end: a real daemon subprocess driven by the real CLI, downloading from the
fault server on 127.0.0.1, including kill -9 and a clean stop in the middle of a download."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from faultserver.content import KiB, MiB, expected_sha256, file_matches
from faultserver.server import FaultServer
from faultserver.specs import FileSpec
from tests.support.control import claimed_bytes, read_control
from tests.support.daemons import Daemons, daemon_area
from tests.support.downloads import sha256_of
from tests.support.processes import FETCHTOP, child_env
from tests.support.waiting import wait_until_sync
from tui.daemon_cli import NO_DAEMON


@pytest.fixture
def daemons() -> Iterator[Daemons]:
    with daemon_area() as area:
        yield area


@pytest.mark.slow
def test_add_ls_and_complete_with_the_right_bytes(
    daemons: Daemons, threaded_fault_server: FaultServer
) -> None:
    size = 1536 * KiB
    url = threaded_fault_server.add(FileSpec("one.bin", size=size))
    daemons.start()

    out = daemons.ok("add", "-x", "4", url)
    task_id = int(out.strip())
    listed = daemons.snapshot()["tasks"]
    assert [t["id"] for t in listed] == [task_id]
    assert listed[0]["url"] == url
    assert listed[0]["options"]["connections"] == 4

    done = daemons.wait_state(task_id, "completed")
    path = daemons.downloads / "one.bin"
    assert done["path"] == str(path)
    assert sha256_of(path) == expected_sha256("one.bin", size)
    assert not (daemons.downloads / "one.bin.part").exists()

    table = daemons.ok("ls")
    assert "one.bin" in table and "completed" in table
    history = json.loads(daemons.ok("ls", "--history", "--json"))["tasks"]
    assert [(t["url"], t["state"], t["size"]) for t in history] == [(url, "completed", size)]

    # After a restart the finished task is history, not queue.
    daemons.ok("stop")
    daemons.started[-1].wait_exit()
    daemons.start()
    assert daemons.snapshot()["tasks"] == []
    history = json.loads(daemons.ok("ls", "--history", "--json"))["tasks"]
    assert [(t["url"], t["state"], t["path"]) for t in history] == [(url, "completed", str(path))]
    assert "one.bin" in daemons.ok("ls", "--history")


def test_add_resolves_a_relative_directory_against_the_callers(
    daemons: Daemons, threaded_fault_server: FaultServer
) -> None:
    url = threaded_fault_server.add(FileSpec("rel.bin", size=40 * KiB))
    daemons.start("-d", str(daemons.base / "elsewhere"))
    # The CLI runs in daemons.downloads: "-d sub" means a directory there, not under the daemon's -d.
    task_id = int(daemons.ok("add", "-d", "sub", "-o", "named.bin", url))
    daemons.wait_state(task_id, "completed")
    assert file_matches(str(daemons.downloads / "sub" / "named.bin"), "rel.bin", 40 * KiB)
    assert not (daemons.base / "elsewhere").exists()


@pytest.mark.slow
def test_kill_9_mid_download_then_restart_resumes_from_the_control_file(
    daemons: Daemons, threaded_fault_server: FaultServer
) -> None:
    srv = threaded_fault_server
    size = 2 * MiB
    url = srv.add(FileSpec("crash.bin", size=size, rate=256 * KiB, chunk_size=16 * KiB))
    first = daemons.start()
    # Many connections make the engine write (and so checkpoint) in small blocks of 256 KiB.
    int(daemons.ok("add", "-x", "32", url))
    control = daemons.downloads / "crash.bin.part.json"
    wait_until_sync(
        lambda: claimed_bytes(read_control(control)) >= 512 * KiB,
        "the control file to claim progress",
        limit=20,
    )
    first.proc.send_signal(signal.SIGKILL)
    first.wait_exit()
    claimed = claimed_bytes(read_control(control))
    assert 0 < claimed < size

    stale = daemons.cli("ls")
    assert (stale.returncode, stale.stderr.strip()) == (1, NO_DAEMON)

    requests_before = srv.stats("crash.bin").requests
    srv.update("crash.bin", rate=None)
    daemons.start()
    tasks = daemons.snapshot()["tasks"]
    assert [t["url"] for t in tasks] == [url], "the queue did not come back"
    new_id = tasks[0]["id"]
    done = daemons.wait_state(new_id, "completed")
    assert file_matches(done["path"], "crash.bin", size)
    # Resumed, not restarted: every request after the restart starts past what was on disk.
    again = srv.stats("crash.bin").records[requests_before:]
    starts = [int(r.range.removeprefix("bytes=").split("-")[0]) for r in again if r.range]
    assert starts and len(starts) == len(again), [r.range for r in again]
    assert min(starts) >= 256 * KiB, [r.range for r in again]


@pytest.mark.slow
def test_stop_saves_the_session_and_a_restart_goes_on_downloading(
    daemons: Daemons, threaded_fault_server: FaultServer
) -> None:
    srv = threaded_fault_server
    size = 1 * MiB
    running = srv.add(FileSpec("run.bin", size=size, rate=128 * KiB, chunk_size=16 * KiB))
    held = srv.add(FileSpec("held.bin", size=64 * KiB))
    daemon = daemons.start("-j", "1")
    run_id = int(daemons.ok("add", "-x", "1", running))
    held_id = int(daemons.ok("add", held))
    daemons.ok("pause", str(held_id))
    wait_until_sync(lambda: daemons.task(run_id)["done"] >= 128 * KiB, "some progress", limit=20)

    out = daemons.ok("stop")
    assert "stopped" in out
    assert daemon.wait_exit() == 0
    assert not (daemons.state_dir / "daemon.sock").exists()
    assert not (daemons.state_dir / "daemon.pid").exists()
    session = json.loads((daemons.state_dir / "session.json").read_text())
    assert [(t["url"], t["paused"]) for t in session["tasks"]] == [(running, False), (held, True)]

    srv.update("run.bin", rate=None)
    daemons.start("-j", "1")
    tasks = {t["url"]: t for t in daemons.snapshot()["tasks"]}
    assert tasks[held]["state"] == "paused"
    done = daemons.wait_state(tasks[running]["id"], "completed")
    assert file_matches(done["path"], "run.bin", size)
    assert daemons.task(tasks[held]["id"])["state"] == "paused"


@pytest.mark.slow
def test_cli_commands_steer_the_daemon(daemons: Daemons, threaded_fault_server: FaultServer) -> None:
    srv = threaded_fault_server
    url = srv.add(FileSpec("slow.bin", size=1 * MiB, rate=64 * KiB, chunk_size=8 * KiB))
    other = srv.add(FileSpec("other.bin", size=32 * KiB))
    daemons.start("-j", "1")
    first = int(daemons.ok("add", "-x", "1", url))
    second = int(daemons.ok("add", other))

    daemons.ok("limit", "100K", str(first))
    assert daemons.task(first)["options"]["speed_limit"] == 100 * KiB
    daemons.ok("limit", "2M")
    assert daemons.snapshot()["speed_limit"] == 2 * MiB
    daemons.ok("limit", "none")
    assert daemons.snapshot()["speed_limit"] is None

    daemons.ok("pause", str(first))
    daemons.wait_state(first, "paused")
    # With the first paused, the second takes the only slot and finishes.
    daemons.wait_state(second, "completed")
    daemons.ok("resume", str(first))
    daemons.wait_state(first, "downloading")
    wait_until_sync(lambda: (daemons.downloads / "slow.bin.part").exists(), "the part file", limit=10)

    daemons.ok("rm", "--delete", str(first))
    assert [t["id"] for t in daemons.snapshot()["tasks"]] == [second]
    assert not (daemons.downloads / "slow.bin.part").exists()
    assert not (daemons.downloads / "slow.bin.part.json").exists()

    refused = daemons.cli("pause", "42")
    assert refused.returncode == 1
    assert refused.stderr.strip() == "fetchtop: #42: no task with id 42"
    bad = daemons.cli("limit", "fast")
    assert bad.returncode == 2 and "invalid rate" in bad.stderr
    none = daemons.cli("pause")
    assert none.returncode == 2 and "no task id" in none.stderr


@pytest.mark.slow
def test_commands_say_no_daemon_in_one_line(daemons: Daemons) -> None:
    commands = (
        ("ls",),
        ("ls", "--json"),
        ("pause", "1"),
        ("stop",),
        ("add", "http://127.0.0.1:9/x"),
        ("attach",),
    )
    for args in commands:
        result = daemons.cli(*args)
        assert result.returncode == 1, args
        assert result.stderr.strip() == NO_DAEMON, (args, result.stderr)
        assert result.stdout == ""


def test_one_daemon_per_state_directory_and_sigterm_stops_it_cleanly(daemons: Daemons) -> None:
    first = daemons.start()
    second = subprocess.run(
        [*FETCHTOP, "daemon", "--state-dir", str(daemons.state_dir)],
        capture_output=True,
        text=True,
        timeout=30,
        env=child_env(daemons.home),
        stdin=subprocess.DEVNULL,
    )
    assert second.returncode == 1
    assert "already running" in second.stderr and "Traceback" not in second.stderr
    assert daemons.ok("ls")  # the first one is unharmed

    first.proc.send_signal(signal.SIGTERM)
    assert first.wait_exit() == 0
    assert not (daemons.state_dir / "daemon.sock").exists()
    assert "stopped" in first.output()


def test_the_scripting_commands_do_not_import_the_ui() -> None:
    code = (
        "import sys, engine.daemon.process, engine.daemon.client, tui.daemon_cli\n"
        "print(','.join(m for m in ('textual', 'tui.app') if m in sys.modules))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60)
    assert out.stdout.strip() == ""


@pytest.mark.slow
def test_detach_runs_in_the_background_until_stopped(
    daemons: Daemons, threaded_fault_server: FaultServer
) -> None:
    url = threaded_fault_server.add(FileSpec("bg.bin", size=100 * KiB))
    started = time.monotonic()
    result = subprocess.run(
        [
            *FETCHTOP,
            "daemon",
            "--detach",
            "--state-dir",
            str(daemons.state_dir),
            "-d",
            str(daemons.downloads),
        ],
        capture_output=True,
        text=True,
        timeout=30,
        env=child_env(daemons.home),
        stdin=subprocess.DEVNULL,
    )
    assert result.returncode == 0, result.stderr
    assert time.monotonic() - started < 20
    pid = int((daemons.state_dir / "daemon.pid").read_text())
    assert f"pid {pid}" in result.stdout
    os.kill(pid, 0)  # alive, though the command returned

    task_id = int(daemons.ok("add", url))
    done = daemons.wait_state(task_id, "completed")
    assert file_matches(done["path"], "bg.bin", 100 * KiB)
    assert "task 1 completed" in (daemons.state_dir / "daemon.log").read_text()

    daemons.ok("stop")

    def gone() -> bool:
        # Reparented to init, an exited daemon may linger as a zombie until reaped: that is gone too.
        try:
            status = Path(f"/proc/{pid}/status").read_text()
        except OSError:
            return True
        return "\nState:\tZ" in status

    wait_until_sync(gone, "the detached daemon to exit", limit=20)
    assert not (daemons.state_dir / "daemon.pid").exists()


def test_metrics_port_serves_prometheus_metrics(daemons: Daemons, threaded_fault_server: FaultServer) -> None:
    url = threaded_fault_server.add(FileSpec("m.bin", size=64 * KiB))
    info = daemons.start("--metrics-port", "0").wait_ready()
    task_id = int(daemons.ok("add", url))
    daemons.wait_state(task_id, "completed")
    with urllib.request.urlopen(f"http://{info['metrics']}/metrics", timeout=10) as resp:
        text = resp.read().decode()
    downloaded = [line for line in text.splitlines() if line.startswith("fetchtop_downloaded_bytes_total")]
    assert downloaded and float(downloaded[0].split()[-1]) == 64 * KiB, downloaded
