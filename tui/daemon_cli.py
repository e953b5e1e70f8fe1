"""The daemon's commands: ``fetchtop daemon``, ``attach``, and the scripting commands that talk to it.

``daemon`` runs :mod:`engine.daemon.process`; ``add``, ``ls``, ``pause``, ``resume``, ``rm``, ``limit``,
``seturl`` and ``stop`` send one request each through :class:`engine.daemon.client.RemoteClient`;
``attach`` opens the dashboard on a RemoteClient. Textual is imported only inside ``attach`` and the
daemon's server only inside ``daemon``, so the scripting commands start fast.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import os
import sys
import time
from collections.abc import Awaitable, Callable

from engine.client import DaemonUnavailable, EngineError
from engine.codec import to_plain
from engine.daemon.client import RemoteClient
from engine.daemon.config import DaemonConfig, DaemonError, parse_listen, read_token
from engine.escaping import escape_controls
from engine.locations import Locations
from engine.models import EngineSnapshot, TaskSnapshot, TaskState
from engine.redaction import redact
from engine.schedule import status_note
from engine.units import format_bytes, format_duration, format_rate, parse_rate
from tui.options import (
    PROG,
    Parser,
    UsageError,
    add_download_options,
    download_request,
    parse_download_args,
    refuse_host_sections,
)

NO_DAEMON = f"{PROG}: no daemon running (start one with {PROG} daemon)"
"""What every client command says when nothing listens on the socket."""
STOP_TIMEOUT = 30.0
"""Seconds ``fetchtop stop`` waits for the daemon to exit."""
NOT_SAVED = "queue not saved"
"""What ``ls`` and ``stop`` say, before the reason, when the daemon cannot save its queue."""


def _connection_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--socket", metavar="PATH", help="the daemon's control socket")
    parser.add_argument(
        "--state-dir", metavar="DIR", help="the daemon's state directory (its socket is in it)"
    )
    parser.add_argument("--url", metavar="URL", help="reach the daemon over TCP, e.g. http://127.0.0.1:6801")
    parser.add_argument("--token-file", metavar="FILE", help="file holding the token for --url")


def make_client(args: argparse.Namespace) -> RemoteClient:
    """The client the connection options ask for (socket by default)."""
    if args.url:
        if not args.token_file:
            raise UsageError("--url needs --token-file")
        if not args.url.startswith(("http://", "https://")):
            raise UsageError(f"--url must start with http:// or https://, got {args.url!r}")
        try:
            token = read_token(args.token_file)
        except DaemonError as exc:
            raise UsageError(str(exc)) from None
        return RemoteClient(url=args.url, token=token)
    return RemoteClient(socket_path=Locations.resolve(args.state_dir, args.socket).socket)


def _say_error(line: str) -> None:
    """One line on stderr; what came from the daemon (and maybe from a server) is escaped first."""
    print(escape_controls(line), file=sys.stderr)


def _run(client: RemoteClient, work: Callable[[RemoteClient], Awaitable[int]]) -> int:
    """Run one command against the daemon; transport trouble becomes one stderr line and status 1."""

    async def go() -> int:
        async with client:
            return await work(client)

    try:
        return asyncio.run(go())
    except DaemonUnavailable as exc:
        _say_error(NO_DAEMON if exc.not_running else f"{PROG}: {exc}")
        return 1
    except EngineError as exc:
        _say_error(f"{PROG}: {exc}")
        return 1


async def _each(ids: list[int], action: Callable[[int], Awaitable[None]]) -> int:
    """Apply ``action`` to every id; refusals are reported one line each and make the status 1."""
    status = 0
    for task_id in ids:
        try:
            await action(task_id)
        except EngineError as exc:
            _say_error(f"{PROG}: #{task_id}: {exc}")
            status = 1
    return status


# ----- the commands -----------------------------------------------------------------------------


def _daemon(argv: list[str]) -> int:
    parser = Parser(
        prog=f"{PROG} daemon",
        description="Run the download engine in the background, steered by fetchtop add/ls/pause/"
        "resume/rm/limit/stop and fetchtop attach. Its queue survives restarts and crashes.",
    )
    add_download_options(parser)
    parser.add_argument(
        "--state-dir", metavar="DIR", help="where the session, history, pid and log files go (and the socket)"
    )
    parser.add_argument("--socket", metavar="PATH", help="control socket path (created with mode 0600)")
    parser.add_argument("--listen", metavar="HOST:PORT", help="serve the API on TCP too (needs --token-file)")
    parser.add_argument("--token-file", metavar="FILE", help="file holding the token TCP clients must send")
    parser.add_argument("--detach", action="store_true", help="run in the background (log in the state dir)")
    args = parse_download_args(parser, argv)
    if args.output:
        raise UsageError("-o/--output names one file: give it to 'fetchtop add', not to the daemon")
    if args.user is not None or args.load_cookies is not None:
        # As defaults they would go to every host; and a password in the daemon's argv is in ps.
        raise UsageError("-u/--user and --load-cookies are per download: give them to 'fetchtop add'")
    request = download_request(args, require_urls=False)
    refuse_host_sections(request, "'fetchtop daemon'")
    where = Locations.resolve(args.state_dir, args.socket)
    download_dir = os.path.abspath(os.path.expanduser(args.dir))
    try:
        listen = parse_listen(args.listen) if args.listen else None
        token = read_token(args.token_file) if args.token_file else None
    except DaemonError as exc:
        raise UsageError(str(exc)) from None
    defaults = dataclasses.replace(request.options, directory=download_dir)
    engine_config = dataclasses.replace(request.config, defaults=defaults)
    config = DaemonConfig(
        state_dir=where.state_dir,
        socket_path=where.socket,
        engine=engine_config,
        download_dir=download_dir,
        listen=listen,
        token=token,
        metrics_addr=request.metrics_addr,
        metrics_port=request.metrics_port,
        urls=tuple(request.urls),
    )
    try:
        config.check()
    except DaemonError as exc:
        raise UsageError(str(exc)) from None
    # The server (aiohttp.web) is loaded here only: the client commands never need it.
    from engine.daemon.process import run_daemon

    return run_daemon(config, detach=args.detach, quiet=request.quiet)


def _add(argv: list[str]) -> int:
    parser = Parser(
        prog=f"{PROG} add",
        description="Queue downloads in the running daemon; prints each new task's id. "
        "--limit-rate limits each of these downloads.",
    )
    add_download_options(parser)
    _connection_options(parser)
    args = parse_download_args(parser, argv)
    if args.metrics_port is not None:
        raise UsageError("--metrics-port is an option of 'fetchtop daemon'")
    for hook in ("on_complete", "on_error"):
        # Hooks are commands the daemon runs: they are its own options, never sent over its API.
        if hook in args.options_given:
            name = hook.replace("_", "-")
            raise UsageError(f"--{name} is an option of 'fetchtop daemon' (hooks run in the daemon)")
    if args.schedule is not None:
        raise UsageError(
            "--schedule is an option of 'fetchtop daemon' (it steers the daemon's overall limit)"
        )
    request = download_request(args, require_urls=True)
    client = make_client(args)
    downloads = []
    for url, task_options in request.downloads:
        directory = os.path.expanduser(task_options.directory)
        if client.socket_path is not None:
            # Same machine: a relative directory means the caller's, not the daemon's.
            directory = os.path.abspath(directory)
        # --limit-rate limits each download here; the command line's wins over a host section's. The
        # file's top-level limit-rate is the daemon's overall one (the same file), not each task's.
        limit = task_options.speed_limit
        if "limit_rate" in args.options_given:
            limit = args.limit_rate
        downloads.append((url, dataclasses.replace(task_options, directory=directory, speed_limit=limit)))

    async def work(c: RemoteClient) -> int:
        status = 0
        for url, options in downloads:
            try:
                print(await c.add(url, options), flush=True)
            except EngineError as exc:
                _say_error(f"{PROG}: {redact(url)}: {exc}")
                status = 1
        return status

    return _run(client, work)


def _progress(task: TaskSnapshot) -> str:
    if task.size:
        return f"{task.done / task.size:4.0%} {format_bytes(task.done)}/{format_bytes(task.size)}"
    return format_bytes(task.done)


def format_tasks(tasks: tuple[TaskSnapshot, ...] | list[TaskSnapshot]) -> list[str]:
    """A table of tasks for ``fetchtop ls``, header first; names and errors with controls escaped."""
    rows = [("ID", "STATE", "PROGRESS", "SPEED", "ETA", "NAME")]
    for t in tasks:
        active = t.state in (TaskState.DOWNLOADING, TaskState.PROBING)
        name = t.name or t.url
        if t.error:
            name += f"  ({t.error})"
        # The daemon escapes what servers send, but a history written by an older one did not.
        name = escape_controls(name)
        rows.append(
            (
                str(t.id),
                t.state.value,
                _progress(t),
                format_rate(t.speed) if active else "-",
                format_duration(t.eta) if active else "-",
                name,
            )
        )
    widths = [max(len(r[i]) for r in rows) for i in range(5)]
    return [
        f"{r[0]:>{widths[0]}}  {r[1]:<{widths[1]}}  {r[2]:>{widths[2]}}  {r[3]:>{widths[3]}}  "
        f"{r[4]:>{widths[4]}}  {r[5]}"
        for r in rows
    ]


def _ls(argv: list[str]) -> int:
    parser = Parser(prog=f"{PROG} ls", description="List the daemon's tasks (or its finished history).")
    parser.add_argument("--json", action="store_true", help="print the full state as JSON")
    parser.add_argument("--history", action="store_true", help="finished tasks instead, oldest first")
    _connection_options(parser)
    args = parser.parse_args(argv)

    async def work(c: RemoteClient) -> int:
        if args.history:
            history = await c.history()
            if args.json:
                print(json.dumps({"tasks": to_plain(history)}, indent=1))
            else:
                print("\n".join(format_tasks(history)))
            return 0
        snapshot: EngineSnapshot = await c.get_snapshot()
        if args.json:
            print(json.dumps(to_plain(snapshot), indent=1))
            return 0
        print("\n".join(format_tasks(snapshot.tasks)))
        limit = "none" if snapshot.speed_limit is None else format_rate(snapshot.speed_limit)
        if snapshot.schedule is not None:
            limit += f" ({status_note(snapshot.schedule)})"
        print(f"total {format_rate(snapshot.speed)}, limit {limit}, {len(snapshot.tasks)} tasks")
        if snapshot.save_error is not None:
            _say_error(f"{PROG}: {NOT_SAVED}: {snapshot.save_error} (retrying)")
        return 0

    return _run(make_client(args), work)


def _ids_command(command: str, argv: list[str]) -> int:
    verbs = {"pause": "Pause", "resume": "Resume", "rm": "Cancel and remove"}
    parser = Parser(prog=f"{PROG} {command}", description=f"{verbs[command]} tasks of the daemon by id.")
    parser.add_argument("ids", nargs="*", type=int, metavar="ID", help="task ids (see fetchtop ls)")
    if command == "rm":
        parser.add_argument("--delete", action="store_true", help="also delete the partial files")
    else:
        parser.add_argument("--all", action="store_true", help=f"{command} every task")
    _connection_options(parser)
    args = parser.parse_args(argv)
    every = getattr(args, "all", False)
    if not args.ids and not every:
        raise UsageError(f"no task id given (see '{PROG} {command} --help')")

    async def work(c: RemoteClient) -> int:
        if command == "rm":
            return await _each(args.ids, lambda i: c.remove(i, delete_files=args.delete))
        if every:
            await (c.pause_all() if command == "pause" else c.resume_all())
        return await _each(args.ids, c.pause if command == "pause" else c.resume)

    return _run(make_client(args), work)


def _limit(argv: list[str]) -> int:
    parser = Parser(
        prog=f"{PROG} limit",
        description="Set the daemon's overall speed limit, or one task's: RATE like 500K or 2M "
        "(bytes/s), 0 or none for unlimited.",
    )
    parser.add_argument("rate", metavar="RATE")
    parser.add_argument("id", nargs="?", type=int, metavar="ID", help="limit this task only")
    _connection_options(parser)
    args = parser.parse_args(argv)
    text = args.rate.strip().lower()
    try:
        rate = None if text in ("none", "off", "unlimited") else parse_rate(args.rate)
    except ValueError as exc:
        raise UsageError(str(exc)) from None

    async def work(c: RemoteClient) -> int:
        await c.set_limit(rate, args.id)
        return 0

    return _run(make_client(args), work)


def _seturl(argv: list[str]) -> int:
    parser = Parser(
        prog=f"{PROG} seturl",
        description="Replace the URL of a paused or failed task (an expired link). The bytes downloaded "
        "are kept when the new URL serves the same file (same size, ETag and Last-Modified); otherwise "
        "nothing changes and the reason is given, unless --restart. The task stays paused: resume it.",
    )
    parser.add_argument("id", type=int, metavar="ID", help="the task (see fetchtop ls)")
    parser.add_argument("new_url", metavar="URL", help="where the same file is now")
    parser.add_argument(
        "--restart", action="store_true", help="if the bytes cannot be kept, delete them and start over"
    )
    _connection_options(parser)
    args = parser.parse_args(argv)

    async def work(c: RemoteClient) -> int:
        try:
            kept = await c.set_url(args.id, args.new_url, restart=args.restart)
        except EngineError as exc:
            _say_error(f"{PROG}: #{args.id}: {exc}")
            return 1
        how = f"{format_bytes(kept)} kept" if kept else "starting from the beginning"
        print(f"#{args.id}: new URL set, {how}; resume it with '{PROG} resume {args.id}'")
        return 0

    return _run(make_client(args), work)


def _alive(pid: int) -> bool:
    """Whether a process with this pid exists (and is not a zombie we could reap)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as f:
            return f.read().rsplit(")", 1)[-1].split()[0] != "Z"
    except OSError:
        return True


async def _wait_gone(pid: int, deadline: float) -> None:
    """Poll (there is no event for another process's exit) until ``pid`` is gone or time is up."""
    for _ in range(int(max(0.0, deadline - time.monotonic()) / 0.1) + 1):
        if not _alive(pid):
            return
        await asyncio.sleep(0.1)


def _stop(argv: list[str]) -> int:
    parser = Parser(prog=f"{PROG} stop", description="Make the daemon save its session and exit.")
    _connection_options(parser)
    args = parser.parse_args(argv)

    async def work(c: RemoteClient) -> int:
        stopped = await c.stop()
        pid = stopped.pid
        deadline = time.monotonic() + STOP_TIMEOUT
        while time.monotonic() < deadline:
            await asyncio.sleep(0.1)
            try:
                await c.status()
            except DaemonUnavailable:
                # Unreachable means saved; on this machine also wait for the process (and its
                # lock on the state directory) to be gone, so a new daemon can start at once.
                if c.socket_path is not None and pid:
                    await _wait_gone(pid, deadline)
                if stopped.save_error is not None:
                    _say_error(f"{PROG}: daemon stopped (pid {pid}), {NOT_SAVED}: {stopped.save_error}")
                    return 1
                print(f"{PROG}: daemon stopped (pid {pid})")
                return 0
            except EngineError:
                continue  # answering a last request while it shuts down
        print(f"{PROG}: the daemon (pid {pid}) did not stop within {STOP_TIMEOUT:.0f}s", file=sys.stderr)
        return 1

    return _run(make_client(args), work)


def _attach(argv: list[str]) -> int:
    parser = Parser(
        prog=f"{PROG} attach",
        description="Open the dashboard on the running daemon. Quitting leaves the downloads running.",
    )
    _connection_options(parser)
    args = parser.parse_args(argv)
    client = make_client(args)

    async def check(c: RemoteClient) -> int:
        await c.status()
        return 0

    # Say "no daemon" in one line rather than opening a dashboard that can only show an error.
    status = _run(client, check)
    if status != 0:
        return status
    from tui.app import FetchtopApp

    def factory() -> RemoteClient:
        return RemoteClient(
            socket_path=client.socket_path,
            url=None if client.socket_path is not None else client.base_url,
            token=client.token,
        )

    app = FetchtopApp(client_factory=factory, quit_note="They keep running in the daemon.")
    app.run()
    return app.return_code or 0


def run_daemon_command(command: str, argv: list[str]) -> int:
    """Run one of :data:`tui.cli.DAEMON_COMMANDS` with its arguments; returns the exit status.

    Raises UsageError for bad arguments (the caller prints it and exits 2).
    """
    if command == "daemon":
        return _daemon(argv)
    if command == "attach":
        return _attach(argv)
    if command == "add":
        return _add(argv)
    if command == "ls":
        return _ls(argv)
    if command in ("pause", "resume", "rm"):
        return _ids_command(command, argv)
    if command == "limit":
        return _limit(argv)
    if command == "stop":
        return _stop(argv)
    if command == "seturl":
        return _seturl(argv)
    raise UsageError(f"unknown command {command!r}")
