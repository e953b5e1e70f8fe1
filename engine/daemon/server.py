"""The daemon's server: :class:`Daemon`, an Engine plus the aiohttp listeners that serve its API.

The API (paths, commands, bodies) is :mod:`engine.daemon.api`; this module maps it onto the engine:

- on a Unix socket (mode 0600, in the user's runtime directory or the state directory), where the file
  permissions are the authentication;
- optionally on TCP (``--listen HOST:PORT``), where every request must carry
  ``Authorization: Bearer <token>`` (compared in constant time).

Every failure is a JSON error with a 4xx status; a bad request never stops the daemon. No UI toolkit
here: this is the headless server.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import hmac
import json
import logging
import os
import socket
import time
import typing
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from aiohttp import WSCloseCode, WSMsgType, web
from aiohttp.typedefs import Middleware

from engine.atomicfile import write_atomic_async
from engine.bus import Subscription
from engine.client import EngineError
from engine.codec import event_to_json
from engine.daemon.api import (
    AUTH_CHALLENGE,
    MAX_BODY,
    STOP_REPLY_TIMEOUT,
    UNAUTHORIZED,
    Command,
    Read,
    RequestError,
    bool_field,
    decode_options,
    error_body,
    int_field,
    ok_body,
    parse_body,
    path,
    required_int,
    snapshot_body,
    task_id_field,
    tasks_body,
    url_field,
)
from engine.daemon.config import DaemonConfig
from engine.daemon.history import History, log_event
from engine.daemon.sockets import remove_stale_socket
from engine.engine import Engine
from engine.events import ProgressUpdated, TaskCancelled, TaskCompleted, TaskFailed
from engine.models import TaskOptions

if typing.TYPE_CHECKING:
    from engine.metrics import MetricsServer

log = logging.getLogger("fetchtop.daemon")

MAX_WATCHERS = 64
"""Most event WebSockets open at once."""
SEND_TIMEOUT = 10.0
"""Seconds one event may take to reach a WebSocket client before it counts as gone."""
SHUTDOWN_TIMEOUT = 2.0
"""Seconds requests in flight get to finish when the daemon stops."""

CommandHandler = Callable[[dict[str, Any]], Awaitable[dict[str, Any]]]
"""Runs one command on its decoded body; returns what the answer adds to ``{"ok": true}``."""


def _error(status: int, reason: str, headers: dict[str, str] | None = None) -> web.Response:
    return web.json_response(error_body(reason), status=status, headers=headers)


@web.middleware
async def _error_middleware(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    """Every failure becomes a JSON error; nothing a client sends can take the daemon down."""
    try:
        return await handler(request)
    except RequestError as exc:
        return _error(exc.status, str(exc))
    except EngineError as exc:
        return _error(400, str(exc))
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        return _error(exc.status, exc.reason)
    except (asyncio.CancelledError, ConnectionError):
        raise
    except Exception:
        log.exception("error handling %s %s", request.method, request.path)
        return _error(500, "internal error (see the daemon's log)")


def _auth_middleware(token: str) -> Middleware:
    expected = token.encode()

    @web.middleware
    async def check(
        request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
    ) -> web.StreamResponse:
        """Refuse any TCP request without the right bearer token (constant-time comparison)."""
        scheme, _, given = request.headers.get("Authorization", "").partition(" ")
        supplied = given.strip().encode("utf-8", "replace")
        if scheme.lower() != "bearer" or not hmac.compare_digest(supplied, expected):
            return _error(UNAUTHORIZED, "missing or wrong token", {"WWW-Authenticate": AUTH_CHALLENGE})
        return await handler(request)

    return check


class Daemon:
    """The engine plus its API listeners, history and (optional) metrics endpoint."""

    def __init__(self, config: DaemonConfig) -> None:
        self.config = config
        """What was asked for."""
        where = config.locations
        self.session_path = Path(where.session)
        """The engine's saved queue."""
        self.engine = Engine(dataclasses.replace(config.engine, session_path=str(self.session_path)))
        """The engine the daemon runs."""
        self.history = History(Path(where.history), config.history_limit)
        """Finished tasks."""
        self.tcp_address: tuple[str, int] | None = None
        """The TCP address actually bound, if any."""
        self.metrics: MetricsServer | None = None
        """The Prometheus endpoint, if any."""
        self._stop = asyncio.Event()
        self._engine_closed = asyncio.Event()
        self._runners: list[web.AppRunner] = []
        self._watchers: dict[web.WebSocketResponse, Subscription] = {}
        self._recorder: asyncio.Task[None] | None = None
        self._socket_bound = False
        self._started = time.time()

    # -- lifecycle ---------------------------------------------------------------------------------

    async def start(self) -> None:
        """Start the engine (restoring the saved queue), then listen. Raises DaemonError or OSError."""
        # The socket is bound first: before any download thread runs (the umask trick below is
        # process-wide), and so a socket that cannot be made fails before the queue is touched.
        unix_socket = self._bind_unix()
        await self.history.load()
        # Lifecycle only: the recorder never needs progress, and must see every completion.
        events = self.engine.subscribe(progress=False)
        await self.engine.start()
        self._recorder = asyncio.create_task(self._record(events), name="fetchtop-daemon-history")
        for url in self.config.urls:
            await self.engine.add(url, self._options(None))
        await self._listen_unix(unix_socket)
        if self.config.listen is not None:
            await self._listen_tcp(*self.config.listen)
        if self.config.metrics_port is not None:
            from engine.metrics import start_metrics

            self.metrics = await start_metrics(
                self.engine, self.config.metrics_addr, self.config.metrics_port
            )
        await self._write_info()

    def request_stop(self) -> None:
        """Ask :meth:`serve` to return (signal handlers and ``POST /v1/stop`` call this)."""
        self._stop.set()

    async def serve(self) -> None:
        """Wait until asked to stop."""
        await self._stop.wait()

    async def close(self) -> None:
        """Stop listening, close the engine (which saves the session and control files), clean up."""
        try:
            # Ending the subscriptions ends the event handlers, which close their sockets themselves.
            for events in list(self._watchers.values()):
                events.close()
            # The engine is saved before the listeners go, so "unreachable" means "saved" (or failed
            # to be: a stop request waiting for this answers with the outcome).
            try:
                await self.engine.close()
            finally:
                self._engine_closed.set()
            if self._recorder is not None:
                with contextlib.suppress(asyncio.TimeoutError, asyncio.CancelledError):
                    await asyncio.wait_for(self._recorder, 5)
            for runner in self._runners:
                await runner.cleanup()
            self._runners.clear()
            if self.metrics is not None:
                await self.metrics.close()
        finally:
            with contextlib.suppress(OSError):
                os.unlink(self.config.locations.info)
            if self._socket_bound:
                with contextlib.suppress(OSError):
                    os.unlink(self.config.socket_path)

    async def _write_info(self) -> None:
        info = {
            "pid": os.getpid(),
            "socket": self.config.socket_path,
            "listen": None if self.tcp_address is None else host_port(*self.tcp_address),
            "metrics": None
            if self.metrics is None
            else host_port(self.config.metrics_addr, self.metrics.port),
            "started": self._started,
        }
        await write_atomic_async(Path(self.config.locations.info), json.dumps(info).encode(), durable=False)

    # -- listeners ---------------------------------------------------------------------------------

    def _app(self, token: str | None) -> web.Application:
        middlewares: list[Middleware] = [_error_middleware]
        if token is not None:
            middlewares.insert(0, _auth_middleware(token))
        app = web.Application(client_max_size=MAX_BODY, middlewares=middlewares)
        routes = web.RouteTableDef()
        reads = {
            Read.STATUS: self._status,
            Read.SNAPSHOT: self._snapshot,
            Read.TASKS: self._tasks,
            Read.HISTORY: self._history,
            Read.EVENTS: self._events,
        }
        for read, handler in reads.items():
            routes.get(path(read))(handler)
        for name, command in self._commands(confine=token is not None).items():
            routes.post(path(name))(self._command_handler(command))
        app.add_routes(routes)
        return app

    def _bind_unix(self) -> socket.socket:
        path = self.config.socket_path
        directory = os.path.dirname(path) or "."
        os.makedirs(directory, mode=0o700, exist_ok=True)
        remove_stale_socket(path)
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        # The socket file takes its mode from the umask at bind(): 0177 makes it 0600 from its first
        # instant (a chmod after would leave a window); the chmod is for systems ignoring the umask.
        old = os.umask(0o177)
        try:
            sock.bind(path)
        except OSError:
            sock.close()
            raise
        finally:
            os.umask(old)
        self._socket_bound = True
        os.chmod(path, 0o600)
        return sock

    async def _listen_unix(self, sock: socket.socket) -> None:
        runner = web.AppRunner(self._app(None), access_log=None, shutdown_timeout=SHUTDOWN_TIMEOUT)
        await runner.setup()
        self._runners.append(runner)
        await web.SockSite(runner, sock).start()

    async def _listen_tcp(self, host: str, port: int) -> None:
        runner = web.AppRunner(
            self._app(self.config.token), access_log=None, shutdown_timeout=SHUTDOWN_TIMEOUT
        )
        await runner.setup()
        self._runners.append(runner)
        await web.TCPSite(runner, host, port).start()
        bound = runner.addresses[0]
        self.tcp_address = (str(bound[0]), int(bound[1]))

    # -- handlers ----------------------------------------------------------------------------------

    def _options(self, data: Any, confine: bool = False) -> TaskOptions:
        return decode_options(data, self.config.engine.defaults, self.config.download_dir, confine)

    def _known(self, task_id: int) -> int:
        if self.engine.snapshot().task(task_id) is None:
            raise RequestError(404, f"no task with id {task_id}")
        return task_id

    def _commands(self, confine: bool = False) -> dict[Command, CommandHandler]:
        engine = self.engine

        async def add(body: dict[str, Any]) -> dict[str, Any]:
            return {"id": await engine.add(url_field(body), self._options(body.get("options"), confine))}

        async def pause(body: dict[str, Any]) -> dict[str, Any]:
            await engine.pause(self._known(task_id_field(body)))
            return {}

        async def resume(body: dict[str, Any]) -> dict[str, Any]:
            await engine.resume(self._known(task_id_field(body)))
            return {}

        async def cancel(body: dict[str, Any]) -> dict[str, Any]:
            await engine.cancel(self._known(task_id_field(body)))
            return {}

        async def remove(body: dict[str, Any]) -> dict[str, Any]:
            delete = bool_field(body, "delete_files")
            await engine.remove(self._known(task_id_field(body)), delete_files=delete)
            return {}

        async def pause_all(body: dict[str, Any]) -> dict[str, Any]:
            await engine.pause_all()
            return {}

        async def resume_all(body: dict[str, Any]) -> dict[str, Any]:
            await engine.resume_all()
            return {}

        async def limit(body: dict[str, Any]) -> dict[str, Any]:
            if "limit" not in body:
                raise RequestError(400, "'limit' is required (bytes per second, or null for none)")
            rate = int_field(body, "limit", optional=True)
            task_id = int_field(body, "task_id", optional=True)
            await engine.set_limit(rate, None if task_id is None else self._known(task_id))
            return {}

        async def move(body: dict[str, Any]) -> dict[str, Any]:
            offset = required_int(body, "offset")
            await engine.move(self._known(task_id_field(body)), offset)
            return {}

        async def set_url(body: dict[str, Any]) -> dict[str, Any]:
            task_id = self._known(task_id_field(body))
            return {"kept": await engine.set_url(task_id, url_field(body), bool_field(body, "restart"))}

        async def stop(body: dict[str, Any]) -> dict[str, Any]:
            log.info("stop requested over the API")
            self.request_stop()
            # Answer once the engine is closed, so the caller learns whether the last save worked;
            # close() waits for this handler before the listeners go.
            try:
                await asyncio.wait_for(self._engine_closed.wait(), STOP_REPLY_TIMEOUT)
            except TimeoutError:
                return {"pid": os.getpid()}
            return {
                "pid": os.getpid(),
                "saved": self.engine.save_error is None,
                "save_error": self.engine.save_error,
            }

        return {
            Command.ADD: add,
            Command.PAUSE: pause,
            Command.RESUME: resume,
            Command.CANCEL: cancel,
            Command.REMOVE: remove,
            Command.PAUSE_ALL: pause_all,
            Command.RESUME_ALL: resume_all,
            Command.LIMIT: limit,
            Command.MOVE: move,
            Command.SET_URL: set_url,
            Command.STOP: stop,
        }

    def _command_handler(
        self, command: CommandHandler
    ) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
        async def handle(request: web.Request) -> web.StreamResponse:
            result = await command(parse_body(await request.read()))
            return web.json_response(ok_body(result))

        return handle

    async def _status(self, request: web.Request) -> web.StreamResponse:
        snap = self.engine.snapshot()
        return web.json_response(
            {
                "pid": os.getpid(),
                "started": self._started,
                "state_dir": self.config.state_dir,
                "download_dir": self.config.download_dir,
                "tasks": len(snap.tasks),
                "counts": snap.counts,
            }
        )

    async def _snapshot(self, request: web.Request) -> web.StreamResponse:
        return web.json_response(snapshot_body(self.engine.snapshot()))

    async def _tasks(self, request: web.Request) -> web.StreamResponse:
        return web.json_response(tasks_body(self.engine.snapshot().tasks))

    async def _history(self, request: web.Request) -> web.StreamResponse:
        return web.json_response(tasks_body(self.history.tasks))

    async def _events(self, request: web.Request) -> web.StreamResponse:
        if len(self._watchers) >= MAX_WATCHERS:
            raise RequestError(503, f"too many event streams open (at most {MAX_WATCHERS})")
        ws = web.WebSocketResponse(heartbeat=15.0, max_msg_size=MAX_BODY, timeout=2.0)
        if not ws.can_prepare(request).ok:
            raise RequestError(400, f"GET {path(Read.EVENTS)} is a WebSocket")
        # Subscribe before the first snapshot so nothing between the two is missed; the slot is
        # taken before the handshake's await so concurrent handshakes cannot overshoot the cap.
        events = self.engine.subscribe()
        self._watchers[ws] = events
        try:
            await ws.prepare(request)
        except BaseException:
            events.close()
            self._watchers.pop(ws, None)
            raise

        async def send(data: dict[str, Any]) -> None:
            # A client that stops reading must not hold its handler (and a watcher slot) forever:
            # ws.close() would wait for a buffer that never drains, so the transport is aborted.
            try:
                await asyncio.wait_for(ws.send_json(data), SEND_TIMEOUT)
            except TimeoutError:
                if request.transport is not None:
                    request.transport.abort()
                raise ConnectionResetError("event client stopped reading") from None

        async def read_until_closed() -> None:
            # Clients send nothing; reading is how a close (or a dead peer) is noticed.
            async for msg in ws:
                if msg.type is WSMsgType.ERROR:
                    break
            events.close()

        reader = asyncio.create_task(read_until_closed())
        try:
            await send(event_to_json(ProgressUpdated(time.time(), self.engine.snapshot())))
            async for event in events:
                await send(event_to_json(event))
            if events.overflowed:
                await ws.close(code=WSCloseCode.TRY_AGAIN_LATER, message=b"fell too far behind")
        except (ConnectionError, RuntimeError):
            pass  # the client went away mid-send
        finally:
            events.close()
            reader.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await reader
            self._watchers.pop(ws, None)
            if not ws.closed:
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(
                        ws.close(code=WSCloseCode.GOING_AWAY, message=b"event stream ended"), 2.0
                    )
        return ws

    # -- history and log ---------------------------------------------------------------------------

    async def _record(self, events: Subscription) -> None:
        while True:
            async for event in events:
                if isinstance(event, ProgressUpdated):
                    continue
                log_event(event)
                if isinstance(event, TaskCompleted | TaskFailed | TaskCancelled):
                    task = self.engine.task_snapshot(event.task_id)
                    if task is not None:
                        try:
                            await self.history.record(task)
                        except OSError as exc:
                            log.warning("cannot save the history: %s", exc)
            if not events.overflowed:
                return
            # Cut off after falling far behind (a huge restored queue): carry on from now.
            log.warning("the history recorder fell behind; some finished tasks may be missing from it")
            events = self.engine.subscribe(progress=False)


def host_port(host: str, port: int) -> str:
    """``host:port``, with brackets around an IPv6 address so the result is a URL authority."""
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
