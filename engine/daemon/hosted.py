"""The daemon's server run inside another program, on that program's event loop: how the dashboard
owns a state directory.

:func:`open_engine` makes one engine per state directory: it takes the state directory's lock and
serves the daemon's control socket in-process (a :class:`HostedDaemon`), or, while another engine
(a ``fetchtop daemon`` or another dashboard) holds the lock, connects to that one instead. Either
way the caller gets an :class:`engine.client.EngineClient`.

:meth:`HostedDaemon.close` can hand the queue over to a detached ``fetchtop daemon``: save the
session and the control files, release the lock, start the daemon with the same state directory
and settings, and wait until it listens. It resumes the downloads from their control files.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import subprocess

from engine.client import DaemonUnavailable, EngineError
from engine.daemon.client import RemoteClient
from engine.daemon.config import DaemonConfig, DaemonError
from engine.daemon.process import READY_TIMEOUT, try_lock_state_dir, write_pid
from engine.daemon.server import Daemon

log = logging.getLogger("fetchtop.daemon")

ATTACH_TIMEOUT = 30.0
"""Seconds to wait for the engine holding the lock to answer on its socket (it may be starting)."""
HANDOVER_TIMEOUT = READY_TIMEOUT + 15.0
"""Seconds the hand-over waits for the detached daemon to say it listens."""


class HostedDaemon:
    """A :class:`Daemon` (engine, control socket, history, metrics) owned by this process.

    Make it with :func:`open_engine`, which holds the state directory's lock for it.
    """

    def __init__(self, config: DaemonConfig, lock_fd: int) -> None:
        self.config = config
        """What the engine was started with."""
        self.daemon = Daemon(config)
        """The server and its engine."""
        self._lock_fd: int | None = lock_fd

    async def start(self) -> None:
        """Start the engine and listen; on failure everything is closed and the lock released."""
        try:
            await self.daemon.start()
            write_pid(self.config.locations)
        except BaseException:
            await self.close()
            raise

    async def stopped(self) -> None:
        """Return once a client asked the engine to stop (``fetchtop stop``)."""
        await self.daemon.serve()

    async def close(self) -> None:
        """Save everything, stop listening and release the state directory."""
        try:
            await self.daemon.close()
        finally:
            self._release()

    def _release(self) -> None:
        if self._lock_fd is None:
            return
        with contextlib.suppress(OSError):
            os.unlink(self.config.locations.pid)
        os.close(self._lock_fd)
        self._lock_fd = None

    async def hand_over(self, daemon_argv: list[str]) -> str:
        """Close, then start ``daemon_argv`` (a ``fetchtop daemon --detach`` on the same state
        directory) and wait until it listens; returns its one-line report. Raises EngineError.

        The queue is saved before the lock is released, so the daemon starts from everything this
        engine knew; the downloads pick up from their control files.
        """
        await self.close()
        try:
            proc = await asyncio.create_subprocess_exec(
                *daemon_argv,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                # Its own session from the first instant: a hang-up of this terminal must not reach it.
                start_new_session=True,
            )
        except OSError as exc:
            raise EngineError(f"cannot start the daemon: {exc.strerror or exc}") from None
        try:
            out, err = await asyncio.wait_for(proc.communicate(), HANDOVER_TIMEOUT)
        except TimeoutError:
            proc.kill()
            raise EngineError(f"the daemon did not start within {HANDOVER_TIMEOUT:.0f}s") from None
        text = (err or out).decode(errors="replace").strip().splitlines()
        line = text[-1] if text else f"exit status {proc.returncode}"
        if proc.returncode != 0:
            raise EngineError(line.removeprefix("fetchtop: "))
        return line.removeprefix("fetchtop: ")


async def open_engine(config: DaemonConfig) -> HostedDaemon | RemoteClient:
    """The engine of ``config``'s state directory: a started :class:`HostedDaemon` when this process
    could take the lock, else a client of the engine holding it. Raises EngineError.

    The engine holding the lock may still be starting (or exiting): until it answers, the lock is
    tried again, so two dashboards started at once end up with one engine between them.
    """
    try:
        config.check()
    except DaemonError as exc:
        raise EngineError(str(exc)) from None
    loop = asyncio.get_running_loop()
    deadline = loop.time() + ATTACH_TIMEOUT
    reason = "no answer"
    while loop.time() < deadline:
        try:
            lock_fd = try_lock_state_dir(config.locations)
        except DaemonError as exc:
            raise EngineError(str(exc)) from None
        if lock_fd is not None:
            hosted = HostedDaemon(config, lock_fd)
            try:
                await hosted.start()
            except (DaemonError, OSError) as exc:
                reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
                raise EngineError(reason) from None
            return hosted
        client = RemoteClient(socket_path=config.socket_path)
        try:
            await client.status()
        except DaemonUnavailable as exc:
            reason = str(exc)
            await client.close()
            await asyncio.sleep(0.1)
            continue
        except BaseException:
            await client.close()
            raise
        return client
    raise EngineError(f"another fetchtop holds {config.state_dir} but does not answer ({reason})")
