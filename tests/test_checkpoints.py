"""Checkpoints against a real server: no control file before the first one, honest claims after it,
early writeback of what was written, and the benchmark's switch."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from engine import writeback
from engine.checkpointing import BASE_INTERVAL, INTERVAL_ENV, OFF
from engine.config import EngineConfig
from engine.engine import Engine
from engine.models import TaskState
from engine.partfile import PartFile
from faultserver.content import KiB, MiB, expected_bytes
from faultserver.server import FaultServer
from tests.support.control import claimed_bytes, claimed_ranges, read_control
from tests.support.dirwatch import DirWatch
from tests.support.downloads import assert_exact, download, fast_config, opts, wait_for_state, wait_until_done
from tests.support.waiting import wait_until


def _assert_claims_on_disk(part: Path, name: str, size: int, ranges: list[tuple[int, int]]) -> None:
    """Every byte the control file claims is in the part file, and is what the server sent."""
    data = part.read_bytes()
    want = expected_bytes(name, size)
    for a, b in ranges:
        assert data[a:b] == want[a:b], f"claimed range {a}-{b} is not on disk"


async def test_a_file_done_within_the_first_interval_never_writes_a_control_file(
    fault_server: FaultServer, download_dir: Path
) -> None:
    urls = [fault_server.add_file(f"s{i}.bin", 256 * KiB) for i in range(5)]
    with DirWatch(download_dir) as watch:
        async with Engine(fast_config(checkpoint_interval=30.0)) as engine:
            for i, url in enumerate(urls):
                task = await download(engine, url, opts(download_dir, connections=2))
                assert task.state is TaskState.COMPLETED, task.error
                assert_exact(task.path, f"s{i}.bin", 256 * KiB)
        seen = watch.names()
    # inotify sees even a file that lived for a moment: no control file, nor its temporary file.
    assert not [n for n in seen if ".part.json" in n], seen
    left = sorted(p.name for p in download_dir.iterdir())  # noqa: ASYNC240
    assert left == [f"s{i}.bin" for i in range(5)]


async def test_the_control_file_comes_with_the_first_checkpoint_and_claims_only_written_bytes(
    fault_server: FaultServer, download_dir: Path
) -> None:
    size = 2 * MiB
    url = fault_server.add_file("slow.bin", size, rate=256 * KiB)
    control = download_dir / "slow.bin.part.json"
    part = download_dir / "slow.bin.part"
    async with Engine(fast_config(checkpoint_interval=2.0)) as engine:
        tid = await engine.add(url, opts(download_dir, connections=1))
        await wait_for_state(engine, tid, lambda t: t.done > 0)
        # Bytes are on disk, the first checkpoint is still to come: nothing claims them yet.
        assert part.exists()
        assert not control.exists()
        ctrl = await wait_until(lambda: read_control(control), "the first checkpoint's control file")
        snap = engine.snapshot().task(tid)
        assert snap is not None
        claimed = claimed_bytes(ctrl)
        assert 0 < claimed <= snap.done
        _assert_claims_on_disk(part, "slow.bin", size, claimed_ranges(ctrl))
        fault_server.update("slow.bin", rate=None)
        task = await wait_until_done(engine, tid)
    assert task.state is TaskState.COMPLETED, task.error
    assert_exact(task.path, "slow.bin", size)
    assert not control.exists() and not part.exists()


async def test_a_pause_before_the_first_checkpoint_writes_the_control_file_and_resumes(
    fault_server: FaultServer, download_dir: Path
) -> None:
    size = 1 * MiB
    url = fault_server.add_file("early.bin", size, rate=256 * KiB)
    control = download_dir / "early.bin.part.json"
    async with Engine(fast_config(checkpoint_interval=30.0)) as engine:
        tid = await engine.add(url, opts(download_dir, connections=2))
        await wait_for_state(engine, tid, lambda t: t.done > 0)
        assert not control.exists()
        await engine.pause(tid)
        await wait_for_state(engine, tid, lambda t: t.state is TaskState.PAUSED)
        ctrl = read_control(control)
        assert ctrl is not None and claimed_bytes(ctrl) > 0
        _assert_claims_on_disk(download_dir / "early.bin.part", "early.bin", size, claimed_ranges(ctrl))
        served = fault_server.stats("early.bin").bytes_sent
        fault_server.update("early.bin", rate=None)
        await engine.resume(tid)
        task = await wait_until_done(engine, tid)
    assert task.state is TaskState.COMPLETED, task.error
    assert_exact(task.path, "early.bin", size)
    # Resumed, not started over: the second run asked only for what was not claimed.
    assert fault_server.stats("early.bin").bytes_sent - served <= size - claimed_bytes(ctrl) + 64 * KiB


async def test_a_lone_part_file_is_neither_adopted_nor_overwritten(
    fault_server: FaultServer, download_dir: Path
) -> None:
    # What kill -9 within the first interval leaves: the part file, no control file.
    lone = download_dir / "f.bin.part"
    lone.write_bytes(b"left by a killed run")
    url = fault_server.add_file("f.bin", 256 * KiB)
    async with Engine(fast_config()) as engine:
        task = await download(engine, url, opts(download_dir))
    assert task.state is TaskState.COMPLETED, task.error
    assert task.name == "f.1.bin"
    assert_exact(task.path, "f.bin", 256 * KiB)
    assert lone.read_bytes() == b"left by a killed run"


def test_early_writeback_covers_each_written_range_once(tmp_path: Path) -> None:
    path = tmp_path / "w.part"
    file = PartFile.open(path, 4 * MiB, True, None)
    try:
        file.write([b"a" * MiB], 0)
        file.write([b"b" * MiB], MiB)  # touches the first: one range
        file.write([b"c" * KiB], 3 * MiB)
        # What the checkpoint loop looks at before it bothers a thread with a kick.
        assert file.dirty.pending == 2 * MiB + KiB
        expected = 2 if writeback.available() else 0
        assert file.start_writeback() == expected
        assert file.dirty.pending == 0
        assert file.start_writeback() == 0  # nothing written since
        file.write([b"d" * KiB], 2 * MiB)
        assert file.start_writeback() == (1 if writeback.available() else 0)
    finally:
        file.close()
    data = path.read_bytes()
    assert data[:MiB] == b"a" * MiB and data[MiB : 2 * MiB] == b"b" * MiB
    assert data[2 * MiB : 2 * MiB + KiB] == b"d" * KiB and data[3 * MiB : 3 * MiB + KiB] == b"c" * KiB


def test_early_writeback_is_a_no_op_on_what_cannot_take_it() -> None:
    read, write = os.pipe()
    try:
        # A pipe refuses sync_file_range (ESPIPE): no exception, nothing asked for.
        assert writeback.start_writeback(read, [(0, 4096)]) == 0
    finally:
        os.close(read)
        os.close(write)


def test_the_checkpoint_interval_comes_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(INTERVAL_ENV, "off")
    assert EngineConfig().checkpoint_interval == OFF
    monkeypatch.setenv(INTERVAL_ENV, "3")
    assert EngineConfig().checkpoint_interval == 3.0
    monkeypatch.setenv(INTERVAL_ENV, "never")
    assert EngineConfig().checkpoint_interval == BASE_INTERVAL
    monkeypatch.delenv(INTERVAL_ENV)
    assert EngineConfig().checkpoint_interval == BASE_INTERVAL


async def test_a_part_file_deleted_while_paused_takes_its_control_file_with_it(
    fault_server: FaultServer, download_dir: Path
) -> None:
    size = 1 * MiB
    url = fault_server.add_file("gone.bin", size, rate=256 * KiB)
    control = download_dir / "gone.bin.part.json"
    part = download_dir / "gone.bin.part"
    async with Engine(fast_config(checkpoint_interval=30.0)) as engine:
        tid = await engine.add(url, opts(download_dir, connections=1))
        await wait_for_state(engine, tid, lambda t: t.done > 0)
        await engine.pause(tid)
        await wait_for_state(engine, tid, lambda t: t.state is TaskState.PAUSED)
        assert claimed_bytes(read_control(control)) > 0
        part.unlink()
        await engine.resume(tid)
        await wait_for_state(engine, tid, lambda t: t.state is TaskState.DOWNLOADING and t.done > 0)
        # The new part file may reuse the old inode number: no control file may claim the old bytes
        # now, or a crash would resume zeros as data: the probe rewrote it for the new file, empty.
        ctrl = read_control(control)
        assert ctrl is not None
        st = part.stat()
        assert ctrl["part"] == [st.st_dev, st.st_ino]
        assert claimed_bytes(ctrl) == 0
        fault_server.update("gone.bin", rate=None)
        task = await wait_until_done(engine, tid)
    assert task.state is TaskState.COMPLETED, task.error
    assert_exact(task.path, "gone.bin", size)
