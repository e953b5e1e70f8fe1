"""Prometheus metrics for an engine: ``/metrics`` over HTTP, fed by the engine's events.

Everything is kept in a :class:`~prometheus_client.CollectorRegistry` of its own (never the
process-wide one), so two engines in one process, or a test, never see each other's series.

Exported, all as of the latest scrape:

- counters ``fetchtop_downloaded_bytes_total`` (the snapshots' running total, so exact),
  ``fetchtop_downloads_finished_total{result}`` and ``fetchtop_retries_total{reason}`` (from
  lifecycle events, so a task that ends between two progress ticks is still counted);
- histogram ``fetchtop_download_duration_seconds`` of completed downloads;
- gauges ``fetchtop_tasks{state}``, ``fetchtop_speed_bytes_per_second``,
  ``fetchtop_open_connections``, ``fetchtop_speed_limit_bytes_per_second`` (0: unlimited);
- per-task gauges ``fetchtop_task_downloaded_bytes``, ``fetchtop_task_size_bytes`` and
  ``fetchtop_task_speed_bytes_per_second`` labelled ``task_id`` and ``file_name``.

:class:`EngineMetrics` is a custom collector that builds every family at scrape time from
plain numbers and the latest snapshot: per-task series then exist only for tasks active or
paused *now*, so their number stays bounded however many downloads run over a day, with
nothing to remove, and no ``_created`` series clutter the output.

The HTTP endpoint is an :mod:`aiohttp.web` app on the engine's own event loop rather than
prometheus-client's threaded server: the metrics are mutated by the loop, so serving from the
loop needs no locking, each scrape can first ask the engine for a fresh snapshot, port 0 gives
a real ephemeral port, and closing is an ordinary ``await`` with no thread left behind.
"""

from __future__ import annotations

import asyncio
import bisect
import contextlib
import math
from collections.abc import Iterable

from aiohttp import web
from prometheus_client import CollectorRegistry
from prometheus_client.exposition import choose_encoder
from prometheus_client.metrics_core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)

from engine.client import EngineClient, EventStream
from engine.errors import ErrorKind
from engine.escaping import escape_controls
from engine.events import (
    Event,
    ProgressUpdated,
    TaskAdded,
    TaskCancelled,
    TaskCompleted,
    TaskFailed,
    TaskRemoved,
    TaskResumed,
    TaskRetrying,
    TaskStarted,
)
from engine.models import EngineSnapshot, TaskSnapshot, TaskState

PREFIX = "fetchtop_"
"""Every metric name starts with this."""

RESULTS = ("completed", "failed", "cancelled")
"""Values of the ``result`` label of the finished-downloads counter."""

_KNOWN_KINDS = (
    ErrorKind.TIMEOUT,
    ErrorKind.TOO_SLOW,
    ErrorKind.CONNECTION,
    ErrorKind.HTTP_5XX,
    ErrorKind.HTTP_429,
)
KNOWN_RETRY_REASONS: tuple[str, ...] = tuple(k.value for k in _KNOWN_KINDS)
"""Retry reasons exported as 0 from the start, so ``rate()`` works before the first retry."""

OTHER_REASON = "other"
"""The ``reason`` label of retries without a kind, or past :data:`MAX_RETRY_REASONS`."""

MAX_RETRY_REASONS = 32
"""Distinct ``reason`` label values kept; any further ones are counted as ``other``."""

DURATION_BUCKETS = (0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0, 3600.0, 10800.0)
"""Histogram buckets in seconds for completed downloads: from small files to multi-hour ones."""

SNAPSHOT_TIMEOUT = 2.0
"""Seconds a scrape waits for a fresh snapshot before serving the latest one it has."""

CLOCK_STEP = 5.0
"""A snapshot this many seconds older than the latest is taken as a clock change, not as stale."""

TASK_LABELS = ("task_id", "file_name")
"""Labels of the per-task series."""


def _shown(task: TaskSnapshot) -> bool:
    """Whether a task gets per-task series: while it holds a slot or is paused."""
    return task.state.active or task.state is TaskState.PAUSED


class EngineMetrics:
    """The ``fetchtop_`` metrics of one engine, registered in a registry of their own.

    Feed it every event with :meth:`apply` (and fresh snapshots with :meth:`update` if you have
    them); render :attr:`registry` with :func:`prometheus_client.generate_latest`. It is itself
    the registry's only collector, so the numbers are kept as plain ints and nothing but what is
    listed in the module docstring is exported (no ``_created`` series).
    """

    def __init__(self) -> None:
        self.snapshot = EngineSnapshot()
        """The latest snapshot seen; gauges are built from it at scrape time."""
        self.downloaded_bytes = 0
        """``fetchtop_downloaded_bytes_total``: bytes received, the highest total any snapshot reported."""
        self.finished: dict[str, int] = dict.fromkeys(RESULTS, 0)
        """``fetchtop_downloads_finished_total`` by result."""
        self.retries: dict[str, int] = dict.fromkeys(KNOWN_RETRY_REASONS, 0)
        """``fetchtop_retries_total`` by reason."""
        self._bucket_counts = [0] * (len(DURATION_BUCKETS) + 1)
        self._duration_sum = 0.0
        # Tasks that reported the end of their run, hidden even if a snapshot taken just before
        # that (delivered after it, since progress is coalesced behind lifecycle events) says
        # they are still active.
        self._ended: set[int] = set()
        self.registry = CollectorRegistry(auto_describe=False)
        """Holds every metric of this engine, and nothing else."""
        self.registry.register(self)

    def apply(self, event: Event) -> None:
        """Account for one engine event."""
        if isinstance(event, ProgressUpdated):
            self.update(event.snapshot)
        elif isinstance(event, TaskCompleted):
            self.finished["completed"] += 1
            self._observe_duration(event.duration)
            self._ended.add(event.task_id)
        elif isinstance(event, TaskFailed):
            self.finished["failed"] += 1
            self._ended.add(event.task_id)
        elif isinstance(event, TaskCancelled):
            self.finished["cancelled"] += 1
            self._ended.add(event.task_id)
        elif isinstance(event, TaskRemoved):
            self._ended.add(event.task_id)
        elif isinstance(event, TaskRetrying):
            # A plain str, whether the event came from this process or was decoded from JSON.
            reason = str(event.kind) or OTHER_REASON
            if reason not in self.retries and len(self.retries) >= MAX_RETRY_REASONS:
                reason = OTHER_REASON
            self.retries[reason] = self.retries.get(reason, 0) + 1
        elif isinstance(event, TaskAdded | TaskStarted | TaskResumed):
            self._ended.discard(event.task_id)

    def _observe_duration(self, seconds: float) -> None:
        seconds = max(0.0, seconds)
        self._duration_sum += seconds
        self._bucket_counts[bisect.bisect_left(DURATION_BUCKETS, seconds)] += 1

    def update(self, snapshot: EngineSnapshot) -> None:
        """Take a snapshot of the engine as the latest state."""
        # The engine's total only grows within a session; keeping the highest value seen keeps
        # the counter exact even if an older snapshot arrives after a newer one.
        self.downloaded_bytes = max(self.downloaded_bytes, snapshot.downloaded)
        # A progress event queued before a scrape's fresh snapshot may be applied after it; keep
        # the newer state. A much older one means the wall clock was set back: take it anyway.
        if 0 < self.snapshot.time - snapshot.time <= CLOCK_STEP:
            return
        self.snapshot = snapshot
        # Forget ended tasks once snapshots agree they are over (or gone), keeping the set small.
        live = {t.id for t in snapshot.tasks if not t.state.finished}
        self._ended &= live

    def active_tasks(self) -> list[TaskSnapshot]:
        """The tasks that get per-task series now."""
        return [t for t in self.snapshot.tasks if _shown(t) and t.id not in self._ended]

    def describe(self) -> Iterable[Metric]:
        """The families exported, for the registry's name clash checks."""
        return self.collect()

    def collect(self) -> Iterable[Metric]:
        """Every family as of now; called by the registry at each scrape."""
        snap = self.snapshot
        families: list[Metric] = [
            CounterMetricFamily(
                f"{PREFIX}downloaded_bytes",
                "Bytes downloaded by the engine this session, over all tasks.",
                value=self.downloaded_bytes,
            )
        ]
        finished = CounterMetricFamily(
            f"{PREFIX}downloads_finished",
            "Downloads that ended, by result (completed, failed, cancelled).",
            labels=["result"],
        )
        for result, count in self.finished.items():
            finished.add_metric([result], count)
        retries = CounterMetricFamily(
            f"{PREFIX}retries", "Transient failures that were retried, by reason.", labels=["reason"]
        )
        for reason, count in self.retries.items():
            retries.add_metric([reason], count)
        families += [finished, retries, self._histogram()]

        by_state = GaugeMetricFamily(f"{PREFIX}tasks", "Tasks in each state.", labels=["state"])
        counts = snap.counts or _count_states(snap.tasks)
        for state in TaskState:
            by_state.add_metric([state.value], counts.get(state.value, 0))
        families += [
            by_state,
            GaugeMetricFamily(
                f"{PREFIX}speed_bytes_per_second", "Current total download speed.", value=snap.speed
            ),
            GaugeMetricFamily(
                f"{PREFIX}open_connections", "HTTP connections open over all tasks.", value=snap.connections
            ),
            GaugeMetricFamily(
                f"{PREFIX}speed_limit_bytes_per_second",
                "Global speed limit; 0 means unlimited.",
                value=snap.speed_limit or 0,
            ),
        ]
        families += self._per_task()
        return families

    def _histogram(self) -> Metric:
        buckets: list[tuple[str, float]] = []
        cumulative = 0
        for bound, count in zip((*DURATION_BUCKETS, math.inf), self._bucket_counts, strict=True):
            cumulative += count
            buckets.append(("+Inf" if math.isinf(bound) else repr(bound), cumulative))
        return HistogramMetricFamily(
            f"{PREFIX}download_duration_seconds",
            "Time completed downloads spent downloading, paused time excluded.",
            buckets=buckets,
            sum_value=self._duration_sum,
        )

    def _per_task(self) -> list[Metric]:
        done = GaugeMetricFamily(
            f"{PREFIX}task_downloaded_bytes", "Bytes of an active or paused task on disk.", labels=TASK_LABELS
        )
        size = GaugeMetricFamily(
            f"{PREFIX}task_size_bytes",
            "Total size of an active or paused task, when the server said.",
            labels=TASK_LABELS,
        )
        speed = GaugeMetricFamily(
            f"{PREFIX}task_speed_bytes_per_second",
            "Current download speed of an active or paused task.",
            labels=TASK_LABELS,
        )
        for task in self.active_tasks():
            # The exposition format escapes only backslash, double quote and newline; a scrape read on a
            # terminal must not carry a name's other control characters.
            labels = [str(task.id), escape_controls(task.name or task.options.output or "")]
            done.add_metric(labels, task.done)
            speed.add_metric(labels, task.speed)
            if task.size is not None:
                size.add_metric(labels, task.size)
        return [done, size, speed]


def _count_states(tasks: Iterable[TaskSnapshot]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for task in tasks:
        counts[task.state.value] = counts.get(task.state.value, 0) + 1
    return counts


class MetricsServer:
    """An HTTP endpoint serving one engine's metrics at ``/metrics`` until :meth:`close`.

    Made by :func:`start_metrics`; it lives on the event loop that made it.
    """

    def __init__(
        self,
        client: EngineClient,
        metrics: EngineMetrics,
        subscription: EventStream,
    ) -> None:
        self.port = 0
        """The port actually bound (the ephemeral one when 0 was asked for)."""
        self.metrics = metrics
        """The metrics being served."""
        self._client = client
        self._subscription = subscription
        self._runner: web.AppRunner | None = None
        self._pump: asyncio.Task[None] | None = None
        self._started = 0
        self._served = 0
        self._scraped = asyncio.Condition()
        self._closed = False

    async def _start(self, addr: str, port: int) -> None:
        app = web.Application()
        app.router.add_get("/metrics", self._handle_metrics)
        app.router.add_get("/", self._handle_index)
        # No access log: a scrape every few seconds would drown a CLI's output.
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        self._runner = runner
        site = web.TCPSite(runner, addr, port)
        await site.start()
        # With a host name that resolves to several addresses each socket has its own port;
        # the first one is reported.
        self.port = int(runner.addresses[0][1])
        self._pump = asyncio.create_task(self._run_pump(), name="fetchtop-metrics-events")

    async def _run_pump(self) -> None:
        async for event in self._subscription:
            self.metrics.apply(event)

    async def _refresh(self) -> None:
        """Take a fresh snapshot so gauges are current even between ticks or once the engine idles."""
        try:
            snapshot = await asyncio.wait_for(self._client.get_snapshot(), SNAPSHOT_TIMEOUT)
        except asyncio.CancelledError:
            raise
        except Exception:
            # A closed or unreachable engine must not fail the scrape: serve what the events said.
            return
        self.metrics.update(snapshot)

    async def _handle_metrics(self, request: web.Request) -> web.StreamResponse:
        self._started += 1
        sequence = self._started
        await self._refresh()
        encoder, content_type = choose_encoder(request.headers.get("Accept", ""))
        response = web.Response(body=encoder(self.metrics.registry), headers={"Content-Type": content_type})
        # Sent before counting it as served, so wait_scraped means the scraper has the bytes.
        await response.prepare(request)
        await response.write_eof()
        async with self._scraped:
            self._served = max(self._served, sequence)
            self._scraped.notify_all()
        return response

    async def _handle_index(self, request: web.Request) -> web.Response:
        return web.Response(text="fetchtop metrics: see /metrics\n")

    async def wait_scraped(self, within: float) -> bool:
        """Wait until a scrape that began after this call has been answered, for at most ``within`` s.

        A short-lived command calls this before :meth:`close` so the scraper collects the final
        values. Returns whether such a scrape happened in time.
        """
        target = self._started + 1
        try:
            async with asyncio.timeout(within), self._scraped:
                await self._scraped.wait_for(lambda: self._served >= target)
        except TimeoutError:
            return False
        return True

    async def close(self) -> None:
        """Stop serving and stop following the engine's events. Safe to call twice."""
        if self._closed:
            return
        self._closed = True
        if self._pump is not None:
            self._pump.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._pump
        await self._subscription.aclose()
        if self._runner is not None:
            await self._runner.cleanup()


async def start_metrics(client: EngineClient, addr: str, port: int) -> MetricsServer:
    """Serve ``client``'s metrics at ``http://addr:port/metrics`` (port 0: any free port).

    Raises OSError if the address cannot be bound.
    """
    metrics = EngineMetrics()
    # Subscribe before the first snapshot so no event between the two is missed.
    subscription = client.subscribe()
    server = MetricsServer(client, metrics, subscription)
    try:
        await server._refresh()
        await server._start(addr, port)
    except BaseException:
        await server.close()
        raise
    return server
