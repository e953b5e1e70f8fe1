"""Plain-data descriptions of tasks and the engine: what events and snapshots carry.

Everything here is a frozen dataclass of JSON-friendly values, so a snapshot can cross a
socket to a remote dashboard and come back equal (see :mod:`engine.codec`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum

from engine.cookiefile import CookieRow

MiB = 1024 * 1024

MAX_CONNECTIONS = 32
"""The most connections one download may use (the engine refuses more; the CLI says so first)."""


class TaskState(StrEnum):
    """The lifecycle of one download."""

    QUEUED = "queued"
    PROBING = "probing"
    DOWNLOADING = "downloading"
    PAUSED = "paused"
    VERIFYING = "verifying"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"

    @property
    def active(self) -> bool:
        """True while the task holds a download slot."""
        return self in (TaskState.PROBING, TaskState.DOWNLOADING, TaskState.VERIFYING)

    @property
    def finished(self) -> bool:
        """True once the task will do nothing more unless retried."""
        return self in (TaskState.COMPLETED, TaskState.FAILED, TaskState.CANCELLED)


class SegmentState(StrEnum):
    """The state of one byte range of a file."""

    DONE = "done"
    ACTIVE = "active"
    PENDING = "pending"


@dataclass(frozen=True)
class TaskOptions:
    """What the user asked for one download; every field has the CLI's default."""

    output: str | None = None
    """File name to save as (``-o``); None derives it from the response or URL."""
    directory: str = "."
    """Directory the file is saved in (created if missing)."""
    connections: int = 8
    """Most connections this download opens at once (1..32)."""
    speed_limit: int | None = None
    """Bytes per second for this task alone; None means unlimited."""
    checksum: str | None = None
    """``ALGO=HEX`` verified before the final rename; wins over ``checksum_table``."""
    checksum_table: tuple[tuple[str, str], ...] = ()
    """``(file name, "ALGO=HEX")`` rows from ``--checksum-file`` (engine.checksumfile.to_table): the
    file is checked against the row for the name it was given before numbering."""
    checksum_source: str | None = None
    """The checksum file (path or URL, without credentials) the table came from, for messages;
    None when no checksum file was given."""
    checksum_missing_ok: bool = False
    """A file with no row in the table is kept unchecked (``--checksum-missing=ok``) rather than failed."""
    headers: tuple[tuple[str, str], ...] = ()
    """Extra request headers, in order."""
    user_agent: str | None = None
    """User-Agent header; None uses fetchtop's own."""
    proxy: str | None = None
    """Proxy URL; None uses HTTP(S)_PROXY / NO_PROXY from the environment."""
    insecure: bool = False
    """Skip TLS certificate verification."""
    retries: int = 5
    """Consecutive failed attempts without progress before a connection gives up."""
    timeout: float = 30.0
    """Seconds without a byte before a connection is dropped and retried."""
    lowest_speed: int | None = None
    """Bytes per second a connection must average over ``timeout`` seconds, or it is dropped and
    retried (``--lowest-speed``); None for the default, 1 KiB in ``timeout`` seconds (a trickle is a
    stall); 0 for no check."""
    connect_timeout: float = 15.0
    """Seconds allowed to establish a connection."""
    min_split: int = MiB
    """Smallest range a segment is split into."""
    check_validators: bool = True
    """Send If-Range on resume; off for signed URLs whose ETag changes every time."""
    user: str | None = None
    """``USER:PASS`` sent as Basic auth to the URL's origin only (``-u/--user``, a config host
    section's ``user``); an Authorization header (``-H``) wins over it."""
    cookies: tuple[CookieRow, ...] = ()
    """Cookies from a cookies file (``--load-cookies``), each sent only where it matches the URL."""


@dataclass(frozen=True)
class SegmentSnapshot:
    """One byte range ``[start, end)`` of a file and how far it has come."""

    start: int
    """First byte of the range."""
    end: int
    """One past the last byte of the range."""
    done: int
    """Bytes of the range already received."""
    state: SegmentState
    """Whether the range is done, being fetched or waiting."""
    speed: float = 0.0
    """Bytes per second of the connection fetching it, if any."""
    connection: int | None = None
    """Number of the connection fetching it, if any."""


@dataclass(frozen=True)
class TaskSnapshot:
    """Everything known about one task at one moment."""

    id: int
    """The task's id, unique within the engine."""
    url: str
    """The URL as given, with any password removed."""
    state: TaskState
    """Where the task is in its lifecycle."""
    options: TaskOptions
    """The options it was added with (limit as currently set), secret header values and the proxy's
    password redacted (:func:`engine.redaction.redact_options`), the checksum table left out."""
    name: str | None = None
    """File name once decided."""
    path: str | None = None
    """Final path of the file once decided."""
    part_path: str | None = None
    """Path of the partial file while downloading."""
    final_url: str | None = None
    """URL after redirects, with any password removed and control characters escaped."""
    size: int | None = None
    """Total bytes, when the server said."""
    done: int = 0
    """Bytes on disk so far."""
    speed: float = 0.0
    """Instantaneous bytes per second."""
    avg_speed: float = 0.0
    """Bytes per second averaged over the time it was downloading."""
    eta: float | None = None
    """Seconds left at the smoothed rate, when known."""
    connections: int = 0
    """Connections open now."""
    resumable: bool | None = None
    """Whether the server honours ranges; None until probed."""
    etag: str | None = None
    """The file's ETag, if the server sent one (control characters escaped, see engine.escaping)."""
    last_modified: str | None = None
    """The file's Last-Modified, if the server sent one (control characters escaped)."""
    error: str | None = None
    """Why the task failed, one line (a DownloadError's reason: escaped and bounded)."""
    retries: int = 0
    """Retries made so far."""
    last_errors: tuple[str, ...] = ()
    """The latest transient errors, newest last."""
    segments: tuple[SegmentSnapshot, ...] = ()
    """The file's byte ranges in order."""
    added_at: float = 0.0
    """Wall-clock time the task was added."""
    finished_at: float | None = None
    """Wall-clock time it completed, failed or was cancelled."""

    @property
    def progress(self) -> float | None:
        """Fraction done in 0..1, when the size is known."""
        if not self.size:
            return 1.0 if self.state is TaskState.COMPLETED else None
        return min(1.0, self.done / self.size)


@dataclass(frozen=True)
class ScheduleStatus:
    """Where the bandwidth schedule (``--schedule``) stands."""

    rule: str | None
    """The active rule's span, ``08:00-18:00``; None when no rule covers now (the default applies)."""
    limit: int | None
    """The limit the schedule asks for now, bytes per second; None for unlimited."""
    next_change: float | None
    """Wall-clock time of the next scheduled change; None if the schedule never changes."""
    overridden: bool = False
    """Whether a manual global limit replaces the scheduled one until ``next_change``."""


@dataclass(frozen=True)
class EngineSnapshot:
    """The whole engine at one moment."""

    tasks: tuple[TaskSnapshot, ...] = ()
    """Every task, in queue order."""
    speed: float = 0.0
    """Total instantaneous bytes per second."""
    avg_speed: float = 0.0
    """Total bytes per second averaged over time spent downloading."""
    downloaded: int = 0
    """Bytes received this session, over all tasks."""
    speed_limit: int | None = None
    """The global speed limit in bytes per second, if any."""
    jobs: int = 5
    """Most tasks downloading at once."""
    connections: int = 0
    """Open connections over all tasks."""
    time: float = 0.0
    """Wall-clock time the snapshot was taken."""
    counts: dict[str, int] = field(default_factory=dict)
    """Number of tasks in each state, by state value."""
    save_error: str | None = None
    """Why the queue cannot be saved (``No space left on device``) while saves fail; None once saved."""
    schedule: ScheduleStatus | None = None
    """The bandwidth schedule's state; None without one."""

    def task(self, task_id: int) -> TaskSnapshot | None:
        """The task with this id, if present."""
        for task in self.tasks:
            if task.id == task_id:
                return task
        return None
