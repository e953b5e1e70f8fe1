"""Failures: transient ones (truncation, resets, stalls, 5xx, 429) are retried with exact bytes; the
budget resets on progress; permanent ones (4xx, bad URLs, unknown hosts) fail at once in one line."""

from __future__ import annotations

import time
from email.utils import formatdate
from pathlib import Path

import pytest

from engine.engine import Engine
from engine.events import TaskFailed, TaskRetrying
from engine.models import TaskState
from faultserver.content import KiB, MiB
from faultserver.server import FaultServer
from tests.support.control import closed_range
from tests.support.downloads import assert_exact, download, fast_config, listing, opts
from tests.support.events import EventLog


async def test_truncated_bodies_are_detected_and_retried(
    fault_server: FaultServer, download_dir: Path
) -> None:
    size = 1 * MiB + 333
    url = fault_server.add_file("trunc.bin", size, truncate_after=200 * KiB, truncate_times=3)
    async with Engine(fast_config()) as engine, EventLog(engine) as log:
        task = await download(engine, url, opts(download_dir, connections=2))
    assert task.state is TaskState.COMPLETED, task.error
    assert_exact(task.path, "trunc.bin", size)
    assert fault_server.stats("trunc.bin").truncations == 3
    kinds = [e.kind for e in log.of(TaskRetrying, task.id)]
    assert kinds.count("truncated") == 3, kinds


async def test_a_truncated_single_stream_is_detected(fault_server: FaultServer, download_dir: Path) -> None:
    size = 700 * KiB
    url = fault_server.add_file("trunc-norange.bin", size, ranges=False, truncate_after=300 * KiB)
    async with Engine(fast_config()) as engine, EventLog(engine) as log:
        task = await download(engine, url, opts(download_dir))
    assert task.state is TaskState.COMPLETED, task.error
    assert_exact(task.path, "trunc-norange.bin", size)
    assert [e.kind for e in log.of(TaskRetrying, task.id)] == ["truncated"]
    assert fault_server.stats("trunc-norange.bin").requests == 2


async def test_connection_resets_are_retried_with_exact_bytes(
    fault_server: FaultServer, download_dir: Path
) -> None:
    size = 2 * MiB + 1
    url = fault_server.add_file("resets.bin", size, reset_after=150 * KiB, reset_times=4)
    async with Engine(fast_config()) as engine, EventLog(engine) as log:
        task = await download(engine, url, opts(download_dir, connections=4))
    assert task.state is TaskState.COMPLETED, task.error
    assert_exact(task.path, "resets.bin", size)
    stats = fault_server.stats("resets.bin")
    assert stats.resets == 4
    retried = log.of(TaskRetrying, task.id)
    assert len(retried) == 4
    assert all(e.kind in ("connection", "truncated") for e in retried), retried
    assert task.retries == 4
    # A retry continues where the reset left off: it asks for a range starting past the segment start.
    resumed = [closed_range(h) for h in stats.range_headers[1:]]
    assert all(r is not None for r in resumed)


async def test_budget_resets_whenever_progress_is_made(fault_server: FaultServer, download_dir: Path) -> None:
    size = 300 * KiB
    # Every response is reset after 50 KiB: six attempts are needed, far more than 1 retry, but each one
    # makes progress, so the budget never runs out. The pacing lets the engine read the bytes before the
    # reset arrives (aiohttp drops what is still buffered once a connection fails).
    url = fault_server.add_file("progress.bin", size, rate=1 * MiB, reset_after=50 * KiB, reset_times=None)
    async with Engine(fast_config()) as engine:
        task = await download(engine, url, opts(download_dir, connections=1, retries=1))
    assert task.state is TaskState.COMPLETED, task.error
    assert_exact(task.path, "progress.bin", size)
    assert fault_server.stats("progress.bin").resets >= 5  # more when the last bytes before one are lost


async def test_budget_resets_on_progress_for_truncations_too(
    fault_server: FaultServer, download_dir: Path
) -> None:
    size = 250 * KiB
    url = fault_server.add_file(
        "progress-t.bin", size, rate=1 * MiB, truncate_after=50 * KiB, truncate_times=None
    )
    async with Engine(fast_config()) as engine:
        task = await download(engine, url, opts(download_dir, connections=1, retries=1))
    assert task.state is TaskState.COMPLETED, task.error
    assert_exact(task.path, "progress-t.bin", size)
    assert fault_server.stats("progress-t.bin").truncations >= 4


@pytest.mark.parametrize("piece", [64 * KiB, MiB], ids=["in-a-later-piece", "in-the-probe"])
async def test_stall_times_out_and_is_retried(
    fault_server: FaultServer, download_dir: Path, piece: int
) -> None:
    size = 512 * KiB
    url = fault_server.add_file("stall.bin", size, stall_after=100 * KiB, stall_for=8.0)
    started = time.monotonic()
    options = opts(download_dir, connections=1, timeout=0.5, min_split=piece)
    async with Engine(fast_config()) as engine, EventLog(engine) as log:
        task = await download(engine, url, options)
    elapsed = time.monotonic() - started
    assert task.state is TaskState.COMPLETED, task.error
    assert_exact(task.path, "stall.bin", size)
    retried = log.of(TaskRetrying, task.id)
    assert [e.kind for e in retried] == ["timeout"]
    assert "stalled" in retried[0].reason
    assert elapsed < 6.0  # did not sit out the 8 s stall
    stats = fault_server.stats("stall.bin")
    assert stats.stalls == 1
    # The probe asked for its piece (min_split); a piece smaller than the 100 KiB before the stall
    # came whole, and the stall hit the next request, for the rest of the file.
    assert stats.range_headers[0] == f"bytes=0-{piece - 1}"
    stalled_at = 100 * KiB if piece > 100 * KiB else piece + 100 * KiB
    # The retry asked only for what was still missing.
    assert len(stats.range_headers) == (2 if piece > 100 * KiB else 3), stats.range_headers
    retry = closed_range(stats.range_headers[-1])
    assert retry is not None and retry[0] >= stalled_at and retry[1] == size - 1


async def test_503_with_retry_after_is_honoured(fault_server: FaultServer, download_dir: Path) -> None:
    size = 300 * KiB
    url = fault_server.add_file("busy.bin", size, fail_status=503, fail_times=1, retry_after="1")
    started = time.monotonic()
    async with Engine(fast_config()) as engine, EventLog(engine) as log:
        task = await download(engine, url, opts(download_dir))
    elapsed = time.monotonic() - started
    assert task.state is TaskState.COMPLETED, task.error
    assert_exact(task.path, "busy.bin", size)
    retried = log.of(TaskRetrying, task.id)
    assert len(retried) == 1
    assert retried[0].delay == 1.0
    assert retried[0].reason == "HTTP 503 Service Unavailable"
    assert retried[0].kind == "http_5xx"
    assert elapsed >= 1.0
    assert fault_server.stats("busy.bin").statuses[:2] == [503, 206]


async def test_429_with_an_http_date_retry_after(fault_server: FaultServer, download_dir: Path) -> None:
    size = 200 * KiB
    when = formatdate(time.time() + 2, usegmt=True)
    url = fault_server.add_file("slowdown.bin", size, fail_status=429, retry_after=when)
    async with Engine(fast_config()) as engine, EventLog(engine) as log:
        task = await download(engine, url, opts(download_dir))
    assert task.state is TaskState.COMPLETED, task.error
    assert_exact(task.path, "slowdown.bin", size)
    retried = log.of(TaskRetrying, task.id)
    assert len(retried) == 1 and retried[0].kind == "http_429"
    # An HTTP date has one-second resolution: the delay is the time left until it.
    assert 0.5 <= retried[0].delay <= 2.5


async def test_5xx_without_retry_after_uses_backoff(fault_server: FaultServer, download_dir: Path) -> None:
    size = 100 * KiB
    url = fault_server.add_file("flaky500.bin", size, fail_status=500, fail_times=3)
    async with Engine(fast_config()) as engine, EventLog(engine) as log:
        task = await download(engine, url, opts(download_dir))
    assert task.state is TaskState.COMPLETED, task.error
    assert_exact(task.path, "flaky500.bin", size)
    retried = log.of(TaskRetrying, task.id)
    assert [e.attempt for e in retried] == [1, 2, 3]
    # Full jitter under the configured ceilings (base 0.05 doubling, cap 0.2).
    for e in retried:
        assert 0 <= e.delay <= min(0.2, 0.05 * 2 ** (e.attempt - 1)) + 1e-9


@pytest.mark.parametrize(("status", "reason"), [(404, "HTTP 404 Not Found"), (410, "HTTP 410 Gone")])
async def test_not_found_fails_at_once(
    fault_server: FaultServer, download_dir: Path, status: int, reason: str
) -> None:
    url = fault_server.add_file(f"gone-{status}.bin", 0, status=status)
    async with Engine(fast_config()) as engine, EventLog(engine) as log:
        task = await download(engine, url, opts(download_dir))
    assert task.state is TaskState.FAILED
    assert task.error == reason
    assert [e.reason for e in log.of(TaskFailed, task.id)] == [reason]
    assert not log.of(TaskRetrying)
    assert fault_server.stats(f"gone-{status}.bin").requests == 1
    assert listing(download_dir) == []


async def test_other_4xx_fail_at_once(fault_server: FaultServer, download_dir: Path) -> None:
    async with Engine(fast_config()) as engine, EventLog(engine) as log:
        task = await download(engine, fault_server.status_url(403), opts(download_dir))
    assert task.state is TaskState.FAILED
    assert task.error == "HTTP 403 Forbidden"
    assert not log.of(TaskRetrying)


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("ftp://127.0.0.1/file.bin", "unsupported URL scheme 'ftp'"),
        ("file:///etc/passwd", "unsupported URL scheme 'file'"),
        ("no-scheme-at-all", "unsupported URL scheme"),
        ("http:///only/a/path", "malformed URL"),
        ("http://[::1/broken", "malformed URL"),
        ("http://user:pw@[::1/broken", "malformed URL"),
        ("http://nonexistent.invalid/file.bin", "unknown host: nonexistent.invalid"),
    ],
)
async def test_bad_urls_fail_at_once_with_one_line(download_dir: Path, url: str, expected: str) -> None:
    async with Engine(fast_config()) as engine, EventLog(engine) as log:
        tid = await engine.add(url, opts(download_dir))
        snap = await engine.wait([tid])
    task = snap.task(tid)
    assert task is not None
    assert task.state is TaskState.FAILED
    assert task.error is not None
    assert task.error.startswith(expected), task.error
    assert "\n" not in task.error and len(task.error) < 200
    assert not log.of(TaskRetrying)
    assert listing(download_dir) == []


async def test_retry_budget_exhausted_fails(fault_server: FaultServer, download_dir: Path) -> None:
    url = fault_server.add_file("down.bin", 100 * KiB, fail_status=503, fail_times=None)
    async with Engine(fast_config()) as engine, EventLog(engine) as log:
        task = await download(engine, url, opts(download_dir, retries=2))
    assert task.state is TaskState.FAILED
    assert task.error == "HTTP 503 Service Unavailable (gave up after 2 retries)"
    assert len(log.of(TaskRetrying, task.id)) == 2
    assert fault_server.stats("down.bin").requests == 3
    failed = log.of(TaskFailed, task.id)
    assert len(failed) == 1 and failed[0].reason == task.error


async def test_retry_budget_exhausted_mid_download_keeps_progress(
    fault_server: FaultServer, download_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Full jitter can make the first retry almost immediate, racing the server change below:
    # a fixed delay gives the test time to switch the server to 503 before the retry goes out.
    monkeypatch.setattr("engine.retry.backoff_delay", lambda attempt, base, cap, rand=None: 0.3)
    size = 1 * MiB
    url = fault_server.add_file("dies.bin", size, rate=2 * MiB, truncate_after=256 * KiB)
    async with Engine(fast_config()) as engine, EventLog(engine) as log:
        tid = await engine.add(url, opts(download_dir, connections=1, retries=1))
        # After the first truncation every request fails: the budget of 1 runs out.
        await log.wait_for(TaskRetrying, tid)
        fault_server.update("dies.bin", fail_status=503, fail_times=None)
        snap = await engine.wait([tid])
        task = snap.task(tid)
        assert task is not None
        assert task.state is TaskState.FAILED
        assert task.error is not None and "gave up after 1 retries" in task.error
        assert task.done >= 256 * KiB  # what arrived is kept for a later retry
        # A retry (resume) after the server recovers completes with the exact bytes.
        fault_server.update("dies.bin", fail_status=None)
        await engine.resume(tid)
        snap = await engine.wait([tid])
    task = snap.task(tid)
    assert task is not None and task.state is TaskState.COMPLETED, task
    assert_exact(task.path, "dies.bin", size)
