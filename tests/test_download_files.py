"""Files in a shared download directory: planted symlinks, other users' control files, hostile server
names posing as fetchtop's own files, and a placement that must not take another task's name. Real
files, a real engine and real servers on 127.0.0.1; "another user" is ``nobody``."""

from __future__ import annotations

import json
import os
import pwd
import stat
from pathlib import Path

import pytest

from engine.engine import Engine
from engine.models import TaskState
from faultserver.content import KiB, MiB, expected_bytes
from faultserver.server import FaultServer
from tests.support.downloads import assert_exact, download, fast_config, listing, opts, wait_for_state
from tests.support.file_server import FileServer, Served, payload
from tests.support.waiting import wait_until

SIZE = 2 * MiB + 4321
NAME = "victim.bin"


def umask() -> int:
    """The test process's umask (set and restored at once: the tests start no file-making threads)."""
    old = os.umask(0o022)
    os.umask(old)
    return old


async def leave_partial(server: FaultServer, directory: Path, name: str = NAME) -> str:
    """Start a throttled download of ``name`` and close the engine part-way, as a crash or stop would:
    the part file and its control file stay. Returns the URL."""
    url = server.add_file(name, SIZE, rate=512 * KiB)
    async with Engine(fast_config()) as engine:
        tid = await engine.add(url, opts(directory, connections=2))
        await wait_for_state(engine, tid, lambda t: t.done >= 300 * KiB)
    assert sorted(listing(directory)) == [name + ".part", name + ".part.json"]
    server.update(name, rate=None)
    return url


async def test_part_and_control_files_are_0600_and_the_final_file_gets_the_umask_mode(
    fault_server: FaultServer, download_dir: Path
) -> None:
    await leave_partial(fault_server, download_dir)
    for leftover in (NAME + ".part", NAME + ".part.json"):
        assert stat.S_IMODE((download_dir / leftover).stat().st_mode) == 0o600, leftover
    url = fault_server.url(NAME)
    async with Engine(fast_config()) as engine:
        task = await download(engine, url, opts(download_dir, connections=2))
    assert task.state is TaskState.COMPLETED, task.error
    assert task.name == NAME
    assert stat.S_IMODE((download_dir / NAME).stat().st_mode) == 0o666 & ~umask()


async def test_a_planted_part_symlink_is_never_written_through(
    fault_server: FaultServer, download_dir: Path
) -> None:
    url = await leave_partial(fault_server, download_dir)
    victim = download_dir.parent / "precious.txt"
    victim.write_bytes(b"the victim's own file")
    part = download_dir / (NAME + ".part")
    part.unlink()
    part.symlink_to(victim)  # the control file beside it is the victim's real one

    async with Engine(fast_config()) as engine:
        task = await download(engine, url, opts(download_dir, connections=2))
    assert task.state is TaskState.COMPLETED, task.error
    assert victim.read_bytes() == b"the victim's own file"
    assert part.is_symlink()
    final = Path(task.path or "")
    assert final.name != NAME and not final.is_symlink()  # noqa: ASYNC240
    assert_exact(str(final), NAME, SIZE)
    assert not (download_dir / NAME).exists()


def nobody() -> int:
    """The uid of ``nobody``."""
    return pwd.getpwnam("nobody").pw_uid


@pytest.mark.parametrize("how", ["owned-by-nobody", "group-writable", "other-writable", "symlink"])
async def test_a_control_file_others_could_write_is_never_adopted(
    fault_server: FaultServer, download_dir: Path, how: str
) -> None:
    url = await leave_partial(fault_server, download_dir)
    ctrl = download_dir / (NAME + ".part.json")
    if how == "owned-by-nobody":
        os.chown(ctrl, nobody(), -1)
    elif how == "group-writable":
        ctrl.chmod(0o620)
    elif how == "other-writable":
        ctrl.chmod(0o602)
    else:
        elsewhere = download_dir.parent / "ctrl.json"
        ctrl.rename(elsewhere)
        ctrl.symlink_to(elsewhere)
    stats = fault_server.stats(NAME)
    before = len(stats.records)

    async with Engine(fast_config()) as engine:
        task = await download(engine, url, opts(download_dir, connections=2))
    assert task.state is TaskState.COMPLETED, task.error
    # Not resumed from the untrusted claims: a fresh file, fetched from byte 0.
    assert task.name != NAME
    assert stats.records[before].range == f"bytes=0-{64 * KiB - 1}"
    assert_exact(task.path, NAME, SIZE)


async def test_a_control_file_for_another_part_file_is_never_adopted(
    fault_server: FaultServer, download_dir: Path
) -> None:
    url = await leave_partial(fault_server, download_dir)
    part = download_dir / (NAME + ".part")
    # The same bytes in a new inode: not the file the control file was written for.
    # (Made before the old one goes, so the file system cannot hand out the same inode number again.)
    copy = download_dir / "copy"
    copy.write_bytes(part.read_bytes())
    copy.chmod(0o600)
    assert copy.stat().st_ino != part.stat().st_ino
    copy.rename(part)
    stats = fault_server.stats(NAME)
    before = len(stats.records)
    async with Engine(fast_config()) as engine:
        task = await download(engine, url, opts(download_dir, connections=2))
    assert task.state is TaskState.COMPLETED, task.error
    assert task.name != NAME
    assert stats.records[before].range == f"bytes=0-{64 * KiB - 1}"


async def test_hostile_names_cannot_plant_a_part_and_control_file(
    fault_server: FaultServer, download_dir: Path
) -> None:
    real_url = fault_server.add_file("release.tar.gz", SIZE)
    evil = payload(SIZE, seed=666)
    forged = {
        "version": 1,
        "url": real_url,
        "name": "release.tar.gz",
        "size": SIZE,
        "resumable": True,
        "etag": None,
        "last_modified": None,
        "done": [[0, SIZE]],
    }
    hostile = await FileServer().start()
    try:
        urls = [
            hostile.add("a", Served(evil, disposition='attachment; filename="release.tar.gz.part"')),
            hostile.add(
                "b",
                Served(
                    json.dumps(forged).encode(), disposition="attachment; filename=release.tar.gz.part.json"
                ),
            ),
        ]
        names = []
        async with Engine(fast_config()) as engine:
            for url in urls:
                task = await download(engine, url, opts(download_dir, connections=1))
                assert task.state is TaskState.COMPLETED, task.error
                names.append(task.name or "")
    finally:
        await hostile.stop()

    async with Engine(fast_config()) as engine:
        task = await download(engine, real_url, opts(download_dir, connections=2))
    assert task.state is TaskState.COMPLETED, task.error
    assert_exact(task.path, "release.tar.gz", SIZE)
    assert Path(task.path or "").read_bytes() == expected_bytes("release.tar.gz", SIZE)  # noqa: ASYNC240
    assert not any(n.endswith((".part", ".part.json")) for n in names), names


async def test_placement_never_takes_another_tasks_name(
    fault_server: FaultServer, download_dir: Path
) -> None:
    url_a = fault_server.add_file("a.bin", SIZE, rate=256 * KiB)
    url_c = fault_server.add_file("c.bin", SIZE, rate=256 * KiB)
    async with Engine(fast_config()) as engine:
        a = await engine.add(url_a, opts(download_dir, connections=1, output="f.bin"))
        await wait_for_state(engine, a, lambda t: t.done > 0)
        # While A downloads as f.bin, a file of that name appears; C is then saved as f.1.bin.
        (download_dir / "f.bin").write_bytes(b"someone else's")
        c = await engine.add(url_c, opts(download_dir, connections=1, output="f.bin"))
        snap_c = await wait_for_state(engine, c, lambda t: t.done > 0)
        assert snap_c.name == "f.1.bin"
        # C's first checkpoint (an interval in) writes its control file, which A must leave alone.
        await wait_until(lambda: (download_dir / "f.1.bin.part.json").exists(), "C's control file")
        fault_server.update("a.bin", rate=None)
        task_a = await wait_for_state(engine, a, lambda t: t.state.finished)
        assert task_a.state is TaskState.COMPLETED, task_a.error
        # A must not have taken f.1.bin, C's name, nor removed C's control file.
        assert task_a.name == "f.2.bin"
        assert (download_dir / "f.1.bin.part.json").exists()
        assert (download_dir / "f.1.bin.part").exists()
        fault_server.update("c.bin", rate=None)
        task_c = await wait_for_state(engine, c, lambda t: t.state.finished)
    assert task_c.state is TaskState.COMPLETED, task_c.error
    assert task_c.name == "f.1.bin"
    assert_exact(task_a.path, "a.bin", SIZE)
    assert_exact(task_c.path, "c.bin", SIZE)
    assert (download_dir / "f.bin").read_bytes() == b"someone else's"


async def test_a_part_file_swapped_while_paused_is_never_written(
    fault_server: FaultServer, download_dir: Path
) -> None:
    url = fault_server.add_file(NAME, SIZE, rate=512 * KiB)
    part = download_dir / (NAME + ".part")
    async with Engine(fast_config()) as engine:
        tid = await engine.add(url, opts(download_dir, connections=2))
        await wait_for_state(engine, tid, lambda t: t.done >= 300 * KiB)
        await engine.pause(tid)
        # Another user swaps in a file of theirs under the part file's name.
        theirs = download_dir / "theirs"
        theirs.write_bytes(b"another user's bytes")
        os.chown(theirs, nobody(), -1)
        theirs.rename(part)
        fault_server.update(NAME, rate=None)
        await engine.resume(tid)
        task = await wait_for_state(engine, tid, lambda t: t.state.finished)
    assert task.state is TaskState.FAILED
    assert "another user" in (task.error or ""), task.error
    assert part.read_bytes() == b"another user's bytes"
    assert not (download_dir / NAME).exists()
