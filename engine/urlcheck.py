"""Whether a new URL serves the very file a partial download holds bytes of (pure logic, no I/O).

Used by :meth:`engine.engine.Engine.set_url`: an expired or moved link may be replaced, keeping the
bytes, only when the new answer is the same file: same total size, byte ranges served, and the same
ETag and Last-Modified wherever both the old and the new answers carry one.
"""

from __future__ import annotations

from dataclasses import dataclass

from engine.escaping import escape_controls


@dataclass(frozen=True)
class Remote:
    """What one answer said about a remote file."""

    size: int | None
    """Total bytes, if known."""
    ranges: bool
    """Whether the answer honoured a byte range."""
    etag: str | None = None
    """ETag, as sent."""
    last_modified: str | None = None
    """Last-Modified, as sent."""


@dataclass(frozen=True)
class Held:
    """What a partial download holds and knew of its file."""

    kept: int
    """Bytes on disk that a resume would keep (0: nothing to lose)."""
    size: int | None
    """Total bytes the file had."""
    etag: str | None = None
    """Its ETag, as the old URL sent it."""
    last_modified: str | None = None
    """Its Last-Modified, as the old URL sent it."""


def mismatch(held: Held, new: Remote, check_validators: bool = True) -> str | None:
    """Why the bytes held cannot be kept with the new answer, one line; None when they can.

    With nothing held there is nothing to lose, so any answer fits. ``check_validators`` off
    (``--no-if-range``, for signed URLs whose validators change on every request) compares the size only.
    """
    if held.kept <= 0:
        return None
    if not new.ranges:
        return f"the new URL does not serve byte ranges, so the {held.kept} bytes downloaded cannot be kept"
    if new.size != held.size:
        got = "an unknown size" if new.size is None else f"{new.size} bytes"
        return f"the new URL serves {got}, the partial download is of {held.size} bytes"
    if not check_validators:
        return None
    pairs: tuple[tuple[str, str | None, str | None], ...] = (
        ("ETag", held.etag, new.etag),
        ("Last-Modified", held.last_modified, new.last_modified),
    )
    for what, old, now in pairs:
        if old and now and old != now:
            return (
                f"the new URL serves another version of the file ({what} {escape_controls(now)!r}, "
                f"was {escape_controls(old)!r})"
            )
    return None
