"""The dashboard's engine: its own, owning the state directory, or the one already running there.

One engine per state directory (see :mod:`engine.daemon.hosted`): a dashboard started while a daemon
(or another dashboard) runs on its state directory attaches to that engine; otherwise it takes the
lock and serves the control socket itself, and when it quits with downloads active it can hand them
over to a detached ``fetchtop daemon``.
"""

from __future__ import annotations

import sys
from types import TracebackType

from engine.client import EngineClient, EngineError
from engine.daemon.client import RemoteClient
from engine.daemon.config import DaemonConfig
from engine.daemon.hosted import HostedDaemon, open_engine


class DashboardEngine:
    """The client factory of ``fetchtop``: enter it for the state directory's engine, in the app's loop.

    Set :attr:`keep_running` before leaving to hand the downloads over to a detached daemon.
    """

    def __init__(self, config: DaemonConfig) -> None:
        self.config = config
        """The engine this dashboard would run, and the state directory it would own."""
        self.hosted: HostedDaemon | None = None
        """The engine this process owns, if it could take the state directory."""
        self.remote: RemoteClient | None = None
        """The client of the engine that owned the state directory already, otherwise."""
        self.keep_running = False
        """When leaving: hand the downloads over to a detached daemon instead of stopping them."""
        self.report: str | None = None
        """After leaving, what happened to the downloads, for the terminal once the dashboard is gone."""

    @property
    def owner(self) -> bool:
        """Whether this dashboard's own engine owns the state directory."""
        return self.hosted is not None

    async def __aenter__(self) -> EngineClient:
        engine = await open_engine(self.config)
        if isinstance(engine, HostedDaemon):
            self.hosted = engine
            return engine.daemon.engine
        self.remote = engine
        return engine

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self.remote is not None:
            await self.remote.close()
        if self.hosted is None:
            return
        if not self.keep_running:
            await self.hosted.close()
            return
        limit = self.hosted.daemon.engine.snapshot().speed_limit
        try:
            started = await self.hosted.hand_over(daemon_command(self.config, limit))
        except EngineError as error:
            self.report = f"could not hand the downloads over ({error}); they resume when fetchtop starts"
        else:
            self.report = f"{started}: the downloads go on in the background ('fetchtop attach' shows them)"


def daemon_command(config: DaemonConfig, speed_limit: int | None) -> list[str]:
    """The ``fetchtop daemon --detach`` that takes over ``config``'s state directory and settings.

    Engine-wide settings carry over (download directory, jobs, connections, the current speed
    limit, metrics); per-task options (headers, proxy, user agent) are saved in the session with
    each task, and stay off the command line, where any local user could read them.
    """
    engine = config.engine
    defaults = engine.defaults
    argv = [sys.executable, "-m", "tui.cli", "daemon", "--detach"]
    argv += ["--state-dir", config.state_dir, "--socket", config.socket_path, "-d", config.download_dir]
    argv += ["-j", str(engine.jobs), "--per-host", str(engine.per_host), "-x", str(defaults.connections)]
    argv += ["--retries", str(defaults.retries), "--timeout", repr(defaults.timeout)]
    argv += ["--connect-timeout", repr(defaults.connect_timeout)]
    if defaults.lowest_speed is not None:
        argv += ["--lowest-speed", str(defaults.lowest_speed)]
    if speed_limit is not None:
        argv += ["--limit-rate", str(speed_limit)]
    if defaults.insecure:
        argv.append("--insecure")
    if not defaults.check_validators:
        argv.append("--no-if-range")
    if config.metrics_port is not None:
        argv += ["--metrics-port", str(config.metrics_port), "--metrics-addr", config.metrics_addr]
    return argv
