"""Every name that appears in a directory, seen by Linux inotify (through ctypes on libc).

Polling a directory misses a file that lives for less than the polling interval; inotify does not:
a control file written and removed between two looks still shows up as created or renamed into it.
"""

from __future__ import annotations

import ctypes
import errno
import os
import struct
from pathlib import Path
from types import TracebackType

IN_CREATE = 0x00000100
IN_MOVED_TO = 0x00000080
IN_NONBLOCK = os.O_NONBLOCK
IN_CLOEXEC = os.O_CLOEXEC
_HEADER = struct.Struct("iIII")  # struct inotify_event: wd, mask, cookie, len (then the name)


class DirWatch:
    """Names created in, or renamed into, one directory while the watch is open (a context manager)."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self._fd = -1
        self._seen: list[str] = []

    def __enter__(self) -> DirWatch:
        libc = ctypes.CDLL(None, use_errno=True)
        fd = libc.inotify_init1(IN_NONBLOCK | IN_CLOEXEC)
        if fd < 0:
            raise OSError(ctypes.get_errno(), "inotify_init1 failed")
        wd = libc.inotify_add_watch(fd, os.fsencode(self.directory), IN_CREATE | IN_MOVED_TO)
        if wd < 0:
            err = ctypes.get_errno()
            os.close(fd)
            raise OSError(err, f"inotify_add_watch failed on {self.directory}")
        self._fd = fd
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.names()  # read what is left before closing
        os.close(self._fd)
        self._fd = -1

    def names(self) -> list[str]:
        """Every name seen so far, in order (with repeats), the queued events read first."""
        if self._fd >= 0:
            while True:
                try:
                    raw = os.read(self._fd, 64 * 1024)
                except OSError as exc:
                    if exc.errno == errno.EAGAIN:
                        break
                    raise
                pos = 0
                while pos < len(raw):
                    _wd, _mask, _cookie, length = _HEADER.unpack_from(raw, pos)
                    pos += _HEADER.size
                    self._seen.append(os.fsdecode(raw[pos : pos + length].rstrip(b"\0")))
                    pos += length
        return list(self._seen)
