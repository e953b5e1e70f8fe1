"""Expired links through the daemon: ``fetchtop seturl`` as a real process against a real daemon, and
the ``seturl`` API command (RemoteClient and raw requests) against an in-process daemon."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import aiohttp
import pytest
import pytest_asyncio

from engine.client import EngineError
from engine.daemon.api import SET_URL_REPLY_TIMEOUT
from engine.daemon.client import RemoteClient
from engine.daemon.config import DaemonConfig
from engine.daemon.server import Daemon
from engine.models import TaskOptions, TaskState
from engine.seturl import PROBE_TIMEOUT
from faultserver.content import KiB, MiB, file_matches
from faultserver.server import FaultServer
from faultserver.specs import FileSpec
from tests.support.daemons import Daemons, daemon_area
from tests.support.downloads import assert_exact, fast_config, wait_for_state, wait_until_done
from tests.support.processes import assert_no_traceback
from tests.support.waiting import wait_until_sync

SIZE = 1 * MiB + 777


@pytest.fixture
def daemons() -> Iterator[Daemons]:
    with daemon_area() as area:
        yield area


def test_the_client_waits_longer_than_the_probe() -> None:
    assert SET_URL_REPLY_TIMEOUT > PROBE_TIMEOUT


@pytest.mark.slow
def test_seturl_steers_the_daemon(daemons: Daemons, threaded_fault_server: FaultServer) -> None:
    srv = threaded_fault_server
    name = "expiring.bin"
    url = srv.add(FileSpec(name, size=SIZE, rate=128 * KiB, chunk_size=8 * KiB))
    other_size = srv.add(FileSpec("bigger.bin", size=SIZE + 1))
    daemons.start()
    tid = str(int(daemons.ok("add", "-x", "2", url)))
    wait_until_sync(lambda: daemons.task(int(tid))["done"] >= 100 * KiB, "some bytes", limit=20)

    busy = daemons.cli("seturl", tid, other_size)
    assert busy.returncode == 1
    assert (
        busy.stderr.strip()
        == f"fetchtop: #{tid}: the task is downloading: pause it first, then change its URL"
    )

    daemons.ok("pause", tid)
    paused = daemons.wait_state(int(tid), "paused")
    refused = daemons.cli("seturl", tid, other_size)
    assert refused.returncode == 1
    lines = refused.stderr.splitlines()
    assert len(lines) == 1 and f"serves {SIZE + 1} bytes" in lines[0], refused.stderr
    assert_no_traceback(refused.stdout, refused.stderr)
    assert daemons.task(int(tid))["url"] == url

    # The link expires: the file moves. The new URL serves the same bytes, so they are kept.
    srv.update(name, path="/moved/expiring.bin", rate=None)
    new_url = srv.base_url + "/moved/expiring.bin"
    said = daemons.ok("seturl", tid, new_url)
    assert said.startswith(f"#{tid}: new URL set, ") and "kept" in said, said
    task = daemons.task(int(tid))
    assert task["url"] == new_url and task["state"] == "paused" and task["done"] == paused["done"]
    daemons.ok("resume", tid)
    done = daemons.wait_state(int(tid), "completed")
    assert file_matches(done["path"], name, SIZE)

    # --restart: another file replaces the bytes, from the beginning.
    second_name = "second.bin"
    second = str(int(daemons.ok("add", srv.add(FileSpec(second_name, size=SIZE, rate=128 * KiB)))))
    wait_until_sync(lambda: daemons.task(int(second))["done"] > 0, "some bytes", limit=20)
    daemons.ok("pause", second)
    daemons.wait_state(int(second), "paused")
    said = daemons.ok("seturl", "--restart", second, other_size)
    assert (
        said.strip()
        == f"#{second}: new URL set, starting from the beginning; resume it with 'fetchtop resume {second}'"
    )
    daemons.ok("resume", second)
    done = daemons.wait_state(int(second), "completed")
    assert file_matches(done["path"], "bigger.bin", SIZE + 1)

    usage = daemons.cli("seturl", tid)
    assert usage.returncode == 2 and "URL" in usage.stderr


@pytest_asyncio.fixture
async def daemon(fault_server: FaultServer) -> AsyncIterator[Daemon]:
    # A short directory: Unix socket paths are limited to 108 bytes.
    base = Path(tempfile.mkdtemp(prefix="ftu-", dir="/tmp"))
    state = base / "s"
    state.mkdir(mode=0o700)
    config = DaemonConfig(
        state_dir=str(state),
        socket_path=str(state / "d.sock"),
        engine=fast_config(),
        download_dir=str(base / "dl"),
    )
    running = Daemon(config)
    await running.start()
    try:
        yield running
    finally:
        await running.close()
        shutil.rmtree(base, ignore_errors=True)


async def test_the_seturl_command_of_the_api(daemon: Daemon, fault_server: FaultServer) -> None:
    name = "api.bin"
    url = fault_server.add_file(name, SIZE, rate=256 * KiB)
    engine = daemon.engine
    options = TaskOptions(directory=daemon.config.download_dir, min_split=64 * KiB)
    tid = await engine.add(url, options)
    await wait_for_state(engine, tid, lambda t: t.done >= 100 * KiB)
    await engine.pause(tid)
    held = engine.snapshot().task(tid)
    assert held is not None
    async with FaultServer() as mirror:
        mirror_url = mirror.add_file(name, SIZE)
        async with RemoteClient(socket_path=daemon.config.socket_path) as client:
            with pytest.raises(EngineError, match="no task with id 9"):
                await client.set_url(9, mirror_url)
            with pytest.raises(EngineError, match="answered HTTP 404"):
                await client.set_url(tid, mirror.base_url + "/f/missing.bin")
            assert await client.set_url(tid, mirror_url) == held.done
            # Raw requests: what the server refuses before asking the engine.
            connector = aiohttp.UnixConnector(path=daemon.config.socket_path)
            async with aiohttp.ClientSession(connector=connector) as http:
                for body, status, reason in (
                    ({"id": tid}, 400, "'url' must be a non-empty string"),
                    (
                        {"id": tid, "url": mirror_url, "restart": "yes"},
                        400,
                        "'restart' must be true or false",
                    ),
                    ({"url": mirror_url}, 400, "'id' must be an integer"),
                    ({"id": 77, "url": mirror_url}, 404, "no task with id 77"),
                ):
                    async with http.post("http://daemon/v1/seturl", json=body) as resp:
                        assert resp.status == status, body
                        assert reason in (await resp.json())["error"]
        task = engine.snapshot().task(tid)
        assert task is not None and task.url == mirror_url and task.state is TaskState.PAUSED
        await engine.resume(tid)
        done = await wait_until_done(engine, tid)
    assert_exact(done.path, name, SIZE)
