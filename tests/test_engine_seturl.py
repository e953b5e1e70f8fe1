"""Expired links: Engine.set_url against real local servers (the fault server, a second one as a mirror).

The bytes on disk are kept only when the new URL serves the same file (size, ETag, Last-Modified);
otherwise the change is refused with the reason, or with ``restart`` the task starts over.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest

from engine.client import EngineError
from engine.engine import Engine
from engine.events import TaskUrlChanged
from engine.models import TaskSnapshot, TaskState
from faultserver.content import KiB, MiB
from faultserver.server import FaultServer
from tests.support.downloads import assert_exact, fast_config, opts, wait_for_state, wait_until_done
from tests.support.events import EventLog
from tests.support.waiting import wait_until

SIZE = 2 * MiB + 4321
RATE = 256 * KiB
"""Per response: four connections take about 2 s for the file, so it is caught part-way."""


def control_of(task: TaskSnapshot) -> dict[str, object]:
    """The JSON of a task's control file."""
    assert task.part_path is not None
    return dict(json.loads(Path(task.part_path + ".json").read_text()))


async def paused_part_way(engine: Engine, url: str, directory: Path) -> TaskSnapshot:
    """Start a download of ``url``, pause it once it holds some bytes; its paused snapshot."""
    tid = await engine.add(url, opts(directory))
    await wait_for_state(engine, tid, lambda t: t.done >= 300 * KiB)
    await engine.pause(tid)
    task = engine.snapshot().task(tid)
    assert task is not None and task.state is TaskState.PAUSED and 0 < task.done < SIZE
    return task


def exists(path: str | None) -> bool:
    """Whether a file is there (a plain function, so async tests can call it)."""
    return path is not None and Path(path).exists()


def served_since(server: FaultServer, name: str) -> int:
    """Body bytes the server sent for ``name`` since its stats were last reset."""
    return server.stats(name).bytes_sent


async def test_expired_link_replaced_keeps_the_bytes(fault_server: FaultServer, download_dir: Path) -> None:
    # The link expires mid-download (the file moves: the old path answers 404), so when the
    # connections drop (reset after 400 KiB each) their retries fail; the new URL serves the same
    # file, so the bytes stay and the rest comes from the new URL.
    name = "expiring.bin"
    old_url = fault_server.add_file(name, SIZE, rate=RATE, reset_after=400 * KiB, reset_times=None)
    async with Engine(fast_config()) as engine, EventLog(engine) as log:
        tid = await engine.add(old_url, opts(download_dir, retries=2))
        await wait_for_state(engine, tid, lambda t: t.done >= 300 * KiB)
        fault_server.update(name, path="/signed/expiring.bin")
        failed = await wait_until_done(engine, tid)
        assert failed.state is TaskState.FAILED and "404" in (failed.error or "")
        assert failed.part_path is not None and exists(failed.part_path)
        held = control_of(failed)
        kept_before = sum(int(b) - int(a) for a, b in held["done"])  # type: ignore[attr-defined]
        assert kept_before > 0
        new_url = fault_server.base_url + "/signed/expiring.bin"
        fault_server.update(name, rate=None, reset_after=None)
        fault_server.reset_stats(name)

        kept = await engine.set_url(tid, new_url)

        assert kept == kept_before
        changed = await log.wait_for(TaskUrlChanged, tid)
        assert changed.url == new_url and changed.kept == kept and changed.restarted is None
        task = engine.snapshot().task(tid)
        assert task is not None
        assert task.state is TaskState.PAUSED and task.error is None and task.url == new_url
        assert task.done == kept
        assert control_of(task)["url"] == new_url  # a restarted engine adopts the part file for it
        probe = fault_server.stats(name).records
        assert [r.range for r in probe] == ["bytes=0-0"]  # one byte asked, through GET
        assert probe[0].method == "GET"

        await engine.resume(tid)
        done = await wait_until_done(engine, tid)
    assert done.state is TaskState.COMPLETED, done.error
    assert_exact(done.path, name, SIZE)
    # Only what was missing came from the new URL (plus the probe's byte and range overlaps).
    assert served_since(fault_server, name) <= SIZE - kept + 64 * KiB


async def test_a_second_server_with_the_same_file_keeps_the_bytes_across_a_restart(
    fault_server: FaultServer, download_dir: Path, tmp_path: Path
) -> None:
    # A mirror: the same name, size and version on another server has the same bytes and validators.
    name = "mirrored.bin"
    session = str(tmp_path / "session.json")
    url = fault_server.add_file(name, SIZE, rate=RATE)
    async with FaultServer() as mirror:
        mirror_url = mirror.add_file(name, SIZE)
        async with Engine(fast_config(session_path=session)) as engine:
            paused = await paused_part_way(engine, url, download_dir)
        # A new engine: the task comes back paused from the session, its files not looked at yet.
        async with Engine(fast_config(session_path=session)) as engine:
            (restored,) = engine.snapshot().tasks
            assert restored.state is TaskState.PAUSED and restored.url == url
            kept = await engine.set_url(restored.id, mirror_url)
            assert kept == paused.done
        async with Engine(fast_config(session_path=session)) as engine:
            (again,) = engine.snapshot().tasks
            assert again.url == mirror_url and again.state is TaskState.PAUSED
            await engine.resume(again.id)
            done = await wait_until_done(engine, again.id)
        assert done.state is TaskState.COMPLETED, done.error
        assert_exact(done.path, name, SIZE)
        assert Path(done.path or "").name == name  # the same file, not a numbered new one
        assert mirror.stats(name).bytes_sent <= SIZE - kept + 64 * KiB


async def test_a_different_size_is_refused(fault_server: FaultServer, download_dir: Path) -> None:
    url = fault_server.add_file("sized.bin", SIZE, rate=RATE)
    other = fault_server.add_file("sized-other.bin", SIZE + 1)
    async with Engine(fast_config()) as engine, EventLog(engine) as log:
        paused = await paused_part_way(engine, url, download_dir)
        with pytest.raises(EngineError, match=rf"serves {SIZE + 1} bytes.*is of {SIZE} bytes"):
            await engine.set_url(paused.id, other)
        after = engine.snapshot().task(paused.id)
        assert after is not None
        assert after.url == url and after.state is TaskState.PAUSED and after.done == paused.done
        assert control_of(after)["url"] == url
        assert not log.of(TaskUrlChanged)


async def test_a_different_etag_is_refused_and_restart_starts_over(
    fault_server: FaultServer, download_dir: Path
) -> None:
    # Same name and size on a second server, but another version: other bytes, other validators.
    name = "versioned.bin"
    url = fault_server.add_file(name, SIZE, rate=RATE)
    async with FaultServer() as other_server:
        other = other_server.add_file(name, SIZE, version=1)
        async with Engine(fast_config()) as engine, EventLog(engine) as log:
            paused = await paused_part_way(engine, url, download_dir)
            with pytest.raises(EngineError, match=r"another version of the file \(ETag"):
                await engine.set_url(paused.id, other)
            assert exists(paused.part_path)

            kept = await engine.set_url(paused.id, other, restart=True)

            assert kept == 0
            changed = await log.wait_for(TaskUrlChanged, paused.id)
            assert changed.restarted is not None and "ETag" in changed.restarted
            task = engine.snapshot().task(paused.id)
            assert task is not None and task.state is TaskState.PAUSED and task.done == 0
            assert not exists(paused.part_path)
            assert not exists((paused.part_path or "") + ".json")
            await engine.resume(paused.id)
            done = await wait_until_done(engine, paused.id)
        assert done.state is TaskState.COMPLETED, done.error
        assert_exact(done.path, name, SIZE, version=1)


async def test_validators_not_checked_with_no_if_range(fault_server: FaultServer, download_dir: Path) -> None:
    # --no-if-range (signed URLs whose validators change): the size alone decides.
    name = "unchecked.bin"
    url = fault_server.add_file(name, SIZE, rate=RATE)
    async with FaultServer() as other_server:
        other = other_server.add_file(name, SIZE, version=1)  # another ETag and Last-Modified
        async with Engine(fast_config()) as engine:
            tid = await engine.add(url, opts(download_dir, check_validators=False))
            await wait_for_state(engine, tid, lambda t: t.done >= 300 * KiB)
            await engine.pause(tid)
            paused = engine.snapshot().task(tid)
            assert paused is not None
            assert await engine.set_url(tid, other) == paused.done


async def test_only_stopped_tasks_take_a_new_url(fault_server: FaultServer, download_dir: Path) -> None:
    url = fault_server.add_file("busy.bin", SIZE, rate=RATE)
    small = fault_server.add_file("small.bin", 1000)
    async with Engine(fast_config()) as engine:
        done = await wait_until_done(engine, await engine.add(small, opts(download_dir)))
        with pytest.raises(EngineError, match="completed: there is nothing left"):
            await engine.set_url(done.id, url)
        tid = await engine.add(url, opts(download_dir))
        await wait_for_state(engine, tid, lambda t: t.state is TaskState.DOWNLOADING)
        with pytest.raises(EngineError, match="is downloading: pause it first"):
            await engine.set_url(tid, small)
        with pytest.raises(EngineError, match="no task with id 99"):
            await engine.set_url(99, small)


async def test_a_new_url_that_does_not_work_is_refused(fault_server: FaultServer, download_dir: Path) -> None:
    url = fault_server.add_file("broken.bin", SIZE, rate=RATE)
    async with Engine(fast_config()) as engine:
        paused = await paused_part_way(engine, url, download_dir)
        with pytest.raises(EngineError, match="answered HTTP 410"):
            await engine.set_url(paused.id, fault_server.status_url(410))
        with pytest.raises(EngineError, match="unsupported URL scheme 'ftp'"):
            await engine.set_url(paused.id, "ftp://example.com/x")
        # Nothing listens there (the port of a server just closed).
        async with FaultServer() as gone:
            dead = gone.base_url + "/f/x"
        with pytest.raises(EngineError, match="cannot be fetched"):
            await engine.set_url(paused.id, dead)
        no_ranges = fault_server.add_file("noranges.bin", SIZE, ranges=False)
        with pytest.raises(EngineError, match="does not serve byte ranges"):
            await engine.set_url(paused.id, no_ranges)
        after = engine.snapshot().task(paused.id)
        assert after is not None and after.url == url and after.done == paused.done


async def test_a_task_resumed_while_the_new_url_answers_waits_for_it(
    fault_server: FaultServer, download_dir: Path
) -> None:
    name = "waiting.bin"
    url = fault_server.add_file(name, SIZE, rate=RATE)
    async with FaultServer() as mirror:
        mirror_url = mirror.add_file(name, SIZE, delay=1.0)  # headers come after a second
        async with Engine(fast_config()) as engine:
            paused = await paused_part_way(engine, url, download_dir)
            fault_server.reset_stats(name)
            changing = asyncio.create_task(engine.set_url(paused.id, mirror_url))
            await wait_until(lambda: mirror.stats(name).records, "the probe to reach the mirror", limit=10)
            await engine.resume(paused.id)
            await asyncio.sleep(0.2)
            queued = engine.snapshot().task(paused.id)
            assert queued is not None and queued.state is TaskState.QUEUED  # not started on the old URL
            assert await asyncio.wait_for(changing, 30) == paused.done
            mirror.update(name, delay=0.0)
            done = await wait_until_done(engine, paused.id)
        assert done.state is TaskState.COMPLETED, done.error
        assert_exact(done.path, name, SIZE)
        assert not fault_server.stats(name).records  # every request after the pause went to the mirror


async def test_a_password_in_the_new_url_is_never_shown(
    fault_server: FaultServer, download_dir: Path
) -> None:
    secret = "s3cr3t-t0ken"
    name = "private.bin"
    url = fault_server.add_file(name, SIZE, rate=RATE)
    async with FaultServer() as mirror:
        mirror.add_file(name, SIZE, auth=("alice", secret))
        with_password = mirror.base_url.replace("http://", f"http://alice:{secret}@") + f"/f/{name}"
        async with Engine(fast_config()) as engine, EventLog(engine) as log:
            paused = await paused_part_way(engine, url, download_dir)
            assert await engine.set_url(paused.id, with_password) == paused.done
            changed = await log.wait_for(TaskUrlChanged, paused.id)
            task = engine.snapshot().task(paused.id)
            assert task is not None
            shown = [changed.url, task.url, task.final_url or "", json.dumps(control_of(task))]
            assert not [text for text in shown if secret in text], shown
            await engine.resume(paused.id)  # the password itself is still sent
            done = await wait_until_done(engine, paused.id)
        assert done.state is TaskState.COMPLETED, done.error
        assert_exact(done.path, name, SIZE)
