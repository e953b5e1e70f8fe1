"""The one polling helper, in an async and a sync form with the same signature.

Polling is for state that has nothing to await (server counters, files on disk, a snapshot); when
there is something to await (a task, an event, a process), await it with a bound instead.
"""

from __future__ import annotations

import asyncio
import inspect
import subprocess
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from tests.support.limits import INTERVAL, LIMIT

T = TypeVar("T")

What = str | Callable[[], str]
"""What is awaited, for the failure message; a function builds it at failure time (say, with the
last value seen)."""


def _exited(proc: subprocess.Popen[Any] | None, what: What) -> None:
    """Fail at once if ``proc`` ended: the condition it was to bring about can no longer come."""
    if proc is not None and proc.poll() is not None:
        out, err = proc.communicate(timeout=10)
        raise AssertionError(f"process exited ({proc.returncode}) before {_text(what)}\n{out}\n{err}")


def _timed_out(limit: float, what: What) -> AssertionError:
    return AssertionError(f"timed out after {limit:g}s waiting for {_text(what)}")


def _text(what: What) -> str:
    return what if isinstance(what, str) else what()


async def wait_until(
    predicate: Callable[[], T | Awaitable[T]],
    what: What,
    *,
    limit: float = LIMIT,
    interval: float = INTERVAL,
    proc: subprocess.Popen[Any] | None = None,
    pause: Callable[[float], Awaitable[object]] = asyncio.sleep,
) -> T:
    """Poll ``predicate`` (a plain or an async function) until it returns something truthy, and return
    that.

    Fails (AssertionError naming ``what``) after ``limit`` seconds, or at once if ``proc`` exits first.
    ``pause`` sleeps between looks (a Textual pilot's ``pause`` also lets the app refresh).
    """
    loop = asyncio.get_running_loop()
    deadline = loop.time() + limit
    while True:
        value = predicate()
        if inspect.isawaitable(value):
            value = await value
        if value:
            return value  # type: ignore[return-value]
        _exited(proc, what)
        if loop.time() > deadline:
            raise _timed_out(limit, what)
        await pause(interval)


def wait_until_sync(
    predicate: Callable[[], T],
    what: What,
    *,
    limit: float = LIMIT,
    interval: float = INTERVAL,
    proc: subprocess.Popen[Any] | None = None,
    pause: Callable[[float], object] = time.sleep,
) -> T:
    """:func:`wait_until` for blocking code: the same arguments, the same result and failure."""
    deadline = time.monotonic() + limit
    while True:
        value = predicate()
        if value:
            return value
        _exited(proc, what)
        if time.monotonic() > deadline:
            raise _timed_out(limit, what)
        pause(interval)
