"""``--checksum-file`` and ``--checksum-missing`` end to end: ``fetchtop get`` and ``fetchtop add`` as
real processes against the fault server, the checksum file on disk or served over HTTP on 127.0.0.1."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from engine.models import TaskOptions
from faultserver.content import KiB, MiB, expected_sha256, file_matches
from faultserver.server import FaultServer
from faultserver.specs import FileSpec
from tests.support.daemons import Daemons, daemon_area
from tests.support.processes import Processes, assert_clean_success, assert_no_traceback
from tests.support.raw_server import response, threaded_raw_server
from tui.options import options_for_url, with_checksum_file

SIZE = 1 * MiB + 5
WRONG = "0" * 64


def served_sums(text: str) -> bytes:
    """A raw 200 response carrying a checksum file."""
    body = text.encode()
    return response("200 OK", [("Content-Length", str(len(body))), ("Content-Type", "text/plain")], body)


def test_get_checks_each_file_against_a_local_sums_file(
    threaded_fault_server: FaultServer, procs: Processes
) -> None:
    srv = threaded_fault_server
    a = srv.add_file("a.iso", SIZE)
    b = srv.add_file("b.img", 300 * KiB)
    sums = procs.cwd / "SHA256SUMS"
    sums.write_text(
        f"# release 1.0\n{expected_sha256('a.iso', SIZE)}  a.iso\n"
        f"SHA256 (./b.img) = {expected_sha256('b.img', 300 * KiB)}\n"
    )

    res = procs.run(["get", "--checksum-file", "SHA256SUMS", "-d", "out", a, b])

    assert_clean_success(res)
    assert file_matches(str(procs.cwd / "out" / "a.iso"), "a.iso", SIZE)
    assert file_matches(str(procs.cwd / "out" / "b.img"), "b.img", 300 * KiB)


def test_get_with_a_sums_file_over_http_mismatch_and_missing(
    threaded_fault_server: FaultServer, procs: Processes
) -> None:
    srv = threaded_fault_server
    good = srv.add_file("good.iso", SIZE)
    bad = srv.add_file("bad.iso", SIZE)
    unlisted = srv.add_file("unlisted.iso", SIZE)
    text = f"{expected_sha256('good.iso', SIZE)} *good.iso\n{WRONG}  bad.iso\n"
    with threaded_raw_server(served_sums(text)) as sums:
        sums_url = sums.url("/SHA256SUMS")
        res = procs.run(["get", "--checksum-file", sums_url, "-d", "out", good, bad, unlisted])
        fetched = len(sums.requests)

    assert fetched == 1  # read once, for every download
    assert res.returncode == 1, res.describe()
    assert_no_traceback(res.stdout, res.stderr)
    assert file_matches(str(procs.cwd / "out" / "good.iso"), "good.iso", SIZE)
    errors = sorted(res.err_lines)
    assert len(errors) == 2, res.describe()
    mismatch = next(line for line in errors if bad in line)
    assert WRONG in mismatch and expected_sha256("bad.iso", SIZE) in mismatch, mismatch
    missing = next(line for line in errors if unlisted in line)
    assert f"no checksum for 'unlisted.iso' in {sums_url}" in missing, missing
    assert sorted(p.name for p in (procs.cwd / "out").iterdir()) == ["good.iso"]


def test_checksum_missing_ok_keeps_an_unlisted_file(
    threaded_fault_server: FaultServer, procs: Processes
) -> None:
    srv = threaded_fault_server
    url = srv.add_file("extra.bin", 200 * KiB)
    (procs.cwd / "SUMS").write_text(f"{WRONG}  other.bin\n")

    res = procs.run(["get", "--checksum-file", "SUMS", "--checksum-missing=ok", "-d", "out", url])

    assert_clean_success(res)
    assert file_matches(str(procs.cwd / "out" / "extra.bin"), "extra.bin", 200 * KiB)


@pytest.mark.parametrize(
    "content, why",
    [
        (None, "cannot read checksum file missing.sums: No such file or directory"),
        ("not a checksum\n", "checksum file bad.sums: line 1: not a checksum line"),
        ("# only a comment\n", "checksum file bad.sums: no checksum lines"),
        (f"MD5 (x) = {WRONG}\n", "checksum file bad.sums: line 1: a md5 digest has 32 hex digits, got 64"),
    ],
)
def test_a_bad_local_file_is_a_usage_error_before_any_request(
    threaded_fault_server: FaultServer, procs: Processes, content: str | None, why: str
) -> None:
    srv = threaded_fault_server
    url = srv.add_file("never.bin", 1000)
    name = "missing.sums" if content is None else "bad.sums"
    if content is not None:
        (procs.cwd / name).write_text(content)

    res = procs.run(["get", "--checksum-file", name, "-d", "out", url])

    assert res.returncode == 2, res.describe()
    assert_no_traceback(res.stdout, res.stderr)
    assert len(res.err_lines) == 1 and res.err_lines[0].startswith(f"fetchtop: {why}"), res.describe()
    assert srv.requests == 0
    assert not (procs.cwd / "out").exists()


@pytest.mark.parametrize(
    "answer, why",
    [
        (response("404 Not Found", [("Content-Length", "0")]), "HTTP 404 Not Found"),
        (response("200 OK", [("Content-Length", str(2 * MiB))]), "larger than 1024 KiB"),
        (served_sums("hello\n"), "line 1: not a checksum line"),
    ],
)
def test_a_bad_sums_url_is_a_usage_error_before_any_download(
    threaded_fault_server: FaultServer, procs: Processes, answer: bytes, why: str
) -> None:
    srv = threaded_fault_server
    url = srv.add_file("never.bin", 1000)
    with threaded_raw_server(answer) as sums:
        sums_url = sums.url("/SUMS")
        res = procs.run(["get", "--checksum-file", sums_url, "-d", "out", url])

    assert res.returncode == 2, res.describe()
    assert_no_traceback(res.stdout, res.stderr)
    assert len(res.err_lines) == 1 and sums_url in res.err_lines[0] and why in res.err_lines[0], (
        res.describe()
    )
    assert srv.requests == 0


def test_a_large_sums_file_sends_only_the_needed_lines(
    threaded_fault_server: FaultServer, procs: Processes
) -> None:
    """Over 16 KiB of lines: each task gets the lines for its own name, so a daemon request stays small
    (checked by the daemon test below); the download is still checked."""
    srv = threaded_fault_server
    url = srv.add_file("needle.bin", 200 * KiB)
    filler = "".join(f"{WRONG}  hay-{i}.bin\n" for i in range(2000))
    (procs.cwd / "BIG").write_text(filler + f"{expected_sha256('needle.bin', 200 * KiB)}  needle.bin\n")
    res = procs.run(["get", "--checksum-file", "BIG", "-d", "out", url])
    assert_clean_success(res)


@pytest.fixture
def daemons() -> Iterator[Daemons]:
    with daemon_area() as area:
        yield area


def test_add_carries_the_table_to_the_daemon(daemons: Daemons, threaded_fault_server: FaultServer) -> None:
    srv = threaded_fault_server
    size = 400 * KiB
    good = srv.add(FileSpec("ok.bin", size=size))
    bad = srv.add(FileSpec("wrong.bin", size=size))
    unlisted = srv.add(FileSpec("nope.bin", size=size))
    filler = "".join(f"{WRONG}  hay-{i}.bin\n" for i in range(2000))  # over 64 KiB: cut per task
    sums = daemons.base / "SHA256SUMS"
    sums.write_text(f"{filler}{expected_sha256('ok.bin', size)}  ok.bin\n{WRONG}  wrong.bin\n")
    daemons.start()

    ids = [int(daemons.ok("add", "--checksum-file", str(sums), url)) for url in (good, bad, unlisted)]
    missing_ok = int(
        daemons.ok("add", "--checksum-file", str(sums), "--checksum-missing=ok", "-o", "x.bin", unlisted)
    )

    done = daemons.wait_state(ids[0], "completed")
    assert file_matches(done["path"], "ok.bin", size)
    assert done["options"]["checksum_source"] == str(sums)
    wrong = daemons.wait_state(ids[1], "failed")
    assert (
        wrong["error"]
        == f"checksum mismatch: expected sha256={WRONG}, got {expected_sha256('wrong.bin', size)}"
    )
    nope = daemons.wait_state(ids[2], "failed")
    assert nope["error"] == f"no checksum for 'nope.bin' in {sums} (--checksum-missing=ok allows that)"
    kept = daemons.wait_state(missing_ok, "completed")
    assert file_matches(kept["path"], "nope.bin", size)

    res = daemons.cli("add", "--checksum-file", str(daemons.base / "absent"), unlisted)
    assert res.returncode == 2 and res.stderr.count("\n") == 1 and "absent" in res.stderr, res.stderr


def test_small_tables_go_whole_and_large_ones_are_cut(tmp_path: Path) -> None:
    urls = ["http://127.0.0.1:9/a/x.iso", "http://127.0.0.1:9/y.iso?sig=1"]
    small = tmp_path / "small"
    small.write_text(f"{WRONG}  x.iso\n{WRONG}  other.iso\n")
    options = with_checksum_file(TaskOptions(), str(small), True, urls)
    assert [name for name, _ in options.checksum_table] == ["other.iso", "x.iso"]
    assert options.checksum_source == str(small) and options.checksum_missing_ok
    assert options_for_url(options, urls[0]) is options

    big = tmp_path / "big"
    big.write_text(
        "".join(f"{WRONG}  hay-{i}.bin\n" for i in range(2000)) + f"{WRONG}  x.iso\n{WRONG}  y.iso\n"
    )
    options = with_checksum_file(TaskOptions(), str(big), False, urls)
    assert [name for name, _ in options.checksum_table] == ["x.iso", "y.iso"]
    assert not options.checksum_missing_ok
    # The union stays small here, so each URL keeps it; a union over 16 KiB is cut per URL.
    assert options_for_url(options, urls[1]) is options
    many = [f"http://127.0.0.1:9/hay-{i}.bin" for i in range(2000)]
    options = with_checksum_file(TaskOptions(), str(big), False, many)
    assert len(options.checksum_table) == 2000
    assert options_for_url(options, many[7]).checksum_table == (("hay-7.bin", f"sha256={WRONG}"),)
