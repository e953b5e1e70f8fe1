"""The daemon's control API under hostile input: tokens on TCP, socket permissions, malformed requests
and a flood of bad ones while a download runs. A real daemon subprocess, real HTTP clients."""

from __future__ import annotations

import asyncio
import os
import secrets
import socket
import stat
import subprocess
import time
from collections.abc import Iterator
from typing import Any

import aiohttp
import pytest

from engine.client import DaemonUnavailable, EngineError, Unauthorized
from engine.daemon.client import RemoteClient
from faultserver.content import KiB, MiB, file_matches
from faultserver.server import FaultServer
from faultserver.specs import FileSpec
from tests.support.daemons import Daemons, daemon_area
from tests.support.processes import FETCHTOP, child_env
from tests.support.waiting import wait_until

TOKEN = secrets.token_hex(32)


@pytest.fixture
def daemons() -> Iterator[Daemons]:
    with daemon_area() as area:
        yield area


def unix_session(daemons: Daemons) -> aiohttp.ClientSession:
    return aiohttp.ClientSession(
        connector=aiohttp.UnixConnector(path=str(daemons.state_dir / "daemon.sock")),
        timeout=aiohttp.ClientTimeout(total=10),
    )


async def answer(session: aiohttp.ClientSession, method: str, path: str, **kw: Any) -> tuple[int, Any]:
    async with session.request(method, f"http://fetchtop{path}", **kw) as resp:
        return resp.status, await resp.json(content_type=None)


def test_socket_is_private(daemons: Daemons) -> None:
    daemons.start()
    mode = os.stat(daemons.state_dir / "daemon.sock").st_mode
    assert stat.S_ISSOCK(mode)
    assert stat.S_IMODE(mode) == 0o600
    assert stat.S_IMODE(os.stat(daemons.state_dir).st_mode) == 0o700
    for name in ("session.json", "daemon.json", "daemon.pid"):
        path = daemons.state_dir / name
        if path.exists():
            assert stat.S_IMODE(os.stat(path).st_mode) == 0o600, name


def test_socket_in_an_explicit_place_is_private_too(daemons: Daemons) -> None:
    sock = daemons.base / "elsewhere" / "ctl.sock"
    daemons.start("--socket", str(sock))
    assert stat.S_IMODE(os.stat(sock).st_mode) == 0o600
    assert stat.S_IMODE(os.stat(sock.parent).st_mode) == 0o700
    assert daemons.ok("ls", "--socket", str(sock))


def test_listen_without_a_token_refuses_to_start(daemons: Daemons) -> None:
    for address, where in (("0.0.0.0:0", "non-loopback address 0.0.0.0"), ("127.0.0.1:0", "a loopback")):
        result = subprocess.run(
            [*FETCHTOP, "daemon", "--state-dir", str(daemons.state_dir), "--listen", address],
            capture_output=True,
            text=True,
            timeout=30,
            env=child_env(daemons.home),
            stdin=subprocess.DEVNULL,
        )
        assert result.returncode == 2, result.stderr
        assert "requires --token-file" in result.stderr and "Traceback" not in result.stderr
        assert where in result.stderr
    assert not (daemons.state_dir / "daemon.sock").exists()


async def test_tcp_needs_the_token(daemons: Daemons) -> None:
    token_file = daemons.base / "token"
    token_file.write_text(TOKEN + "\n")
    token_file.chmod(0o600)
    info = daemons.start("--listen", "127.0.0.1:0", "--token-file", str(token_file)).wait_ready()
    base = f"http://{info['listen']}"

    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as http:
        for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": TOKEN}):
            async with http.get(f"{base}/v1/snapshot", headers=headers) as resp:
                assert resp.status == 401
                assert (await resp.json())["error"] == "missing or wrong token"
            async with http.post(f"{base}/v1/stop", headers=headers, json={}) as resp:
                assert resp.status == 401
        with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
            await http.ws_connect(f"{base}/v1/events")
        assert refused.value.status == 401
        async with http.get(f"{base}/v1/snapshot", headers={"Authorization": f"Bearer {TOKEN}"}) as resp:
            assert resp.status == 200
            assert (await resp.json())["snapshot"]["tasks"] == []
        # A TCP client holds the token, not this user's account: it cannot write outside -d.
        # Nor through -o, which is a path under the directory (its "../" would leave -d).
        refused_options: list[dict[str, str]] = [{"directory": "../../outside"}, {"directory": "/tmp"}]
        refused_options += [{"output": "../../outside/x.bin"}, {"output": "/tmp/x.bin"}]
        for options in refused_options:
            async with http.post(
                f"{base}/v1/add",
                headers={"Authorization": f"Bearer {TOKEN}"},
                json={"url": "http://127.0.0.1:9/x.bin", "options": options},
            ) as resp:
                assert resp.status == 400
                assert "inside the daemon's download directory" in (await resp.json())["error"]

    async with RemoteClient(url=base, token="not-the-token-at-all") as wrong:
        with pytest.raises(Unauthorized):
            await wrong.get_snapshot()
        with pytest.raises(Unauthorized):
            await anext(wrong.subscribe())
    async with RemoteClient(url=base, token=TOKEN) as right:
        first = await asyncio.wait_for(anext(right.subscribe()), 10)
        assert type(first).__name__ == "ProgressUpdated"
        with pytest.raises(EngineError, match="no task with id 5"):
            await right.pause(5)

    listed = await asyncio.to_thread(
        daemons.ok, "ls", "--json", "--url", base, "--token-file", str(token_file)
    )
    assert '"tasks": []' in listed
    # The daemon is still alive after all the refusals.
    assert daemons.started[-1].proc.poll() is None


async def test_malformed_requests_get_400_with_a_reason(daemons: Daemons) -> None:
    daemons.start()
    bad: list[tuple[str, str, dict[str, Any], int, str]] = [
        ("POST", "/v1/add", {"data": b"{not json"}, 400, "not valid JSON"),
        ("POST", "/v1/add", {"data": b"\xff\xfe\x00"}, 400, "not valid JSON"),
        # Deep nesting under the size limit: RecursionError in the parser, still a 400.
        ("POST", "/v1/add", {"data": b"[" * 30000 + b"]" * 30000}, 400, "not valid JSON"),
        ("POST", "/v1/add", {"json": [1, 2]}, 400, "must be a JSON object"),
        ("POST", "/v1/add", {"json": {}}, 400, "'url' must be a non-empty string"),
        ("POST", "/v1/add", {"json": {"url": 7}}, 400, "'url' must be a non-empty string"),
        ("POST", "/v1/add", {"json": {"url": "http://x/a b"}}, 400, "spaces or control"),
        ("POST", "/v1/add", {"json": {"url": "http://x/", "options": {"nope": 1}}}, 400, "unknown option"),
        (
            "POST",
            "/v1/add",
            {"json": {"url": "http://x/", "options": {"connections": "8"}}},
            400,
            "wrong type",
        ),
        (
            "POST",
            "/v1/add",
            {"json": {"url": "http://x/", "options": {"connections": True}}},
            400,
            "wrong type",
        ),
        (
            "POST",
            "/v1/add",
            {"json": {"url": "http://x/", "options": {"connections": 999}}},
            400,
            "between 1",
        ),
        ("POST", "/v1/add", {"json": {"url": "http://x/", "options": {"timeout": 1e999}}}, 400, "wrong type"),
        ("POST", "/v1/add", {"json": {"url": "http://x/", "options": []}}, 400, "must be a JSON object"),
        (
            "POST",
            "/v1/add",
            {"json": {"url": "http://x/", "options": {"headers": [["X", "a\r\nInjected: 1"]]}}},
            400,
            "control characters",
        ),
        ("POST", "/v1/pause", {"json": {"id": "1"}}, 400, "'id' must be an integer"),
        ("POST", "/v1/pause", {"json": {"id": None}}, 400, "'id' must be an integer"),
        ("POST", "/v1/pause", {"json": {"id": 2**80}}, 400, "out of range"),
        ("POST", "/v1/pause", {"json": {"id": 12}}, 404, "no task with id 12"),
        ("POST", "/v1/remove", {"json": {"id": 1, "delete_files": "yes"}}, 400, "'delete_files'"),
        ("POST", "/v1/limit", {"json": {}}, 400, "'limit' is required"),
        ("POST", "/v1/limit", {"json": {"limit": -5}}, 400, "must be positive"),
        ("POST", "/v1/move", {"json": {"id": 1}}, 400, "'offset' must be an integer"),
        ("POST", "/v1/nonsense", {"json": {}}, 404, "Not Found"),
        ("GET", "/v1/add", {}, 405, "Method Not Allowed"),
        ("GET", "/v1/events", {}, 400, "WebSocket"),
        ("POST", "/v1/add", {"data": b"[" * 70_000}, 413, "Too Large"),
    ]
    async with unix_session(daemons) as http:
        for method, path, kw, status, reason in bad:
            got_status, body = await answer(http, method, path, **kw)
            assert got_status == status, (path, kw, got_status, body)
            assert isinstance(body, dict) and reason in body["error"], (path, kw, body)
        status_code, body = await answer(http, "GET", "/v1/status")
        assert status_code == 200 and body["tasks"] == 0
    assert daemons.started[-1].proc.poll() is None


async def test_a_flood_of_bad_requests_does_not_stop_a_download(
    daemons: Daemons, threaded_fault_server: FaultServer
) -> None:
    size = 1 * MiB
    srv = threaded_fault_server
    # Slow while the flood lasts, so the download is certainly running through all of it.
    url = srv.add(FileSpec("steady.bin", size=size, rate=64 * KiB, chunk_size=8 * KiB))
    daemons.start()
    sock_path = str(daemons.state_dir / "daemon.sock")
    async with RemoteClient(socket_path=sock_path) as client:
        task_id = await client.add(url, None)

        async def progress() -> int:
            task = (await client.get_snapshot()).task(task_id)
            assert task is not None
            return task.done

        before = await wait_until(progress, "the download to start", limit=10, interval=0.05)
        assert before > 0, "the download never started"
        garbage: list[tuple[str, str, dict[str, Any]]] = [
            ("POST", "/v1/add", {"data": b"{"}),
            ("POST", "/v1/pause", {"json": {"id": "x"}}),
            ("POST", "/v1/add", {"json": {"url": "http://x/", "options": {"min_split": 1}}}),
            ("GET", "/v1/../../etc/passwd", {}),
            ("PUT", "/v1/snapshot", {"data": b"\x00" * 100}),
            ("POST", "/v1/resume", {"json": {"id": 999}}),
        ]
        limit = asyncio.Semaphore(16)
        statuses: list[int] = []

        async def one(http: aiohttp.ClientSession, i: int) -> None:
            method, path, kw = garbage[i % len(garbage)]
            async with limit, http.request(method, f"http://fetchtop{path}", **kw) as resp:
                await resp.read()
                statuses.append(resp.status)

        def raw_junk() -> None:
            # Not HTTP at all: the server must drop these connections and carry on.
            for payload in (b"\x16\x03\x01\x00\xff" + b"\x00" * 64, b"GET / HTTP/9.9\r\n\r\n", b"\r\n" * 10):
                with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
                    s.settimeout(5)
                    s.connect(sock_path)
                    s.sendall(payload)
                    s.shutdown(socket.SHUT_WR)
                    while s.recv(4096):
                        pass

        # The flood lasts a second and a half at least (in rounds of 500, at most 8), so that a
        # download counting its bytes every quarter second shows progress within it.
        started, rounds = time.monotonic(), 0
        while rounds < 8 and (rounds == 0 or time.monotonic() - started < 1.5):
            async with unix_session(daemons) as http:
                await asyncio.wait_for(asyncio.gather(*(one(http, i) for i in range(500))), 60)
            for _ in range(10):
                await asyncio.to_thread(raw_junk)
            rounds += 1
        assert len(statuses) == 500 * rounds and all(400 <= s < 500 for s in statuses), sorted(set(statuses))
        during = (await client.get_snapshot()).task(task_id)
        assert during is not None and during.state.value == "downloading"
        assert during.done > before, "the download stalled during the flood"
        srv.update("steady.bin", rate=None)

        async def finished() -> Any:
            task = (await client.get_snapshot()).task(task_id)
            assert task is not None and task.state.value != "failed", task
            return task if task.state.value == "completed" else None

        task = await wait_until(finished, "the download to complete", limit=30, interval=0.1)
        assert task.path is not None and file_matches(task.path, "steady.bin", size)
        assert len((await client.get_snapshot()).tasks) == 1, "a bad add slipped through"
    assert daemons.started[-1].proc.poll() is None


async def test_remote_client_reports_an_absent_daemon(daemons: Daemons) -> None:
    async with RemoteClient(socket_path=str(daemons.state_dir / "daemon.sock")) as client:
        with pytest.raises(DaemonUnavailable) as gone:
            await client.get_snapshot()
        assert gone.value.not_running
        with pytest.raises(DaemonUnavailable):
            await anext(client.subscribe())
