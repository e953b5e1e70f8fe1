"""Start the writeback of freshly written ranges early, so a checkpoint's fsync has little left to do.

Linux's ``sync_file_range(fd, offset, nbytes, SYNC_FILE_RANGE_WRITE)`` queues the dirty pages of a
range for writing and returns without waiting for them (nor for the metadata: it promises nothing
about durability, which stays the fsync's job). Python's ``os`` has no binding, so it is called
through ctypes on libc, looked up on first use. Best effort throughout: no libc symbol, a kernel or
kernel without the call (ENOSYS) turns it into a no-op for the process, a file that refuses it
(EINVAL, ESPIPE...) into a no-op for that call.
Calls block at most as long as the kernel takes to queue the pages: they run in worker threads.
"""

from __future__ import annotations

import errno
import os
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

from engine.ranges import RangeSet

WRITEBACK_ENV = "FETCHTOP_EARLY_WRITEBACK"
"""Set to ``off`` to never start writeback early (for the benchmark, to measure what it buys)."""
SYNC_FILE_RANGE_WRITE = 2
"""From <linux/fs.h>: start writeback of the range's dirty pages that are not already under writeback."""

_executor: ThreadPoolExecutor | None = None
_Call = Callable[[int, int, int, int], int]
_call: _Call | None = None
_looked_up = False
_lookup_lock = threading.Lock()


def _sync_file_range() -> _Call | None:
    """libc's ``sync_file_range``, or None where there is none (looked up once)."""
    global _call, _looked_up
    with _lookup_lock:
        if not _looked_up:
            _looked_up = True
            if os.environ.get(WRITEBACK_ENV, "").strip().lower() == "off":
                return None
            try:
                import ctypes  # only here: most runs of the CLI never need it

                libc = ctypes.CDLL(None, use_errno=True)
                fn = libc.sync_file_range
                fn.argtypes = (ctypes.c_int, ctypes.c_int64, ctypes.c_int64, ctypes.c_uint)
                fn.restype = ctypes.c_int
                get_errno = ctypes.get_errno

                def call(fd: int, offset: int, nbytes: int, flags: int) -> int:
                    """0, or the errno the call failed with."""
                    return 0 if fn(fd, offset, nbytes, flags) == 0 else get_errno()

                _call = call
            except (ImportError, OSError, AttributeError):
                _call = None
        return _call


def _disable() -> None:
    global _call
    _call = None


def start_writeback(fd: int, ranges: list[tuple[int, int]]) -> int:
    """Ask the kernel to start writing ``ranges`` (``[start, end)``) of ``fd`` back; ranges asked for.

    Never raises and never waits for the writes. 0 when the call is unavailable (then it stays so).
    """
    call = _sync_file_range()
    if call is None:
        return 0
    asked = 0
    for start, end in ranges:
        err = call(fd, start, end - start, SYNC_FILE_RANGE_WRITE)
        if err == 0:
            asked += 1
        elif err == errno.EINTR:
            continue  # a signal came in: the checkpoint's fsync writes the range all the same
        elif err in (errno.EIO, errno.ENOSPC, errno.ENOMEM):
            return asked  # the disk's trouble: the fsync at the checkpoint reports it
        elif err in (errno.ENOSYS, errno.EPERM):
            _disable()  # this kernel (or its sandbox) has no such call: stop asking
            return asked
        else:
            return asked  # EINVAL, ESPIPE, EBADF...: this file cannot take it; the fsync still does
    return asked


class DirtyRanges:
    """Ranges of one file written since the last writeback kick; written to from several threads."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._ranges = RangeSet()
        self.pending = 0
        """Bytes recorded since the last :meth:`take` (a rewritten byte counts twice)."""

    def add(self, start: int, end: int) -> None:
        """Record that ``[start, end)`` was just written."""
        with self._lock:
            self._ranges.add(start, end)
            self.pending += end - start

    def take(self) -> list[tuple[int, int]]:
        """The ranges recorded since the last call, merged, and forget them."""
        with self._lock:
            ranges, self._ranges = self._ranges, RangeSet()
            self.pending = 0
        return ranges.as_list()


def available() -> bool:
    """Whether early writeback works here (for the README's claims and the tests)."""
    return _sync_file_range() is not None and os.name == "posix"


def executor() -> ThreadPoolExecutor:
    """The one thread the kicks of every download run in, made on first use.

    Not asyncio's default executor: a kick may block while the disk's queue is full, and in that pool
    it would hold a thread the downloads' writes need.
    """
    global _executor
    with _lookup_lock:
        if _executor is None:
            _executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="fetchtop-writeback")
        return _executor
