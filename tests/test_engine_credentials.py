"""``-u/--user`` and ``--load-cookies`` against real servers on 127.0.0.1, on both clients a download
uses: fetchtop's own range client (no limit) and aiohttp (a speed limit sends every request there).
Each credential goes only to the URL's origin and path, and a cross-origin redirect drops both."""

from __future__ import annotations

import asyncio
import base64
import time
from pathlib import Path

import pytest

from engine.cookiefile import Cookie
from engine.engine import Engine
from engine.models import TaskState
from engine.redaction import REDACTED
from faultserver.content import KiB
from faultserver.server import FaultServer
from faultserver.specs import FileSpec
from tests.support.downloads import assert_exact, download, fast_config, opts
from tests.support.raw_server import RawServer, response

SIZE = 600 * KiB
PASSWORD = "pa:ss-w0rd"
# A speed limit well above what the test needs still puts every request on aiohttp.
PATHS = pytest.mark.parametrize("limit", [None, 200 * 1024 * 1024], ids=["range-client", "aiohttp"])


def jar(now: float) -> tuple[Cookie, ...]:
    """Cookies of which only ``good`` and ``forever`` match ``http://127.0.0.1/f/...`` at ``now``."""
    later = int(now) + 3600
    return (
        Cookie("127.0.0.1", False, "/f", False, later, "good", "g00d"),
        Cookie("127.0.0.1", False, "/", False, 0, "forever", "session-cookie"),
        Cookie("127.0.0.1", False, "/other", False, later, "otherpath", "no1"),
        Cookie("127.0.0.1", False, "/fx", False, later, "notaprefix", "no2"),
        Cookie("127.0.0.1", False, "/", True, later, "secure", "no3"),
        Cookie("127.0.0.1", False, "/", False, int(now) - 10, "expired", "no4"),
        Cookie("example.com", True, "/", False, later, "elsewhere", "no5"),
    )


@PATHS
async def test_user_is_sent_as_basic_auth_on_every_request(
    fault_server: FaultServer, download_dir: Path, limit: int | None
) -> None:
    url = fault_server.add_file("locked.bin", SIZE, auth=("alice", PASSWORD))
    options = opts(download_dir, user=f"alice:{PASSWORD}", speed_limit=limit)
    async with Engine(fast_config()) as engine:
        task = await download(engine, url, options)
    assert task.state is TaskState.COMPLETED, task.error
    assert_exact(task.path, "locked.bin", SIZE)
    records = fault_server.stats("locked.bin").records
    assert len(records) > 1  # the probe and pieces: every one authorized
    token = base64.b64encode(f"alice:{PASSWORD}".encode()).decode()
    assert all(rec.headers.get("Authorization") == f"Basic {token}" for rec in records)
    assert task.options.user == f"alice:{REDACTED}"


@PATHS
async def test_a_header_authorization_wins_over_user(
    fault_server: FaultServer, download_dir: Path, limit: int | None
) -> None:
    url = fault_server.add_file("hdr.bin", SIZE, auth=("alice", PASSWORD))
    token = base64.b64encode(f"alice:{PASSWORD}".encode()).decode()
    options = opts(
        download_dir, user="mallory:wrong", headers=(("Authorization", f"Basic {token}"),), speed_limit=limit
    )
    async with Engine(fast_config()) as engine:
        task = await download(engine, url, options)
    assert task.state is TaskState.COMPLETED, task.error


@PATHS
async def test_a_wrong_user_fails_with_401(
    fault_server: FaultServer, download_dir: Path, limit: int | None
) -> None:
    url = fault_server.add_file("wrong.bin", SIZE, auth=("alice", PASSWORD))
    async with Engine(fast_config()) as engine:
        task = await download(engine, url, opts(download_dir, user="alice:nope", speed_limit=limit))
    assert task.state is TaskState.FAILED
    assert task.error == "HTTP 401 Unauthorized"


@PATHS
async def test_cookies_go_only_where_they_match(
    fault_server: FaultServer, download_dir: Path, limit: int | None
) -> None:
    url = fault_server.add_file("jar.bin", SIZE)
    options = opts(
        download_dir, cookies=jar(time.time()), headers=(("Cookie", "given=1"),), speed_limit=limit
    )
    async with Engine(fast_config()) as engine:
        task = await download(engine, url, options)
    assert task.state is TaskState.COMPLETED, task.error
    assert_exact(task.path, "jar.bin", SIZE)
    records = fault_server.stats("jar.bin").records
    assert len(records) > 1
    # Longest path first; after the header given with -H.
    assert {rec.headers.get("Cookie") for rec in records} == {"given=1; good=g00d; forever=session-cookie"}
    assert all(row[6] == REDACTED for row in task.options.cookies)


async def test_a_cookie_past_its_expiry_is_not_sent(fault_server: FaultServer, download_dir: Path) -> None:
    url = fault_server.add_file("stale.bin", 100 * KiB)
    soon = int(time.time()) - 1
    options = opts(download_dir, cookies=(Cookie("127.0.0.1", False, "/", False, soon, "s", "old"),))
    async with Engine(fast_config()) as engine:
        task = await download(engine, url, options)
    assert task.state is TaskState.COMPLETED, task.error
    assert all("Cookie" not in rec.headers for rec in fault_server.stats("stale.bin").records)


@PATHS
async def test_a_cross_origin_redirect_drops_user_and_cookies(
    fault_server: FaultServer, download_dir: Path, limit: int | None
) -> None:
    target = fault_server.add_file("moved.bin", SIZE)
    redirect = response("302 Found", [("Location", target), ("Content-Length", "0")])
    # Both servers are on 127.0.0.1 (the cookie's domain) but on other ports: other origins.
    cookies = (Cookie("127.0.0.1", False, "/", False, 0, "sid", "c00kie"),)
    options = opts(download_dir, user=f"alice:{PASSWORD}", cookies=cookies, speed_limit=limit)
    async with RawServer(redirect) as origin, Engine(fast_config()) as engine:
        task = await download(engine, origin.url("/start.bin"), options)
    assert task.state is TaskState.COMPLETED, task.error
    assert_exact(task.path, "moved.bin", SIZE)
    first = origin.requests[0].lower()
    assert b"\r\nauthorization: basic " in first and b"\r\ncookie: sid=c00kie" in first
    records = fault_server.stats("moved.bin").records
    assert len(records) > 1
    for rec in records:
        names = {name.lower() for name in rec.headers}
        assert "authorization" not in names and "cookie" not in names, rec.headers


@PATHS
async def test_a_same_origin_redirect_keeps_them(
    fault_server: FaultServer, download_dir: Path, limit: int | None
) -> None:
    url = fault_server.add_file("hop.bin", SIZE, redirects=2, auth=("alice", PASSWORD))
    cookies = (Cookie("127.0.0.1", False, "/", False, 0, "sid", "c00kie"),)
    options = opts(download_dir, user=f"alice:{PASSWORD}", cookies=cookies, speed_limit=limit)
    async with Engine(fast_config()) as engine:
        task = await download(engine, url, options)
    assert task.state is TaskState.COMPLETED, task.error
    records = fault_server.stats("hop.bin").records
    assert records and all(rec.headers.get("Cookie") == "sid=c00kie" for rec in records)


async def test_a_cookie_that_expires_during_the_download_is_not_sent_after(
    fault_server: FaultServer, download_dir: Path
) -> None:
    # The probe's 16 KiB trickle for about 4 s; the rest is asked for afterwards, by then past the
    # cookie's expiry (1.7-2 s after the start): on the range client's template too.
    fault_server.add(
        FileSpec("expiring.bin", size=96 * KiB, slow_rate=4 * KiB, slow_times=1, chunk_size=1024)
    )
    url = fault_server.url("expiring.bin")
    if (into := time.time() % 1) > 0.3:  # start early in a second: the expiry is whole seconds
        await asyncio.sleep(1.05 - into)
    expires = int(time.time()) + 2
    cookies = (
        Cookie("127.0.0.1", False, "/", False, 0, "kept", "k"),
        Cookie("127.0.0.1", False, "/", False, expires, "soon", "s"),
    )
    options = opts(download_dir, connections=1, min_split=16 * KiB, timeout=20.0, cookies=cookies)
    async with Engine(fast_config()) as engine:
        task = await download(engine, url, options)
    assert task.state is TaskState.COMPLETED, task.error
    assert_exact(task.path, "expiring.bin", 96 * KiB)
    records = fault_server.stats("expiring.bin").records
    assert len(records) >= 2, records
    assert records[0].headers.get("Cookie") == "kept=k; soon=s"
    assert [r.headers.get("Cookie") for r in records[1:]] == ["kept=k"] * (len(records) - 1)
