"""``Range`` and ``If-Range`` as the fault server reads them (RFC 9110, single ranges only)."""

from __future__ import annotations

from email.utils import parsedate_to_datetime
from typing import Literal


def parse_range(header: str, size: int) -> tuple[int, int] | Literal["unsatisfiable"] | None:
    """``(start, end)`` half-open for a single byte range, "unsatisfiable", or None to ignore it.

    Multiple ranges and malformed headers are ignored (answered with the full body), as RFC 9110 allows.
    """
    unit, sep, spec = header.partition("=")
    if not sep or unit.strip().lower() != "bytes" or "," in spec:
        return None
    first, dash, last = spec.strip().partition("-")
    first, last = first.strip(), last.strip()
    if not dash or not (first.isdigit() or first == "") or not (last.isdigit() or last == ""):
        return None
    if first == "":
        if last == "":
            return None
        suffix = int(last)
        if suffix == 0 or size == 0:
            return "unsatisfiable"
        return max(0, size - suffix), size
    start = int(first)
    if last != "" and int(last) < start:
        return None
    if start >= size:
        return "unsatisfiable"
    end = size if last == "" else min(size, int(last) + 1)
    return start, end


def if_range_matches(value: str, etag: str | None, last_modified: str | None) -> bool:
    """Whether an ``If-Range`` validator still matches: strong ETag equality, or the exact date."""
    value = value.strip()
    if value.startswith('"') or value.startswith("W/"):
        return etag is not None and not value.startswith("W/") and value == etag
    if last_modified is None:
        return False
    try:
        return parsedate_to_datetime(value) == parsedate_to_datetime(last_modified)
    except (TypeError, ValueError, IndexError):
        return False
