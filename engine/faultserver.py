"""A synthetic HTTP server with injectable faults, for tests, ``fetchtop demo`` and the benchmark.

Files are virtual: the bytes of a file are a pure function of its name, its ``version`` and the offset,
so any range of any size is produced instantly with no disk and no per-byte Python work, and a test can
compute the expected content (:func:`expected_bytes`, :func:`expected_sha256`) without downloading.

Each file is described by a :class:`FileSpec` (size plus faults: throttling, resets, stalls, 503s,
ignored ranges, chunked or truncated bodies, redirect chains, changing content, hostile
``Content-Disposition``, a cap on concurrent connections, ...). :class:`FaultServer` serves them on
127.0.0.1 and keeps per-file accounting (:class:`FileStats`) that stays right when clients disconnect.

URL layout (build URLs with :meth:`FaultServer.url`, never by hand):

- ``/f/<quoted name>``: the file itself (or ``FileSpec.path`` if the file has a custom path);
- ``/r/<n>/<quoted name>``: a redirect chain, ``n`` hops left before the file;
- ``/status/<code>``: answers ``code`` with a short body, always.

Run ``python -m engine.faultserver --port 8080`` to serve :func:`demo_files` by hand.
This module must not import any UI toolkit: the engine's headless path imports it.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import binascii
import contextlib
import dataclasses
import hashlib
import re
import signal
import socket
import struct
import threading
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from email.utils import formatdate, parsedate_to_datetime
from functools import lru_cache
from typing import Any, Literal
from urllib.parse import quote, unquote

from aiohttp import web

KiB = 1024
MiB = 1024 * KiB

# The content repeats with this period: a prime a little under 1 MiB, so no power-of-two segment
# boundary or block size lines up with it and bytes written at a wrong offset never look right.
PATTERN_PERIOD = 1_048_573

# Last-Modified of version 0 of every file; each version adds a day.
_BASE_MTIME = 1_700_000_000

DEFAULT_CHUNK = 256 * KiB

# aiohttp refuses to send these in a header value (header-injection guard), so specs are checked early.
_FORBIDDEN_HEADER_CHARS = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")

Outcome = Literal[
    "pending",  # still being answered
    "complete",  # the whole body (or the headers, for HEAD) went out
    "status",  # a fixed status without a file body: 404/410 specs, 416, 405, unknown names
    "unauthorized",  # 401: missing or wrong credentials
    "failed",  # an injected error status (FileSpec.fail_status)
    "rejected",  # over FileSpec.max_connections
    "reset",  # the server reset the connection mid-body
    "truncated",  # the server closed the connection before the declared end
    "disconnected",  # the client went away mid-body
]


# ---------------------------------------------------------------------------------------------------
# Deterministic content


@lru_cache(maxsize=16)
def _pattern(name: str, version: int) -> bytes:
    """Two periods of the content of ``(name, version)`` back to back, so any slice of up to one
    period is a zero-copy view of it."""
    seed = f"fetchtop-faultserver\0{name}\0{version}".encode()
    one = hashlib.shake_256(seed).digest(PATTERN_PERIOD)
    return one + one


def content_view(name: str, offset: int, length: int, version: int = 0) -> memoryview:
    """A zero-copy view of ``length`` (at most :data:`PATTERN_PERIOD`) content bytes at ``offset``."""
    if not 0 <= length <= PATTERN_PERIOD:
        raise ValueError(f"length must be within 0..{PATTERN_PERIOD}, got {length}")
    start = offset % PATTERN_PERIOD
    return memoryview(_pattern(name, version))[start : start + length]


def iter_content(
    name: str, start: int, end: int, version: int = 0, chunk: int = DEFAULT_CHUNK
) -> Iterable[memoryview]:
    """The content bytes ``[start, end)`` as successive zero-copy views of at most ``chunk`` bytes."""
    chunk = max(1, min(chunk, PATTERN_PERIOD))
    pos = start
    while pos < end:
        n = min(chunk, end - pos)
        yield content_view(name, pos, n, version)
        pos += n


def expected_bytes(name: str, size: int, version: int = 0, start: int = 0) -> bytes:
    """The exact bytes ``[start, size)`` the server sends for file ``name`` at ``version``."""
    if start >= size:
        return b""
    period = _pattern(name, version)[:PATTERN_PERIOD]
    first = start % PATTERN_PERIOD
    need = size - start
    reps = (first + need) // PATTERN_PERIOD + 1
    return (period * reps)[first : first + need]


def expected_sha256(name: str, size: int, version: int = 0) -> str:
    """Hex SHA-256 of the whole file ``name`` of ``size`` bytes at ``version``, computed in blocks."""
    h = hashlib.sha256()
    for view in iter_content(name, 0, size, version, chunk=PATTERN_PERIOD):
        h.update(view)
    return h.hexdigest()


def file_matches(path: str, name: str, size: int, version: int = 0) -> bool:
    """Whether the file at ``path`` holds exactly the content of ``name``/``size``/``version``."""
    with open(path, "rb") as f:
        pos = 0
        while True:
            block = f.read(PATTERN_PERIOD)
            if not block:
                return pos == size
            if pos + len(block) > size or block != content_view(name, pos, len(block), version):
                return False
            pos += len(block)


def etag_for(name: str, size: int, version: int = 0) -> str:
    """The (strong, quoted) ETag the server gives ``name`` at ``version``."""
    digest = hashlib.sha256(f"{name}\0{size}\0{version}".encode()).hexdigest()[:20]
    return f'"{digest}"'


def last_modified_for(version: int = 0) -> str:
    """The Last-Modified header value the server gives any file at ``version``."""
    return formatdate(_BASE_MTIME + 86_400 * version, usegmt=True)


# ---------------------------------------------------------------------------------------------------
# Specs and accounting


@dataclass(frozen=True)
class FileSpec:
    """A virtual file and the faults its server shows.

    Faults with a ``*_times`` budget fire at most that many times in total over all requests for this
    file (None: every time), so a client that retries eventually succeeds. A fault that needs
    ``*_after`` bytes fires only in responses whose body is longer than that.
    """

    name: str
    """Identifies the file; seeds its content; its URL is ``/f/<quoted name>`` unless ``path`` is set."""
    size: int = 0
    """Length of the file in bytes."""
    version: int = 0
    """Bump it (:meth:`FaultServer.set_version`) to change the content, ETag and Last-Modified."""
    path: str | None = None
    """A custom raw URL path (for example ``/`` or ``/dl/``) to serve the file at instead."""
    status: int | None = None
    """Answer every request with this status and a short text body (404, 410, 500, ...)."""
    ranges: bool = True
    """Honour ``Range``; False: always 200 with the full body."""
    advertise_ranges: bool | None = None
    """Send ``Accept-Ranges: bytes``; None follows ``ranges`` (True with ranges=False lies)."""
    chunked: bool = False
    """Send bodies chunked, without ``Content-Length`` (an unknown length)."""
    etag: bool = True
    """Send an ``ETag``."""
    last_modified: bool = True
    """Send a ``Last-Modified``."""
    unstable_etag: bool = False
    """A different ETag on every response (like some signed-URL stores): ``If-Range`` never matches."""
    content_disposition: str | None = None
    """The raw ``Content-Disposition`` header value (hostile ones welcome; no CR/LF)."""
    content_type: str = "application/octet-stream"
    """The ``Content-Type`` header value."""
    extra_headers: tuple[tuple[str, str], ...] = ()
    """More response headers, as (name, value) pairs."""
    auth: tuple[str, str] | None = None
    """Require HTTP basic auth with this (user, password); else 401."""
    rate: int | None = None
    """Throttle each response (so each connection) to this many bytes per second."""
    slow_rate: int | None = None
    """Throttle the first ``slow_times`` responses to this rate instead (one laggard connection)."""
    slow_times: int | None = 1
    """How many responses are slow (None: all)."""
    delay: float = 0.0
    """Seconds to wait before sending the response headers."""
    chunk_size: int = DEFAULT_CHUNK
    """Bytes per write (smaller when throttled, so pacing is smooth; at most :data:`PATTERN_PERIOD`)."""
    redirects: int = 0
    """Length of the redirect chain :meth:`FaultServer.url` starts at (0: the file itself)."""
    redirect_status: int = 302
    """Status of each redirect hop (301, 302, 303, 307, 308)."""
    fail_status: int | None = None
    """Answer the first ``fail_times`` requests with this status (503, 429, 500, ...) instead."""
    fail_times: int | None = 1
    """How many requests get ``fail_status`` (None: all)."""
    retry_after: str | None = None
    """``Retry-After`` value sent with ``fail_status`` (seconds or an HTTP date)."""
    max_connections: int | None = None
    """At most this many responses in flight for this file; extra requests get ``over_limit_status``."""
    over_limit_status: int = 503
    """Status for requests over ``max_connections``."""
    over_limit_retry_after: str | None = None
    """``Retry-After`` sent with ``over_limit_status``."""
    reset_after: int | None = None
    """Reset the connection (TCP RST) after sending this many body bytes of a response."""
    reset_times: int | None = 1
    """How many resets in total (None: every response)."""
    truncate_after: int | None = None
    """Close the connection cleanly after this many body bytes, short of the declared length."""
    truncate_times: int | None = 1
    """How many truncations in total (None: every response)."""
    stall_after: int | None = None
    """Stop sending for ``stall_for`` seconds after this many body bytes of a response."""
    stall_for: float = 0.0
    """Length of a stall in seconds."""
    stall_times: int | None = 1
    """How many stalls in total (None: every response)."""
    description: str = ""
    """What this file demonstrates (shown by the demo CLI)."""


@dataclass
class RequestRecord:
    """One request the server answered for a file."""

    method: str
    """HTTP method."""
    path: str
    """Raw request path with query string."""
    range: str | None
    """The ``Range`` header, as received."""
    if_range: str | None
    """The ``If-Range`` header, as received."""
    headers: dict[str, str]
    """All request headers (repeated names keep the last value)."""
    status: int = 0
    """Status sent (0 until decided)."""
    bytes_sent: int = 0
    """Body bytes handed to the connection's transport."""
    outcome: Outcome = "pending"
    """How the response ended."""
    started: float = field(default_factory=time.monotonic)
    """Monotonic time the request arrived."""
    ended: float | None = None
    """Monotonic time the response ended."""


@dataclass
class FileStats:
    """Accounting for one file: every request, every byte, every fault fired.

    The fault counters double as the budgets of the ``*_times`` faults: :meth:`FaultServer.reset_stats`
    re-arms them.
    """

    records: list[RequestRecord] = field(default_factory=list)
    """Every request for the file (not counting redirect hops), in arrival order."""
    bytes_sent: int = 0
    """Body bytes handed to transports over all responses (updated as they go)."""
    active: int = 0
    """Responses in flight now (accepted ones only: not rejected, failed or fixed-status)."""
    peak_concurrent: int = 0
    """The most responses ever in flight at once."""
    redirects: int = 0
    """Redirect hops served towards this file."""
    failures: int = 0
    """``fail_status`` answers sent."""
    rejections: int = 0
    """Requests over ``max_connections`` turned away."""
    resets: int = 0
    """Connections reset mid-body."""
    truncations: int = 0
    """Bodies cut short."""
    stalls: int = 0
    """Stalls started."""
    slowed: int = 0
    """Responses paced at ``slow_rate``."""

    @property
    def requests(self) -> int:
        """Number of requests for the file."""
        return len(self.records)

    @property
    def range_headers(self) -> list[str | None]:
        """The ``Range`` header of every request (None where absent), in order."""
        return [r.range for r in self.records]

    @property
    def statuses(self) -> list[int]:
        """The status of every request, in order."""
        return [r.status for r in self.records]

    @property
    def completed(self) -> int:
        """Responses whose body went out whole."""
        return sum(1 for r in self.records if r.outcome == "complete")


@dataclass
class _FileState:
    """A registered file: its spec (replaceable at run time) and its stats."""

    spec: FileSpec
    stats: FileStats = field(default_factory=FileStats)


def _fire(stats: FileStats, counter: str, times: int | None) -> bool:
    """Consume one use of a budgeted fault; False once the budget is spent."""
    used: int = getattr(stats, counter)
    if times is not None and used >= times:
        return False
    setattr(stats, counter, used + 1)
    return True


def _parse_range(header: str, size: int) -> tuple[int, int] | Literal["unsatisfiable"] | None:
    """``(start, end)`` half-open for a single byte range, "unsatisfiable", or None to ignore it.

    Multiple ranges and malformed headers are ignored (answered with the full body), as RFC 9110 allows.
    """
    unit, sep, spec = header.partition("=")
    if not sep or unit.strip().lower() != "bytes" or "," in spec:
        return None
    first, dash, last = spec.strip().partition("-")
    first, last = first.strip(), last.strip()
    if not dash or not (first.isdigit() or first == "") or not (last.isdigit() or last == ""):
        return None
    if first == "":
        if last == "":
            return None
        suffix = int(last)
        if suffix == 0 or size == 0:
            return "unsatisfiable"
        return max(0, size - suffix), size
    start = int(first)
    if last != "" and int(last) < start:
        return None
    if start >= size:
        return "unsatisfiable"
    end = size if last == "" else min(size, int(last) + 1)
    return start, end


def _if_range_matches(value: str, etag: str | None, last_modified: str | None) -> bool:
    """Whether an ``If-Range`` validator still matches: strong ETag equality, or the exact date."""
    value = value.strip()
    if value.startswith('"') or value.startswith("W/"):
        return etag is not None and not value.startswith("W/") and value == etag
    if last_modified is None:
        return False
    try:
        return parsedate_to_datetime(value) == parsedate_to_datetime(last_modified)
    except (TypeError, ValueError, IndexError):
        return False


def _check_headers(spec: FileSpec) -> None:
    """Refuse header values that could not be sent, at registration rather than as a 500 later."""
    values = [v for _, v in spec.extra_headers]
    if spec.content_disposition is not None:
        values.append(spec.content_disposition)
    for value in values:
        if _FORBIDDEN_HEADER_CHARS.search(value):
            raise ValueError(f"header value {value!r} has control characters aiohttp will not send")


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


# ---------------------------------------------------------------------------------------------------
# The server


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
        self._files: dict[str, _FileState] = {}
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
        _check_headers(spec)
        old = self._files.get(spec.name)
        if old is not None and old.spec.path is not None:
            self._paths.pop(old.spec.path, None)
        self._files[spec.name] = _FileState(spec)
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
        _check_headers(new)
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

    def _redirect(self, state: _FileState, hops_left: int) -> web.StreamResponse:
        state.stats.redirects += 1
        name = state.spec.name
        target = (
            self.final_url(name)
            if hops_left <= 1
            else f"{self.base_url}/r/{hops_left - 1}/{quote(name, safe='')}"
        )
        return web.Response(status=state.spec.redirect_status, headers={"Location": target})

    async def _serve(self, request: web.Request, state: _FileState) -> web.StreamResponse:
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
        self, request: web.Request, state: _FileState, spec: FileSpec, rec: RequestRecord
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
        if spec.fail_status is not None and _fire(stats, "failures", spec.fail_times):
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
        self, request: web.Request, state: _FileState, spec: FileSpec, rec: RequestRecord
    ) -> web.StreamResponse:
        size = spec.size
        headers = self._headers(spec)
        start, end, status = 0, size, 200
        if spec.ranges and rec.range is not None:
            wanted = _parse_range(rec.range, size)
            if wanted is not None and rec.if_range is not None:
                if not _if_range_matches(rec.if_range, headers.get("ETag"), headers.get("Last-Modified")):
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
        state: _FileState,
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
        slow = spec.slow_rate is not None and _fire(stats, "slowed", spec.slow_times)
        pace_start, paced, pace_rate = loop.time(), 0, spec.slow_rate if slow else spec.rate

        while start + sent < end:
            while pending and pending[0][0] <= sent:
                _, kind = pending.pop(0)
                if kind == "stall":
                    if _fire(stats, "stalls", spec.stall_times):
                        await asyncio.sleep(spec.stall_for)
                        pace_start, paced = loop.time(), 0  # no burst to catch up after a stall
                elif kind == "reset":
                    if _fire(stats, "resets", spec.reset_times):
                        await self._flush(transport)
                        rec.outcome = "reset"
                        if transport is not None:
                            _reset_transport(transport)
                        return
                elif _fire(stats, "truncations", spec.truncate_times):
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


# ---------------------------------------------------------------------------------------------------
# Helpers for sync code and tests


class ThreadedFaultServer:
    """A :class:`FaultServer` running on its own event loop in a background thread.

    For tests whose main thread blocks (``subprocess.run`` of ``fetchtop get``). Configure files before
    clients start; reading stats from the main thread is fine (plain ints and lists).
    """

    def __init__(self, host: str = "127.0.0.1", port: int = 0) -> None:
        self.server = FaultServer(host, port)
        """The server; call its methods from any thread for configuration and stats."""
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="faultserver", daemon=True)

    def __enter__(self) -> FaultServer:
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self.server.start(), self._loop).result(timeout=10)
        return self.server

    def __exit__(self, *exc: object) -> None:
        try:
            asyncio.run_coroutine_threadsafe(self.server.stop(), self._loop).result(timeout=10)
        finally:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(timeout=10)
            self._loop.close()


async def wait_until(predicate: Callable[[], bool], limit: float = 10.0, interval: float = 0.01) -> None:
    """Poll ``predicate`` (a plain function of server or engine state) until true; TimeoutError after
    ``limit`` seconds."""
    async with asyncio.timeout(limit):
        while not predicate():  # noqa: ASYNC110 -- the condition is plain state, nothing to wait on
            await asyncio.sleep(interval)


# ---------------------------------------------------------------------------------------------------
# The demo set and the CLI


def demo_files() -> list[FileSpec]:
    """The files ``fetchtop demo`` downloads: several sizes, throttled per connection so segments and
    charts are worth watching, one without Range support, one 404, one that drops connections, one
    that is busy at first."""
    return [
        FileSpec("small-8MiB.bin", 8 * MiB, rate=384 * KiB, description="small, throttled"),
        FileSpec("medium-64MiB.bin", 64 * MiB, rate=512 * KiB, description="medium, throttled"),
        FileSpec("large-256MiB.iso", 256 * MiB, rate=768 * KiB, description="large, throttled"),
        FileSpec(
            "no-ranges-24MiB.tar",
            24 * MiB,
            ranges=False,
            rate=1 * MiB,
            description="server ignores Range: one connection",
        ),
        FileSpec(
            "flaky-48MiB.zip",
            48 * MiB,
            rate=512 * KiB,
            reset_after=3 * MiB,
            reset_times=6,
            description="drops connections (6 resets), then recovers",
        ),
        FileSpec(
            "busy-32MiB.img",
            32 * MiB,
            rate=512 * KiB,
            fail_status=503,
            fail_times=2,
            retry_after="2",
            max_connections=4,
            description="503 with Retry-After twice, then at most 4 connections",
        ),
        FileSpec("missing.bin", status=404, description="answers 404"),
    ]


async def serve_demo(host: str, port: int, ready: Callable[[FaultServer], Awaitable[None] | None]) -> None:
    """Serve :func:`demo_files` until cancelled; ``ready`` is called once listening."""
    async with FaultServer(host, port) as srv:
        srv.add_files(demo_files())
        maybe = ready(srv)
        if maybe is not None:
            await maybe
        await asyncio.Event().wait()


def main(argv: list[str] | None = None) -> int:
    """``python -m engine.faultserver``: serve the demo files until Ctrl-C."""
    parser = argparse.ArgumentParser(prog="python -m engine.faultserver", description=main.__doc__)
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=8080, help="port (default 8080; 0 picks one)")
    args = parser.parse_args(argv)

    def show(srv: FaultServer) -> None:
        print(f"fault server on {srv.base_url} (Ctrl-C stops)", flush=True)
        for spec in demo_files():
            print(f"  {srv.url(spec.name)}  {spec.description}", flush=True)

    async def run() -> None:
        task = asyncio.create_task(serve_demo(args.host, args.port, show))
        loop = asyncio.get_running_loop()
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(signal.SIGTERM, task.cancel)
        with contextlib.suppress(asyncio.CancelledError):
            await task

    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(run())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
