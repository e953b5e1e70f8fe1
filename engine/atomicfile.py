"""Replace a small file atomically: the one way fetchtop writes its JSON state.

Readers see the old contents or the new, never a torn file. The temporary file gets an unpredictable
name made with ``O_EXCL`` (``tempfile.mkstemp``) in the target's directory, so a name planted by
someone else in a shared directory is never written through. :func:`write_atomic` blocks;
:func:`write_atomic_async` is the same write for async code, run in asyncio's default executor.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import tempfile
from pathlib import Path


def fsync_dir(directory: Path) -> None:
    """Make a rename in ``directory`` durable, where the platform allows it."""
    with contextlib.suppress(OSError):
        fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def write_atomic(path: Path, payload: bytes, *, mode: int = 0o600, durable: bool = True) -> None:
    """Replace ``path`` with ``payload``: temporary file, fsync, rename, directory fsync.

    ``durable=False`` skips both fsyncs, for contents that are safe to lose in a power cut (the
    rename is still atomic). Raises OSError as the file system reports it; the temporary file is
    removed on failure.
    """
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        try:
            if mode != 0o600:
                os.fchmod(fd, mode)
            view = memoryview(payload)
            while view:
                view = view[os.write(fd, view) :]
            if durable:
                os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    if durable:
        fsync_dir(path.parent)


async def write_atomic_async(path: Path, payload: bytes, *, mode: int = 0o600, durable: bool = True) -> None:
    """:func:`write_atomic` off the event loop, in a worker thread; the same guarantees and errors.

    Cancelling the caller does not stop the write already under way in its thread: the file ends up
    old or new, never torn, either way.
    """
    await asyncio.to_thread(write_atomic, path, payload, mode=mode, durable=durable)
