"""Why a download attempt failed: one small hierarchy, with no I/O and no HTTP library.

:func:`engine.http.classify` is the one boundary that maps aiohttp's and the OS's exceptions onto
:class:`DownloadError`; everything above it (the retry budget, events, metrics) sees only these.
"""

from __future__ import annotations

from enum import StrEnum

from engine.escaping import one_line


class ErrorKind(StrEnum):
    """Short machine-readable cause of a failed attempt: the ``kind`` of retry events and metrics.

    A StrEnum, so events and JSON carry the plain strings they always did.
    """

    TIMEOUT = "timeout"
    """No connection or no data within the timeout."""
    CONNECTION = "connection"
    """The connection could not be made or broke."""
    TRUNCATED = "truncated"
    """The body ended before its declared end."""
    TOO_SLOW = "too_slow"
    """Data came, but slower than the lowest speed (``--lowest-speed``) for a whole window."""
    HTTP_408 = "http_408"
    """The server timed the request out."""
    HTTP_429 = "http_429"
    """The server asked us to slow down."""
    HTTP_5XX = "http_5xx"
    """A server error."""
    HTTP_4XX = "http_4xx"
    """A client error other than 408 and 429: retrying will not change it."""
    HTTP_STATUS = "http_status"
    """Any other status the download cannot use (a redirect left unfollowed, 204, ...)."""
    PROTOCOL = "protocol"
    """The server broke the range protocol (ignored Range, wrong Content-Range)."""
    CHANGED = "changed"
    """The remote file kept changing under the download."""
    URL = "url"
    """The URL is malformed or of an unsupported scheme."""
    DNS = "dns"
    """The host name does not resolve."""
    REDIRECT = "redirect"
    """Too many redirects."""
    TLS = "tls"
    """The server's certificate is not trusted."""
    IO = "io"
    """A local file system error."""
    REQUEST = "request"
    """The request could not be built from the task's options; nothing was sent."""
    NAME = "name"
    """No safe or free file name for the download."""
    CHECKSUM = "checksum"
    """The finished file does not match the expected checksum."""
    ERROR = "error"
    """Anything not classified more precisely."""


class DownloadError(Exception):
    """A failed attempt; ``permanent`` ones end the task, others are retried.

    The reason is made safe here, whoever raises: a reason phrase or an exception's text may hold
    what a server sent, and the reason goes on to events, history, the session, ``ls`` and stderr.
    """

    def __init__(
        self,
        reason: str,
        *,
        permanent: bool = False,
        kind: ErrorKind = ErrorKind.ERROR,
        retry_after: float | None = None,
    ) -> None:
        reason = one_line(reason)
        super().__init__(reason)
        self.reason = reason
        """One line saying what went wrong: control characters escaped, at most
        :data:`~engine.escaping.MAX_LINE` characters (see :func:`engine.escaping.one_line`)."""
        self.permanent = permanent
        """True when retrying cannot help."""
        self.kind = kind
        """Short cause, for retry events and metrics."""
        self.retry_after = retry_after
        """Seconds the server asked us to wait, if it did."""


class RemoteChanged(Exception):
    """The remote file is not the one the partial download came from."""


class ControlWriteError(Exception):
    """Writing a control file failed; the data it would describe is on disk and the old file stays.

    Kept apart from OSError so a checkpoint's failure is never mistaken for a failed write of data.
    """

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason
        """One line saying what went wrong, e.g. ``No space left on device``."""
