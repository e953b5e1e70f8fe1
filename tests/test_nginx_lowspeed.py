"""``fetchtop get --lowest-speed`` against a real nginx whose ``limit_rate`` holds every connection
below it (dropped, retried, failed as too slow) or lets them run above it (completes)."""

from __future__ import annotations

import hashlib
import random
import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from faultserver.content import KiB, MiB
from tests.support.downloads import sha256_of
from tests.support.nginx import NGINX, Nginx
from tests.support.processes import Processes, assert_clean_success, assert_no_traceback

pytestmark = pytest.mark.nginx

BOUND = 30.0
"""Seconds one run may take: the slow one fails in a few, the fast one completes in about two."""
ARGS = ["get", "--lowest-speed", "100K", "--timeout", "1", "--retries", "1", "-x", "2", "-d", "out"]


@pytest.fixture
def nginx(tmp_path: Path) -> Iterator[Nginx]:
    """A real nginx serving a 1 MiB ``data.bin``; ``limit_rate`` set by the test's parameter."""
    assert Path(NGINX).exists(), f"nginx is required for these tests ({NGINX})"
    server = Nginx(tmp_path / "nginx")
    try:
        yield server
    finally:
        server.stop()


def serve(server: Nginx, rate: str) -> str:
    """Start ``server`` with ``limit_rate rate`` and publish 1 MiB of random bytes; their SHA-256."""
    server.server_extra = f"limit_rate {rate};"
    server.start()
    data = random.Random(11).randbytes(1 * MiB)
    (server.root / "data.bin").write_bytes(data)
    return hashlib.sha256(data).hexdigest()


def test_a_limit_rate_below_the_lowest_speed_fails_as_too_slow(nginx: Nginx, procs: Processes) -> None:
    serve(nginx, "20k")  # at most ~40 KiB in nginx's first second, well under 100 KiB/s

    res = procs.run([*ARGS, nginx.url("data.bin")], timeout=BOUND)

    assert res.returncode == 1, res.describe()
    assert len(res.err_lines) == 1, res.describe()
    m = re.search(r": too slow: (\d+) B/s for (\d+\.\d) s \(gave up after 1 retries\)$", res.err_lines[0])
    assert m, res.describe()
    assert int(m.group(1)) < 100 * KiB and float(m.group(2)) >= 1.0, res.describe()
    assert_no_traceback(res.stdout, res.stderr)
    nginx.stop()
    # A drop and its retry: a second request for the bytes still missing.
    assert len(nginx.entries()) >= 2, nginx.entries()


def test_a_limit_rate_above_the_lowest_speed_completes(nginx: Nginx, procs: Processes) -> None:
    digest = serve(nginx, "400k")

    res = procs.run([*ARGS, nginx.url("data.bin")], timeout=BOUND)

    assert_clean_success(res)
    assert "too slow" not in res.stdout, res.describe()
    assert sha256_of(procs.cwd / "out" / "data.bin") == digest
