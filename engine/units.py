"""Parsing and formatting sizes, rates and durations the way curl and aria2 users write them. Pure."""

from __future__ import annotations

import math
import re

# ASCII digits only (re.ASCII): \d would also match other scripts' digits, which float() accepts.
_RATE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(?:([kmgt])i?)?b?(?:/s)?\s*$", re.IGNORECASE | re.ASCII)
_FACTORS = {"": 1, "k": 1024, "m": 1024**2, "g": 1024**3, "t": 1024**4}
_MAX_RATE = 1024**5
"""A PiB/s: anything above is a typo, and would not fit the arithmetic downstream."""


def parse_rate(text: str) -> int | None:
    """Bytes per second from ``500K``, ``2M``, ``1.5G`` (binary, as in curl); ``0`` or empty means none.

    Raises ValueError with a one-line message on anything else.
    """
    if text.strip() == "":
        return None
    m = _RATE.match(text)
    if not m:
        raise ValueError(f"invalid rate {text!r} (expected e.g. 500K, 2M, 1G)")
    value = float(m.group(1)) * _FACTORS[(m.group(2) or "").lower()]
    if value == 0:
        # "0K" and "0.0" mean what "0" means, as with curl's --limit-rate.
        return None
    if value < 1:
        raise ValueError(f"invalid rate {text!r} (must be at least 1 byte/s)")
    if not math.isfinite(value) or value > _MAX_RATE:
        raise ValueError(f"invalid rate {text!r} (too large)")
    return int(value)


def format_bytes(n: float | None) -> str:
    """``1.5 MiB``-style size; ``?`` when unknown."""
    if n is None or not math.isfinite(n):
        return "?"
    value = float(n)
    for unit in ("B", "KiB", "MiB", "GiB"):
        # Compare what will be printed: 1048575 B is "1.0 MiB", not "1024.0 KiB".
        shown = int(value) if unit == "B" else round(value, 1)
        if abs(shown) < 1024:
            return f"{int(value)} B" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{value:.1f} TiB"


def format_rate(n: float | None) -> str:
    """``1.5 MiB/s``-style rate; ``-`` when unknown."""
    return "-" if n is None or not math.isfinite(n) else format_bytes(n) + "/s"


def format_duration(seconds: float | None) -> str:
    """``1h02m``, ``3m05s``, ``42s``; ``-`` when unknown, ``∞`` past 100 days."""
    if seconds is None or math.isnan(seconds) or seconds < 0:
        return "-"
    if seconds >= 86400 * 100:
        return "∞"
    s = int(seconds + 0.5)
    if s >= 3600:
        return f"{s // 3600}h{(s % 3600) // 60:02d}m"
    if s >= 60:
        return f"{s // 60}m{s % 60:02d}s"
    return f"{s}s"
