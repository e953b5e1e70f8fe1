"""Secrets given to a download (credential headers, cookies, a proxy's password) appear nowhere they
are shown, logged, published or kept in history, while the session file keeps them so a resume
still sends them. The real daemon as a subprocess over its Unix socket, over TCP with a token and
over both WebSockets; ``fetchtop get`` as a subprocess; a refusing proxy and the fault server on
127.0.0.1."""

from __future__ import annotations

import asyncio
import contextlib
import json
import secrets
import socketserver
import stat
import threading
from collections.abc import Iterator

import aiohttp
import pytest

from faultserver.content import KiB, file_matches
from faultserver.server import FaultServer
from faultserver.specs import FileSpec
from tests.support.daemons import Daemons, daemon_area
from tests.support.processes import Processes
from tests.support.waiting import wait_until, wait_until_sync

BEARER = "bearer-" + secrets.token_hex(8)
COOKIE = "cookie-" + secrets.token_hex(8)
API_KEY = "apikey-" + secrets.token_hex(8)
PROXY_PASSWORD = "proxypw-" + secrets.token_hex(8)
SECRETS = (BEARER, COOKIE, API_KEY, PROXY_PASSWORD)
HEADER_ARGS = (
    "-H",
    f"Authorization: Bearer {BEARER}",
    "-H",
    f"Cookie: sid={COOKIE}",
    "-H",
    f"X-Api-Key: {API_KEY}",
    "-H",
    "Accept-Language: en",
)


class RefusingProxy(socketserver.ThreadingTCPServer):
    """A proxy on 127.0.0.1 that answers every request (a CONNECT too) with 407, recording the heads.

    aiohttp reports a refused CONNECT with the proxy URL, password included, in its error message.
    """

    daemon_threads = True
    allow_reuse_address = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _ProxyHandler)
        self.heads: list[str] = []

    @property
    def port(self) -> int:
        return int(self.server_address[1])


class _ProxyHandler(socketserver.StreamRequestHandler):
    def handle(self) -> None:
        assert isinstance(self.server, RefusingProxy)
        self.request.settimeout(10)
        head = b""
        with contextlib.suppress(OSError):
            while b"\r\n\r\n" not in head and len(head) < 65536:
                chunk = self.request.recv(4096)
                if not chunk:
                    break
                head += chunk
            self.server.heads.append(head.decode("latin-1"))
            self.request.sendall(b"HTTP/1.1 407 Proxy Authentication Required\r\nContent-Length: 0\r\n\r\n")


@pytest.fixture
def refusing_proxy() -> Iterator[RefusingProxy]:
    proxy = RefusingProxy()
    thread = threading.Thread(target=proxy.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield proxy
    finally:
        proxy.shutdown()
        proxy.server_close()
        thread.join(10)


@pytest.fixture
def daemons() -> Iterator[Daemons]:
    with daemon_area() as area:
        yield area


def assert_no_secret(where: str, text: str) -> None:
    for secret in SECRETS:
        assert secret not in text, f"{secret!r} shown in {where}:\n{text[:4000]}"


def proxy_url(proxy: RefusingProxy) -> str:
    return f"http://user:{PROXY_PASSWORD}@127.0.0.1:{proxy.port}"


async def collect(ws: aiohttp.ClientWebSocketResponse, into: list[str]) -> None:
    async for msg in ws:
        if msg.type is aiohttp.WSMsgType.TEXT:
            into.append(msg.data)


async def test_the_daemon_shows_no_secret_and_its_session_keeps_them(
    daemons: Daemons, threaded_fault_server: FaultServer, refusing_proxy: RefusingProxy
) -> None:
    srv = threaded_fault_server
    size = 256 * KiB
    slow = srv.add(FileSpec("kept.bin", size=size, rate=32 * KiB, chunk_size=4 * KiB))
    token = secrets.token_hex(32)
    token_file = daemons.base / "token"
    token_file.write_text(token + "\n")
    token_file.chmod(0o600)
    daemon = daemons.start("--listen", "127.0.0.1:0", "--token-file", str(token_file))
    base = f"http://{daemon.wait_ready()['listen']}"
    auth = {"Authorization": f"Bearer {token}"}
    tcp_messages: list[str] = []
    unix_messages: list[str] = []

    timeout = aiohttp.ClientTimeout(total=60)
    async with (
        aiohttp.ClientSession(timeout=timeout) as tcp,
        aiohttp.ClientSession(
            timeout=timeout, connector=aiohttp.UnixConnector(path=str(daemon.socket))
        ) as unix,
    ):
        tcp_ws = await tcp.ws_connect(f"{base}/v1/events", headers=auth, max_msg_size=0)
        unix_ws = await unix.ws_connect("http://fetchtop/v1/events", max_msg_size=0)
        readers = [
            asyncio.create_task(collect(tcp_ws, tcp_messages)),
            asyncio.create_task(collect(unix_ws, unix_messages)),
        ]
        try:
            # Through a proxy that refuses it: fails at once, quoting the proxy URL in aiohttp's error.
            refused_id = int(
                await asyncio.to_thread(
                    daemons.ok,
                    "add",
                    "https://127.0.0.1:9/refused.bin",
                    *HEADER_ARGS,
                    "--proxy",
                    proxy_url(refusing_proxy),
                    "--retries",
                    "0",
                )
            )
            # Slow, so it is still unfinished when the daemon stops.
            kept_id = int(await asyncio.to_thread(daemons.ok, "add", slow, *HEADER_ARGS))
            failed = await asyncio.to_thread(daemons.wait_state, refused_id, "failed")
            assert failed["error"], failed
            await asyncio.to_thread(daemons.wait_state, kept_id, "downloading")

            listed = await asyncio.to_thread(daemons.ok, "ls", "--json")
            tcp_listed = await asyncio.to_thread(
                daemons.ok, "ls", "--json", "--url", base, "--token-file", str(token_file)
            )
            history_listed = await asyncio.to_thread(daemons.ok, "ls", "--history", "--json")
            table = await asyncio.to_thread(daemons.ok, "ls")
            reads = {}
            for read in ("snapshot", "tasks", "history", "status"):
                async with tcp.get(f"{base}/v1/{read}", headers=auth) as resp:
                    assert resp.status == 200
                    reads[f"TCP /v1/{read}"] = await resp.text()
                async with unix.get(f"http://fetchtop/v1/{read}") as resp:
                    reads[f"unix /v1/{read}"] = await resp.text()

            async def events_seen() -> bool:
                # Both streams have seen the failure and a progress tick of the slow task.
                return all(
                    any('"TaskFailed"' in m for m in ms) and any('"ProgressUpdated"' in m for m in ms)
                    for ms in (tcp_messages, unix_messages)
                )

            await wait_until(events_seen, "both event streams to report the failure", limit=30)
        finally:
            await tcp_ws.close()
            await unix_ws.close()
            for reader in readers:
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await asyncio.wait_for(reader, 10)

    shown = {
        "ls --json (unix)": listed,
        "ls --json (TCP)": tcp_listed,
        "ls --history --json": history_listed,
        "ls": table,
        **reads,
        "the TCP WebSocket": "\n".join(tcp_messages),
        "the unix WebSocket": "\n".join(unix_messages),
        "history.json": (daemons.state_dir / "history.json").read_text(),
        "the daemon's log": daemon.output(),
    }
    for where, text in shown.items():
        assert_no_secret(where, text)
    # Redacted, not dropped: the header names are still shown, the proxy without its password.
    task = json.loads(listed)["tasks"][0]
    assert task["options"]["headers"] == [
        ["Authorization", "<redacted>"],
        ["Cookie", "<redacted>"],
        ["X-Api-Key", "<redacted>"],
        ["Accept-Language", "en"],
    ]
    assert task["options"]["proxy"] == f"http://127.0.0.1:{refusing_proxy.port}"
    assert "407" in task["error"]
    # The requests themselves carried the real values.
    assert any(
        f"Bearer {BEARER}" in r.headers.get("Authorization", "") for r in srv.stats("kept.bin").records
    )
    assert refusing_proxy.heads and "Proxy-Authorization: Basic" in refusing_proxy.heads[0]

    await asyncio.to_thread(daemons.ok, "stop")
    assert daemon.wait_exit() == 0
    session = daemons.state_dir / "session.json"
    assert stat.S_IMODE(session.stat().st_mode) == 0o600
    saved = session.read_text()
    assert BEARER in saved and COOKIE in saved and API_KEY in saved

    # The resumed download sends the real values again, and finishes.
    srv.reset_stats("kept.bin")
    srv.update("kept.bin", rate=None)
    again = daemons.start()
    restored = {t["url"]: t["id"] for t in (await asyncio.to_thread(daemons.snapshot))["tasks"]}
    kept = await asyncio.to_thread(daemons.wait_state, restored[slow], "completed")
    assert file_matches(kept["path"], "kept.bin", size)
    records = srv.stats("kept.bin").records
    assert records and all(r.headers.get("Authorization") == f"Bearer {BEARER}" for r in records)
    assert all(r.headers.get("Cookie") == f"sid={COOKIE}" for r in records)

    def recorded() -> str | None:
        text = (daemons.state_dir / "history.json").read_text()
        return text if "kept.bin" in text else None

    assert_no_secret("history.json", wait_until_sync(recorded, "the completion in history.json"))
    assert_no_secret("the daemon's log", again.output())


def test_get_shows_no_secret(procs: Processes, refusing_proxy: RefusingProxy) -> None:
    result = procs.run(
        [
            "get",
            "https://127.0.0.1:9/refused.bin",
            *HEADER_ARGS,
            "--proxy",
            proxy_url(refusing_proxy),
            "--retries",
            "0",
        ]
    )
    assert result.returncode != 0, result.describe()
    assert "407" in result.stderr, result.describe()
    assert_no_secret("fetchtop get's output", result.stdout + result.stderr)
    assert refusing_proxy.heads and "Proxy-Authorization: Basic" in refusing_proxy.heads[0]
