"""The daemon's history keeps recording after its event subscription was cut off for lagging."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from engine import bus as bus_module
from engine.daemon.config import DaemonConfig
from engine.daemon.server import Daemon
from engine.faultserver import FaultServer
from engine.models import TaskOptions, TaskState
from engine.session import save_session
from tests.engine_helpers import KiB, fast_config


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
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 10
        while not any(t.url == url for t in daemon.history.tasks):
            assert loop.time() < deadline, "the completed task never reached the history"
            await asyncio.sleep(0.05)
    finally:
        await daemon.close()
