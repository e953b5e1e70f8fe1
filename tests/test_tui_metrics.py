"""`fetchtop --metrics-port`: the dashboard's in-process engine serves /metrics while the app runs."""

from __future__ import annotations

from pathlib import Path

import aiohttp

from faultserver.content import KiB, file_matches
from faultserver.server import FaultServer
from tests.support.downloads import fast_config, opts
from tests.support.net import free_port
from tests.support.pilot import wait_in_app
from tui.app import dashboard_app


async def scrape(port: int) -> str:
    async with (
        aiohttp.ClientSession() as session,
        session.get(f"http://127.0.0.1:{port}/metrics", timeout=aiohttp.ClientTimeout(total=5)) as resp,
    ):
        assert resp.status == 200
        return await resp.text()


async def test_dashboard_serves_metrics_from_its_engine(
    fault_server: FaultServer, download_dir: Path, tmp_path: Path
) -> None:
    size = 256 * KiB
    url = fault_server.add_file("dash-metrics.bin", size)
    options = opts(download_dir, connections=2)
    config = fast_config(defaults=options)
    port = free_port()
    app = dashboard_app([url], options, config, metrics_port=port, state_dir=str(tmp_path / "state"))
    async with app.run_test(size=(100, 30)) as pilot:
        target = download_dir / "dash-metrics.bin"
        await wait_in_app(pilot, target.exists, "the download to complete")
        scraped = [""]

        async def caught_up() -> str | None:
            scraped[0] = await scrape(port)
            return scraped[0] if f"fetchtop_downloaded_bytes_total {float(size)}" in scraped[0] else None

        # The counter follows the engine's progress ticks: poll until it has caught up.
        text = await wait_in_app(pilot, caught_up, lambda: f"the counter to reach {size}:\n{scraped[0]}")
        assert 'fetchtop_downloads_finished_total{result="completed"} 1.0' in text
        await pilot.press("q")
    assert file_matches(str(target), "dash-metrics.bin", size)
    # Closing the app closes the endpoint with the engine.
    try:
        await scrape(port)
    except aiohttp.ClientConnectionError:
        pass
    else:
        raise AssertionError("metrics endpoint still answering after the dashboard quit")
