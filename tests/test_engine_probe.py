"""The probe: one GET for the first piece (``Range: bytes=0-(min_split-1)``) whose response becomes the
start of the first segment; range support, size and final URL learnt from it; servers without ranges or
without a length."""

from __future__ import annotations

from pathlib import Path

from aiohttp import web

from engine.engine import Engine
from engine.events import SegmentFinished, TaskFailed, TaskProbed, TaskRetrying
from engine.models import TaskState
from faultserver.content import KiB, MiB, content_view, etag_for
from faultserver.server import FaultServer
from tests.support.control import closed_range
from tests.support.downloads import assert_exact, download, fast_config, listing, opts
from tests.support.events import EventLog
from tests.support.rogue_server import RogueServer


async def test_probe_is_a_ranged_get_reused_as_the_first_segment(
    fault_server: FaultServer, download_dir: Path
) -> None:
    size = 2 * MiB + 12_345
    url = fault_server.add_file("probe.bin", size)
    async with Engine(fast_config()) as engine, EventLog(engine) as log:
        task = await download(engine, url, opts(download_dir, connections=4))
    assert task.state is TaskState.COMPLETED, task.error
    assert_exact(task.path, "probe.bin", size)
    stats = fault_server.stats("probe.bin")
    # The very first request is the probe: a GET asking for the first min_split bytes (opts: 64 KiB).
    assert stats.records[0].method == "GET"
    assert stats.records[0].range == f"bytes=0-{64 * KiB - 1}"
    # No HEAD, no range-less request, no second look at byte 0: the probe's body was used.
    assert all(r.method == "GET" for r in stats.records)
    assert all(r.range is not None for r in stats.records)
    starts = [closed_range(r.range) for r in stats.records[1:]]
    assert all(s is not None and s[0] > 0 for s in starts), stats.range_headers
    # The first segment went on right after the probe's bytes, on a request of its own.
    assert any(s is not None and s[0] == 64 * KiB for s in starts), stats.range_headers
    # One request per segment besides that one, and each segment finished once.
    finished = log.of(SegmentFinished, task.id)
    assert stats.requests == len(task.segments) + 1 == len(finished) + 1
    assert len(task.segments) >= 4
    probed = log.of(TaskProbed, task.id)
    assert len(probed) == 1
    assert probed[0].size == size and probed[0].resumable
    assert task.resumable is True and task.size == size
    assert task.etag == etag_for("probe.bin", size)


async def test_every_request_asks_for_a_closed_range(fault_server: FaultServer, download_dir: Path) -> None:
    size = 3 * MiB + 1
    # Resets force retries and takeovers, so requests start mid-segment too.
    url = fault_server.add_file("closed.bin", size, reset_after=300 * KiB, reset_times=3)
    async with Engine(fast_config()) as engine:
        task = await download(engine, url, opts(download_dir, connections=6))
    assert task.state is TaskState.COMPLETED, task.error
    assert_exact(task.path, "closed.bin", size)
    stats = fault_server.stats("closed.bin")
    assert stats.range_headers[0] == f"bytes=0-{64 * KiB - 1}"
    for header in stats.range_headers:
        rng = closed_range(header)
        assert rng is not None, f"open or missing range {header!r}"
        first, last = rng
        assert 0 <= first <= last < size
    assert stats.resets == 3


async def test_server_ignoring_range_gives_one_stream_and_no_waste(
    fault_server: FaultServer, download_dir: Path
) -> None:
    size = 1536 * KiB + 7
    # It even claims Accept-Ranges: the decision must come from the status, not that header.
    url = fault_server.add_file("noranges.bin", size, ranges=False, advertise_ranges=True)
    async with Engine(fast_config()) as engine, EventLog(engine) as log:
        task = await download(engine, url, opts(download_dir, connections=8))
    assert task.state is TaskState.COMPLETED, task.error
    assert_exact(task.path, "noranges.bin", size)
    stats = fault_server.stats("noranges.bin")
    assert stats.requests == 1
    assert stats.statuses == [200]
    assert stats.bytes_sent <= size * 1.01
    assert task.resumable is False
    probed = log.of(TaskProbed, task.id)
    assert probed and probed[0].resumable is False and probed[0].size == size


async def test_chunked_body_of_unknown_length(fault_server: FaultServer, download_dir: Path) -> None:
    size = 900 * KiB + 3
    url = fault_server.add_file("chunked.bin", size, ranges=False, chunked=True)
    async with Engine(fast_config()) as engine, EventLog(engine) as log:
        task = await download(engine, url, opts(download_dir))
    assert task.state is TaskState.COMPLETED, task.error
    assert_exact(task.path, "chunked.bin", size)
    probed = log.of(TaskProbed, task.id)
    assert probed and probed[0].size is None  # nothing told the size up front
    assert task.size == size  # learnt at the end
    # The range client frames bodies of declared length only: this one is asked for again through
    # aiohttp, which decodes the chunks (the first answer is closed after its head).
    assert fault_server.stats("chunked.bin").requests == 2


async def test_chunked_ranged_responses_still_segment(fault_server: FaultServer, download_dir: Path) -> None:
    size = 2 * MiB + 99
    url = fault_server.add_file("chunked-ranges.bin", size, chunked=True)
    async with Engine(fast_config()) as engine:
        task = await download(engine, url, opts(download_dir, connections=4))
    assert task.state is TaskState.COMPLETED, task.error
    assert_exact(task.path, "chunked-ranges.bin", size)
    assert fault_server.stats("chunked-ranges.bin").requests >= 4


async def test_redirects_are_followed_once_and_the_final_url_used(
    fault_server: FaultServer, download_dir: Path
) -> None:
    size = 2 * MiB
    url = fault_server.add_file("moved.bin", size, redirects=3, redirect_status=307)
    async with Engine(fast_config()) as engine, EventLog(engine) as log:
        task = await download(engine, url, opts(download_dir, connections=4))
    assert task.state is TaskState.COMPLETED, task.error
    assert_exact(task.path, "moved.bin", size)
    stats = fault_server.stats("moved.bin")
    # Only the probe walked the chain; every segment request went straight to the final URL.
    assert stats.redirects == 3
    assert stats.requests >= 4
    assert all(r.path == fault_server.file_path("moved.bin") for r in stats.records)
    assert task.final_url == fault_server.final_url("moved.bin")
    assert task.url == url
    assert log.of(TaskProbed, task.id)[0].final_url == fault_server.final_url("moved.bin")


# --- 206 with a Content-Range other than the one asked for ----------------------------------------


def _shifted_server(name: str, size: int, bad: int, shift: int) -> RogueServer:
    """A server that answers the probe correctly, then answers the first ``bad`` closed-range requests
    with the bytes (and an honest Content-Range) of a range ``shift`` bytes later than asked."""
    state = {"bad": bad, "probed": 0}

    async def handler(request: web.Request) -> web.StreamResponse:
        header = request.headers.get("Range", "")
        rng = closed_range(header)
        if rng is None:
            start, end = 0, size
        else:
            start, end = rng[0], min(rng[1] + 1, size)
            if state["probed"] and state["bad"] > 0:
                state["bad"] -= 1
                start, end = min(start + shift, size - 1), min(end + shift, size)
        resp = web.StreamResponse(
            status=206,
            headers={
                "Content-Range": f"bytes {start}-{end - 1}/{size}",
                "ETag": etag_for(name, size),
                "Content-Type": "application/octet-stream",
            },
        )
        resp.content_length = end - start
        state["probed"] = 1
        await resp.prepare(request)
        pos = start
        while pos < end:
            n = min(64 * KiB, end - pos)
            await resp.write(content_view(name, pos, n))
            pos += n
        return resp

    return RogueServer(handler)


async def test_wrong_content_range_is_never_written(download_dir: Path) -> None:
    name, size = "shifted.bin", 1 * MiB + 17
    # The shifted bytes would corrupt the file if written at the asked-for offset.
    async with (
        _shifted_server(name, size, bad=3, shift=4099) as srv,
        Engine(fast_config()) as engine,
        EventLog(engine) as log,
    ):
        task = await download(engine, srv.url(f"/{name}"), opts(download_dir, connections=4))
    assert task.state is TaskState.COMPLETED, task.error
    assert_exact(task.path, name, size)
    retried = log.of(TaskRetrying, task.id)
    assert len(retried) >= 3
    assert all("Content-Range" in e.reason for e in retried[:3]), [e.reason for e in retried]


async def test_probe_with_wrong_content_range_fails_without_writing(download_dir: Path) -> None:
    name, size = "badprobe.bin", 256 * KiB

    async def handler(request: web.Request) -> web.StreamResponse:
        # Asked for the first piece from byte 0, answers with the bytes from 100 on.
        body = bytes(content_view(name, 100, size - 100))
        return web.Response(status=206, body=body, headers={"Content-Range": f"bytes 100-{size - 1}/{size}"})

    async with RogueServer(handler) as srv, Engine(fast_config()) as engine, EventLog(engine) as log:
        task = await download(engine, srv.url(f"/{name}"), opts(download_dir))
    assert task.state is TaskState.FAILED
    assert task.error is not None and "Content-Range" in task.error and "\n" not in task.error
    assert log.of(TaskFailed, task.id)[0].reason == task.error
    assert listing(download_dir) == []


async def test_extra_headers_and_user_agent_on_every_request(
    fault_server: FaultServer, download_dir: Path
) -> None:
    size = 2 * MiB
    url = fault_server.add_file("headers.bin", size)
    options = opts(
        download_dir,
        connections=4,
        headers=(("X-Token", "abc123"), ("Accept-Language", "fr")),
        user_agent="test-agent/9",
    )
    async with Engine(fast_config()) as engine:
        task = await download(engine, url, options)
    assert task.state is TaskState.COMPLETED, task.error
    records = fault_server.stats("headers.bin").records
    assert len(records) >= 4
    for rec in records:
        assert rec.headers.get("X-Token") == "abc123"
        assert rec.headers.get("Accept-Language") == "fr"
        assert rec.headers.get("User-Agent") == "test-agent/9"
        # Bytes must arrive as stored: a compressed body would not match the ranges.
        assert rec.headers.get("Accept-Encoding") == "identity"
