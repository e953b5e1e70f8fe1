"""The ``fetchtop`` command line: picks a subcommand and hands its arguments to the module that runs it.

This module and :mod:`tui.get` must stay free of Textual so ``fetchtop get`` starts fast;
the dashboard is imported only when it is asked for.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import sys
from collections.abc import Iterator, Sequence

from tui.options import (
    PROG,
    Parser,
    UsageError,
    add_download_options,
    download_request,
    parse_download_args,
    refuse_host_sections,
)

COMMANDS = ("get", "demo")
DAEMON_COMMANDS = ("daemon", "attach", "add", "ls", "pause", "resume", "rm", "limit", "seturl", "stop")
"""Commands that run or talk to the background daemon (see :mod:`tui.daemon_cli`)."""
SUMMARIES = {
    "get": "download URLs without the dashboard and exit (status 1 if any failed)",
    "demo": "open the dashboard on built-in test files",
    "daemon": "run the download engine in the background, steered by the commands below",
    "add": "queue downloads in the running daemon",
    "ls": "list the daemon's tasks (--history: its finished ones)",
    "pause": "pause daemon tasks by id (--all: every one)",
    "resume": "resume daemon tasks by id (--all: every paused one)",
    "rm": "cancel and remove daemon tasks by id (--delete: and their files)",
    "limit": "set the daemon's speed limit, overall or for one task",
    "seturl": "replace the URL of a paused or failed task, keeping its bytes if the file is the same",
    "stop": "make the daemon save its session and exit",
    "attach": "open the dashboard on the running daemon",
}
"""One line per command, for ``fetchtop --help``."""


def build_parser(command: str | None) -> Parser:
    """The parser for one subcommand (None: the dashboard)."""
    if command == "get":
        parser = Parser(
            prog=f"{PROG} get",
            description="Download URLs and exit: 0 if all completed, 1 if any failed, 2 on bad usage.",
        )
        add_download_options(parser)
        return parser
    width = max(len(name) for name in SUMMARIES)
    commands = "\n".join(f"  {name:<{width}}  {summary}" for name, summary in SUMMARIES.items())
    parser = Parser(
        prog=PROG,
        usage=f"{PROG} [COMMAND] [OPTIONS] [URL ...]",
        description="A download manager and monitor for the terminal.\n"
        "With no command, opens the dashboard with the given URLs queued: on the engine already\n"
        "running on the state directory (a daemon, another dashboard), else on its own.\n\n"
        f"commands:\n{commands}\n\n'{PROG} COMMAND --help' describes one command's options.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_download_options(parser)
    parser.add_argument(
        "--state-dir", metavar="DIR", help="the state directory, one engine each (default: the user's)"
    )
    return parser


@contextlib.contextmanager
def _loading() -> Iterator[None]:
    """Import a command's modules with the garbage collector off, then freeze what they made.

    The imports (aiohttp, the engine, Rich or Textual) build tens of thousands of objects that live as
    long as the process and leave next to no garbage, yet the collections they set off scan them over
    and over: about a tenth of ``fetchtop get``'s start-up. Frozen, they are not scanned again by any
    later collection. Meant for :func:`main`, which runs once per process: objects its caller made
    before are frozen too (kept for good, never collected).
    """
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        gc.freeze()
        if enabled:
            gc.enable()


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``fetchtop`` command; returns the exit status."""
    args_list = list(sys.argv[1:] if argv is None else argv)
    known = COMMANDS + DAEMON_COMMANDS
    command = args_list[0] if args_list and args_list[0] in known else None
    rest = args_list[1:] if command else args_list
    try:
        if command is not None and command in DAEMON_COMMANDS:
            with _loading():
                from tui.daemon_cli import run_daemon_command

            return run_daemon_command(command, rest)
        if command == "demo":
            with _loading():
                from tui.demo import run_demo

            return run_demo(rest)
        parser = build_parser(command)
        args = parse_download_args(parser, rest)
        if command == "get":
            with _loading():
                from tui.get import run_get

            return run_get(download_request(args, require_urls=True))
        for word in args.urls[:1]:
            # A bare word where a URL should be is a mistyped command, not a download.
            if "://" not in word and word.isalpha() and word.islower():
                names = ", ".join(known)
                raise UsageError(f"unknown command {word!r} (commands: {names}; or give URLs)")
        request = download_request(args, require_urls=False)
        refuse_host_sections(request, "the dashboard")
        with _loading():
            from tui.app import run_dashboard

        return run_dashboard(
            request.urls,
            request.options,
            request.config,
            metrics_addr=request.metrics_addr,
            metrics_port=request.metrics_port,
            state_dir=args.state_dir,
        )
    except UsageError as exc:
        print(f"{PROG}: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
