"""End to end: a real Prometheus server scrapes a running ``fetchtop get --metrics-port``.

Prometheus (Debian's ``prometheus`` package, installed by ``.ci/run``) runs on 127.0.0.1 with a
temporary configuration and storage, scraping every second; the test then asks its HTTP API what
it stored. The dashboard's queries and ``contrib/prometheus.yml`` are checked with the same tools.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import shutil
import signal
import subprocess
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from tests.support.file_server import FileServer, Served, payload
from tests.support.net import free_port
from tests.support.processes import FETCHTOP, ROOT, child_env
from tests.support.waiting import wait_until
from tests.test_metrics import DASHBOARD

pytestmark = pytest.mark.prometheus

PROMETHEUS = shutil.which("prometheus") or "/usr/bin/prometheus"
PROMTOOL = shutil.which("promtool") or "/usr/bin/promtool"

BIG_SIZE = 192 * 1024
BIG_RATE = 64 * 1024
"""About 3 s for the file Prometheus watches being downloaded."""
STALL = 3.0
"""Seconds the second file's response is held back, so finished values are scraped before exit."""


async def stop_process(proc: asyncio.subprocess.Process, grace: float = 5.0) -> None:
    """SIGTERM, then SIGKILL if it does not exit within ``grace`` seconds; always reaped."""
    if proc.returncode is None:
        with contextlib.suppress(ProcessLookupError):
            proc.send_signal(signal.SIGTERM)
        try:
            await asyncio.wait_for(proc.wait(), grace)
        except TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            await proc.wait()


@dataclass
class Prometheus:
    """A running Prometheus and how to ask it things."""

    port: int
    log: Path
    session: aiohttp.ClientSession

    async def api(self, path: str, **params: str) -> Any:
        """The ``data`` of a successful API answer."""
        url = f"http://127.0.0.1:{self.port}/api/v1/{path}"
        async with self.session.get(url, params=params) as resp:
            body = await resp.json()
        assert body["status"] == "success", body
        return body["data"]

    async def scalar(self, query: str) -> float | None:
        """The single value an instant query returns, or None if it returns nothing."""
        result = (await self.api("query", query=query))["result"]
        assert len(result) <= 1, result
        return float(result[0]["value"][1]) if result else None

    async def first_scrape(self, limit: float) -> None:
        """Wait until Prometheus has tried its target once.

        Its discovery hands targets to the scrape loop only every 5 s, so starting the command
        before that would let most of a short download go unwatched.
        """

        async def scraped() -> bool:
            targets = (await self.api("targets"))["activeTargets"]
            return bool(targets) and all(t["health"] != "unknown" for t in targets)

        await wait_until(
            scraped, lambda: f"a first scrape\n{self.log.read_text()[-3000:]}", limit=limit, interval=0.2
        )

    async def until(self, query: str, wanted: float, limit: float) -> None:
        """Poll an instant query until it returns ``wanted``, failing after ``limit`` seconds."""
        got: list[float | None] = [None]

        async def answered() -> bool:
            got[0] = await self.scalar(query)
            return got[0] == wanted

        await wait_until(
            answered,
            lambda: f"{query} = {wanted} (last {got[0]})\n{self.log.read_text()[-3000:]}",
            limit=limit,
            interval=0.25,
        )


@contextlib.asynccontextmanager
async def running_prometheus(workdir: Path, target_port: int) -> AsyncIterator[Prometheus]:
    """Prometheus on a free 127.0.0.1 port, scraping ``127.0.0.1:target_port`` every second."""
    config = workdir / "prometheus.yml"
    config.write_text(
        "global:\n"
        "  scrape_interval: 1s\n"
        "  scrape_timeout: 1s\n"
        "  evaluation_interval: 1s\n"
        "scrape_configs:\n"
        "  - job_name: fetchtop\n"
        "    static_configs:\n"
        f"      - targets: ['127.0.0.1:{target_port}']\n"
    )
    log = workdir / "prometheus.log"
    for attempt in range(3):
        port = free_port()
        with log.open("wb") as out:
            proc = await asyncio.create_subprocess_exec(
                PROMETHEUS,
                f"--config.file={config}",
                f"--storage.tsdb.path={workdir / 'tsdb'}",
                f"--web.listen-address=127.0.0.1:{port}",
                "--storage.tsdb.retention.time=1h",
                "--log.level=warn",
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        try:
            timeout = aiohttp.ClientTimeout(total=5)
            async with aiohttp.ClientSession(timeout=timeout) as session:
                deadline = time.monotonic() + 20
                while proc.returncode is None and time.monotonic() < deadline:
                    with contextlib.suppress(aiohttp.ClientError, TimeoutError):
                        async with session.get(f"http://127.0.0.1:{port}/-/ready") as resp:
                            if resp.status == 200:
                                break
                    await asyncio.sleep(0.1)
                else:
                    if proc.returncode is not None and attempt < 2:
                        continue  # most likely someone took the port between choosing and binding
                    raise AssertionError(f"Prometheus did not become ready:\n{log.read_text()[-3000:]}")
                yield Prometheus(port, log, session)
                return
        finally:
            await stop_process(proc)
    raise AssertionError("Prometheus could not start")


def dashboard_queries() -> list[str]:
    """Every PromQL expression of the Grafana dashboard, with Grafana's variables filled in."""
    dashboard = json.loads(DASHBOARD.read_text())
    queries = [
        target["expr"].replace("$instance", ".*").replace("$__rate_interval", "10s").replace("$__range", "1m")
        for panel in dashboard["panels"]
        for target in panel["targets"]
    ]
    assert queries and not any("$" in q for q in queries), queries
    return queries


async def test_prometheus_scrapes_a_running_fetchtop_get(tmp_path: Path) -> None:
    files = await FileServer().start()
    big = payload(BIG_SIZE, 4)
    big_url = files.add("big.bin", Served(big, rate=BIG_RATE))
    # Downloaded after big.bin (one job at a time) and held back, so Prometheus scrapes the state
    # after big.bin completed before the command exits.
    last_url = files.add("last.bin", Served(payload(1000, 5), delay=STALL))
    metrics_port = free_port()
    downloads = tmp_path / "downloads"
    cli_log = tmp_path / "fetchtop.log"
    proc: asyncio.subprocess.Process | None = None
    try:
        async with running_prometheus(tmp_path, metrics_port) as prom:
            await prom.first_scrape(limit=20)
            with cli_log.open("wb") as out:
                proc = await asyncio.create_subprocess_exec(
                    *FETCHTOP,
                    "get",
                    "--quiet",
                    "--jobs=1",
                    "--connections=2",
                    f"--dir={downloads}",
                    f"--metrics-port={metrics_port}",
                    "--metrics-addr=127.0.0.1",
                    big_url,
                    last_url,
                    stdin=subprocess.DEVNULL,
                    stdout=out,
                    stderr=subprocess.STDOUT,
                    cwd=ROOT,
                    env=child_env(tmp_path),
                )

            def context() -> str:
                return (
                    f"\nfetchtop:\n{cli_log.read_text()[-2000:]}\nprometheus:\n{prom.log.read_text()[-2000:]}"
                )

            window = "[5m]"
            await prom.until(f'max_over_time(up{{job="fetchtop"}}{window})', 1, limit=15)
            # The counter Prometheus stored reached the size of the file exactly.
            await prom.until(f"max_over_time(fetchtop_downloaded_bytes_total{window})", BIG_SIZE, limit=20)
            await prom.until(
                f'max_over_time(fetchtop_downloads_finished_total{{result="completed"}}{window})', 1, limit=10
            )
            # While it ran, big.bin had its own series, labelled with its task id and name.
            size = await prom.scalar(
                f'max_over_time(fetchtop_task_size_bytes{{file_name="big.bin"}}{window})'
            )
            assert size == BIG_SIZE, context()
            speed = await prom.scalar(
                f'max_over_time(fetchtop_task_speed_bytes_per_second{{file_name="big.bin"}}{window})'
            )
            assert speed is not None and speed > 0, context()
            assert await prom.scalar(f"max_over_time(fetchtop_speed_bytes_per_second{window})"), context()
            assert await prom.scalar(f'max_over_time(fetchtop_tasks{{state="completed"}}{window})') == 1

            series = await prom.api("series", **{"match[]": '{__name__=~"fetchtop_.+"}'})
            names = {s["__name__"] for s in series}
            assert {
                "fetchtop_downloaded_bytes_total",
                "fetchtop_downloads_finished_total",
                "fetchtop_retries_total",
                "fetchtop_download_duration_seconds_bucket",
                "fetchtop_tasks",
                "fetchtop_speed_bytes_per_second",
                "fetchtop_open_connections",
                "fetchtop_speed_limit_bytes_per_second",
                "fetchtop_task_downloaded_bytes",
                "fetchtop_task_size_bytes",
                "fetchtop_task_speed_bytes_per_second",
            } <= names, names
            task_ids = {s["task_id"] for s in series if s["__name__"] == "fetchtop_task_size_bytes"}
            assert "1" in task_ids, series

            # Every query of the Grafana dashboard is valid PromQL over these series.
            for query in dashboard_queries():
                await prom.api("query", query=query)

            assert proc is not None
            status = await asyncio.wait_for(proc.wait(), 30)
            assert status == 0, context()
            assert (downloads / "big.bin").read_bytes() == big
            assert (downloads / "last.bin").stat().st_size == 1000
    finally:
        if proc is not None:
            await stop_process(proc)
        await files.stop()


def test_the_example_scrape_configuration_is_valid() -> None:
    out = subprocess.run(
        [PROMTOOL, "check", "config", str(ROOT / "contrib" / "prometheus.yml")],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 0, out.stdout + out.stderr


@pytest.mark.parametrize("binary", [PROMETHEUS, PROMTOOL])
def test_the_prometheus_tools_are_installed(binary: str) -> None:
    # A clear message beats a FileNotFoundError deep in a fixture when the package is missing.
    assert Path(binary).exists(), f"{binary} missing: install Debian's prometheus package (.ci/run does)"
