"""The part file of a download and its final placement: the download's blocking file operations.

Every function here blocks; the download runs them in worker threads. Creating, opening and placing
files all happen here (and, for control files, in engine.control) and nowhere else.

The download directory may be shared with other users. So a part file is created with ``O_EXCL`` and
``O_NOFOLLOW``, mode 0600 (its control file holds signed URLs), and remembered by its inode; every
reopen goes through :func:`engine.control.open_own` and must find that same inode with one link, so a
planted symlink, another user's file or a swapped-in file is never written to. The final file takes
the usual ``0o666 & ~umask`` when it is placed, by a hard link that never replaces anything.
"""

from __future__ import annotations

import hashlib
import os
import re
import stat
import time
from collections.abc import Sequence
from pathlib import Path

from engine import control
from engine.atomicfile import fsync_dir
from engine.control import ControlData, FileId, UntrustedFile
from engine.errors import ControlWriteError
from engine.filenames import unique_name
from engine.models import MiB
from engine.writeback import DirtyRanges, start_writeback

PART_MODE = 0o600
"""Permissions of a new part file: only the user reads the bytes before they are verified and placed."""
_CREATE = os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC


def _read_umask() -> int:
    """The process umask, read without changing it where the platform allows.

    ``os.umask`` can only be read by setting it, which races with any thread creating a file at that
    moment; Linux shows it in /proc/self/status, so the set-and-restore is only the fallback. Called
    once, at import, before the engine starts any worker thread.
    """
    try:
        with open("/proc/self/status", encoding="ascii", errors="replace") as f:
            m = re.search(r"^Umask:\s*([0-7]+)$", f.read(), re.MULTILINE)
        if m:
            return int(m.group(1), 8)
    except OSError:
        pass
    old = os.umask(0o077)
    os.umask(old)
    return old


FINAL_MODE = 0o666 & ~_read_umask()
"""Permissions the finished file gets: what any program creating a file would give it."""
HASH_BLOCK = 4 * MiB
"""Bytes read at a time while hashing a finished file."""
PLACE_TRIES = 100
"""Free names tried for the final file before giving up (each try loses a race to another writer)."""


def _in_use(final: Path, claimed: set[Path]) -> bool:
    """Whether ``final``, its part or its control file exists, or an unfinished task claims it."""
    return (
        final in claimed
        or os.path.lexists(final)
        or os.path.lexists(control.part_path(final))
        or os.path.lexists(control.control_path(final))
    )


def claim_name(directory: Path, name: str, claimed: set[Path]) -> tuple[str, FileId]:
    """The first free variant of ``name`` in ``directory`` (created if missing), its part file created.

    A name is free when neither it, its part file nor its control file exists and no path in
    ``claimed`` (the engine's unfinished tasks) is it. Creating the part file with ``O_EXCL`` claims the
    name atomically, against other tasks of this engine and against other fetchtop processes alike.
    Returns the name and the new part file's identity.
    """
    chosen, fd, identity = _claim(directory, name, claimed)
    os.close(fd)
    return chosen, identity


def claim_and_open(directory: Path, name: str, claimed: set[Path], size: int | None) -> tuple[str, PartFile]:
    """:func:`claim_name`, the new part file kept open and made ``size`` bytes, sparse.

    One step instead of a claim and a reopen: for a small file every worker-thread hop and system
    call counts, and the descriptor just created with ``O_EXCL`` is the very file claimed.
    """
    chosen, fd, identity = _claim(directory, name, claimed)
    try:
        if size:
            os.ftruncate(fd, size)
    except BaseException:
        os.close(fd)
        raise
    return chosen, PartFile(fd, identity)


def _claim(directory: Path, name: str, claimed: set[Path]) -> tuple[str, int, FileId]:
    """The free name, the open descriptor of its new part file, and the file's identity."""
    directory.mkdir(parents=True, exist_ok=True)
    made: list[tuple[int, FileId]] = []

    def taken(candidate: str) -> bool:
        final = directory / candidate
        if _in_use(final, claimed):
            return True
        try:
            fd = os.open(control.part_path(final), _CREATE, PART_MODE)
        except FileExistsError:
            return True
        try:
            st = os.fstat(fd)
        except BaseException:
            os.close(fd)
            raise
        made.append((fd, (st.st_dev, st.st_ino)))
        return False

    try:
        chosen = unique_name(name, taken)
    except BaseException:
        for fd, _ in made:
            os.close(fd)
        raise
    for fd, _ in made[:-1]:
        os.close(fd)  # unique_name stops at the first free name; never more than one, but be sure
    fd, identity = made[-1]
    return chosen, fd, identity


def owns_part(final: Path, data: ControlData) -> bool:
    """Whether the part file of ``final`` is the one the control file ``data`` was written for.

    It must be a regular file of the user's, with one link, whose inode is the one recorded: a control
    file beside a planted, swapped or hard-linked file describes some other file's bytes.
    """
    try:
        fd, st = control.open_own(control.part_path(final), os.O_RDONLY)
    except OSError:
        return False
    os.close(fd)
    return data.part_id is not None and st.st_nlink == 1 and (st.st_dev, st.st_ino) == data.part_id


class PartFile:
    """An open part file: positional writes, sync, truncate and hash through one descriptor."""

    def __init__(self, fd: int, identity: FileId) -> None:
        self.fd = fd
        """The open descriptor (read and write)."""
        self.identity = identity
        """The file's ``(st_dev, st_ino)``, recorded in its control file."""
        self.dirty = DirtyRanges()
        """Ranges written since the last early writeback kick."""

    @classmethod
    def open(cls, path: Path, size: int | None, fresh: bool, identity: FileId | None) -> PartFile:
        """Open the part file at ``path``; ``fresh`` empties it and makes it ``size`` bytes, sparse.

        ``identity`` is the file claimed or adopted earlier: it must be that file still (UntrustedFile
        otherwise), and FileNotFoundError if it is gone, since recreating it empty would turn the ranges
        the task believes done into zeros. With no ``identity`` (a fresh start of a file that
        disappeared) a new file is created, ``O_EXCL``.
        """
        if identity is None:
            fd = os.open(path, _CREATE, PART_MODE)
        else:
            fd, st = control.open_own(path, os.O_RDWR)
            if st.st_nlink != 1 or (st.st_dev, st.st_ino) != identity:
                os.close(fd)
                raise UntrustedFile(f"{path} is no longer the part file fetchtop made")
        try:
            st = os.fstat(fd)
            if fresh:
                os.ftruncate(fd, 0)
                # Sparse, not posix_fallocate: on ext4, writing into fallocated (unwritten)
                # extents cost up to twice the system time per GiB in the benchmark.
                os.ftruncate(fd, size or 0)
        except BaseException:
            os.close(fd)
            raise
        return cls(fd, (st.st_dev, st.st_ino))

    def close(self) -> None:
        """Close the descriptor."""
        os.close(self.fd)

    def write(self, chunks: Sequence[bytes | memoryview], offset: int) -> int:
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
        self.dirty.add(offset, offset + total)
        return total

    def start_writeback(self) -> int:
        """Start (not wait for) the writeback of what was written since the last call; ranges asked.

        Best effort (engine.writeback): it only makes the next fsync shorter.
        """
        return start_writeback(self.fd, self.dirty.take())

    def truncate_and_sync(self, size: int) -> None:
        """Cut the file to ``size`` bytes and make it durable."""
        os.ftruncate(self.fd, size)
        os.fsync(self.fd)

    def sync_and_record(self, control_file: Path, data: ControlData, durable: bool) -> float:
        """Make written data durable, then replace the control file claiming it; seconds the fsync took.

        In this order, so that after a crash the control file never claims a byte that is not on
        disk; ``durable=False`` (nothing claimed yet) skips the fsyncs. A failed fsync of the data
        raises OSError; a failed control write raises ControlWriteError, the previous control file
        (claiming no more than is on disk) left as it was.
        """
        took = 0.0
        if durable:
            started = time.monotonic()
            os.fsync(self.fd)
            took = time.monotonic() - started
        try:
            control.write_control(control_file, data, durable)
        except OSError as exc:
            raise ControlWriteError(exc.strerror or str(exc)) from exc
        return took

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


def place_final(
    file: PartFile, part: Path, control_file: Path, directory: Path, name: str, claimed: set[Path]
) -> Path | None:
    """Give the open part file the name ``name`` in ``directory``, or a free variant; None if none is.

    Closes ``file``. An existing file is never replaced (the link fails and the next name is tried),
    and a name whose part or control file exists or that another task claims (``claimed``, this task's
    own path excluded) is another download's: it is neither taken nor has its files removed. The
    placed name must lead to the very inode written, else a swapped part file would be published.
    The control file goes last, since until the part file is placed it is what resumes the download.
    """
    try:
        for _ in range(PLACE_TRIES):
            final = directory / unique_name(
                name,
                lambda n: os.path.lexists(directory / n) if n == name else _in_use(directory / n, claimed),
            )
            try:
                os.link(part, final, follow_symlinks=False)
            except FileExistsError:
                continue
            except OSError:
                # No hard links on this filesystem: check, then rename (a tiny race remains).
                if os.path.lexists(final):
                    continue
                os.rename(part, final)
                linked = False
            else:
                linked = True
            st = os.lstat(final)
            if not stat.S_ISREG(st.st_mode) or (st.st_dev, st.st_ino) != file.identity:
                # Someone swapped the part file: what was linked is theirs, not the bytes written.
                os.unlink(final)
                raise UntrustedFile(f"{part} was replaced while it was being placed")
            # Widened only now: until it is verified and placed, the data is the user's alone.
            os.fchmod(file.fd, FINAL_MODE)
            if linked:
                os.unlink(part)
            control.remove_quietly(control_file)
            fsync_dir(directory)
            return final
        return None
    finally:
        file.close()
