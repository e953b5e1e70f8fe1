"""The one polling helper, in an async and a sync form with the same signature.

Polling is for plain state that has nothing to await (server counters, files on disk, a snapshot); when
there is something to await (a task, an event, a process), await it with a bound instead.
"""

from __future__ import annotations

import asyncio
import subprocess
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from tests.support.limits import INTERVAL, LIMIT

T = TypeVar("T")


def _exited(proc: subprocess.Popen[Any] | None, what: str) -> None:
    """Fail at once if ``proc`` ended: the condition it was to bring about can no longer come."""
    if proc is not None and proc.poll() is not None:
        out, err = proc.communicate(timeout=10)
        raise AssertionError(f"process exited ({proc.returncode}) before {what}\n{out}\n{err}")


def _timed_out(limit: float, what: str) -> AssertionError:
    return AssertionError(f"timed out after {limit:g}s waiting for {what}")


async def wait_until(
    predicate: Callable[[], T],
    what: str,
    *,
    limit: float = LIMIT,
    interval: float = INTERVAL,
    proc: subprocess.Popen[Any] | None = None,
    pause: Callable[[float], Awaitable[object]] = asyncio.sleep,
) -> T:
    """Poll ``predicate`` until it returns something truthy, and return that.

    Fails (AssertionError naming ``what``) after ``limit`` seconds, or at once if ``proc`` exits first.
    ``pause`` sleeps between looks (a Textual pilot's ``pause`` also lets the app refresh).
    """
    loop = asyncio.get_running_loop()
    deadline = loop.time() + limit
    while True:
        value = predicate()
        if value:
            return value
        _exited(proc, what)
        if loop.time() > deadline:
            raise _timed_out(limit, what)
        await pause(interval)


def wait_until_sync(
    predicate: Callable[[], T],
    what: str,
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
