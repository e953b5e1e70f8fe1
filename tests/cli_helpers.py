"""Helpers for end-to-end tests of ``fetchtop get`` run as a real subprocess.

Every child process started here is bounded in time and killed by its owner in teardown
(:class:`Processes`), whatever the test's outcome.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
"""The repository root (the children import ``engine`` and ``tui`` from here)."""

_SCRIPT = Path(sys.executable).parent / "fetchtop"
FETCHTOP: list[str] = [str(_SCRIPT)] if _SCRIPT.exists() else [sys.executable, "-m", "tui.cli"]
"""The command that runs fetchtop: the installed console script, else the module."""

RUN_TIMEOUT = 60.0
"""Seconds any one ``fetchtop`` run may take before the test kills it and fails."""

_PROXY_VARS = ("http_proxy", "https_proxy", "all_proxy", "ftp_proxy", "no_proxy")


def cli_env(home: Path) -> dict[str, str]:
    """The environment for a child: no proxies (loopback only), a private HOME (no ~/.netrc)."""
    env = {k: v for k, v in os.environ.items() if k.lower() not in _PROXY_VARS}
    env["NO_PROXY"] = env["no_proxy"] = "127.0.0.1,localhost,::1"
    env["HOME"] = str(home)
    env["PYTHONPATH"] = str(ROOT)
    # A wide terminal setting must not matter; a non-tty stdout must get plain lines regardless.
    env.pop("FORCE_COLOR", None)
    env.pop("TERM_PROGRAM", None)
    return env


@dataclass(frozen=True)
class Result:
    """How a finished ``fetchtop`` run ended."""

    returncode: int
    """Exit status (negative: killed by that signal)."""
    stdout: str
    """Everything written to stdout."""
    stderr: str
    """Everything written to stderr."""

    @property
    def err_lines(self) -> list[str]:
        """Non-empty stderr lines."""
        return [line for line in self.stderr.splitlines() if line.strip()]

    @property
    def out_lines(self) -> list[str]:
        """Non-empty stdout lines."""
        return [line for line in self.stdout.splitlines() if line.strip()]

    def describe(self) -> str:
        """The whole run, for assertion messages."""
        return f"exit {self.returncode}\n--- stdout ---\n{self.stdout}--- stderr ---\n{self.stderr}"


def assert_no_traceback(*texts: str) -> None:
    """No Python traceback (or its tell-tale lines) anywhere in the output."""
    for text in texts:
        assert "Traceback" not in text, text
        assert 'File "' not in text, text


class Processes:
    """Children started by a test; :meth:`kill_all` (called in teardown) ends the ones still alive."""

    def __init__(self, cwd: Path, env: dict[str, str]) -> None:
        self.cwd = cwd
        """Working directory of every child."""
        self.env = env
        """Environment of every child."""
        self._procs: list[subprocess.Popen[str]] = []

    def start(self, args: Sequence[str], **kwargs: Any) -> subprocess.Popen[str]:
        """Start ``fetchtop ARGS`` with stdout and stderr piped to temp files (no pipe can fill up)."""
        return self.spawn([*FETCHTOP, *args], **kwargs)

    def spawn(self, argv: Sequence[str], **kwargs: Any) -> subprocess.Popen[str]:
        """Start any command; it is tracked and killed in teardown."""
        kwargs.setdefault("cwd", self.cwd)
        kwargs.setdefault("env", self.env)
        kwargs.setdefault("stdin", subprocess.DEVNULL)
        kwargs.setdefault("stdout", subprocess.PIPE)
        kwargs.setdefault("stderr", subprocess.PIPE)
        with deliverable_sigint():
            proc = subprocess.Popen(list(argv), text=True, **kwargs)
        self._procs.append(proc)
        return proc

    def run(self, args: Sequence[str], timeout: float = RUN_TIMEOUT, stdin: str | None = None) -> Result:
        """Run ``fetchtop ARGS`` to the end (feeding it ``stdin`` if given); a run over ``timeout`` is
        killed and fails the test."""
        proc = self.start(args, stdin=subprocess.DEVNULL if stdin is None else subprocess.PIPE)
        return self.finish(proc, timeout, stdin)

    def finish(
        self, proc: subprocess.Popen[str], timeout: float = RUN_TIMEOUT, stdin: str | None = None
    ) -> Result:
        """Wait for a started child and collect its output; kill it if it overruns."""
        try:
            out, err = proc.communicate(input=stdin, timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            out, err = proc.communicate(timeout=10)
            raise AssertionError(
                f"fetchtop did not finish within {timeout}s\n--- stdout ---\n{out}--- stderr ---\n{err}"
            ) from None
        return Result(proc.returncode, out, err)

    def kill_all(self) -> None:
        """SIGKILL every child still running and reap it."""
        for proc in self._procs:
            if proc.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    proc.kill()
            with contextlib.suppress(subprocess.TimeoutExpired, ValueError, OSError):
                proc.communicate(timeout=10)


@contextlib.contextmanager
def deliverable_sigint() -> Iterator[None]:
    """Make sure a child can receive Ctrl-C: an ignored SIGINT (pytest started in the background by a
    shell without job control) would be inherited across exec and the child would never see it."""
    if signal.getsignal(signal.SIGINT) is not signal.SIG_IGN:
        yield
        return
    signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)


def wait_until(
    predicate: Callable[[], bool],
    timeout: float,
    what: str,
    proc: subprocess.Popen[str] | None = None,
    interval: float = 0.02,
) -> None:
    """Poll ``predicate`` until true; fail after ``timeout`` s, or at once if ``proc`` exits first."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if proc is not None and proc.poll() is not None:
            out, err = proc.communicate(timeout=10)
            raise AssertionError(f"process exited ({proc.returncode}) before {what}\n{out}\n{err}")
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(interval)


def read_control(path: Path) -> dict[str, Any] | None:
    """A control file's JSON, or None while it is missing (or caught mid-replace)."""
    try:
        data = json.loads(path.read_bytes())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def claimed_ranges(control: dict[str, Any] | None) -> list[tuple[int, int]]:
    """The ``[start, end)`` ranges a control file says are on disk."""
    if control is None:
        return []
    return [(int(a), int(b)) for a, b in control.get("done", [])]


def claimed_bytes(control: dict[str, Any] | None) -> int:
    """How many bytes a control file says are on disk."""
    return sum(b - a for a, b in claimed_ranges(control))


_RANGE = re.compile(r"^bytes=(\d+)-(\d*)$")


def parse_range(header: str) -> tuple[int, int | None]:
    """``bytes=a-b`` as ``(a, b)`` (b inclusive), ``bytes=a-`` as ``(a, None)``; anything else fails."""
    m = _RANGE.match(header.strip())
    assert m is not None, f"unexpected Range header {header!r}"
    return int(m.group(1)), int(m.group(2)) if m.group(2) else None


def is_closed_range(header: str) -> bool:
    """Whether a Range header asks for an explicit ``bytes=a-b``."""
    return parse_range(header)[1] is not None


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def closed_port_url() -> str:
    """A URL on 127.0.0.1 where nothing listens (connection refused)."""
    return f"http://127.0.0.1:{free_port()}/nothing.bin"


# ---------------------------------------------------------------------------------------------------
# A real nginx


NGINX = shutil.which("nginx") or "/usr/sbin/nginx"
"""The nginx binary."""


@dataclass(frozen=True)
class AccessEntry:
    """One line of the test nginx's access log."""

    request: str
    """The request line."""
    status: int
    """Status sent."""
    range: str
    """The Range header as received ('' when absent)."""
    if_range: str
    """The If-Range header as received ('' when absent)."""
    sent: int
    """Body bytes sent."""
    connection: int
    """nginx's connection serial number."""


_LOG_FORMAT = (
    'log_format t escape=json \'{"request":"$request","status":$status,"range":"$http_range",'
    '"if_range":"$http_if_range","sent":$body_bytes_sent,"connection":$connection}\';'
)


class Nginx:
    """A real nginx on 127.0.0.1 serving ``root`` with a config written into ``base``.

    Runs in the foreground (``daemon off``) in its own process group, so :meth:`stop` can always
    take its worker down with it.
    """

    def __init__(self, base: Path, server_extra: str = "") -> None:
        self.base = base
        """Directory holding the config, logs, pid file and temp dirs."""
        self.root = base / "www"
        """Document root: put files here."""
        self.server_extra = server_extra
        """Directives added to the server block (``max_ranges 0;``, ``limit_rate 512k;``...)."""
        self.port = 0
        """The port listened on, once started."""
        self._proc: subprocess.Popen[bytes] | None = None
        self.root.mkdir(parents=True, exist_ok=True)

    @property
    def access_log(self) -> Path:
        """The access log, one JSON object a line."""
        return self.base / "access.log"

    def url(self, name: str) -> str:
        """The URL of a file under the root."""
        return f"http://127.0.0.1:{self.port}/{name}"

    def _write_config(self) -> Path:
        b = self.base
        # Workers of a root master run as 'nobody' by default and could not read the test's tmp dir.
        user = "user root;" if os.geteuid() == 0 else ""
        conf = f"""
daemon off;
master_process on;
worker_processes 1;
{user}
pid {b}/nginx.pid;
error_log {b}/error.log warn;
events {{ worker_connections 256; }}
http {{
    {_LOG_FORMAT}
    access_log {b}/access.log t;
    client_body_temp_path {b}/tmp_client_body;
    proxy_temp_path {b}/tmp_proxy;
    fastcgi_temp_path {b}/tmp_fastcgi;
    uwsgi_temp_path {b}/tmp_uwsgi;
    scgi_temp_path {b}/tmp_scgi;
    default_type application/octet-stream;
    sendfile on;
    keepalive_timeout 10s;
    server {{
        listen 127.0.0.1:{self.port};
        root {self.root};
        {self.server_extra}
    }}
}}
"""
        path = b / "nginx.conf"
        path.write_text(conf)
        return path

    def start(self) -> Nginx:
        """Start nginx and wait until it accepts connections (a few tries if a port was taken)."""
        last_error = ""
        for _ in range(5):
            self.port = free_port()
            conf = self._write_config()
            errlog = self.base / "error.log"
            self._proc = subprocess.Popen(
                [NGINX, "-p", str(self.base), "-c", str(conf), "-e", str(errlog)],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
                start_new_session=True,
            )
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline:
                if self._proc.poll() is not None:
                    break
                with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", self.port), 0.2):
                    return self
                time.sleep(0.02)
            stderr = self._proc.stderr.read().decode(errors="replace") if self._proc.stderr else ""
            last_error = stderr + (errlog.read_text() if errlog.exists() else "")
            self.stop()
        raise AssertionError(f"nginx did not start:\n{last_error}")

    def stop(self) -> None:
        """Stop nginx (fast shutdown, then SIGKILL of its process group); safe to call twice."""
        proc, self._proc = self._proc, None
        if proc is None:
            return
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                pass
        # The worker is in the master's process group (its own session): end any straggler.
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=5)
        if proc.stderr is not None:
            proc.stderr.close()

    def entries(self) -> list[AccessEntry]:
        """Every access-log line so far, parsed."""
        if not self.access_log.exists():
            return []
        out = []
        for line in self.access_log.read_text().splitlines():
            if line.strip():
                d = json.loads(line)
                out.append(
                    AccessEntry(
                        request=d["request"],
                        status=int(d["status"]),
                        range=d["range"],
                        if_range=d["if_range"],
                        sent=int(d["sent"]),
                        connection=int(d["connection"]),
                    )
                )
        return out

    def settled_entries(self, expect_sent: int, timeout: float = 5.0) -> list[AccessEntry]:
        """The access log once it accounts for at least ``expect_sent`` body bytes (nginx logs a
        request when its response ends, which may trail the client's exit a little)."""
        deadline = time.monotonic() + timeout
        while True:
            entries = self.entries()
            if sum(e.sent for e in entries) >= expect_sent or time.monotonic() > deadline:
                time.sleep(0.1)  # a cut-short response may be logged just after the others
                return self.entries()
            time.sleep(0.05)
