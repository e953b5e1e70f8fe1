"""Fixtures shared by the engine, CLI and TUI tests: a fault-injecting HTTP server and a download dir."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
import pytest_asyncio

from faultserver.runner import ThreadedFaultServer
from faultserver.server import FaultServer
from tests.support.processes import Processes, child_env


@pytest_asyncio.fixture
async def fault_server() -> AsyncIterator[FaultServer]:
    """A started :class:`FaultServer` on 127.0.0.1 (ephemeral port) in the test's event loop."""
    async with FaultServer() as srv:
        yield srv


@pytest.fixture
def threaded_fault_server() -> Iterator[FaultServer]:
    """A started :class:`FaultServer` on its own loop in a background thread, for tests that block
    (for example ``subprocess.run`` of ``fetchtop get``)."""
    with ThreadedFaultServer() as srv:
        yield srv


@pytest.fixture
def download_dir(tmp_path: Path) -> Path:
    """An empty directory to download into (removed with the test's tmp_path)."""
    d = tmp_path / "downloads"
    d.mkdir()
    return d


@pytest.fixture
def procs(tmp_path: Path) -> Iterator[Processes]:
    """Runs fetchtop with cwd ``tmp_path/work`` and a private HOME; kills leftovers in teardown."""
    home = tmp_path / "home"
    home.mkdir()
    work = tmp_path / "work"
    work.mkdir()
    p = Processes(work, child_env(home))
    try:
        yield p
    finally:
        p.kill_all()
