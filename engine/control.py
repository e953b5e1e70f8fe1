"""The control file beside a part file: what is already on disk, written crash-safely.

The data is fsynced before a control file claiming it is written, and the control file is
replaced atomically (temp file, fsync, rename, directory fsync), so after ``kill -9`` the
control file never claims a byte that is not on disk.

Reading is async (aiofiles: the directory scan of a restart reads many small files, off the event
loop); writing and removing block, since they run in the download's worker thread right after the
data they describe is synced, in that order.
"""

from __future__ import annotations

import contextlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiofiles
import aiofiles.os

from engine.atomicfile import write_atomic

CONTROL_SUFFIX = ".part.json"
PART_SUFFIX = ".part"
VERSION = 1


@dataclass
class ControlData:
    """What a control file records about one partial download."""

    url: str
    """The URL as given, with any password removed (used to match a restart to its file)."""
    name: str
    """The final file name the part file will take."""
    size: int | None = None
    """Total bytes, if known."""
    resumable: bool = False
    """Whether the server honoured ranges."""
    etag: str | None = None
    """Validator sent back as If-Range on resume."""
    last_modified: str | None = None
    """Validator used when there is no ETag."""
    done: list[tuple[int, int]] = field(default_factory=list)
    """Byte ranges ``[start, end)`` known to be on disk."""

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict."""
        return {
            "version": VERSION,
            "url": self.url,
            "name": self.name,
            "size": self.size,
            "resumable": self.resumable,
            "etag": self.etag,
            "last_modified": self.last_modified,
            "done": [list(r) for r in self.done],
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> ControlData:
        """Parse a dict from :meth:`to_json`; raises ValueError if it is not one."""
        if not isinstance(data, dict) or data.get("version") != VERSION:
            raise ValueError("not a fetchtop control file")
        size = data.get("size")
        done = [(int(a), int(b)) for a, b in data.get("done", [])]
        if size is not None and any(a < 0 or b > size or a >= b for a, b in done):
            raise ValueError("control file ranges out of bounds")
        return cls(
            url=str(data["url"]),
            name=str(data["name"]),
            size=None if size is None else int(size),
            resumable=bool(data.get("resumable", False)),
            etag=data.get("etag"),
            last_modified=data.get("last_modified"),
            done=done,
        )


def part_path(final_path: Path) -> Path:
    """Where the partial data of ``final_path`` lives."""
    return final_path.with_name(final_path.name + PART_SUFFIX)


def control_path(final_path: Path) -> Path:
    """Where the control file of ``final_path`` lives."""
    return final_path.with_name(final_path.name + CONTROL_SUFFIX)


def write_control(path: Path, data: ControlData, durable: bool = True) -> None:
    """Replace the control file atomically, and durably unless told not to (blocking).

    A control file claiming no bytes is safe even if a power cut loses it, so the first one
    of a download skips the fsyncs that would otherwise dominate the cost of small files.
    Mode 0600: it holds the URL as given, signed-URL tokens included.
    """
    payload = json.dumps(data.to_json(), separators=(",", ":")).encode()
    write_atomic(path, payload, durable=durable)


async def read_control(path: Path) -> ControlData | None:
    """The control file's contents, or None if it is missing or unreadable."""
    try:
        async with aiofiles.open(path, "rb") as f:
            return ControlData.from_json(json.loads(await f.read()))
    except (OSError, ValueError, KeyError, TypeError):
        return None


async def index_controls(directory: Path) -> dict[str, list[tuple[Path, ControlData]]]:
    """Every readable control file in ``directory`` by URL, in name order."""
    index: dict[str, list[tuple[Path, ControlData]]] = {}
    try:
        names = await aiofiles.os.listdir(directory)
    except OSError:
        return index
    # Hidden names are skipped, as a shell glob would: a temporary file is never a control file.
    candidates = sorted(directory / n for n in names if n.endswith(CONTROL_SUFFIX) and not n.startswith("."))
    for path in candidates:
        data = await read_control(path)
        if data is not None:
            index.setdefault(data.url, []).append((path, data))
    return index


def remove_quietly(*paths: Path) -> None:
    """Delete files that may not exist."""
    for p in paths:
        with contextlib.suppress(FileNotFoundError):
            p.unlink()
