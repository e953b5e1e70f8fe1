"""The whole-body fetch: a server without ranges (or of unknown size) sends the file in one stream."""

from __future__ import annotations

import asyncio
import sys

from engine.http import classify, response_error, truncated
from engine.ranges import RangeSet
from engine.segments import Segment
from engine.task import Connection
from engine.transfer import Opened, Transfer, made_progress


async def fetch_whole(t: Transfer, first: Opened) -> None:
    """One stream from byte 0, starting with the probe's response ``first``; a failure starts it over."""
    task = t.task
    opened: Opened | None = first
    retry = t.retry()
    while True:
        if opened is None:
            try:
                opened = await t.open(t.url, {})
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # classified; permanent ones end the task
                await t.retry_wait(retry, classify(exc))
                continue
            if opened.resp.status != 200:
                resp = opened.resp
                opened.close()
                opened = None
                await t.retry_wait(retry, response_error(resp))
                continue
            task.size = opened.resp.content_length
            task.done = RangeSet()
        declared = task.size
        end = declared if declared is not None else sys.maxsize
        seg = Segment(0, end, 0, committed=end)
        task.plan = [seg]
        conn = Connection(1, seg)
        conn.meter.start()
        task.connections = {1: conn}
        try:
            await t.stream_opened(conn, seg, opened, ranged=False)
            if declared is not None and seg.pos < declared:
                raise truncated()
            task.size = seg.pos
            seg.end = seg.pos
            return
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # classified; permanent ones end the task
            task.connections = {}
            opened.close()
            opened = None
            if made_progress(conn, seg, seg.start):
                retry.progressed()
            task.done = RangeSet()
            task.plan = []
            await t.retry_wait(retry, classify(exc))
        finally:
            task.connections = {}
            if opened is not None:
                opened.close()
                opened = None
