"""HTTP details of a download: request options, response validation, error classification."""

from __future__ import annotations

import asyncio
import base64
import os
import re
import ssl
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass
from http import HTTPStatus
from pathlib import Path
from typing import Protocol

from yarl import URL

from engine.backoff import parse_retry_after
from engine.cookiefile import cookie_header, cookies_for
from engine.errors import DownloadError, ErrorKind
from engine.models import TaskOptions
from engine.rangeclient import (
    BodyTruncated,
    CertificateUntrusted,
    ConnectFailed,
    ConnectTimedOut,
    HostNotFound,
    MalformedResponse,
    ServerClosed,
)
from engine.redaction import redact, redact_text

USER_AGENT = "fetchtop/0.1"
SUPPORTED_SCHEMES = ("http", "https")
_CONTENT_RANGE = re.compile(r"^\s*bytes\s+(\d+)-(\d+)/(\d+|\*)\s*$", re.IGNORECASE)
MAX_DETAIL = 120
"""Most characters of an exception's own text quoted in a reason, so an error stays one short line."""


def check_url(url: str) -> URL:
    """Parse a URL the engine can fetch, or raise a permanent DownloadError saying why not."""
    try:
        u = URL(url)
    except (ValueError, TypeError) as exc:
        raise DownloadError(f"malformed URL: {exc}", permanent=True, kind=ErrorKind.URL) from None
    if u.scheme.lower() not in SUPPORTED_SCHEMES:
        scheme = u.scheme or "(none)"
        raise DownloadError(f"unsupported URL scheme {scheme!r}", permanent=True, kind=ErrorKind.URL)
    if not u.host:
        raise DownloadError("malformed URL: no host", permanent=True, kind=ErrorKind.URL)
    return u


def credential_headers(url: URL, options: TaskOptions, now: float) -> dict[str, str]:
    """Authorization from ``-u`` and Cookie from ``--load-cookies`` for a request of ``url`` at Unix
    time ``now``: the cookies that match its host, path and scheme, unexpired.

    The caller asks only for a URL on the task's own origin: neither goes anywhere else.
    """
    out = {}
    if options.user is not None:
        out["Authorization"] = basic_auth(options.user.encode("utf-8"))
    if options.cookies:
        value = cookie_header(cookies_for(options.cookies, url.scheme, url.host or "", url.path, now))
        if value is not None:
            out["Cookie"] = value
    return out


def request_headers(options: TaskOptions, credentials: Mapping[str, str] | None = None) -> dict[str, str]:
    """Headers sent with every request of a task, with ``credentials`` (:func:`credential_headers`).

    As in curl, an Authorization header given with ``-H`` wins over ``-u``; cookies from the file
    are sent after a Cookie header given with ``-H``.
    """
    headers = {"User-Agent": options.user_agent or USER_AGENT, "Accept-Encoding": "identity"}
    for name, value in options.headers:
        headers[name] = value
    if credentials:
        given = {name.lower(): name for name in headers}
        for name, value in credentials.items():
            if name.lower() == "cookie" and "cookie" in given:
                headers[given["cookie"]] = f"{headers[given['cookie']]}; {value}"
            elif name.lower() not in given:
                headers[name] = value
    return headers


def direct_headers(
    url: URL, options: TaskOptions, credentials: Mapping[str, str] | None = None
) -> dict[str, str] | None:
    """The whole header set of a GET of ``url`` sent by fetchtop's own client instead of aiohttp.

    What aiohttp would send for it: Host, Accept, the task's headers, and URL credentials as Basic
    auth unless an Authorization header is given. None when aiohttp must send it: credentials it
    cannot encode, or a ``.netrc`` it would read (its session trusts the environment).
    """
    if _netrc_may_apply():
        return None
    given = request_headers(options, credentials)
    names = {name.lower() for name in given}
    headers = {} if "host" in names else {"Host": url.host_port_subcomponent or ""}
    if "accept" not in names:
        headers["Accept"] = "*/*"
    headers.update(given)
    if "authorization" in names:
        return headers
    if url.user is not None:
        try:
            token = f"{url.user}:{url.password or ''}".encode("latin-1")
        except UnicodeEncodeError:
            return None
        headers["Authorization"] = basic_auth(token)
    return headers


def basic_auth(user_and_password: bytes) -> str:
    """The Authorization value of HTTP Basic auth for ``USER:PASSWORD`` already encoded."""
    return "Basic " + base64.b64encode(user_and_password).decode("ascii")


def _netrc_may_apply() -> bool:
    """Whether aiohttp would find a ``.netrc`` (``$NETRC``, else the home directory's) to read."""
    given = os.environ.get("NETRC")
    try:
        return (Path(given) if given else Path.home() / ".netrc").exists()
    except (RuntimeError, OSError):
        return True  # no home to look in, or an unreadable path: let aiohttp decide


def request_url(url: str, headers: Mapping[str, str]) -> str:
    """The URL to request: without its user and password when an Authorization header is given.

    As in curl, an explicit ``Authorization`` header wins over credentials in the URL (aiohttp
    would refuse to send both).
    """
    u = URL(url)
    if u.user is None and u.password is None:
        return url
    if not any(name.lower() == "authorization" for name in headers):
        return url
    return str(u.with_user(None))


def ssl_option(options: TaskOptions) -> ssl.SSLContext | bool:
    """aiohttp's ``ssl=`` argument: False skips verification, True uses the default context."""
    return False if options.insecure else True


def parse_content_range(value: str | None) -> tuple[int, int, int | None] | None:
    """``(first, last, total)`` from ``bytes first-last/total``; total None for ``*``."""
    if not value:
        return None
    m = _CONTENT_RANGE.match(value)
    if not m:
        return None
    first, last = int(m.group(1)), int(m.group(2))
    total = None if m.group(3) == "*" else int(m.group(3))
    if last < first or (total is not None and last >= total):
        return None
    return first, last, total


def status_error(status: int, reason: str | None, retry_after: float | None = None) -> DownloadError:
    """The error for an unexpected HTTP status: 408, 429 and 5xx are transient, other 4xx permanent.

    The server's reason phrase is kept, escaped and cut to one short line by :class:`DownloadError`
    (``HTTP 404 \\033]0;...``), as is every reason :func:`classify` gives.
    """
    try:
        phrase = reason or HTTPStatus(status).phrase
    except ValueError:
        phrase = reason or ""
    text = f"HTTP {status} {phrase}".strip()
    if status == 429:
        return DownloadError(text, kind=ErrorKind.HTTP_429, retry_after=retry_after)
    if status == 408:
        return DownloadError(text, kind=ErrorKind.HTTP_408, retry_after=retry_after)
    if status >= 500:
        return DownloadError(text, kind=ErrorKind.HTTP_5XX, retry_after=retry_after)
    kind = ErrorKind.HTTP_4XX if 400 <= status < 500 else ErrorKind.HTTP_STATUS
    return DownloadError(text, permanent=True, kind=kind)


class StatusLine(Protocol):
    """A response's status, reason and headers: aiohttp's or the range client's."""

    @property
    def status(self) -> int: ...
    @property
    def reason(self) -> str | None: ...
    @property
    def headers(self) -> Mapping[str, str]: ...


def response_error(resp: StatusLine) -> DownloadError:
    """The error for a response with an unexpected status, honouring its Retry-After."""
    retry_after = parse_retry_after(resp.headers.get("Retry-After"), time.time())
    return status_error(resp.status, resp.reason, retry_after)


def truncated() -> DownloadError:
    """The error for a body that ended before its declared end: transient, the rest is asked for again."""
    return DownloadError("body ended early (truncated transfer)", kind=ErrorKind.TRUNCATED)


def detail(text: str) -> str:
    """The first line of an exception's text, passwords removed, cut to :data:`MAX_DETAIL` characters."""
    lines = text.strip().splitlines()
    line = redact_text(lines[0].strip()) if lines else ""
    return line if len(line) <= MAX_DETAIL else line[: MAX_DETAIL - 3] + "..."


def local_error(exc: ValueError | TypeError) -> DownloadError:
    """The permanent error for a request that could not be built: nothing left the machine."""
    text = str(exc)
    if text.startswith("Cannot combine AUTHORIZATION header"):
        # URL credentials give way to the header (request_url), so what remains is ~/.netrc.
        text = "an Authorization header (-H) and credentials from ~/.netrc both apply"
    return DownloadError(
        f"cannot send the request: {detail(text) or type(exc).__name__}",
        permanent=True,
        kind=ErrorKind.REQUEST,
    )


def too_slow(rate: float, seconds: float) -> DownloadError:
    """The error for a connection dropped under the lowest speed: transient, a new connection may do
    better. ``rate`` and ``seconds`` are what was measured."""
    return DownloadError(f"too slow: {rate:.0f} B/s for {seconds:.1f} s", kind=ErrorKind.TOO_SLOW)


def classify(exc: BaseException) -> DownloadError:
    """Turn a client exception into a DownloadError with a one-line reason."""
    if isinstance(exc, DownloadError):
        return exc
    if isinstance(exc, HostNotFound):
        return DownloadError(str(exc), permanent=True, kind=ErrorKind.DNS)
    if isinstance(exc, ConnectFailed):
        return DownloadError(str(exc), kind=ErrorKind.CONNECTION)
    if isinstance(exc, ConnectTimedOut):
        return DownloadError("connect timed out", kind=ErrorKind.TIMEOUT)
    if isinstance(exc, CertificateUntrusted):
        return DownloadError(f"TLS certificate not trusted: {exc}", permanent=True, kind=ErrorKind.TLS)
    if isinstance(exc, BodyTruncated):
        return truncated()
    if isinstance(exc, ServerClosed):
        return DownloadError(detail(str(exc)), kind=ErrorKind.CONNECTION)
    if isinstance(exc, MalformedResponse):
        return DownloadError(f"malformed response: {detail(str(exc))}", kind=ErrorKind.PROTOCOL)
    if "aiohttp" in sys.modules:
        # Only then can exc be one of aiohttp's (a run on the range client alone never imports it).
        mapped = _classify_aiohttp(exc)
        if mapped is not None:
            return mapped
    if isinstance(exc, asyncio.TimeoutError | TimeoutError):
        return DownloadError("stalled: no data within the timeout", kind=ErrorKind.TIMEOUT)
    if isinstance(exc, ConnectionError):
        return DownloadError(
            f"connection error: {detail(str(exc)) or type(exc).__name__}", kind=ErrorKind.CONNECTION
        )
    if isinstance(exc, OSError):
        return DownloadError(f"I/O error: {exc.strerror or exc}", permanent=True, kind=ErrorKind.IO)
    return DownloadError(f"{type(exc).__name__}: {detail(str(exc))}", kind=ErrorKind.ERROR)


def _classify_aiohttp(exc: BaseException) -> DownloadError | None:
    """:func:`classify` for aiohttp's exceptions; None for any other."""
    import aiohttp
    from aiohttp.http_exceptions import HttpProcessingError

    if isinstance(exc, aiohttp.ClientConnectorDNSError):
        return DownloadError(f"unknown host: {exc.host}", permanent=True, kind=ErrorKind.DNS)
    if isinstance(exc, aiohttp.InvalidURL | aiohttp.NonHttpUrlClientError):
        return DownloadError(f"malformed URL: {redact(str(exc.args[0]))}", permanent=True, kind=ErrorKind.URL)
    if isinstance(exc, aiohttp.TooManyRedirects):
        return DownloadError("too many redirects", permanent=True, kind=ErrorKind.REDIRECT)
    if isinstance(exc, aiohttp.ClientConnectorCertificateError):
        return DownloadError(
            f"TLS certificate not trusted: {exc.certificate_error}", permanent=True, kind=ErrorKind.TLS
        )
    if isinstance(exc, aiohttp.ConnectionTimeoutError):
        return DownloadError("connect timed out", kind=ErrorKind.TIMEOUT)
    if isinstance(exc, aiohttp.SocketTimeoutError):
        return DownloadError("stalled: no data within the timeout", kind=ErrorKind.TIMEOUT)
    if isinstance(exc, aiohttp.ClientPayloadError):
        return truncated()
    if isinstance(exc, aiohttp.ClientConnectorError):
        return DownloadError(
            f"cannot connect to {exc.host}:{exc.port}: {exc.os_error.strerror}", kind=ErrorKind.CONNECTION
        )
    if isinstance(exc, aiohttp.ServerDisconnectedError):
        return DownloadError("server closed the connection", kind=ErrorKind.CONNECTION)
    if isinstance(exc, aiohttp.ClientResponseError) and isinstance(exc.__cause__, HttpProcessingError):
        # The response could not be parsed; aiohttp's message quotes the offending bytes.
        return DownloadError(
            f"malformed response: {detail(exc.message).rstrip(':') or 'unparsable'}", kind=ErrorKind.PROTOCOL
        )
    if isinstance(exc, aiohttp.ClientError):
        # aiohttp quotes the proxy URL, password included, in a refused CONNECT's message.
        return DownloadError(
            f"connection error: {detail(str(exc)) or type(exc).__name__}", kind=ErrorKind.CONNECTION
        )
    return None


@dataclass(frozen=True)
class Validators:
    """What identifies one version of a remote file."""

    etag: str | None
    """Strong or weak ETag, as sent."""
    last_modified: str | None
    """Last-Modified, as sent."""

    def if_range(self) -> str | None:
        """The If-Range value to send: a strong ETag, else Last-Modified."""
        if self.etag and not self.etag.startswith("W/"):
            return self.etag
        return self.last_modified

    @classmethod
    def of(cls, headers: Mapping[str, str]) -> Validators:
        """Validators from response headers."""
        return cls(headers.get("ETag"), headers.get("Last-Modified"))
