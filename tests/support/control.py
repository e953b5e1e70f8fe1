"""Reading what a download left on disk and asked for: control files and ``Range`` headers."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any


def read_control(path: Path) -> dict[str, Any] | None:
    """A control file's JSON, or None while it is missing (or caught mid-replace)."""
    try:
        data = json.loads(path.read_bytes())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def claimed_ranges(control: dict[str, Any] | None) -> list[tuple[int, int]]:
    """The ``[start, end)`` ranges a control file says are on disk."""
    if control is None:
        return []
    return [(int(a), int(b)) for a, b in control.get("done", [])]


def claimed_bytes(control: dict[str, Any] | None) -> int:
    """How many bytes a control file says are on disk."""
    return sum(b - a for a, b in claimed_ranges(control))


_RANGE = re.compile(r"^bytes=(\d+)-(\d*)$")


def parse_range(header: str) -> tuple[int, int | None]:
    """``bytes=a-b`` as ``(a, b)`` (b inclusive), ``bytes=a-`` as ``(a, None)``; anything else fails."""
    m = _RANGE.match(header.strip())
    assert m is not None, f"unexpected Range header {header!r}"
    return int(m.group(1)), int(m.group(2)) if m.group(2) else None


def is_closed_range(header: str) -> bool:
    """Whether a Range header asks for an explicit ``bytes=a-b``."""
    return parse_range(header)[1] is not None


_CLOSED = re.compile(r"^bytes=(\d+)-(\d+)$")


def closed_range(header: str | None) -> tuple[int, int] | None:
    """``(first, last)`` of a ``bytes=first-last`` header, None for anything else (open, absent)."""
    if header is None:
        return None
    m = _CLOSED.match(header)
    return (int(m.group(1)), int(m.group(2))) if m else None
