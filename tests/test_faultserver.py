"""The fault-injecting test server behaves as declared, checked with a real aiohttp client."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import pkgutil
import re
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import IO

import aiohttp
import pytest
import pytest_asyncio
from multidict import CIMultiDictProxy

import faultserver
from faultserver.content import (
    PATTERN_PERIOD,
    KiB,
    MiB,
    content_view,
    etag_for,
    expected_bytes,
    expected_sha256,
    file_matches,
    last_modified_for,
)
from faultserver.server import FaultServer
from faultserver.specs import FileSpec
from tests.support.processes import FETCHTOP, child_env
from tests.support.waiting import wait_until
from tui.demo import demo_files


@pytest_asyncio.fixture
async def client() -> AsyncIterator[aiohttp.ClientSession]:
    """A plain client with a bounded total timeout, so no test can hang on the server."""
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=20)) as session:
        yield session


async def fetch(
    client: aiohttp.ClientSession, url: str, **headers: str
) -> tuple[int, CIMultiDictProxy[str], bytes]:
    """Status, headers and the whole body of one GET."""
    async with client.get(url, headers=headers) as resp:
        return resp.status, resp.headers, await resp.read()


async def read_until_error(client: aiohttp.ClientSession, url: str) -> tuple[int, bytes, Exception | None]:
    """Status, the bytes received, and the error that cut the body short (None if it completed)."""
    got = bytearray()
    status = 0
    try:
        async with client.get(url) as resp:
            status = resp.status
            async for chunk in resp.content.iter_any():
                got += chunk
    except (aiohttp.ClientPayloadError, aiohttp.ClientConnectionError) as exc:
        return status, bytes(got), exc
    return status, bytes(got), None


def basic(user: str, password: str) -> str:
    """An ``Authorization`` header value for HTTP basic auth."""
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


# --- deterministic content --------------------------------------------------------------------------


def test_content_is_a_pure_function_of_name_version_and_offset() -> None:
    size = PATTERN_PERIOD + 300 * KiB  # crosses the period boundary
    a = expected_bytes("a.bin", size)
    assert len(a) == size
    assert a == expected_bytes("a.bin", size)
    assert a != expected_bytes("b.bin", size)
    assert a != expected_bytes("a.bin", size, version=1)
    # A prefix of a longer file is the shorter file; any window matches the zero-copy views.
    assert expected_bytes("a.bin", 1000) == a[:1000]
    for off in (0, 1, PATTERN_PERIOD - 5, PATTERN_PERIOD, size - 100):
        assert bytes(content_view("a.bin", off, 100)) == a[off : off + 100]
    assert expected_bytes("a.bin", size, start=PATTERN_PERIOD - 7) == a[PATTERN_PERIOD - 7 :]
    assert expected_sha256("a.bin", size) == hashlib.sha256(a).hexdigest()
    # Bytes shifted by a power-of-two block size never look right.
    assert a[: 64 * KiB] != a[MiB : MiB + 64 * KiB]


def test_content_is_cheap_to_produce() -> None:
    t0 = time.perf_counter()
    h = hashlib.sha256()
    pos = 0
    while pos < 64 * MiB:
        h.update(content_view("big.iso", pos, 256 * KiB))
        pos += 256 * KiB
    # Dominated by sha256 itself (~400 MiB/s+ here); producing the bytes is zero-copy.
    assert time.perf_counter() - t0 < 5


def test_file_matches(tmp_path: Path) -> None:
    p = tmp_path / "f"
    p.write_bytes(expected_bytes("x", 5000, version=2))
    assert file_matches(str(p), "x", 5000, version=2)
    assert not file_matches(str(p), "x", 5000, version=1)
    assert not file_matches(str(p), "x", 5001, version=2)
    assert not file_matches(str(p), "x", 4999, version=2)
    data = bytearray(p.read_bytes())
    data[4321] ^= 1
    p.write_bytes(bytes(data))
    assert not file_matches(str(p), "x", 5000, version=2)


# --- plain serving and ranges -----------------------------------------------------------------------


async def test_full_get_has_length_validators_and_exact_bytes(
    fault_server: FaultServer, client: aiohttp.ClientSession
) -> None:
    url = fault_server.add_file("dir name/ü.bin", 300 * KiB)
    assert url.startswith("http://127.0.0.1:")
    status, headers, body = await fetch(client, url)
    assert status == 200
    assert body == expected_bytes("dir name/ü.bin", 300 * KiB)
    assert headers["Content-Length"] == str(300 * KiB)
    assert headers["Accept-Ranges"] == "bytes"
    assert headers["ETag"] == etag_for("dir name/ü.bin", 300 * KiB)
    assert headers["Last-Modified"] == last_modified_for(0)
    assert headers["Content-Type"] == "application/octet-stream"
    st = fault_server.stats("dir name/ü.bin")
    assert st.requests == 1
    assert st.bytes_sent == 300 * KiB == fault_server.bytes_sent
    assert st.records[0].outcome == "complete"
    assert st.records[0].status == 200
    assert st.range_headers == [None]


@pytest.mark.parametrize("chunk_size", [1, 1000, MiB])
async def test_any_write_size_gives_the_same_bytes_across_the_period(
    fault_server: FaultServer, client: aiohttp.ClientSession, chunk_size: int
) -> None:
    size = PATTERN_PERIOD + 3000 if chunk_size > 1 else 3000
    url = fault_server.add_file("p.bin", size, chunk_size=chunk_size)
    assert (await fetch(client, url))[2] == expected_bytes("p.bin", size)
    start = max(0, size - 5000)
    _, _, body = await fetch(client, url, Range=f"bytes={start}-")
    assert body == expected_bytes("p.bin", size)[start:]


@pytest.mark.parametrize(
    ("header", "start", "end"),
    [
        ("bytes=0-", 0, 10_000),
        ("bytes=0-0", 0, 1),
        ("bytes=100-199", 100, 200),
        ("bytes=9000-", 9000, 10_000),
        ("bytes=9000-20000", 9000, 10_000),  # last beyond the end is clamped
        ("bytes=-300", 9700, 10_000),
        ("bytes=-20000", 0, 10_000),
        ("bytes = 5 - 9", 5, 10),
    ],
)
async def test_range_gives_206_with_exact_content_range(
    fault_server: FaultServer, client: aiohttp.ClientSession, header: str, start: int, end: int
) -> None:
    url = fault_server.add_file("r.bin", 10_000)
    status, headers, body = await fetch(client, url, Range=header)
    assert status == 206
    assert headers["Content-Range"] == f"bytes {start}-{end - 1}/10000"
    assert headers["Content-Length"] == str(end - start)
    assert body == expected_bytes("r.bin", 10_000)[start:end]
    assert fault_server.stats("r.bin").range_headers == [header]
    assert fault_server.stats("r.bin").bytes_sent == end - start


@pytest.mark.parametrize("header", ["bytes=10000-", "bytes=20000-30000", "bytes=-0"])
async def test_unsatisfiable_range_gives_416(
    fault_server: FaultServer, client: aiohttp.ClientSession, header: str
) -> None:
    url = fault_server.add_file("r.bin", 10_000)
    status, headers, body = await fetch(client, url, Range=header)
    assert status == 416
    assert headers["Content-Range"] == "bytes */10000"
    assert body == b""
    assert fault_server.stats("r.bin").bytes_sent == 0


@pytest.mark.parametrize("header", ["bytes=0-10,20-30", "items=0-10", "bytes=abc", "bytes=10-5"])
async def test_multiple_or_malformed_ranges_get_the_full_body(
    fault_server: FaultServer, client: aiohttp.ClientSession, header: str
) -> None:
    url = fault_server.add_file("r.bin", 10_000)
    status, headers, body = await fetch(client, url, Range=header)
    assert status == 200
    assert "Content-Range" not in headers
    assert body == expected_bytes("r.bin", 10_000)


async def test_head_sends_headers_only(fault_server: FaultServer, client: aiohttp.ClientSession) -> None:
    url = fault_server.add_file("h.bin", 4096)
    async with client.head(url) as resp:
        assert resp.status == 200
        assert resp.headers["Content-Length"] == "4096"
        assert await resp.read() == b""
    assert fault_server.stats("h.bin").bytes_sent == 0
    assert fault_server.stats("h.bin").records[0].method == "HEAD"


async def test_empty_file(fault_server: FaultServer, client: aiohttp.ClientSession) -> None:
    url = fault_server.add_file("empty", 0)
    assert (await fetch(client, url))[::2] == (200, b"")
    status, headers, _ = await fetch(client, url, Range="bytes=0-")
    assert (status, headers["Content-Range"]) == (416, "bytes */0")


async def test_custom_path_and_query_string(fault_server: FaultServer, client: aiohttp.ClientSession) -> None:
    url = fault_server.add_file("root", 100, path="/")
    assert url == fault_server.base_url + "/"
    assert (await fetch(client, url))[2] == expected_bytes("root", 100)
    url = fault_server.add_file("signed.bin", 100)
    status, _, body = await fetch(client, fault_server.url("signed.bin", query="sig=abc&exp=1"))
    assert (status, body) == (200, expected_bytes("signed.bin", 100))
    assert fault_server.stats("signed.bin").records[0].path == "/f/signed.bin?sig=abc&exp=1"


async def test_request_headers_are_recorded_and_basic_auth_enforced(
    fault_server: FaultServer, client: aiohttp.ClientSession
) -> None:
    url = fault_server.add_file("secret.bin", 100, auth=("alice", "s3cret"))
    status, headers, _ = await fetch(client, url, **{"User-Agent": "probe/1", "X-Extra": "yes"})
    assert status == 401
    assert headers["WWW-Authenticate"].startswith("Basic")
    async with client.get(url, headers={"Authorization": basic("alice", "wrong")}) as resp:
        assert resp.status == 401
    async with client.get(url, headers={"Authorization": "Bearer abc"}) as resp:
        assert resp.status == 401
    async with client.get(url, headers={"Authorization": basic("alice", "s3cret")}) as resp:
        assert resp.status == 200
        assert await resp.read() == expected_bytes("secret.bin", 100)
    recs = fault_server.stats("secret.bin").records
    assert [r.outcome for r in recs] == ["unauthorized", "unauthorized", "unauthorized", "complete"]
    assert recs[0].headers["User-Agent"] == "probe/1"
    assert recs[0].headers["X-Extra"] == "yes"


# --- faults -----------------------------------------------------------------------------------------


async def test_throttle_is_per_connection(fault_server: FaultServer, client: aiohttp.ClientSession) -> None:
    # 64 KiB at 128 KiB/s, 8 KiB writes: the last write goes out after (64 - 8) / 128 = 0.44 s.
    url = fault_server.add_file("slow.bin", 64 * KiB, rate=128 * KiB)

    async def timed() -> float:
        t0 = time.monotonic()
        _, _, body = await fetch(client, url)
        assert body == expected_bytes("slow.bin", 64 * KiB)
        return time.monotonic() - t0

    alone = await timed()
    assert 0.42 < alone < 3
    t0 = time.monotonic()
    both = await asyncio.gather(timed(), timed())
    together = time.monotonic() - t0
    # Each connection gets its own rate: two at once take about as long as one (0.44 s), not 0.88 s.
    assert all(0.42 < t < 3 for t in both)
    assert together < 0.8
    assert fault_server.stats("slow.bin").peak_concurrent == 2


async def test_slow_rate_throttles_only_the_first_k_responses(
    fault_server: FaultServer, client: aiohttp.ClientSession
) -> None:
    url = fault_server.add_file("lag.bin", 64 * KiB, slow_rate=128 * KiB, slow_times=1)

    async def timed() -> float:
        t0 = time.monotonic()
        assert (await fetch(client, url))[2] == expected_bytes("lag.bin", 64 * KiB)
        return time.monotonic() - t0

    durations = sorted(await asyncio.gather(timed(), timed()))
    # One response was paced ((64 - 8) KiB at 128 KiB/s = 0.44 s); its peer on another connection was not.
    assert durations[0] < 0.3 < 0.42 < durations[1]
    assert await timed() < 0.3
    assert fault_server.stats("lag.bin").slowed == 1


async def test_reset_after_n_bytes_for_the_first_k_responses(
    fault_server: FaultServer, client: aiohttp.ClientSession
) -> None:
    size = 400 * KiB
    url = fault_server.add_file("flaky.bin", size, reset_after=100 * KiB, reset_times=2)
    # A response too short to reach the reset point does not spend the budget.
    status, _, body = await fetch(client, url, Range="bytes=0-999")
    assert (status, body) == (206, expected_bytes("flaky.bin", 1000))
    for _ in range(2):
        status, got, err = await read_until_error(client, url)
        assert status == 200
        assert err is not None
        assert len(got) <= 100 * KiB
        assert got == expected_bytes("flaky.bin", len(got))
    status, got, err = await read_until_error(client, url)
    assert (status, err) == (200, None)
    assert got == expected_bytes("flaky.bin", size)
    st = fault_server.stats("flaky.bin")
    assert st.resets == 2
    assert [r.outcome for r in st.records] == ["complete", "reset", "reset", "complete"]
    assert [r.bytes_sent for r in st.records] == [1000, 100 * KiB, 100 * KiB, size]
    assert st.bytes_sent == 1000 + 200 * KiB + size


async def test_reset_every_time_when_times_is_none(
    fault_server: FaultServer, client: aiohttp.ClientSession
) -> None:
    url = fault_server.add_file("broken.bin", 100 * KiB, reset_after=0, reset_times=None)
    for _ in range(3):
        status, got, err = await read_until_error(client, url)
        assert status == 200 and got == b"" and err is not None
    assert fault_server.stats("broken.bin").resets == 3


async def test_truncated_body_declares_the_full_length_then_closes(
    fault_server: FaultServer, client: aiohttp.ClientSession
) -> None:
    url = fault_server.add_file("trunc.bin", 200 * KiB, truncate_after=70_000, truncate_times=1)
    status, got, err = await read_until_error(client, url)
    assert status == 200
    assert isinstance(err, aiohttp.ClientPayloadError)
    assert got == expected_bytes("trunc.bin", 70_000)  # a clean close: every byte sent arrives
    status, got, err = await read_until_error(client, url)
    assert (status, err, got) == (200, None, expected_bytes("trunc.bin", 200 * KiB))
    st = fault_server.stats("trunc.bin")
    assert (st.truncations, [r.outcome for r in st.records]) == (1, ["truncated", "complete"])
    assert st.records[0].bytes_sent == 70_000


async def test_truncated_ranged_and_chunked_bodies(
    fault_server: FaultServer, client: aiohttp.ClientSession
) -> None:
    url = fault_server.add_file("t.bin", 100 * KiB, truncate_after=10_000, truncate_times=None)
    async with client.get(url, headers={"Range": "bytes=50000-"}) as resp:
        assert resp.status == 206
        assert resp.headers["Content-Length"] == str(100 * KiB - 50_000)
        with pytest.raises(aiohttp.ClientPayloadError):
            await resp.read()
    url = fault_server.add_file("tc.bin", 100 * KiB, chunked=True, truncate_after=10_000)
    status, got, err = await read_until_error(client, url)
    assert status == 200 and isinstance(err, aiohttp.ClientPayloadError)
    assert got == expected_bytes("tc.bin", 10_000)


async def test_stall_stops_sending_mid_body_then_resumes(
    fault_server: FaultServer, client: aiohttp.ClientSession
) -> None:
    url = fault_server.add_file(
        "stall.bin", 100 * KiB, stall_after=30 * KiB, stall_for=0.6, chunk_size=8 * KiB
    )
    times: list[tuple[int, float]] = []
    got = 0
    t0 = time.monotonic()
    async with client.get(url) as resp:
        async for chunk in resp.content.iter_any():
            got += len(chunk)
            times.append((got, time.monotonic() - t0))
    assert got == 100 * KiB
    before = max(t for n, t in times if n <= 30 * KiB)
    after = min(t for n, t in times if n > 30 * KiB)
    assert after - before >= 0.55
    # The budget was one stall: the next response flows straight through.
    t1 = time.monotonic()
    assert (await fetch(client, url))[2] == expected_bytes("stall.bin", 100 * KiB)
    assert time.monotonic() - t1 < 0.5
    assert fault_server.stats("stall.bin").stalls == 1


async def test_fail_status_with_retry_after_for_first_k(
    fault_server: FaultServer, client: aiohttp.ClientSession
) -> None:
    url = fault_server.add_file("busy.bin", 1000, fail_status=503, fail_times=2, retry_after="3")
    for _ in range(2):
        status, headers, _ = await fetch(client, url)
        assert (status, headers["Retry-After"]) == (503, "3")
    assert (await fetch(client, url))[::2] == (200, expected_bytes("busy.bin", 1000))
    url = fault_server.add_file("limited.bin", 1000, fail_status=429, fail_times=None)
    for _ in range(3):
        status, headers, _ = await fetch(client, url)
        assert status == 429 and "Retry-After" not in headers
    st = fault_server.stats("busy.bin")
    assert (st.failures, st.statuses) == (2, [503, 503, 200])
    assert fault_server.stats("limited.bin").failures == 3


async def test_server_that_ignores_range(fault_server: FaultServer, client: aiohttp.ClientSession) -> None:
    url = fault_server.add_file("nr.bin", 50_000, ranges=False)
    status, headers, body = await fetch(client, url, Range="bytes=100-199")
    assert status == 200
    assert "Content-Range" not in headers and "Accept-Ranges" not in headers
    assert body == expected_bytes("nr.bin", 50_000)
    # A liar advertises ranges but still ignores them.
    url = fault_server.add_file("liar.bin", 50_000, ranges=False, advertise_ranges=True)
    status, headers, body = await fetch(client, url, Range="bytes=100-199")
    assert (status, headers["Accept-Ranges"], len(body)) == (200, "bytes", 50_000)


async def test_chunked_body_of_unknown_length(
    fault_server: FaultServer, client: aiohttp.ClientSession
) -> None:
    url = fault_server.add_file("chunked.bin", 300 * KiB, chunked=True, ranges=False)
    status, headers, body = await fetch(client, url)
    assert status == 200
    assert "Content-Length" not in headers
    assert headers["Transfer-Encoding"] == "chunked"
    assert body == expected_bytes("chunked.bin", 300 * KiB)


async def test_redirect_chain(fault_server: FaultServer, client: aiohttp.ClientSession) -> None:
    url = fault_server.add_file("moved.bin", 5000, redirects=3)
    async with client.get(url) as resp:
        assert resp.status == 200
        assert len(resp.history) == 3
        assert all(h.status == 302 for h in resp.history)
        assert str(resp.url) == fault_server.final_url("moved.bin")
        assert await resp.read() == expected_bytes("moved.bin", 5000)
    async with client.get(url, allow_redirects=False) as resp:
        assert resp.status == 302
        assert resp.headers["Location"] == f"{fault_server.base_url}/r/2/moved.bin"
    st = fault_server.stats("moved.bin")
    assert (st.redirects, st.requests) == (4, 1)  # hops are not file requests
    fault_server.add_file("perm.bin", 10, redirects=1, redirect_status=308)
    async with client.get(fault_server.url("perm.bin"), allow_redirects=False) as resp:
        assert (resp.status, resp.headers["Location"]) == (308, fault_server.final_url("perm.bin"))


async def test_version_bump_changes_bytes_and_validators_and_if_range(
    fault_server: FaultServer, client: aiohttp.ClientSession
) -> None:
    url = fault_server.add_file("v.bin", 10_000)
    _, h0, b0 = await fetch(client, url)
    old_etag, old_date = h0["ETag"], h0["Last-Modified"]
    # Validators that match: the range is honoured.
    assert (await fetch(client, url, Range="bytes=10-19", **{"If-Range": old_etag}))[0] == 206
    assert (await fetch(client, url, Range="bytes=10-19", **{"If-Range": old_date}))[0] == 206
    assert fault_server.bump_version("v.bin") == 1
    _, h1, b1 = await fetch(client, url)
    assert b1 == expected_bytes("v.bin", 10_000, version=1) != b0
    assert h1["ETag"] != old_etag and h1["Last-Modified"] != old_date
    # Stale validators: the whole new file with 200, never a range of it.
    for validator in (old_etag, old_date, "W/" + h1["ETag"]):
        status, headers, body = await fetch(client, url, Range="bytes=10-19", **{"If-Range": validator})
        assert (status, body) == (200, b1)
        assert "Content-Range" not in headers
    status, _, body = await fetch(client, url, Range="bytes=10-19", **{"If-Range": h1["ETag"]})
    assert (status, body) == (206, b1[10:20])
    st = fault_server.stats("v.bin")
    assert st.records[-1].if_range == h1["ETag"]


async def test_unstable_etag_never_matches(fault_server: FaultServer, client: aiohttp.ClientSession) -> None:
    url = fault_server.add_file("s3.bin", 1000, unstable_etag=True, last_modified=False)
    _, h1, _ = await fetch(client, url)
    _, h2, _ = await fetch(client, url)
    assert h1["ETag"] != h2["ETag"]
    assert "Last-Modified" not in h1
    status, _, _ = await fetch(client, url, Range="bytes=0-9", **{"If-Range": h2["ETag"]})
    assert status == 200
    assert (await fetch(client, url, Range="bytes=0-9"))[0] == 206


async def test_no_validators(fault_server: FaultServer, client: aiohttp.ClientSession) -> None:
    url = fault_server.add_file("plain", 10, etag=False, last_modified=False)
    _, headers, _ = await fetch(client, url)
    assert "ETag" not in headers and "Last-Modified" not in headers


@pytest.mark.parametrize(
    "value",
    [
        'attachment; filename="report.pdf"',
        "attachment; filename*=UTF-8''na%C3%AFve%20r%C3%A9sum%C3%A9.txt",
        'attachment; filename="../../etc/passwd"',
        "attachment; filename*=UTF-8''..%2F..%2F.ssh%2Fauthorized_keys",
        "attachment; filename*=UTF-8''evil%1B%5B31m%07name%0A.sh",
        'attachment; filename="résumé €.pdf"',  # raw UTF-8 in the header, as some servers send
        'attachment; filename="tab\there.txt"',
        'attachment; filename="C:\\Windows\\win.ini"',
        'attachment; filename=""',
        "garbage;;; = =",
    ],
)
async def test_content_disposition_is_sent_verbatim(
    fault_server: FaultServer, client: aiohttp.ClientSession, value: str
) -> None:
    url = fault_server.add_file("download", 10, content_disposition=value)
    async with client.get(url) as resp:
        assert resp.status == 200
        raw = dict(resp.raw_headers)[b"Content-Disposition"]
        assert raw == value.encode()


async def test_unsendable_header_values_are_refused_at_registration(fault_server: FaultServer) -> None:
    with pytest.raises(ValueError, match="control characters"):
        fault_server.add_file("x", 10, content_disposition='attachment; filename="a\x1bb"')
    fault_server.add_file("y", 10)
    with pytest.raises(ValueError, match="control characters"):
        fault_server.update("y", extra_headers=(("X-Evil", "a\r\nSet-Cookie: x=1"),))


async def test_error_paths(fault_server: FaultServer, client: aiohttp.ClientSession) -> None:
    url404 = fault_server.add_file("missing.bin", 0, status=404)
    url410 = fault_server.add_file("gone.bin", 0, status=410)
    assert (await fetch(client, url404))[0] == 404
    assert (await fetch(client, url410))[0] == 410
    assert (await fetch(client, fault_server.base_url + "/f/never-registered"))[0] == 404
    assert (await fetch(client, fault_server.base_url + "/elsewhere"))[0] == 404
    assert (await fetch(client, fault_server.status_url(500)))[0] == 500
    assert fault_server.stats("missing.bin").statuses == [404]
    assert fault_server.stats("gone.bin").records[0].outcome == "status"
    async with client.post(fault_server.add_file("p", 10)) as resp:
        assert resp.status == 405


async def test_cap_on_concurrent_connections(
    fault_server: FaultServer, client: aiohttp.ClientSession
) -> None:
    url = fault_server.add_file(
        "capped.bin", 40 * KiB, rate=100 * KiB, max_connections=2, over_limit_retry_after="1"
    )
    ok: list[aiohttp.ClientResponse] = []
    for _ in range(2):
        ok.append(await client.get(url))
    await wait_until(lambda: fault_server.stats("capped.bin").active == 2, "two responses in flight", limit=5)
    status, headers, _ = await fetch(client, url)
    assert (status, headers["Retry-After"]) == (503, "1")
    for resp in ok:
        assert resp.status == 200
        assert await resp.read() == expected_bytes("capped.bin", 40 * KiB)
        resp.release()
    st = fault_server.stats("capped.bin")
    await wait_until(lambda: st.active == 0, "the server to end every response", limit=5)
    assert (await fetch(client, url))[0] == 200
    assert (st.peak_concurrent, st.rejections, st.active) == (2, 1, 0)
    assert st.statuses == [200, 200, 503, 200]
    assert [r.outcome for r in st.records] == ["complete", "complete", "rejected", "complete"]


# --- accounting under disconnects -------------------------------------------------------------------


async def test_client_disconnect_mid_body_is_accounted(
    fault_server: FaultServer, client: aiohttp.ClientSession
) -> None:
    size = 2 * MiB
    url = fault_server.add_file("drop.bin", size, rate=512 * KiB)
    resp = await client.get(url)
    got = bytearray()
    while len(got) < 100 * KiB:
        got += await resp.content.read(64 * KiB)
    resp.close()  # drops the connection mid-body
    st = fault_server.stats("drop.bin")
    await wait_until(lambda: st.records[0].outcome != "pending", "the first response to end", limit=5)
    rec = st.records[0]
    assert rec.outcome == "disconnected"
    assert len(got) <= rec.bytes_sent < size // 2
    assert st.bytes_sent == rec.bytes_sent == fault_server.bytes_sent
    assert st.active == 0 and fault_server.active == 0
    assert rec.ended is not None and rec.ended - rec.started < 3


async def test_disconnect_during_a_stall_ends_the_handler_promptly(
    fault_server: FaultServer, client: aiohttp.ClientSession
) -> None:
    url = fault_server.add_file("hang.bin", 100 * KiB, stall_after=10 * KiB, stall_for=60, chunk_size=4 * KiB)
    resp = await client.get(url)
    await resp.content.readexactly(10 * KiB)
    st = fault_server.stats("hang.bin")
    await wait_until(lambda: st.stalls == 1, "the stall to start", limit=5)
    t0 = time.monotonic()
    resp.close()
    await wait_until(lambda: st.active == 0, "the server to end every response", limit=5)
    assert time.monotonic() - t0 < 2
    assert st.records[0].outcome == "disconnected"
    assert st.records[0].bytes_sent == 10 * KiB


async def test_stop_ends_responses_in_flight_quickly(client: aiohttp.ClientSession) -> None:
    srv = await FaultServer().start()
    url = srv.add_file("forever.bin", 10 * MiB, stall_after=0, stall_for=60)
    resp = await client.get(url)
    await wait_until(lambda: srv.stats("forever.bin").stalls == 1, "the stall to start", limit=5)
    t0 = time.monotonic()
    await srv.stop()
    assert time.monotonic() - t0 < 3
    assert srv.stats("forever.bin").active == 0
    assert srv.stats("forever.bin").records[0].outcome == "disconnected"
    with pytest.raises(aiohttp.ClientError):
        await resp.read()
    resp.release()


async def test_range_headers_and_totals_over_many_requests(
    fault_server: FaultServer, client: aiohttp.ClientSession
) -> None:
    size = 1 * MiB
    url = fault_server.add_file("seg.bin", size)
    bounds = [(0, 262_143), (262_144, 600_000), (600_001, size - 1)]
    parts = await asyncio.gather(*(fetch(client, url, Range=f"bytes={a}-{b}") for a, b in bounds))
    assert b"".join(p[2] for p in parts) == expected_bytes("seg.bin", size)
    st = fault_server.stats("seg.bin")
    assert sorted(h or "" for h in st.range_headers) == sorted(f"bytes={a}-{b}" for a, b in bounds)
    assert st.bytes_sent == size
    assert st.completed == 3
    fault_server.reset_stats("seg.bin")
    assert fault_server.stats("seg.bin").requests == 0


async def test_reset_stats_mid_response_and_rearm(
    fault_server: FaultServer, client: aiohttp.ClientSession
) -> None:
    url = fault_server.add_file("rs.bin", 64 * KiB, rate=256 * KiB, fail_status=503)
    assert (await fetch(client, url))[0] == 503
    async with client.get(url) as resp:
        assert resp.status == 200
        await resp.content.readexactly(4 * KiB)
        fault_server.reset_stats()
        st = fault_server.stats("rs.bin")
        assert (st.active, st.requests, st.failures) == (1, 0, 0)
        assert len(await resp.read()) == 60 * KiB
    await wait_until(lambda: st.active == 0, "the server to end every response", limit=5)
    assert 0 < st.bytes_sent <= 64 * KiB
    assert (await fetch(client, url))[0] == 503  # the failure budget was re-armed


async def test_update_keeps_stats_and_rate_applies_mid_response(
    fault_server: FaultServer, client: aiohttp.ClientSession
) -> None:
    url = fault_server.add_file("live.bin", 200 * KiB, rate=20 * KiB)  # 10 s at this rate
    t0 = time.monotonic()
    async with client.get(url) as resp:
        await resp.content.readexactly(4 * KiB)
        fault_server.update("live.bin", rate=None)
        assert await resp.read() == expected_bytes("live.bin", 200 * KiB)[4 * KiB :]
    assert time.monotonic() - t0 < 3
    assert fault_server.stats("live.bin").requests == 1
    assert fault_server.spec("live.bin").rate is None


# --- outside the event loop: thread, CLI, demo set, import hygiene -----------------------------------


def test_threaded_server_serves_blocking_clients(threaded_fault_server: FaultServer) -> None:
    url = threaded_fault_server.add_file("t.bin", 70_000, redirects=1)
    with urllib.request.urlopen(url, timeout=10) as resp:
        assert resp.read() == expected_bytes("t.bin", 70_000)
    req = urllib.request.Request(url, headers={"Range": "bytes=5-9"})
    with urllib.request.urlopen(req, timeout=10) as resp:
        assert resp.status == 206 and resp.read() == expected_bytes("t.bin", 10)[5:]
    with pytest.raises(urllib.error.HTTPError) as info:
        urllib.request.urlopen(threaded_fault_server.status_url(410), timeout=10)
    assert info.value.code == 410
    assert threaded_fault_server.stats("t.bin").requests == 2


def test_demo_set_covers_what_the_demo_promises() -> None:
    specs = demo_files()
    names = [s.name for s in specs]
    assert len(set(names)) == len(names)
    sized = [s for s in specs if s.status is None]
    assert len({s.size for s in sized}) >= 3
    assert all(s.rate for s in sized)
    assert any(not s.ranges for s in sized)
    assert any(s.status == 404 for s in specs)
    assert any(s.reset_after is not None for s in sized)
    assert all(isinstance(s, FileSpec) and s.description for s in specs)


@contextlib.contextmanager
def serving(argv: list[str], home: Path) -> Iterator[IO[str]]:
    """Run a command that serves files until SIGTERM; yields its stdout. On the way out it is stopped
    and must exit 0 without a traceback."""
    env = {**child_env(home), "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    try:
        assert proc.stdout is not None
        yield proc.stdout
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=10) == 0
        assert proc.stderr is not None
        assert "Traceback" not in proc.stderr.read()
        if proc.stdout is not None:
            proc.stdout.close()
        proc.stderr.close()


def test_demo_serve_only_serves_the_demo_files(tmp_path: Path) -> None:
    with serving([*FETCHTOP, "demo", "--serve-only", "--port", "0"], tmp_path) as stdout:
        banner = stdout.readline()
        m = re.match(r"fault server on (http://127\.0\.0\.1:\d+)", banner)
        assert m, banner
        lines = [stdout.readline() for _ in demo_files()]
        urls = {line.split()[0].rsplit("/", 1)[1]: line.split()[0] for line in lines}
        assert set(urls) == {s.name for s in demo_files()}
        small = next(s for s in demo_files() if s.name.startswith("small"))
        req = urllib.request.Request(urls[small.name], headers={"Range": "bytes=1000-1999"})
        with urllib.request.urlopen(req, timeout=10) as resp:
            assert resp.status == 206
            assert resp.read() == expected_bytes(small.name, 2000)[1000:]
        with pytest.raises(urllib.error.HTTPError) as info:
            urllib.request.urlopen(urls["missing.bin"], timeout=10)
        assert info.value.code == 404


def test_module_serves_the_files_named_on_the_command_line(tmp_path: Path) -> None:
    argv = [sys.executable, "-m", "faultserver", "--port", "0", "a.bin:1000", "b.bin:64K"]
    with serving(argv, tmp_path) as stdout:
        assert re.match(r"fault server on http://127\.0\.0\.1:\d+", stdout.readline())
        urls = [stdout.readline().split()[0] for _ in range(2)]
        with urllib.request.urlopen(urls[0], timeout=10) as resp:
            assert resp.read() == expected_bytes("a.bin", 1000)
        req = urllib.request.Request(urls[1], headers={"Range": "bytes=65535-"})
        with urllib.request.urlopen(req, timeout=10) as resp:
            assert resp.status == 206 and resp.read() == expected_bytes("b.bin", 64 * KiB)[65535:]


def test_faultserver_does_not_import_the_ui() -> None:
    modules = [m.name for m in pkgutil.walk_packages(faultserver.__path__, "faultserver.")]
    code = (
        "import importlib, sys\n"
        f"for m in {modules!r}: importlib.import_module(m)\n"
        "print([m for m in ('textual', 'tui') if m in sys.modules])"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60)
    assert out.stdout.strip() == "[]"
