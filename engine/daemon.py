"""``fetchtop daemon``: an Engine with no UI, steered over a small JSON/HTTP control API.

The daemon owns one :class:`engine.engine.Engine` whose queue is saved in ``<state dir>/session.json``
(the engine restores it at start and resumes downloads from their control files), keeps a history of
finished tasks in ``<state dir>/history.json``, and serves the API with aiohttp:

- on a Unix socket (mode 0600, in the user's runtime directory or the state directory), where the file
  permissions are the authentication;
- optionally on TCP (``--listen HOST:PORT``), where every request must carry
  ``Authorization: Bearer <token>`` (the token is read from a file and compared in constant time).

Commands are ``POST /v1/<command>`` with a JSON object body; reads are ``GET /v1/snapshot``,
``/v1/tasks``, ``/v1/history``, ``/v1/status``; ``GET /v1/events`` is a WebSocket of events as
:func:`engine.codec.event_to_json` makes them (the first one is a fresh ``ProgressUpdated``).
Every failure is a JSON ``{"error": "..."}`` with a 4xx status; a bad request never stops the daemon.

No UI toolkit here: this module is the headless server.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import errno
import fcntl
import hmac
import ipaddress
import json
import logging
import math
import os
import select
import signal
import socket
import sys
import time
import types
import typing
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NoReturn

from aiohttp import WSCloseCode, WSMsgType, web
from aiohttp.typedefs import Middleware

from engine.atomicfile import write_atomic
from engine.bus import Subscription
from engine.client import EngineError
from engine.codec import event_to_json, from_plain, to_plain
from engine.engine import Engine, EngineConfig
from engine.events import (
    Event,
    ProgressUpdated,
    TaskAdded,
    TaskCancelled,
    TaskCompleted,
    TaskFailed,
    TaskRemoved,
    TaskRetrying,
    TaskStarted,
)
from engine.models import TaskOptions, TaskSnapshot

if typing.TYPE_CHECKING:
    from engine.metrics import MetricsServer

log = logging.getLogger("fetchtop.daemon")

API = "/v1"
"""Prefix of every API path; bumped if the API ever changes incompatibly."""
SOCKET_NAME = "daemon.sock"
"""File name of the control socket in its directory."""
SESSION_NAME = "session.json"
"""The engine's saved queue, in the state directory."""
HISTORY_NAME = "history.json"
"""Finished tasks, in the state directory."""
LOCK_NAME = "daemon.lock"
"""Held (flock) for the daemon's lifetime: one daemon per state directory; released even by kill -9."""
PID_NAME = "daemon.pid"
"""The running daemon's process id."""
INFO_NAME = "daemon.json"
"""Where the running daemon says how to reach it (socket, TCP and metrics addresses, pid)."""
LOG_NAME = "daemon.log"
"""Output of a detached daemon."""
MAX_BODY = 64 * 1024
"""Largest request body accepted."""
MAX_WATCHERS = 64
"""Most event WebSockets open at once."""
SEND_TIMEOUT = 10.0
"""Seconds one event may take to reach a WebSocket client before it counts as gone."""
HISTORY_LIMIT = 1000
"""Finished tasks remembered; the oldest are forgotten first."""
MAX_URL = 8192
"""Longest URL accepted."""
SHUTDOWN_TIMEOUT = 2.0
"""Seconds requests in flight get to finish when the daemon stops."""
READY_TIMEOUT = 30.0
"""Seconds ``--detach`` waits for the daemon to report that it listens."""
SOCKET_PATH_MAX = 104 if sys.platform == "darwin" else 108
"""The kernel's limit on a Unix socket path (sun_path), terminating NUL included."""


class DaemonError(Exception):
    """The daemon cannot start (bad address, missing token, already running); the message is one line."""


class RequestError(Exception):
    """A request the API refuses, with the HTTP status to answer."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        """The HTTP status (4xx)."""


# ----- where things live ------------------------------------------------------------------------


def default_state_dir() -> str:
    """The state directory: ``$FETCHTOP_STATE_DIR`` if set, else the user's platform state directory."""
    env = os.environ.get("FETCHTOP_STATE_DIR")
    if env:
        return os.path.abspath(env)
    from platformdirs import user_state_dir

    return user_state_dir("fetchtop")


def default_socket_path(state_dir: str | None = None) -> str:
    """Where the control socket is when none is named.

    With an explicit ``state_dir`` the socket lives in it, so separate state directories make separate
    daemons. Otherwise it goes in the user's runtime directory (``$XDG_RUNTIME_DIR/fetchtop`` on Linux,
    private to the user and cleared at logout), or in the state directory when there is none: the
    platformdirs fallback ``/tmp/runtime-UID`` is a predictable path in a shared directory.
    """
    if state_dir is not None or os.environ.get("FETCHTOP_STATE_DIR"):
        return os.path.join(state_dir or default_state_dir(), SOCKET_NAME)
    if sys.platform.startswith("linux"):
        runtime = os.environ.get("XDG_RUNTIME_DIR") or f"/run/user/{os.getuid()}"
        if os.path.isabs(runtime) and os.path.isdir(runtime):
            return os.path.join(runtime, "fetchtop", SOCKET_NAME)
        return os.path.join(default_state_dir(), SOCKET_NAME)
    import warnings

    from platformdirs import user_runtime_dir

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return os.path.join(user_runtime_dir("fetchtop"), SOCKET_NAME)


def parse_listen(text: str) -> tuple[str, int]:
    """``(host, port)`` from ``HOST:PORT`` or ``[IPv6]:PORT``; raises DaemonError."""
    host, sep, port_text = text.rpartition(":")
    if not sep or not host or not port_text.isdigit():
        raise DaemonError(f"--listen wants HOST:PORT, got {text!r}")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    port = int(port_text)
    if port > 65535:
        raise DaemonError(f"port must be 0-65535, got {port}")
    return host, port


def is_loopback(host: str) -> bool:
    """Whether every address ``host`` names is a loopback address (resolving names)."""
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        pass
    try:
        infos = socket.getaddrinfo(host, None, proto=socket.IPPROTO_TCP)
    except OSError:
        return False
    addresses = {str(info[4][0]) for info in infos}
    return bool(addresses) and all(ipaddress.ip_address(a.split("%")[0]).is_loopback for a in addresses)


def read_token(path: str) -> str:
    """The token in a file (surrounding whitespace ignored); raises DaemonError if unusable."""
    try:
        with open(path, "rb") as f:
            raw = f.read(4097)
    except OSError as exc:
        raise DaemonError(f"cannot read token file {path}: {exc.strerror}") from None
    if len(raw) > 4096:
        raise DaemonError(f"token file {path} is over 4 KiB")
    try:
        token = raw.decode("ascii").strip()
    except UnicodeDecodeError:
        raise DaemonError(f"token in {path} must be printable ASCII") from None
    if len(token) < 16 or not token.isprintable() or any(c.isspace() for c in token):
        raise DaemonError(f"token in {path} must be at least 16 printable characters without spaces")
    return token


# ----- configuration ----------------------------------------------------------------------------


@dataclass(frozen=True)
class DaemonConfig:
    """Everything ``fetchtop daemon`` was asked for."""

    state_dir: str
    """Directory for the session, history, pid, lock, info and log files."""
    socket_path: str
    """Path of the control socket."""
    engine: EngineConfig = field(default_factory=EngineConfig)
    """Engine settings (``session_path`` is set to the state directory's session file)."""
    download_dir: str = "."
    """Where downloads go when a request names no directory, or a relative one."""
    listen: tuple[str, int] | None = None
    """TCP address to serve the API on too (needs ``token``)."""
    token: str | None = None
    """The bearer token TCP requests must carry."""
    metrics_addr: str = "127.0.0.1"
    """Address of the Prometheus endpoint."""
    metrics_port: int | None = None
    """Port of the Prometheus endpoint; None leaves it off."""
    urls: tuple[str, ...] = ()
    """URLs to queue at start."""
    history_limit: int = HISTORY_LIMIT
    """Finished tasks remembered."""

    def check(self) -> None:
        """Raise DaemonError for a configuration that must not start."""
        if self.listen is not None:
            host = self.listen[0]
            if self.token is None:
                where = "a loopback address" if is_loopback(host) else f"the non-loopback address {host}"
                raise DaemonError(f"--listen on {where} requires --token-file (refusing to start)")
        if len(os.fsencode(self.socket_path)) >= SOCKET_PATH_MAX:
            raise DaemonError(f"socket path is too long for a Unix socket: {self.socket_path}")


# ----- request decoding -------------------------------------------------------------------------


def _type_ok(tp: Any, value: Any) -> bool:
    """Whether a JSON value fits the type hint of a TaskOptions field, strictly (no bool for int)."""
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        return any(_type_ok(a, value) for a in typing.get_args(tp))
    if tp is type(None):
        return value is None
    if origin is tuple:
        args = typing.get_args(tp)
        if not isinstance(value, list | tuple):
            return False
        if len(args) == 2 and args[1] is Ellipsis:
            return all(_type_ok(args[0], v) for v in value)
        return len(args) == len(value) and all(_type_ok(a, v) for a, v in zip(args, value, strict=True))
    if tp is bool:
        return isinstance(value, bool)
    if tp is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if tp is float:
        return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
    if tp is str:
        return isinstance(value, str)
    return False


_OPTION_HINTS: dict[str, Any] = typing.get_type_hints(TaskOptions)


def decode_options(data: Any, defaults: TaskOptions, download_dir: str, confine: bool = False) -> TaskOptions:
    """TaskOptions from a request's ``options`` object: unnamed fields keep the daemon's defaults,
    a relative directory is taken under ``download_dir``; with ``confine`` (TCP clients, who need
    not be this user) it must stay inside it. Raises RequestError(400)."""
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise RequestError(400, "options must be a JSON object")
    changes: dict[str, Any] = {}
    for key, value in data.items():
        hint = _OPTION_HINTS.get(key)
        if hint is None:
            raise RequestError(400, f"unknown option {key!r}")
        if not _type_ok(hint, value):
            raise RequestError(400, f"option {key!r} has the wrong type")
        changes[key] = from_plain(hint, value)
    for name, value in changes.get("headers", ()):
        if any(ord(c) < 32 or ord(c) == 127 for c in name + value) or not name:
            raise RequestError(400, "header names and values must not be empty or hold control characters")
    options = dataclasses.replace(defaults, **changes)
    directory = os.path.normpath(os.path.join(download_dir, os.path.expanduser(options.directory)))
    if confine:
        root = os.path.normpath(os.path.abspath(download_dir))
        if os.path.commonpath([os.path.abspath(directory), root]) != root:
            raise RequestError(400, "over TCP, 'directory' must be inside the daemon's download directory")
    return dataclasses.replace(options, directory=directory)


def _int(body: dict[str, Any], key: str, *, optional: bool = False) -> int | None:
    value = body.get(key)
    if value is None and optional:
        return None
    if not isinstance(value, int) or isinstance(value, bool):
        raise RequestError(400, f"{key!r} must be an integer")
    if abs(value) > 2**53:
        raise RequestError(400, f"{key!r} is out of range")
    return value


def _task_id(body: dict[str, Any]) -> int:
    value = _int(body, "id")
    assert value is not None
    return value


def _url(body: dict[str, Any]) -> str:
    url = body.get("url")
    if not isinstance(url, str) or not url.strip():
        raise RequestError(400, "'url' must be a non-empty string")
    if len(url) > MAX_URL:
        raise RequestError(400, f"'url' is longer than {MAX_URL} characters")
    if any(ord(c) < 33 or ord(c) == 127 for c in url.strip()):
        raise RequestError(400, "'url' must not contain spaces or control characters")
    return url.strip()


async def _body(request: web.Request) -> dict[str, Any]:
    raw = await request.read()
    if not raw.strip():
        return {}
    try:
        data = json.loads(raw)
    except (ValueError, UnicodeDecodeError, RecursionError) as exc:
        # RecursionError: a small body of deeply nested brackets is malformed too, not a 500.
        raise RequestError(400, f"request body is not valid JSON: {type(exc).__name__}") from None
    if not isinstance(data, dict):
        raise RequestError(400, "request body must be a JSON object")
    return data


def _error(status: int, reason: str, headers: dict[str, str] | None = None) -> web.Response:
    return web.json_response({"error": reason}, status=status, headers=headers)


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
            return _error(401, "missing or wrong token", {"WWW-Authenticate": 'Bearer realm="fetchtop"'})
        return await handler(request)

    return check


# ----- history ----------------------------------------------------------------------------------


class History:
    """Finished tasks (completed, failed, cancelled), newest last, saved as JSON in the state directory."""

    def __init__(self, path: Path, limit: int = HISTORY_LIMIT) -> None:
        self.path = path
        """The history file."""
        self.limit = limit
        """Most entries kept."""
        self.tasks: list[TaskSnapshot] = []
        """The entries, oldest first."""
        self._lock = asyncio.Lock()

    def load(self) -> None:
        """Read the file; a missing or damaged one means an empty history (blocking)."""
        try:
            data = json.loads(self.path.read_bytes())
            items = data["tasks"] if isinstance(data, dict) else []
        except (OSError, ValueError, KeyError, TypeError):
            return
        for item in items[-self.limit :]:
            with contextlib.suppress(KeyError, TypeError, ValueError, AttributeError):
                self.tasks.append(from_plain(TaskSnapshot, item))

    async def record(self, task: TaskSnapshot) -> None:
        """Remember a finished task (without its segment map) and save."""
        self.tasks.append(dataclasses.replace(task, segments=(), speed=0.0, eta=None, connections=0))
        del self.tasks[: -self.limit]
        async with self._lock:
            payload = json.dumps({"version": 1, "tasks": [to_plain(t) for t in self.tasks]}).encode()
            await asyncio.to_thread(write_atomic, self.path, payload)


# ----- the server -------------------------------------------------------------------------------


class Daemon:
    """The engine plus its API listeners, history and (optional) metrics endpoint."""

    def __init__(self, config: DaemonConfig) -> None:
        self.config = config
        """What was asked for."""
        state = Path(config.state_dir)
        self.session_path = state / SESSION_NAME
        """The engine's saved queue."""
        self.engine = Engine(dataclasses.replace(config.engine, session_path=str(self.session_path)))
        """The engine the daemon runs."""
        self.history = History(state / HISTORY_NAME, config.history_limit)
        """Finished tasks."""
        self.tcp_address: tuple[str, int] | None = None
        """The TCP address actually bound, if any."""
        self.metrics: MetricsServer | None = None
        """The Prometheus endpoint, if any."""
        self._stop = asyncio.Event()
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
        await asyncio.to_thread(self.history.load)
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
        self._write_info()

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
            # The engine is saved before the listeners go, so "unreachable" means "saved".
            await self.engine.close()
            if self._recorder is not None:
                with contextlib.suppress(asyncio.TimeoutError, asyncio.CancelledError):
                    await asyncio.wait_for(self._recorder, 5)
            for runner in self._runners:
                await runner.cleanup()
            self._runners.clear()
            if self.metrics is not None:
                await self.metrics.close()
        finally:
            for name in (INFO_NAME,):
                with contextlib.suppress(OSError):
                    os.unlink(os.path.join(self.config.state_dir, name))
            if self._socket_bound:
                with contextlib.suppress(OSError):
                    os.unlink(self.config.socket_path)

    def _write_info(self) -> None:
        info = {
            "pid": os.getpid(),
            "socket": self.config.socket_path,
            "listen": None if self.tcp_address is None else _host_port(*self.tcp_address),
            "metrics": None
            if self.metrics is None
            else _host_port(self.config.metrics_addr, self.metrics.port),
            "started": self._started,
        }
        path = Path(self.config.state_dir, INFO_NAME)
        write_atomic(path, json.dumps(info).encode(), durable=False)

    # -- listeners ---------------------------------------------------------------------------------

    def _app(self, token: str | None) -> web.Application:
        middlewares: list[Middleware] = [_error_middleware]
        if token is not None:
            middlewares.insert(0, _auth_middleware(token))
        app = web.Application(client_max_size=MAX_BODY, middlewares=middlewares)
        routes = web.RouteTableDef()
        routes.get(f"{API}/status")(self._status)
        routes.get(f"{API}/snapshot")(self._snapshot)
        routes.get(f"{API}/tasks")(self._tasks)
        routes.get(f"{API}/history")(self._history)
        routes.get(f"{API}/events")(self._events)
        for name, command in self._commands(confine=token is not None).items():
            routes.post(f"{API}/{name}")(self._command_handler(command))
        app.add_routes(routes)
        return app

    def _bind_unix(self) -> socket.socket:
        path = self.config.socket_path
        directory = os.path.dirname(path) or "."
        os.makedirs(directory, mode=0o700, exist_ok=True)
        _remove_stale_socket(path)
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

    def _commands(
        self, confine: bool = False
    ) -> dict[str, Callable[[dict[str, Any]], Awaitable[dict[str, Any]]]]:
        engine = self.engine

        async def add(body: dict[str, Any]) -> dict[str, Any]:
            return {"id": await engine.add(_url(body), self._options(body.get("options"), confine))}

        async def pause(body: dict[str, Any]) -> dict[str, Any]:
            await engine.pause(self._known(_task_id(body)))
            return {}

        async def resume(body: dict[str, Any]) -> dict[str, Any]:
            await engine.resume(self._known(_task_id(body)))
            return {}

        async def cancel(body: dict[str, Any]) -> dict[str, Any]:
            await engine.cancel(self._known(_task_id(body)))
            return {}

        async def remove(body: dict[str, Any]) -> dict[str, Any]:
            delete = body.get("delete_files", False)
            if not isinstance(delete, bool):
                raise RequestError(400, "'delete_files' must be true or false")
            await engine.remove(self._known(_task_id(body)), delete_files=delete)
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
            rate = _int(body, "limit", optional=True)
            task_id = _int(body, "task_id", optional=True)
            await engine.set_limit(rate, None if task_id is None else self._known(task_id))
            return {}

        async def move(body: dict[str, Any]) -> dict[str, Any]:
            offset = _int(body, "offset")
            assert offset is not None
            await engine.move(self._known(_task_id(body)), offset)
            return {}

        async def stop(body: dict[str, Any]) -> dict[str, Any]:
            log.info("stop requested over the API")
            # Answer first; the stop happens once this response is on its way.
            asyncio.get_running_loop().call_soon(self.request_stop)
            return {"pid": os.getpid()}

        return {
            "add": add,
            "pause": pause,
            "resume": resume,
            "cancel": cancel,
            "remove": remove,
            "pause_all": pause_all,
            "resume_all": resume_all,
            "limit": limit,
            "move": move,
            "stop": stop,
        }

    def _command_handler(
        self, command: Callable[[dict[str, Any]], Awaitable[dict[str, Any]]]
    ) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
        async def handle(request: web.Request) -> web.StreamResponse:
            result = await command(await _body(request))
            return web.json_response({"ok": True, **result})

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
        return web.json_response({"snapshot": to_plain(self.engine.snapshot())})

    async def _tasks(self, request: web.Request) -> web.StreamResponse:
        return web.json_response({"tasks": to_plain(self.engine.snapshot().tasks)})

    async def _history(self, request: web.Request) -> web.StreamResponse:
        return web.json_response({"tasks": [to_plain(t) for t in self.history.tasks]})

    async def _events(self, request: web.Request) -> web.StreamResponse:
        if len(self._watchers) >= MAX_WATCHERS:
            raise RequestError(503, f"too many event streams open (at most {MAX_WATCHERS})")
        ws = web.WebSocketResponse(heartbeat=15.0, max_msg_size=MAX_BODY, timeout=2.0)
        if not ws.can_prepare(request).ok:
            raise RequestError(400, "GET /v1/events is a WebSocket")
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
                _log_event(event)
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


def _log_event(event: Event) -> None:
    if isinstance(event, TaskAdded):
        log.info("task %d added: %s", event.task_id, event.task.url)
    elif isinstance(event, TaskStarted):
        log.info("task %d started", event.task_id)
    elif isinstance(event, TaskCompleted):
        log.info("task %d completed: %s (%d bytes)", event.task_id, event.path, event.size)
    elif isinstance(event, TaskFailed):
        log.warning("task %d failed: %s", event.task_id, event.reason)
    elif isinstance(event, TaskRetrying):
        log.info("task %d retrying in %.1fs: %s", event.task_id, event.delay, event.reason)
    elif isinstance(event, TaskCancelled | TaskRemoved):
        log.info("task %d %s", event.task_id, "cancelled" if isinstance(event, TaskCancelled) else "removed")


def _host_port(host: str, port: int) -> str:
    """``host:port``, with brackets around an IPv6 address so the result is a URL authority."""
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _remove_stale_socket(path: str) -> None:
    """Delete a socket file no daemon answers on (left by kill -9); refuse if one does."""
    if not os.path.lexists(path):
        return
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        probe.settimeout(1.0)
        probe.connect(path)
    except OSError as exc:
        if exc.errno not in (errno.ECONNREFUSED, errno.ENOENT, errno.ENOTSOCK):
            raise DaemonError(f"cannot use socket {path}: {exc.strerror}") from None
    else:
        raise DaemonError(f"another daemon is listening on {path}")
    finally:
        probe.close()
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)


# ----- process management -----------------------------------------------------------------------


def _lock_state_dir(state_dir: str) -> int:
    """Create the state directory (0700) and take its lock; returns the lock's fd. Raises DaemonError."""
    try:
        os.makedirs(state_dir, mode=0o700, exist_ok=True)
        fd = os.open(os.path.join(state_dir, LOCK_NAME), os.O_RDWR | os.O_CREAT, 0o600)
    except OSError as exc:
        raise DaemonError(f"cannot use state directory {state_dir}: {exc.strerror}") from None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        os.close(fd)
        pid = read_pid(state_dir)
        who = f" (pid {pid})" if pid else ""
        raise DaemonError(f"a daemon is already running on {state_dir}{who}") from None
    return fd


def read_pid(state_dir: str) -> int | None:
    """The pid in the state directory's pid file, if any."""
    try:
        return int(Path(state_dir, PID_NAME).read_text().strip())
    except (OSError, ValueError):
        return None


def _write_pid(state_dir: str) -> None:
    path = os.path.join(state_dir, PID_NAME)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.write(fd, f"{os.getpid()}\n".encode())
    finally:
        os.close(fd)


def _detach(state_dir: str) -> int:
    """Become a daemon (fork, setsid, fork; stdio to the log file).

    Returns, in the daemon, the write end of a pipe to report readiness on. In the original process it
    waits for that report and raises _Ready (started) or DaemonError (could not start).
    """
    read_end, write_end = os.pipe()
    first = os.fork()
    if first > 0:
        os.close(write_end)
        os.waitpid(first, 0)
        _await_ready(read_end, state_dir)
    try:
        os.close(read_end)
        os.setsid()
        if os.fork() > 0:
            os._exit(0)
        os.chdir("/")
        log_fd = os.open(os.path.join(state_dir, LOG_NAME), os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        null_fd = os.open(os.devnull, os.O_RDONLY)
        sys.stdout.flush()
        sys.stderr.flush()
        os.dup2(null_fd, 0)
        os.dup2(log_fd, 1)
        os.dup2(log_fd, 2)
        os.close(null_fd)
        os.close(log_fd)
    except BaseException:
        os._exit(1)
    return write_end


class _Ready(Exception):
    """Raised in the original process after a successful detach, to leave run_daemon with status 0."""


def _await_ready(read_end: int, state_dir: str) -> NoReturn:
    deadline = time.monotonic() + READY_TIMEOUT
    data = b""
    try:
        while b"\n" not in data:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([read_end], [], [], left)[0]:
                raise DaemonError(f"the daemon did not start within {READY_TIMEOUT:.0f}s (see its log)")
            chunk = os.read(read_end, 4096)
            if not chunk:
                log_path = os.path.join(state_dir, LOG_NAME)
                raise DaemonError(f"the daemon exited during startup (see {log_path})")
            data += chunk
    finally:
        os.close(read_end)
    line = data.decode(errors="replace").splitlines()[0]
    if line.startswith("ok "):
        print(f"fetchtop: daemon started (pid {line[3:]})", flush=True)
        raise _Ready
    raise DaemonError(line.removeprefix("error: "))


def _setup_logging(quiet: bool) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s fetchtop daemon: %(levelname)s %(message)s"))
    root = logging.getLogger("fetchtop")
    root.handlers[:] = [handler]
    root.setLevel(logging.WARNING if quiet else logging.INFO)
    root.propagate = False


async def _main(config: DaemonConfig, notify: int | None) -> int:
    daemon = Daemon(config)
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        loop.add_signal_handler(sig, daemon.request_stop)
    try:
        try:
            await daemon.start()
        except (DaemonError, OSError, EngineError) as exc:
            reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
            message = f"cannot start: {reason}"
            log.error("%s", message)
            if notify is not None:
                os.write(notify, f"error: {message}\n".encode())
            return 1
        where = [f"unix:{config.socket_path}"]
        if daemon.tcp_address is not None:
            where.append(f"http://{_host_port(*daemon.tcp_address)}")
        if daemon.metrics is not None:
            where.append(f"metrics on {_host_port(config.metrics_addr, daemon.metrics.port)}")
        log.info("pid %d listening on %s", os.getpid(), ", ".join(where))
        if notify is not None:
            os.write(notify, f"ok {os.getpid()}\n".encode())
            os.close(notify)
            notify = None
        await daemon.serve()
        log.info("stopping: saving the session")
        return 0
    finally:
        await daemon.close()
        if notify is not None:
            os.close(notify)
        log.info("stopped")


def run_daemon(config: DaemonConfig, *, detach: bool = False, quiet: bool = False) -> int:
    """Run ``fetchtop daemon`` until SIGTERM/SIGINT or ``fetchtop stop``; returns the exit status.

    With ``detach`` the original process returns 0 as soon as the daemon listens (1 if it could not
    start), and the daemon runs on in the background.
    """
    try:
        config.check()
        lock_fd = _lock_state_dir(config.state_dir)
    except DaemonError as exc:
        print(f"fetchtop: {exc}", file=sys.stderr)
        return 1
    notify: int | None = None
    if detach:
        try:
            notify = _detach(config.state_dir)
        except _Ready:
            return 0
        except DaemonError as exc:
            print(f"fetchtop: {exc}", file=sys.stderr)
            return 1
    _setup_logging(quiet)
    try:
        _write_pid(config.state_dir)
        return asyncio.run(_main(config, notify))
    finally:
        with contextlib.suppress(OSError):
            os.unlink(os.path.join(config.state_dir, PID_NAME))
        os.close(lock_fd)
