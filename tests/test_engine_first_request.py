"""The first request of a run asks for a closed range, its first piece (min_split bytes): the server sends
each byte of the file once, whatever its size and the number of connections (issue 12: served bytes
<= 1.01x the file), and the cases an open ``bytes=START-`` used to cover still work: an empty file (416),
a resume whose file shrank (416, start over) and one with nothing missing (one byte re-validates)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from engine.engine import Engine
from engine.events import TaskRestarted
from engine.models import TaskState
from faultserver.content import KiB, MiB, etag_for, expected_bytes
from faultserver.server import FaultServer
from tests.support.control import closed_range
from tests.support.downloads import assert_exact, download, fast_config, listing, opts, wait_for_state
from tests.support.events import EventLog

DEFAULT_SPLIT = MiB
"""TaskOptions' own min_split (the test helpers' opts() lowers it): the probe's piece by default."""


@pytest.mark.parametrize(
    ("size", "connections", "min_split"),
    [
        (24 * MiB, 8, DEFAULT_SPLIT),
        (5 * MiB, 4, DEFAULT_SPLIT),
        (24 * MiB + 3, 16, DEFAULT_SPLIT),
        (700 * KiB, 8, DEFAULT_SPLIT),  # smaller than the probe's piece: one request
        (3 * MiB + 1, 16, 64 * KiB),
        (24 * MiB, 1, DEFAULT_SPLIT),
    ],
    ids=["24MiB-x8", "5MiB-x4", "24MiB-x16", "700KiB-x8", "3MiB-x16-split64K", "24MiB-x1"],
)
async def test_the_server_sends_each_byte_about_once(
    fault_server: FaultServer, download_dir: Path, size: int, connections: int, min_split: int
) -> None:
    url = fault_server.add_file("once.bin", size)
    async with Engine(fast_config()) as engine:
        task = await download(engine, url, opts(download_dir, connections=connections, min_split=min_split))
    assert task.state is TaskState.COMPLETED, task.error
    assert_exact(task.path, "once.bin", size)
    stats = fault_server.stats("once.bin")
    # Counted as the aiohttp server hands body bytes to its transports, so bytes a client threw
    # away unread (in flight when it closed the connection) count too.
    assert stats.bytes_sent <= size * 1.01, f"served {stats.bytes_sent / size:.3f}x the file"
    # The first request asks for the first piece only, and nothing is ever asked for open-ended.
    assert stats.range_headers[0] == f"bytes=0-{min_split - 1}"
    assert all(closed_range(h) is not None for h in stats.range_headers), stats.range_headers
    if size <= min_split:
        assert stats.requests == 1


async def test_an_empty_file_is_one_416(fault_server: FaultServer, download_dir: Path) -> None:
    url = fault_server.add_file("empty.bin", 0)
    async with Engine(fast_config()) as engine:
        task = await download(engine, url, opts(download_dir))
    assert task.state is TaskState.COMPLETED, task.error
    assert (download_dir / "empty.bin").read_bytes() == b""
    stats = fault_server.stats("empty.bin")
    assert stats.range_headers == [f"bytes=0-{64 * KiB - 1}"] and stats.statuses == [416]


SIZE = 2 * MiB + 99


async def leave_partial(
    server: FaultServer, directory: Path, name: str, validators: bool = True
) -> list[list[int]]:
    """Download ``name`` on one connection, throttled, and close the engine part-way: the part file and
    its control file stay. Returns the ranges the control file claims."""
    url = server.add_file(name, SIZE, rate=512 * KiB, etag=validators, last_modified=validators)
    async with Engine(fast_config()) as engine:
        tid = await engine.add(url, opts(directory, connections=1, check_validators=validators))
        await wait_for_state(engine, tid, lambda t: t.done >= 300 * KiB)
    assert sorted(listing(directory)) == [name + ".part", name + ".part.json"]
    server.update(name, rate=None)
    done: list[list[int]] = json.loads((directory / (name + ".part.json")).read_text())["done"]
    return done


async def test_a_resume_whose_file_shrank_below_the_gap_starts_over(
    fault_server: FaultServer, download_dir: Path
) -> None:
    # No validators: only the 416 can tell that the file is not the one the part came from.
    [[_, done_end]] = await leave_partial(fault_server, download_dir, "shrank.bin", validators=False)
    stats = fault_server.stats("shrank.bin")
    before = stats.requests
    new_size = done_end // 2
    fault_server.update("shrank.bin", size=new_size)
    options = opts(download_dir, connections=1, check_validators=False)
    async with Engine(fast_config()) as engine, EventLog(engine) as log:
        task = await download(engine, fault_server.url("shrank.bin"), options)
    assert task.state is TaskState.COMPLETED, task.error
    assert_exact(task.path, "shrank.bin", new_size)
    assert log.of(TaskRestarted, task.id)
    after = stats.records[before:]
    assert [(r.range, r.status) for r in after] == [
        (f"bytes={done_end}-{done_end + 64 * KiB - 1}", 416),
        (f"bytes=0-{64 * KiB - 1}", 206),
        (f"bytes={64 * KiB}-{new_size - 1}", 206),
    ]


async def test_a_resume_with_nothing_missing_asks_for_one_byte(
    fault_server: FaultServer, download_dir: Path
) -> None:
    # A crash after the last write but before the rename: every byte is on disk and claimed.
    [[_, done_end]] = await leave_partial(fault_server, download_dir, "whole.bin")
    part, ctrl = download_dir / "whole.bin.part", download_dir / "whole.bin.part.json"
    fd = os.open(part, os.O_WRONLY)
    try:
        os.pwrite(fd, expected_bytes("whole.bin", SIZE, start=done_end), done_end)
    finally:
        os.close(fd)
    control = json.loads(ctrl.read_text())
    control["done"] = [[0, SIZE]]
    ctrl.write_text(json.dumps(control))
    stats = fault_server.stats("whole.bin")
    before, sent_before = stats.requests, stats.bytes_sent
    async with Engine(fast_config()) as engine, EventLog(engine) as log:
        task = await download(engine, fault_server.url("whole.bin"), opts(download_dir))
    assert task.state is TaskState.COMPLETED, task.error
    assert task.name == "whole.bin" and not log.of(TaskRestarted, task.id)
    assert_exact(task.path, "whole.bin", SIZE)
    [probe] = stats.records[before:]
    assert (probe.range, probe.if_range, probe.status) == (
        f"bytes={SIZE - 1}-{SIZE - 1}",
        etag_for("whole.bin", SIZE),
        206,
    )
    assert stats.bytes_sent - sent_before == 1
