"""A small real tmpfs to run out of space on: ENOSPC from the kernel, not from a mock.

Mounting needs root, as CI has; elsewhere the tests using it are skipped. Every mount is undone in a
``finally``, and every fill loop is bounded by the file system's size.
"""

from __future__ import annotations

import contextlib
import errno
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

FILL_BLOCK = 4096
"""Bytes written per step while filling: one page, so the last free page is used up too."""
MAX_FILL = 64 * 1024 * 1024
"""Most bytes a fill writes before it gives up (a mount that does not limit its size)."""


@contextlib.contextmanager
def small_tmpfs(directory: Path, size: str = "256k") -> Iterator[Path]:
    """Mount a tmpfs of ``size`` on ``directory`` (an existing empty directory) for the block's time."""
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root (CI runs as root)")
    subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size},mode=0700", "tmpfs", str(directory)],
        check=True,
        capture_output=True,
        timeout=30,
    )
    try:
        yield directory
    finally:
        # Lazy, so a file a dying child still holds open cannot keep the mount (and the test) alive.
        subprocess.run(["umount", "-l", str(directory)], check=False, capture_output=True, timeout=30)


def fill(directory: Path, name: str = "filler.bin") -> Path:
    """Write ``directory/name`` until the file system says ENOSPC; returns the filler (unlink it to free)."""
    filler = directory / name
    block = b"\xa5" * FILL_BLOCK
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        for _ in range(MAX_FILL // FILL_BLOCK):
            try:
                os.write(fd, block)
            except OSError as exc:
                if exc.errno == errno.ENOSPC:
                    return filler
                raise
    finally:
        os.close(fd)
    pytest.fail(f"{directory} did not fill up within {MAX_FILL} bytes: is it a small tmpfs?")


def allocate(path: Path) -> None:
    """Back every page of a (sparse) file with memory, contents unchanged, so rewriting it needs no space."""
    fd = os.open(path, os.O_RDWR)
    try:
        size = os.fstat(fd).st_size
        for offset in range(0, size, FILL_BLOCK):
            os.pwrite(fd, os.pread(fd, FILL_BLOCK, offset), offset)
    finally:
        os.close(fd)
