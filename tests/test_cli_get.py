"""``fetchtop get`` end to end: a real subprocess against the fault server on 127.0.0.1.

Exit statuses, one stderr line per failure and never a traceback, usage errors, the input file,
``-d``/``-o``, checksums, quiet and plain output, and never overwriting an existing file.
"""

from __future__ import annotations

import hashlib
import os
import pty
import re
import time
from pathlib import Path

import pytest

from faultserver.content import KiB, MiB, expected_bytes, expected_sha256, file_matches
from faultserver.server import FaultServer
from tests.support.net import closed_port_url
from tests.support.processes import Processes, assert_clean_success, assert_no_traceback, read_terminal


def leftovers(directory: Path) -> list[str]:
    """Part and control files still in ``directory``."""
    return sorted(p.name for p in directory.iterdir() if ".part" in p.name)


# ---------------------------------------------------------------------------------------------------
# Exit statuses and errors


def test_all_complete_exits_0_and_creates_the_directory(
    threaded_fault_server: FaultServer, procs: Processes
) -> None:
    srv = threaded_fault_server
    a = srv.add_file("alpha.bin", 3 * MiB + 17, rate=2 * MiB)  # throttled so connections overlap
    b = srv.add_file("beta.dat", 200 * KiB + 3, redirects=2)
    c = srv.add_file("gamma.img", 5 * MiB, chunked=True, ranges=False)
    target = procs.cwd / "new" / "nested"
    assert not target.exists()

    res = procs.run(["get", "-x", "4", "-d", str(target), a, b, c])

    assert_clean_success(res)
    assert file_matches(str(target / "alpha.bin"), "alpha.bin", 3 * MiB + 17)
    assert file_matches(str(target / "beta.dat"), "beta.dat", 200 * KiB + 3)
    assert file_matches(str(target / "gamma.img"), "gamma.img", 5 * MiB)
    assert sorted(p.name for p in target.iterdir()) == ["alpha.bin", "beta.dat", "gamma.img"]
    completed = [line for line in res.out_lines if line.startswith("completed ")]
    assert len(completed) == 3, res.describe()
    assert srv.stats("alpha.bin").peak_concurrent >= 2  # -x 4 really opened several connections


def test_each_failure_is_one_stderr_line_and_exit_1(
    threaded_fault_server: FaultServer, procs: Processes
) -> None:
    srv = threaded_fault_server
    good = srv.add_file("good.bin", 512 * KiB)
    missing = srv.status_url(404)
    gone = srv.add_file("gone.bin", 100, status=410)
    refused = closed_port_url()
    ftp = "ftp://127.0.0.1/file.bin"
    no_host = "http:///just-a-path"

    res = procs.run(["get", "--retries", "0", "-d", "out", good, missing, gone, refused, ftp, no_host])

    assert res.returncode == 1, res.describe()
    assert_no_traceback(res.stdout, res.stderr)
    lines = res.err_lines
    assert len(lines) == 5, res.describe()
    for line in lines:
        assert line.startswith("fetchtop: "), line

    def line_for(url: str) -> str:
        found = [line for line in lines if url in line]
        assert len(found) == 1, f"{url} in {lines}"
        return found[0]

    assert "HTTP 404 Not Found" in line_for(missing)
    assert "HTTP 410 Gone" in line_for(gone)
    assert line_for(refused).strip() != f"fetchtop: {refused}:"  # a reason follows the URL
    assert "scheme" in line_for(ftp).lower()
    assert line_for(no_host).split(no_host, 1)[1].strip(": ")  # some reason, on the same line
    # The good download is unaffected by its failing neighbours.
    assert file_matches(str(procs.cwd / "out" / "good.bin"), "good.bin", 512 * KiB)
    assert srv.stats("gone.bin").requests == 1  # a permanent failure is not retried


def test_transient_error_is_retried_not_reported(
    threaded_fault_server: FaultServer, procs: Processes
) -> None:
    srv = threaded_fault_server
    url = srv.add_file("busy.bin", 1 * MiB, fail_status=503, fail_times=2, retry_after="0")

    res = procs.run(["get", "-d", "out", url])

    assert_clean_success(res)
    assert file_matches(str(procs.cwd / "out" / "busy.bin"), "busy.bin", 1 * MiB)
    assert srv.stats("busy.bin").statuses[:2] == [503, 503]


URL = "http://127.0.0.1:9/x.bin"


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["--bogus-option", URL], "--bogus-option"),
        (["--limit-rate", "12Q", URL], "--limit-rate"),
        (["--limit-rate", "fast", URL], "--limit-rate"),
        (["-o", "one.bin", "SRV/a.bin", "SRV/b.bin"], "-o"),
        (["--checksum", "sha256=not-hex", URL], "checksum"),
        (["--checksum", "nosuchalgo=abcd", URL], "nosuchalgo"),
        (["--checksum", "sha256", URL], "checksum"),
        (["-i", "no-such-list.txt"], "no-such-list.txt"),
        ([], "URL"),
        (["-x", "0", URL], "-x"),
        (["-x", "33", URL], "32"),
        (["--timeout", "-1", URL], "--timeout"),
        (["-H", "no colon here", URL], "header"),
        # No abbreviations: argparse would take these for --user or --user-agent (and send the
        # password as the User-Agent).
        (["--use", "alice:pw", URL], "--use"),
        (["--user-a", "x", URL], "--user-a"),
        (["--conn", "2", URL], "--conn"),
        (["-o", "sub/", "SRV/a.bin"], "directory"),
        (["-o", "sub/..", "SRV/a.bin"], "directory"),
    ],
    ids=lambda v: " ".join(v) if isinstance(v, list) else None,
)
def test_usage_errors_exit_2_with_one_line(
    threaded_fault_server: FaultServer, procs: Processes, args: list[str], needle: str
) -> None:
    srv = threaded_fault_server
    srv.add_file("a.bin", 1000)
    srv.add_file("b.bin", 1000)
    args = [a.replace("SRV/", srv.base_url + "/f/") for a in args]

    res = procs.run(["get", *args], timeout=30)

    assert res.returncode == 2, res.describe()
    assert_no_traceback(res.stdout, res.stderr)
    assert len(res.err_lines) == 1, res.describe()
    assert res.err_lines[0].startswith("fetchtop"), res.describe()
    assert needle.lower() in res.err_lines[0].lower(), res.describe()
    assert res.stdout == ""
    # A usage error downloads nothing at all.
    assert srv.requests == 0
    assert list(procs.cwd.iterdir()) == []


# ---------------------------------------------------------------------------------------------------
# Inputs and outputs


def test_input_file_skips_blank_lines_and_comments(
    threaded_fault_server: FaultServer, procs: Processes
) -> None:
    srv = threaded_fault_server
    one = srv.add_file("one.bin", 300 * KiB)
    two = srv.add_file("two.bin", 2 * MiB + 5)
    skipped = srv.add_file("skipped.bin", 1000)
    three = srv.add_file("three.bin", 7)
    listing = procs.cwd / "urls.txt"
    listing.write_text(f"# the downloads\n\n{one}\n   \n  {two}  \n# {skipped}\n\t\n")

    res = procs.run(["get", "-i", str(listing), "-d", "dl", three])

    assert_clean_success(res)
    dl = procs.cwd / "dl"
    assert sorted(p.name for p in dl.iterdir()) == ["one.bin", "three.bin", "two.bin"]
    assert file_matches(str(dl / "one.bin"), "one.bin", 300 * KiB)
    assert file_matches(str(dl / "two.bin"), "two.bin", 2 * MiB + 5)
    assert file_matches(str(dl / "three.bin"), "three.bin", 7)
    assert srv.stats("skipped.bin").requests == 0
    assert skipped  # the commented-out URL was a real, servable one


def test_input_file_from_stdin(threaded_fault_server: FaultServer, procs: Processes) -> None:
    srv = threaded_fault_server
    one = srv.add_file("in-one.bin", 10 * KiB)
    two = srv.add_file("in-two.bin", 1 * MiB + 1)

    res = procs.run(["get", "-i", "-", "-d", "s"], stdin=f"{one}\n# not this\n\n{two}\n")

    assert_clean_success(res)
    assert file_matches(str(procs.cwd / "s" / "in-one.bin"), "in-one.bin", 10 * KiB)
    assert file_matches(str(procs.cwd / "s" / "in-two.bin"), "in-two.bin", 1 * MiB + 1)


def test_headers_and_user_agent_reach_the_server(
    threaded_fault_server: FaultServer, procs: Processes
) -> None:
    srv = threaded_fault_server
    url = srv.add_file("hdr.bin", 3 * MiB, rate=2 * MiB)

    res = procs.run(["get", "-H", "X-Trace: abc 123", "--user-agent", "probe/9", "-x", "3", "-d", "h", url])

    assert_clean_success(res)
    records = srv.stats("hdr.bin").records
    assert len(records) >= 2  # the probe and at least one more connection: all carry the headers
    for rec in records:
        assert rec.headers.get("X-Trace") == "abc 123", rec.headers
        assert rec.headers.get("User-Agent") == "probe/9", rec.headers


def test_credentials_never_appear_in_output(threaded_fault_server: FaultServer, procs: Processes) -> None:
    srv = threaded_fault_server
    secret = "s3cr3t-pw"
    url = srv.add_file("private.bin", 2 * MiB, auth=("alice", secret), rate=2 * MiB)
    good = url.replace("http://", f"http://alice:{secret}@")
    refused = srv.url("private.bin").replace("http://", "http://alice:wrong-pw@")
    missing = srv.status_url(404).replace("http://", f"http://alice:{secret}@")

    res = procs.run(["get", "-d", "a", good, refused, missing])

    assert res.returncode == 1, res.describe()
    assert_no_traceback(res.stdout, res.stderr)
    for text in (res.stdout, res.stderr):
        assert secret not in text and "wrong-pw" not in text, res.describe()
    assert len(res.err_lines) == 2, res.describe()
    assert any("HTTP 401" in line for line in res.err_lines), res.describe()
    assert any("HTTP 404 Not Found" in line for line in res.err_lines), res.describe()
    assert file_matches(str(procs.cwd / "a" / "private.bin"), "private.bin", 2 * MiB)
    assert sorted(p.name for p in (procs.cwd / "a").iterdir()) == ["private.bin"]


def test_output_name(threaded_fault_server: FaultServer, procs: Processes) -> None:
    srv = threaded_fault_server
    url = srv.add_file("served-name.bin", 1 * MiB + 1, content_disposition='attachment; filename="cd.bin"')

    res = procs.run(["get", "-o", "chosen.dat", "-d", "o", url])

    assert_clean_success(res)
    assert [p.name for p in (procs.cwd / "o").iterdir()] == ["chosen.dat"]
    assert file_matches(str(procs.cwd / "o" / "chosen.dat"), "served-name.bin", 1 * MiB + 1)


def test_output_is_a_path_under_dir_with_parents_created(
    threaded_fault_server: FaultServer, procs: Processes
) -> None:
    srv = threaded_fault_server
    url = srv.add_file("served.bin", 1 * MiB + 3)

    res = procs.run(["get", "-o", "sub/dir/out.bin", "-d", "d", url])

    assert_clean_success(res)
    assert [p.name for p in (procs.cwd / "d").iterdir()] == ["sub"]
    assert [p.name for p in (procs.cwd / "d" / "sub" / "dir").iterdir()] == ["out.bin"]
    assert file_matches(str(procs.cwd / "d" / "sub" / "dir" / "out.bin"), "served.bin", 1 * MiB + 3)
    # A second run finds the name taken and picks the next one in the same directory.
    again = procs.run(["get", "-o", "sub/dir/out.bin", "-d", "d", url])
    assert_clean_success(again)
    assert sorted(p.name for p in (procs.cwd / "d" / "sub" / "dir").iterdir()) == ["out.1.bin", "out.bin"]


def test_output_naming_an_existing_directory_is_a_usage_error(
    threaded_fault_server: FaultServer, procs: Processes
) -> None:
    srv = threaded_fault_server
    url = srv.add_file("served.bin", 1000)
    (procs.cwd / "d" / "taken").mkdir(parents=True)

    res = procs.run(["get", "-o", "taken", "-d", "d", url], timeout=30)

    assert res.returncode == 2, res.describe()
    assert_no_traceback(res.stdout, res.stderr)
    assert len(res.err_lines) == 1 and "existing directory" in res.err_lines[0], res.describe()
    assert srv.requests == 0
    assert list((procs.cwd / "d" / "taken").iterdir()) == []


@pytest.mark.parametrize("algo", ["sha256", "md5", "sha512"])
def test_checksum_ok(threaded_fault_server: FaultServer, procs: Processes, algo: str) -> None:
    srv = threaded_fault_server
    size = 2 * MiB + 11
    url = srv.add_file("summed.bin", size)
    digest = hashlib.new(algo, expected_bytes("summed.bin", size)).hexdigest()

    res = procs.run(["get", "--checksum", f"{algo}={digest.upper()}", "-d", "c", url])

    assert_clean_success(res)
    assert file_matches(str(procs.cwd / "c" / "summed.bin"), "summed.bin", size)
    assert leftovers(procs.cwd / "c") == []


def test_checksum_mismatch_fails_and_leaves_no_final_file(
    threaded_fault_server: FaultServer, procs: Processes
) -> None:
    srv = threaded_fault_server
    size = 1 * MiB + 3
    url = srv.add_file("bad-sum.bin", size)
    wrong = expected_sha256("some-other-file", size)

    res = procs.run(["get", "--checksum", f"sha256={wrong}", "-d", "c", url])

    assert res.returncode == 1, res.describe()
    assert_no_traceback(res.stdout, res.stderr)
    assert len(res.err_lines) == 1, res.describe()
    assert url in res.err_lines[0] and "checksum" in res.err_lines[0].lower(), res.describe()
    names = [p.name for p in (procs.cwd / "c").iterdir()] if (procs.cwd / "c").exists() else []
    assert not [n for n in names if not n.endswith((".part", ".part.json"))], names


def test_quiet_prints_nothing_on_stdout_but_errors_on_stderr(
    threaded_fault_server: FaultServer, procs: Processes
) -> None:
    srv = threaded_fault_server
    url = srv.add_file("quiet.bin", 2 * MiB, rate=2 * MiB)
    missing = srv.status_url(404)

    ok = procs.run(["get", "-q", "-d", "q", url])
    assert_clean_success(ok)
    assert ok.stdout == ""
    assert file_matches(str(procs.cwd / "q" / "quiet.bin"), "quiet.bin", 2 * MiB)

    failed = procs.run(["get", "-q", "-d", "q", missing])
    assert failed.returncode == 1, failed.describe()
    assert failed.stdout == ""
    assert len(failed.err_lines) == 1 and "HTTP 404 Not Found" in failed.err_lines[0], failed.describe()


def test_non_tty_stdout_gets_plain_progress_lines(
    threaded_fault_server: FaultServer, procs: Processes
) -> None:
    srv = threaded_fault_server
    size = 3 * MiB
    url = srv.add_file("plain.bin", size, rate=768 * KiB)  # two connections: about 2 s

    res = procs.run(["get", "-x", "2", "-d", "p", url])

    assert_clean_success(res)
    assert "\x1b" not in res.stdout  # no terminal control sequences in a pipe
    progress = [line for line in res.out_lines if "plain.bin" in line and "%" in line and "ETA" in line]
    assert progress, res.describe()
    completed = [line for line in res.out_lines if line.startswith("completed ")]
    assert len(completed) == 1 and "plain.bin" in completed[0], res.describe()
    assert file_matches(str(procs.cwd / "p" / "plain.bin"), "plain.bin", size)


@pytest.mark.slow
def test_limit_rate_slows_the_download(threaded_fault_server: FaultServer, procs: Processes) -> None:
    srv = threaded_fault_server
    size = 2 * MiB
    url = srv.add_file("limited.bin", size)

    started = time.monotonic()
    res = procs.run(["get", "--limit-rate", "1M", "-x", "4", "-d", "l", url])
    elapsed = time.monotonic() - started

    assert_clean_success(res)
    assert file_matches(str(procs.cwd / "l" / "limited.bin"), "limited.bin", size)
    # 2 MiB at 1 MiB/s: a token bucket may start with a burst, but not with a whole second's worth more.
    assert elapsed >= 1.0, elapsed


def test_existing_file_is_never_overwritten(threaded_fault_server: FaultServer, procs: Processes) -> None:
    srv = threaded_fault_server
    size = 600 * KiB
    url = srv.add_file("report.pdf", size)
    d = procs.cwd / "d"
    d.mkdir()
    (d / "report.pdf").write_bytes(b"precious, not downloaded")
    (d / "mine.txt").write_bytes(b"also precious")

    first = procs.run(["get", "-d", "d", url])
    second = procs.run(["get", "-d", "d", url])
    named = procs.run(["get", "-d", "d", "-o", "mine.txt", url])

    for res in (first, second, named):
        assert_clean_success(res)
    assert (d / "report.pdf").read_bytes() == b"precious, not downloaded"
    assert (d / "mine.txt").read_bytes() == b"also precious"
    assert file_matches(str(d / "report.1.pdf"), "report.pdf", size)
    assert file_matches(str(d / "report.2.pdf"), "report.pdf", size)
    assert file_matches(str(d / "mine.1.txt"), "report.pdf", size)
    assert sorted(p.name for p in d.iterdir()) == [
        "mine.1.txt",
        "mine.txt",
        "report.1.pdf",
        "report.2.pdf",
        "report.pdf",
    ]
    assert re.search(r"report\.2\.pdf", second.stdout), second.describe()


def test_terminal_gets_live_progress_bars(threaded_fault_server: FaultServer, procs: Processes) -> None:
    srv = threaded_fault_server
    size = 2 * MiB
    url = srv.add_file("bars.bin", size, rate=1 * MiB)  # two connections: about 1 s, a few refreshes
    master, slave = pty.openpty()
    env = {**procs.env, "TERM": "xterm-256color", "COLUMNS": "120", "LINES": "30"}
    try:
        proc = procs.start(["get", "-x", "2", "-d", "t", url], stdout=slave, env=env)
        os.close(slave)
        slave = -1
        # Drain the terminal while the child runs, or a full pty buffer would block it.
        screen = read_terminal(proc, master, 30)
        res = procs.finish(proc, timeout=10)
    finally:
        os.close(master)
        if slave >= 0:
            os.close(slave)

    text = screen.decode(errors="replace")
    assert res.returncode == 0, f"{res.describe()}\n--- terminal ---\n{text}"
    assert res.err_lines == [], res.describe()
    assert_no_traceback(text, res.stderr)
    assert "\x1b[" in text  # drawn with terminal control sequences, not plain lines
    assert "bars.bin" in text and "100.0%" in text, text
    assert "completed " not in text  # the plain reporter's lines are for pipes
    assert file_matches(str(procs.cwd / "t" / "bars.bin"), "bars.bin", size)


def test_a_mistyped_command_is_a_usage_error(procs: Processes) -> None:
    res = procs.run(["lss"])
    assert res.returncode == 2
    assert res.err_lines == [res.stderr.strip()]
    assert "unknown command 'lss'" in res.stderr and "get" in res.stderr
    assert_no_traceback(res.stdout, res.stderr)
