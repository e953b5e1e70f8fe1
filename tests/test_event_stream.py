"""Both event streams keep the client contract: ``close()`` drops what is pending, ``aclose()`` drains."""

from __future__ import annotations

import asyncio

from engine.bus import EventBus
from engine.client import EventStream
from engine.daemon.client import RemoteClient
from engine.events import Event, SegmentFinished

LIMIT = 2.0
"""Seconds any read may take before the test fails rather than hangs."""


def lifecycle(n: int) -> SegmentFinished:
    """The n-th lifecycle event, recognisable by its ``start``."""
    return SegmentFinished(float(n), 1, start=n, end=n + 1)


async def read_all(stream: EventStream) -> list[Event]:
    """Everything the stream yields until it ends."""
    async with asyncio.timeout(LIMIT):
        return [event async for event in stream]


async def test_the_bus_and_the_remote_streams_are_event_streams() -> None:
    bus = EventBus()
    assert isinstance(bus.subscribe(), EventStream)
    async with RemoteClient(socket_path="/nonexistent/daemon.sock") as client:
        assert isinstance(client.subscribe(), EventStream)


async def test_aclose_hands_out_what_was_published_before_it_then_ends() -> None:
    bus = EventBus()
    sub = bus.subscribe()
    reader = asyncio.create_task(read_all(sub))
    for n in range(3):
        bus.publish(lifecycle(n))
    await sub.aclose()
    bus.publish(lifecycle(99))  # after the drain began: not delivered
    assert await reader == [lifecycle(0), lifecycle(1), lifecycle(2)]
    assert bus.subscriber_count == 0


async def test_close_drops_what_is_pending() -> None:
    bus = EventBus()
    sub = bus.subscribe()
    bus.publish(lifecycle(1))
    sub.close()
    assert await read_all(sub) == []
    assert bus.subscriber_count == 0
