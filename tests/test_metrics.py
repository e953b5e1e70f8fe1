"""The Prometheus endpoint against a real engine downloading from a real local HTTP server."""

from __future__ import annotations

import asyncio
import json
import re
import socket
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import aiohttp
import pytest
from prometheus_client import REGISTRY, generate_latest
from prometheus_client.openmetrics.exposition import generate_latest as generate_openmetrics
from prometheus_client.openmetrics.parser import text_string_to_metric_families as parse_openmetrics
from prometheus_client.parser import text_string_to_metric_families

from engine.config import EngineConfig
from engine.engine import Engine
from engine.events import ProgressUpdated, TaskCompleted, TaskRetrying
from engine.metrics import EngineMetrics, MetricsServer, start_metrics
from engine.models import EngineSnapshot, TaskOptions, TaskSnapshot, TaskState
from tests.support.file_server import FileServer, Served, payload
from tests.support.processes import ROOT
from tests.support.waiting import wait_until

DASHBOARD = ROOT / "contrib" / "grafana" / "fetchtop.json"
"""The Grafana dashboard shipped in contrib/, whose queries are checked against the exposition."""

# ---------------------------------------------------------------------------------------------------
# Scraping


Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def parse(text: str) -> Samples:
    """Every sample of a text-format exposition, keyed by name and label set."""
    samples: Samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            samples[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return samples


def value(samples: Samples, name: str, **labels: str) -> float | None:
    """The sample with exactly these labels, if present."""
    return samples.get((name, frozenset(labels.items())))


def series(samples: Samples, name: str) -> list[dict[str, str]]:
    """Label sets of every sample of ``name``."""
    return [dict(labels) for (n, labels) in samples if n == name]


async def scrape_text(port: int, accept: str | None = None) -> tuple[str, str]:
    """Body and Content-Type of ``/metrics``."""
    headers = {"Accept": accept} if accept else {}
    timeout = aiohttp.ClientTimeout(total=10)
    async with (
        aiohttp.ClientSession(timeout=timeout) as session,
        session.get(f"http://127.0.0.1:{port}/metrics", headers=headers) as resp,
    ):
        assert resp.status == 200
        return await resp.text(), resp.headers["Content-Type"]


async def scrape(port: int) -> Samples:
    """The parsed samples of ``/metrics``."""
    text, _ = await scrape_text(port)
    return parse(text)


async def scrape_until(port: int, check: Callable[[Samples], bool], limit: float = 10.0) -> Samples:
    """Scrape until ``check`` holds for the samples, failing after ``limit`` seconds."""
    scraped: list[Samples] = [{}]

    async def satisfied() -> Samples | None:
        scraped[0] = await scrape(port)
        return scraped[0] if check(scraped[0]) else None

    return await wait_until(
        satisfied, lambda: f"scrapes to satisfy the check: {scraped[0]}", limit=limit, interval=0.05
    )


# ---------------------------------------------------------------------------------------------------
# Fixtures


@pytest.fixture
async def files() -> AsyncIterator[FileServer]:
    server = await FileServer().start()
    try:
        yield server
    finally:
        await server.stop()


@pytest.fixture
async def engine() -> AsyncIterator[Engine]:
    async with Engine(EngineConfig(tick=0.05, backoff_base=0.02, backoff_cap=0.1)) as eng:
        yield eng


@pytest.fixture
async def metrics(engine: Engine) -> AsyncIterator[MetricsServer]:
    server = await start_metrics(engine, "127.0.0.1", 0)
    try:
        yield server
    finally:
        await server.close()


def opts(tmp_path: Path, **kw: object) -> TaskOptions:
    return TaskOptions(directory=str(tmp_path), **kw)  # type: ignore[arg-type]


TASK_FAMILIES = (
    "fetchtop_task_downloaded_bytes",
    "fetchtop_task_size_bytes",
    "fetchtop_task_speed_bytes_per_second",
)

# ---------------------------------------------------------------------------------------------------
# Against a real engine


async def test_counters_match_the_bytes_downloaded(
    files: FileServer, engine: Engine, metrics: MetricsServer, tmp_path: Path
) -> None:
    bodies = {"a.bin": payload(300_000, 1), "b.bin": payload(123_457, 2), "c.bin": payload(1, 3)}
    urls = [files.add(name, Served(body)) for name, body in bodies.items()]
    # One connection each, so every byte the server writes is a byte the engine reads: with
    # several, a probe's response cut short still fills socket buffers the engine never reads.
    ids = [await engine.add(url, opts(tmp_path, connections=1)) for url in urls]
    await engine.wait(ids)

    total = sum(len(b) for b in bodies.values())
    for name, body in bodies.items():
        assert (tmp_path / name).read_bytes() == body
    assert sum(f.sent for f in files.files.values()) == total
    assert engine.snapshot().downloaded == total

    # The event path alone gets there (no scrape has refreshed the snapshot yet).
    await wait_until(
        lambda: metrics.metrics.downloaded_bytes == total and metrics.metrics.finished["completed"] == 3,
        "the counters to take in all three downloads",
        limit=10,
    )

    samples = await scrape(metrics.port)
    assert value(samples, "fetchtop_downloaded_bytes_total") == total
    assert value(samples, "fetchtop_downloads_finished_total", result="completed") == 3
    assert value(samples, "fetchtop_downloads_finished_total", result="failed") == 0
    assert value(samples, "fetchtop_downloads_finished_total", result="cancelled") == 0
    assert value(samples, "fetchtop_download_duration_seconds_count") == 3
    assert value(samples, "fetchtop_download_duration_seconds_bucket", le="+Inf") == 3
    assert value(samples, "fetchtop_tasks", state="completed") == 3
    assert value(samples, "fetchtop_tasks", state="downloading") == 0
    assert value(samples, "fetchtop_open_connections") == 0
    assert value(samples, "fetchtop_speed_limit_bytes_per_second") == 0
    for name in TASK_FAMILIES:
        assert series(samples, name) == []

    # A second scrape changes nothing: the counter is not re-counted from the same snapshot.
    again = await scrape(metrics.port)
    assert value(again, "fetchtop_downloaded_bytes_total") == total


async def test_per_task_series_exist_only_while_active_or_paused(
    files: FileServer, engine: Engine, metrics: MetricsServer, tmp_path: Path
) -> None:
    size = 96 * 1024
    url = files.add("slow.bin", Served(payload(size), rate=48 * 1024))
    tid = await engine.add(url, opts(tmp_path, connections=1))
    labels = {"task_id": str(tid), "file_name": "slow.bin"}

    def shows_progress(s: Samples) -> bool:
        done = value(s, "fetchtop_task_downloaded_bytes", **labels)
        return value(s, "fetchtop_task_size_bytes", **labels) == size and done is not None and done > 0

    samples = await scrape_until(metrics.port, shows_progress)
    assert value(samples, "fetchtop_task_downloaded_bytes", **labels) is not None
    assert value(samples, "fetchtop_task_speed_bytes_per_second", **labels) is not None

    await engine.pause(tid)
    samples = await scrape(metrics.port)
    assert value(samples, "fetchtop_tasks", state="paused") == 1
    paused_done = value(samples, "fetchtop_task_downloaded_bytes", **labels)
    assert paused_done is not None and 0 < paused_done < size
    assert value(samples, "fetchtop_task_size_bytes", **labels) == size

    await engine.resume(tid)
    await engine.wait([tid])
    samples = await scrape(metrics.port)
    for name in TASK_FAMILIES:
        assert series(samples, name) == [], name
    assert value(samples, "fetchtop_downloads_finished_total", result="completed") == 1
    assert value(samples, "fetchtop_downloaded_bytes_total") == files.files["slow.bin"].sent
    assert files.files["slow.bin"].sent >= size


async def test_cancelled_failed_and_removed_tasks_leave_no_series(
    files: FileServer, engine: Engine, metrics: MetricsServer, tmp_path: Path
) -> None:
    slow = Served(payload(64 * 1024, 5), rate=16 * 1024)
    cancel_id = await engine.add(files.add("cancel.bin", slow), opts(tmp_path, connections=1))
    remove_id = await engine.add(
        files.add("remove.bin", Served(payload(64 * 1024, 6), rate=16 * 1024)), opts(tmp_path, connections=1)
    )
    failed_id = await engine.add(files.add("gone.bin", Served(b"", status=404)), opts(tmp_path))

    def active_ids(s: Samples) -> set[str]:
        return {labels["task_id"] for labels in series(s, "fetchtop_task_downloaded_bytes")}

    await scrape_until(metrics.port, lambda s: {str(cancel_id), str(remove_id)} <= active_ids(s))
    await engine.wait([failed_id])
    await engine.cancel(cancel_id)
    await engine.pause(remove_id)
    samples = await scrape(metrics.port)
    assert active_ids(samples) == {str(remove_id)}
    await engine.remove(remove_id, delete_files=True)

    samples = await scrape(metrics.port)
    for name in TASK_FAMILIES:
        assert series(samples, name) == [], name
    assert value(samples, "fetchtop_downloads_finished_total", result="cancelled") == 1
    assert value(samples, "fetchtop_downloads_finished_total", result="failed") == 1
    assert value(samples, "fetchtop_downloads_finished_total", result="completed") == 0
    assert value(samples, "fetchtop_tasks", state="cancelled") == 1
    assert value(samples, "fetchtop_tasks", state="failed") == 1
    # Whatever the engine received before the cancel is counted, and nothing more.
    received = engine.snapshot().downloaded
    assert value(samples, "fetchtop_downloaded_bytes_total") == received
    assert received <= slow.sent + files.files["remove.bin"].sent


async def test_retries_are_counted_by_reason(files: FileServer, engine: Engine, tmp_path: Path) -> None:
    seen: list[TaskRetrying] = []
    sub = engine.subscribe()

    async def watch() -> None:
        async for event in sub:
            if isinstance(event, TaskRetrying):
                seen.append(event)

    watcher = asyncio.create_task(watch())
    server = await start_metrics(engine, "127.0.0.1", 0)
    try:
        body = payload(50_000, 9)
        tid = await engine.add(files.add("flaky.bin", Served(body, fail_first=2)), opts(tmp_path))
        await engine.wait([tid])
        assert (tmp_path / "flaky.bin").read_bytes() == body
        await wait_until(lambda: len(seen) >= 2, "both retries to be seen", limit=10)
        samples = await scrape(server.port)
        kinds = {e.kind for e in seen}
        assert kinds == {"http_5xx"}
        assert value(samples, "fetchtop_retries_total", reason="http_5xx") == len(seen)
        assert value(samples, "fetchtop_retries_total", reason="timeout") == 0
        assert value(samples, "fetchtop_downloads_finished_total", result="completed") == 1
    finally:
        await server.close()
        sub.close()
        await watcher


async def test_label_values_with_quotes_are_escaped(
    files: FileServer, engine: Engine, metrics: MetricsServer, tmp_path: Path
) -> None:
    # The name comes from the server, as a hostile one would: quotes survive sanitizing.
    name = 'we "ird" name.bin'
    disposition = 'attachment; filename="we \\"ird\\" name.bin"'
    url = files.add("plain.bin", Served(payload(64 * 1024), rate=32 * 1024, disposition=disposition))
    tid = await engine.add(url, opts(tmp_path, connections=1))
    labels = {"task_id": str(tid), "file_name": name}
    await scrape_until(
        metrics.port, lambda s: value(s, "fetchtop_task_downloaded_bytes", **labels) is not None
    )
    text, _ = await scrape_text(metrics.port)
    assert 'file_name="we \\"ird\\" name.bin"' in text
    await engine.wait([tid])
    assert (tmp_path / name).exists()


def test_label_values_keep_quotes_and_backslashes_and_escape_newlines() -> None:
    # The engine sanitizes local names, but a remote engine's snapshot is not ours to trust: quotes
    # and backslashes round-trip, control characters (newlines too) arrive escaped as \012.
    name = 'a "b"\nc\\d}\n'
    shown = 'a "b"\\012c\\d}\\012'
    metrics = EngineMetrics()
    task = TaskSnapshot(
        id=7, url="http://x/y", state=TaskState.DOWNLOADING, options=TaskOptions(), name=name, size=10, done=4
    )
    metrics.update(EngineSnapshot(tasks=(task,), downloaded=4))
    text = generate_latest(metrics.registry).decode()
    assert 'file_name="a \\"b\\"\\\\012c\\\\d}\\\\012"' in text
    samples = parse(text)
    assert value(samples, "fetchtop_task_downloaded_bytes", task_id="7", file_name=shown) == 4
    openmetrics = generate_openmetrics(metrics.registry).decode()  # type: ignore[no-untyped-call]
    families = list(parse_openmetrics(openmetrics))  # type: ignore[no-untyped-call]
    done = next(f for f in families if f.name == "fetchtop_task_downloaded_bytes")
    assert [s.labels["file_name"] for s in done.samples] == [shown]


# ---------------------------------------------------------------------------------------------------
# The endpoint itself


async def test_the_registry_is_private_and_openmetrics_is_negotiated(
    engine: Engine, metrics: MetricsServer
) -> None:
    assert not [m.name for m in REGISTRY.collect() if m.name.startswith("fetchtop_")]
    text, content_type = await scrape_text(
        metrics.port, accept="application/openmetrics-text;version=1.0.0,text/plain;version=0.0.4;q=0.5"
    )
    assert content_type.startswith("application/openmetrics-text")
    assert text.endswith("# EOF\n")
    names = {f.name for f in parse_openmetrics(text)}  # type: ignore[no-untyped-call]
    assert "fetchtop_downloaded_bytes" in names
    text, content_type = await scrape_text(metrics.port)
    assert content_type.startswith("text/plain")
    # Only what the module exports: no _created series, no process or platform collectors.
    assert not re.search(r"^(?!fetchtop_)\w+[{ ]", text, re.MULTILINE)
    assert "_created" not in text

    # A second endpoint on the same engine is independent of the first.
    other = await start_metrics(engine, "127.0.0.1", 0)
    try:
        assert other.port != metrics.port
        assert other.metrics.registry is not metrics.metrics.registry
        assert value(await scrape(other.port), "fetchtop_downloaded_bytes_total") == 0
    finally:
        await other.close()


async def test_close_releases_the_port_and_the_subscription(engine: Engine) -> None:
    before = engine._bus.subscriber_count
    server = await start_metrics(engine, "127.0.0.1", 0)
    assert engine._bus.subscriber_count == before + 1
    port = server.port
    await scrape(port)
    await server.close()
    await server.close()
    assert engine._bus.subscriber_count == before
    with pytest.raises(aiohttp.ClientConnectionError):
        await scrape(port)


async def test_a_busy_port_raises_oserror_and_leaks_nothing(engine: Engine) -> None:
    before = engine._bus.subscriber_count
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        with pytest.raises(OSError):
            await start_metrics(engine, "127.0.0.1", sock.getsockname()[1])
    assert engine._bus.subscriber_count == before


async def test_wait_scraped_waits_for_a_fresh_scrape(engine: Engine, metrics: MetricsServer) -> None:
    await scrape(metrics.port)
    assert not await metrics.wait_scraped(0.2)
    waiter = asyncio.create_task(metrics.wait_scraped(10))
    await asyncio.sleep(0.05)
    assert not waiter.done()
    await scrape(metrics.port)
    assert await waiter


async def test_scrapes_see_the_engine_now_even_between_ticks(files: FileServer, tmp_path: Path) -> None:
    # A tick far longer than the test: only the scrape-time snapshot can show the limit and task.
    async with Engine(EngineConfig(tick=3600)) as eng:
        server = await start_metrics(eng, "127.0.0.1", 0)
        try:
            await eng.set_limit(123_456)
            url = files.add("x.bin", Served(payload(20_000)))
            tid = await eng.add(url, opts(tmp_path))
            await eng.wait([tid])
            samples = await scrape(server.port)
            assert value(samples, "fetchtop_speed_limit_bytes_per_second") == 123_456
            assert value(samples, "fetchtop_downloaded_bytes_total") == 20_000
            assert value(samples, "fetchtop_tasks", state="completed") == 1
        finally:
            await server.close()


# ---------------------------------------------------------------------------------------------------
# The accounting rules, with snapshots made by hand


def _task(tid: int, state: TaskState, done: int = 0) -> TaskSnapshot:
    return TaskSnapshot(id=tid, url="http://h/f", state=state, options=TaskOptions(), name="f", done=done)


def test_a_stale_snapshot_neither_recounts_bytes_nor_revives_a_finished_task() -> None:
    metrics = EngineMetrics()
    older = EngineSnapshot(tasks=(_task(1, TaskState.DOWNLOADING, 500),), downloaded=500)
    newer = EngineSnapshot(tasks=(_task(1, TaskState.DOWNLOADING, 900),), downloaded=900)
    metrics.apply(ProgressUpdated(1.0, newer))
    # Progress is coalesced behind lifecycle events, so the completion can arrive before a
    # snapshot that still shows the task downloading.
    metrics.apply(TaskCompleted(2.0, 1, path="/f", size=900, duration=1.5))
    metrics.apply(ProgressUpdated(0.5, older))
    samples = parse(generate_latest(metrics.registry).decode())
    assert value(samples, "fetchtop_downloaded_bytes_total") == 900
    assert series(samples, "fetchtop_task_downloaded_bytes") == []
    assert value(samples, "fetchtop_download_duration_seconds_sum") == 1.5
    assert value(samples, "fetchtop_download_duration_seconds_bucket", le="1.0") == 0
    assert value(samples, "fetchtop_download_duration_seconds_bucket", le="2.5") == 1


def test_an_older_snapshot_does_not_replace_a_newer_one_unless_the_clock_stepped_back() -> None:
    metrics = EngineMetrics()
    metrics.update(EngineSnapshot(speed=200.0, time=1000.0))
    metrics.apply(ProgressUpdated(999.8, EngineSnapshot(speed=100.0, time=999.8)))
    assert value(parse(generate_latest(metrics.registry).decode()), "fetchtop_speed_bytes_per_second") == 200
    metrics.apply(ProgressUpdated(1000.1, EngineSnapshot(speed=300.0, time=1000.1)))
    assert value(parse(generate_latest(metrics.registry).decode()), "fetchtop_speed_bytes_per_second") == 300
    # Set back by an hour: staleness is at most a tick or two, so this is a clock change.
    metrics.apply(ProgressUpdated(0.0, EngineSnapshot(speed=50.0, time=1000.1 - 3600)))
    assert value(parse(generate_latest(metrics.registry).decode()), "fetchtop_speed_bytes_per_second") == 50


def test_retry_reasons_stay_bounded() -> None:
    metrics = EngineMetrics()
    for i in range(100):
        metrics.apply(TaskRetrying(0.0, 1, reason="x", kind=f"weird_{i}", delay=0.0, attempt=1))
    samples = parse(generate_latest(metrics.registry).decode())
    reasons = {labels["reason"] for labels in series(samples, "fetchtop_retries_total")}
    assert len(reasons) <= 33
    assert sum(v for (n, _), v in samples.items() if n == "fetchtop_retries_total") == 100


# ---------------------------------------------------------------------------------------------------
# contrib/grafana/fetchtop.json


def test_the_grafana_dashboard_uses_only_exported_metrics() -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    variables = {v["name"]: v for v in dashboard["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource"
    assert variables["datasource"]["query"] == "prometheus"
    titles = {p["title"] for p in dashboard["panels"]}
    for wanted in (
        "Total speed",
        "Speed by task",
        "Tasks by state",
        "Completions and failures per minute",
        "Retries per minute by reason",
    ):
        assert wanted in titles
    ids = [p["id"] for p in dashboard["panels"]]
    assert len(ids) == len(set(ids))

    exported: set[str] = set()
    for family in EngineMetrics().registry.collect():
        exported.add(family.name)
        exported.update(family.name + suffix for suffix in ("_total", "_bucket", "_sum", "_count"))
    used: set[str] = set()
    for panel in dashboard["panels"]:
        assert panel["datasource"]["uid"] == "${datasource}"
        for target in panel["targets"]:
            assert target["datasource"]["uid"] == "${datasource}"
            used.update(re.findall(r"\bfetchtop_\w+", target["expr"]))
    assert used, "no panel queries fetchtop metrics"
    assert used <= exported, used - exported
