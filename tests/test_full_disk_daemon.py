"""The daemon with its state directory on a full file system (a real small tmpfs): ``ls`` says the queue
is not saved, what was acknowledged reaches the disk once there is room, and ``stop`` fails loudly, in one
line and without a traceback, when the last save could not be made."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from faultserver.content import KiB
from faultserver.server import FaultServer
from faultserver.specs import FileSpec
from tests.support.daemons import Daemons, daemon_area
from tests.support.processes import assert_no_traceback
from tests.support.tmpfs import fill, small_tmpfs
from tests.support.waiting import wait_until_sync

NOT_SAVED = "queue not saved: No space left on device"


@pytest.fixture
def daemons() -> Iterator[Daemons]:
    with daemon_area() as area:
        area.state_dir.mkdir(mode=0o700)
        with small_tmpfs(area.state_dir):
            yield area


def saved_urls(session: Path) -> list[str] | None:
    """The URLs in the daemon's session file, or None while there is none."""
    try:
        data = json.loads(session.read_text())
    except (OSError, ValueError):
        return None
    return [t["url"] for t in data["tasks"]]


def slow_file(srv: FaultServer, name: str) -> str:
    """A file served slowly enough to be unfinished (and so in the saved queue) for the whole test."""
    return srv.add(FileSpec(name, size=512 * KiB, rate=8 * KiB, chunk_size=4 * KiB))


@pytest.mark.slow
def test_ls_says_the_queue_is_not_saved_and_everything_acknowledged_is_saved_once_there_is_room(
    daemons: Daemons, threaded_fault_server: FaultServer
) -> None:
    srv = threaded_fault_server
    first, second = slow_file(srv, "a.bin"), slow_file(srv, "b.bin")
    daemon = daemons.start()
    session = daemons.state_dir / "session.json"
    filler = fill(daemons.state_dir)

    daemons.ok("add", first)
    wait_until_sync(lambda: daemons.snapshot().get("save_error"), "the daemon to notice", limit=20)
    listed = daemons.cli("ls")
    assert listed.returncode == 0, listed.stderr
    assert NOT_SAVED in listed.stderr
    daemons.ok("add", second)  # acknowledged while saves fail
    assert saved_urls(session) is None

    filler.unlink()
    wait_until_sync(lambda: saved_urls(session) == [first, second], "the queue on disk", limit=40)
    assert daemons.snapshot()["save_error"] is None
    assert NOT_SAVED not in daemons.cli("ls").stderr

    assert "stopped" in daemons.ok("stop")
    assert daemon.wait_exit() == 0
    log = daemon.output()
    assert_no_traceback(log)
    assert log.count("cannot save the queue: No space left on device") == 1, log
    assert "the queue is saved again" in log

    daemons.start()
    assert [t["url"] for t in daemons.snapshot()["tasks"]] == [first, second]


@pytest.mark.slow
def test_stop_fails_in_one_line_when_the_last_save_fails(
    daemons: Daemons, threaded_fault_server: FaultServer
) -> None:
    srv = threaded_fault_server
    url = slow_file(srv, "c.bin")
    daemon = daemons.start()
    session = daemons.state_dir / "session.json"
    daemons.ok("add", url)
    wait_until_sync(lambda: saved_urls(session) == [url], "the first save", limit=20)
    fill(daemons.state_dir)
    daemons.ok("pause", "1")  # a change that can no longer be saved

    stopped = daemons.cli("stop")
    assert stopped.returncode == 1, stopped.stdout + stopped.stderr
    lines = stopped.stderr.splitlines()
    assert len(lines) == 1 and NOT_SAVED in lines[0], stopped.stderr
    assert daemon.wait_exit() == 1
    assert_no_traceback(daemon.output(), stopped.stderr)
    # What was saved before is still there, whole.
    assert saved_urls(session) == [url]
