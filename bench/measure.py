"""Run one client process and measure it: wall time, CPU (user+sys) from ``wait4``, and peak RSS.

Peak RSS cannot come from the harness's own ``wait4``: Linux carries the parent's high-water RSS into a
forked child (``exec`` keeps the larger of the old and new memory's peak in ``ru_maxrss``), so every
client would report at least the harness's ~50 MB. The client therefore runs under GNU time, a small
process whose own child starts from a small image: its ``%M`` (``ru_maxrss`` from time's ``wait4``)
is the client's. CPU stays from the harness's ``wait4``, which includes time's waited-for child at
microsecond resolution (time's own few milliseconds are in it too)."""

from __future__ import annotations

import os
import signal
import subprocess
import threading
import time
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class ProcResult:
    """How one client process ran."""

    returncode: int
    """Exit status (negative: killed by that signal)."""
    wall: float
    """Seconds from spawn to exit."""
    cpu_user: float
    """User CPU seconds of the process and the children it waited for."""
    cpu_sys: float
    """System CPU seconds, likewise."""
    maxrss_kib: int
    """Peak resident set size in KiB (``ru_maxrss``)."""
    timed_out: bool
    """Whether the harness killed it for running past its timeout."""

    @property
    def cpu(self) -> float:
        """User plus system CPU seconds."""
        return self.cpu_user + self.cpu_sys


def run_measured(
    argv: list[str], *, cwd: Path, env: dict[str, str], timeout: float, log_path: Path, time_binary: str
) -> ProcResult:
    """Run ``argv`` to completion with stdout and stderr in ``log_path``, and return its measurements.

    The child gets a session (process group) of its own so a timeout or a Ctrl-C kills everything it
    started, and ``os.wait4`` reaps it to read its resource usage alone, not the harness's."""
    rss_path = log_path.with_name(log_path.name + ".maxrss")
    rss_path.unlink(missing_ok=True)
    with log_path.open("wb") as log:
        started = time.perf_counter()
        proc = subprocess.Popen(
            [time_binary, "-q", "-f", "%M", "-o", str(rss_path), *argv],
            cwd=cwd,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    lock = threading.Lock()
    state = {"reaped": False, "timed_out": False}

    def expire() -> None:
        with lock:
            if not state["reaped"]:
                state["timed_out"] = True
                _kill_group(proc.pid)

    timer = threading.Timer(timeout, expire)
    timer.daemon = True
    timer.start()
    try:
        _, status, usage = os.wait4(proc.pid, 0)
    except BaseException:
        # Interrupted (Ctrl-C): take the child down with us and reap it before propagating.
        with lock:
            state["reaped"] = True
        timer.cancel()
        _kill_group(proc.pid)
        os.waitpid(proc.pid, 0)
        proc.returncode = -signal.SIGKILL
        raise
    wall = time.perf_counter() - started
    with lock:
        state["reaped"] = True
    timer.cancel()
    # Popen must not try to reap the pid again (it may already belong to another process).
    proc.returncode = os.waitstatus_to_exitcode(status)
    return ProcResult(
        returncode=proc.returncode,
        wall=wall,
        cpu_user=usage.ru_utime,
        cpu_sys=usage.ru_stime,
        maxrss_kib=_read_maxrss(rss_path),
        timed_out=state["timed_out"],
    )


def _kill_group(pgid: int) -> None:
    """SIGKILL the process group ``pgid`` (the child's own session), ignoring a group already gone."""
    try:
        os.killpg(pgid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


def _read_maxrss(path: Path) -> int:
    """GNU time's ``%M`` (KiB): the last line of its output file that is a number; 0 if none."""
    try:
        lines = path.read_text().split()
    except OSError:
        return 0
    numbers = [int(word) for word in lines if word.isdigit()]
    return numbers[-1] if numbers else 0
