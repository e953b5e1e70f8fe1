"""Fetching a checksum file by URL (engine.checksumfetch) from raw servers on 127.0.0.1: one bounded GET,
a size cap, redirects followed a bounded number of times, every failure one line."""

from __future__ import annotations

import asyncio

import pytest

from engine.checksumfetch import MAX_REDIRECTS, fetch_checksum_file
from engine.checksumfile import MAX_FILE_BYTES, ChecksumFileError
from engine.models import TaskOptions
from tests.support.raw_server import RawServer, response

BODY = b"e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855  empty\n"
FAST = TaskOptions(connect_timeout=2.0, timeout=1.0)


async def test_a_200_body_comes_back_with_our_user_agent() -> None:
    async with RawServer(response("200 OK", [("Content-Length", str(len(BODY)))], BODY)) as srv:
        assert await fetch_checksum_file(srv.url("/SUMS"), FAST) == BODY
        assert srv.connections == 1
        assert b"user-agent: fetchtop/" in srv.requests[0].lower()


async def test_a_body_without_length_is_read_to_its_end() -> None:
    async with RawServer(response("200 OK", [("Connection", "close")], BODY)) as srv:
        assert await fetch_checksum_file(srv.url("/SUMS"), FAST) == BODY


async def test_redirects_are_followed() -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = await srv.read_request(reader)
        if head.startswith(b"GET /old "):
            writer.write(response("302 Found", [("Location", "/new"), ("Content-Length", "0")]))
        else:
            writer.write(response("200 OK", [("Content-Length", str(len(BODY)))], BODY))
        await writer.drain()

    async with RawServer(handler) as srv:
        assert await fetch_checksum_file(srv.url("/old"), FAST) == BODY


@pytest.mark.parametrize(
    "answer, why",
    [
        (response("404 Not Found", [("Content-Length", "0")]), "HTTP 404 Not Found"),
        (response("503 Busy", [("Content-Length", "0")]), "HTTP 503 Busy"),
        (response("200 OK", [("Content-Length", str(MAX_FILE_BYTES + 1))]), "larger than 1024 KiB"),
        (response("200 OK", [("Connection", "close")], b"x" * (MAX_FILE_BYTES + 1)), "larger than 1024 KiB"),
        (response("200 OK", [("Content-Length", "1000")], BODY), "truncated"),
        (
            response("302 Found", [("Location", "/again"), ("Content-Length", "0")]),
            f"more than {MAX_REDIRECTS}",
        ),
        (b"garbage\r\n\r\n", ""),
    ],
)
async def test_failures_are_one_line(answer: bytes, why: str) -> None:
    async with RawServer(answer) as srv:
        with pytest.raises(ChecksumFileError) as info:
            await fetch_checksum_file(srv.url("/SUMS"), FAST)
    text = str(info.value)
    assert why in text and text and "\n" not in text and len(text) <= 200, text
    assert srv.connections <= MAX_REDIRECTS + 1


async def test_a_trickle_is_cut_at_the_deadline() -> None:
    async def trickle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await srv.read_request(reader)
        writer.write(response("200 OK", [("Content-Length", "100000")]))
        for _ in range(100):  # a byte every 0.3 s: never idle for the 1 s read timeout
            writer.write(b"0")
            await writer.drain()
            await asyncio.sleep(0.3)

    async with RawServer(trickle) as srv:
        loop = asyncio.get_running_loop()
        start = loop.time()
        with pytest.raises(ChecksumFileError, match="no complete answer within 4 s"):
            await fetch_checksum_file(srv.url("/SUMS"), FAST)
        assert loop.time() - start < 15


@pytest.mark.parametrize("url", ["ftp://127.0.0.1/SUMS", "http://", "not a url"])
async def test_urls_that_cannot_be_fetched(url: str) -> None:
    with pytest.raises(ChecksumFileError):
        await fetch_checksum_file(url, FAST)


async def test_a_closed_port() -> None:
    srv = RawServer(b"")
    await srv.start()
    url = srv.url("/SUMS")
    await srv.stop()
    with pytest.raises(ChecksumFileError) as info:
        await fetch_checksum_file(url, FAST)
    assert "\n" not in str(info.value)
