"""What every stage of one download run shares: its requests, retries, restarts and the body copy."""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import itertools
import os
import threading
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

from yarl import URL

from engine.control import ControlData
from engine.errors import DownloadError, ErrorKind
from engine.escaping import escape_controls
from engine.events import Event, ExtraBytesIgnored, TaskRestarted, TaskRetrying
from engine.http import (
    Validators,
    credential_headers,
    direct_headers,
    local_error,
    request_headers,
    request_url,
    ssl_option,
    too_slow,
)
from engine.lowspeed import LowSpeedCheck, floor_rate
from engine.models import MiB
from engine.partfile import PartFile
from engine.rangeclient import PieceResponse, RangeClient
from engine.ranges import RangeSet
from engine.redaction import redact
from engine.retry import Retry
from engine.segments import Segment
from engine.task import Connection, Task
from engine.tokenbucket import TokenBucket

if TYPE_CHECKING:
    # Imported when a request needs it (Context.session): a download the range client carries alone
    # never pays for aiohttp's import (a third of a short download's run).
    import aiohttp

T = TypeVar("T")

WRITE_BLOCK = MiB
"""Most bytes gathered before one positional write: large writes keep CPU per byte low."""
BUFFER_BUDGET = 8 * MiB
"""Write buffers of one task together stay under this, so memory does not grow with -x."""
IOV_MAX = 1024
"""Most buffers one pwritev takes on Linux (a chunked body of tiny chunks would exceed it)."""
FLUSH_INTERVAL = 1.0
"""Seconds a received byte may wait in memory before it is written."""
ENGINE_BUFFER_BUDGET = 64 * MiB
"""Receive buffers of all the engine's running downloads together stay near this (each connection
of the range client owns one), so fifty small downloads do not hold 8 MiB each."""
PIECE_BLOCK_MAX = 4 * MiB
"""Largest receive buffer of a connection on the buffered body path."""
PROGRESS_INTERVAL = 0.25
"""Seconds between counting a slow piece's bytes into the meters (a fast one counts per buffer)."""
_NOT_REPEATED = frozenset({"range", "if-range", "content-length", "transfer-encoding", "connection"})
"""Headers of the probe's request that a piece request sets for itself or leaves out."""
_ORIGIN_BOUND = frozenset({"authorization", "cookie", "proxy-authorization"})
"""Headers that never follow a redirect to another origin."""
_REDIRECTS = frozenset({301, 302, 303, 307, 308})
"""Statuses whose Location is followed."""
MAX_REDIRECTS = 20
"""Redirects one request follows before it fails."""
MAX_RESTARTS = 3
"""Times one run starts over because the remote file changed before it gives up."""


class Context(Protocol):
    """What a download needs from the engine that runs it."""

    @property
    def session(self) -> aiohttp.ClientSession:
        """The shared HTTP client session, made (and aiohttp imported) when first asked for."""
        ...

    @property
    def has_cookies(self) -> bool:
        """Whether the HTTP client session holds cookies a server set (the range client sends none)."""
        ...

    @property
    def running_downloads(self) -> int:
        """Downloads running now, all tasks together (they share the receive-buffer budget)."""
        ...

    @property
    def range_client(self) -> RangeClient:
        """The shared client for ranged pieces received into reusable buffers."""
        ...

    global_bucket: TokenBucket
    """The engine-wide speed limit, shared by every task."""
    backoff_base: float
    """Ceiling of the first retry backoff, in seconds."""
    backoff_cap: float
    """Largest retry backoff ceiling, in seconds."""
    checkpoint_interval: float
    """Seconds between control-file updates while data flows."""

    def host_slot(self, host: str) -> asyncio.Semaphore:
        """The semaphore capping connections to ``host`` across tasks."""
        ...

    def publish(self, event: Event) -> None:
        """Publish an event on the engine's bus."""
        ...

    def received(self, nbytes: int) -> None:
        """Count bytes that arrived, for engine-wide totals."""
        ...

    def claimed_paths(self) -> set[Path]:
        """Final paths claimed by unfinished tasks."""
        ...

    async def controls_for(self, directory: Path, url: str) -> list[tuple[Path, ControlData]]:
        """Control files in ``directory`` left for ``url`` by an earlier run."""
        ...


@dataclass
class Response:
    """An open response and the host slot it holds."""

    resp: aiohttp.ClientResponse
    """The response, its body not yet read."""
    slot: asyncio.Semaphore
    """The host slot held until :meth:`close`."""

    @property
    def url(self) -> URL:
        """Where the answer came from (after redirects), without credentials."""
        return self.resp.url

    def close(self) -> None:
        """Release the connection and the host slot."""
        self.resp.release()
        self.slot.release()


@dataclass
class Piece:
    """A range response on the buffered body path, and the host slot it holds."""

    resp: PieceResponse
    """The response, its head read, its body arriving."""
    slot: asyncio.Semaphore
    """The host slot held until :meth:`close`."""
    url: URL
    """Where the answer came from (the range client follows no redirect), without credentials."""

    def close(self) -> None:
        """Release the connection (pooled if its body is complete) and the host slot."""
        self.resp.close()
        self.slot.release()


Opened = Response | Piece
"""A response whose body is still to be read: through aiohttp, or on the range client."""


class Transfer:
    """The state of one run of a task that its probe, fetches and final steps all use."""

    def __init__(self, task: Task, ctx: Context) -> None:
        self.task = task
        """The task being downloaded."""
        self.ctx = ctx
        """The engine running it."""
        self.file: PartFile | None = None
        """The open part file, once probed."""
        self.url = task.url
        """Where requests after the probe go: the final URL of its redirects, credentials kept."""
        self.stale_control = False
        """Set by a restart: the control file claims ranges of data about to be thrown away."""
        self._restarts = 0
        self._numbers = itertools.count(1)
        self._extra_reported = False
        self._template: tuple[URL, dict[str, str]] | None = None
        self._template_credentials: dict[str, str] = {}

    def connection_number(self) -> int:
        """A number for a new connection, unique within this run."""
        return next(self._numbers)

    async def open_first(self, url: str, headers: dict[str, str]) -> Opened:
        """Send the probe: on the range client when it can carry it, else through aiohttp. The
        caller closes the result.

        The range client carries it with no proxy, no speed limit and no cookies from earlier
        answers, what :meth:`piece_headers` allows later requests, so a plain download never makes
        (nor imports) the aiohttp session; its headers become the pieces' template. Its answer is
        returned when it has a body of declared length or is an error (the probe judges both); a
        redirect is followed from its Location by aiohttp; anything else (a body of unknown length,
        a redirect that sets a cookie) is asked for again through aiohttp, which frames or keeps it.
        """
        u = URL(url)
        opts = self.task.options
        sent = None if self._proxied(u) or self._limited() else direct_headers(u, opts, self._credentials(u))
        if sent is None or self.ctx.has_cookies:
            return await self.open(url, headers)
        try:
            piece = await self.open_piece(url, {**sent, **headers})
        except ValueError as exc:
            # A header the request cannot carry (a newline in it): nothing was sent, and a retry
            # would build the very same request.
            raise local_error(exc) from None
        resp = piece.resp
        if resp.body is not None:  # a 200 or 206 of declared length
            self._template = (u.origin(), {k: v for k, v in sent.items() if k.lower() not in _NOT_REPEATED})
            self._template_credentials = self._credentials(u)
            return piece
        if resp.status >= 400:
            return piece
        piece.close()
        location = resp.headers.get("Location")
        if resp.status not in _REDIRECTS or location is None or "Set-Cookie" in resp.headers:
            return await self.open(url, headers)
        try:
            target = u.join(URL(location))
            cross_origin = target.origin() != u.origin()
            if not cross_origin and target.user is None and u.user is not None:
                # As aiohttp keeps its auth on a redirect within the origin.
                target = target.with_user(u.user).with_password(u.password)
        except ValueError:
            raise DownloadError(
                f"malformed URL: {escape_controls(redact(location))}", permanent=True, kind=ErrorKind.URL
            ) from None
        return await self.open(str(target), headers, followed=1, cross_origin=cross_origin)

    def _credentials(self, url: URL) -> dict[str, str]:
        """``-u`` and ``--load-cookies`` headers for ``url``: none unless it is on the task's origin
        (a redirect elsewhere leads them nowhere, as aiohttp drops what it was given)."""
        try:
            if url.origin() != URL(self.task.url).origin():
                return {}
        except ValueError:
            return {}
        return credential_headers(url, self.task.options, time.time())

    def _proxied(self, url: URL) -> bool:
        return bool(self.task.options.proxy) or _env_proxy(url)

    def _limited(self) -> bool:
        return self.task.bucket.rate is not None or self.ctx.global_bucket.rate is not None

    async def open(
        self, url: str, headers: dict[str, str], followed: int = 0, cross_origin: bool = False
    ) -> Response:
        """Send a GET through aiohttp holding a host slot; the caller closes the result.

        ``followed`` redirects led here already, ``cross_origin`` from another origin: then, as
        aiohttp itself does when it follows one, no Authorization or Cookie header goes along.
        """
        import aiohttp

        from engine.connector import BoundedConnector

        opts = self.task.options
        all_headers = {
            **request_headers(opts, {} if cross_origin else self._credentials(URL(url))),
            **headers,
        }
        if cross_origin:
            all_headers = {k: v for k, v in all_headers.items() if k.lower() not in _ORIGIN_BOUND}
        try:
            async with self._answer_within_deadline(URL(url).host or "") as slot:
                resp = await self.ctx.session.get(
                    request_url(url, all_headers),
                    headers=all_headers,
                    proxy=opts.proxy,
                    ssl=ssl_option(opts),
                    timeout=aiohttp.ClientTimeout(
                        total=None, sock_connect=opts.connect_timeout, sock_read=opts.timeout
                    ),
                    allow_redirects=True,
                    max_redirects=MAX_REDIRECTS - followed,
                    # Few connections get deep buffers (fewer, larger reads); many share the budget.
                    read_bufsize=self._read_bufsize(),
                )
        except (ValueError, TypeError) as exc:
            if isinstance(exc, aiohttp.ClientError):
                raise  # InvalidURL and its kind: classify() knows them
            # Raised while the request was being built: nothing was sent, and a retry
            # would build the very same request.
            raise local_error(exc) from None
        connector = self.ctx.session.connector
        if isinstance(connector, BoundedConnector):
            connector.watch(resp, self._extra_ignored)
        if resp.status in (200, 206) and not self._proxied(resp.url):
            # What aiohttp sent to the final origin (its Host, credentials, cookies) is what a piece
            # request sends there too; Authorization dropped on a cross-origin redirect stays dropped.
            sent = resp.request_info.headers
            self._template = (
                resp.url.origin(),
                {k: v for k, v in sent.items() if k.lower() not in _NOT_REPEATED},
            )
            self._template_credentials = self._credentials(resp.url)
        return Response(resp, slot)

    def piece_headers(self, url: str) -> dict[str, str] | None:
        """Headers for a ranged piece of ``url`` on the buffered body path; None if it must use aiohttp.

        That path is for what it knows: no proxy, no speed limit (a limited download is not short of
        CPU), an origin an earlier response of this run came from (its request is the template).
        """
        if self._template is None:
            return None  # no usable answer yet, or a proxy carries the requests
        if self._limited():
            return None
        origin, headers = self._template
        u = URL(url)
        if u.origin() != origin:
            return None
        if self.task.options.cookies and self._credentials(u) != self._template_credentials:
            # A file cookie expired since the template was made: aiohttp's path sends what is due now.
            return None
        return dict(headers)

    async def open_piece(self, url: str, headers: dict[str, str]) -> Piece:
        """Send a piece request on the range client holding a host slot; the caller closes the result."""
        opts = self.task.options
        u = URL(url).with_user(None)
        async with self._answer_within_deadline(u.host or "") as slot:
            resp = await self.ctx.range_client.get(
                u,
                headers,
                insecure=opts.insecure,
                connect_timeout=opts.connect_timeout,
                block=self._piece_block(),
                on_surplus=self._extra_ignored,
            )
        return Piece(resp, slot, u)

    @contextlib.asynccontextmanager
    async def _answer_within_deadline(self, host: str) -> AsyncIterator[asyncio.Semaphore]:
        """Hold a slot of ``host`` while a request's answer comes; released if the block raises.

        A read timeout restarts with every byte, so a server trickling its header lines would hold
        the request for ever: the whole answer (redirects included) gets a deadline, connect plus
        read timeout, and missing it is a stall. On success the slot stays held for the caller.
        """
        opts = self.task.options
        slot = self.ctx.host_slot(host)
        await slot.acquire()
        deadline = opts.connect_timeout + opts.timeout
        try:
            async with asyncio.timeout(deadline) as within:
                yield slot
        except TimeoutError:
            slot.release()
            if within.expired():
                raise DownloadError(
                    f"stalled: no complete response headers within {deadline:g} s", kind=ErrorKind.TIMEOUT
                ) from None
            raise
        except BaseException:
            slot.release()
            raise

    def _piece_block(self) -> int:
        # One buffer per connection on this path: its thread receives and writes in turn.
        connections = max(1, self.task.max_connections)
        per_connection = BUFFER_BUDGET // connections
        shared = ENGINE_BUFFER_BUDGET // max(1, self.ctx.running_downloads) // connections
        return max(256 * 1024, min(PIECE_BLOCK_MAX, per_connection, shared))

    def _extra_ignored(self, extra: int) -> None:
        """Report, once per run, a server that sent more body than its Content-Length."""
        if not self._extra_reported:
            self._extra_reported = True
            self.ctx.publish(ExtraBytesIgnored(time.time(), self.task.id, extra=extra))

    def _read_bufsize(self) -> int:
        return max(256 * 1024, min(2 * MiB, BUFFER_BUDGET // 2 // max(1, self.task.max_connections)))

    def if_range(self) -> str | None:
        """The If-Range value for requests of this task, unless validators are not checked."""
        if not self.task.options.check_validators:
            return None
        return Validators(self.task.etag, self.task.last_modified).if_range()

    def retry(self) -> Retry:
        """A fresh retry budget for one attempt loop."""
        return Retry(self.task.options.retries, self.ctx.backoff_base, self.ctx.backoff_cap)

    async def retry_wait(self, retry: Retry, err: DownloadError) -> None:
        """Sleep before the next attempt, or raise when retrying cannot or may not go on."""
        task = self.task
        delay = retry.increment(err)
        task.retries += 1
        task.last_errors.append(err.reason)
        self.ctx.publish(
            TaskRetrying(
                time.time(), task.id, reason=err.reason, kind=err.kind, delay=delay, attempt=retry.attempt
            )
        )
        await asyncio.sleep(delay)

    def restart(self, reason: str) -> None:
        """Forget every byte on disk: the remote file is not the one they came from."""
        task = self.task
        self._restarts += 1
        if self._restarts > MAX_RESTARTS:
            raise DownloadError(
                f"{reason}; the remote file keeps changing (try --no-if-range for signed URLs)",
                permanent=True,
                kind=ErrorKind.CHANGED,
            )
        self.stale_control = True
        task.done = RangeSet()
        task.plan = []
        task.size = None
        task.resumable = None
        task.etag = task.last_modified = None
        self.ctx.publish(TaskRestarted(time.time(), task.id, reason=reason))

    def low_speed_check(self) -> LowSpeedCheck | None:
        """A fresh lowest-speed check for one response of this task; None when it is off."""
        opts = self.task.options
        floor = floor_rate(opts.lowest_speed, opts.timeout)
        return None if floor is None else LowSpeedCheck(floor, opts.timeout)

    async def stream(self, conn: Connection, seg: Segment, resp: aiohttp.ClientResponse) -> bool:
        """Copy the body into the file until the segment's (moving) end; True if any byte came.

        Blocks are written when full or a second old, so a slow connection neither holds much
        memory nor leaves much unrecorded for a resume. (Overlapping a write with the next
        read was measured: no faster on loopback, 12 MB more at -x16.)

        A connection slower than the lowest speed is closed (never back to the pool of idle
        connections) and DownloadError(TOO_SLOW) raised, ``conn.slow_from`` saying where the slow
        span began. It is judged after each chunk and when a read times out, on the time spent
        waiting for the server only: time it is held back by a speed limit or a disk write does not
        count, so a limit of ours below the lowest speed is no cause.
        """
        task = self.task
        content = resp.content
        chunks: list[bytes] = []
        buffered = 0
        offset = seg.pos
        progressed = False
        global_bucket = self.ctx.global_bucket
        block = max(256 * 1024, min(WRITE_BLOCK, BUFFER_BUDGET // max(1, task.max_connections)))
        flushed_at = time.monotonic()
        check = self.low_speed_check()
        first = seg.pos
        conn.slow_from = None
        waited = 0.0  # seconds spent awaiting the server's bytes: the lowest speed's clock
        try:
            while seg.pos < min(seg.end, seg.committed) and not conn.restart_requested:
                limited = task.bucket.rate is not None or global_bucket.rate is not None
                asked = time.monotonic()
                try:
                    if limited:
                        size = min(task.bucket.chunk_size(WRITE_BLOCK), global_bucket.chunk_size(WRITE_BLOCK))
                        data = await content.read(size)
                        chunk_end = False
                    else:
                        # One buffered piece as it came off the socket: readany() would join
                        # them all into a new bytes object, copying every byte once more.
                        data, chunk_end = await content.readchunk()
                except TimeoutError:
                    # A timeout ends a window too. Too few bytes in it is a slow connection whose
                    # bytes are no progress (nginx's limit_rate sends a second's worth, then
                    # nothing, so a low rate can time out before it is judged); none is a stall.
                    waited += time.monotonic() - asked
                    if check is not None and (slow := check.update(waited, seg.pos - first)) is not None:
                        conn.slow_from = first + slow.before
                        if first + slow.before < seg.pos:
                            resp.close()
                            raise too_slow(slow.rate, slow.seconds) from None
                    raise
                now = time.monotonic()
                waited += now - asked
                if not data:
                    if chunk_end:
                        continue  # a chunked body's chunk boundary, not the end
                    break
                room = min(seg.end, seg.committed) - seg.pos
                if len(data) > room:
                    data = data[:room]
                n = len(data)
                chunks.append(data)
                buffered += n
                seg.pos += n
                progressed = True
                conn.meter.add(n)
                task.meter.add(n)
                self.ctx.received(n)
                if check is not None and (slow := check.update(waited, seg.pos - first)) is not None:
                    conn.slow_from = first + slow.before
                    resp.close()  # a keep-alive connection to this server is worth nothing
                    raise too_slow(slow.rate, slow.seconds)
                if buffered >= block or len(chunks) >= IOV_MAX or now - flushed_at > FLUSH_INTERVAL:
                    await self._write(chunks, offset)
                    offset += buffered
                    chunks, buffered = [], 0
                    flushed_at = time.monotonic()
                if limited:
                    delay = max(task.bucket.reserve(n), global_bucket.reserve(n))
                    if delay > 0:
                        await asyncio.sleep(delay)
        finally:
            if chunks:
                await self._write(chunks, offset)
        return progressed

    async def stream_opened(
        self, conn: Connection, seg: Segment, opened: Opened, ranged: bool = True
    ) -> bool:
        """:meth:`stream` or :meth:`stream_piece`, as ``opened`` came; True if any byte came."""
        if isinstance(opened, Piece):
            return await self.stream_piece(conn, seg, opened.resp, ranged)
        return await self.stream(conn, seg, opened.resp)

    async def stream_piece(
        self, conn: Connection, seg: Segment, resp: PieceResponse, ranged: bool = True
    ) -> bool:
        """Have a piece's body written into the file as it arrives, until the segment's (moving) end.

        As :meth:`stream`, with the same lowest-speed rule, but the bytes never pass the event loop:
        the response's thread receives them into the connection's buffer and writes it with one
        ``pwrite`` when full, at the end, or after :data:`FLUSH_INTERVAL`; this loop only counts
        what was written (meters, the done set) and judges speed and stalls. A speed limit set
        meanwhile ends a ``ranged`` piece early (its rest is asked for on the path that reads no
        more than the limit allows); a whole body that cannot be asked for again in parts is paced
        buffer by buffer instead (its thread waits its turn after each write, so reading waits too).
        """
        task = self.task
        file = self.file
        body = resp.body
        assert body is not None and file is not None
        first = seg.pos
        global_bucket = self.ctx.global_bucket
        timeout = task.options.timeout
        check = self.low_speed_check()
        conn.slow_from = None
        started = time.monotonic()
        progressed = False
        loop = asyncio.get_running_loop()
        halted = threading.Event()

        def reserve(nbytes: int) -> float:
            """Seconds the limits ask to wait for ``nbytes`` (on the loop: the buckets are its own)."""
            return max(task.bucket.reserve(nbytes), global_bucket.reserve(nbytes))

        def pace(nbytes: int) -> None:
            """Wait the limits' turn for ``nbytes`` written of a whole body (thread)."""
            if ranged or (task.bucket.rate is None and global_bucket.rate is None):
                return
            turn: concurrent.futures.Future[float] = concurrent.futures.Future()
            try:
                loop.call_soon_threadsafe(lambda: turn.set_result(reserve(nbytes)))
                delay = turn.result(timeout=10)
            except (RuntimeError, concurrent.futures.TimeoutError):
                return  # the loop is gone or stuck: nobody to pace for
            halted.wait(delay)

        def sink(view: memoryview, at: int) -> None:
            """Write the body bytes at body offset ``at`` that fall inside the segment (thread)."""
            # seg.end and seg.committed only ever shrink while a piece runs (a split); a write that
            # raced a split puts the same bytes of the same file version where another piece will.
            offset = first + at
            useful = min(len(view), min(seg.end, seg.committed) - offset)
            if useful > 0:
                file.write([view[:useful]], offset)
            pace(len(view))

        def count() -> None:
            """Count the bytes that arrived (the meters, the segment) and were written (the done set)."""
            nonlocal progressed
            arrived = min(first + body.received, min(seg.end, seg.committed)) - seg.pos
            if arrived > 0:
                # Arrived is as good as written for the segment: a split never hands them out again.
                progressed = True
                seg.pos += arrived
                conn.meter.add(arrived)
                task.meter.add(arrived)
                self.ctx.received(arrived)
            while body.written:
                at, n = body.written.popleft()
                offset = first + at
                useful = min(n, min(seg.end, seg.committed, seg.pos) - offset)
                if useful > 0:
                    task.done.add(offset, offset + useful)

        resp.start(sink, FLUSH_INTERVAL)
        try:
            while True:
                count()
                if ranged and (task.bucket.rate is not None or global_bucket.rate is not None):
                    # A limit set while this piece runs: its rest is asked for again on the path
                    # that reads as little as the limit allows (this one reads whole buffers).
                    conn.restart_requested = True
                if seg.pos >= min(seg.end, seg.committed) or conn.restart_requested:
                    break
                if not resp.receiving and not body.written:
                    break  # the body ended (short of the range if its length was wrong)
                now = time.monotonic()
                if check is not None:
                    waited = now - started - resp.held
                    if (slow := check.update(waited, seg.pos - first)) is not None:
                        conn.slow_from = first + slow.before
                        resp.close()  # a keep-alive connection to this server is worth nothing
                        raise too_slow(slow.rate, slow.seconds)
                if now - resp.last_read >= timeout:
                    resp.close()
                    raise TimeoutError()
                try:
                    async with asyncio.timeout(PROGRESS_INTERVAL):
                        await resp.wait()
                except TimeoutError:
                    pass  # count what arrived meanwhile: meters move for a slow piece too
        finally:
            # The thread writes the bytes that came before a failure or a cut segment as it stops.
            halted.set()
            await resp.stop()
            count()
        return progressed

    async def _write(self, chunks: list[bytes] | list[memoryview], offset: int) -> None:
        file = self.file
        assert file is not None
        total = await in_thread(file.write, chunks, offset)
        self.task.done.add(offset, offset + total)


def made_progress(conn: Connection, seg: Segment, before: int) -> bool:
    """Whether an attempt that began at ``before`` brought bytes worth resetting the retry budget for.

    Bytes of the span that got a connection dropped as too slow do not count: a trickle delivers a
    few bytes on every connection and would otherwise never run out of retries.
    """
    reached = seg.pos if conn.slow_from is None else conn.slow_from
    conn.slow_from = None
    return reached > before


def _env_proxy(url: URL) -> bool:
    """Whether a proxy from the environment applies to ``url`` (aiohttp's session trusts the env)."""
    if not any(name.lower().endswith("_proxy") for name in os.environ):
        return False  # the common case, without importing urllib.request (and http.client, email)
    import urllib.request

    proxies = urllib.request.getproxies_environment()
    if url.scheme not in proxies:
        return False
    return not urllib.request.proxy_bypass(url.host or "")


def validators_differ(task: Task, got: Validators) -> bool:
    """Whether ``got`` identifies another version of the file than the one ``task`` holds parts of."""
    if task.etag and got.etag:
        return task.etag != got.etag
    if task.last_modified and got.last_modified:
        return task.last_modified != got.last_modified
    return False


async def in_thread(func: Callable[..., T], *args: Any, undo: Callable[[T], object] | None = None) -> T:
    """``func(*args)`` in a worker thread; if cancelled meanwhile, wait for the thread, then re-raise.

    A thread cannot be stopped. Returning at once would let the file descriptor be closed (and its
    number reused for another file) while the thread still writes to it, or let the next run write the
    control file through the same temp file at the same time (seen as FileNotFoundError on a quick
    cancel and resume). ``undo`` releases what a thread finished after its caller gave up (an
    opened file descriptor, say).
    """
    work = asyncio.ensure_future(asyncio.to_thread(func, *args))
    try:
        return await asyncio.shield(work)
    except asyncio.CancelledError:
        await asyncio.wait([work])
        if not work.cancelled() and work.exception() is None and undo is not None:
            undo(work.result())
        raise
