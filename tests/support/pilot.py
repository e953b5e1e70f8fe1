"""Waiting inside a dashboard driven by Textual's pilot."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from textual.pilot import Pilot

from tests.support.limits import LIMIT
from tests.support.waiting import What, wait_until

T = TypeVar("T")


async def wait_in_app(
    pilot: Pilot[Any], predicate: Callable[[], T | Awaitable[T]], what: What, limit: float = LIMIT
) -> T:
    """:func:`~tests.support.waiting.wait_until`, pausing through the pilot so the app keeps running
    and refreshing between looks."""
    return await wait_until(predicate, what, limit=limit, interval=0.05, pause=pilot.pause)
