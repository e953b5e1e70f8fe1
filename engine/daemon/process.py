"""Running the daemon as a process: the state directory's lock, the pid file, detaching, readiness,
logging, and :func:`run_daemon`, the body of ``fetchtop daemon``."""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import logging
import os
import select
import signal
import sys
import time
from pathlib import Path
from typing import NoReturn

from engine.client import EngineError
from engine.daemon.config import DaemonConfig, DaemonError
from engine.daemon.server import Daemon, host_port
from engine.escaping import escape_controls
from engine.locations import Locations, make_private_dir

log = logging.getLogger("fetchtop.daemon")

READY_TIMEOUT = 30.0
"""Seconds ``--detach`` waits for the daemon to report that it listens."""


def try_lock_state_dir(where: Locations) -> int | None:
    """Create the state directory (0700) and take its lock; returns the lock's fd, or None while
    another engine (a daemon or a dashboard) holds it. Raises DaemonError if the directory is unusable.

    The lock is the one rule that makes one engine per state directory: whoever holds it owns the
    session, the history and the control socket. The fd is not inherited by child processes.
    """
    state_dir = where.state_dir
    try:
        make_private_dir(state_dir)
        fd = os.open(where.lock, os.O_RDWR | os.O_CREAT, 0o600)
    except OSError as exc:
        raise DaemonError(f"cannot use state directory {state_dir}: {exc.strerror}") from None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        os.close(fd)
        return None
    return fd


def _lock_state_dir(where: Locations) -> int:
    """:func:`try_lock_state_dir`, raising DaemonError when another engine holds the lock."""
    fd = try_lock_state_dir(where)
    if fd is None:
        pid = read_pid(where)
        who = f" (pid {pid})" if pid else ""
        raise DaemonError(f"a daemon is already running on {where.state_dir}{who}")
    return fd


def read_pid(where: Locations) -> int | None:
    """The pid in the state directory's pid file, if any."""
    try:
        return int(Path(where.pid).read_text().strip())
    except (OSError, ValueError):
        return None


def write_pid(where: Locations) -> None:
    """Write this process's id to the pid file (the lock's holder writes it)."""
    fd = os.open(where.pid, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.write(fd, f"{os.getpid()}\n".encode())
    finally:
        os.close(fd)


def _detach(where: Locations) -> int:
    """Become a daemon (fork, setsid, fork; stdio to the log file).

    Returns, in the daemon, the write end of a pipe to report readiness on. In the original process it
    waits for that report and raises _Ready (started) or DaemonError (could not start).
    """
    read_end, write_end = os.pipe()
    first = os.fork()
    if first > 0:
        os.close(write_end)
        os.waitpid(first, 0)
        _await_ready(read_end, where)
    try:
        os.close(read_end)
        os.setsid()
        if os.fork() > 0:
            os._exit(0)
        os.chdir("/")
        log_fd = os.open(where.log, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        null_fd = os.open(os.devnull, os.O_RDONLY)
        sys.stdout.flush()
        sys.stderr.flush()
        os.dup2(null_fd, 0)
        os.dup2(log_fd, 1)
        os.dup2(log_fd, 2)
        os.close(null_fd)
        os.close(log_fd)
    except BaseException:
        os._exit(1)
    return write_end


class _Ready(Exception):
    """Raised in the original process after a successful detach, to leave run_daemon with status 0."""


def _await_ready(read_end: int, where: Locations) -> NoReturn:
    deadline = time.monotonic() + READY_TIMEOUT
    data = b""
    try:
        while b"\n" not in data:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([read_end], [], [], left)[0]:
                raise DaemonError(f"the daemon did not start within {READY_TIMEOUT:.0f}s (see its log)")
            chunk = os.read(read_end, 4096)
            if not chunk:
                raise DaemonError(f"the daemon exited during startup (see {where.log})")
            data += chunk
    finally:
        os.close(read_end)
    line = data.decode(errors="replace").splitlines()[0]
    if line.startswith("ok "):
        print(f"fetchtop: daemon started (pid {line[3:]})", flush=True)
        raise _Ready
    raise DaemonError(line.removeprefix("error: "))


class EscapingFormatter(logging.Formatter):
    """A formatter whose lines have control characters escaped: a log is read on a terminal
    (``tail -f``), and its messages quote what servers sent. A traceback, appended after the
    line, keeps its own line breaks."""

    def formatMessage(self, record: logging.LogRecord) -> str:
        """The record's line, escaped."""
        return escape_controls(super().formatMessage(record))


def _setup_logging(quiet: bool) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(EscapingFormatter("%(asctime)s fetchtop daemon: %(levelname)s %(message)s"))
    root = logging.getLogger("fetchtop")
    root.handlers[:] = [handler]
    root.setLevel(logging.WARNING if quiet else logging.INFO)
    root.propagate = False


async def _main(config: DaemonConfig, notify: int | None) -> int:
    daemon = Daemon(config)
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        loop.add_signal_handler(sig, daemon.request_stop)
    started = False
    try:
        try:
            await daemon.start()
            started = True
        except (DaemonError, OSError, EngineError) as exc:
            reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
            message = f"cannot start: {reason}"
            log.error("%s", message)
            if notify is not None:
                os.write(notify, f"error: {message}\n".encode())
            return 1
        where = [f"unix:{config.socket_path}"]
        if daemon.tcp_address is not None:
            where.append(f"http://{host_port(*daemon.tcp_address)}")
        if daemon.metrics is not None:
            where.append(f"metrics on {host_port(config.metrics_addr, daemon.metrics.port)}")
        log.info("pid %d listening on %s", os.getpid(), ", ".join(where))
        if notify is not None:
            os.write(notify, f"ok {os.getpid()}\n".encode())
            os.close(notify)
            notify = None
        await daemon.serve()
        log.info("stopping: saving the session")
    finally:
        await daemon.close()
        if notify is not None:
            os.close(notify)
        if started:  # a refusal to start stays the one line that says why
            log.info("stopped")
    if daemon.engine.save_error is not None:
        log.error("the queue was not saved: %s", daemon.engine.save_error)
        return 1
    return 0


def run_daemon(config: DaemonConfig, *, detach: bool = False, quiet: bool = False) -> int:
    """Run ``fetchtop daemon`` until SIGTERM/SIGINT or ``fetchtop stop``; returns the exit status.

    With ``detach`` the original process returns 0 as soon as the daemon listens (1 if it could not
    start), and the daemon runs on in the background.
    """
    try:
        config.check()
        lock_fd = _lock_state_dir(config.locations)
    except DaemonError as exc:
        print(f"fetchtop: {exc}", file=sys.stderr)
        return 1
    notify: int | None = None
    if detach:
        try:
            notify = _detach(config.locations)
        except _Ready:
            return 0
        except DaemonError as exc:
            print(f"fetchtop: {exc}", file=sys.stderr)
            return 1
    _setup_logging(quiet)
    try:
        try:
            write_pid(config.locations)
        except OSError as exc:  # a full or read-only state directory: one line, no traceback
            log.error("cannot start: cannot write %s: %s", config.locations.pid, exc.strerror or exc)
            return 1
        return asyncio.run(_main(config, notify))
    finally:
        with contextlib.suppress(OSError):
            os.unlink(config.locations.pid)
        os.close(lock_fd)
