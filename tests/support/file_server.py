"""A tiny file server for the metrics tests: ranges, a throttle shared by all connections to a file,
injected 503s, delays. (The fault server throttles each connection; these tests need one rate per file.)
"""

from __future__ import annotations

import asyncio
import re
import time
from dataclasses import dataclass, field
from urllib.parse import quote

from aiohttp import web

from tests.support.net import listen


@dataclass
class Served:
    """One file the test server offers."""

    body: bytes
    rate: int | None = None
    """Bytes per second over all connections to this file; None for unthrottled."""
    fail_first: int = 0
    """Answer this many requests with 503 before serving."""
    disposition: str | None = None
    """Content-Disposition header, if any."""
    status: int = 200
    """Any other status makes every request answer it with no file."""
    delay: float = 0.0
    """Seconds each request waits before it is answered."""
    sent: int = 0
    """Body bytes written so far, over all requests."""
    requests: int = 0
    """Requests received."""
    _next_at: float = 0.0
    _lock: asyncio.Lock = field(default_factory=asyncio.Lock)


class FileServer:
    """Serves :class:`Served` files at ``/NAME`` on 127.0.0.1, port chosen by the OS."""

    CHUNK = 8 * 1024

    def __init__(self) -> None:
        self.files: dict[str, Served] = {}
        self._runner: web.AppRunner | None = None
        self.port = 0

    async def start(self) -> FileServer:
        """Start listening; returns self."""
        app = web.Application()
        app.router.add_get("/{name}", self._handle)
        self._runner, self.port = await listen(app)
        return self

    async def stop(self) -> None:
        """Stop listening."""
        if self._runner is not None:
            await self._runner.cleanup()

    def add(self, name: str, served: Served) -> str:
        """Offer a file at ``/NAME``; returns its URL."""
        self.files[name] = served
        return self.url(name)

    def url(self, name: str) -> str:
        """The URL of a file offered under ``name``."""
        return f"http://127.0.0.1:{self.port}/{quote(name)}"

    async def _pace(self, served: Served, nbytes: int) -> None:
        if served.rate is None:
            return
        async with served._lock:
            now = time.monotonic()
            start = max(now, served._next_at)
            served._next_at = start + nbytes / served.rate
            await asyncio.sleep(start - now)

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        served = self.files.get(request.match_info["name"])
        if served is None:
            return web.Response(status=404, text="no such file")
        served.requests += 1
        if served.delay:
            await asyncio.sleep(served.delay)
        if served.status != 200:
            return web.Response(status=served.status, text="nope")
        if served.fail_first > 0:
            served.fail_first -= 1
            return web.Response(status=503, text="busy", headers={"Retry-After": "0"})
        size = len(served.body)
        start, end = 0, size
        status = 200
        headers = {"Accept-Ranges": "bytes", "ETag": '"v1"', "Content-Type": "application/octet-stream"}
        if served.disposition:
            headers["Content-Disposition"] = served.disposition
        m = re.fullmatch(r"bytes=(\d+)-(\d*)", request.headers.get("Range", ""))
        if m:
            start = int(m.group(1))
            end = min(size, int(m.group(2)) + 1) if m.group(2) else size
            if start >= size or start >= end:
                return web.Response(status=416, headers={"Content-Range": f"bytes */{size}"})
            status = 206
            headers["Content-Range"] = f"bytes {start}-{end - 1}/{size}"
        headers["Content-Length"] = str(end - start)
        response = web.StreamResponse(status=status, headers=headers)
        await response.prepare(request)
        if request.method == "HEAD":
            return response
        pos = start
        try:
            while pos < end:
                chunk = served.body[pos : min(end, pos + self.CHUNK)]
                await self._pace(served, len(chunk))
                await response.write(chunk)
                served.sent += len(chunk)
                pos += len(chunk)
            await response.write_eof()
        except ConnectionResetError:
            pass  # the client paused, cancelled or split the range: not an error here
        return response


def payload(size: int, seed: int = 1) -> bytes:
    """Deterministic, non-repeating-looking bytes."""
    return bytes((i * 131 + seed * 17 + (i >> 8)) & 0xFF for i in range(size))
