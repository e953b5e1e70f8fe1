"""Engine-wide settings and the check of a task's options: plain data, cheap to import.

The daemon's configuration and the command line build these without loading the engine itself
(aiohttp and the download path), so ``fetchtop ls`` and usage errors stay quick.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

from engine.client import EngineError
from engine.models import MAX_CONNECTIONS, TaskOptions


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
    """Global bytes per second; None for unlimited."""
    defaults: TaskOptions = field(default_factory=TaskOptions)
    """Options for tasks added without their own."""
    backoff_base: float = 0.5
    """First retry delay ceiling in seconds (doubles each attempt, full jitter)."""
    backoff_cap: float = 30.0
    """Largest retry delay ceiling in seconds."""
    checkpoint_interval: float = 1.0
    """Seconds between control-file updates while data flows."""
    session_path: str | None = None
    """File the queue is saved to on change and restored from at start; None keeps nothing."""


def validate_options(options: TaskOptions) -> None:
    """Raise EngineError for options no download could use."""
    if not 1 <= options.connections <= MAX_CONNECTIONS:
        raise EngineError(f"connections must be between 1 and {MAX_CONNECTIONS}")
    if options.speed_limit is not None and options.speed_limit <= 0:
        raise EngineError("speed limit must be positive")
    if options.lowest_speed is not None and options.lowest_speed < 0:
        raise EngineError("lowest speed must be 0 (off) or positive")
    if options.checksum is not None:
        algo, sep, digest = options.checksum.partition("=")
        if not sep or not digest.strip():
            raise EngineError(f"checksum must be ALGO=HEX, got {options.checksum!r}")
        try:
            hashlib.new(algo)
        except ValueError:
            raise EngineError(f"unknown checksum algorithm {algo!r}") from None
        try:
            bytes.fromhex(digest.strip())
        except ValueError:
            raise EngineError(f"checksum {digest!r} is not hexadecimal") from None
    if options.retries < 0 or options.timeout <= 0 or options.connect_timeout <= 0:
        raise EngineError("retries must be >= 0 and timeouts positive")
    if options.min_split < 16 * 1024:
        raise EngineError("min_split must be at least 16 KiB")
