"""The fault server: an aiohttp server on 127.0.0.1 answering for :class:`FileSpec` files with their faults.

URL layout (build URLs with :meth:`FaultServer.url`, never by hand):

- ``/f/<quoted name>``: the file itself (or ``FileSpec.path`` if the file has a custom path);
- ``/r/<n>/<quoted name>``: a redirect chain, ``n`` hops left before the file;
- ``/status/<code>``: answers ``code`` with a short body, always.

Per-file accounting (:class:`FileStats`) stays right when clients disconnect mid-body.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import dataclasses
import socket
import struct
import time
from collections.abc import Iterable
from typing import Any
from urllib.parse import quote, unquote

from aiohttp import web

from faultserver.content import PATTERN_PERIOD, KiB, content_view, etag_for, last_modified_for
from faultserver.ranges import if_range_matches, parse_range
from faultserver.specs import FileSpec, FileState, FileStats, Outcome, RequestRecord, check_headers, fire


def _reset_transport(transport: asyncio.BaseTransport) -> None:
    """Abort with SO_LINGER 0 so the peer sees a real TCP reset, not a clean close."""
    sock = transport.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    if isinstance(transport, asyncio.WriteTransport):
        transport.abort()
    else:
        transport.close()


class FaultServer:
    """An aiohttp server on ``host:port`` (port 0: ephemeral) serving :class:`FileSpec` files.

    Use ``async with FaultServer() as srv:`` (or :meth:`start` / :meth:`stop`), register files with
    :meth:`add_file` or :meth:`add`, get URLs from :meth:`url`, read accounting from :meth:`stats`.
    Specs may be replaced while serving (:meth:`update`); ``rate`` changes apply to responses already
    in flight, other changes to new requests.
    """

    def __init__(self, host: str = "127.0.0.1", port: int = 0, shutdown_timeout: float = 0.5) -> None:
        self.host = host
        """Address to listen on."""
        self.port = port
        """Port listened on (the real one once started)."""
        self._shutdown_timeout = shutdown_timeout
        self._files: dict[str, FileState] = {}
        self._paths: dict[str, str] = {}
        self._runner: web.AppRunner | None = None
        self.active = 0
        """Responses in flight now, over all files."""
        self.peak_concurrent = 0
        """The most responses in flight at once, over all files."""
        self.bytes_sent = 0
        """Body bytes handed to transports, over all files."""
        self.requests = 0
        """Requests received, over all paths (including redirects and unknown paths)."""
        self._response_no = 0

    # -- lifecycle ---------------------------------------------------------------------------------

    async def start(self) -> FaultServer:
        """Start listening; returns self."""
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._handle)
        runner = web.AppRunner(
            app,
            handler_cancellation=True,  # a client that goes away cancels its handler at once
            access_log=None,
            shutdown_timeout=self._shutdown_timeout,
        )
        await runner.setup()
        site = web.TCPSite(runner, self.host, self.port)
        await site.start()
        self.port = int(runner.addresses[0][1])
        self._runner = runner
        return self

    async def stop(self) -> None:
        """Stop listening and end every response in flight."""
        runner, self._runner = self._runner, None
        if runner is not None:
            await runner.cleanup()

    async def __aenter__(self) -> FaultServer:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    # -- files -------------------------------------------------------------------------------------

    def add(self, spec: FileSpec) -> str:
        """Register (or replace) a file; returns its URL. Its stats start empty.

        ValueError for header values aiohttp cannot send (control characters other than tab: put them
        percent-encoded in ``filename*=`` instead).
        """
        check_headers(spec)
        old = self._files.get(spec.name)
        if old is not None and old.spec.path is not None:
            self._paths.pop(old.spec.path, None)
        self._files[spec.name] = FileState(spec)
        if spec.path is not None:
            self._paths[spec.path] = spec.name
        return self.url(spec.name)

    def add_file(self, name: str, size: int, **options: Any) -> str:
        """Register a file from keyword options of :class:`FileSpec`; returns its URL."""
        return self.add(FileSpec(name=name, size=size, **options))

    def add_files(self, specs: Iterable[FileSpec]) -> list[str]:
        """Register several files; returns their URLs in order."""
        return [self.add(s) for s in specs]

    def spec(self, name: str) -> FileSpec:
        """The current spec of a registered file."""
        return self._files[name].spec

    def update(self, name: str, **changes: Any) -> FileSpec:
        """Replace fields of a file's spec, keeping its stats (and spent fault budgets)."""
        state = self._files[name]
        new = dataclasses.replace(state.spec, **changes)
        check_headers(new)
        if new.path != state.spec.path:
            if state.spec.path is not None:
                self._paths.pop(state.spec.path, None)
            if new.path is not None:
                self._paths[new.path] = name
        state.spec = new
        return new

    def set_version(self, name: str, version: int) -> None:
        """Change a file's content, ETag and Last-Modified, as if it changed on the origin."""
        self.update(name, version=version)

    def bump_version(self, name: str) -> int:
        """Move a file to its next version; returns the new version."""
        version = self.spec(name).version + 1
        self.set_version(name, version)
        return version

    def stats(self, name: str) -> FileStats:
        """Live accounting for a file."""
        return self._files[name].stats

    def reset_stats(self, name: str | None = None) -> None:
        """Clear the accounting of one file (or all) and re-arm its budgeted faults.

        Responses in flight keep counting (into the cleared stats), and still count as active.
        """
        for key in [name] if name is not None else list(self._files):
            stats = self._files[key].stats
            # In place: handlers in flight hold this very object and will decrement its ``active``.
            fresh = FileStats(active=stats.active, peak_concurrent=stats.active)
            for f in dataclasses.fields(FileStats):
                setattr(stats, f.name, getattr(fresh, f.name))

    # -- URLs --------------------------------------------------------------------------------------

    @property
    def base_url(self) -> str:
        """``http://host:port`` of the running server."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    def url(self, name: str, query: str = "") -> str:
        """The URL a client should start at for a registered file (the head of its redirect chain)."""
        spec = self.spec(name)
        path = f"/r/{spec.redirects}/{quote(name, safe='')}" if spec.redirects > 0 else self.file_path(name)
        return self.base_url + path + (f"?{query}" if query else "")

    def final_url(self, name: str, query: str = "") -> str:
        """The URL that serves the file itself, at the end of any redirect chain."""
        return self.base_url + self.file_path(name) + (f"?{query}" if query else "")

    def file_path(self, name: str) -> str:
        """The raw URL path of the file itself."""
        spec = self.spec(name)
        return spec.path if spec.path is not None else f"/f/{quote(name, safe='')}"

    def status_url(self, status: int) -> str:
        """A URL that always answers ``status``."""
        return f"{self.base_url}/status/{status}"

    # -- handling ----------------------------------------------------------------------------------

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        self.requests += 1
        raw = request.rel_url.raw_path
        if raw in self._paths:
            return await self._serve(request, self._files[self._paths[raw]])
        parts = raw.split("/")
        if len(parts) == 3 and parts[1] == "f":
            state = self._files.get(unquote(parts[2]))
            if state is not None and state.spec.path is None:
                return await self._serve(request, state)
        elif len(parts) == 4 and parts[1] == "r" and parts[2].isdigit():
            state = self._files.get(unquote(parts[3]))
            if state is not None:
                return self._redirect(state, int(parts[2]))
        elif len(parts) == 3 and parts[1] == "status" and parts[2].isdigit():
            return web.Response(status=int(parts[2]), text=f"status {parts[2]}\n")
        return web.Response(status=404, text="no such file\n")

    def _redirect(self, state: FileState, hops_left: int) -> web.StreamResponse:
        state.stats.redirects += 1
        name = state.spec.name
        target = (
            self.final_url(name)
            if hops_left <= 1
            else f"{self.base_url}/r/{hops_left - 1}/{quote(name, safe='')}"
        )
        return web.Response(status=state.spec.redirect_status, headers={"Location": target})

    async def _serve(self, request: web.Request, state: FileState) -> web.StreamResponse:
        spec = state.spec
        stats = state.stats
        rec = RequestRecord(
            method=request.method,
            path=request.rel_url.raw_path_qs,
            range=request.headers.get("Range"),
            if_range=request.headers.get("If-Range"),
            headers=dict(request.headers),
        )
        stats.records.append(rec)
        try:
            return await self._answer(request, state, spec, rec)
        finally:
            if rec.outcome == "pending":
                # Cancelled (client gone, or server stopping) before the body finished.
                rec.outcome = "disconnected"
            rec.ended = time.monotonic()

    def _short(
        self, rec: RequestRecord, status: int, outcome: Outcome, text: str, **headers: str
    ) -> web.Response:
        rec.status, rec.outcome = status, outcome
        return web.Response(status=status, text=text, headers=headers)

    async def _answer(
        self, request: web.Request, state: FileState, spec: FileSpec, rec: RequestRecord
    ) -> web.StreamResponse:
        stats = state.stats
        if request.method not in ("GET", "HEAD"):
            return self._short(rec, 405, "status", "method not allowed\n", Allow="GET, HEAD")
        if spec.status is not None:
            return self._short(rec, spec.status, "status", f"status {spec.status}\n")
        if spec.auth is not None and not self._authorized(request, spec.auth):
            return self._short(
                rec, 401, "unauthorized", "unauthorized\n", **{"WWW-Authenticate": 'Basic realm="fetchtop"'}
            )
        if spec.fail_status is not None and fire(stats, "failures", spec.fail_times):
            extra = {"Retry-After": spec.retry_after} if spec.retry_after is not None else {}
            return self._short(rec, spec.fail_status, "failed", "injected failure\n", **extra)
        if spec.max_connections is not None and stats.active >= spec.max_connections:
            stats.rejections += 1
            extra = {"Retry-After": spec.over_limit_retry_after} if spec.over_limit_retry_after else {}
            return self._short(rec, spec.over_limit_status, "rejected", "too many connections\n", **extra)

        stats.active += 1
        stats.peak_concurrent = max(stats.peak_concurrent, stats.active)
        self.active += 1
        self.peak_concurrent = max(self.peak_concurrent, self.active)
        try:
            if spec.delay > 0:
                await asyncio.sleep(spec.delay)
            return await self._send_file(request, state, spec, rec)
        finally:
            stats.active -= 1
            self.active -= 1

    @staticmethod
    def _authorized(request: web.Request, auth: tuple[str, str]) -> bool:
        scheme, _, token = request.headers.get("Authorization", "").partition(" ")
        if scheme.lower() != "basic":
            return False
        try:
            decoded = base64.b64decode(token.strip(), validate=True).decode("utf-8")
        except (binascii.Error, UnicodeDecodeError):
            return False
        user, _, password = decoded.partition(":")
        return (user, password) == auth

    def _headers(self, spec: FileSpec) -> dict[str, str]:
        self._response_no += 1
        headers: dict[str, str] = {"Content-Type": spec.content_type}
        advertise = spec.ranges if spec.advertise_ranges is None else spec.advertise_ranges
        if advertise:
            headers["Accept-Ranges"] = "bytes"
        if spec.etag:
            etag = etag_for(spec.name, spec.size, spec.version)
            headers["ETag"] = etag[:-1] + f'-{self._response_no}"' if spec.unstable_etag else etag
        if spec.last_modified:
            headers["Last-Modified"] = last_modified_for(spec.version)
        if spec.content_disposition is not None:
            headers["Content-Disposition"] = spec.content_disposition
        headers.update(spec.extra_headers)
        return headers

    async def _send_file(
        self, request: web.Request, state: FileState, spec: FileSpec, rec: RequestRecord
    ) -> web.StreamResponse:
        size = spec.size
        headers = self._headers(spec)
        start, end, status = 0, size, 200
        if spec.ranges and rec.range is not None:
            wanted = parse_range(rec.range, size)
            if wanted is not None and rec.if_range is not None:
                if not if_range_matches(rec.if_range, headers.get("ETag"), headers.get("Last-Modified")):
                    wanted = None  # the validator is stale: the whole (new) file instead
            if wanted == "unsatisfiable":
                headers["Content-Range"] = f"bytes */{size}"
                rec.status, rec.outcome = 416, "status"
                return web.Response(status=416, headers=headers)
            if wanted is not None:
                start, end = wanted
                status = 206
                headers["Content-Range"] = f"bytes {start}-{end - 1}/{size}"

        resp = web.StreamResponse(status=status, headers=headers)
        if spec.chunked:
            resp.enable_chunked_encoding()
        else:
            resp.content_length = end - start
        rec.status = status
        await resp.prepare(request)
        if request.method == "HEAD":
            rec.outcome = "complete"
            return resp
        await self._send_body(request, state, spec, rec, resp, start, end)
        return resp

    async def _send_body(
        self,
        request: web.Request,
        state: FileState,
        spec: FileSpec,
        rec: RequestRecord,
        resp: web.StreamResponse,
        start: int,
        end: int,
    ) -> None:
        """Write ``[start, end)`` in chunks, paced and with the spec's mid-body faults."""
        stats = state.stats
        loop = asyncio.get_running_loop()
        transport = request.transport
        sent = 0
        # Budgeted faults this response may still hit, as (bytes sent before it fires, kind).
        pending: list[tuple[int, str]] = []
        if spec.stall_after is not None and spec.stall_for > 0:
            pending.append((spec.stall_after, "stall"))
        if spec.reset_after is not None:
            pending.append((spec.reset_after, "reset"))
        if spec.truncate_after is not None:
            pending.append((spec.truncate_after, "truncate"))
        pending.sort(key=lambda p: p[0])
        slow = spec.slow_rate is not None and fire(stats, "slowed", spec.slow_times)
        pace_start, paced, pace_rate = loop.time(), 0, spec.slow_rate if slow else spec.rate

        while start + sent < end:
            while pending and pending[0][0] <= sent:
                _, kind = pending.pop(0)
                if kind == "stall":
                    if fire(stats, "stalls", spec.stall_times):
                        await asyncio.sleep(spec.stall_for)
                        pace_start, paced = loop.time(), 0  # no burst to catch up after a stall
                elif kind == "reset":
                    if fire(stats, "resets", spec.reset_times):
                        await self._flush(transport)
                        rec.outcome = "reset"
                        if transport is not None:
                            _reset_transport(transport)
                        return
                elif fire(stats, "truncations", spec.truncate_times):
                    rec.outcome = "truncated"
                    if transport is not None:
                        transport.close()  # flushes what was written, then FIN
                    return

            # Read live: a test may slow a file down (or speed it up) mid-response.
            rate = state.spec.slow_rate if slow else state.spec.rate
            if rate != pace_rate:
                pace_start, paced, pace_rate = loop.time(), 0, rate  # a new rate paces from now on
            chunk = spec.chunk_size if rate is None else max(4 * KiB, min(spec.chunk_size, rate // 16))
            chunk = max(1, min(chunk, PATTERN_PERIOD))  # one zero-copy view per write
            n = min(chunk, end - start - sent)
            if pending:
                n = min(n, pending[0][0] - sent)
            if rate is not None:
                # Sleep before the write, not after: the last chunk is not followed by dead time.
                delay = pace_start + paced / rate - loop.time()
                if delay > 0:
                    await asyncio.sleep(delay)
                paced += n
            if transport is None or transport.is_closing():
                rec.outcome = "disconnected"
                return
            # resp.write hands the data to the transport synchronously before its first await (the
            # drain), so once the check above passed the bytes count as sent whatever happens next.
            view = content_view(spec.name, start + sent, n, spec.version)
            try:
                await resp.write(view)
            except ConnectionError:
                rec.outcome = "disconnected"
                return
            finally:
                sent += n
                rec.bytes_sent += n
                stats.bytes_sent += n
                self.bytes_sent += n
        rec.outcome = "complete"

    @staticmethod
    async def _flush(transport: asyncio.BaseTransport | None) -> None:
        """Wait (at most a second) until the transport's buffer is empty, so a reset lands after the
        bytes already written instead of discarding them."""
        if not isinstance(transport, asyncio.WriteTransport):
            return
        for _ in range(200):
            if transport.get_write_buffer_size() == 0:
                return
            await asyncio.sleep(0.005)
