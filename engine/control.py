"""The control file beside a part file: what is already on disk, written crash-safely.

The data is fsynced before a control file claiming it is written, and the control file is
replaced atomically (temp file, fsync, rename, directory fsync), so after ``kill -9`` the
control file never claims a byte that is not on disk.

Reading is async (a worker thread: the directory scan of a restart reads many small files, off the
event loop); writing and removing block, since they run in the download's worker thread right after
the data they describe is synced, in that order.

A download directory may be shared with other users, so nothing found in it is trusted on its name
alone: :func:`open_own` is how fetchtop reopens any file there (part or control), and a control file
only counts if it is the user's, writable by no one else, and names the part file's inode.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import stat
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from engine.atomicfile import write_atomic

CONTROL_SUFFIX = ".part.json"
PART_SUFFIX = ".part"
VERSION = 1
MAX_CONTROL_BYTES = 16 * 1024 * 1024
"""A control file larger than this is not one (a planted huge file must not be read into memory)."""

FileId = tuple[int, int]
"""A file's ``(st_dev, st_ino)``: which file a name led to, whatever its name is now."""


class UntrustedFile(OSError):
    """A file fetchtop meant to reopen is not a regular file of the current user's (or not that file)."""


def open_own(path: Path, flags: int) -> tuple[int, os.stat_result]:
    """Open ``path`` without following a symlink; the descriptor and its ``fstat``.

    Raises UntrustedFile unless it is a regular file owned by the current user: checked on the open
    descriptor, so what is checked is what is used. FileNotFoundError when nothing is there.
    """
    try:
        fd = os.open(path, flags | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK)
    except OSError as exc:
        if isinstance(exc, FileNotFoundError):
            raise
        # ELOOP: a symlink; ENXIO and friends: a FIFO or socket. Not ours to touch either way.
        raise UntrustedFile(exc.errno, f"not a file fetchtop made: {exc.strerror}", str(path)) from None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise UntrustedFile(f"{path} is not a regular file")
        if st.st_uid != os.geteuid():
            raise UntrustedFile(f"{path} belongs to another user")
    except BaseException:
        os.close(fd)
        raise
    return fd, st


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
    part_id: FileId | None = None
    """The part file's ``(st_dev, st_ino)``: a control file is adopted only beside that very file."""

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
            "part": None if self.part_id is None else list(self.part_id),
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
        part = data.get("part")
        part_id = None if part is None else (int(part[0]), int(part[1]))
        return cls(
            url=str(data["url"]),
            name=str(data["name"]),
            size=None if size is None else int(size),
            resumable=bool(data.get("resumable", False)),
            etag=data.get("etag"),
            last_modified=data.get("last_modified"),
            done=done,
            part_id=part_id,
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


def read_control_sync(path: Path) -> ControlData | None:
    """The control file's contents if it can be trusted (blocking); None if missing or not.

    Trusted means :func:`open_own` accepts it and neither group nor others may write it: anyone who
    could edit it could make fetchtop claim bytes it never downloaded.
    """
    try:
        fd, st = open_own(path, os.O_RDONLY)
    except OSError:
        return None
    try:
        if st.st_mode & (stat.S_IWGRP | stat.S_IWOTH) or st.st_size > MAX_CONTROL_BYTES:
            return None
        raw = os.read(fd, MAX_CONTROL_BYTES + 1)
        return ControlData.from_json(json.loads(raw))
    except (OSError, ValueError, KeyError, TypeError, IndexError):
        return None
    finally:
        os.close(fd)


async def read_control(path: Path) -> ControlData | None:
    """:func:`read_control_sync` off the event loop."""
    return await asyncio.to_thread(read_control_sync, path)


async def index_controls(directory: Path) -> dict[str, list[tuple[Path, ControlData]]]:
    """Every readable control file in ``directory`` by URL, in name order."""
    index: dict[str, list[tuple[Path, ControlData]]] = {}
    try:
        names = await asyncio.to_thread(os.listdir, directory)
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
