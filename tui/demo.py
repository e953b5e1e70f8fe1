"""``fetchtop demo``: the dashboard downloading the built-in fault server's files, with no internet.

The demo server (:mod:`faultserver`) runs on 127.0.0.1 inside the dashboard's own event loop and
serves synthetic files of several sizes, throttled per connection, plus one without Range support,
one 404, one that drops connections and one that is busy at first, so retries and failures show.
``fetchtop demo --serve-only`` serves the same files without the dashboard, for trying other clients.
"""

from __future__ import annotations

import argparse
import tempfile
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager

from engine.client import EngineClient
from engine.config import EngineConfig
from engine.engine import Engine
from engine.models import TaskOptions
from faultserver.content import KiB, MiB
from faultserver.runner import serve_until_stopped
from faultserver.server import FaultServer
from faultserver.specs import FileSpec

DEMO_JOBS = 4
"""Downloads at once in the demo: fewer than the files, so the queue shows too."""
DEMO_CONNECTIONS = 4
"""Connections per download in the demo."""


def demo_files() -> list[FileSpec]:
    """The files ``fetchtop demo`` downloads: several sizes, throttled per connection so segments and
    charts are worth watching, one without Range support, one 404, one that drops connections, one
    that is busy at first."""
    return [
        FileSpec("small-8MiB.bin", 8 * MiB, rate=384 * KiB, description="small, throttled"),
        FileSpec("medium-64MiB.bin", 64 * MiB, rate=512 * KiB, description="medium, throttled"),
        FileSpec("large-256MiB.iso", 256 * MiB, rate=768 * KiB, description="large, throttled"),
        FileSpec(
            "no-ranges-24MiB.tar",
            24 * MiB,
            ranges=False,
            rate=1 * MiB,
            description="server ignores Range: one connection",
        ),
        FileSpec(
            "flaky-48MiB.zip",
            48 * MiB,
            rate=512 * KiB,
            reset_after=3 * MiB,
            reset_times=6,
            description="drops connections (6 resets), then recovers",
        ),
        FileSpec(
            "busy-32MiB.img",
            32 * MiB,
            rate=512 * KiB,
            fail_status=503,
            fail_times=2,
            retry_after="2",
            max_connections=4,
            description="503 with Retry-After twice, then at most 4 connections",
        ),
        FileSpec("missing.bin", status=404, description="answers 404"),
    ]


def demo_options(directory: str) -> TaskOptions:
    """Options of every demo download: a few connections, short retries so failures show quickly."""
    return TaskOptions(directory=directory, connections=DEMO_CONNECTIONS, retries=8, timeout=10.0)


@asynccontextmanager
async def demo_engine(directory: str, port: int = 0, jobs: int = DEMO_JOBS) -> AsyncIterator[EngineClient]:
    """The demo server and an Engine with every demo file queued; both close on exit."""
    options = demo_options(directory)
    async with FaultServer("127.0.0.1", port) as server:
        server.add_files(demo_files())
        async with Engine(EngineConfig(jobs=jobs, defaults=options)) as engine:
            for spec in demo_files():
                await engine.add(server.url(spec.name), options)
            yield engine


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    """``fetchtop demo [--dir DIR] [--port N] [-j N]``."""
    parser = argparse.ArgumentParser(
        allow_abbrev=False,
        prog="fetchtop demo",
        description="Open the dashboard on a built-in local server's test files (no internet needed).",
    )
    parser.add_argument("--dir", help="download into DIR and keep the files (default: a temporary directory)")
    parser.add_argument("--port", type=int, default=0, help="port of the demo server (default: any free one)")
    parser.add_argument(
        "-j", "--jobs", type=int, default=DEMO_JOBS, help=f"downloads at once (default {DEMO_JOBS})"
    )
    parser.add_argument(
        "--serve-only",
        action="store_true",
        help="only serve the demo files on 127.0.0.1 (printing their URLs) until Ctrl-C; no dashboard",
    )
    return parser.parse_args(list(argv))


def run_demo(argv: list[str]) -> int:
    """Run the demo dashboard (or only its server); returns the exit code."""
    args = parse_args(argv)
    if args.serve_only:
        return serve_until_stopped("127.0.0.1", args.port, demo_files())
    from tui.app import FetchtopApp  # here, not at the top: --serve-only stays headless and quick

    if args.jobs < 1:
        print("fetchtop demo: -j must be at least 1")
        return 2

    def run(directory: str) -> int:
        app = FetchtopApp(
            client_factory=lambda: demo_engine(directory, args.port, args.jobs),
            options=demo_options(directory),
            quit_note="The demo files are deleted on exit." if args.dir is None else "Partial files stay.",
        )
        app.run()
        return app.return_code or 0

    if args.dir is not None:
        return run(args.dir)
    with tempfile.TemporaryDirectory(prefix="fetchtop-demo-") as directory:
        return run(directory)
