"""HTTP options against real servers on 127.0.0.1: ~/.netrc credentials, proxies (option and
environment), and TLS verification with a self-signed certificate (on by default, off with insecure)."""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
import pytest_asyncio
from aiohttp import web

from engine.engine import Engine
from engine.models import TaskState
from faultserver.content import KiB, expected_bytes
from faultserver.server import FaultServer
from tests.support.downloads import assert_exact, download, fast_config, opts
from tests.support.tls import self_signed as make_self_signed

SIZE = 192 * KiB


class ForwardProxy:
    """A minimal HTTP forward proxy (absolute-form requests) that records what it relayed."""

    def __init__(self) -> None:
        self.seen: list[str] = []
        self.port = 0
        self._runner: web.AppRunner | None = None
        self._session: aiohttp.ClientSession | None = None

    async def _relay(self, request: web.Request) -> web.StreamResponse:
        assert self._session is not None
        target = str(request.url)
        self.seen.append(target)
        headers = {k: v for k, v in request.headers.items() if k.lower() not in ("host", "proxy-connection")}
        async with self._session.get(target, headers=headers, allow_redirects=False) as upstream:
            resp = web.StreamResponse(status=upstream.status)
            for name in ("Content-Range", "Content-Length", "ETag", "Last-Modified", "Accept-Ranges"):
                if name in upstream.headers:
                    resp.headers[name] = upstream.headers[name]
            await resp.prepare(request)
            async for chunk in upstream.content.iter_chunked(64 * KiB):
                await resp.write(chunk)
            await resp.write_eof()
            return resp

    async def __aenter__(self) -> ForwardProxy:
        self._session = aiohttp.ClientSession(auto_decompress=False)
        app = web.Application()
        app.router.add_route("GET", "/{tail:.*}", self._relay)
        self._runner = web.AppRunner(app)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        server = site._server
        assert server is not None
        self.port = server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
        if self._session is not None:
            await self._session.close()


@pytest_asyncio.fixture
async def proxy() -> AsyncIterator[ForwardProxy]:
    async with ForwardProxy() as p:
        yield p


async def test_netrc_credentials_are_used(
    fault_server: FaultServer, download_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    netrc = tmp_path / "netrc"
    netrc.write_text("machine 127.0.0.1\nlogin alice\npassword s3cret\n")
    netrc.chmod(0o600)
    monkeypatch.setenv("NETRC", str(netrc))
    url = fault_server.add_file("netrc.bin", SIZE, auth=("alice", "s3cret"))
    async with Engine(fast_config()) as engine:
        task = await download(engine, url, opts(download_dir, connections=2))
    assert task.state is TaskState.COMPLETED, task.error
    assert_exact(task.path, "netrc.bin", SIZE)


async def test_without_credentials_a_protected_file_fails_with_401(
    fault_server: FaultServer, download_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("NETRC", str(tmp_path / "no-such-netrc"))
    url = fault_server.add_file("locked.bin", SIZE, auth=("alice", "s3cret"))
    async with Engine(fast_config()) as engine:
        task = await download(engine, url, opts(download_dir))
    assert task.state is TaskState.FAILED
    assert task.error == "HTTP 401 Unauthorized"


async def test_proxy_option_routes_every_request(
    fault_server: FaultServer, proxy: ForwardProxy, download_dir: Path
) -> None:
    url = fault_server.add_file("via-proxy.bin", SIZE)
    options = opts(download_dir, connections=2, min_split=32 * KiB, proxy=f"http://127.0.0.1:{proxy.port}")
    async with Engine(fast_config()) as engine:
        task = await download(engine, url, options)
    assert task.state is TaskState.COMPLETED, task.error
    assert_exact(task.path, "via-proxy.bin", SIZE)
    assert proxy.seen and all(seen.endswith("/via-proxy.bin") for seen in proxy.seen)
    assert len(proxy.seen) == fault_server.stats("via-proxy.bin").requests


async def test_proxy_from_the_environment_and_no_proxy(
    fault_server: FaultServer, proxy: ForwardProxy, download_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in ("NO_PROXY", "no_proxy", "HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HTTP_PROXY", f"http://127.0.0.1:{proxy.port}")
    url = fault_server.add_file("env-proxy.bin", SIZE)
    async with Engine(fast_config()) as engine:
        task = await download(engine, url, opts(download_dir, connections=1))
    assert task.state is TaskState.COMPLETED, task.error
    # Every request went through it: the first, and the pieces after it (not the range client's).
    through_proxy = len(proxy.seen)
    assert through_proxy == fault_server.stats("env-proxy.bin").requests >= 1
    monkeypatch.setenv("NO_PROXY", "127.0.0.1")
    url2 = fault_server.add_file("direct.bin", SIZE)
    async with Engine(fast_config()) as engine:
        task = await download(engine, url2, opts(download_dir, connections=1))
    assert task.state is TaskState.COMPLETED, task.error
    assert len(proxy.seen) == through_proxy  # NO_PROXY sent it straight to the server


@pytest.fixture(scope="module")
def self_signed(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    return make_self_signed(tmp_path_factory.mktemp("tls"))


@pytest_asyncio.fixture
async def tls_url(self_signed: tuple[Path, Path]) -> AsyncIterator[str]:
    cert, key = self_signed
    body = expected_bytes("tls.bin", SIZE)

    async def handler(request: web.Request) -> web.Response:
        return web.Response(body=body, headers={"ETag": '"tls-1"'})

    app = web.Application()
    app.router.add_get("/tls.bin", handler)
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=context)
    await site.start()
    server = site._server
    assert server is not None
    port = server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    try:
        yield f"https://127.0.0.1:{port}/tls.bin"
    finally:
        await runner.cleanup()


async def test_tls_certificates_are_verified(tls_url: str, download_dir: Path) -> None:
    async with Engine(fast_config()) as engine:
        task = await asyncio.wait_for(download(engine, tls_url, opts(download_dir)), 30)
    assert task.state is TaskState.FAILED
    assert task.error is not None and task.error.startswith("TLS certificate not trusted")
    assert not (download_dir / "tls.bin").exists()


async def test_insecure_skips_verification(tls_url: str, download_dir: Path) -> None:
    async with Engine(fast_config()) as engine:
        task = await asyncio.wait_for(download(engine, tls_url, opts(download_dir, insecure=True)), 30)
    assert task.state is TaskState.COMPLETED, task.error
    assert_exact(task.path, "tls.bin", SIZE)
