"""Engine-wide settings and the check of a task's options: plain data, cheap to import.

The daemon's configuration and the command line build these without loading the engine itself
(aiohttp and the download path), so ``fetchtop ls`` and usage errors stay quick.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
from dataclasses import dataclass, field

from engine.checkpointing import INTERVAL_ENV, interval_from_env
from engine.client import EngineError
from engine.cookiefile import Cookie, CookieFileError, format_cookies, parse_cookies
from engine.filenames import split_output
from engine.models import MAX_CONNECTIONS, TaskOptions
from engine.schedule import Schedule


@dataclass(frozen=True)
class EngineConfig:
    """Engine-wide settings."""

    jobs: int = 5
    """Most tasks downloading at once; the rest wait in order."""
    per_host: int = 16
    """Most connections to one host over all tasks."""
    tick: float = 0.25
    """Seconds between progress events."""
    speed_limit: int | None = None
    """Global bytes per second; None for unlimited. With a schedule: the limit where no rule applies."""
    schedule: Schedule | None = None
    """The global limit by local time of day (``--schedule``); None keeps ``speed_limit`` all day."""
    defaults: TaskOptions = field(default_factory=TaskOptions)
    """Options for tasks added without their own."""
    backoff_base: float = 0.5
    """First retry delay ceiling in seconds (doubles each attempt, full jitter)."""
    backoff_cap: float = 30.0
    """Largest retry delay ceiling in seconds."""
    checkpoint_interval: float = field(
        default_factory=lambda: interval_from_env(os.environ.get(INTERVAL_ENV))
    )
    """Seconds between control-file updates while data flows (a slow disk stretches it, see
    engine.checkpointing); ``$FETCHTOP_CHECKPOINT_INTERVAL`` sets it, ``off`` only for the benchmark."""
    session_path: str | None = None
    """File the queue is saved to on change and restored from at start; None keeps nothing."""
    on_complete: tuple[str, ...] = ()
    """Command (argv, no shell) run with the file's path after each completed download; () for none."""
    on_error: tuple[str, ...] = ()
    """Command run with the (intended) file path after each failed download; () for none."""
    hook_timeout: float = 60.0
    """Seconds a hook may run before it (and its process group) is killed."""


MAX_CHECKSUM_ROWS = 10_000
"""Most rows a task's checksum table may have (a 1 MiB checksum file holds about as many lines)."""


def parse_checksum(spec: str) -> tuple[str, str]:
    """``(algorithm, lower-case hex digest)`` from ``ALGO=HEX``, or EngineError saying what is wrong.

    The algorithm must be one hashlib has with a fixed digest size (so not shake_128 or shake_256,
    whose length the caller would have to choose), and the hex must be exactly that long.
    """
    algo, sep, digest = spec.partition("=")
    algo, digest = algo.strip(), digest.strip().lower()
    if not sep or not algo or not digest:
        raise EngineError(f"checksum must be ALGO=HEX, got {spec!r}")
    try:
        size = hashlib.new(algo).digest_size
    except (ValueError, TypeError):
        raise EngineError(f"unknown checksum algorithm {algo!r}") from None
    if size == 0:
        raise EngineError(f"checksum algorithm {algo!r} has no fixed digest length; use e.g. sha256")
    if any(c not in "0123456789abcdef" for c in digest):
        raise EngineError(f"checksum {digest!r} is not hexadecimal")
    if len(digest) != 2 * size:
        raise EngineError(f"a {algo} checksum has {2 * size} hex digits, got {len(digest)}")
    return algo, digest


def resolve_output(options: TaskOptions) -> TaskOptions:
    """The options with ``-o``'s directory part moved into ``directory`` (created at download).

    ``-o sub/out.bin -d D`` saves ``D/sub/out.bin``; a path naming an existing directory, or ending
    in ``/``, raises EngineError. Options whose ``output`` is a bare name come back unchanged.
    """
    if not options.output:
        return options
    try:
        directory, name = split_output(options.directory, options.output)
    except ValueError as exc:
        raise EngineError(str(exc)) from None
    if os.path.isdir(os.path.join(os.path.expanduser(directory), name)):
        raise EngineError(f"-o/--output {options.output!r} names an existing directory, not a file")
    if (directory, name) == (options.directory, options.output):
        return options
    return dataclasses.replace(options, directory=directory, output=name)


def validate_options(options: TaskOptions) -> None:
    """Raise EngineError for options no download could use."""
    if not 1 <= options.connections <= MAX_CONNECTIONS:
        raise EngineError(f"connections must be between 1 and {MAX_CONNECTIONS}")
    if options.speed_limit is not None and options.speed_limit <= 0:
        raise EngineError("speed limit must be positive")
    if options.lowest_speed is not None and options.lowest_speed < 0:
        raise EngineError("lowest speed must be 0 (off) or positive")
    if options.checksum is not None:
        parse_checksum(options.checksum)
    if len(options.checksum_table) > MAX_CHECKSUM_ROWS:
        raise EngineError(f"a checksum table has at most {MAX_CHECKSUM_ROWS} rows")
    for name, spec in options.checksum_table:
        if not name or "/" in name:
            raise EngineError(f"checksum table row for {name!r} does not name a file")
        parse_checksum(spec)
    if options.checksum_table and options.checksum_source is None:
        raise EngineError("a checksum table needs its source (the checksum file's name)")
    if options.retries < 0 or options.timeout <= 0 or options.connect_timeout <= 0:
        raise EngineError("retries must be >= 0 and timeouts positive")
    if options.min_split < 16 * 1024:
        raise EngineError("min_split must be at least 16 KiB")
    if options.user is not None and (
        not options.user or any(ord(c) < 32 or ord(c) == 127 for c in options.user)
    ):
        raise EngineError("user must be USER[:PASSWORD] without control characters")
    if options.cookies:
        # Cookies from a peer (the daemon's API) meet the rules a cookies file's lines do.
        try:
            parse_cookies(format_cookies(tuple(Cookie(*row) for row in options.cookies)))
        except CookieFileError:
            raise EngineError("a cookie holds an unusable domain, name or value") from None
