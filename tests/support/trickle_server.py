"""A raw asyncio HTTP/1.1 server that trickles: the headers at once, then one body byte every
``interval`` seconds, on its first ``trickled`` connections (all of them by default); later
connections get the body at full speed. For the lowest-speed checks, which aiohttp servers and the
fault server cannot fake (a byte every half second resets any read timeout).

It serves one file of :mod:`faultserver.content` bytes, honours one ``Range: bytes=A-B`` (or
``A-``) with a 206 unless ``ranges`` is off, keeps connections alive, and records every connection:
its Range headers, the bytes it sent and whether the client dropped it mid-body.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field

from faultserver.content import content_view, etag_for

_RANGE = re.compile(r"bytes=(\d+)-(\d*)$")
HEAD_LIMIT = 16 * 1024
"""Largest request head read; a longer one closes the connection."""


@dataclass
class Served:
    """One TCP connection as the server saw it."""

    number: int
    """1 for the first connection accepted, and so on."""
    trickled: bool
    """Whether its bodies were trickled."""
    ranges: list[str | None] = field(default_factory=list)
    """The Range header of each request on it (None where absent), in order."""
    sent: int = 0
    """Body bytes written to it."""
    dropped: bool = False
    """The client closed it (EOF or reset) in the middle of a body."""


class TrickleServer:
    """Serves ``/NAME`` (``size`` bytes) on 127.0.0.1; the first ``trickled`` connections trickle."""

    def __init__(
        self,
        name: str,
        size: int,
        *,
        trickled: int | None = None,
        interval: float = 0.5,
        ranges: bool = True,
        chunk: int = 64 * 1024,
    ) -> None:
        self.name = name
        """The file's name, its URL path and the seed of its bytes."""
        self.size = size
        """The file's length."""
        self.trickled = trickled
        """How many of the first connections trickle; None for every one."""
        self.interval = interval
        """Seconds between two trickled bytes."""
        self.ranges = ranges
        """Whether Range requests get a 206 (else every answer is a 200 of the whole file)."""
        self.chunk = chunk
        """Bytes per write on a fast connection."""
        self.connections: list[Served] = []
        """Every connection accepted, in order."""
        self.port = 0
        """Port listened on once started."""
        self._server: asyncio.Server | None = None
        self._handlers: set[asyncio.Task[None]] = set()

    @property
    def requests(self) -> list[str | None]:
        """The Range header of every request, connection by connection."""
        return [r for c in self.connections for r in c.ranges]

    @property
    def served(self) -> int:
        """Body bytes sent over all connections."""
        return sum(c.sent for c in self.connections)

    def url(self) -> str:
        """The file's URL."""
        return f"http://127.0.0.1:{self.port}/{self.name}"

    async def start(self) -> TrickleServer:
        """Listen on an ephemeral port of 127.0.0.1."""
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", 0)
        self.port = int(self._server.sockets[0].getsockname()[1])
        return self

    async def stop(self) -> None:
        """Stop listening and end every connection still open."""
        if self._server is not None:
            self._server.close()
        for task in list(self._handlers):
            task.cancel()
        await asyncio.gather(*self._handlers, return_exceptions=True)
        if self._server is not None:
            await self._server.wait_closed()

    async def __aenter__(self) -> TrickleServer:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        conn = Served(
            len(self.connections) + 1, self.trickled is None or len(self.connections) < self.trickled
        )
        self.connections.append(conn)
        task = asyncio.current_task()
        assert task is not None
        self._handlers.add(task)
        try:
            while await self._answer(conn, reader, writer):
                pass
        except ConnectionError:
            conn.dropped = True
        except asyncio.LimitOverrunError:
            pass  # a head over the reader's limit: closed like any bad request
        except asyncio.CancelledError:
            pass  # stop(): ending normally keeps asyncio's stream callback from logging the cancel
        finally:
            self._handlers.discard(task)
            writer.close()
            with contextlib.suppress(ConnectionError):
                await writer.wait_closed()

    async def _answer(self, conn: Served, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> bool:
        """Answer one request; False once the connection is to end."""
        try:
            head = await reader.readuntil(b"\r\n\r\n")
        except asyncio.IncompleteReadError:
            return False  # the client closed an idle connection
        if len(head) > HEAD_LIMIT:
            return False
        lines = head.decode("latin-1").split("\r\n")
        headers = {
            k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:] if line)
        }
        rng = headers.get("range")
        conn.ranges.append(rng)
        start, end = 0, self.size
        m = _RANGE.match(rng or "")
        if self.ranges and m:
            start = int(m.group(1))
            end = min(self.size, int(m.group(2)) + 1) if m.group(2) else self.size
            status = f"206 Partial Content\r\nContent-Range: bytes {start}-{end - 1}/{self.size}"
        else:
            status = "200 OK"
        accept = "Accept-Ranges: bytes\r\n" if self.ranges else ""
        etag = etag_for(self.name, self.size)
        writer.write(
            f"HTTP/1.1 {status}\r\nContent-Length: {end - start}\r\n{accept}ETag: {etag}\r\n"
            "Content-Type: application/octet-stream\r\n\r\n".encode()
        )
        await writer.drain()
        pos = start
        while pos < end:
            if conn.trickled:
                await asyncio.sleep(self.interval)
                if reader.at_eof():  # the client closed it: nothing more is sent (or counted)
                    conn.dropped = True
                    return False
                n = 1
            else:
                n = min(self.chunk, end - pos)
            writer.write(content_view(self.name, pos, n))
            await writer.drain()
            conn.sent += n
            pos += n
        return True


@contextlib.contextmanager
def threaded(server: TrickleServer) -> Iterator[TrickleServer]:
    """Run ``server`` on an event loop of its own in a background thread, for tests that block (a
    ``fetchtop`` child process). Its records are plain lists and ints, fine to read from any thread."""
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, name="trickle-server", daemon=True)
    thread.start()
    try:
        asyncio.run_coroutine_threadsafe(server.start(), loop).result(timeout=10)
        try:
            yield server
        finally:
            asyncio.run_coroutine_threadsafe(server.stop(), loop).result(timeout=10)
    finally:
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout=10)
        loop.close()
