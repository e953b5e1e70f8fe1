"""The first request of a run: learn size, range support and validators, resuming where it can."""

from __future__ import annotations

import asyncio

from yarl import URL

from engine.errors import DownloadError, ErrorKind, RemoteChanged
from engine.escaping import escape_controls
from engine.http import StatusLine, Validators, classify, parse_content_range, response_error
from engine.models import TaskState
from engine.redaction import redact
from engine.segments import first_range
from engine.transfer import Opened, Transfer, validators_differ


async def probe(t: Transfer) -> Opened:
    """Send the first request and take in what it says of the file; the response keeps streaming.

    Retries transient failures within the task's budget and starts over (forgetting what is on disk)
    when the remote file is no longer the one the partial download came from.
    """
    task = t.task
    task.set_state(TaskState.PROBING)
    retry = t.retry()
    while True:
        resuming = bool(task.resumable and task.size is not None and task.done.covered)
        gaps = task.done.gaps(task.size) if resuming and task.size else []
        # A closed range, not bytes=START-: once other connections take over the rest of the file,
        # whatever an open range had in flight would be thrown away (up to a socket buffer or more).
        # With nothing missing (a crash before the rename) one byte re-validates the file.
        start, last = first_range(gaps, task.size if resuming else None, task.options.min_split)
        asked = f"bytes={start}-{last}"
        headers = {"Range": asked}
        if_range = t.if_range() if resuming else None
        if if_range:
            headers["If-Range"] = if_range
        try:
            opened = await t.open_first(task.url, headers)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # every client failure is classified, none escapes raw
            await t.retry_wait(retry, classify(exc))
            continue
        resp = opened.resp
        if resp.status == 416 and resuming:
            opened.close()
            t.restart("remote file is shorter than the partial download; downloading again")
            continue
        if resp.status not in (200, 206) and not _empty_file(resp, start):
            opened.close()
            await t.retry_wait(retry, response_error(resp))
            continue
        try:
            _accept(t, opened, start, asked, resuming)
        except RemoteChanged as exc:
            opened.close()
            t.restart(str(exc))
            continue
        except BaseException:
            opened.close()
            raise
        return opened


def _accept(t: Transfer, opened: Opened, start: int, asked: str, resuming: bool) -> None:
    """Record size, range support and validators of a usable probe response in the task.

    A 206 may end before or after the range asked for (a file shorter than it, a server that caps or
    ignores the last byte): the fetch takes the range its Content-Range declares. It must start where
    asked and give the total size.
    """
    task = t.task
    resp = opened.resp
    validators = Validators.of(resp.headers)
    if _empty_file(resp, start):
        # "416 bytes */0" is how a server says the file is empty: nothing to fetch.
        task.resumable = True
        task.size = 0
    elif resp.status == 206:
        cr = parse_content_range(resp.headers.get("Content-Range"))
        if cr is None or cr[0] != start or cr[2] is None:
            raise DownloadError(
                f"invalid Content-Range {resp.headers.get('Content-Range')!r} for {asked}",
                permanent=True,
                kind=ErrorKind.PROTOCOL,
            )
        total = cr[2]
        if resuming and total != task.size:
            raise RemoteChanged(f"remote size changed from {task.size} to {total} bytes")
        if resuming and task.options.check_validators and validators_differ(task, validators):
            raise RemoteChanged("remote file changed (ETag/Last-Modified differ)")
        task.resumable = True
        task.size = total
    else:
        if resuming and t.if_range():
            # If-Range failed: the file changed, but the server may well still do ranges,
            # so probe again rather than settle for one connection.
            raise RemoteChanged("remote file changed; downloading again from the start")
        if resuming or task.done.covered:
            t.restart("server no longer honours ranges; downloading again from the start")
        task.resumable = False
        task.size = opened.resp.content_length
    task.etag, task.last_modified = validators.etag, validators.last_modified
    # yarl percent-encodes what a Location held, but this is shown (TaskProbed): escape it anyway.
    task.final_url = escape_controls(redact(opened.url))
    t.url = _with_credentials(str(opened.url), task.url)


def _empty_file(resp: StatusLine, start: int) -> bool:
    return (
        resp.status == 416
        and start == 0
        and resp.headers.get("Content-Range", "").replace(" ", "").lower() == "bytes*/0"
    )


def _with_credentials(final: str, original: str) -> str:
    """``final`` with the user and password of ``original`` when both are on the same origin.

    aiohttp moves URL credentials into the Authorization header, so ``resp.url`` never carries them;
    without this every segment request after the probe would be sent without them (401).
    """
    src, dst = URL(original), URL(final)
    if src.user is None or dst.user is not None or src.origin() != dst.origin():
        return final
    return str(dst.with_user(src.user).with_password(src.password))
