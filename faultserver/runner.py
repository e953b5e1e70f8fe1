"""Running a :class:`FaultServer` outside a test's own event loop: on a background thread for blocking
code, or serving a set of files until cancelled (``python -m faultserver``, ``fetchtop demo --serve-only``).
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import threading
from collections.abc import Sequence

from faultserver.server import FaultServer
from faultserver.specs import FileSpec


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


def announce(srv: FaultServer, specs: Sequence[FileSpec]) -> None:
    """Print where the server listens and one ``URL  description`` line per file."""
    print(f"fault server on {srv.base_url} (Ctrl-C stops)", flush=True)
    for spec in specs:
        print(f"  {srv.url(spec.name)}  {spec.description}", flush=True)


async def serve(host: str, port: int, specs: Sequence[FileSpec]) -> None:
    """Serve ``specs`` on ``host:port``, announced on stdout, until cancelled."""
    async with FaultServer(host, port) as srv:
        srv.add_files(specs)
        announce(srv, specs)
        await asyncio.Event().wait()


def serve_until_stopped(host: str, port: int, specs: Sequence[FileSpec]) -> int:
    """Run :func:`serve` in the foreground until Ctrl-C or SIGTERM; returns the exit status, 0."""

    async def run() -> None:
        task = asyncio.create_task(serve(host, port, specs))
        loop = asyncio.get_running_loop()
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(signal.SIGTERM, task.cancel)
        with contextlib.suppress(asyncio.CancelledError):
            await task

    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(run())
    return 0
