"""The retry budget of one attempt loop, like urllib3's ``Retry``. Pure: no I/O, no sleeping."""

from __future__ import annotations

import random
from dataclasses import dataclass

from engine.backoff import backoff_delay
from engine.errors import DownloadError
from engine.escaping import MAX_LINE, bound


@dataclass
class Retry:
    """How many more times a request loop (the probe, one segment, the whole body) may retry.

    Failures are counted since the last progress: a connection that keeps delivering bytes between
    resets never runs out, one that delivers nothing gives up after ``total`` retries.
    """

    total: int
    """Retries allowed in a row without progress."""
    backoff_base: float = 0.5
    """Ceiling of the first backoff, in seconds; it doubles with each further attempt."""
    backoff_cap: float = 30.0
    """Largest backoff ceiling, in seconds."""
    rand: random.Random | None = None
    """Source of the jitter; None for the module's shared generator."""
    attempt: int = 0
    """Failures since the last progress: the number of the retry about to be made, once counted."""

    @property
    def left(self) -> int:
        """Retries still allowed before the budget runs out."""
        return max(0, self.total - self.attempt)

    def progressed(self) -> None:
        """Bytes arrived since the last failure: the next failure counts as the first again."""
        self.attempt = 0

    @staticmethod
    def is_permanent(err: DownloadError) -> bool:
        """Whether retrying cannot help (a 404, an unknown host, a bad checksum, ...)."""
        return err.permanent

    def increment(self, err: DownloadError) -> float:
        """Count the failure ``err``; return the seconds to wait before retrying.

        Raises ``err`` itself when it is permanent, and a DownloadError of the same kind saying so
        when the budget is spent.
        """
        if self.is_permanent(err):
            raise err
        self.attempt += 1
        if self.attempt > self.total:
            suffix = f" (gave up after {self.total} retries)"
            # Cut the reason rather than the suffix when the two do not fit in one line.
            raise DownloadError(bound(err.reason, MAX_LINE - len(suffix)) + suffix, kind=err.kind)
        return self.delay(err)

    def delay(self, err: DownloadError) -> float:
        """Seconds before the current attempt: the server's Retry-After if it sent one, else backoff."""
        if err.retry_after is not None:
            return err.retry_after
        return backoff_delay(self.attempt, self.backoff_base, self.backoff_cap, self.rand)
