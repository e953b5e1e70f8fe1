"""State that must not be lost: a full file system (a real small tmpfs, ENOSPC from the kernel) under the
engine's session file and under a download's control file.

A failed save is retried until it works, said once, and never ends the saver; a failed checkpoint never
fails the download nor leaves its part file unresumable. The daemon's side (``ls``, ``stop`` and the
exit status) is in :mod:`tests.test_full_disk_daemon`.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

from engine.engine import Engine
from engine.events import CheckpointFailed, CheckpointRecovered, SessionSaveFailed, SessionSaveRecovered
from engine.models import TaskState
from faultserver.content import KiB
from faultserver.server import FaultServer
from faultserver.specs import FileSpec
from tests.support.control import claimed_bytes, read_control
from tests.support.downloads import assert_exact, fast_config, opts, wait_for_state, wait_until_done
from tests.support.events import EventLog
from tests.support.tmpfs import allocate, fill, small_tmpfs
from tests.support.waiting import wait_until
from tui.formatting import describe_event
from tui.model import DashboardModel
from tui.widgets.summary import summary_text

ENOSPC_TEXT = "No space left on device"


def saved_urls(session: Path) -> list[str] | None:
    """The URLs in a session file, or None while there is none."""
    try:
        data = json.loads(session.read_text())
    except (OSError, ValueError):
        return None
    return [t["url"] for t in data["tasks"]]


async def test_a_failed_session_save_is_retried_until_everything_acknowledged_is_on_disk(
    tmp_path: Path, download_dir: Path, fault_server: FaultServer
) -> None:
    state = tmp_path / "state"
    state.mkdir()
    # Slow files, so both tasks are still unfinished (and so in the saved queue) at the end.
    first = fault_server.add(FileSpec("a.bin", size=256 * KiB, rate=16 * KiB, chunk_size=4 * KiB))
    second = fault_server.add(FileSpec("b.bin", size=256 * KiB, rate=16 * KiB, chunk_size=4 * KiB))
    with small_tmpfs(state):
        session = state / "session.json"
        filler = fill(state)
        async with Engine(fast_config(session_path=str(session))) as engine, EventLog(engine) as log:
            await engine.add(first, opts(download_dir))
            failed = await log.wait_for(SessionSaveFailed)
            assert failed.reason == ENOSPC_TEXT
            assert engine.snapshot().save_error == ENOSPC_TEXT
            model = DashboardModel()
            model.apply_snapshot(engine.snapshot())
            assert f"Unsaved {ENOSPC_TEXT}" in summary_text(model, "queue", "").plain
            line = describe_event(failed, {})
            assert line is not None and line.text == f"queue not saved: {ENOSPC_TEXT} (retrying)"
            # Acknowledged while saves fail: the saver is still there to save it later.
            await engine.add(second, opts(download_dir))
            await wait_until(lambda: engine.snapshot().speed > 0, "data to flow", limit=10)
            assert saved_urls(session) is None
            assert len(log.of(SessionSaveFailed)) == 1, "one failure episode is said once"

            filler.unlink()
            await log.wait_for(SessionSaveRecovered)
            assert saved_urls(session) == [first, second]
            assert engine.snapshot().save_error is None
            model.apply_snapshot(engine.snapshot())
            assert "Unsaved" not in summary_text(model, "queue", "").plain
            assert len(log.of(SessionSaveFailed)) == 1


async def test_closing_with_a_full_state_dir_reports_the_lost_save_instead_of_raising(
    tmp_path: Path, download_dir: Path, fault_server: FaultServer
) -> None:
    state = tmp_path / "state"
    state.mkdir()
    url = fault_server.add(FileSpec("c.bin", size=256 * KiB, rate=16 * KiB, chunk_size=4 * KiB))
    with small_tmpfs(state):
        session = state / "session.json"
        engine = Engine(fast_config(session_path=str(session)))
        await engine.start()
        await engine.add(url, opts(download_dir))
        await wait_until(lambda: saved_urls(session) == [url], "the first save", limit=10)
        fill(state)
        await engine.pause_all()
        began = time.monotonic()
        await engine.close()  # raised OSError (ENOSPC) out of the saver before
        assert time.monotonic() - began < 10, "the last save is retried a bounded number of times"
        assert engine.save_error == ENOSPC_TEXT
        # The old session file is intact: the write never tore it.
        assert saved_urls(session) == [url]


async def test_a_failed_checkpoint_keeps_the_download_going_and_the_part_file_resumable(
    tmp_path: Path, fault_server: FaultServer
) -> None:
    """The control file's write fails (ENOSPC) while writes of data succeed: the part file's pages are
    all allocated before the file system is filled, so rewriting them needs no space, while a new
    control file (a temporary file renamed over the old one) needs a page there is none of."""
    downloads = tmp_path / "dl"
    downloads.mkdir()
    size = 192 * KiB
    url = fault_server.add(FileSpec("d.bin", size=size, rate=48 * KiB, chunk_size=4 * KiB))
    with small_tmpfs(downloads, size="512k"):
        part = downloads / "d.bin.part"
        control = downloads / "d.bin.part.json"
        async with Engine(fast_config()) as engine, EventLog(engine) as log:
            tid = await engine.add(url, opts(downloads, connections=1))
            await wait_until(
                lambda: claimed_bytes(read_control(control)) >= 32 * KiB, "a checkpoint", limit=20
            )
            await engine.pause(tid)
            claimed = claimed_bytes(read_control(control))
            allocate(part)
            filler = fill(downloads)

            fault_server.update("d.bin", rate=24 * KiB)
            await engine.resume(tid)
            task = await wait_for_state(
                engine, tid, lambda t: t.done >= claimed + 24 * KiB or t.state.finished, limit=20
            )
            assert task.state is TaskState.DOWNLOADING, f"{task.state}: {task.error}"
            failed = await log.wait_for(CheckpointFailed, tid)
            assert failed.reason == ENOSPC_TEXT
            # Several checkpoints failed by now; the episode was said once.
            assert len(log.of(CheckpointFailed, tid)) == 1
            # Pausing with the control file unwritable is still a pause, not a failure.
            await engine.pause(tid)
            paused = engine.snapshot().task(tid)
            assert paused is not None and paused.state is TaskState.PAUSED and paused.error is None
            # The old control file still describes the part file: a resume would pick it up.
            left = read_control(control)
            assert left is not None and claimed_bytes(left) == claimed and part.exists()

            await engine.resume(tid)
            filler.unlink()
            await log.wait_for(CheckpointRecovered, tid)
            fault_server.update("d.bin", rate=None)
            done = await wait_until_done(engine, tid)
            assert done.state is TaskState.COMPLETED, done.error
            assert_exact(done.path, "d.bin", size)
            assert not control.exists() and not part.exists()
            assert len(log.of(CheckpointFailed, tid)) == 1


async def test_a_failed_write_of_data_still_fails_the_download(
    tmp_path: Path, fault_server: FaultServer
) -> None:
    """The other side of the checkpoint rule (unchanged behaviour, guarded): bytes that cannot be
    written are an error, and the control file never claims them."""
    downloads = tmp_path / "dl"
    downloads.mkdir()
    size = 192 * KiB
    url = fault_server.add(FileSpec("e.bin", size=size, rate=48 * KiB, chunk_size=4 * KiB))
    with small_tmpfs(downloads, size="512k"):
        control = downloads / "e.bin.part.json"
        async with Engine(fast_config()) as engine:
            tid = await engine.add(url, opts(downloads, connections=1, retries=0))
            await wait_until(lambda: read_control(control) is not None, "the first checkpoint", limit=20)
            fill(downloads)  # the part file is sparse: its next pages have no room
            done = await wait_until_done(engine, tid)
            assert done.state is TaskState.FAILED
            assert done.error is not None and ENOSPC_TEXT in done.error
            assert claimed_bytes(read_control(control)) <= done.done
