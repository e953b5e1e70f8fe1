"""The probe on fetchtop's own range client (engine.transfer.Transfer.open_first), against real
servers on 127.0.0.1: what it hands to aiohttp (redirects, cookies) and what it keeps (a body
without ranges, paced when a limit comes)."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

from engine.engine import Engine
from engine.models import TaskState
from faultserver.content import KiB, MiB, content_view
from faultserver.server import FaultServer
from tests.support.downloads import assert_exact, download, fast_config, opts, wait_for_state, wait_until_done
from tests.support.raw_server import RawServer, response

SECRET_HEADERS = (("Authorization", "Bearer t0ken"), ("Cookie", "session=c00kie"), ("X-Keep", "kept"))


async def test_a_cross_origin_redirect_carries_no_authorization_or_cookie(
    fault_server: FaultServer, download_dir: Path
) -> None:
    target = fault_server.add_file("moved.bin", 300 * KiB)
    redirect = response("302 Found", [("Location", target), ("Content-Length", "0")])
    async with RawServer(redirect) as origin, Engine(fast_config()) as engine:
        task = await download(engine, origin.url("/start.bin"), opts(download_dir, headers=SECRET_HEADERS))
    assert task.state is TaskState.COMPLETED, task.error
    assert_exact(task.path, "moved.bin", 300 * KiB)
    assert len(origin.requests) == 1  # the redirect is followed from its Location, not asked again
    assert b"Bearer t0ken" in origin.requests[0]
    records = fault_server.stats("moved.bin").records
    assert records
    for rec in records:
        names = {name.lower() for name in rec.headers}
        assert "authorization" not in names and "cookie" not in names, rec.headers
        assert rec.headers.get("X-Keep") == "kept"


async def test_a_same_origin_redirect_keeps_the_headers(
    fault_server: FaultServer, download_dir: Path
) -> None:
    url = fault_server.add_file("hop.bin", 300 * KiB, redirects=2)
    async with Engine(fast_config()) as engine:
        task = await download(engine, url, opts(download_dir, headers=SECRET_HEADERS))
    assert task.state is TaskState.COMPLETED, task.error
    stats = fault_server.stats("hop.bin")
    assert stats.redirects == 2 and stats.records
    for rec in stats.records:
        assert rec.headers.get("Authorization") == "Bearer t0ken"
        assert rec.headers.get("Cookie") == "session=c00kie"


async def test_a_redirect_that_sets_a_cookie_is_followed_with_it(download_dir: Path) -> None:
    body = bytes(content_view("cookie.bin", 0, 200 * KiB))
    paths: list[tuple[str, bool]] = []

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = await origin.read_request(reader)
        if not head:
            return
        path = head.split(b" ", 2)[1].decode()
        has_cookie = b"\r\ncookie: s=abc" in head.lower()
        paths.append((path, has_cookie))
        if path == "/start":
            writer.write(
                response(
                    "302 Found",
                    [("Location", "/cookie.bin"), ("Set-Cookie", "s=abc; Path=/"), ("Content-Length", "0")],
                )
            )
        elif has_cookie:
            writer.write(response("200 OK", [("Content-Length", str(len(body)))], body))
        else:
            writer.write(response("403 Forbidden", [("Content-Length", "0")]))
        await writer.drain()

    origin = RawServer(serve)
    async with origin, Engine(fast_config()) as engine:
        # A host name: aiohttp's cookie jar keeps no cookies for IP addresses.
        start = origin.url("/start").replace("127.0.0.1", "localhost")
        task = await download(engine, start, opts(download_dir, retries=0))
    assert task.state is TaskState.COMPLETED, task.error
    assert (download_dir / "cookie.bin").read_bytes() == body
    # The range client keeps no cookies: aiohttp asks again, keeps the cookie and follows with it.
    assert paths == [("/start", False), ("/start", False), ("/cookie.bin", True)]


async def test_a_body_without_ranges_is_one_stream_paced_by_a_limit_set_meanwhile(
    fault_server: FaultServer, download_dir: Path
) -> None:
    size = 3 * MiB
    stalled_at = 512 * KiB
    url = fault_server.add_file(
        "paced.bin", size, ranges=False, stall_after=stalled_at, stall_for=1.0, stall_times=1
    )
    rate = 512 * KiB
    async with Engine(fast_config()) as engine:
        # 16 connections asked for, one possible: small buffers, so pacing is per 256 KiB.
        tid = await engine.add(url, opts(download_dir, connections=16))
        await wait_for_state(engine, tid, lambda t: t.done >= stalled_at)
        await engine.set_limit(rate)
        limited_at = time.monotonic()
        task = await wait_until_done(engine, tid)
        took = time.monotonic() - limited_at
    assert task.state is TaskState.COMPLETED, task.error
    assert_exact(task.path, "paced.bin", size)
    assert fault_server.stats("paced.bin").requests == 1  # no restart for the limit
    # Two buffers in flight and a quarter second of burst may pass unpaced; the rest waits its turn.
    unpaced = 2 * 256 * KiB + rate / 4
    assert took >= (size - stalled_at - unpaced) / rate * 0.9, took
