"""The deterministic content of the fault server's virtual files, and what a client should receive.

The bytes of a file are a pure function of its name, its ``version`` and the offset: any slice is a
zero-copy view of a cached pattern, and a test computes the expected bytes, SHA-256, ETag and
Last-Modified without downloading.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from email.utils import formatdate
from functools import lru_cache

KiB = 1024
"""One kibibyte."""
MiB = 1024 * KiB
"""One mebibyte."""


# The content repeats with this period: a prime a little under 1 MiB, so no power-of-two segment
# boundary or block size lines up with it and bytes written at a wrong offset never look right.
PATTERN_PERIOD = 1_048_573

# Last-Modified of version 0 of every file; each version adds a day.
_BASE_MTIME = 1_700_000_000

DEFAULT_CHUNK = 256 * KiB


@lru_cache(maxsize=16)
def _pattern(name: str, version: int) -> bytes:
    """Two periods of the content of ``(name, version)`` back to back, so any slice of up to one
    period is a zero-copy view of it."""
    seed = f"fetchtop-faultserver\0{name}\0{version}".encode()
    one = hashlib.shake_256(seed).digest(PATTERN_PERIOD)
    return one + one


def content_view(name: str, offset: int, length: int, version: int = 0) -> memoryview:
    """A zero-copy view of ``length`` (at most :data:`PATTERN_PERIOD`) content bytes at ``offset``."""
    if not 0 <= length <= PATTERN_PERIOD:
        raise ValueError(f"length must be within 0..{PATTERN_PERIOD}, got {length}")
    start = offset % PATTERN_PERIOD
    return memoryview(_pattern(name, version))[start : start + length]


def iter_content(
    name: str, start: int, end: int, version: int = 0, chunk: int = DEFAULT_CHUNK
) -> Iterable[memoryview]:
    """The content bytes ``[start, end)`` as successive zero-copy views of at most ``chunk`` bytes."""
    chunk = max(1, min(chunk, PATTERN_PERIOD))
    pos = start
    while pos < end:
        n = min(chunk, end - pos)
        yield content_view(name, pos, n, version)
        pos += n


def expected_bytes(name: str, size: int, version: int = 0, start: int = 0) -> bytes:
    """The exact bytes ``[start, size)`` the server sends for file ``name`` at ``version``."""
    if start >= size:
        return b""
    period = _pattern(name, version)[:PATTERN_PERIOD]
    first = start % PATTERN_PERIOD
    need = size - start
    reps = (first + need) // PATTERN_PERIOD + 1
    return (period * reps)[first : first + need]


def expected_sha256(name: str, size: int, version: int = 0) -> str:
    """Hex SHA-256 of the whole file ``name`` of ``size`` bytes at ``version``, computed in blocks."""
    h = hashlib.sha256()
    for view in iter_content(name, 0, size, version, chunk=PATTERN_PERIOD):
        h.update(view)
    return h.hexdigest()


def file_matches(path: str, name: str, size: int, version: int = 0) -> bool:
    """Whether the file at ``path`` holds exactly the content of ``name``/``size``/``version``."""
    with open(path, "rb") as f:
        pos = 0
        while True:
            block = f.read(PATTERN_PERIOD)
            if not block:
                return pos == size
            if pos + len(block) > size or block != content_view(name, pos, len(block), version):
                return False
            pos += len(block)


def etag_for(name: str, size: int, version: int = 0) -> str:
    """The (strong, quoted) ETag the server gives ``name`` at ``version``."""
    digest = hashlib.sha256(f"{name}\0{size}\0{version}".encode()).hexdigest()[:20]
    return f'"{digest}"'


def last_modified_for(version: int = 0) -> str:
    """The Last-Modified header value the server gives any file at ``version``."""
    return formatdate(_BASE_MTIME + 86_400 * version, usegmt=True)
