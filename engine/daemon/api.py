"""The daemon's HTTP API, as both ends see it: paths, command names, request and answer shapes.

Commands are ``POST /v1/<command>`` with a JSON object body and answer ``{"ok": true, ...}``; reads
are ``GET /v1/<read>``; ``GET /v1/events`` is a WebSocket of events as
:func:`engine.codec.event_to_json` makes them (the first one is a fresh ``ProgressUpdated``). Every
failure is ``{"error": "..."}`` with a 4xx (or 500) status. The server builds on this module and
:mod:`engine.daemon.client` speaks it; it loads no HTTP library, so a client imports no server.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import types
import typing
from enum import StrEnum
from typing import Any

from engine.client import EngineError
from engine.codec import event_from_json, from_plain, to_plain
from engine.events import Event
from engine.filenames import split_output
from engine.models import EngineSnapshot, TaskOptions, TaskSnapshot

API = "/v1"
"""Prefix of every API path; bumped if the API ever changes incompatibly."""
MAX_BODY = 64 * 1024
"""Largest request body (and WebSocket message from a client) the server accepts."""
MAX_EVENT_MESSAGE = 64 * 1024 * 1024
"""Largest event message a client accepts (a snapshot of a huge queue)."""
MAX_URL = 8192
"""Longest URL accepted."""
UNAUTHORIZED = 401
"""The status of a request without the right bearer token."""
AUTH_CHALLENGE = 'Bearer realm="fetchtop"'
"""The ``WWW-Authenticate`` header sent with a 401."""
STOP_REPLY_TIMEOUT = 20.0
"""Seconds ``stop`` waits for the engine's last save before it answers without the outcome."""
SET_URL_REPLY_TIMEOUT = 25.0
"""Seconds a client waits beyond its usual timeout for ``seturl``, which asks the new URL first (more
than :data:`engine.seturl.PROBE_TIMEOUT`; not imported from there, which would load the engine)."""


class Read(StrEnum):
    """The ``GET`` paths (under :data:`API`)."""

    STATUS = "status"
    """Pid, start time, directories, task counts."""
    SNAPSHOT = "snapshot"
    """``{"snapshot": EngineSnapshot}``."""
    TASKS = "tasks"
    """``{"tasks": [TaskSnapshot, ...]}``."""
    HISTORY = "history"
    """``{"tasks": [TaskSnapshot, ...]}`` of finished tasks, oldest first."""
    EVENTS = "events"
    """The event WebSocket."""


class Command(StrEnum):
    """The ``POST`` commands (under :data:`API`); their bodies are made by the ``*_request`` functions."""

    ADD = "add"
    """Queue a URL; answers ``{"id": task id}``."""
    PAUSE = "pause"
    """Pause ``id``."""
    RESUME = "resume"
    """Resume ``id``."""
    CANCEL = "cancel"
    """Cancel ``id``."""
    REMOVE = "remove"
    """Remove ``id``, deleting its files if ``delete_files``."""
    PAUSE_ALL = "pause_all"
    """Pause every task."""
    RESUME_ALL = "resume_all"
    """Resume every paused task."""
    LIMIT = "limit"
    """Set ``limit`` (bytes/s or null) globally or for ``task_id``."""
    MOVE = "move"
    """Move ``id`` by ``offset`` places."""
    SET_URL = "seturl"
    """Replace the URL of stopped task ``id`` with ``url`` (``restart``: start over if the bytes cannot be
    kept); answers ``{"kept": bytes kept}``."""
    STOP = "stop"
    """Save and exit; answers, once saved, ``{"pid": pid, "saved": bool, "save_error": str | None}``."""


def path(name: Read | Command) -> str:
    """The URL path of a read or command."""
    return f"{API}/{name}"


class RequestError(Exception):
    """A request the API refuses, with the HTTP status to answer."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        """The HTTP status (4xx)."""


# ----- requests: made by the client, read by the server -----------------------------------------


def add_request(url: str, options: TaskOptions | None) -> dict[str, Any]:
    """The body of ``add``."""
    body: dict[str, Any] = {"url": url}
    if options is not None:
        body["options"] = to_plain(options)
    return body


def task_request(task_id: int, **extra: Any) -> dict[str, Any]:
    """The body of a command about one task (``pause``, ``resume``, ``cancel``, ``remove``, ``move``)."""
    return {"id": task_id, **extra}


def set_url_request(task_id: int, url: str, restart: bool) -> dict[str, Any]:
    """The body of ``seturl``."""
    return {"id": task_id, "url": url, "restart": restart}


def read_kept(data: dict[str, Any]) -> int:
    """The bytes kept in the answer to ``seturl``; raises EngineError."""
    kept = data.get("kept")
    if not isinstance(kept, int) or isinstance(kept, bool):
        raise EngineError("the daemon did not say how many bytes were kept")
    return kept


def limit_request(limit: int | None, task_id: int | None) -> dict[str, Any]:
    """The body of ``limit``."""
    return {"limit": limit, "task_id": task_id}


def parse_body(raw: bytes) -> dict[str, Any]:
    """A request's JSON object (empty body: ``{}``); raises RequestError(400)."""
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


def int_field(body: dict[str, Any], key: str, *, optional: bool = False) -> int | None:
    """An integer field of a body (None if ``optional`` and absent or null); raises RequestError(400)."""
    value = body.get(key)
    if value is None and optional:
        return None
    if not isinstance(value, int) or isinstance(value, bool):
        raise RequestError(400, f"{key!r} must be an integer")
    if abs(value) > 2**53:
        raise RequestError(400, f"{key!r} is out of range")
    return value


def required_int(body: dict[str, Any], key: str) -> int:
    """An integer field that must be there; raises RequestError(400)."""
    value = int_field(body, key)
    assert value is not None
    return value


def task_id_field(body: dict[str, Any]) -> int:
    """The ``id`` of a command about one task; raises RequestError(400)."""
    return required_int(body, "id")


def bool_field(body: dict[str, Any], key: str) -> bool:
    """A true/false field, false when absent; raises RequestError(400)."""
    value = body.get(key, False)
    if not isinstance(value, bool):
        raise RequestError(400, f"{key!r} must be true or false")
    return value


def url_field(body: dict[str, Any]) -> str:
    """The ``url`` of ``add`` (or ``seturl``), stripped; raises RequestError(400)."""
    url = body.get("url")
    if not isinstance(url, str) or not url.strip():
        raise RequestError(400, "'url' must be a non-empty string")
    if len(url) > MAX_URL:
        raise RequestError(400, f"'url' is longer than {MAX_URL} characters")
    if any(ord(c) < 33 or ord(c) == 127 for c in url.strip()):
        raise RequestError(400, "'url' must not contain spaces or control characters")
    return url.strip()


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
    if options.output:
        # -o is a path under the directory: its own directory part is confined like "directory".
        try:
            subdir, name = split_output(options.directory, options.output)
        except ValueError as exc:
            raise RequestError(400, str(exc)) from None
        options = dataclasses.replace(options, directory=subdir, output=name)
    directory = os.path.normpath(os.path.join(download_dir, os.path.expanduser(options.directory)))
    if confine:
        directory = _confined(directory, download_dir)
    return dataclasses.replace(options, directory=directory)


def _confined(directory: str, download_dir: str) -> str:
    """``directory`` with its symlinks resolved, if it lies inside ``download_dir`` and no part of it
    below there is hidden (``.name``); raises RequestError(400).

    The resolved path is what the download then uses, so a symlink inside the download directory
    cannot lead out of it, at the check or after it.
    """
    root = os.path.realpath(download_dir)
    real = os.path.realpath(directory)
    if os.path.commonpath([real, root]) != root:
        raise RequestError(400, "over TCP, 'directory' must be inside the daemon's download directory")
    below = (os.path.relpath(directory, os.path.abspath(download_dir)), os.path.relpath(real, root))
    if any(part.startswith(".") and part != "." for rel in below for part in rel.split(os.sep)):
        raise RequestError(400, "over TCP, 'directory' must not name a hidden directory (.name)")
    return real


# ----- answers: made by the server, read by the client ------------------------------------------


def error_body(reason: str) -> dict[str, Any]:
    """The body of every failure."""
    return {"error": reason}


def ok_body(result: dict[str, Any]) -> dict[str, Any]:
    """The body of a command that worked, with what it returns."""
    return {"ok": True, **result}


def snapshot_body(snapshot: EngineSnapshot) -> dict[str, Any]:
    """The body of ``GET snapshot``."""
    return {"snapshot": to_plain(snapshot)}


def tasks_body(tasks: tuple[TaskSnapshot, ...] | list[TaskSnapshot]) -> dict[str, Any]:
    """The body of ``GET tasks`` and ``GET history``."""
    return {"tasks": [to_plain(t) for t in tasks]}


def error_of(data: dict[str, Any], status: int) -> str:
    """The one-line reason in a failure's body."""
    return str(data.get("error") or f"HTTP {status}")


def read_task_id(data: dict[str, Any]) -> int:
    """The new task's id in the answer to ``add``; raises EngineError."""
    task_id = data.get("id")
    if not isinstance(task_id, int):
        raise EngineError("the daemon did not return a task id")
    return task_id


@dataclasses.dataclass(frozen=True)
class Stopped:
    """The answer to ``stop``: which daemon, and whether its last save of the queue worked."""

    pid: int
    """The daemon's pid (0 if it did not say)."""
    save_error: str | None
    """Why the queue could not be saved as the engine closed; None if saved (or not said)."""


def read_stop(data: dict[str, Any]) -> Stopped:
    """The answer to ``stop``; an answer without the save's outcome counts as saved."""
    pid = data.get("pid")
    error = data.get("save_error")
    if data.get("saved") is False and not isinstance(error, str):
        error = "unknown error"
    return Stopped(pid if isinstance(pid, int) else 0, error if isinstance(error, str) else None)


def read_snapshot(data: dict[str, Any]) -> EngineSnapshot:
    """The snapshot in the answer to ``GET snapshot``; raises EngineError."""
    try:
        snapshot = from_plain(EngineSnapshot, data["snapshot"])
    except (KeyError, TypeError, ValueError) as exc:
        raise EngineError(f"the daemon sent a snapshot that cannot be read: {exc}") from None
    assert isinstance(snapshot, EngineSnapshot)
    return snapshot


def read_tasks(data: dict[str, Any]) -> list[TaskSnapshot]:
    """The tasks in the answer to ``GET history`` (or ``tasks``); raises EngineError."""
    try:
        return [from_plain(TaskSnapshot, item) for item in data["tasks"]]
    except (KeyError, TypeError, ValueError) as exc:
        raise EngineError(f"the daemon sent a history that cannot be read: {exc}") from None


def read_event(text: str) -> Event | None:
    """The event in one WebSocket message; None for one this client does not know (a newer daemon's)."""
    try:
        data = json.loads(text)
        return event_from_json(data) if isinstance(data, dict) else None
    except (ValueError, KeyError, TypeError):
        return None
