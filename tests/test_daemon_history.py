"""The daemon's history keeps recording after its event subscription was cut off for lagging."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from engine import bus as bus_module
from engine.daemon.config import DaemonConfig
from engine.daemon.server import Daemon
from engine.models import TaskOptions, TaskState
from engine.session import save_session
from faultserver.content import KiB
from faultserver.server import FaultServer
from tests.support.downloads import fast_config
from tests.support.waiting import wait_until


async def test_history_survives_a_huge_restored_queue(
    fault_server: FaultServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A restored queue larger than the backlog cap cuts the recorder's subscription off at start.
    monkeypatch.setattr(bus_module, "MAX_BACKLOG", 5)
    state = tmp_path / "state"
    state.mkdir(mode=0o700)
    downloads = tmp_path / "dl"
    parked = [
        (f"http://127.0.0.1:9/parked-{i}.bin", TaskOptions(directory=str(downloads)), TaskState.PAUSED)
        for i in range(20)
    ]
    await save_session(state / "session.json", parked)
    config = DaemonConfig(
        state_dir=str(state),
        socket_path=str(state / "daemon.sock"),
        engine=fast_config(),
        download_dir=str(downloads),
    )
    daemon = Daemon(config)
    await daemon.start()
    try:
        url = fault_server.add_file("recorded.bin", 128 * KiB)
        tid = await daemon.engine.add(url, TaskOptions(directory=str(downloads)))
        await asyncio.wait_for(daemon.engine.wait([tid]), 30)
        await wait_until(
            lambda: any(t.url == url for t in daemon.history.tasks),
            "the completed task to reach the history",
            limit=10,
            interval=0.05,
        )
    finally:
        await daemon.close()
