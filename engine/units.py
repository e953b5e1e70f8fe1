"""Parsing and formatting sizes, rates and durations the way curl and aria2 users write them. Pure."""

from __future__ import annotations

import re

_RATE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([kmgt]?)(?:i?b?)?(?:/s)?\s*$", re.IGNORECASE)
_FACTORS = {"": 1, "k": 1024, "m": 1024**2, "g": 1024**3, "t": 1024**4}


def parse_rate(text: str) -> int | None:
    """Bytes per second from ``500K``, ``2M``, ``1.5G`` (binary, as in curl); ``0`` or empty means none.

    Raises ValueError with a one-line message on anything else.
    """
    if text.strip() in ("", "0"):
        return None
    m = _RATE.match(text)
    if not m:
        raise ValueError(f"invalid rate {text!r} (expected e.g. 500K, 2M, 1G)")
    value = float(m.group(1)) * _FACTORS[m.group(2).lower()]
    if value < 1:
        raise ValueError(f"invalid rate {text!r} (must be at least 1 byte/s)")
    return int(value)


def format_bytes(n: float | None) -> str:
    """``1.5 MiB``-style size; ``?`` when unknown."""
    if n is None:
        return "?"
    value = float(n)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(value) < 1024 or unit == "TiB":
            if unit == "B":
                return f"{int(value)} B"
            return f"{value:.1f} {unit}"
        value /= 1024
    return f"{value:.1f} TiB"  # pragma: no cover - loop always returns


def format_rate(n: float | None) -> str:
    """``1.5 MiB/s``-style rate."""
    return "-" if n is None else format_bytes(n) + "/s"


def format_duration(seconds: float | None) -> str:
    """``1h02m``, ``3m05s``, ``42s``; ``-`` when unknown."""
    if seconds is None or seconds != seconds or seconds < 0:
        return "-"
    s = int(seconds + 0.5)
    if s >= 86400 * 100:
        return "∞"
    if s >= 3600:
        return f"{s // 3600}h{(s % 3600) // 60:02d}m"
    if s >= 60:
        return f"{s // 60}m{s % 60:02d}s"
    return f"{s}s"
