"""Slow servers: a connection trickling a byte every half second is dropped as too slow (a read timeout
never fires on it) and its bytes are asked for again on a fresh connection; when the retries run out
the task fails with "too slow: N B/s for S s". ``--lowest-speed 0`` turns the check off, and a speed
limit of ours below the lowest speed is no cause. Against a raw trickle server on 127.0.0.1; the
engine directly, ``fetchtop get`` and ``fetchtop add`` as real processes."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from prometheus_client import generate_latest

from engine.config import EngineConfig
from engine.engine import Engine
from engine.events import TaskRetrying
from engine.metrics import EngineMetrics
from engine.models import TaskState
from faultserver.content import KiB, MiB, file_matches
from tests.support.daemons import Daemons, daemon_area
from tests.support.downloads import assert_exact, download, fast_config, opts
from tests.support.events import EventLog
from tests.support.net import closed_port_url
from tests.support.processes import Processes, assert_no_traceback
from tests.support.raw_server import RawServer
from tests.support.trickle_server import TrickleServer, threaded
from tests.support.waiting import wait_until

BOUND = 20.0
"""Seconds a download that trickles may take to end: before the lowest-speed check it never did."""
PROBE = 64 * KiB
"""Bytes the first request asks for under the tests' opts(): their min_split."""
TOO_SLOW = re.compile(r"too slow: (\d+) B/s for (\d+\.\d) s \(gave up after 1 retries\)")


def measured(reason: str | None) -> tuple[int, float]:
    """The rate and span a "too slow" reason reports; fails on any other reason."""
    m = TOO_SLOW.fullmatch(reason or "")
    assert m, reason
    return int(m.group(1)), float(m.group(2))


@pytest.mark.parametrize("ranges", [True, False], ids=["segmented", "whole-body"])
async def test_a_trickle_fails_as_too_slow_when_the_retries_run_out(download_dir: Path, ranges: bool) -> None:
    async with (
        TrickleServer("trickle.bin", 4 * KiB, ranges=ranges) as srv,
        Engine(fast_config()) as engine,
        EventLog(engine) as log,
    ):
        task = await download(engine, srv.url(), opts(download_dir, timeout=1.0, retries=1), limit=BOUND)
    assert task.state is TaskState.FAILED
    rate, seconds = measured(task.error)
    assert rate < 1024 and 1.0 <= seconds < 2.0, task.error  # 2 bytes a second, over one window
    retried = log.of(TaskRetrying, task.id)
    assert retried and {e.kind for e in retried} == {"too_slow"}, retried
    assert not (download_dir / "trickle.bin").exists()
    # Each drop closed its connection: none carried a second request.
    assert len(srv.connections) >= 2
    assert all(len(c.ranges) == 1 for c in srv.connections), srv.connections


async def test_a_dropped_connection_is_reopened_on_its_remaining_bytes(download_dir: Path) -> None:
    size = 512 * KiB
    async with (
        TrickleServer("once.bin", size, trickled=1) as srv,
        Engine(fast_config()) as engine,
        EventLog(engine) as log,
    ):
        task = await download(
            engine, srv.url(), opts(download_dir, connections=1, timeout=1.0, retries=1), limit=BOUND
        )
        first = srv.connections[0]
        await wait_until(lambda: first.dropped, "the trickled connection to be closed by the client")
    assert task.state is TaskState.COMPLETED, task.error
    assert_exact(task.path, "once.bin", size)
    assert [e.kind for e in log.of(TaskRetrying, task.id)] == ["too_slow"]
    # The first connection gave a few bytes and was closed; a new one was asked for the rest alone.
    assert [c.ranges for c in srv.connections] == [
        [f"bytes=0-{PROBE - 1}"],
        [f"bytes={first.sent}-{size - 1}"],
    ]
    assert 1 <= first.sent <= 4
    assert srv.served == size


async def test_a_trickle_among_fast_connections_is_replaced(download_dir: Path) -> None:
    size = 512 * KiB
    async with (
        TrickleServer("among.bin", size, trickled=1) as srv,
        Engine(fast_config()) as engine,
        EventLog(engine) as log,
    ):
        task = await download(engine, srv.url(), opts(download_dir, connections=4, timeout=1.0), limit=BOUND)
        first = srv.connections[0]
        await wait_until(lambda: first.dropped, "the trickled connection to be closed by the client")
    assert task.state is TaskState.COMPLETED, task.error
    assert_exact(task.path, "among.bin", size)
    assert [e.kind for e in log.of(TaskRetrying, task.id)] == ["too_slow"]
    assert first.ranges == [f"bytes=0-{PROBE - 1}"]
    later = [r for c in srv.connections[1:] for r in c.ranges]
    assert any(r is not None and r.startswith(f"bytes={first.sent}-") for r in later), later


async def test_without_ranges_a_too_slow_stream_starts_over(download_dir: Path) -> None:
    size = 256 * KiB
    async with (
        TrickleServer("plain.bin", size, trickled=1, ranges=False) as srv,
        Engine(fast_config()) as engine,
        EventLog(engine) as log,
    ):
        task = await download(engine, srv.url(), opts(download_dir, timeout=1.0, retries=1), limit=BOUND)
    assert task.state is TaskState.COMPLETED, task.error
    assert_exact(task.path, "plain.bin", size)
    assert [e.kind for e in log.of(TaskRetrying, task.id)] == ["too_slow"]
    assert len(srv.connections) == 2 and srv.served == srv.connections[0].sent + size


async def test_lowest_speed_0_lets_a_trickle_go_on(download_dir: Path) -> None:
    async with TrickleServer("on.bin", 4 * KiB) as srv, Engine(fast_config()) as engine:
        tid = await engine.add(srv.url(), opts(download_dir, connections=1, timeout=1.0, lowest_speed=0))
        # Three windows' worth of trickle: the check would have dropped it twice by now.
        await wait_until(lambda: srv.served >= 7, "seven trickled bytes", limit=BOUND)
        task = engine.snapshot().task(tid)
        assert task is not None and task.state is TaskState.DOWNLOADING
        assert task.retries == 0 and len(srv.connections) == 1


@pytest.mark.parametrize("whose", ["task", "engine"])
async def test_our_own_speed_limit_below_the_lowest_speed_drops_nothing(
    download_dir: Path, whose: str
) -> None:
    size = 160 * KiB
    limit = 64 * KiB  # about 2.3 s for the file, at a twentieth of the lowest speed
    config = fast_config(speed_limit=limit if whose == "engine" else None)
    options = opts(
        download_dir,
        connections=2,
        timeout=1.0,
        retries=0,  # a single drop would fail the task
        lowest_speed=1024 * KiB,
        speed_limit=limit if whose == "task" else None,
    )
    async with TrickleServer("limited.bin", size, trickled=0) as srv, Engine(config) as engine:
        task = await download(engine, srv.url(), options, limit=BOUND)
    assert task.state is TaskState.COMPLETED, task.error
    assert task.retries == 0
    assert_exact(task.path, "limited.bin", size)


def test_too_slow_is_a_retry_reason_of_the_metrics_from_the_start() -> None:
    text = generate_latest(EngineMetrics().registry).decode()
    assert 'fetchtop_retries_total{reason="too_slow"} 0.0' in text


def test_get_fails_a_trickle_in_one_line(procs: Processes) -> None:
    with threaded(TrickleServer("cli.bin", 4 * KiB)) as srv:
        res = procs.run(["get", "--timeout", "1", "--retries", "1", "-d", "out", srv.url()], timeout=BOUND)
    assert res.returncode == 1, res.describe()
    assert len(res.err_lines) == 1, res.describe()
    prefix = f"fetchtop: {srv.url()}: "
    assert res.err_lines[0].startswith(prefix), res.describe()
    measured(res.err_lines[0].removeprefix(prefix))
    assert_no_traceback(res.stdout, res.stderr)
    assert not (procs.cwd / "out" / "cli.bin").exists()


def test_get_replaces_a_trickling_connection_and_completes(procs: Processes) -> None:
    size = 256 * KiB
    with threaded(TrickleServer("cli-once.bin", size, trickled=1)) as srv:
        res = procs.run(["get", "--timeout", "1", "-x", "2", "-d", "out", srv.url()], timeout=BOUND)
    assert res.returncode == 0, res.describe()
    assert res.err_lines == [], res.describe()
    assert any("retrying" in line and "too slow: " in line for line in res.out_lines), res.describe()
    assert file_matches(str(procs.cwd / "out" / "cli-once.bin"), "cli-once.bin", size)
    # The probe asks for fetchtop get's own min_split (1 MiB), knowing no size yet.
    assert srv.connections[0].ranges == [f"bytes=0-{MiB - 1}"] and len(srv.connections) >= 2


@pytest.mark.parametrize("value", ["fast", "-1", "12Q"])
def test_get_refuses_a_bad_lowest_speed(procs: Processes, value: str) -> None:
    res = procs.run(["get", "--lowest-speed", value, "http://127.0.0.1:9/x.bin"])
    assert res.returncode == 2, res.describe()
    assert len(res.err_lines) == 1 and "--lowest-speed" in res.err_lines[0], res.describe()
    assert_no_traceback(res.stdout, res.stderr)


def test_a_lowest_speed_set_in_the_engine_config_is_the_default() -> None:
    # What the daemon and the dashboard are started with reaches every task added without its own.
    from tui.cli import build_parser
    from tui.options import download_request

    request = download_request(build_parser("get").parse_args(["--lowest-speed", "0", "http://x/"]), True)
    assert request.options.lowest_speed == 0
    assert isinstance(request.config, EngineConfig) and request.config.defaults.lowest_speed == 0
    plain = download_request(build_parser("get").parse_args(["http://x/"]), True)
    assert plain.options.lowest_speed is None


@pytest.fixture
def daemons() -> Iterator[Daemons]:
    with daemon_area() as area:
        yield area


def test_add_carries_the_lowest_speed_to_the_daemon(daemons: Daemons) -> None:
    daemons.start()
    own = int(daemons.ok("add", "--lowest-speed", "7K", closed_port_url()))
    off = int(daemons.ok("add", "--lowest-speed", "0", closed_port_url()))
    default = int(daemons.ok("add", closed_port_url()))
    assert daemons.task(own)["options"]["lowest_speed"] == 7 * KiB
    assert daemons.task(off)["options"]["lowest_speed"] == 0
    assert daemons.task(default)["options"]["lowest_speed"] is None


def test_the_api_takes_a_lowest_speed_in_bytes_per_second_only() -> None:
    from engine.daemon.api import RequestError, decode_options
    from engine.models import TaskOptions

    assert decode_options({"lowest_speed": 2048}, TaskOptions(), "/tmp").lowest_speed == 2048
    with pytest.raises(RequestError):
        decode_options({"lowest_speed": "2K"}, TaskOptions(), "/tmp")


async def test_trickled_response_headers_stall_and_fail(download_dir: Path) -> None:
    # aiohttp's read timeout restarts with every header line, so this probe used to hang for ever.
    async def header_trickle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await srv.read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\n")
        for n in range(120):  # bounded: a minute at most, far past the deadline
            writer.write(f"X-Slow-{n}: 1\r\n".encode())
            await writer.drain()
            await asyncio.sleep(0.5)

    srv = RawServer(header_trickle)
    async with srv, Engine(fast_config()) as engine:
        task = await download(
            engine,
            srv.url("/h.bin"),
            opts(download_dir, timeout=1.0, connect_timeout=1.0, retries=1),
            limit=BOUND,
        )
    assert task.state is TaskState.FAILED
    assert task.error is not None and "no complete response headers within 2 s" in task.error, task.error
    assert not (download_dir / "h.bin").exists()
