"""What the fault server serves and what it saw: a file's spec with its faults, and per-file accounting."""

from __future__ import annotations

import re
import time
from dataclasses import dataclass, field
from typing import Literal

from faultserver.content import DEFAULT_CHUNK

# aiohttp refuses to send these in a header value (header-injection guard), so specs are checked early.
FORBIDDEN_HEADER_CHARS = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")

Outcome = Literal[
    "pending",  # still being answered
    "complete",  # the whole body (or the headers, for HEAD) went out
    "status",  # a fixed status without a file body: 404/410 specs, 416, 405, unknown names
    "unauthorized",  # 401: missing or wrong credentials
    "failed",  # an injected error status (FileSpec.fail_status)
    "rejected",  # over FileSpec.max_connections
    "reset",  # the server reset the connection mid-body
    "truncated",  # the server closed the connection before the declared end
    "disconnected",  # the client went away mid-body
]


@dataclass(frozen=True)
class FileSpec:
    """A virtual file and the faults its server shows.

    Faults with a ``*_times`` budget fire at most that many times in total over all requests for this
    file (None: every time), so a client that retries eventually succeeds. A fault that needs
    ``*_after`` bytes fires only in responses whose body is longer than that.
    """

    name: str
    """Identifies the file; seeds its content; its URL is ``/f/<quoted name>`` unless ``path`` is set."""
    size: int = 0
    """Length of the file in bytes."""
    version: int = 0
    """Bump it (:meth:`FaultServer.set_version`) to change the content, ETag and Last-Modified."""
    path: str | None = None
    """A custom raw URL path (for example ``/`` or ``/dl/``) to serve the file at instead."""
    status: int | None = None
    """Answer every request with this status and a short text body (404, 410, 500, ...)."""
    ranges: bool = True
    """Honour ``Range``; False: always 200 with the full body."""
    advertise_ranges: bool | None = None
    """Send ``Accept-Ranges: bytes``; None follows ``ranges`` (True with ranges=False lies)."""
    chunked: bool = False
    """Send bodies chunked, without ``Content-Length`` (an unknown length)."""
    etag: bool = True
    """Send an ``ETag``."""
    last_modified: bool = True
    """Send a ``Last-Modified``."""
    unstable_etag: bool = False
    """A different ETag on every response (like some signed-URL stores): ``If-Range`` never matches."""
    content_disposition: str | None = None
    """The raw ``Content-Disposition`` header value (hostile ones welcome; no CR/LF)."""
    content_type: str = "application/octet-stream"
    """The ``Content-Type`` header value."""
    extra_headers: tuple[tuple[str, str], ...] = ()
    """More response headers, as (name, value) pairs."""
    auth: tuple[str, str] | None = None
    """Require HTTP basic auth with this (user, password); else 401."""
    rate: int | None = None
    """Throttle each response (so each connection) to this many bytes per second."""
    slow_rate: int | None = None
    """Throttle the first ``slow_times`` responses to this rate instead (one laggard connection)."""
    slow_times: int | None = 1
    """How many responses are slow (None: all)."""
    delay: float = 0.0
    """Seconds to wait before sending the response headers."""
    chunk_size: int = DEFAULT_CHUNK
    """Bytes per write (smaller when throttled, so pacing is smooth; at most :data:`PATTERN_PERIOD`)."""
    redirects: int = 0
    """Length of the redirect chain :meth:`FaultServer.url` starts at (0: the file itself)."""
    redirect_status: int = 302
    """Status of each redirect hop (301, 302, 303, 307, 308)."""
    fail_status: int | None = None
    """Answer the first ``fail_times`` requests with this status (503, 429, 500, ...) instead."""
    fail_times: int | None = 1
    """How many requests get ``fail_status`` (None: all)."""
    retry_after: str | None = None
    """``Retry-After`` value sent with ``fail_status`` (seconds or an HTTP date)."""
    max_connections: int | None = None
    """At most this many responses in flight for this file; extra requests get ``over_limit_status``."""
    over_limit_status: int = 503
    """Status for requests over ``max_connections``."""
    over_limit_retry_after: str | None = None
    """``Retry-After`` sent with ``over_limit_status``."""
    reset_after: int | None = None
    """Reset the connection (TCP RST) after sending this many body bytes of a response."""
    reset_times: int | None = 1
    """How many resets in total (None: every response)."""
    truncate_after: int | None = None
    """Close the connection cleanly after this many body bytes, short of the declared length."""
    truncate_times: int | None = 1
    """How many truncations in total (None: every response)."""
    stall_after: int | None = None
    """Stop sending for ``stall_for`` seconds after this many body bytes of a response."""
    stall_for: float = 0.0
    """Length of a stall in seconds."""
    stall_times: int | None = 1
    """How many stalls in total (None: every response)."""
    description: str = ""
    """What this file demonstrates (shown by the demo CLI)."""


@dataclass
class RequestRecord:
    """One request the server answered for a file."""

    method: str
    """HTTP method."""
    path: str
    """Raw request path with query string."""
    range: str | None
    """The ``Range`` header, as received."""
    if_range: str | None
    """The ``If-Range`` header, as received."""
    headers: dict[str, str]
    """All request headers (repeated names keep the last value)."""
    status: int = 0
    """Status sent (0 until decided)."""
    bytes_sent: int = 0
    """Body bytes handed to the connection's transport."""
    outcome: Outcome = "pending"
    """How the response ended."""
    started: float = field(default_factory=time.monotonic)
    """Monotonic time the request arrived."""
    ended: float | None = None
    """Monotonic time the response ended."""


@dataclass
class FileStats:
    """Accounting for one file: every request, every byte, every fault fired.

    The fault counters double as the budgets of the ``*_times`` faults: :meth:`FaultServer.reset_stats`
    re-arms them.
    """

    records: list[RequestRecord] = field(default_factory=list)
    """Every request for the file (not counting redirect hops), in arrival order."""
    bytes_sent: int = 0
    """Body bytes handed to transports over all responses (updated as they go)."""
    active: int = 0
    """Responses in flight now (accepted ones only: not rejected, failed or fixed-status)."""
    peak_concurrent: int = 0
    """The most responses ever in flight at once."""
    redirects: int = 0
    """Redirect hops served towards this file."""
    failures: int = 0
    """``fail_status`` answers sent."""
    rejections: int = 0
    """Requests over ``max_connections`` turned away."""
    resets: int = 0
    """Connections reset mid-body."""
    truncations: int = 0
    """Bodies cut short."""
    stalls: int = 0
    """Stalls started."""
    slowed: int = 0
    """Responses paced at ``slow_rate``."""

    @property
    def requests(self) -> int:
        """Number of requests for the file."""
        return len(self.records)

    @property
    def range_headers(self) -> list[str | None]:
        """The ``Range`` header of every request (None where absent), in order."""
        return [r.range for r in self.records]

    @property
    def statuses(self) -> list[int]:
        """The status of every request, in order."""
        return [r.status for r in self.records]

    @property
    def completed(self) -> int:
        """Responses whose body went out whole."""
        return sum(1 for r in self.records if r.outcome == "complete")


@dataclass
class FileState:
    """A registered file: its spec (replaceable at run time) and its stats."""

    spec: FileSpec
    """The file's current spec (:meth:`FaultServer.update` replaces it)."""
    stats: FileStats = field(default_factory=FileStats)
    """The file's accounting, kept across spec changes."""


def fire(stats: FileStats, counter: str, times: int | None) -> bool:
    """Consume one use of a budgeted fault; False once the budget is spent."""
    used: int = getattr(stats, counter)
    if times is not None and used >= times:
        return False
    setattr(stats, counter, used + 1)
    return True


def check_headers(spec: FileSpec) -> None:
    """Refuse header values that could not be sent, at registration rather than as a 500 later."""
    values = [v for _, v in spec.extra_headers]
    if spec.content_disposition is not None:
        values.append(spec.content_disposition)
    for value in values:
        if FORBIDDEN_HEADER_CHARS.search(value):
            raise ValueError(f"header value {value!r} has control characters aiohttp will not send")
