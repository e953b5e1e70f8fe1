"""Where fetchtop keeps its state: every path of every command is computed here, and only here.

The state directory is, in order: the ``--state-dir`` a command was given, ``$FETCHTOP_STATE_DIR``,
or the user's platform state directory (``$XDG_STATE_HOME/fetchtop`` on Linux). It holds the
session, the daemon's history, lock, pid, info and log files. The daemon's control socket goes in
the state directory when one was chosen (``--state-dir`` or the variable), so separate state
directories make separate daemons; otherwise in the user's runtime directory.

The config file is ``$XDG_CONFIG_HOME/fetchtop/config.toml`` (``~/.config/fetchtop/config.toml``
when the variable is unset) on Linux, the platform's user config directory elsewhere.
"""

from __future__ import annotations

import errno
import os
import stat
import sys
import warnings
from dataclasses import dataclass

APP_NAME = "fetchtop"
"""The directory name under the platform's state and runtime directories."""
STATE_DIR_ENV = "FETCHTOP_STATE_DIR"
"""The environment variable that chooses the state directory."""
SOCKET_NAME = "daemon.sock"
"""File name of the control socket in its directory."""
SESSION_NAME = "session.json"
"""The engine's saved queue, in the state directory."""
HISTORY_NAME = "history.json"
"""The daemon's finished tasks, in the state directory."""
LOCK_NAME = "daemon.lock"
"""Held (flock) for the daemon's lifetime: one daemon per state directory."""
PID_NAME = "daemon.pid"
"""The running daemon's process id."""
INFO_NAME = "daemon.json"
"""Where the running daemon says how to reach it (socket, TCP and metrics addresses, pid)."""
LOG_NAME = "daemon.log"
"""Output of a detached daemon."""
CONFIG_NAME = "config.toml"
"""The config file's name in the user's config directory."""


def state_dir(explicit: str | None = None) -> str:
    """The state directory (absolute): ``explicit``, else ``$FETCHTOP_STATE_DIR``, else the platform's."""
    chosen = explicit or os.environ.get(STATE_DIR_ENV)
    if chosen:
        return os.path.abspath(chosen)
    from platformdirs import user_state_dir

    return user_state_dir(APP_NAME)


def config_file() -> str:
    """The default config file: ``$XDG_CONFIG_HOME/fetchtop/config.toml`` (``~/.config`` if unset)."""
    if sys.platform.startswith("linux"):
        # What platformdirs does on Linux, without importing it on every ``fetchtop get``.
        base = os.environ.get("XDG_CONFIG_HOME", "").strip() or os.path.expanduser("~/.config")
        return os.path.join(base, APP_NAME, CONFIG_NAME)
    from platformdirs import user_config_dir

    return os.path.join(user_config_dir(APP_NAME), CONFIG_NAME)


def runtime_dir() -> str:
    """The user's private runtime directory for the socket, or the state directory if there is none.

    On Linux that is ``$XDG_RUNTIME_DIR/fetchtop`` (private to the user, cleared at logout); the
    platformdirs fallback ``/tmp/runtime-UID`` is a predictable path in a shared directory, so
    without a real runtime directory the state directory is used instead.
    """
    if sys.platform.startswith("linux"):
        runtime = os.environ.get("XDG_RUNTIME_DIR") or f"/run/user/{os.getuid()}"
        if os.path.isabs(runtime) and os.path.isdir(runtime):
            return os.path.join(runtime, APP_NAME)
        return state_dir()
    from platformdirs import user_runtime_dir

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return user_runtime_dir(APP_NAME)


def make_private_dir(path: str) -> None:
    """Create the state directory ``path`` (mode 0700), or make sure the existing one is private.

    It holds the session (signed URLs, request headers with their credentials): one of the user's
    own with a wider mode is tightened to 0700; one owned by anyone else, or not a directory, is
    refused with an OSError whose ``strerror`` says why, in one line.
    """
    os.makedirs(path, mode=0o700, exist_ok=True)
    # The checks and the chmod go through one descriptor, so they are about the same directory.
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        info = os.fstat(fd)
        if info.st_uid != os.getuid():
            raise PermissionError(errno.EPERM, f"it belongs to another user (uid {info.st_uid})", path)
        if stat.S_IMODE(info.st_mode) != 0o700:
            os.fchmod(fd, 0o700)
    finally:
        os.close(fd)


@dataclass(frozen=True)
class Locations:
    """The paths one command uses; make it with :meth:`resolve`."""

    state_dir: str
    """Directory for the session, history, pid, lock, info and log files."""
    socket: str
    """The daemon's control socket."""

    @classmethod
    def resolve(cls, state_dir_option: str | None = None, socket_option: str | None = None) -> Locations:
        """The locations for a command's ``--state-dir`` and ``--socket`` options (None: not given)."""
        directory = state_dir(state_dir_option)
        if socket_option:
            socket = os.path.abspath(socket_option)
        elif state_dir_option or os.environ.get(STATE_DIR_ENV):
            socket = os.path.join(directory, SOCKET_NAME)
        else:
            socket = os.path.join(runtime_dir(), SOCKET_NAME)
        return cls(state_dir=directory, socket=socket)

    @property
    def session(self) -> str:
        """The saved queue (the dashboard's, or the daemon's)."""
        return os.path.join(self.state_dir, SESSION_NAME)

    @property
    def history(self) -> str:
        """The daemon's finished tasks."""
        return os.path.join(self.state_dir, HISTORY_NAME)

    @property
    def lock(self) -> str:
        """The daemon's lock file."""
        return os.path.join(self.state_dir, LOCK_NAME)

    @property
    def pid(self) -> str:
        """The daemon's pid file."""
        return os.path.join(self.state_dir, PID_NAME)

    @property
    def info(self) -> str:
        """The running daemon's addresses."""
        return os.path.join(self.state_dir, INFO_NAME)

    @property
    def log(self) -> str:
        """A detached daemon's output."""
        return os.path.join(self.state_dir, LOG_NAME)
