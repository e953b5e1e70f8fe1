"""RemoteClient: :class:`engine.client.EngineClient` over the daemon's API (:mod:`engine.daemon.api`).

Commands are JSON over HTTP on the daemon's Unix socket, or on TCP with a bearer token; events come
over a WebSocket. A daemon that refuses a request raises :class:`engine.client.EngineError`
(:class:`engine.client.Unauthorized` for a refused token); a daemon that cannot be reached raises
:class:`engine.client.DaemonUnavailable`. The event stream either ends with
DaemonUnavailable when the connection drops (the dashboard resubscribes and shows it) or, with
``subscribe(reconnect=True)``, retries with backoff itself and reports the gap as
:class:`ConnectionLost` / :class:`ConnectionRestored` events.

This module imports the API module, never the server: ``fetchtop ls`` loads no ``aiohttp.web``.
No UI toolkit here.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import json
import random
import time
from collections import deque
from dataclasses import dataclass
from types import TracebackType
from typing import Any

import aiohttp

from engine.client import DaemonUnavailable, EngineError, Unauthorized
from engine.daemon.api import (
    MAX_EVENT_MESSAGE,
    SET_URL_REPLY_TIMEOUT,
    STOP_REPLY_TIMEOUT,
    UNAUTHORIZED,
    Command,
    Read,
    Stopped,
    add_request,
    error_of,
    limit_request,
    path,
    read_event,
    read_kept,
    read_snapshot,
    read_stop,
    read_task_id,
    read_tasks,
    set_url_request,
    task_request,
)
from engine.events import Event
from engine.models import EngineSnapshot, TaskOptions, TaskSnapshot

_closing: set[asyncio.Task[None]] = set()
"""Socket closes started by the synchronous :meth:`RemoteSubscription.close`, kept until done."""

RECONNECT_DELAYS = (0.25, 0.5, 1.0, 2.0, 5.0)
"""Ceilings of the jittered waits between reconnection attempts (the last one repeats)."""


@dataclass(frozen=True)
class ConnectionLost(Event):
    """The event stream to the daemon broke; it is being retried. Made by the client, never the daemon."""

    reason: str
    """Why, one line."""


@dataclass(frozen=True)
class ConnectionRestored(Event):
    """The event stream to the daemon is back; a fresh ProgressUpdated follows."""


class RemoteClient:
    """Drives a daemon: ``RemoteClient(socket_path=...)`` or ``RemoteClient(url=..., token=...)``.

    Implements :class:`engine.client.EngineClient`. The HTTP session is opened on first use, inside
    the event loop that uses it.
    """

    def __init__(
        self,
        socket_path: str | None = None,
        *,
        url: str | None = None,
        token: str | None = None,
        timeout: float = 10.0,
    ) -> None:
        if (socket_path is None) == (url is None):
            raise ValueError("give exactly one of socket_path and url")
        self.socket_path = socket_path
        """The daemon's Unix socket, if that is the way to it."""
        self.base_url = (url or "http://fetchtop").rstrip("/")
        """``http://host:port`` of the daemon's TCP listener (a placeholder host on a socket)."""
        self.token = token
        """The bearer token sent with every request (TCP), if any."""
        self.timeout = timeout
        """Seconds any one request may take."""
        self.connected = False
        """Whether the last exchange with the daemon worked; a UI can show it."""
        self._headers = {"Authorization": f"Bearer {token}"} if token is not None else {}
        self._session: aiohttp.ClientSession | None = None
        self._subscriptions: set[RemoteSubscription] = set()

    @property
    def where(self) -> str:
        """The daemon's address, for messages."""
        return f"unix:{self.socket_path}" if self.socket_path is not None else self.base_url

    # -- session -----------------------------------------------------------------------------------

    def _client(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            connector: aiohttp.BaseConnector
            if self.socket_path is not None:
                connector = aiohttp.UnixConnector(path=self.socket_path)
            else:
                connector = aiohttp.TCPConnector()
            self._session = aiohttp.ClientSession(
                connector=connector,
                headers=self._headers,
                timeout=aiohttp.ClientTimeout(total=self.timeout),
                trust_env=False,  # the daemon is ours: never through a proxy
            )
        return self._session

    async def __aenter__(self) -> RemoteClient:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    async def close(self) -> None:
        """End every event stream and close the connection pool; downloads go on in the daemon."""
        for sub in list(self._subscriptions):
            await sub.aclose()
        if self._session is not None:
            await self._session.close()
            self._session = None

    def _unavailable(self, exc: BaseException) -> DaemonUnavailable:
        self.connected = False
        if isinstance(exc, TimeoutError):
            reason = f"no answer within {self.timeout:g}s"
        elif isinstance(exc, OSError) and exc.strerror:
            reason = exc.strerror
        else:
            reason = str(exc) or type(exc).__name__
        not_running = (
            self.socket_path is not None
            and isinstance(exc, OSError)
            and exc.errno in (errno.ENOENT, errno.ECONNREFUSED)
        )
        return DaemonUnavailable(f"cannot reach the daemon at {self.where}: {reason}", not_running)

    # -- requests ----------------------------------------------------------------------------------

    async def request(
        self,
        method: str,
        name: Read | Command,
        body: dict[str, Any] | None = None,
        time_limit: float | None = None,
    ) -> dict[str, Any]:
        """Send one API request (within ``time_limit`` seconds if given, else the client's timeout);
        returns the JSON answer. Raises EngineError or DaemonUnavailable."""
        session = self._client()
        limit = None if time_limit is None else aiohttp.ClientTimeout(total=time_limit)
        try:
            url = f"{self.base_url}{path(name)}"
            async with session.request(method, url, json=body, timeout=limit) as resp:
                raw = await resp.read()
                status = resp.status
        except (TimeoutError, aiohttp.ClientError, OSError) as exc:
            raise self._unavailable(exc) from None
        self.connected = True
        try:
            data = json.loads(raw)
        except ValueError:
            data = None
        if not isinstance(data, dict):
            raise EngineError(f"the daemon answered HTTP {status} without JSON")
        if status == UNAUTHORIZED:
            raise Unauthorized(f"the daemon refused the token: {data.get('error', 'unauthorized')}")
        if status >= 400:
            raise EngineError(error_of(data, status))
        return data

    async def _command(self, command: Command, body: dict[str, Any] | None = None) -> dict[str, Any]:
        return await self.request("POST", command, {} if body is None else body)

    async def status(self) -> dict[str, Any]:
        """The daemon's pid, start time, directories and task counts. Raises DaemonUnavailable."""
        return await self.request("GET", Read.STATUS)

    async def add(self, url: str, options: TaskOptions | None = None) -> int:
        """Queue a download; returns its task id. Raises EngineError, DaemonUnavailable."""
        return read_task_id(await self._command(Command.ADD, add_request(url, options)))

    async def pause(self, task_id: int) -> None:
        """Pause a task, keeping its progress. Raises EngineError, DaemonUnavailable."""
        await self._command(Command.PAUSE, task_request(task_id))

    async def resume(self, task_id: int) -> None:
        """Queue a paused, failed or cancelled task again. Raises EngineError, DaemonUnavailable."""
        await self._command(Command.RESUME, task_request(task_id))

    async def cancel(self, task_id: int) -> None:
        """Stop a task for good; its partial file stays. Raises EngineError, DaemonUnavailable."""
        await self._command(Command.CANCEL, task_request(task_id))

    async def remove(self, task_id: int, delete_files: bool = False) -> None:
        """Cancel and forget a task, optionally deleting its partial file.

        Raises EngineError, DaemonUnavailable.
        """
        await self._command(Command.REMOVE, task_request(task_id, delete_files=delete_files))

    async def pause_all(self) -> None:
        """Pause every queued or active task. Raises DaemonUnavailable."""
        await self._command(Command.PAUSE_ALL)

    async def resume_all(self) -> None:
        """Resume every paused task. Raises DaemonUnavailable."""
        await self._command(Command.RESUME_ALL)

    async def set_limit(self, limit: int | None, task_id: int | None = None) -> None:
        """Set the global limit, or one task's, in bytes per second (None: unlimited).

        Raises EngineError, DaemonUnavailable.
        """
        await self._command(Command.LIMIT, limit_request(limit, task_id))

    async def move(self, task_id: int, offset: int) -> None:
        """Move a task ``offset`` places in the queue. Raises EngineError, DaemonUnavailable."""
        await self._command(Command.MOVE, task_request(task_id, offset=offset))

    async def set_url(self, task_id: int, url: str, restart: bool = False) -> int:
        """Replace a stopped task's URL; the bytes kept. The daemon asks the new URL first, so this
        waits longer than other requests. Raises EngineError (refused, with why), DaemonUnavailable.
        """
        answer = await self.request(
            "POST",
            Command.SET_URL,
            set_url_request(task_id, url, restart),
            time_limit=self.timeout + SET_URL_REPLY_TIMEOUT,
        )
        return read_kept(answer)

    async def stop(self) -> Stopped:
        """Ask the daemon to save its session and exit; its pid and the save's outcome.

        The daemon answers once its engine has closed, so this waits longer than other requests.
        Raises DaemonUnavailable.
        """
        answer = await self.request("POST", Command.STOP, {}, time_limit=self.timeout + STOP_REPLY_TIMEOUT)
        return read_stop(answer)

    async def get_snapshot(self) -> EngineSnapshot:
        """The daemon's current state. Raises EngineError (unreadable answer), DaemonUnavailable."""
        return read_snapshot(await self.request("GET", Read.SNAPSHOT))

    async def history(self) -> list[TaskSnapshot]:
        """Finished tasks the daemon remembers, oldest first. Raises EngineError, DaemonUnavailable."""
        return read_tasks(await self.request("GET", Read.HISTORY))

    def subscribe(self, reconnect: bool = False) -> RemoteSubscription:
        """Events from now on (the first is a fresh ProgressUpdated).

        Without ``reconnect`` the iteration raises DaemonUnavailable when the connection cannot be made
        or drops; with it, it retries with jittered backoff for as long as it is iterated, yielding
        ConnectionLost once per outage and ConnectionRestored when back.
        """
        sub = RemoteSubscription(self, reconnect)
        self._subscriptions.add(sub)
        return sub


class RemoteSubscription:
    """The daemon's events, read from its WebSocket: an :class:`engine.client.EventStream`."""

    def __init__(self, client: RemoteClient, reconnect: bool) -> None:
        self._client = client
        self._reconnect = reconnect
        self._ws: aiohttp.ClientWebSocketResponse | None = None
        self._pending: deque[Event] = deque()
        self._closed = False
        self._lost = False
        self._failures = 0

    def __aiter__(self) -> RemoteSubscription:
        return self

    async def _connect(self) -> None:
        client = self._client
        try:
            self._ws = await client._client().ws_connect(
                f"{client.base_url}{path(Read.EVENTS)}",
                heartbeat=15.0,
                timeout=aiohttp.ClientWSTimeout(ws_receive=None, ws_close=2.0),
                max_msg_size=MAX_EVENT_MESSAGE,
            )
        except aiohttp.WSServerHandshakeError as exc:
            if exc.status == UNAUTHORIZED:
                raise Unauthorized("the daemon refused the token") from None
            raise client._unavailable(exc) from None
        except (TimeoutError, aiohttp.ClientError, OSError) as exc:
            raise client._unavailable(exc) from None
        client.connected = True

    async def _broken(self, reason: str) -> None:
        """The connection is gone: raise, or note the outage and wait before the next attempt."""
        if self._ws is not None:
            with contextlib.suppress(Exception):
                await self._ws.close()
            self._ws = None
        self._client.connected = False
        if not self._reconnect:
            self._finish()
            raise DaemonUnavailable(reason)
        if not self._lost:
            self._lost = True
            self._pending.append(ConnectionLost(time.time(), reason=reason))
            return  # report the loss before waiting
        ceiling = RECONNECT_DELAYS[min(self._failures, len(RECONNECT_DELAYS) - 1)]
        self._failures += 1
        await asyncio.sleep(ceiling / 2 + random.uniform(0, ceiling / 2))

    async def __anext__(self) -> Event:
        while True:
            if self._pending:
                return self._pending.popleft()
            if self._closed:
                raise StopAsyncIteration
            if self._ws is None:
                try:
                    await self._connect()
                except Unauthorized:
                    self._finish()
                    raise
                except DaemonUnavailable as exc:
                    await self._broken(str(exc))
                    continue
                if self._lost:
                    self._lost = False
                    self._failures = 0
                    self._pending.append(ConnectionRestored(time.time()))
                continue
            msg = await self._ws.receive()
            if msg.type is aiohttp.WSMsgType.TEXT:
                event = read_event(msg.data)
                if event is not None:
                    return event
            elif msg.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSING, aiohttp.WSMsgType.CLOSED):
                if self._closed:
                    raise StopAsyncIteration
                why = f" ({self._ws.close_code})" if self._ws.close_code is not None else ""
                await self._broken(f"lost the connection to the daemon at {self._client.where}{why}")
            elif msg.type is aiohttp.WSMsgType.ERROR:
                await self._broken(f"lost the connection to the daemon: {msg.data}")

    def _finish(self) -> None:
        self._closed = True
        self._client._subscriptions.discard(self)

    def close(self) -> None:
        """Stop the iteration, dropping events not yet read (the socket closes in the background)."""
        self._finish()
        self._pending.clear()
        ws, self._ws = self._ws, None
        if ws is not None:
            with contextlib.suppress(RuntimeError):
                task = asyncio.get_running_loop().create_task(_close_quietly(ws))
                _closing.add(task)
                task.add_done_callback(_closing.discard)

    async def aclose(self) -> None:
        """Drain, then close: events already received are still handed out, then the iteration
        ends; the socket is closed before this returns."""
        self._finish()
        ws, self._ws = self._ws, None
        if ws is not None:
            with contextlib.suppress(Exception):
                await ws.close()


async def _close_quietly(ws: aiohttp.ClientWebSocketResponse) -> None:
    with contextlib.suppress(Exception):
        await ws.close()


__all__ = ["ConnectionLost", "ConnectionRestored", "RemoteClient", "RemoteSubscription"]
