"""The segmented fetch: several connections share the missing ranges, splitting and taking over work."""

from __future__ import annotations

import asyncio
import statistics
import time

from engine.errors import DownloadError, ErrorKind, RemoteChanged
from engine.events import SegmentFinished
from engine.http import Validators, classify, parse_content_range, response_error, truncated
from engine.models import MiB
from engine.ratemeter import RateMeter
from engine.segments import Segment, initial_plan, split_largest, split_slowest
from engine.task import Connection
from engine.transfer import Opened, Transfer, made_progress, validators_differ

MIN_PIECE = 2 * MiB
"""Smallest range asked for in one request (except a segment's last bytes)."""
MAX_PIECE = 32 * MiB
"""Largest range asked for in one request."""
PIECE_SECONDS = 0.5
"""Seconds of data one request asks for: long enough that request overhead is noise, short
enough that a connection that finishes early finds unrequested bytes to take over."""
IDLE_POLL = 0.25
"""Seconds an idle connection waits before looking again for a range to take over."""
SPLIT_PATIENCE = 2.0
"""Seconds a connection may still need for its range before an idle one takes half of it,
even though the server has been asked for those bytes already."""
SLOW_FACTOR = 0.1
"""A connection below this fraction of its peers' median speed is restarted."""
SLOW_GRACE = 5.0
"""Seconds a connection runs before it can be judged slow."""


def _answered_end(first: Opened, seg: Segment) -> int:
    """Where the bytes of the probe's 206 stop within ``seg``, the segment that starts where it did.

    The probe checked its Content-Range; should it not start at ``seg`` after all, none of its body
    is used and the segment is asked for again.
    """
    cr = parse_content_range(first.resp.headers.get("Content-Range"))
    if cr is None or cr[0] != seg.start:
        return seg.start
    return min(seg.end, cr[1] + 1)


class TooManyConnections(Exception):
    """The server refused an extra connection (503/429 while others are open)."""


class SegmentedFetch:
    """Fetch every missing range of a task of known size from a server that honours ranges."""

    def __init__(self, t: Transfer) -> None:
        self.t = t
        """The run this fetch belongs to."""
        self._pending: list[Segment] = []

    async def run(self, first: Opened) -> None:
        """Fetch until no byte is missing, starting with ``first``, the probe's response (closed here)."""
        task = self.t.task
        assert task.size is not None
        opened: Opened | None = first
        # A range handed back by a refused connection after its peers had left is picked up
        # by another round; two rounds that change nothing mean something is wrong.
        for _ in range(3):
            gaps = task.done.gaps(task.size)
            if not gaps:
                break
            task.plan = initial_plan(gaps, task.max_connections, task.options.min_split)
            if opened is not None:
                # The probe's closed range lies in the first segment (segments.first_range): its
                # bytes are on their way, so no peer may take them over.
                task.plan[0].committed = _answered_end(opened, task.plan[0])
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
        task = self.t.task
        while True:
            seg = self._next_segment()
            if seg is not None:
                return seg
            busy = [c.segment for c in task.connections.values() if c.segment is not None]
            if not any(s.remaining >= 2 * task.options.min_split for s in busy):
                return None
            await asyncio.sleep(IDLE_POLL)

    def _next_segment(self) -> Segment | None:
        task = self.t.task
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

    async def _worker(self, segment: Segment | None, opened: Opened | None) -> None:
        task = self.t.task
        conn = Connection(self.t.connection_number())
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
                self.t.ctx.publish(SegmentFinished(time.time(), task.id, start=seg.start, end=seg.end))
                conn.segment = None
                seg = await self._wait_for_work()
        finally:
            conn.segment = None
            task.connections.pop(conn.number, None)
            if opened is not None:
                opened.close()

    async def _fetch_segment(self, conn: Connection, seg: Segment, first: Opened | None) -> None:
        retry = self.t.retry()
        opened: Opened | None = first
        while seg.pos < seg.end:
            before = seg.pos
            try:
                if opened is None:
                    opened = await self._request_range(seg)
                if not conn.meter.running:
                    conn.started = time.monotonic()
                    conn.meter.start()
                await self.t.stream_opened(conn, seg, opened)
                if seg.pos < min(seg.end, seg.committed) and not conn.restart_requested:
                    raise truncated()
            except (asyncio.CancelledError, TooManyConnections, RemoteChanged):
                raise
            except Exception as exc:  # classified below; permanent ones end the task
                if opened is not None:
                    # The host slot and the broken connection are not held through the backoff.
                    opened.close()
                    opened = None
                # Nothing of it is on its way now: through the backoff, idle peers may take the rest.
                seg.committed = seg.pos
                if conn.restart_requested:
                    continue
                # Judged by position: a reset mid-body raises out of stream() after bytes arrived.
                if made_progress(conn, seg, before):
                    retry.progressed()
                await self.t.retry_wait(retry, classify(exc))
            finally:
                if opened is not None:
                    opened.close()
                    opened = None
                if conn.restart_requested:
                    conn.restart_requested = False
                    conn.meter = RateMeter(window=2.0)  # judged afresh on its new connection

    def _piece_size(self) -> int:
        """Bytes to ask for in one request: about PIECE_SECONDS of this task's per-connection speed."""
        task = self.t.task
        per_connection = task.meter.speed / max(1, len(task.connections))
        return int(min(MAX_PIECE, max(MIN_PIECE, per_connection * PIECE_SECONDS)))

    async def _request_range(self, seg: Segment) -> Opened:
        """Ask for the next piece of a segment; only the rest of it stays open to other connections."""
        task = self.t.task
        first = seg.pos
        piece = self._piece_size()
        # A short leftover after this piece would cost a request of its own: take it now.
        last = seg.end - 1 if seg.end - first <= piece + MIN_PIECE else first + piece - 1
        seg.committed = last + 1
        headers = {"Range": f"bytes={first}-{last}"}
        if_range = self.t.if_range()
        if if_range:
            headers["If-Range"] = if_range
        opened = await self._open(headers)
        resp = opened.resp
        try:
            if resp.status in (503, 429) and len(task.connections) > 1:
                # The server limits connections: carry on with fewer instead of failing.
                task.max_connections = max(1, len(task.connections) - 1)
                raise TooManyConnections()
            if resp.status == 200:
                if task.options.check_validators and validators_differ(task, Validators.of(resp.headers)):
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
            if task.options.check_validators and validators_differ(task, Validators.of(resp.headers)):
                raise RemoteChanged("remote file changed during the download")
        except BaseException:
            opened.close()
            raise
        return opened

    async def _open(self, headers: dict[str, str]) -> Opened:
        """Send a range request: on the range client when it can carry it, else through aiohttp."""
        url = self.t.url
        template = self.t.piece_headers(url)
        if template is None:
            return await self.t.open(url, headers)
        piece = await self.t.open_piece(url, {**template, **headers})
        status = piece.resp.status
        if piece.resp.body is not None or not (status == 206 or 300 <= status < 400):
            return piece
        # A redirect, or a 206 body of no declared length: aiohttp follows the one (dropping
        # credentials across origins, as for the probe) and frames the other.
        piece.close()
        return await self.t.open(url, headers)

    async def _slow_watch(self) -> None:
        """Restart a connection far slower than its peers on its remaining bytes."""
        task = self.t.task
        while True:
            await asyncio.sleep(1.0)
            if task.bucket.rate is not None or self.t.ctx.global_bucket.rate is not None:
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
