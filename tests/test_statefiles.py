"""The engine's async state files (the saved queue, the control-file index), read and written off the loop."""

from __future__ import annotations

import asyncio
import stat
from pathlib import Path

from engine.atomicfile import write_atomic_async
from engine.control import ControlData, index_controls, read_control, write_control
from engine.models import TaskOptions, TaskState
from engine.session import load_session, save_session


def test_write_atomic_async_replaces_the_file(tmp_path: Path) -> None:
    target = tmp_path / "state.json"
    target.write_bytes(b"old contents")
    asyncio.run(write_atomic_async(target, b"new", mode=0o644))
    assert target.read_bytes() == b"new"
    assert stat.S_IMODE(target.stat().st_mode) == 0o644
    assert sorted(p.name for p in tmp_path.iterdir()) == ["state.json"]


async def test_session_round_trip_creates_its_directory(tmp_path: Path) -> None:
    path = tmp_path / "new" / "dir" / "session.json"
    opts = TaskOptions(directory=str(tmp_path), connections=3)
    await save_session(path, [("http://a/x", opts, TaskState.PAUSED), ("http://a/y", opts, TaskState.QUEUED)])
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    entries = await load_session(path)
    assert [(e.url, e.options, e.paused) for e in entries] == [
        ("http://a/x", opts, True),
        ("http://a/y", opts, False),
    ]


async def test_missing_or_corrupt_session_loads_empty(tmp_path: Path) -> None:
    assert await load_session(tmp_path / "absent.json") == []
    (tmp_path / "bad.json").write_bytes(b"{not json")
    assert await load_session(tmp_path / "bad.json") == []


async def test_index_controls_reads_every_control_file_by_url_in_name_order(tmp_path: Path) -> None:
    for name, url in (("b.bin", "http://h/1"), ("a.bin", "http://h/1"), ("c.bin", "http://h/2")):
        write_control(tmp_path / f"{name}.part.json", ControlData(url=url, name=name), durable=False)
    (tmp_path / "broken.bin.part.json").write_bytes(b"garbage")
    (tmp_path / ".hidden.bin.part.json").write_bytes(b"{}")
    (tmp_path / "dir.part.json").mkdir()
    index = await index_controls(tmp_path)
    assert {url: [d.name for _, d in found] for url, found in index.items()} == {
        "http://h/1": ["a.bin", "b.bin"],
        "http://h/2": ["c.bin"],
    }
    assert await index_controls(tmp_path / "absent") == {}
    assert await read_control(tmp_path / "broken.bin.part.json") is None
