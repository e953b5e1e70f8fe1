"""A raw TCP server on 127.0.0.1 that answers with exactly the bytes a test gives, for responses no
HTTP library would produce: a status line carrying ``ESC ] 0 ; title BEL``, header values with escape
sequences, bodies longer than their Content-Length, trickles, a connection dropped mid-header.

Two ways to answer:

- canned bytes: ``RawServer(b"HTTP/1.1 404 ...\\r\\n...")`` reads each request's head and sends the
  bytes, then closes the connection; a list of responses answers the first connection with the
  first, the second with the second, and so on, the last one repeated;
- a handler coroutine: ``RawServer(handler)`` calls ``await handler(reader, writer)`` for each
  connection, and closes the connection when it returns. :meth:`RawServer.read_request` reads (and
  records) one request head for it.

Use it as ``async with RawServer(...) as srv`` in an async test, or ``with threaded_raw_server(...)``
where the test blocks (a ``fetchtop`` child process). Each connection is bounded in time, and stopping
the server ends the connections still open.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
import threading
from collections.abc import Awaitable, Callable, Iterator, Sequence

from tests.support.limits import LIMIT

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]
"""Serves one connection; the server closes it afterwards."""

MAX_HEAD = 64 * 1024
"""Bytes of a request head read at most."""


def response(
    status: bytes | str, headers: Sequence[tuple[bytes | str, bytes | str]] = (), body: bytes = b""
) -> bytes:
    """A response's exact bytes: ``HTTP/1.1 {status}``, the headers as given (nothing is checked or
    added: no Content-Length unless given), a blank line and the body. ``str`` parts are UTF-8."""

    def raw(part: bytes | str) -> bytes:
        return part if isinstance(part, bytes) else part.encode()

    lines = [b"HTTP/1.1 " + raw(status)] + [raw(name) + b": " + raw(value) for name, value in headers]
    return b"\r\n".join(lines) + b"\r\n\r\n" + body


class RawServer:
    """An ``asyncio.start_server`` on 127.0.0.1 (port chosen by the OS) answering as the test says."""

    def __init__(
        self,
        answer: Handler | bytes | Sequence[bytes],
        *,
        limit: float = LIMIT,
        tls: ssl.SSLContext | None = None,
    ) -> None:
        if isinstance(answer, bytes):
            answer = [answer]
        self._canned: list[bytes] | None = None if callable(answer) else list(answer)
        self._handler: Handler | None = answer if callable(answer) else None
        self._limit = limit
        self._tls = tls
        self._server: asyncio.Server | None = None
        self._open: set[asyncio.Task[object]] = set()
        self._stopping = False
        self.port = 0
        """Port listened on once started."""
        self.connections = 0
        """Connections accepted so far."""
        self.requests: list[bytes] = []
        """The head of every request read (canned answers, or :meth:`read_request`), in order."""

    def url(self, path: str = "/") -> str:
        """``http://127.0.0.1:port`` plus ``path`` (``https`` when serving TLS)."""
        scheme = "https" if self._tls is not None else "http"
        return f"{scheme}://127.0.0.1:{self.port}{path}"

    async def read_request(self, reader: asyncio.StreamReader) -> bytes:
        """Read one request head (up to the blank line) and record it; ``b""`` if the client closed."""
        try:
            head = await reader.readuntil(b"\r\n\r\n")
        except asyncio.IncompleteReadError:
            return b""
        except asyncio.LimitOverrunError:
            head = await reader.read(MAX_HEAD)
        self.requests.append(head)
        return head

    async def _answer(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        assert self._canned is not None
        reply = self._canned[min(self.connections - 1, len(self._canned) - 1)]
        if await self.read_request(reader):
            writer.write(reply)
            await writer.drain()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        task = asyncio.current_task()
        assert task is not None
        self._open.add(task)
        try:
            async with asyncio.timeout(self._limit):
                await (self._handler or self._answer)(reader, writer)
        except (ConnectionError, TimeoutError):
            pass  # the client went away, or the test's client never finished: just close
        except asyncio.CancelledError:
            # stop() ends a connection this way; asyncio would log a cancelled connection task.
            if not self._stopping:
                raise
        finally:
            self._open.discard(task)
            writer.close()
            with contextlib.suppress(ConnectionError, asyncio.CancelledError):
                await writer.wait_closed()

    async def start(self) -> RawServer:
        """Listen; returns the server itself."""
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0, limit=MAX_HEAD, ssl=self._tls)
        self.port = int(self._server.sockets[0].getsockname()[1])
        return self

    async def stop(self) -> None:
        """Stop listening and end the connections still open."""
        if self._server is not None:
            self._stopping = True
            self._server.close()
            for task in list(self._open):
                task.cancel()
            await asyncio.gather(*self._open, return_exceptions=True)
            await self._server.wait_closed()
            self._server = None
            self._stopping = False

    async def __aenter__(self) -> RawServer:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()


@contextlib.contextmanager
def threaded_raw_server(
    answer: Handler | bytes | Sequence[bytes], *, limit: float = LIMIT
) -> Iterator[RawServer]:
    """A :class:`RawServer` on its own event loop in a background thread, for tests that block.

    Read ``requests`` and ``connections`` from the test's thread once the client is done.
    """
    server = RawServer(answer, limit=limit)
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, name="raw-server", daemon=True)
    thread.start()
    try:
        asyncio.run_coroutine_threadsafe(server.start(), loop).result(timeout=10)
        yield server
    finally:
        try:
            asyncio.run_coroutine_threadsafe(server.stop(), loop).result(timeout=10)
        finally:
            loop.call_soon_threadsafe(loop.stop)
            thread.join(timeout=10)
            loop.close()
