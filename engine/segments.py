"""Segment planning: how a file's missing bytes are shared among connections. Pure, no I/O."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass


@dataclass
class Segment:
    """A range ``[start, end)`` assigned to at most one connection; ``pos`` is the next byte."""

    start: int
    """First byte of the range."""
    end: int
    """One past the last byte; shrinks when another connection takes over the tail."""
    pos: int
    """Next byte to fetch; ``start <= pos <= end``."""
    committed: int = 0
    """End of the range already requested from the server; bytes before it are on their way."""

    @property
    def remaining(self) -> int:
        """Bytes still to fetch."""
        return max(0, self.end - self.pos)

    @property
    def stealable(self) -> int:
        """Bytes at the tail not yet requested, which another connection may take without waste."""
        return max(0, self.end - max(self.pos, self.committed))


def first_range(missing: Sequence[tuple[int, int]], size: int | None, piece: int) -> tuple[int, int]:
    """``(first, last)``, inclusive, of the closed range the first request of a run asks for.

    ``missing`` are the gaps of a partial download of ``size`` bytes, or empty with ``size`` None for a
    fresh one. The answer is the first ``piece`` bytes of the first gap (from byte 0 when fresh); with
    nothing missing of a known size, the last byte alone re-validates the file. ``piece`` is the task's
    ``min_split``: :func:`initial_plan` never makes a segment shorter than that (or than its gap), so the
    probe's bytes always fall inside the first planned segment and none of them is asked for twice.
    """
    piece = max(1, piece)
    if missing:
        start, end = missing[0]
        return start, min(end, start + piece) - 1
    if size:
        return size - 1, size - 1
    return 0, piece - 1


def initial_plan(gaps: Sequence[tuple[int, int]], connections: int, min_split: int) -> list[Segment]:
    """Cut the missing ranges into about ``connections`` segments of at least ``min_split``.

    Each gap becomes at least one segment; the largest pieces are halved until there are
    ``connections`` of them or none is big enough to halve.
    """
    segments = [Segment(s, e, s) for s, e in gaps if e > s]
    while len(segments) < connections:
        new = split_largest(segments, min_split)
        if new is None:
            break
        segments.append(new)
    segments.sort(key=lambda seg: seg.start)
    return segments


def split_largest(segments: Iterable[Segment], min_split: int) -> Segment | None:
    """Take over the back half of the segment with the most bytes not yet requested.

    Only the part past ``committed`` is split: bytes already requested would arrive on the
    old connection anyway, so taking them over would make the server send them twice. The
    chosen segment's ``end`` moves to the midpoint of that part and the new segment covers
    the rest. Nothing is split into a piece smaller than ``min_split``.
    """
    victim: Segment | None = None
    for seg in segments:
        if victim is None or seg.stealable > victim.stealable:
            victim = seg
    if victim is None or victim.stealable < 2 * max(1, min_split):
        return None
    base = max(victim.pos, victim.committed)
    mid = base + victim.stealable // 2
    new = Segment(mid, victim.end, mid)
    victim.end = mid
    return new


def split_slowest(
    candidates: Iterable[tuple[Segment, float]], min_split: int, patience: float
) -> Segment | None:
    """Take over the back half of the segment that would take longest to finish at its speed.

    For when :func:`split_largest` finds nothing left unrequested: cutting a request short
    wastes what the server already sent, so it is only worth it when the segment's connection
    would otherwise need more than ``patience`` seconds. ``candidates`` pairs each segment
    with the bytes per second its connection gets (0 for a stalled one).
    """
    victim: Segment | None = None
    worst = patience
    for seg, speed in candidates:
        if seg.remaining < 2 * max(1, min_split):
            continue
        eta = seg.remaining / speed if speed > 0 else float("inf")
        if eta > worst:
            victim, worst = seg, eta
    if victim is None:
        return None
    mid = victim.pos + victim.remaining // 2
    new = Segment(mid, victim.end, mid)
    victim.end = mid
    return new
