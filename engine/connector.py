"""The engine's HTTP connector: every response body ends at its Content-Length, whatever follows it.

aiohttp hands a connection's bytes to its parser as they arrive. When a server sends more body than
its ``Content-Length`` declares, the parser reads the surplus as the start of the next response: in
the same read it fails the current request ("Bad status line") and loses a response that was
complete; in a later read it can leave the surplus queued for the next request on that kept-alive
connection. Like curl and wget, fetchtop keeps the declared length instead: the bytes past it are
dropped, counted, and the connection is closed, never reused.

The connector's protocol feeds the parser a response's header block on its own (so a complete
response is delivered before anything after it is looked at) and then at most the declared number
of body bytes. Chunked bodies, bodies that end at the close, 1xx interim responses and upgrades
go through unchanged.

Surplus often arrives in a later read than the body's last bytes, after the response has been read
and released; so it is reported to a watcher (:meth:`BoundedConnector.watch`) for as long as the
connection is neither closed nor reused.
"""

from __future__ import annotations

import asyncio
import functools
import re
from collections.abc import Callable
from typing import Any, cast

import aiohttp
from aiohttp.client_proto import ResponseHandler
from aiohttp.http import RawResponseMessage
from aiohttp.streams import EMPTY_PAYLOAD, StreamReader

_END_OF_HEADERS = re.compile(rb"\r?\n\r?\n")
"""The blank line that ends a header block (bare LF too: the parser is lenient about CR)."""
_KEPT = 64
"""Most responses whose surplus, seen before anyone watched them, is remembered."""

_HEAD, _BODY, _RAW, _DONE = range(4)
"""States of a connection: reading a header block, a body of known length, anything the parser
frames by itself, or past the end of the final response (every further byte is surplus)."""


class _BoundedHandler(ResponseHandler):
    """aiohttp's protocol for one connection, cutting each body at its declared length."""

    def __init__(self, loop: asyncio.AbstractEventLoop, connector: BoundedConnector) -> None:
        super().__init__(loop)
        self._connector = connector
        self._state = _HEAD
        self._left = 0
        self._recent = b""
        self._body: StreamReader | None = None
        self.watcher: Callable[[int], None] | None = None
        """Told the size of each run of surplus bytes after the current body."""

    def set_response_params(self, **kwargs: Any) -> None:
        # Called for every request before it is sent: a new response is expected.
        self._forget()
        self._state, self._left, self._recent = _HEAD, 0, b""
        super().set_response_params(**kwargs)

    def connection_lost(self, exc: BaseException | None) -> None:
        self._forget()
        super().connection_lost(exc)

    def feed_data(self, data: tuple[RawResponseMessage, StreamReader], size: int = 0) -> None:
        # The parser delivers a message here as soon as its header block is complete.
        message, payload = data
        length = message.headers.get("Content-Length", "")
        if 100 <= message.code < 200 and message.code != 101:
            self._state = _HEAD  # an interim response: the real one follows
        elif payload is EMPTY_PAYLOAD:
            self._state = _DONE
        elif message.chunked or message.upgrade or not (length.isascii() and length.isdigit()):
            self._state = _RAW
        else:
            self._left = int(length)
            self._body = payload
            self._connector._current[payload] = self
            self._state = _BODY if self._left else _DONE
        super().feed_data(data, size)

    def data_received(self, data: bytes) -> None:
        if self._parser is None or self._upgraded or self._payload_parser is not None:
            super().data_received(data)  # no HTTP parser at work (yet): aiohttp keeps the bytes
            return
        while data:
            if self._state == _RAW:
                super().data_received(data)
                return
            if self._state == _DONE:
                self._drop(len(data))
                return
            if self._state == _BODY:
                if len(data) > self._left:
                    # Marked before the last body bytes go in: their end of body releases
                    # the connection at once, and it must not go back to the pool.
                    self.force_close()
                    piece, rest = data[: self._left], data[self._left :]
                else:
                    piece, rest = data, b""
                self._left -= len(piece)
                if not self._left:
                    self._state = _DONE
            else:
                piece, rest = self._header_piece(data)
            super().data_received(piece)
            data = rest
            if self.exception() is not None or self.transport is None or self.transport.is_closing():
                return  # the parser failed (aiohttp closed the connection): the rest is moot

    def _header_piece(self, data: bytes) -> tuple[bytes, bytes]:
        """``data`` split after the end of the header block being read, if it ends in ``data``."""
        seen = self._recent + data
        for match in _END_OF_HEADERS.finditer(seen):
            if match.end() > len(self._recent):
                cut = match.end() - len(self._recent)
                self._recent = b""
                return data[:cut], data[cut:]
        self._recent = seen[-3:]
        return data, b""

    def _drop(self, nbytes: int) -> None:
        """Discard bytes past the end of the response, report them and close the connection."""
        self.force_close()
        body = self._body
        if self.watcher is not None:
            self.watcher(nbytes)
        elif body is not None:
            self._connector._unwatched(body, nbytes)
        if (body is None or body.is_eof()) and self.transport is not None:
            # Idle in the pool, or its body complete: nothing more can come of this connection.
            # (A body the parser still holds back must reach its reader first.)
            self.transport.close()

    def _forget(self) -> None:
        """The current body is over: its connection is closed or carries another request."""
        if self._body is not None:
            self._connector._current.pop(self._body, None)
        self._body = None
        self.watcher = None


class BoundedConnector(aiohttp.TCPConnector):
    """A TCPConnector whose connections keep each response body to its declared Content-Length.

    Bytes past it are dropped, the connection is closed, and :meth:`watch` tells who asks.
    """

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._current: dict[StreamReader, _BoundedHandler] = {}
        self._early: dict[StreamReader, int] = {}
        factory: Callable[[], ResponseHandler] = functools.partial(_BoundedHandler, self._loop, self)
        # aiohttp offers no public hook for the protocol class; every connection is made by this.
        self._factory = cast("functools.partial[ResponseHandler]", factory)

    def watch(self, resp: aiohttp.ClientResponse, on_surplus: Callable[[int], None]) -> None:
        """Call ``on_surplus(nbytes)`` for bytes the server sends past ``resp``'s Content-Length.

        Those that came before this call are reported at once; later ones as they arrive, until the
        connection is closed or carries another request.
        """
        payload = resp.content
        early = self._early.pop(payload, 0)
        if early:
            on_surplus(early)
        handler = self._current.get(payload)
        if handler is not None:
            handler.watcher = on_surplus

    def _unwatched(self, payload: StreamReader, nbytes: int) -> None:
        """Keep a count of surplus nobody watches yet (it came in the same read as the headers)."""
        self._early[payload] = self._early.pop(payload, 0) + nbytes
        while len(self._early) > _KEPT:
            del self._early[next(iter(self._early))]
