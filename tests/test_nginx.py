"""``fetchtop get`` against a real nginx on 127.0.0.1: byte-exact segmented downloads, closed ranges,
a server that ignores Range, and per-connection rate limits."""

from __future__ import annotations

import hashlib
import itertools
import random
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from faultserver.content import MiB
from tests.support.control import parse_range
from tests.support.downloads import sha256_of
from tests.support.nginx import NGINX, Nginx
from tests.support.processes import Processes, assert_clean_success

pytestmark = pytest.mark.nginx

NginxFactory = Callable[[str], Nginx]


@pytest.fixture
def nginx(tmp_path: Path) -> Iterator[NginxFactory]:
    """Starts a real nginx with extra server directives; always stopped in teardown."""
    assert Path(NGINX).exists(), f"nginx is required for these tests ({NGINX})"
    started: list[Nginx] = []

    def start(server_extra: str = "") -> Nginx:
        server = Nginx(tmp_path / f"nginx{len(started)}", server_extra)
        started.append(server)
        return server.start()

    try:
        yield start
    finally:
        for server in started:
            server.stop()


def publish(server: Nginx, name: str, size: int, seed: int) -> str:
    """Write ``size`` pseudo-random bytes under the document root; returns their SHA-256."""
    data = random.Random(seed).randbytes(size)
    (server.root / name).write_bytes(data)
    return hashlib.sha256(data).hexdigest()


def test_segmented_download_is_exact_with_closed_ranges(nginx: NginxFactory, procs: Processes) -> None:
    server = nginx("")
    size = 8 * MiB + 12_345  # not a multiple of any block size
    digest = publish(server, "data.bin", size, seed=1)

    res = procs.run(["get", "-x", "8", "-d", "out", server.url("data.bin")])

    assert_clean_success(res)
    out = procs.cwd / "out"
    assert sorted(p.name for p in out.iterdir()) == ["data.bin"]
    assert sha256_of(out / "data.bin") == digest
    server.stop()  # flushes the access log: every response is accounted for
    entries = server.entries()
    ranges = [e.range for e in entries]
    assert all(ranges), f"a request without Range: {entries}"
    # The probe asks for the first min_split (1 MiB) on the first connection (nginx logs in order of
    # completion, so order by connection); every request names its last byte.
    assert min(entries, key=lambda e: e.connection).range == f"bytes=0-{MiB - 1}", entries
    assert [r for r in ranges if parse_range(r)[1] is None] == [], ranges
    assert all(e.status == 206 for e in entries), entries
    # The ranges stay inside the file and do not overlap one another (segments of about 1 MiB are
    # below the size work stealing splits, so no request is cut short and re-asked).
    closed = sorted((a, b) for a, b in (parse_range(r) for r in ranges) if b is not None)
    for (_, b1), (a2, _) in itertools.pairwise(closed):
        assert b1 < a2, closed
    assert all(b is not None and b < size for _, b in closed)
    # nginx sent each byte once ($body_bytes_sent): nothing in flight was thrown away.
    sent = sum(e.sent for e in entries)
    assert size <= sent <= size * 1.01, (sent, size)


def test_server_ignoring_range_gives_one_full_stream(nginx: NginxFactory, procs: Processes) -> None:
    server = nginx("max_ranges 0;")
    size = 5 * MiB + 7
    digest = publish(server, "whole.bin", size, seed=2)

    res = procs.run(["get", "-x", "8", "-d", "out", server.url("whole.bin")])

    assert_clean_success(res)
    assert sha256_of(procs.cwd / "out" / "whole.bin") == digest
    server.stop()
    entries = server.entries()
    assert [(e.status, e.range) for e in entries] == [(200, f"bytes=0-{MiB - 1}")], entries
    sent = sum(e.sent for e in entries)
    assert size <= sent <= size * 1.01, (sent, size)


def test_rate_limited_server_gets_several_connections(nginx: NginxFactory, procs: Processes) -> None:
    rate = 512 * 1024
    server = nginx(f"limit_rate {rate};")
    size = 4 * MiB
    digest = publish(server, "slow.bin", size, seed=3)

    started = time.monotonic()
    res = procs.run(["get", "-x", "4", "-d", "out", server.url("slow.bin")])
    elapsed = time.monotonic() - started

    assert_clean_success(res)
    assert sha256_of(procs.cwd / "out" / "slow.bin") == digest
    server.stop()
    entries = server.entries()
    busy = {e.connection for e in entries if e.status == 206 and e.sent > 0}
    assert len(busy) >= 3, entries
    # One connection would need size / rate = 8 s; parallel ones get it done in well under that.
    assert elapsed < 0.75 * size / rate, elapsed
    assert sum(e.sent for e in entries) <= size * 1.01 + 1 * MiB, entries
