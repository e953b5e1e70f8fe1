"""engine.connector against a raw asyncio server on 127.0.0.1 that writes exact bytes.

A body is cut at its Content-Length whatever follows it, the surplus is counted, and the connection
that carried it is never reused; honest responses (interim 1xx, chunked, a header block split over
two reads) go through untouched and their connection is reused.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import aiohttp
import pytest

from engine.connector import BoundedConnector
from tests.support.overlong_server import OverlongServer
from tests.support.waiting import wait_until

BODY = bytes((i * 7 + 3) % 256 for i in range(1000))
GARBAGE = bytes(range(256)) * 4
SMUGGLED = b"HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nEVIL"


@asynccontextmanager
async def serving(server: OverlongServer) -> AsyncIterator[OverlongServer]:
    await server.start()
    try:
        yield server
    finally:
        await server.stop()


@asynccontextmanager
async def client() -> AsyncIterator[tuple[aiohttp.ClientSession, BoundedConnector]]:
    connector = BoundedConnector()
    async with aiohttp.ClientSession(connector=connector, auto_decompress=False) as session:
        yield session, connector


async def fetch(
    session: aiohttp.ClientSession, connector: BoundedConnector, url: str
) -> tuple[bytes, list[int]]:
    """The body of a GET and the runs of surplus bytes reported for it so far (a list that grows)."""
    timeout = aiohttp.ClientTimeout(total=20)
    seen: list[int] = []
    async with session.get(url, timeout=timeout) as resp:
        connector.watch(resp, seen.append)
        assert resp.status == 200
        body = await resp.read()
    return body, seen


@pytest.mark.parametrize("extra", [GARBAGE, SMUGGLED], ids=["garbage", "a-second-response"])
async def test_a_body_ends_at_its_content_length_and_its_connection_is_closed(extra: bytes) -> None:
    async with serving(OverlongServer(BODY, extra=extra)) as srv, client() as (session, connector):
        first, surplus = await fetch(session, connector, srv.url("/a"))
        second, _ = await fetch(session, connector, srv.url("/b"))

    assert first == BODY and second == BODY  # never the smuggled "EVIL"
    assert 0 < sum(surplus) <= len(extra)
    assert srv.connections() == [1, 1], "the connection that carried surplus bytes was reused"


async def test_an_honest_connection_is_reused() -> None:
    # The control for the test above: the same two requests share one kept-alive connection.
    async with serving(OverlongServer(BODY)) as srv, client() as (session, connector):
        first, surplus = await fetch(session, connector, srv.url("/a"))
        second, _ = await fetch(session, connector, srv.url("/b"))

    assert first == BODY and second == BODY and surplus == []
    assert srv.connections() == [2]


async def test_surplus_arriving_after_the_body_closes_the_idle_connection() -> None:
    async with serving(OverlongServer(BODY, extra=GARBAGE, pause=0.2)) as srv, client() as (s, c):
        first, surplus = await fetch(s, c, srv.url("/a"))
        # The late surplus reaches a connection idle in the pool: it must be closed, not kept,
        # and still be reported to whoever watched the response.
        await wait_until(lambda: srv.ended == 1, "the idle connection to be closed", limit=10)
        second, _ = await fetch(s, c, srv.url("/b"))

    assert first == BODY and second == BODY
    assert 0 < sum(surplus) <= len(GARBAGE)
    assert srv.connections() == [1, 1]


@pytest.mark.parametrize(
    "server",
    [
        OverlongServer(BODY, interim=b"HTTP/1.1 103 Early Hints\r\nLink: </style.css>\r\n\r\n"),
        OverlongServer(BODY, chunked=True),
        OverlongServer(BODY, split_head=True),
    ],
    ids=["interim-1xx", "chunked", "head-split-over-reads"],
)
async def test_honest_framings_pass_untouched_and_keep_the_connection(server: OverlongServer) -> None:
    async with serving(server) as srv, client() as (session, connector):
        first, surplus = await fetch(session, connector, srv.url("/a"))
        second, _ = await fetch(session, connector, srv.url("/b"))

    assert first == BODY and second == BODY and surplus == []
    assert srv.connections() == [2]


async def test_surplus_after_a_header_block_split_over_reads_is_still_cut() -> None:
    async with serving(OverlongServer(BODY, extra=GARBAGE, split_head=True)) as srv, client() as (s, c):
        body, surplus = await fetch(s, c, srv.url("/a"))

    assert body == BODY and sum(surplus) > 0
