"""Asking a new URL what it serves, for :meth:`engine.engine.Engine.set_url` (expired links).

One ranged GET of the first byte (``bytes=0-0``) goes through the task's own request path
(:meth:`engine.transfer.Transfer.open_first`: its headers, proxy, TLS options, redirects and host
slot), not a HEAD: some servers answer HEAD differently from GET, or not at all, and signed links are
often signed for GET only. Its ``Content-Range`` gives the size, its headers the validators.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from engine.client import EngineError
from engine.errors import DownloadError
from engine.escaping import escape_controls
from engine.http import Validators, check_url, classify, parse_content_range, response_error
from engine.redaction import redact
from engine.task import Task
from engine.transfer import Context, Transfer
from engine.urlcheck import Remote

PROBE_TIMEOUT = 20.0
"""Seconds the new URL gets to answer (redirects included) before the change is refused."""


@dataclass(frozen=True)
class Probed:
    """What the new URL answered."""

    remote: Remote
    """Size, range support and validators."""
    final_url: str
    """Where the answer came from after redirects, credentials removed and controls escaped."""


async def probe_url(task: Task, ctx: Context, url: str) -> Probed:
    """Ask ``url`` for its first byte with ``task``'s options; raises EngineError with the reason."""
    try:
        check_url(url)
    except DownloadError as exc:
        raise EngineError(exc.reason) from None
    transfer = Transfer(task, ctx)
    try:
        async with asyncio.timeout(PROBE_TIMEOUT):
            opened = await transfer.open_first(url, {"Range": "bytes=0-0"})
    except asyncio.CancelledError:
        raise
    except TimeoutError:
        raise EngineError(f"the new URL did not answer within {PROBE_TIMEOUT:g} s") from None
    except Exception as exc:  # every client failure is classified, none escapes raw
        raise EngineError(f"the new URL cannot be fetched: {classify(exc).reason}") from None
    try:
        resp = opened.resp
        validators = Validators.of(resp.headers)
        if resp.status == 206:
            cr = parse_content_range(resp.headers.get("Content-Range"))
            if cr is None or cr[0] != 0 or cr[2] is None:
                raise EngineError(
                    f"the new URL sent an invalid Content-Range "
                    f"{escape_controls(resp.headers.get('Content-Range', ''))!r}"
                )
            remote = Remote(cr[2], True, validators.etag, validators.last_modified)
        elif resp.status == 416 and resp.headers.get("Content-Range", "").replace(" ", "") == "bytes*/0":
            remote = Remote(0, True, validators.etag, validators.last_modified)  # an empty file
        elif resp.status == 200:
            remote = Remote(resp.content_length, False, validators.etag, validators.last_modified)
        else:
            raise EngineError(f"the new URL answered {response_error(resp).reason}")
        return Probed(remote, escape_controls(redact(opened.url)))
    finally:
        opened.close()
