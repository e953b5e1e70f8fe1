"""``-u/--user`` and ``--load-cookies`` as real processes: ``fetchtop get`` and ``fetchtop add`` with
the daemon, a password typed on a pty that is the child's terminal, the fault server on 127.0.0.1
requiring it. The secret reaches the server and nothing else: no output, no ``ps`` line, no listing,
history or log."""

from __future__ import annotations

import base64
import contextlib
import fcntl
import json
import os
import secrets
import select
import subprocess
import termios
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from faultserver.content import KiB, file_matches
from faultserver.server import FaultServer
from faultserver.specs import FileSpec
from tests.support.daemons import Daemons, daemon_area
from tests.support.processes import Processes, assert_no_traceback, child_env

PASSWORD = "pw-" + secrets.token_hex(8)
COOKIE = "ck-" + secrets.token_hex(8)
SIZE = 300 * KiB


def cookie_file(directory: Path) -> Path:
    """A curl-style cookies file: one cookie for 127.0.0.1, one secure, one for another host."""
    path = directory / "cookies.txt"
    path.write_text(
        "# Netscape HTTP Cookie File\n"
        f"127.0.0.1\tFALSE\t/\tFALSE\t0\tsid\t{COOKIE}\n"
        f"#HttpOnly_127.0.0.1\tFALSE\t/f\tTRUE\t0\tsecure\t{COOKIE}-s\n"
        f".example.com\tTRUE\t/\tFALSE\t0\tother\t{COOKIE}-o\n"
    )
    return path


def basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


def _make_controlling_terminal() -> None:
    # In the child after setsid(): its stdin (the pty's slave) becomes its controlling terminal,
    # which is where getpass asks.
    fcntl.ioctl(0, termios.TIOCSCTTY, 0)


@contextlib.contextmanager
def on_terminal(
    procs: Processes, args: list[str], env: dict[str, str] | None = None
) -> Iterator[tuple[subprocess.Popen[str], int]]:
    """``fetchtop ARGS`` with a pty as its terminal (stdin and /dev/tty); yields it and the master."""
    master, slave = os.openpty()
    try:
        proc = procs.start(
            args,
            stdin=slave,
            start_new_session=True,
            preexec_fn=_make_controlling_terminal,
            **({"env": env} if env else {}),
        )
        os.close(slave)
        slave = -1
        yield proc, master
    finally:
        os.close(master)
        if slave >= 0:
            os.close(slave)


def read_until(master: int, proc: subprocess.Popen[str], marker: bytes, limit: float = 20.0) -> bytes:
    """What the terminal shows until ``marker`` (bounded in time; fails if the child exits first)."""
    seen = b""
    deadline = time.monotonic() + limit
    while marker not in seen:
        assert time.monotonic() < deadline, f"no {marker!r} on the terminal: {seen!r}"
        ready, _, _ = select.select([master], [], [], 0.1)
        if ready:
            with contextlib.suppress(OSError):
                seen += os.read(master, 4096)
        elif proc.poll() is not None:
            pytest.fail(f"exited with {proc.returncode} before {marker!r}: {seen!r}")
    return seen


def drain(master: int, proc: subprocess.Popen[str], limit: float = 30.0) -> bytes:
    """Everything the terminal shows until the child exits (bounded)."""
    seen = b""
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        ready, _, _ = select.select([master], [], [], 0.1)
        if ready:
            try:
                chunk = os.read(master, 4096)
            except OSError:
                break
            if not chunk:
                break
            seen += chunk
        elif proc.poll() is not None:
            break
    return seen


def cmdline(pid: int) -> str:
    return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")


def environ(pid: int) -> str:
    return Path(f"/proc/{pid}/environ").read_bytes().replace(b"\0", b" ").decode(errors="replace")


def test_get_asks_for_the_password_on_the_terminal_without_echo(
    threaded_fault_server: FaultServer, procs: Processes
) -> None:
    srv = threaded_fault_server
    url = srv.add_file("locked.bin", SIZE, auth=("alice", PASSWORD))
    with on_terminal(procs, ["get", "-q", "-d", "t", "-u", "alice", url]) as (proc, master):
        prompt = read_until(master, proc, b"password for user 'alice': ")
        assert PASSWORD not in cmdline(proc.pid) and PASSWORD not in environ(proc.pid)
        os.write(master, PASSWORD.encode() + b"\n")
        screen = prompt + drain(master, proc)
        res = procs.finish(proc, timeout=30)
    assert res.returncode == 0, res.describe()
    assert PASSWORD.encode() not in screen  # not echoed
    assert PASSWORD not in res.stdout + res.stderr
    assert file_matches(str(procs.cwd / "t" / "locked.bin"), "locked.bin", SIZE)
    records = srv.stats("locked.bin").records
    assert records and all(r.headers.get("Authorization") == basic("alice", PASSWORD) for r in records)


def test_get_without_a_terminal_and_no_password_is_a_usage_error(procs: Processes) -> None:
    # A new session has no controlling terminal: nowhere to ask.
    proc = procs.start(["get", "-u", "alice", "http://127.0.0.1:9/x.bin"], start_new_session=True)
    res = procs.finish(proc, timeout=30)
    assert res.returncode == 2, res.describe()
    assert res.err_lines == [
        "fetchtop: -u/--user 'alice' has no password and there is no terminal to ask on (use USER:PASS)"
    ]
    assert_no_traceback(res.stdout, res.stderr)


def test_get_sends_user_and_matching_cookies(threaded_fault_server: FaultServer, procs: Processes) -> None:
    srv = threaded_fault_server
    size = 3 * 1024 * KiB  # several 1 MiB pieces: the range client's requests as well as the probe
    url = srv.add_file("both.bin", size, auth=("alice", PASSWORD))
    jar = cookie_file(procs.cwd)
    res = procs.run(["get", "-d", "t", "-x", "4", "-u", f"alice:{PASSWORD}", "--load-cookies", str(jar), url])
    assert res.returncode == 0, res.describe()
    assert PASSWORD not in res.stdout + res.stderr and COOKIE not in res.stdout + res.stderr
    assert file_matches(str(procs.cwd / "t" / "both.bin"), "both.bin", size)
    records = srv.stats("both.bin").records
    assert len(records) > 1
    for rec in records:
        assert rec.headers.get("Authorization") == basic("alice", PASSWORD)
        assert (
            rec.headers.get("Cookie") == f"sid={COOKIE}"
        )  # not the secure one over http, nor the other host's


@pytest.mark.parametrize(
    ("text", "why"),
    [
        ("127.0.0.1\tFALSE\t/\n", "line 1: expected 7 TAB-separated fields, got 3"),
        (f"# ok\n127.0.0.1\tMAYBE\t/\tFALSE\t0\tsid\t{COOKIE}\n", "line 2: the flags must be TRUE or FALSE"),
    ],
)
def test_a_bad_cookies_file_is_one_line_naming_it(procs: Processes, text: str, why: str) -> None:
    jar = procs.cwd / "bad.txt"
    jar.write_text(text)
    res = procs.run(["get", "--load-cookies", "bad.txt", "http://127.0.0.1:9/x.bin"])
    assert res.returncode == 2, res.describe()
    assert res.err_lines == [f"fetchtop: cookies file bad.txt: {why}"]
    assert COOKIE not in res.stderr


@pytest.fixture
def daemons() -> Iterator[Daemons]:
    with daemon_area() as area:
        yield area


def test_the_daemon_gets_them_over_its_socket_and_shows_them_nowhere(
    daemons: Daemons, threaded_fault_server: FaultServer
) -> None:
    srv = threaded_fault_server
    # Slow, so it is still unfinished when the daemon stops and comes back from the session file.
    url = srv.add(FileSpec("d.bin", size=SIZE, rate=48 * KiB, chunk_size=4 * KiB, auth=("alice", PASSWORD)))
    jar = cookie_file(daemons.base)
    daemon = daemons.start()
    procs = Processes(daemons.downloads, child_env(daemons.home))
    try:
        args = ["add", "-u", "alice", "--load-cookies", str(jar), url, "--state-dir", str(daemons.state_dir)]
        with on_terminal(procs, args) as (proc, master):
            read_until(master, proc, b"password for user 'alice': ")
            os.write(master, PASSWORD.encode() + b"\n")
            screen = drain(master, proc)
            res = procs.finish(proc, timeout=30)
    finally:
        procs.kill_all()
    assert res.returncode == 0, res.describe()
    assert PASSWORD.encode() not in screen
    task_id = int(res.stdout.strip())
    daemons.wait_state(task_id, "downloading")

    listed = daemons.ok("ls", "--json")
    task = json.loads(listed)["tasks"][0]
    assert task["options"]["user"] == "alice:<redacted>"
    assert [row[5:7] for row in task["options"]["cookies"]] == [
        ["sid", "<redacted>"],
        ["secure", "<redacted>"],
        ["other", "<redacted>"],
    ]
    shown = {
        "ls --json": listed,
        "ls": daemons.ok("ls"),
        "ls --history --json": daemons.ok("ls", "--history", "--json"),
        "the daemon's command line": cmdline(daemon.proc.pid),
        "the daemon's environment": environ(daemon.proc.pid),
        "the daemon's log": daemon.output(),
    }
    for where, text in shown.items():
        assert PASSWORD not in text and COOKIE not in text, f"secret shown in {where}:\n{text[:4000]}"

    daemons.ok("stop")
    assert daemon.wait_exit() == 0
    # Kept, as -H headers are, in the user's private session file, so a restart resumes with them.
    session = daemons.state_dir / "session.json"
    assert session.stat().st_mode & 0o077 == 0
    assert PASSWORD in session.read_text()

    srv.reset_stats("d.bin")
    srv.update("d.bin", rate=None)
    again = daemons.start()
    restored = daemons.snapshot()["tasks"][0]
    done = daemons.wait_state(restored["id"], "completed")
    assert file_matches(done["path"], "d.bin", SIZE)
    records = srv.stats("d.bin").records
    assert records and all(r.headers.get("Authorization") == basic("alice", PASSWORD) for r in records)
    assert all(r.headers.get("Cookie") == f"sid={COOKIE}" for r in records)
    history = (daemons.state_dir / "history.json").read_text()
    assert "d.bin" in history and PASSWORD not in history and COOKIE not in history
    assert PASSWORD not in again.output() and COOKIE not in again.output()


def test_credentials_are_not_engine_defaults(tmp_path: Path) -> None:
    # A download added later from the defaults (the dashboard's dialog, an API client naming no
    # options) must not take them to its own host.
    from tui.options import Parser, add_download_options, download_request

    parser = Parser(prog="fetchtop get")
    add_download_options(parser)
    jar = cookie_file(tmp_path)
    args = parser.parse_args(["-u", f"alice:{PASSWORD}", "--load-cookies", str(jar), "http://127.0.0.1:9/x"])
    request = download_request(args, require_urls=True)
    assert request.options.user == f"alice:{PASSWORD}" and len(request.options.cookies) == 3
    assert request.config.defaults.user is None and request.config.defaults.cookies == ()
