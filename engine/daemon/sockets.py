"""The daemon's control socket path: telling a stale socket (left by kill -9) from anything else."""

from __future__ import annotations

import contextlib
import errno
import os
import socket
import stat

from engine.daemon.config import DaemonError


def remove_stale_socket(path: str) -> None:
    """Delete a socket file no daemon answers on (left by kill -9); refuse if one does.

    Only a socket that refuses connections is stale: anything else at the path (a regular file, a
    directory, a symlink) is someone's data or a trap, and is left alone with a DaemonError.
    """
    try:
        before = os.lstat(path)
    except FileNotFoundError:
        return
    if not stat.S_ISSOCK(before.st_mode):
        raise DaemonError(f"{path} exists and is not a socket (refusing to replace it)")
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        probe.settimeout(1.0)
        probe.connect(path)
    except FileNotFoundError:
        return
    except OSError as exc:
        if exc.errno != errno.ECONNREFUSED:
            raise DaemonError(f"cannot use socket {path}: {exc.strerror}") from None
    else:
        raise DaemonError(f"another daemon is listening on {path}")
    finally:
        probe.close()
    # Unlinking goes by name: make sure the name still holds the socket that was probed.
    try:
        now = os.lstat(path)
    except FileNotFoundError:
        return
    if (now.st_dev, now.st_ino) != (before.st_dev, before.st_ino) or not stat.S_ISSOCK(now.st_mode):
        raise DaemonError(f"{path} changed while it was checked (refusing to replace it)")
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)
