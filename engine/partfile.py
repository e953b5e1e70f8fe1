"""The part file of a download and its final placement: the download's blocking file operations.

Every function here blocks; the download runs them in worker threads. Creating, opening and placing
files all happen here and nowhere else, so that tightening how fetchtop touches a shared download
directory (``O_NOFOLLOW``, ownership checks with ``fstat``) is a change to this module alone.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

from engine import control
from engine.atomicfile import fsync_dir
from engine.control import ControlData
from engine.errors import ControlWriteError
from engine.filenames import unique_name
from engine.models import MiB

PART_MODE = 0o644
"""Permissions of a new part file (before the umask): the final file keeps them."""
HASH_BLOCK = 4 * MiB
"""Bytes read at a time while hashing a finished file."""
PLACE_TRIES = 100
"""Free names tried for the final file before giving up (each try loses a race to another writer)."""


def claim_name(directory: Path, name: str, claimed: set[Path]) -> str:
    """The first free variant of ``name`` in ``directory`` (created if missing), its part file created.

    A name is free when neither it nor its control file exists and no path in ``claimed`` (the
    engine's unfinished tasks) is it. Creating the part file with ``O_EXCL`` claims the name
    atomically, against other tasks of this engine and against other fetchtop processes alike.
    """
    directory.mkdir(parents=True, exist_ok=True)

    def taken(candidate: str) -> bool:
        final = directory / candidate
        if final in claimed or os.path.lexists(final) or os.path.lexists(control.control_path(final)):
            return True
        try:
            os.close(os.open(control.part_path(final), os.O_WRONLY | os.O_CREAT | os.O_EXCL, PART_MODE))
        except FileExistsError:
            return True
        return False

    return unique_name(name, taken)


class PartFile:
    """An open part file: positional writes, sync, truncate and hash through one descriptor."""

    def __init__(self, fd: int) -> None:
        self.fd = fd
        """The open descriptor (read and write)."""

    @classmethod
    def open(cls, path: Path, size: int | None, fresh: bool) -> PartFile:
        """Open the part file at ``path``; ``fresh`` empties it and makes it ``size`` bytes, sparse.

        Resuming (not ``fresh``), the file must already be there: recreating it empty would turn the
        ranges the task believes done into zeros, so FileNotFoundError is raised instead.
        """
        fd = os.open(path, os.O_RDWR | (os.O_CREAT if fresh else 0), PART_MODE)
        try:
            if fresh:
                os.ftruncate(fd, 0)
                # Sparse, not posix_fallocate: on ext4, writing into fallocated (unwritten)
                # extents cost up to twice the system time per GiB in the benchmark.
                os.ftruncate(fd, size or 0)
        except BaseException:
            os.close(fd)
            raise
        return cls(fd)

    def close(self) -> None:
        """Close the descriptor."""
        os.close(self.fd)

    def write(self, chunks: list[bytes], offset: int) -> int:
        """Write every chunk at ``offset`` onwards, looping over short writes; the bytes written."""
        total = sum(len(c) for c in chunks)
        written = os.pwritev(self.fd, chunks, offset)
        if written < total:
            # Rare on regular files; finish byte-exactly with plain pwrite.
            rest = b"".join(chunks)[written:]
            while rest:
                n = os.pwrite(self.fd, rest, offset + written)
                written += n
                rest = rest[n:]
        return total

    def truncate_and_sync(self, size: int) -> None:
        """Cut the file to ``size`` bytes and make it durable."""
        os.ftruncate(self.fd, size)
        os.fsync(self.fd)

    def sync_and_record(self, control_file: Path, data: ControlData, durable: bool) -> None:
        """Make written data durable, then replace the control file claiming it.

        In this order, so that after a crash the control file never claims a byte that is not on
        disk; ``durable=False`` (nothing claimed yet) skips the fsyncs. A failed fsync of the data
        raises OSError; a failed control write raises ControlWriteError, the previous control file
        (claiming no more than is on disk) left as it was.
        """
        if durable:
            os.fsync(self.fd)
        try:
            control.write_control(control_file, data, durable)
        except OSError as exc:
            raise ControlWriteError(exc.strerror or str(exc)) from exc

    def hash(self, algo: str) -> str:
        """The hex digest of the whole file with ``hashlib`` algorithm ``algo``."""
        h = hashlib.new(algo)
        offset = 0
        while True:
            block = os.pread(self.fd, HASH_BLOCK, offset)
            if not block:
                return h.hexdigest()
            h.update(block)
            offset += len(block)


def remove_durably(path: Path) -> None:
    """Delete ``path`` if it exists, and make the removal survive a crash."""
    control.remove_quietly(path)
    fsync_dir(path.parent)


def place_final(part: Path, control_file: Path | None, directory: Path, name: str) -> Path | None:
    """Give ``part`` the name ``name`` in ``directory``, or a free variant of it; None if none is free.

    An existing file is never replaced: the link fails instead, and the next free name is tried.
    The control file goes last, since until the part file is placed it is what resumes the download.
    """
    for _ in range(PLACE_TRIES):
        final = directory / unique_name(name, lambda n: os.path.lexists(directory / n))
        try:
            os.link(part, final)
        except FileExistsError:
            continue
        except OSError:
            # No hard links on this filesystem: check, then rename (a tiny race remains).
            if os.path.lexists(final):
                continue
            os.rename(part, final)
        else:
            os.unlink(part)
        control.remove_quietly(*(p for p in (control_file, control.control_path(final)) if p is not None))
        fsync_dir(directory)
        return final
    return None
