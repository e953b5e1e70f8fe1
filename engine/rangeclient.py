"""A small keep-alive HTTP/1.1 client for the bodies of ranged pieces, received into reusable buffers.

aiohttp hands every socket read to its parser and on to a StreamReader as a new ``bytes`` object;
on a fast link that allocation and copying costs more CPU than curl spends on the whole transfer.
This client receives a 206 body with :class:`asyncio.BufferedProtocol`: the socket (or the TLS
layer, since Python 3.11) reads straight into one of two preallocated buffers per connection, and
the caller writes full buffers to the file while the other one fills. Only the response head is
parsed, by ``httptools`` (llhttp, the parser under uvicorn); the body is counted, never parsed.

It does only what a piece needs: GET with the headers the probe's request carried, to an origin
without a proxy, one request at a time per connection, connections kept alive and pooled per
origin. A response that is not a 206 with a Content-Length comes back with no :attr:`PieceResponse.body`
(its connection is closed): the caller judges its status, or asks again through aiohttp, which
also keeps what this client does not do (redirects, proxies, chunked bodies, cookies).

Like :mod:`engine.connector`, a body ends at its Content-Length: bytes past it are never read into
the body, they are counted as surplus and the connection is closed.
"""

from __future__ import annotations

import asyncio
import socket
import ssl
import time
from collections import deque
from collections.abc import Callable, Mapping

import httptools
from multidict import CIMultiDict, CIMultiDictProxy
from yarl import URL

HEAD_LIMIT = 64 * 1024
"""Most bytes of one response head; a longer one is a malformed response."""
IDLE_TIMEOUT = 15.0
"""Seconds an idle pooled connection is kept: servers close theirs after 5-75 s."""
_HEAD, _BODY, _IDLE = range(3)
"""What a connection is reading: a response head, a body, or nothing (every byte is surplus)."""


class RangeClientError(Exception):
    """What this client raises; :func:`engine.http.classify` turns each into a DownloadError."""


class ConnectFailed(RangeClientError):
    """No connection to the origin could be made."""

    def __init__(self, host: str, port: int, error: OSError) -> None:
        super().__init__(f"cannot connect to {host}:{port}: {error.strerror or error}")
        self.host, self.port, self.error = host, port, error


class HostNotFound(RangeClientError):
    """The host name did not resolve."""

    def __init__(self, host: str) -> None:
        super().__init__(f"unknown host: {host}")
        self.host = host


class ConnectTimedOut(RangeClientError):
    """The connection (TCP and TLS) was not made within the connect timeout."""


class CertificateUntrusted(RangeClientError):
    """The server's TLS certificate failed verification."""


class ServerClosed(RangeClientError):
    """The connection ended (closed, reset, a TLS error) before the response did."""


class BodyTruncated(ServerClosed):
    """The connection ended in the middle of a body."""


class MalformedResponse(RangeClientError):
    """The response head could not be parsed or exceeded :data:`HEAD_LIMIT`."""


class _Head:
    """httptools callbacks collecting one response head."""

    def __init__(self) -> None:
        self.reason = ""
        self.headers: CIMultiDict[str] = CIMultiDict()
        self.complete = False
        self.bad = False

    # Decoded as aiohttp decodes them, so what is shown and escaped does not depend on the client.
    def on_status(self, status: bytes) -> None:
        self.reason += status.decode("utf-8", "surrogateescape")

    def on_header(self, name: bytes, value: bytes) -> None:
        value = value.rstrip(b" \t")  # llhttp strips the blanks before a value, not after
        if b"\0" in value:
            self.bad = True  # as aiohttp: a NUL in a value is no header
        self.headers.add(name.decode("utf-8", "surrogateescape"), value.decode("utf-8", "surrogateescape"))

    def on_headers_complete(self) -> None:
        self.complete = True


class Body:
    """The body of one response as it arrives: full buffers waiting to be written, and the next one.

    Two buffers of one size, the connection's own: one fills while the caller writes the other. When
    both are full the connection stops reading until one is handed back (:meth:`give_back`).
    """

    def __init__(self, length: int, buffers: list[bytearray]) -> None:
        self.length = length
        """Bytes the body has, as its Content-Length declared."""
        self.left = length
        """Body bytes not yet received."""
        self.received = 0
        """Body bytes received so far."""
        self.last_read = time.monotonic()
        """When the last body bytes arrived."""
        self._block = len(buffers[0])
        self._spare = buffers
        self._current: bytearray | None = None
        self._filled = 0
        self.ready: deque[tuple[bytearray, int]] = deque()
        """Buffers with data, oldest first, and how many bytes each holds."""

    def view(self) -> memoryview:
        """Where the next read goes: the free part of the current buffer, no longer than the body."""
        if self._current is None:
            self._current = self._spare.pop()
            self._filled = 0
        end = min(self._block, self._filled + self.left)
        return memoryview(self._current)[self._filled : end]

    def filled(self, nbytes: int) -> bool:
        """Count ``nbytes`` read into :meth:`view`; True when a buffer is ready (full or the body done)."""
        self._filled += nbytes
        self.left -= nbytes
        self.received += nbytes
        self.last_read = time.monotonic()
        if self._filled == self._block or not self.left:
            self.cut()
            return True
        return False

    def cut(self) -> None:
        """Make the current buffer ready even if it is not full (it has waited long enough)."""
        if self._current is not None and self._filled:
            self.ready.append((self._current, self._filled))
            self._current = None

    @property
    def can_read(self) -> bool:
        """Whether a buffer is free for the next read."""
        return self._current is not None or bool(self._spare)

    def give_back(self, buffer: bytearray) -> None:
        """Return a buffer whose bytes were written."""
        self._spare.append(buffer)


class _Channel(asyncio.BufferedProtocol):
    """One connection: reads a response head into a small buffer, then its body into a :class:`Body`."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self._head = bytearray(HEAD_LIMIT)
        self._head_len = 0
        self._scratch = bytearray(16 * 1024)
        self._mode = _IDLE
        self._waiter: asyncio.Future[None] | None = None
        self._error: BaseException | None = None
        self._spoilt = False
        self._paused = False
        self.body: Body | None = None
        """The body being read, once its head is in."""
        self.head: _Head | None = None
        """The head of the response being read."""
        self.status = 0
        """Its status code."""
        self.keep_alive = False
        """Whether the server lets the connection carry another request."""
        self.on_surplus: Callable[[int], None] | None = None
        """Told the size of bytes that arrived past the end of the body."""
        self._buffers = [bytearray(0)]
        self.held = 0.0
        """Seconds reading was paused for want of a free buffer (the disk is behind)."""
        self._paused_at = 0.0
        self.resumed_at = 0.0
        """When reading last resumed after a pause."""

    # ----- asyncio callbacks -------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None
        if self._error is None:
            reason = f": {exc}" if exc is not None else ""
            if self._mode == _BODY:
                self._error = BodyTruncated(f"body ended early{reason}")
            else:
                self._error = ServerClosed(f"server closed the connection{reason}")
        self._wake()

    def eof_received(self) -> bool | None:
        return False  # close: a half-closed HTTP/1.1 connection is of no use

    def get_buffer(self, sizehint: int) -> memoryview:
        if self._mode == _BODY:
            assert self.body is not None
            return self.body.view()
        if self._mode == _HEAD:
            return memoryview(self._head)[self._head_len :]
        return memoryview(self._scratch)

    def buffer_updated(self, nbytes: int) -> None:
        if self._mode == _BODY:
            body = self.body
            assert body is not None
            if body.filled(nbytes):
                if not body.left:
                    self._mode = _IDLE
                elif not body.can_read:
                    self.pause()
                self._wake()
        elif self._mode == _HEAD:
            self._head_len += nbytes
            self._parse_head()
        else:
            self._surplus(nbytes)

    # ----- what the client does with it --------------------------------------------------------

    @property
    def usable(self) -> bool:
        """Whether the connection is open and idle with nothing unexpected on it."""
        return (
            self.transport is not None
            and not self.transport.is_closing()
            and self._error is None
            and not self._spoilt
        )

    def send(self, request: bytes, block: int) -> None:
        """Send a request and start reading its response head; its body gets buffers of ``block``."""
        assert self.transport is not None and self._mode == _IDLE
        if len(self._buffers[0]) != block:
            self._buffers = [bytearray(block), bytearray(block)]
        self.held = 0.0
        self.head, self.body, self.status = _Head(), None, 0
        self._head_len = 0
        self._mode = _HEAD
        self.transport.write(request)

    async def wait(self) -> None:
        """Until something happens: a head complete, a buffer ready, the connection lost."""
        if self._error is not None:
            raise self._error
        self._waiter = asyncio.get_running_loop().create_future()
        try:
            await self._waiter
        finally:
            self._waiter = None
        if self._error is not None:
            raise self._error

    def pause(self) -> None:
        """Stop reading from the socket (both buffers are full, or the response is not ours to read)."""
        if not self._paused and self.transport is not None:
            self._paused = True
            self._paused_at = time.monotonic()
            self.transport.pause_reading()

    def resume(self) -> None:
        """Read again, if a buffer is free for it."""
        if self._paused and self.transport is not None and (self.body is None or self.body.can_read):
            self._paused = False
            self.resumed_at = time.monotonic()
            self.held += self.resumed_at - self._paused_at
            self.transport.resume_reading()

    def close(self) -> None:
        """Close the connection."""
        if self.transport is not None:
            self.transport.close()
        if self._error is None:
            self._error = ServerClosed("connection closed")

    def _wake(self) -> None:
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)

    def _fail(self, exc: BaseException) -> None:
        self._error = exc
        self.close()
        self._wake()

    def _surplus(self, nbytes: int) -> None:
        """Bytes past the end of a complete body: the response stands, the connection is spoilt."""
        if self.on_surplus is not None:
            self.on_surplus(nbytes)
        self._spoilt = True
        if self.transport is not None:
            self.transport.close()

    def _parse_head(self) -> None:
        end = _head_end(self._head, self._head_len)
        if end < 0:
            if self._head_len == HEAD_LIMIT:
                self._fail(MalformedResponse(f"response head longer than {HEAD_LIMIT} bytes"))
            return
        data = memoryview(self._head)[: self._head_len]
        head = self.head
        assert head is not None
        parser = httptools.HttpResponseParser(head)
        # The leniencies aiohttp's parser runs with: control characters in values (shown escaped)
        # and a bare LF pass, so a response both clients see reads the same on either.
        parser.set_dangerous_leniencies(lenient_headers=True, lenient_optional_cr_before_lf=True)
        try:
            parser.feed_data(data[:end])
        except httptools.HttpParserError as exc:
            self._fail(MalformedResponse(str(exc) or "unparsable"))
            return
        if not head.complete:
            self._fail(MalformedResponse("incomplete head"))
            return
        if head.bad:
            self._fail(MalformedResponse("NUL in a header value"))
            return
        status = parser.get_status_code()
        rest = data[end:]
        if 100 <= status < 200:
            # An interim response: the real one follows.
            interim_end = end
            self._head[: self._head_len - interim_end] = self._head[interim_end : self._head_len]
            self._head_len -= interim_end
            self.head = _Head()
            if self._head_len:
                self._parse_head()
            return
        self.status = status
        self.keep_alive = parser.should_keep_alive()
        length = head.headers.get("Content-Length", "")
        framed = "Transfer-Encoding" not in head.headers and length.isascii() and length.isdigit()
        if status not in (200, 206) or not framed:
            # Not ours to read: the caller closes this connection and asks aiohttp.
            self._mode = _IDLE
            self.on_surplus = None
            self.pause()
            self._wake()
            return
        # The connection's buffers, reused piece after piece: a body never outlives its response.
        body = Body(int(length), list(self._buffers))
        self.body = body
        self._mode = _BODY if body.left else _IDLE
        if rest:
            take = min(len(rest), body.left)
            got = 0
            while got < take:
                view = body.view()
                n = min(len(view), take - got)
                view[:n] = rest[got : got + n]
                body.filled(n)
                got += n
            if not body.left:
                self._mode = _IDLE
            if len(rest) > take:
                self._surplus(len(rest) - take)
        self._wake()


def _head_end(buffer: bytearray, length: int) -> int:
    """Where the head in ``buffer[:length]`` ends (after its empty line, CRLF or a bare LF), or -1."""
    ends = [at + len(mark) for mark in (b"\n\r\n", b"\n\n") if (at := buffer.find(mark, 0, length)) >= 0]
    return min(ends, default=-1)


class PieceResponse:
    """A response to a range request, its head read, its body arriving into :attr:`body`."""

    def __init__(self, client: RangeClient, key: tuple[str, str, int, bool], channel: _Channel) -> None:
        self._client = client
        self._key = key
        self._channel = channel
        head = channel.head
        assert head is not None
        self.status = channel.status
        """The status code."""
        self.reason = head.reason
        """The reason phrase, as sent (untrusted)."""
        self.headers: CIMultiDictProxy[str] = CIMultiDictProxy(head.headers)
        """The response headers, as sent (untrusted)."""
        self.body: Body | None = channel.body
        """The body, for a 200 or 206 with a Content-Length; None otherwise."""
        self.content_length: int | None = None if channel.body is None else channel.body.length
        """The body's declared length, when there is a body to read."""
        self._done = False

    async def wait(self) -> None:
        """Until a buffer is ready, the body is complete or the connection failed (raised)."""
        body = self.body
        if body is None or body.ready or not body.left:
            return
        await self._channel.wait()

    def cut(self) -> None:
        """Make the bytes received so far ready to be written, though their buffer is not full."""
        body = self.body
        if body is not None:
            body.cut()
            if not body.can_read:
                self._channel.pause()

    @property
    def held(self) -> float:
        """Seconds this response's reading was paused on purpose so far."""
        return self._channel.held

    @property
    def last_read(self) -> float:
        """When the body last received bytes, or reading last resumed."""
        body = self.body
        read = body.last_read if body is not None else 0.0
        return max(read, self._channel.resumed_at)

    def give_back(self, buffer: bytearray) -> None:
        """Return a written buffer; reading goes on if it had stopped for want of one."""
        assert self.body is not None
        self.body.give_back(buffer)
        self._channel.resume()

    def close(self) -> None:
        """Done with the response: a complete body returns the connection to the pool, else it closes."""
        if self._done:
            return
        self._done = True
        channel = self._channel
        body = self.body
        if body is not None and not body.left and channel.keep_alive and channel.usable:
            channel.on_surplus = None  # bytes on an idle connection close it; nobody is told
            self._client.release(self._key, channel)
        else:
            channel.close()


class RangeClient:
    """Keep-alive connections per origin, and range requests on them."""

    def __init__(self) -> None:
        self._idle: dict[tuple[str, str, int, bool], list[tuple[float, _Channel]]] = {}
        self._contexts: dict[bool, ssl.SSLContext] = {}
        self._closed = False
        self.requests_sent = 0
        """Requests sent so far (the tests see by it that pieces took this path)."""

    async def get(
        self,
        url: URL,
        headers: Mapping[str, str],
        *,
        insecure: bool,
        connect_timeout: float,
        block: int,
        on_surplus: Callable[[int], None],
    ) -> PieceResponse:
        """Send a GET for ``url`` with exactly ``headers`` and wait for its response head.

        Reuses an idle connection to the origin when there is one (a reused connection that turns
        out closed by the server before answering is replaced by a new one, once). Raises a
        :class:`RangeClientError`.
        The caller bounds the wait for the head; the response's body uses two buffers of ``block``.
        """
        host = url.raw_host or ""
        port = url.port or (443 if url.scheme == "https" else 80)
        key = (url.scheme, host, port, insecure)
        request = _request_bytes(url, headers)
        for attempt in range(2):
            channel = self._take(key)
            fresh = channel is None
            if channel is None:
                channel = await self._connect(key, connect_timeout)
            channel.on_surplus = on_surplus
            channel.send(request, block)
            self.requests_sent += 1
            try:
                while channel.status == 0:
                    try:
                        await channel.wait()
                    except ServerClosed:
                        if channel.status:
                            break  # closed after its head came (surplus, say): the response stands
                        raise
            except ServerClosed:
                channel.close()
                if fresh or attempt:
                    raise
                continue  # the server had closed the idle connection: once more on a new one
            except BaseException:
                channel.close()
                raise
            return PieceResponse(self, key, channel)
        raise AssertionError("unreachable")

    def release(self, key: tuple[str, str, int, bool], channel: _Channel) -> None:
        """Keep an idle connection for the next request to its origin."""
        if self._closed:
            channel.close()
            return
        self._idle.setdefault(key, []).append((time.monotonic(), channel))

    def close(self) -> None:
        """Close every idle connection; connections in use close when their responses do."""
        self._closed = True
        for pool in self._idle.values():
            for _, channel in pool:
                channel.close()
        self._idle.clear()

    def _take(self, key: tuple[str, str, int, bool]) -> _Channel | None:
        pool = self._idle.get(key)
        now = time.monotonic()
        while pool:
            since, channel = pool.pop()
            if channel.usable and now - since < IDLE_TIMEOUT:
                return channel
            channel.close()
        return None

    async def _connect(self, key: tuple[str, str, int, bool], within: float) -> _Channel:
        scheme, host, port, insecure = key
        context = self._context(insecure) if scheme == "https" else None
        loop = asyncio.get_running_loop()
        bare = host.strip("[]")
        try:
            async with asyncio.timeout(within):
                _, channel = await loop.create_connection(
                    _Channel,
                    bare,
                    port,
                    ssl=context,
                    server_hostname=bare if context is not None else None,
                    happy_eyeballs_delay=0.25,
                )
        except ssl.SSLCertVerificationError as exc:
            raise CertificateUntrusted(exc.verify_message or str(exc)) from None
        except TimeoutError:
            raise ConnectTimedOut(f"connect to {bare}:{port} timed out") from None
        except socket.gaierror:
            raise HostNotFound(bare) from None
        except OSError as exc:
            raise ConnectFailed(bare, port, exc) from None
        return channel

    def _context(self, insecure: bool) -> ssl.SSLContext:
        """The TLS context, made when first needed: loading the CA store costs tens of milliseconds."""
        context = self._contexts.get(insecure)
        if context is None:
            context = ssl.create_default_context()
            if insecure:
                context.check_hostname = False
                context.verify_mode = ssl.CERT_NONE
            self._contexts[insecure] = context
        return context


def _request_bytes(url: URL, headers: Mapping[str, str]) -> bytes:
    """The request head: the path and query as the URL encodes them, then ``headers`` (UTF-8, as
    aiohttp writes them)."""
    lines = [f"GET {url.raw_path_qs} HTTP/1.1"]
    for name, value in headers.items():
        if "\r" in value or "\n" in value or "\r" in name or "\n" in name:
            raise ValueError(f"newline in header {name!r}")
        lines.append(f"{name}: {value}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("utf-8", "surrogateescape")
