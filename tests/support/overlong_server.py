"""A raw asyncio HTTP server that writes exact bytes: each body followed by ``extra`` bytes its
Content-Length does not count (what no well-behaved server library can be made to send).

It answers every GET on a kept-alive connection, with 206 for a ``Range`` request when ``ranges`` is
set, and records which connection carried which request, so a test can tell whether the client
reused a connection.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import threading
from dataclasses import dataclass, field

_RANGE = re.compile(r"bytes=(\d+)-(\d*)$")


@dataclass(frozen=True)
class Request:
    """One request the server received."""

    connection: int
    """Number of the connection it came on (1, 2, ... in the order they were accepted)."""
    path: str
    """The request target."""
    headers: dict[str, str]
    """Its headers, names lower-cased."""


@dataclass
class OverlongServer:
    """Serves ``body`` at every path, with ``extra`` bytes after each body (the surplus)."""

    body: bytes
    """The file, as its Content-Length (or Content-Range) declares it."""
    extra: bytes = b""
    """Bytes written after every body, in the same write unless ``pause`` is set."""
    ranges: bool = False
    """Answer ``Range`` requests with 206 and advertise ``Accept-Ranges``."""
    pause: float = 0.0
    """Seconds between the body and ``extra`` (they go in separate writes then)."""
    interim: bytes = b""
    """Written before every answer in the same write: a 1xx response, say."""
    split_head: bool = False
    """Write the answer's header block but its last two bytes, pause, then the rest with the body."""
    chunked: bool = False
    """Send a 200's body with ``Transfer-Encoding: chunked`` instead of a Content-Length."""
    answer: bytes | None = None
    """Bytes to answer every request with instead of a response (garbage, say)."""
    requests: list[Request] = field(default_factory=list)
    """Every request received, in order."""
    port: int = 0
    """The port listened on, once started."""
    ended: int = 0
    """Connections that have ended (closed by the client, mostly)."""
    _server: asyncio.Server | None = None
    _connections: int = 0
    _open: dict[asyncio.Task[None], asyncio.StreamWriter] = field(default_factory=dict)

    async def start(self) -> OverlongServer:
        """Listen on 127.0.0.1 at a port the OS picks."""
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = int(self._server.sockets[0].getsockname()[1])
        return self

    async def stop(self) -> None:
        """Stop listening and drop every connection."""
        if self._server is not None:
            self._server.close()
            for writer in self._open.values():
                writer.close()
            if self._open:
                await asyncio.wait(list(self._open), timeout=10)

    def url(self, path: str = "/file.bin") -> str:
        """``http://127.0.0.1:port`` plus ``path``."""
        return f"http://127.0.0.1:{self.port}{path}"

    def connections(self) -> list[int]:
        """For each connection that carried a request, how many it carried."""
        counts: dict[int, int] = {}
        for r in self.requests:
            counts[r.connection] = counts.get(r.connection, 0) + 1
        return list(counts.values())

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._connections += 1
        number = self._connections
        me = asyncio.current_task()
        assert me is not None
        self._open[me] = writer
        try:
            for _ in range(1000):  # bounded: one client never needs more on one connection
                head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 60)
                lines = head.decode("latin-1").split("\r\n")
                path = lines[0].split(" ")[1] if len(lines[0].split(" ")) > 1 else "/"
                headers = {}
                for line in lines[1:]:
                    name, sep, value = line.partition(":")
                    if sep:
                        headers[name.strip().lower()] = value.strip()
                self.requests.append(Request(number, path, headers))
                answer = self.interim + (
                    self.answer if self.answer is not None else self._answer(headers.get("range"))
                )
                if self.split_head:
                    cut = answer.index(b"\r\n\r\n") + 2
                    writer.write(answer[:cut])
                    await writer.drain()
                    await asyncio.sleep(0.05)
                    answer = answer[cut:]
                writer.write(answer)
                if self.pause:
                    await writer.drain()
                    await asyncio.sleep(self.pause)
                writer.write(self.extra)
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError, TimeoutError):
            pass  # the client closed the connection (or never sent another request)
        finally:
            writer.close()
            with contextlib.suppress(ConnectionError):
                await writer.wait_closed()
            self._open.pop(me, None)
            self.ended += 1

    def _answer(self, range_header: str | None) -> bytes:
        """Status line, headers and body, without the extra bytes."""
        size = len(self.body)
        m = _RANGE.match(range_header or "") if self.ranges else None
        if m is None and self.chunked:
            chunks = [self.body[i : i + 300] for i in range(0, size, 300)]
            encoded = b"".join(b"%x\r\n%s\r\n" % (len(c), c) for c in chunks) + b"0\r\n\r\n"
            return b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n" + encoded
        if m is None:
            accept = "Accept-Ranges: bytes\r\n" if self.ranges else ""
            head = f"HTTP/1.1 200 OK\r\n{accept}Content-Length: {size}\r\n\r\n"
            return head.encode() + self.body
        first = int(m.group(1))
        last = min(size - 1, int(m.group(2))) if m.group(2) else size - 1
        piece = self.body[first : last + 1]
        head = (
            f"HTTP/1.1 206 Partial Content\r\nAccept-Ranges: bytes\r\n"
            f"Content-Range: bytes {first}-{last}/{size}\r\nContent-Length: {len(piece)}\r\n\r\n"
        )
        return head.encode() + piece


class ThreadedOverlongServer:
    """An :class:`OverlongServer` on its own event loop in a background thread, for tests whose main
    thread blocks on a ``fetchtop`` child process. Read ``requests`` once the child has ended."""

    def __init__(self, server: OverlongServer) -> None:
        self.server = server
        """The server (configure before clients start)."""
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="overlong", daemon=True)

    def __enter__(self) -> OverlongServer:
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self.server.start(), self._loop).result(timeout=10)
        return self.server

    def __exit__(self, *exc: object) -> None:
        try:
            asyncio.run_coroutine_threadsafe(self.server.stop(), self._loop).result(timeout=15)
        finally:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(timeout=10)
            self._loop.close()
