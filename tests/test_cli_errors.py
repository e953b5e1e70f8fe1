"""Errors are one line (issue 11): ``fetchtop`` as a real process against raw servers on 127.0.0.1.

- A body longer than its Content-Length is kept to the declared length, with one warning line per
  task, and the connection that carried the surplus is never reused.
- An error raised before a request leaves the machine fails at once, in one line; an explicit
  Authorization header wins over URL credentials, as in curl.
- ``--checksum`` is checked up front (fixed-length hashlib digests, the right number of hex digits):
  a bad value is a usage error before any request, for ``get``, the dashboard, ``add`` and the API.
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Iterator

import pytest

from engine.client import EngineError
from engine.daemon.client import RemoteClient
from engine.models import TaskOptions
from tests.support.daemons import Daemons, daemon_area
from tests.support.overlong_server import OverlongServer, ThreadedOverlongServer
from tests.support.processes import Processes, Result, assert_clean_success, assert_no_traceback

BODY = bytes((i * 131 + (i >> 8)) % 256 for i in range(1000))
BIG = bytes((i * 7 + (i >> 10) * 13) % 251 for i in range(6 * 1024 * 1024 + 11))
SURPLUS = bytes(range(256)) * 4  # what the issue saw: 1000 bytes more, here 1024
LONGEST_LINE = 200
"""Any error or warning line stays under this many characters."""


@pytest.fixture
def daemons() -> Iterator[Daemons]:
    with daemon_area() as area:
        yield area


def one_line(res: Result, *words: str) -> str:
    """The single stderr line of a run, checked to be short and to hold every one of ``words``."""
    assert_no_traceback(res.stdout, res.stderr)
    assert len(res.err_lines) == 1, res.describe()
    line = res.err_lines[0]
    assert line.startswith("fetchtop: ") and len(line) < LONGEST_LINE, line
    for word in words:
        assert word in line, line
    return line


# ---------------------------------------------------------------------------------------------------
# Overlong bodies


@pytest.mark.parametrize("parser", ["C", "pure-Python"])
@pytest.mark.parametrize("ranges", [False, True], ids=["200", "206"])
def test_a_response_longer_than_its_content_length_keeps_the_declared_bytes(
    procs: Processes, parser: str, ranges: bool
) -> None:
    # Headers, body and surplus in one read: aiohttp took the surplus for the next response and
    # failed the request ("Bad status line"), five times over, in a 10 KB line.
    if parser == "pure-Python":
        procs.env = {**procs.env, "AIOHTTP_NO_EXTENSIONS": "1"}
    with ThreadedOverlongServer(OverlongServer(BODY, extra=SURPLUS, ranges=ranges)) as srv:
        res = procs.run(["get", "-d", "out", srv.url("/file.bin")])

    assert res.returncode == 0, res.describe()
    assert (procs.cwd / "out" / "file.bin").read_bytes() == BODY
    one_line(res, srv.url("/file.bin"), "more than its Content-Length")
    assert len(srv.requests) == 1, "retried instead of keeping the declared length"


def test_206_pieces_longer_than_declared_make_a_byte_exact_file_on_fresh_connections(
    procs: Processes,
) -> None:
    # Pieces of a MiB and more: their surplus mostly comes in a read after their last bytes.
    with ThreadedOverlongServer(OverlongServer(BIG, extra=SURPLUS, ranges=True)) as srv:
        res = procs.run(["get", "-x", "4", "-d", "out", srv.url("/big.bin")])

    assert res.returncode == 0, res.describe()
    assert (procs.cwd / "out" / "big.bin").read_bytes() == BIG
    # Surplus that comes after a piece's last byte may never be read (aiohttp closes a connection
    # released with bytes pending): the warning is printed when it is seen, and once at most.
    assert len(res.err_lines) <= 1, res.describe()
    assert all("more than its Content-Length" in line for line in res.err_lines), res.describe()
    assert "retrying" not in res.stdout, res.describe()
    pieces = [r for r in srv.requests if not r.headers.get("range", "").endswith("-")]
    assert len(pieces) >= 3, srv.requests  # the probe and several closed ranges really happened
    assert srv.connections() == [1] * len(srv.requests), "a connection that carried surplus was reused"


@pytest.mark.parametrize("extra", [b"", SURPLUS], ids=["honest", "overlong"])
def test_a_connection_that_carried_surplus_is_not_reused(procs: Processes, extra: bytes) -> None:
    # One download after the other on one connection each: an honest server's connection is kept
    # alive for the second download, one that sent surplus bytes is not.
    with ThreadedOverlongServer(OverlongServer(BODY, extra=extra)) as srv:
        a, b = srv.url("/a.bin"), srv.url("/b.bin")
        res = procs.run(["get", "-j", "1", "-x", "1", "-d", "out", a, b])

    assert res.returncode == 0, res.describe()
    assert (procs.cwd / "out" / "a.bin").read_bytes() == BODY
    assert (procs.cwd / "out" / "b.bin").read_bytes() == BODY
    if extra:
        assert srv.connections() == [1, 1]
        assert len(res.err_lines) == 2, res.describe()  # one warning per task
        assert any(a in line for line in res.err_lines) and any(b in line for line in res.err_lines)
    else:
        assert srv.connections() == [2]
        assert_clean_success(res)


def test_an_unparsable_response_is_one_short_line(procs: Processes) -> None:
    garbage = b"\x00\x01HTTP/9 bogus " * 800 + b"\r\n\r\n"
    with ThreadedOverlongServer(OverlongServer(BODY, answer=garbage)) as srv:
        res = procs.run(["get", "--retries", "0", "-d", "out", srv.url("/file.bin")])

    assert res.returncode == 1, res.describe()
    one_line(res, "malformed response")


# ---------------------------------------------------------------------------------------------------
# Errors raised before a request leaves


def test_an_authorization_header_wins_over_url_credentials(procs: Processes) -> None:
    with ThreadedOverlongServer(OverlongServer(BIG, ranges=True)) as srv:
        url = srv.url("/big.bin").replace("http://", "http://alice:s3cret@")
        res = procs.run(["get", "-x", "3", "-d", "out", "-H", "Authorization: Bearer tok-123", url])

    assert_clean_success(res)
    assert (procs.cwd / "out" / "big.bin").read_bytes() == BIG
    assert len(srv.requests) >= 2  # the probe and the ranged requests after it
    assert {r.headers.get("authorization") for r in srv.requests} == {"Bearer tok-123"}
    assert "s3cret" not in res.stdout + res.stderr


def test_url_credentials_alone_are_still_sent(procs: Processes) -> None:
    with ThreadedOverlongServer(OverlongServer(BIG, ranges=True)) as srv:
        url = srv.url("/big.bin").replace("http://", "http://alice:s3cret@")
        res = procs.run(["get", "-x", "3", "-d", "out", url])

    assert_clean_success(res)
    basic = "Basic " + base64.b64encode(b"alice:s3cret").decode()
    assert len(srv.requests) >= 2
    assert {r.headers.get("authorization") for r in srv.requests} == {basic}


def test_a_request_that_cannot_be_built_fails_at_once_in_one_line(procs: Processes) -> None:
    with ThreadedOverlongServer(OverlongServer(BODY)) as srv:
        res = procs.run(["get", "-d", "out", "-H", "X-Note: a\rb", srv.url("/file.bin")])

    assert res.returncode == 1, res.describe()
    one_line(res, srv.url("/file.bin"), "cannot send the request")
    assert "retrying" not in res.stdout, res.describe()
    assert srv.requests == []


def test_an_authorization_header_and_a_netrc_entry_fail_at_once(procs: Processes) -> None:
    netrc = procs.cwd.parent / "home" / ".netrc"
    netrc.write_text("machine 127.0.0.1 login bob password hunter2\n")
    netrc.chmod(0o600)
    with ThreadedOverlongServer(OverlongServer(BODY)) as srv:
        res = procs.run(["get", "-d", "out", "-H", "Authorization: Bearer x", srv.url("/file.bin")])

    assert res.returncode == 1, res.describe()
    one_line(res, "cannot send the request", ".netrc")
    assert "retrying" not in res.stdout, res.describe()
    assert srv.requests == []
    assert "hunter2" not in res.stdout + res.stderr


# ---------------------------------------------------------------------------------------------------
# Checksums checked up front

BAD_CHECKSUMS = [
    ("shake_128=abcd", "no fixed digest length"),
    ("shake_256=" + "ab" * 32, "no fixed digest length"),
    ("sha256=abcd", "64 hex digits"),
    ("md5=" + "a" * 33, "32 hex digits"),
    ("sha256=" + "zz" * 32, "not hexadecimal"),
    ("nosuch=abcd", "unknown checksum algorithm"),
    ("sha256", "ALGO=HEX"),
]


@pytest.mark.parametrize(("checksum", "why"), BAD_CHECKSUMS, ids=[c for c, _ in BAD_CHECKSUMS])
def test_a_bad_checksum_is_a_usage_error_before_any_request(
    procs: Processes, checksum: str, why: str
) -> None:
    with ThreadedOverlongServer(OverlongServer(BODY)) as srv:
        res = procs.run(["get", "--checksum", checksum, "-d", "out", srv.url("/file.bin")])

    assert res.returncode == 2, res.describe()
    one_line(res, why)
    assert srv.requests == []
    assert not (procs.cwd / "out").exists()


@pytest.mark.parametrize("command", [[], ["add"]], ids=["dashboard", "add"])
def test_the_dashboard_and_add_reject_a_bad_checksum_too(procs: Processes, command: list[str]) -> None:
    # Both stop at the option check: no dashboard is drawn, no daemon is asked.
    res = procs.run([*command, "--checksum", "shake_128=abcd", "http://127.0.0.1:9/file.bin"])

    assert res.returncode == 2, res.describe()
    one_line(res, "no fixed digest length")


async def test_the_daemon_api_refuses_a_bad_checksum(daemons: Daemons) -> None:
    daemons.start()
    async with RemoteClient(socket_path=str(daemons.state_dir / "daemon.sock")) as client:
        with pytest.raises(EngineError, match="no fixed digest length"):
            await client.add("http://127.0.0.1:9/file.bin", TaskOptions(checksum="shake_128=abcd"))
        with pytest.raises(EngineError, match="64 hex digits"):
            await client.add("http://127.0.0.1:9/file.bin", TaskOptions(checksum="sha256=abcd"))
        assert (await client.get_snapshot()).tasks == ()


def test_a_right_checksum_still_verifies(procs: Processes) -> None:
    digest = hashlib.sha256(BODY).hexdigest().upper()  # case does not matter
    with ThreadedOverlongServer(OverlongServer(BODY)) as srv:
        res = procs.run(["get", "--checksum", f"sha256={digest}", "-d", "out", srv.url("/file.bin")])

    assert_clean_success(res)
    assert (procs.cwd / "out" / "file.bin").read_bytes() == BODY
