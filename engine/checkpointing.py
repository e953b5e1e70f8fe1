"""When a download records its progress: the checkpoint interval and early writeback. Pure, no I/O.

A checkpoint fsyncs the part file, then rewrites the control file. On a disk slower than the
network an fsync may take a large share of a second, so the interval stretches with how long the
last sync took (at most a fifth of the time goes to syncing), up to :data:`MAX_INTERVAL`; between
checkpoints the writer asks the kernel to start writing back what arrived (engine.writeback), so
the fsync itself finds little left to do.
"""

from __future__ import annotations

import math

BASE_INTERVAL = 1.0
"""Seconds between checkpoints when syncs are quick."""
MAX_INTERVAL = 10.0
"""Longest a slow disk stretches the interval to: at most this much progress is lost to a crash."""
SYNC_FACTOR = 4.0
"""The interval is at least this many times the last sync's duration."""
WRITEBACK_KICKS = 4
"""Times per interval the writeback of newly written ranges is started early."""
KICK_MIN_BYTES = 4 * 1024 * 1024
"""Bytes written since the last kick below which a kick is skipped: the fsync of so little is quick,
and 50 slow downloads would otherwise make 200 pointless thread hops a second."""
MIN_KICK_PERIOD = 0.05
"""Shortest pause between two writeback kicks (an interval of a test may be tiny)."""
INTERVAL_ENV = "FETCHTOP_CHECKPOINT_INTERVAL"
"""Environment variable overriding the base interval, in seconds, or ``off`` (for the benchmark)."""
OFF = 1e9
"""The base interval that ``off`` stands for: a checkpoint that never comes while data flows."""


def next_interval(last_sync: float, base: float = BASE_INTERVAL, cap: float = MAX_INTERVAL) -> float:
    """Seconds until the next checkpoint, given that the last one's sync took ``last_sync`` seconds.

    ``max(base, SYNC_FACTOR * last_sync)``, capped at ``cap`` (never below ``base``: a base longer
    than the cap, as ``off`` is, is kept).
    """
    if math.isnan(last_sync) or last_sync < 0:
        last_sync = 0.0  # a clock that went backwards says nothing about the disk
    return min(max(base, SYNC_FACTOR * last_sync), max(base, cap))


def kick_period(interval: float) -> float:
    """Seconds between early writeback kicks within a checkpoint interval of ``interval`` seconds."""
    return max(MIN_KICK_PERIOD, interval / WRITEBACK_KICKS)


def interval_from_env(value: str | None, default: float = BASE_INTERVAL) -> float:
    """The base interval from :data:`INTERVAL_ENV`'s ``value``: seconds (> 0), ``off``, else ``default``.

    Unset, empty or unusable values give ``default``: a typo must not turn checkpoints off.
    """
    if value is None:
        return default
    text = value.strip().lower()
    if text == "off":
        return OFF
    try:
        seconds = float(text)
    except ValueError:
        return default
    if not math.isfinite(seconds) or seconds <= 0:
        return default
    return min(seconds, OFF)
