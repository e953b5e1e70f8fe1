"""A minimal aiohttp server whose one handler the test writes, for misbehaviour FaultServer does not offer."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from aiohttp import web

from tests.support.net import listen

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class RogueServer:
    """A minimal aiohttp server whose single handler the test writes, for misbehaviour FaultServer
    does not offer (such as a 206 whose Content-Range is not the one asked for).

    ``requests`` records the Range header of every request, in order.
    """

    def __init__(self, handler: Handler) -> None:
        self._handler = handler
        self._runner: web.AppRunner | None = None
        self.port = 0
        """Port listened on once started."""
        self.requests: list[str | None] = []
        """The Range header of every request received (None where absent)."""

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        self.requests.append(request.headers.get("Range"))
        return await self._handler(request)

    async def __aenter__(self) -> RogueServer:
        app = web.Application()
        app.router.add_route("GET", "/{tail:.*}", self._handle)
        self._runner, self.port = await listen(app)
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    def url(self, path: str) -> str:
        """``http://127.0.0.1:port`` plus ``path``."""
        return f"http://127.0.0.1:{self.port}{path}"
