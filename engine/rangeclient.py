"""A small keep-alive HTTP/1.1 client for the bodies of ranged pieces, received into reusable buffers.

aiohttp hands every socket read to its parser and on to a StreamReader as a new ``bytes`` object;
on a fast link that allocation and copying costs more CPU than curl spends on the whole transfer.
This client receives a 206 body in a worker thread of its own, with blocking ``recv_into`` on the
connection's socket (plain, or an :class:`ssl.SSLSocket` whose OpenSSL reads the descriptor itself)
straight into one of two preallocated buffers per connection, while the caller writes the other to
the file. The GIL is released in every receive and every decryption, so the event loop goes on and
several connections decrypt on several cores. Only the response head is parsed, by ``httptools``
(llhttp, the parser under uvicorn); the body is counted, never parsed.

It does only what a GET of a piece or a probe needs, to an origin without a proxy, one request at a
time per connection, connections kept alive and pooled per origin. A response that is not a 200 or
206 with a Content-Length comes back with no :attr:`PieceResponse.body` (its connection is closed):
the caller judges its status, or asks again through aiohttp, which also keeps what this client does
not do (redirects, proxies, chunked bodies, cookies).

Like :mod:`engine.connector`, a body ends at its Content-Length: bytes past it are never read into
the body, they are counted as surplus and the connection is closed.

Threads and the loop: the event loop connects (TCP), owns the pool and decides; a thread does each
blocking step (TLS handshake, request and head, body). A thread blocked in a receive wakes at least
every :data:`POLL` seconds to look at its stop flag, and at once when the loop shuts the socket down;
only a thread closes a socket it is using, so a descriptor is never closed under a receive.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import functools
import select
import socket
import ssl
import struct
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping
from typing import TypeVar

import httptools
from multidict import CIMultiDict, CIMultiDictProxy
from yarl import URL

T = TypeVar("T")

HEAD_LIMIT = 64 * 1024
"""Most bytes of one response head; a longer one is a malformed response."""
IDLE_TIMEOUT = 15.0
"""Seconds an idle pooled connection is kept: servers close theirs after 5-75 s."""
POLL = 0.25
"""Longest a receiving thread waits before it looks whether it should stop."""
MAX_THREADS = 1024
"""Worker threads of the client at most: one per connection receiving a body, plus handshakes.
Made only when needed; 16 per host (the engine's default cap) for 64 hosts at once before a body
would wait for a thread."""


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


class _Stopped(Exception):
    """A thread saw its connection's stop flag."""


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


Sink = Callable[[memoryview, int], None]
"""Writes received body bytes at a body offset, in the receiving thread (a raise stops the body)."""


class Body:
    """The body of one response as it arrives: how much is left, and what its thread wrote where.

    The receiving thread fills the connection's buffer and hands it to the sink itself, full, at the
    body's end, or when bytes have waited :attr:`flush_interval`; :attr:`written` tells the event
    loop what was written. The loop only reads the counters and pops from the deque.
    """

    def __init__(self, length: int, buffer: bytearray) -> None:
        self.length = length
        """Bytes the body has, as its Content-Length declared."""
        self.left = length
        """Body bytes not yet received."""
        self.received = 0
        """Body bytes received so far."""
        self.last_read = time.monotonic()
        """When the last body bytes arrived (or the last write ended: waiting for a disk is no stall)."""
        self.buffer = buffer
        """The connection's buffer the body is received into."""
        self.filled = 0
        """Bytes in :attr:`buffer` not yet handed to the sink."""
        self.written: deque[tuple[int, int]] = deque()
        """Each handed-over block's body offset and length, oldest first."""
        self.flush_interval = 1.0
        """Seconds received bytes may wait in the buffer before they are handed over."""

    def view(self) -> memoryview:
        """Where the next read goes: the free part of the buffer, no longer than the body."""
        end = min(len(self.buffer), self.filled + self.left)
        return memoryview(self.buffer)[self.filled : end]

    def add(self, nbytes: int) -> bool:
        """Count ``nbytes`` read into :meth:`view`; True when the buffer is to be handed over."""
        self.filled += nbytes
        self.left -= nbytes
        self.received += nbytes
        self.last_read = time.monotonic()
        return self.filled == len(self.buffer) or not self.left

    def hand_over(self, sink: Sink) -> None:
        """Give the buffer's bytes to ``sink`` at their body offset and empty it."""
        if self.filled:
            at = self.received - self.filled
            sink(memoryview(self.buffer)[: self.filled], at)
            self.written.append((at, self.filled))
            self.filled = 0


def _readable(sock: socket.socket) -> bool:
    """Whether the socket has something to read (data, an end, an error) right now."""
    poller = select.poll()
    poller.register(sock.fileno(), select.POLLIN | select.POLLERR | select.POLLHUP)
    return bool(poller.poll(0))


class _Channel:
    """One connection: a socket read and written in worker threads, decided on by the event loop."""

    def __init__(self, sock: socket.socket, loop: asyncio.AbstractEventLoop) -> None:
        self.sock = sock
        self._loop = loop
        self._guard = threading.Lock()
        self._busy = False  # a thread uses the socket: it closes it if the loop has given up on it
        self._discard = False
        self.stop = False
        """Set by the loop: a thread using the socket stops at its next look."""
        self.closed = False
        self.error: BaseException | None = None
        """Why the connection cannot carry on, once something went wrong."""
        self._head = bytearray(HEAD_LIMIT)
        self._scratch = bytearray(16 * 1024)
        self._buffer = bytearray(0)
        self._waiter: asyncio.Future[None] | None = None
        self.reader: asyncio.Future[None] | None = None
        """The thread receiving the current body, while it runs."""
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
        self.held = 0.0
        """Seconds the body's thread spent writing (the disk's time, not the server's)."""
        self.resumed_at = 0.0
        """When the body's thread last finished a write and went back to receiving."""
        self._early = memoryview(b"")
        self._late_surplus = 0
        self.failure: BaseException | None = None
        """What the sink raised: a local error, raised as it is, not as the connection's."""

    # ----- run in a thread, shut down from the loop ------------------------------------------------

    async def run(self, func: Callable[[], T]) -> T:
        """``func()`` in a worker thread using the socket; if cancelled, stop it, wait, re-raise."""
        work = self._start(func)
        try:
            return await asyncio.shield(work)
        except BaseException:
            self.abort()
            await asyncio.wait([work])
            raise

    def _start(self, func: Callable[[], T]) -> asyncio.Future[T]:
        with self._guard:
            self._busy = True

        def job() -> T:
            try:
                return func()
            finally:
                with self._guard:
                    self._busy = False
                    if self._discard:
                        self._close_socket()

        return self._loop.run_in_executor(_executor(), job)

    def abort(self) -> None:
        """Give up on the connection: a thread using it wakes, stops and closes it; else it closes now."""
        self.stop = True
        if self.error is None:
            self.error = ServerClosed("connection closed")
        with self._guard:
            if self.closed:
                return
            if self._busy:
                self._discard = True
                try:
                    # Wakes a receive in the thread at once; the thread closes the descriptor.
                    socket.socket.shutdown(self.sock, socket.SHUT_RDWR)
                except OSError:
                    pass
            else:
                self._close_socket()

    def _close_socket(self) -> None:
        if not self.closed:
            self.closed = True
            try:
                self.sock.close()
            except OSError:
                pass

    def close(self) -> None:
        """Close the connection (at once, or when its thread stops)."""
        self.abort()

    # ----- what the threads do ---------------------------------------------------------------------

    def handshake(self, within: float) -> None:
        """The TLS handshake, within ``within`` seconds (thread)."""
        assert isinstance(self.sock, ssl.SSLSocket)
        self.sock.settimeout(within)
        try:
            self.sock.do_handshake()
        finally:
            self.sock.settimeout(POLL)

    def exchange(self, request: bytes) -> None:
        """Send a request and read its response head (thread); the body waits for :meth:`receive`."""
        self.sock.sendall(request)
        length = 0
        self.head = _Head()
        while True:
            end = _head_end(self._head, length)
            if end >= 0:
                length = self._parse(length, end)
                if self.status:
                    return
                continue
            if length == HEAD_LIMIT:
                raise MalformedResponse(f"response head longer than {HEAD_LIMIT} bytes")
            n = self._recv(memoryview(self._head)[length:])
            if not n:
                raise ServerClosed("server closed the connection")
            length += n

    def _recv(self, view: memoryview) -> int:
        """One receive into ``view``, looking at the stop flag every :data:`POLL` seconds (thread)."""
        while True:
            if self.stop or self._loop.is_closed():
                raise _Stopped()  # a closed loop: nobody will ever stop this thread otherwise
            try:
                return self.sock.recv_into(view)
            except TimeoutError:
                continue
            except ssl.SSLZeroReturnError:
                return 0

    def _parse(self, length: int, end: int) -> int:
        """Parse the head ending at ``end``; what is left of ``length`` bytes after an interim response."""
        head = self.head
        assert head is not None
        parser = httptools.HttpResponseParser(head)
        # The leniencies aiohttp's parser runs with: control characters in values (shown escaped)
        # and a bare LF pass, so a response both clients see reads the same on either.
        parser.set_dangerous_leniencies(lenient_headers=True, lenient_optional_cr_before_lf=True)
        try:
            parser.feed_data(memoryview(self._head)[:end])
        except httptools.HttpParserError as exc:
            raise MalformedResponse(str(exc) or "unparsable") from None
        if not head.complete:
            raise MalformedResponse("incomplete head")
        if head.bad:
            raise MalformedResponse("NUL in a header value")
        status = parser.get_status_code()
        if 100 <= status < 200:
            # An interim response: the real one follows.
            self._head[: length - end] = self._head[end:length]
            self.head = _Head()
            return length - end
        self.status = status
        self.keep_alive = parser.should_keep_alive()
        value = head.headers.get("Content-Length", "")
        framed = "Transfer-Encoding" not in head.headers and value.isascii() and value.isdigit()
        if status not in (200, 206) or not framed:
            return 0  # not ours to read: the caller closes this connection and asks aiohttp
        # The connection's buffers, reused piece after piece: a body never outlives its response.
        body = Body(int(value), self._buffer)
        self.body = body
        rest = memoryview(self._head)[end:length]
        take = min(len(rest), body.left)
        self._early = rest[:take]  # body bytes that came with the head: the body's thread takes them
        # Told once the thread took the body: until then the response is not complete, and an error
        # now would fail it.
        self._late_surplus = len(rest) - take
        return 0

    def receive(self, sink: Sink) -> None:
        """Receive the body and hand it to ``sink`` until its end, a stop or an error (thread)."""
        body = self.body
        assert body is not None
        flushed = time.monotonic()
        early, self._early = self._early, memoryview(b"")
        try:
            while early:
                view = body.view()
                n = min(len(view), len(early))
                view[:n] = early[:n]
                early = early[n:]
                if body.add(n):
                    self._hand_over(sink)
            if self._late_surplus:
                surplus, self._late_surplus = self._late_surplus, 0
                self._surplus(surplus)
            # A blocking receive that gives up after POLL (SO_RCVTIMEO): one system call per read,
            # where a Python timeout polls before every receive (and takes the GIL twice).
            self._receive_timeout(POLL)
            # The loop of every read (one per TLS record): kept short, as every step holds the GIL.
            recv_into = self.sock.recv_into
            whole = memoryview(body.buffer)
            size = len(whole)
            interval = body.flush_interval
            while body.left and self.error is None:
                if self.stop:
                    raise _Stopped()
                filled = body.filled
                end = min(size, filled + body.left)
                try:
                    n = recv_into(whole[filled:end])
                except (TimeoutError, BlockingIOError, ssl.SSLWantReadError):
                    if self._loop.is_closed():
                        raise _Stopped() from None  # nobody would ever stop this thread otherwise
                    if filled and time.monotonic() - flushed >= interval:
                        self._hand_over(sink)
                        flushed = time.monotonic()
                    continue
                except ssl.SSLZeroReturnError:
                    n = 0
                if not n:
                    raise BodyTruncated("body ended early")
                if body.add(n) or body.last_read - flushed >= interval:
                    self._hand_over(sink)
                    flushed = time.monotonic()
            if self.error is None:
                self.check_idle(report=True)
        except _Stopped:
            pass
        except RangeClientError as exc:
            self.error = self.error or exc
        except (OSError, ssl.SSLError) as exc:
            self.error = self.error or BodyTruncated(f"body ended early: {exc}")
        finally:
            if self.failure is None:
                # Bytes that came before a failure or a stop are as good as any: hand them over.
                try:
                    self._hand_over(sink)
                except _Stopped:
                    pass
            self._receive_timeout(None)
            self._notify()

    def _receive_timeout(self, seconds: float | None) -> None:
        """Make receives block for up to ``seconds`` (SO_RCVTIMEO); None: back to Python's timeout."""
        sock = self.sock
        try:
            if seconds is None:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVTIMEO, struct.pack("ll", 0, 0))
                sock.settimeout(POLL)
            else:
                sock.settimeout(None)
                whole = int(seconds)
                usec = int((seconds - whole) * 1_000_000)
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVTIMEO, struct.pack("ll", whole, usec))
        except OSError:
            pass  # a socket shut down meanwhile: it is closed next

    def _hand_over(self, sink: Sink) -> None:
        """Give the buffer to the sink; its error stops the body and is raised as it is on the loop."""
        body = self.body
        assert body is not None
        started = time.monotonic()
        try:
            body.hand_over(sink)
        except BaseException as exc:
            self.failure = exc
            raise _Stopped() from None
        finally:
            ended = time.monotonic()
            self.held += ended - started
            self.resumed_at = body.last_read = ended
        # The loop is not woken for it: it counts on its own clock, and a wake-up per buffer of 16
        # connections is GIL traffic that costs more than the counting.

    def check_idle(self, *, report: bool) -> None:
        """Look, without waiting, whether bytes or an end came after the response (thread or loop)."""
        sock = self.sock
        if isinstance(sock, ssl.SSLSocket) and sock.pending():
            pass  # decrypted bytes wait in OpenSSL: surplus
        elif not _readable(sock):
            return
        sock.settimeout(0.0)
        try:
            n = sock.recv_into(self._scratch)
        except (BlockingIOError, ssl.SSLWantReadError, ssl.SSLWantWriteError):
            return  # only a part of a TLS record, or TLS housekeeping
        except OSError:
            n = 0
        finally:
            sock.settimeout(POLL)
        if not n:
            self.error = self.error or ServerClosed("server closed the connection")
        elif report:
            self._surplus(n)
        else:
            self.error = self.error or ServerClosed("the server sent bytes on an idle connection")

    def _surplus(self, nbytes: int) -> None:
        on_surplus = self.on_surplus
        if on_surplus is not None:
            try:
                self._loop.call_soon_threadsafe(on_surplus, nbytes)
            except RuntimeError:
                pass  # the loop is closed: nobody is left to tell
        self.error = self.error or ServerClosed("the server sent bytes past the end of the response")

    def _notify(self) -> None:
        try:
            self._loop.call_soon_threadsafe(self._wake)
        except RuntimeError:
            pass  # the loop is closed: nobody waits

    # ----- on the loop ----------------------------------------------------------------------------

    @property
    def usable(self) -> bool:
        """Whether the connection is open and idle with nothing unexpected on it."""
        if self.closed or self.error is not None or self._busy:
            return False
        self.check_idle(report=False)
        return self.error is None

    def prepare(self, block: int) -> None:
        """Ready the connection for a request whose body gets a buffer of ``block``."""
        if len(self._buffer) != block:
            self._buffer = bytearray(block)
        self.held = self.resumed_at = 0.0
        self.head, self.body, self.status = None, None, 0
        self._late_surplus = 0
        self.stop = False
        self.failure = None

    def start_body(self, sink: Sink) -> None:
        """Start the thread that receives the body and hands it to ``sink``."""
        if self.body is not None and self.reader is None:
            self.reader = self._start(functools.partial(self.receive, sink))
            self.reader.add_done_callback(lambda _: self._wake())

    async def wait(self) -> None:
        """Until something happens: a buffer ready, the body complete, the connection failed (raised)."""
        self._raise()
        if self.reader is None or self.reader.done():
            return
        self._waiter = self._loop.create_future()
        try:
            await self._waiter
        finally:
            self._waiter = None
        self._raise()

    def _raise(self) -> None:
        """Raise what went wrong, unless the body was complete before it (surplus, a later close)."""
        if self.failure is not None:
            raise self.failure
        if self.error is not None and (self.body is None or self.body.left):
            raise self.error

    async def halt(self) -> None:
        """Stop the receiving thread (the connection is given up unless the body is complete)."""
        reader = self.reader
        if reader is None:
            return
        if not reader.done() and (self.body is None or self.body.left):
            self.abort()
        try:
            await asyncio.shield(reader)
        except asyncio.CancelledError:
            await asyncio.wait([reader])
            raise
        finally:
            self.reader = None

    def _wake(self) -> None:
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)


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

    def start(self, sink: Sink, flush_interval: float) -> None:
        """Receive the body in a thread that hands each buffer to ``sink`` (in that thread) when full,
        at the end, or after ``flush_interval`` seconds."""
        assert self.body is not None
        self.body.flush_interval = flush_interval
        self._channel.start_body(sink)

    async def wait(self) -> None:
        """Until a buffer was handed over, the body is complete or something failed (raised)."""
        body = self.body
        if body is None or body.written:
            return
        await self._channel.wait()

    @property
    def receiving(self) -> bool:
        """Whether the thread is still at the body (receiving, or handing its last bytes over)."""
        reader = self._channel.reader
        return reader is not None and not reader.done()

    async def stop(self) -> None:
        """Stop receiving (a body cut short gives its connection up); raises what the sink raised."""
        await self._channel.halt()
        if self._channel.failure is not None:
            raise self._channel.failure

    @property
    def held(self) -> float:
        """Seconds this response's thread spent handing bytes over (writing) so far."""
        return self._channel.held

    @property
    def last_read(self) -> float:
        """When the body last received bytes, or reading last resumed."""
        body = self.body
        read = body.last_read if body is not None else 0.0
        return max(read, self._channel.resumed_at)

    def close(self) -> None:
        """Done with the response: a complete body returns the connection to the pool, else it closes."""
        if self._done:
            return
        self._done = True
        channel = self._channel
        body = self.body
        if body is None or body.left or not channel.keep_alive or channel.error or channel.failure:
            channel.close()
            return
        # Its thread may still be looking for bytes past the body; the pool waits for it on reuse.
        self._client.release(self._key, channel)


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
        The caller bounds the wait for the head; the response's body uses a buffer of ``block``.
        """
        host = url.raw_host or ""
        port = url.port or (443 if url.scheme == "https" else 80)
        key = (url.scheme, host, port, insecure)
        request = _request_bytes(url, headers)
        for attempt in range(2):
            channel = await self._take(key)
            fresh = channel is None
            if channel is None:
                channel = await self._connect(key, connect_timeout)
            channel.prepare(block)
            channel.on_surplus = on_surplus
            self.requests_sent += 1
            try:
                await channel.run(functools.partial(channel.exchange, request))
            except (ServerClosed, OSError, ssl.SSLError) as exc:
                channel.close()
                if fresh or attempt:
                    if isinstance(exc, RangeClientError):
                        raise
                    raise ServerClosed(f"server closed the connection: {exc}") from None
                continue  # the server had closed the idle connection: once more on a new one
            except _Stopped:
                channel.close()
                raise ServerClosed("connection closed") from None
            except BaseException:
                channel.close()
                raise
            return PieceResponse(self, key, channel)
        raise AssertionError("unreachable")

    @property
    def closed(self) -> bool:
        """Whether :meth:`close` ran."""
        return self._closed

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

    async def _take(self, key: tuple[str, str, int, bool]) -> _Channel | None:
        pool = self._idle.get(key)
        while pool:
            since, channel = pool.pop()
            await channel.halt()  # a thread finishing its body's last look
            channel.on_surplus = None  # bytes on an idle connection close it; nobody is told
            if time.monotonic() - since < IDLE_TIMEOUT and channel.usable:
                return channel
            channel.close()
        return None

    async def _connect(self, key: tuple[str, str, int, bool], within: float) -> _Channel:
        scheme, host, port, insecure = key
        context = self._context(insecure) if scheme == "https" else None
        loop = asyncio.get_running_loop()
        bare = host.strip("[]")
        started = time.monotonic()
        try:
            async with asyncio.timeout(within):
                sock = await _open_socket(loop, bare, port)
        except TimeoutError:
            raise ConnectTimedOut(f"connect to {bare}:{port} timed out") from None
        except socket.gaierror:
            raise HostNotFound(bare) from None
        except OSError as exc:
            raise ConnectFailed(bare, port, exc) from None
        if context is None:
            sock.settimeout(POLL)
            return _Channel(sock, loop)
        try:
            wrapped = context.wrap_socket(sock, server_hostname=bare, do_handshake_on_connect=False)
        except (OSError, ValueError) as exc:
            sock.close()
            raise ConnectFailed(bare, port, OSError(str(exc))) from None
        channel = _Channel(wrapped, loop)
        left = max(0.001, within - (time.monotonic() - started))
        try:
            await channel.run(lambda: channel.handshake(left))
        except ssl.SSLCertVerificationError as exc:
            channel.close()
            raise CertificateUntrusted(exc.verify_message or str(exc)) from None
        except TimeoutError:
            channel.close()
            raise ConnectTimedOut(f"connect to {bare}:{port} timed out") from None
        except OSError as exc:
            channel.close()
            raise ConnectFailed(bare, port, exc) from None
        except BaseException:
            channel.close()
            raise
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


async def _open_socket(loop: asyncio.AbstractEventLoop, host: str, port: int) -> socket.socket:
    """A TCP connection to the first address of ``host`` that accepts one, in address order."""
    infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    error: OSError = OSError(f"no address for {host}")
    for family, kind, proto, _, address in infos:
        sock = socket.socket(family, kind, proto)
        try:
            sock.setblocking(False)
            await loop.sock_connect(sock, address)
        except OSError as exc:
            sock.close()
            error = exc
            continue
        except BaseException:
            sock.close()
            raise
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return sock
    raise error


_pool: concurrent.futures.ThreadPoolExecutor | None = None


def _executor() -> concurrent.futures.ThreadPoolExecutor:
    """The client's own threads: a body receiver may run for minutes, so not the loop's default pool."""
    global _pool
    if _pool is None:
        _pool = concurrent.futures.ThreadPoolExecutor(MAX_THREADS, thread_name_prefix="fetchtop-piece")
    return _pool


def _head_end(buffer: bytearray, length: int) -> int:
    """Where the head in ``buffer[:length]`` ends (after its empty line, CRLF or a bare LF), or -1."""
    ends = [at + len(mark) for mark in (b"\n\r\n", b"\n\n") if (at := buffer.find(mark, 0, length)) >= 0]
    return min(ends, default=-1)


def _request_bytes(url: URL, headers: Mapping[str, str]) -> bytes:
    """The request head: the path and query as the URL encodes them, then ``headers`` (UTF-8, as
    aiohttp writes them)."""
    lines = [f"GET {url.raw_path_qs} HTTP/1.1"]
    for name, value in headers.items():
        if "\r" in value or "\n" in value or "\r" in name or "\n" in name:
            raise ValueError(f"newline in header {name!r}")
        lines.append(f"{name}: {value}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("utf-8", "surrogateescape")
