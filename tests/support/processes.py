"""Child processes of the tests: the ``fetchtop`` command, the environment every child gets, and
:class:`Processes`, which bounds each run in time and kills every child it started in teardown.
"""

from __future__ import annotations

import contextlib
import os
import select
import signal
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.support.limits import RUN_TIMEOUT

ROOT = Path(__file__).resolve().parents[2]
"""The repository root (the children import ``engine``, ``faultserver`` and ``tui`` from here)."""

_SCRIPT = Path(sys.executable).parent / "fetchtop"
FETCHTOP: list[str] = [str(_SCRIPT)] if _SCRIPT.exists() else [sys.executable, "-m", "tui.cli"]
"""The command that runs fetchtop: the installed console script, else the module."""

_PROXY_VARS = ("http_proxy", "https_proxy", "all_proxy", "ftp_proxy", "no_proxy")
# Inherited, these would change what a child does: its state directory, colours, terminal guesses.
_DROPPED_VARS = ("FETCHTOP_STATE_DIR", "FORCE_COLOR", "TERM_PROGRAM")


def child_env(home: Path) -> dict[str, str]:
    """The environment for a child: no proxies (loopback only), a private HOME (no ~/.netrc) and
    config directory (no config file), the repository on the path, and no inherited state directory
    or colour settings."""
    env = {k: v for k, v in os.environ.items() if k.lower() not in _PROXY_VARS and k not in _DROPPED_VARS}
    env["NO_PROXY"] = env["no_proxy"] = "127.0.0.1,localhost,::1"
    env["HOME"] = str(home)
    # The user's own config file must not change what a test's fetchtop does.
    env["XDG_CONFIG_HOME"] = str(home / ".config")
    env["PYTHONPATH"] = str(ROOT)
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


def assert_clean_success(res: Result) -> None:
    """Exit 0, nothing on stderr, no traceback."""
    assert res.returncode == 0, res.describe()
    assert res.err_lines == [], res.describe()
    assert_no_traceback(res.stdout, res.stderr)


def read_terminal(proc: subprocess.Popen[str], master: int, limit: float) -> bytes:
    """Everything the child writes to its terminal until it exits (drained, so it never blocks)."""
    screen = bytearray()
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        ready, _, _ = select.select([master], [], [], 0.1)
        if ready:
            try:
                chunk = os.read(master, 65536)
            except OSError:  # EIO: the child closed its side
                chunk = b""
            if not chunk and proc.poll() is not None:
                break
            screen += chunk
        elif proc.poll() is not None:
            break
    return bytes(screen)
