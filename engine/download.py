"""Running one download: probe, segmented fetch, crash-safe writes, verification, final rename."""

from __future__ import annotations

import asyncio
import hashlib
import os
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, TypeVar

import aiohttp
from yarl import URL

from engine import control
from engine.atomicfile import fsync_dir
from engine.control import ControlData
from engine.events import (
    Event,
    SegmentFinished,
    TaskCompleted,
    TaskProbed,
    TaskRestarted,
    TaskRetrying,
    TaskVerifying,
)
from engine.filenames import choose_name, sanitize, unique_name
from engine.http import (
    DownloadError,
    ErrorKind,
    RemoteChanged,
    Validators,
    check_url,
    classify,
    parse_content_range,
    redact,
    request_headers,
    response_error,
    ssl_option,
)
from engine.models import MiB, TaskState
from engine.ranges import RangeSet
from engine.ratemeter import RateMeter
from engine.retry import Retry
from engine.segments import Segment, initial_plan, split_largest, split_slowest
from engine.task import Connection, Task
from engine.tokenbucket import TokenBucket

T = TypeVar("T")

WRITE_BLOCK = MiB
"""Most bytes gathered before one positional write: large writes keep CPU per byte low."""
BUFFER_BUDGET = 8 * MiB
"""Write buffers of one task together stay under this, so memory does not grow with -x."""
MIN_PIECE = 2 * MiB
"""Smallest range asked for in one request (except a segment's last bytes)."""
MAX_PIECE = 32 * MiB
"""Largest range asked for in one request."""
PIECE_SECONDS = 0.5
"""Seconds of data one request asks for: long enough that request overhead is noise, short
enough that a connection that finishes early finds unrequested bytes to take over."""
IOV_MAX = 1024
"""Most buffers one pwritev takes on Linux (a chunked body of tiny chunks would exceed it)."""
FLUSH_INTERVAL = 1.0
"""Seconds a received byte may wait in memory before it is written."""
IDLE_POLL = 0.25
"""Seconds an idle connection waits before looking again for a range to take over."""
SPLIT_PATIENCE = 2.0
"""Seconds a connection may still need for its range before an idle one takes half of it,
even though the server has been asked for those bytes already."""
MAX_RESTARTS = 3
"""Times one run starts over because the remote file changed before it gives up."""
SLOW_FACTOR = 0.1
"""A connection below this fraction of its peers' median speed is restarted."""
SLOW_GRACE = 5.0
"""Seconds a connection runs before it can be judged slow."""


class TooManyConnections(Exception):
    """The server refused an extra connection (503/429 while others are open)."""


class Context(Protocol):
    """What a download needs from the engine that runs it."""

    @property
    def session(self) -> aiohttp.ClientSession:
        """The shared HTTP client session."""
        ...

    global_bucket: TokenBucket
    backoff_base: float
    backoff_cap: float
    checkpoint_interval: float

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
class _Response:
    """An open response and the host slot it holds."""

    resp: aiohttp.ClientResponse
    slot: asyncio.Semaphore

    def close(self) -> None:
        self.resp.release()
        self.slot.release()


class Download:
    """One run of a task, from probe to final rename (or until paused or failed)."""

    def __init__(self, task: Task, ctx: Context) -> None:
        self.task = task
        self.ctx = ctx
        self.fd: int | None = None
        self._ctrl_lock = asyncio.Lock()
        self._numbers = 0
        self._pending: list[Segment] = []
        self._restarts = 0
        self._stale_control = False
        self._url = task.url

    # ----- lifecycle -------------------------------------------------------------------------

    async def run(self) -> None:
        """Download the task to completion; raises DownloadError on failure."""
        task = self.task
        task.meter.start()
        try:
            await self._run()
        finally:
            task.meter.stop()
            task.connections.clear()
            await self._close_file()

    async def _run(self) -> None:
        task = self.task
        url = check_url(task.url)
        if not task.control_checked:
            task.control_checked = True
            await self._adopt_existing_control()
        while True:
            opened = await self._probe(url)
            task.set_state(TaskState.DOWNLOADING)
            checkpoints = asyncio.create_task(self._checkpoint_loop())
            fetched = False
            try:
                if task.resumable and task.size is not None:
                    await self._fetch_segmented(opened)
                else:
                    await self._fetch_whole(opened)
                fetched = True
            except RemoteChanged as exc:
                # A range request saw another version of the file: start over from the probe.
                self._restart(str(exc))
                continue
            finally:
                checkpoints.cancel()
                try:
                    # asyncio.wait, not await: a pause arriving now must not be swallowed.
                    await asyncio.wait([checkpoints])
                finally:
                    if not fetched:
                        # Paused, failed or closing: record what is on disk for the next run.
                        # (A finished fetch goes straight to the final rename instead.)
                        await self._checkpoint()
            break
        await self._finish()

    async def _adopt_existing_control(self) -> None:
        """Pick up a part file and control file left by an earlier run for the same URL."""
        task = self.task
        directory = Path(task.options.directory)
        candidates: list[ControlData] = []
        if task.options.output:
            name = choose_name(task.options.output, None, task.url)
            data = await asyncio.to_thread(control.read_control, control.control_path(directory / name))
            if data is not None and data.url == task.display_url:
                candidates = [data]
        else:
            candidates = [data for _, data in await self.ctx.controls_for(directory, task.display_url)]
        claimed = self.ctx.claimed_paths()
        for data in candidates:
            final = directory / data.name
            if sanitize(data.name) != data.name:
                continue  # a planted or corrupt control file must not steer us out of the directory
            if final not in claimed and control.part_path(final).exists():
                break
        else:
            return
        task.name = data.name
        task.path = final
        task.size = data.size
        task.resumable = data.resumable
        task.etag = data.etag
        task.last_modified = data.last_modified
        task.done = RangeSet(data.done) if data.resumable else RangeSet()

    # ----- requests --------------------------------------------------------------------------

    async def _open(self, url: str, headers: dict[str, str]) -> _Response:
        """Send a GET holding a host slot; the caller closes the result."""
        opts = self.task.options
        host = URL(url).host or ""
        slot = self.ctx.host_slot(host)
        await slot.acquire()
        try:
            resp = await self.ctx.session.get(
                url,
                headers={**request_headers(opts), **headers},
                proxy=opts.proxy,
                ssl=ssl_option(opts),
                timeout=aiohttp.ClientTimeout(
                    total=None, sock_connect=opts.connect_timeout, sock_read=opts.timeout
                ),
                allow_redirects=True,
                max_redirects=20,
                # Few connections get deep buffers (fewer, larger reads); many share the budget.
                read_bufsize=self._read_bufsize(),
            )
        except BaseException:
            slot.release()
            raise
        return _Response(resp, slot)

    def _read_bufsize(self) -> int:
        return max(256 * 1024, min(2 * MiB, BUFFER_BUDGET // 2 // max(1, self.task.max_connections)))

    def _retry(self) -> Retry:
        """A fresh retry budget for one attempt loop."""
        return Retry(self.task.options.retries, self.ctx.backoff_base, self.ctx.backoff_cap)

    async def _retry_wait(self, retry: Retry, err: DownloadError) -> None:
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

    def _if_range(self) -> str | None:
        if not self.task.options.check_validators:
            return None
        return Validators(self.task.etag, self.task.last_modified).if_range()

    async def _probe(self, url: object) -> _Response:
        """The first request: learn size, name and range support; the response keeps streaming."""
        task = self.task
        task.set_state(TaskState.PROBING)
        retry = self._retry()
        while True:
            resuming = bool(task.resumable and task.size is not None and task.done.covered)
            gaps = task.done.gaps(task.size) if resuming and task.size else []
            # With nothing missing (a crash before the rename) one byte re-validates the file.
            start = gaps[0][0] if gaps else (task.size - 1 if resuming and task.size else 0)
            headers = {"Range": f"bytes={start}-"}
            if_range = self._if_range() if resuming else None
            if if_range:
                headers["If-Range"] = if_range
            try:
                opened = await self._open(task.url, headers)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # every client failure is classified, none escapes raw
                await self._retry_wait(retry, classify(exc))
                continue
            resp = opened.resp
            if resp.status == 416 and resuming:
                opened.close()
                self._restart("remote file is shorter than the partial download; downloading again")
                continue
            if resp.status not in (200, 206) and not _empty_file(resp, start):
                opened.close()
                await self._retry_wait(retry, response_error(resp))
                continue
            try:
                await self._accept_probe(opened, start, resuming)
            except RemoteChanged as exc:
                opened.close()
                self._restart(str(exc))
                continue
            except BaseException:
                opened.close()
                raise
            return opened

    async def _accept_probe(self, opened: _Response, start: int, resuming: bool) -> None:
        task = self.task
        resp = opened.resp
        validators = Validators.of(resp.headers)
        if _empty_file(resp, start):
            # "416 bytes */0" is how a server says the file is empty: nothing to fetch.
            task.resumable = True
            task.size = 0
        elif resp.status == 206:
            cr = parse_content_range(resp.headers.get("Content-Range"))
            if cr is None or cr[0] != start or cr[2] is None:
                raise DownloadError(
                    f"invalid Content-Range {resp.headers.get('Content-Range')!r} for bytes={start}-",
                    permanent=True,
                    kind=ErrorKind.PROTOCOL,
                )
            total = cr[2]
            if resuming and total != task.size:
                raise RemoteChanged(f"remote size changed from {task.size} to {total} bytes")
            if resuming and task.options.check_validators and _validators_differ(task, validators):
                raise RemoteChanged("remote file changed (ETag/Last-Modified differ)")
            task.resumable = True
            task.size = total
        else:
            if resuming and self._if_range():
                # If-Range failed: the file changed, but the server may well still do ranges,
                # so probe again rather than settle for one connection.
                raise RemoteChanged("remote file changed; downloading again from the start")
            if resuming or task.done.covered:
                self._restart("server no longer honours ranges; downloading again from the start")
            task.resumable = False
            task.size = resp.content_length
        task.etag, task.last_modified = validators.etag, validators.last_modified
        task.final_url = redact(resp.url)
        self._url = _with_credentials(str(resp.url), task.url)
        if task.path is None:
            await self._choose_path(resp)
        await self._open_file(fresh=not task.done.covered)
        await self._checkpoint(durable=bool(task.done.covered))
        assert task.name is not None and task.path is not None
        self.ctx.publish(
            TaskProbed(
                time.time(),
                task.id,
                name=task.name,
                path=str(task.path),
                size=task.size,
                resumable=bool(task.resumable),
                final_url=task.final_url,
            )
        )

    def _restart(self, reason: str) -> None:
        """Forget every byte on disk: the remote file is not the one they came from."""
        task = self.task
        self._restarts += 1
        if self._restarts > MAX_RESTARTS:
            raise DownloadError(
                f"{reason}; the remote file keeps changing (try --no-if-range for signed URLs)",
                permanent=True,
                kind=ErrorKind.CHANGED,
            )
        self._stale_control = True
        task.done = RangeSet()
        task.plan = []
        task.size = None
        task.resumable = None
        task.etag = task.last_modified = None
        self.ctx.publish(TaskRestarted(time.time(), task.id, reason=reason))

    async def _choose_path(self, resp: aiohttp.ClientResponse) -> None:
        task = self.task
        directory = Path(task.options.directory)
        await asyncio.to_thread(directory.mkdir, parents=True, exist_ok=True)
        name = choose_name(task.options.output, resp.headers.get("Content-Disposition"), str(resp.url))

        claimed = self.ctx.claimed_paths()

        def taken(candidate: str) -> bool:
            final = directory / candidate
            if final in claimed or os.path.lexists(final) or os.path.lexists(control.control_path(final)):
                return True
            # Creating the part file exclusively claims the name atomically, against other tasks
            # of this engine and against other fetchtop processes alike.
            try:
                os.close(os.open(control.part_path(final), os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644))
            except FileExistsError:
                return True
            return False

        task.name = await asyncio.to_thread(unique_name, name, taken)
        task.path = directory / task.name
        # Guards against a name that sanitising missed: the file must stay in the directory.
        if task.path.parent != directory or task.path.name != task.name:
            raise DownloadError(f"unsafe file name {task.name!r}", permanent=True, kind=ErrorKind.NAME)

    async def _open_file(self, fresh: bool) -> None:
        task = self.task
        assert task.part_path is not None
        part = task.part_path
        size = task.size

        def open_part() -> int:
            # Resuming, the part file must already be there: recreating it empty would turn the
            # ranges the task believes done into zeros.
            fd = os.open(part, os.O_RDWR | (os.O_CREAT if fresh else 0), 0o644)
            if fresh:
                os.ftruncate(fd, 0)
                # Sparse, not posix_fallocate: on ext4, writing into fallocated (unwritten)
                # extents cost up to twice the system time per GiB in the benchmark.
                os.ftruncate(fd, size or 0)
            return fd

        await self._close_file()
        if fresh and self._stale_control and task.control_path is not None:
            # The old control file still claims ranges of the data about to be truncated.
            await asyncio.to_thread(_remove_durably, task.control_path)
            self._stale_control = False
        try:
            self.fd = await _in_thread(open_part, undo=os.close)
        except FileNotFoundError:
            # Deleted while paused: what it held is gone, so start this file over.
            task.done = RangeSet()
            task.plan = []
            self.ctx.publish(TaskRestarted(time.time(), task.id, reason="partial file disappeared"))
            fresh = True
            self.fd = await _in_thread(open_part, undo=os.close)

    async def _close_file(self) -> None:
        if self.fd is not None:
            fd, self.fd = self.fd, None
            await _in_thread(os.close, fd)

    # ----- fetching --------------------------------------------------------------------------

    async def _fetch_segmented(self, first: _Response) -> None:
        task = self.task
        assert task.size is not None
        opened: _Response | None = first
        # A range handed back by a refused connection after its peers had left is picked up
        # by another round; two rounds that change nothing mean something is wrong.
        for _ in range(3):
            gaps = task.done.gaps(task.size)
            if not gaps:
                break
            task.plan = initial_plan(gaps, task.max_connections, task.options.min_split)
            self._pending = list(task.plan[1:] if opened is not None else task.plan)
            count = min(task.max_connections, len(task.plan))
            watch = asyncio.create_task(self._slow_watch())
            try:
                async with asyncio.TaskGroup() as group:
                    if opened is not None:
                        group.create_task(self._worker(task.plan[0], opened))
                        count -= 1
                    opened = None
                    for _ in range(count):
                        group.create_task(self._worker(None, None))
            except* (RemoteChanged, DownloadError) as eg:
                # A changed file wins (it restarts); else the first failure is the reason.
                errors: list[BaseException] = list(eg.exceptions)
                changed = [e for e in errors if isinstance(e, RemoteChanged)]
                raise (changed[0] if changed else errors[0]) from None
            finally:
                watch.cancel()
        if opened is not None:
            opened.close()
        missing = task.done.gaps(task.size)
        if missing:
            raise DownloadError(f"{sum(b - a for a, b in missing)} bytes missing after all connections ended")

    async def _wait_for_work(self) -> Segment | None:
        """The next range to fetch; while a busy peer may still become worth splitting, wait for it."""
        task = self.task
        while True:
            seg = self._next_segment()
            if seg is not None:
                return seg
            busy = [c.segment for c in task.connections.values() if c.segment is not None]
            if not any(s.remaining >= 2 * task.options.min_split for s in busy):
                return None
            await asyncio.sleep(IDLE_POLL)

    def _next_segment(self) -> Segment | None:
        task = self.task
        if self._pending:
            return self._pending.pop(0)
        conns = [c for c in task.connections.values() if c.segment is not None]
        new = split_largest([c.segment for c in conns if c.segment is not None], task.options.min_split)
        if new is None:
            # Everything is requested already; cut a request short only if it would take long.
            now = time.monotonic()
            candidates = [
                (c.segment, c.meter.speed)
                for c in conns
                if c.segment is not None and now - c.started > SPLIT_PATIENCE / 2
            ]
            new = split_slowest(candidates, task.options.min_split, SPLIT_PATIENCE)
        if new is not None:
            task.plan.append(new)
        return new

    async def _worker(self, segment: Segment | None, opened: _Response | None) -> None:
        task = self.task
        self._numbers += 1
        conn = Connection(self._numbers)
        task.connections[conn.number] = conn
        try:
            seg = segment if segment is not None else self._next_segment()
            while seg is not None:
                conn.segment = seg
                # From here _fetch_segment owns the probe's response and closes it, on every path.
                first, opened = opened, None
                try:
                    await self._fetch_segment(conn, seg, first)
                except TooManyConnections:
                    seg.committed = seg.pos  # nothing of it is on its way any more
                    self._pending.append(seg)
                    return
                self.ctx.publish(SegmentFinished(time.time(), task.id, start=seg.start, end=seg.end))
                conn.segment = None
                seg = await self._wait_for_work()
        finally:
            conn.segment = None
            task.connections.pop(conn.number, None)
            if opened is not None:
                opened.close()

    async def _fetch_segment(self, conn: Connection, seg: Segment, opened: _Response | None) -> None:
        retry = self._retry()
        while seg.pos < seg.end:
            before = seg.pos
            try:
                if opened is None:
                    opened = await self._request_range(seg)
                else:
                    seg.committed = self.task.size or seg.end  # the probe asked for everything
                if not conn.meter.running:
                    conn.started = time.monotonic()
                    conn.meter.start()
                await self._stream(conn, seg, opened.resp)
                if seg.pos < min(seg.end, seg.committed) and not conn.restart_requested:
                    raise DownloadError("body ended early (truncated transfer)", kind=ErrorKind.TRUNCATED)
            except (asyncio.CancelledError, TooManyConnections, RemoteChanged):
                raise
            except Exception as exc:  # classified below; permanent ones end the task
                if opened is not None:
                    # The host slot and the broken connection are not held through the backoff.
                    opened.close()
                    opened = None
                if conn.restart_requested:
                    continue
                # Judged by position: a reset mid-body raises out of _stream after bytes arrived.
                if seg.pos > before:
                    retry.progressed()
                await self._retry_wait(retry, classify(exc))
            finally:
                if opened is not None:
                    opened.close()
                    opened = None
                if conn.restart_requested:
                    conn.restart_requested = False
                    conn.meter = RateMeter(window=2.0)  # judged afresh on its new connection

    def _piece_size(self) -> int:
        """Bytes to ask for in one request: about PIECE_SECONDS of this task's per-connection speed."""
        task = self.task
        per_connection = task.meter.speed / max(1, len(task.connections))
        return int(min(MAX_PIECE, max(MIN_PIECE, per_connection * PIECE_SECONDS)))

    async def _request_range(self, seg: Segment) -> _Response:
        """Ask for the next piece of a segment; only the rest of it stays open to other connections."""
        task = self.task
        first = seg.pos
        piece = self._piece_size()
        # A short leftover after this piece would cost a request of its own: take it now.
        last = seg.end - 1 if seg.end - first <= piece + MIN_PIECE else first + piece - 1
        seg.committed = last + 1
        headers = {"Range": f"bytes={first}-{last}"}
        if_range = self._if_range()
        if if_range:
            headers["If-Range"] = if_range
        opened = await self._open(self._url, headers)
        resp = opened.resp
        try:
            if resp.status in (503, 429) and len(task.connections) > 1:
                # The server limits connections: carry on with fewer instead of failing.
                task.max_connections = max(1, len(task.connections) - 1)
                raise TooManyConnections()
            if resp.status == 200:
                if task.options.check_validators and _validators_differ(task, Validators.of(resp.headers)):
                    raise RemoteChanged("remote file changed during the download")
                raise DownloadError("server ignored the Range request", kind=ErrorKind.PROTOCOL)
            if resp.status != 206:
                raise response_error(resp)
            cr = parse_content_range(resp.headers.get("Content-Range"))
            if cr != (first, last, task.size):
                raise DownloadError(
                    f"wrong Content-Range {resp.headers.get('Content-Range')!r} for bytes={first}-{last}",
                    kind=ErrorKind.PROTOCOL,
                )
            if task.options.check_validators and _validators_differ(task, Validators.of(resp.headers)):
                raise RemoteChanged("remote file changed during the download")
        except BaseException:
            opened.close()
            raise
        return opened

    async def _stream(self, conn: Connection, seg: Segment, resp: aiohttp.ClientResponse) -> bool:
        """Copy the body into the file until the segment's (moving) end; True if any byte came.

        Blocks are written when full or a second old, so a slow connection neither holds much
        memory nor leaves much unrecorded for a resume. (Overlapping a write with the next
        read was measured: no faster on loopback, 12 MB more at -x16.)
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
        try:
            while seg.pos < min(seg.end, seg.committed) and not conn.restart_requested:
                limited = task.bucket.rate is not None or global_bucket.rate is not None
                if limited:
                    size = min(task.bucket.chunk_size(WRITE_BLOCK), global_bucket.chunk_size(WRITE_BLOCK))
                    data = await content.read(size)
                else:
                    # One buffered piece as it came off the socket: readany() would join
                    # them all into a new bytes object, copying every byte once more.
                    data, chunk_end = await content.readchunk()
                    if not data and chunk_end:
                        continue  # a chunked body's chunk boundary, not the end
                if not data:
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
                if (
                    buffered >= block
                    or len(chunks) >= IOV_MAX
                    or time.monotonic() - flushed_at > FLUSH_INTERVAL
                ):
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

    async def _write(self, chunks: list[bytes], offset: int) -> None:
        fd = self.fd
        assert fd is not None
        total = await _in_thread(_pwritev_all, fd, chunks, offset)
        self.task.done.add(offset, offset + total)

    async def _fetch_whole(self, first: _Response) -> None:
        """A server without ranges: one stream from byte 0; a failure starts it over."""
        task = self.task
        opened: _Response | None = first
        retry = self._retry()
        while True:
            if opened is None:
                try:
                    opened = await self._open(self._url, {})
                except asyncio.CancelledError:
                    raise
                except Exception as exc:  # classified; permanent ones end the task
                    await self._retry_wait(retry, classify(exc))
                    continue
                if opened.resp.status != 200:
                    resp = opened.resp
                    opened.close()
                    opened = None
                    await self._retry_wait(retry, response_error(resp))
                    continue
                task.size = opened.resp.content_length
                task.done = RangeSet()
            declared = task.size
            end = declared if declared is not None else sys.maxsize
            seg = Segment(0, end, 0, committed=end)
            task.plan = [seg]
            conn = Connection(1, seg)
            conn.meter.start()
            task.connections = {1: conn}
            try:
                await self._stream(conn, seg, opened.resp)
                if declared is not None and seg.pos < declared:
                    raise DownloadError("body ended early (truncated transfer)", kind=ErrorKind.TRUNCATED)
                task.size = seg.pos
                seg.end = seg.pos
                return
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # classified; permanent ones end the task
                task.connections = {}
                opened.close()
                opened = None
                if seg.pos > seg.start:
                    retry.progressed()
                task.done = RangeSet()
                task.plan = []
                await self._retry_wait(retry, classify(exc))
            finally:
                task.connections = {}
                if opened is not None:
                    opened.close()
                    opened = None

    async def _slow_watch(self) -> None:
        """Restart a connection far slower than its peers on its remaining bytes."""
        task = self.task
        while True:
            await asyncio.sleep(1.0)
            if task.bucket.rate is not None or self.ctx.global_bucket.rate is not None:
                continue  # under a limit, slow is intended
            conns = [c for c in task.connections.values() if c.segment is not None]
            if len(conns) < 3:
                continue
            now = time.monotonic()
            speeds = [c.meter.speed for c in conns]
            median = statistics.median(speeds)
            for c in conns:
                seg = c.segment
                if (
                    seg is not None
                    and now - c.started > SLOW_GRACE
                    and c.meter.speed < median * SLOW_FACTOR
                    and seg.remaining > task.options.min_split
                ):
                    c.restart_requested = True

    # ----- persistence and the end -----------------------------------------------------------

    async def _checkpoint_loop(self) -> None:
        while True:
            await asyncio.sleep(self.ctx.checkpoint_interval)
            await self._checkpoint()

    async def _checkpoint(self, durable: bool = True) -> None:
        """Make written data durable, then record it in the control file."""
        task = self.task
        if self.fd is None or task.control_path is None or task.name is None:
            return
        async with self._ctrl_lock:
            data = ControlData(
                url=task.display_url,
                name=task.name,
                size=task.size,
                resumable=bool(task.resumable),
                etag=task.etag,
                last_modified=task.last_modified,
                done=task.done.as_list() if task.resumable else [],
            )
            fd, path = self.fd, task.control_path
            await _in_thread(_sync_and_record, fd, path, data, durable)

    async def _finish(self) -> None:
        task = self.task
        assert task.path is not None and task.part_path is not None and task.control_path is not None
        size = task.size or 0
        fd = self.fd
        assert fd is not None
        await _in_thread(_truncate_and_sync, fd, size)
        if task.options.checksum:
            task.set_state(TaskState.VERIFYING)
            self.ctx.publish(TaskVerifying(time.time(), task.id))
            algo, _, expected = task.options.checksum.partition("=")
            actual = await _in_thread(_hash_file, fd, algo)
            if actual.lower() != expected.strip().lower():
                await self._close_file()
                await asyncio.to_thread(control.remove_quietly, task.part_path, task.control_path)
                task.done = RangeSet()
                task.plan = []
                raise DownloadError(
                    f"checksum mismatch: expected {algo}={expected.strip().lower()}, got {actual}",
                    permanent=True,
                    kind=ErrorKind.CHECKSUM,
                )
        await self._close_file()
        placing = asyncio.ensure_future(asyncio.to_thread(self._place_final))
        try:
            final = await asyncio.shield(placing)
        except asyncio.CancelledError:
            # A rename in flight cannot be stopped: once it is done, the task is complete,
            # whatever the pause or close that arrived meanwhile asked.
            await asyncio.wait([placing])
            if placing.cancelled() or placing.exception() is not None:
                raise
            final = placing.result()
        task.path = final
        task.name = final.name
        task.set_state(TaskState.COMPLETED)
        duration = task.meter.active_time
        self.ctx.publish(TaskCompleted(time.time(), task.id, path=str(final), size=size, duration=duration))

    def _place_final(self) -> Path:
        """Give the part file its final name without ever replacing an existing file."""
        task = self.task
        assert task.path is not None and task.part_path is not None and task.name is not None
        part, ctrl = task.part_path, task.control_path
        directory = task.path.parent
        name = task.name
        for _ in range(100):
            final = directory / unique_name(name, lambda n: os.path.lexists(directory / n))
            try:
                os.link(part, final)
            except FileExistsError:
                continue
            except OSError:
                # No hard links on this filesystem: check, then rename (a tiny race remains).
                if os.path.lexists(final):
                    continue
                os.rename(part, final)
            else:
                os.unlink(part)
            # The control file goes last: until the rename, it is what resumes the download.
            control.remove_quietly(*(p for p in (ctrl, control.control_path(final)) if p is not None))
            fsync_dir(directory)
            return final
        raise DownloadError(f"no free file name for {name!r}", permanent=True, kind=ErrorKind.NAME)


def _empty_file(resp: aiohttp.ClientResponse, start: int) -> bool:
    return (
        resp.status == 416
        and start == 0
        and resp.headers.get("Content-Range", "").replace(" ", "").lower() == "bytes*/0"
    )


def _with_credentials(final: str, original: str) -> str:
    """``final`` with the user and password of ``original`` when both are on the same origin.

    aiohttp moves URL credentials into the Authorization header, so ``resp.url`` never carries them;
    without this every segment request after the probe would be sent without them (401).
    """
    src, dst = URL(original), URL(final)
    if src.user is None or dst.user is not None or src.origin() != dst.origin():
        return final
    return str(dst.with_user(src.user).with_password(src.password))


def _validators_differ(task: Task, got: Validators) -> bool:
    if task.etag and got.etag:
        return task.etag != got.etag
    if task.last_modified and got.last_modified:
        return task.last_modified != got.last_modified
    return False


async def _in_thread(func: Callable[..., T], *args: Any, undo: Callable[[T], object] | None = None) -> T:
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


def _pwritev_all(fd: int, chunks: list[bytes], offset: int) -> int:
    """Write every chunk at ``offset`` onwards, looping over short writes."""
    total = sum(len(c) for c in chunks)
    written = os.pwritev(fd, chunks, offset)
    if written < total:
        # Rare on regular files; finish byte-exactly with plain pwrite.
        rest = b"".join(chunks)[written:]
        while rest:
            n = os.pwrite(fd, rest, offset + written)
            written += n
            rest = rest[n:]
    return total


def _remove_durably(path: Path) -> None:
    control.remove_quietly(path)
    fsync_dir(path.parent)


def _truncate_and_sync(fd: int, size: int) -> None:
    os.ftruncate(fd, size)
    os.fsync(fd)


def _sync_and_record(fd: int, path: Path, data: ControlData, durable: bool) -> None:
    if durable:
        os.fsync(fd)
    control.write_control(path, data, durable)


def _hash_file(fd: int, algo: str) -> str:
    h = hashlib.new(algo)
    offset = 0
    while True:
        block = os.pread(fd, 4 * MiB, offset)
        if not block:
            return h.hexdigest()
        h.update(block)
        offset += len(block)
