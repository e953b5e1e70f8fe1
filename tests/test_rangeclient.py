"""The range client: keep-alive pieces received into reusable buffers, against a real local server.

The server is a raw asyncio one that serves byte ranges of one file on kept-alive connections and
injects, on chosen requests, what real servers do: bytes past Content-Length, a chunked 206, a head
no parser accepts, a body cut short, a redirect, an idle connection closed under the client.
"""

from __future__ import annotations

import asyncio
import os
import re
import ssl
import threading
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from yarl import URL

from engine.engine import Engine
from engine.events import ExtraBytesIgnored, TaskRetrying
from engine.models import TaskState
from engine.rangeclient import (
    Body,
    BodyTruncated,
    CertificateUntrusted,
    MalformedResponse,
    PieceResponse,
    RangeClient,
)
from tests.support.downloads import download, fast_config, opts
from tests.support.events import EventLog
from tests.support.raw_server import RawServer
from tests.support.tls import self_signed as make_self_signed

KiB = 1024
MiB = 1024 * KiB
_RANGE = re.compile(rb"\r\nrange: bytes=(\d+)-(\d+)\r\n", re.IGNORECASE)


class RangeFile:
    """Serves ``data`` by ranges on kept-alive connections; ``faults`` maps request numbers to tricks."""

    def __init__(
        self, data: bytes, faults: dict[int, str] | None = None, tls: ssl.SSLContext | None = None
    ) -> None:
        self.data = data
        self.faults = dict(faults or {})
        self.count = 0
        self.served = 0
        self.stalled_until_eof = False
        """Whether a stalled connection was ended by the client (it read the end of it)."""
        self.hit: list[tuple[str, str]] = []
        """Each request's fault ("" for none) and request line, in order."""
        self.server = RawServer(self.handle, tls=tls)

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        for _ in range(200):  # bounded: a client never sends this many on one connection here
            head = await self.server.read_request(reader)
            if not head:
                return
            self.count += 1
            fault = self.faults.pop(self.count, "")
            self.hit.append((fault, head.split(b"\r\n")[0].decode()))
            m = _RANGE.search(head)
            first, last = (int(m.group(1)), int(m.group(2))) if m else (0, len(self.data) - 1)
            last = min(last, len(self.data) - 1)
            body = self.data[first : last + 1]
            crange = f"bytes {first}-{last}/{len(self.data)}"
            if fault == "redirect":
                writer.write(b"HTTP/1.1 302 Found\r\nLocation: /moved\r\nContent-Length: 0\r\n\r\n")
                continue
            if fault == "garbage":
                writer.write(b"HTTP/1.1 2x6 Nope\r\n\x00\x01\r\n\r\n")
                return
            if fault == "chunked":
                writer.write(
                    f"HTTP/1.1 206 Partial Content\r\nContent-Range: {crange}\r\n"
                    "Transfer-Encoding: chunked\r\n\r\n".encode()
                    + f"{len(body):x}\r\n".encode()
                    + body
                    + b"\r\n0\r\n\r\n"
                )
                self.served += len(body)
                continue
            head_out = (
                f"HTTP/1.1 206 Partial Content\r\nContent-Range: {crange}\r\n"
                f'Content-Length: {len(body)}\r\nETag: "v1"\r\n\r\n'
            ).encode()
            if fault in ("cut", "stall"):
                writer.write(head_out + body[: len(body) // 2])
                await writer.drain()
                self.served += len(body) // 2
                if fault == "stall":
                    # Neither more bytes nor an end: the client has to give up by itself.
                    self.stalled_until_eof = await reader.read(1) == b""
                return
            writer.write(head_out + body + (b"X" * 100 if fault == "surplus" else b""))
            await writer.drain()
            self.served += len(body)
            if fault in ("surplus", "close"):
                return  # "close": as a server ending an idle keep-alive connection

    async def __aenter__(self) -> RangeFile:
        await self.server.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.server.stop()

    def url(self) -> URL:
        return URL(self.server.url("/file.bin"))


def _ignore(nbytes: int) -> None:
    """A surplus watcher for tests that do not look."""


def _data(size: int) -> bytes:
    return os.urandom(size)


class Collect:
    """A sink that keeps what the receiving thread hands over, at the offsets it says."""

    def __init__(self) -> None:
        self.out = bytearray()
        self.threads: set[str] = set()

    def __call__(self, view: memoryview, at: int) -> None:
        assert at == len(self.out), (at, len(self.out))  # in order, nothing twice, nothing left out
        self.out += view
        self.threads.add(threading.current_thread().name)


async def _receive(resp: PieceResponse, sink: Collect) -> None:
    """Receive a body into ``sink`` until it is complete or fails (raised), then stop."""
    assert resp.body is not None
    resp.start(sink, flush_interval=1.0)
    try:
        async with asyncio.timeout(10):
            while resp.receiving:
                await resp.wait()
                resp.body.written.clear()
    finally:
        await resp.stop()


async def _fetch(client: RangeClient, url: URL, first: int, last: int, block: int = 64 * KiB) -> bytes:
    """One piece through the client, as its thread handed it over (what the file would hold)."""
    headers = {"Host": f"{url.host}:{url.port}", "Range": f"bytes={first}-{last}"}
    resp = await client.get(url, headers, insecure=False, connect_timeout=5, block=block, on_surplus=_ignore)
    assert resp.status == 206, resp.status
    sink = Collect()
    try:
        await _receive(resp, sink)
    finally:
        resp.close()
    assert threading.current_thread().name not in sink.threads  # written off the event loop
    return bytes(sink.out)


async def test_pieces_share_one_kept_alive_connection() -> None:
    data = _data(1 * MiB + 7)
    async with RangeFile(data) as srv:
        client = RangeClient()
        try:
            parts = [(0, 299_999), (300_000, 700_000), (700_001, len(data) - 1)]
            got = b"".join([await _fetch(client, srv.url(), a, b) for a, b in parts])
        finally:
            client.close()
    assert got == data
    assert srv.server.connections == 1
    assert srv.count == 3


async def test_a_connection_the_server_closed_while_idle_is_replaced() -> None:
    data = _data(256 * KiB)
    async with RangeFile(data, faults={1: "close"}) as srv:
        client = RangeClient()
        try:
            first = await _fetch(client, srv.url(), 0, 99_999)
            await asyncio.sleep(0.05)  # the close reaches the client before the next request
            second = await _fetch(client, srv.url(), 100_000, len(data) - 1)
        finally:
            client.close()
    assert first + second == data
    assert srv.server.connections == 2


async def test_bytes_past_content_length_are_reported_and_never_reused() -> None:
    data = _data(200 * KiB)
    surplus: list[int] = []
    async with RangeFile(data, faults={1: "surplus"}) as srv:
        client = RangeClient()
        url = srv.url()
        try:
            headers = {"Host": f"{url.host}:{url.port}", "Range": "bytes=0-99999"}
            resp = await client.get(
                url, headers, insecure=False, connect_timeout=5, block=32 * KiB, on_surplus=surplus.append
            )
            await _receive(resp, Collect())
            async with asyncio.timeout(10):
                while not surplus:  # noqa: ASYNC110 - a plain callback fills it; bounded above
                    await asyncio.sleep(0.01)
            resp.close()
            rest = await _fetch(client, url, 100_000, len(data) - 1)
        finally:
            client.close()
    assert sum(surplus) == 100
    assert rest == data[100_000:]
    assert srv.server.connections == 2  # the connection that sent too much was not reused


async def test_a_chunked_206_comes_back_without_a_body() -> None:
    async with RangeFile(_data(10 * KiB), faults={1: "chunked"}) as srv:
        client = RangeClient()
        url = srv.url()
        try:
            headers = {"Host": f"{url.host}:{url.port}", "Range": "bytes=0-99"}
            resp = await client.get(
                url, headers, insecure=False, connect_timeout=5, block=KiB, on_surplus=_ignore
            )
            assert (resp.status, resp.body) == (206, None)
            assert resp.headers["Transfer-Encoding"] == "chunked"
            resp.close()
        finally:
            client.close()


async def test_an_unparsable_head_and_a_cut_body_raise_their_errors() -> None:
    async with RangeFile(_data(100 * KiB), faults={1: "garbage", 2: "cut"}) as srv:
        client = RangeClient()
        try:
            with pytest.raises(MalformedResponse):
                await _fetch(client, srv.url(), 0, 999)
            with pytest.raises(BodyTruncated):
                await _fetch(client, srv.url(), 0, 50_000)
        finally:
            client.close()


async def test_a_receive_blocked_on_a_stalled_server_stops_at_once_and_keeps_its_bytes() -> None:
    data = _data(2 * MiB)
    async with RangeFile(data, faults={1: "stall"}) as srv:
        client = RangeClient()
        url = srv.url()
        try:
            headers = {"Host": f"{url.host}:{url.port}", "Range": f"bytes=0-{len(data) - 1}"}
            resp = await client.get(
                url, headers, insecure=False, connect_timeout=5, block=4 * MiB, on_surplus=_ignore
            )
            assert resp.body is not None
            sink = Collect()
            resp.start(sink, flush_interval=60.0)  # nothing is handed over before the stop
            async with asyncio.timeout(10):
                while resp.body.received < MiB:  # noqa: ASYNC110 - the thread counts; bounded above
                    await asyncio.sleep(0.01)
                # The thread now sits in a receive that nothing will satisfy; stopping wakes it.
                await resp.stop()
            resp.close()
            async with asyncio.timeout(10):
                while not srv.stalled_until_eof:  # noqa: ASYNC110 - the server's handler sets it; bounded
                    await asyncio.sleep(0.01)
        finally:
            client.close()
    assert bytes(sink.out) == data[:MiB]  # what came before the stall was handed over, once
    assert not resp.receiving


async def test_an_error_of_the_sink_is_raised_as_it_is_and_closes_the_connection() -> None:
    data = _data(600 * KiB)
    async with RangeFile(data) as srv:
        client = RangeClient()
        url = srv.url()

        def full_disk(view: memoryview, at: int) -> None:
            raise OSError(28, "No space left on device")

        try:
            headers = {"Host": f"{url.host}:{url.port}", "Range": "bytes=0-299999"}
            resp = await client.get(
                url, headers, insecure=False, connect_timeout=5, block=64 * KiB, on_surplus=_ignore
            )
            resp.start(full_disk, flush_interval=1.0)
            with pytest.raises(OSError, match="No space") as caught:
                async with asyncio.timeout(10):
                    while resp.receiving:
                        await resp.wait()
            assert not isinstance(caught.value, BodyTruncated)
            with pytest.raises(OSError, match="No space"):
                await resp.stop()
            resp.close()
            rest = await _fetch(client, url, 300_000, len(data) - 1)
        finally:
            client.close()
    assert rest == data[300_000:]
    assert srv.server.connections == 2  # the failed piece's connection was not reused


@pytest.mark.parametrize(
    "faults", [{2: "surplus", 3: "cut"}, {2: "chunked", 3: "redirect"}, {2: "close", 3: "garbage"}]
)
async def test_downloads_through_the_range_client_are_exact(
    download_dir: Path, faults: dict[int, str]
) -> None:
    data = _data(17 * MiB + 5)
    async with (
        RangeFile(data, faults=faults) as srv,
        Engine(fast_config()) as engine,
        EventLog(engine) as log,
    ):
        task = await download(engine, str(srv.url()), opts(download_dir, connections=3))
        sent = engine.range_client.requests_sent
    assert task.state is TaskState.COMPLETED, task.error
    assert task.path is not None
    assert await asyncio.to_thread(Path(task.path).read_bytes) == data
    assert sent >= 2, "the pieces after the probe went through the range client"
    retried = [e.kind for e in log.of(TaskRetrying, task.id)]
    hit = {fault for fault, _ in srv.hit}
    assert len(hit - {""}) >= 1, srv.hit  # every case exercises at least one fault
    if "surplus" in hit:
        assert log.of(ExtraBytesIgnored, task.id)
    if "garbage" in hit:
        assert "protocol" in retried, (srv.hit, retried)
    assert srv.served <= len(data) * 1.35  # faults cost re-sent pieces, nothing like a second copy


@pytest.fixture(scope="module")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    return make_self_signed(tmp_path_factory.mktemp("tls"))


async def test_pieces_over_tls_are_verified_and_kept_alive(
    certificate: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    cert, key = certificate
    server_side = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_side.load_cert_chain(cert, key)
    data = _data(600 * KiB + 1)
    async with RangeFile(data, tls=server_side) as srv:
        untrusting = RangeClient()
        try:
            with pytest.raises(CertificateUntrusted):
                await _fetch(untrusting, srv.url(), 0, 9)
        finally:
            untrusting.close()
        insecure = RangeClient()
        try:
            url = srv.url()
            headers = {"Host": f"{url.host}:{url.port}", "Range": "bytes=0-9"}
            resp = await insecure.get(
                url, headers, insecure=True, connect_timeout=5, block=KiB, on_surplus=_ignore
            )
            assert resp.status == 206
            resp.close()
        finally:
            insecure.close()
        # OpenSSL reads SSL_CERT_FILE when the default context loads its trust store.
        monkeypatch.setenv("SSL_CERT_FILE", str(cert))
        trusting = RangeClient()
        try:
            got = b"".join(
                [await _fetch(trusting, srv.url(), a, b) for a, b in [(0, 300_000), (300_001, len(data) - 1)]]
            )
        finally:
            trusting.close()
    assert got == data
    assert srv.server.connections == 2  # the refused handshake never got one; two pieces on one


@settings(max_examples=60, deadline=None)
@given(
    length=st.integers(0, 5000),
    block=st.integers(1, 700),
    reads=st.lists(st.integers(1, 900), max_size=40),
    flushes=st.lists(st.booleans(), max_size=40),
)
def test_a_body_hands_over_every_byte_once_in_order(
    length: int, block: int, reads: list[int], flushes: list[bool]
) -> None:
    """Any sequence of socket reads and early hand-overs: the blocks handed over spell the body."""
    data = os.urandom(length)
    body = Body(length, bytearray(block))
    sink = Collect()
    sizes = iter(reads)
    early = iter(flushes)
    fed = 0
    for _ in range(length + 1):
        if not body.left:
            break
        view = body.view()
        n = min(len(view), next(sizes, length))
        assert 0 < n <= body.left
        view[:n] = data[fed : fed + n]
        fed += n
        if body.add(n) or next(early, False):
            body.hand_over(sink)
    body.hand_over(sink)
    assert bytes(sink.out) == data
    assert body.received == length
    assert [at for at, _ in body.written] == sorted({at for at, _ in body.written})
    assert sum(n for _, n in body.written) == length


async def _head_of(answer: bytes) -> tuple[int, dict[str, str]]:
    """Status and headers the client read from a server answering ``answer`` (then closing)."""
    async with RawServer(answer) as srv:
        url = URL(srv.url("/file.bin"))
        client = RangeClient()
        try:
            resp = await client.get(
                url,
                {"Host": f"{url.host}:{url.port}"},
                insecure=False,
                connect_timeout=5,
                block=KiB,
                on_surplus=_ignore,
            )
            resp.close()
        finally:
            client.close()
    return resp.status, dict(resp.headers)


async def test_a_head_is_read_as_aiohttp_reads_it() -> None:
    # Bare LFs, control characters in a value (escaped wherever shown), blanks after a value, UTF-8.
    status, headers = await _head_of(
        b'HTTP/1.1 200 OK\nContent-Length: 0\nETag: "v1\x1b]0;x\x07"  \nX-Name: caf\xc3\xa9\n\n'
    )
    assert status == 200
    assert headers["ETag"] == '"v1\x1b]0;x\x07"' and headers["X-Name"] == "café"


async def test_a_nul_in_a_header_value_is_a_malformed_response() -> None:
    with pytest.raises(MalformedResponse):
        await _head_of(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\nX-Bad: a\x00b\r\n\r\n")
