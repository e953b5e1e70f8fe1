"""What ``fetchtop daemon`` was asked for: :class:`DaemonConfig`, the token file and ``--listen``.

Clients read the token file too, so this module loads no server code.
"""

from __future__ import annotations

import ipaddress
import math
import os
import socket
import stat
import string
import sys
from dataclasses import dataclass, field

from engine.config import EngineConfig
from engine.locations import Locations

HISTORY_LIMIT = 1000
"""Finished tasks remembered; the oldest are forgotten first."""
SOCKET_PATH_MAX = 104 if sys.platform == "darwin" else 108
"""The kernel's limit on a Unix socket path (sun_path), terminating NUL included."""
TOKEN_MAX = 4096
"""Largest token file read, in bytes."""
TOKEN_MIN_BITS = 128
"""The least entropy a token may have, as :func:`token_bits` estimates it."""
TOKEN_MIN_DISTINCT = 8
"""A token with fewer different characters than this is taken to be made up, not random."""
_DIGITS = frozenset(string.digits)
_TOKEN_ALPHABETS = (
    _DIGITS,
    _DIGITS | frozenset("abcdef"),
    _DIGITS | frozenset("ABCDEF"),
    frozenset(string.ascii_letters + string.digits + "+/-_"),
)


class DaemonError(Exception):
    """The daemon cannot start (bad address, missing token, already running); the message is one line."""


def parse_listen(text: str) -> tuple[str, int]:
    """``(host, port)`` from ``HOST:PORT`` or ``[IPv6]:PORT``; raises DaemonError."""
    host, sep, port_text = text.rpartition(":")
    if not sep or not host or not port_text.isdigit():
        raise DaemonError(f"--listen wants HOST:PORT, got {text!r}")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    port = int(port_text)
    if port > 65535:
        raise DaemonError(f"port must be 0-65535, got {port}")
    return host, port


def is_loopback(host: str) -> bool:
    """Whether every address ``host`` names is a loopback address (resolving names)."""
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        pass
    try:
        infos = socket.getaddrinfo(host, None, proto=socket.IPPROTO_TCP)
    except OSError:
        return False
    addresses = {str(info[4][0]) for info in infos}
    return bool(addresses) and all(ipaddress.ip_address(a.split("%")[0]).is_loopback for a in addresses)


def token_bits(token: str) -> float:
    """A conservative estimate of a token's entropy in bits, as if its characters were random.

    Each character counts for the smallest usual alphabet the whole token fits in: decimal digits
    (3.3 bits), hexadecimal of one case (4), base64 or base64url (6), printable ASCII (6.5); so
    128 bits take 32 hex or 22 base64 characters (``openssl rand -hex 32`` makes 64). A token made
    of a shorter string repeated counts for that string only, and one with fewer than
    :data:`TOKEN_MIN_DISTINCT` different characters (``aaaa...``, ``abab...``) for nothing.
    """
    body = token.rstrip("=")  # base64 padding carries no entropy
    if len(set(body)) < TOKEN_MIN_DISTINCT:
        return 0.0
    # The smallest rotation that gives the token back is its period when it is a repeated string.
    period = (body + body).find(body, 1)
    chars = set(body)
    for alphabet in _TOKEN_ALPHABETS:
        if chars <= alphabet:
            return period * math.log2(len(alphabet))
    return period * math.log2(94)


def read_token(path: str) -> str:
    """The token in a file (surrounding whitespace ignored); raises DaemonError if unusable.

    Like ssh with a private key, a file that is not the user's own or that group or others may
    read or write is refused, and so is a token under :data:`TOKEN_MIN_BITS` (:func:`token_bits`).
    """
    try:
        with open(path, "rb") as f:
            info = os.fstat(f.fileno())
            raw = f.read(TOKEN_MAX + 1)
    except OSError as exc:
        raise DaemonError(f"cannot read token file {path}: {exc.strerror}") from None
    if not stat.S_ISREG(info.st_mode):
        raise DaemonError(f"token file {path} is not a regular file")
    if info.st_uid != os.getuid():
        raise DaemonError(f"token file {path} belongs to another user (uid {info.st_uid})")
    if info.st_mode & 0o077:
        mode = stat.S_IMODE(info.st_mode)
        raise DaemonError(
            f"token file {path} is accessible by group or others (mode {mode:04o}): chmod 600 it"
        )
    if len(raw) > TOKEN_MAX:
        raise DaemonError(f"token file {path} is over 4 KiB")
    try:
        token = raw.decode("ascii").strip()
    except UnicodeDecodeError:
        raise DaemonError(f"token in {path} must be printable ASCII") from None
    if len(token) < 16 or not token.isprintable() or any(c.isspace() for c in token):
        raise DaemonError(f"token in {path} must be at least 16 printable characters without spaces")
    bits = token_bits(token)
    if bits < TOKEN_MIN_BITS:
        raise DaemonError(
            f"token in {path} is too weak (about {bits:.0f} bits, {TOKEN_MIN_BITS} needed): "
            "make one with 'openssl rand -hex 32'"
        )
    return token


@dataclass(frozen=True)
class DaemonConfig:
    """Everything ``fetchtop daemon`` was asked for."""

    state_dir: str
    """Directory for the session, history, pid, lock, info and log files."""
    socket_path: str
    """Path of the control socket."""
    engine: EngineConfig = field(default_factory=EngineConfig)
    """Engine settings (``session_path`` is set to the state directory's session file)."""
    download_dir: str = "."
    """Where downloads go when a request names no directory, or a relative one."""
    listen: tuple[str, int] | None = None
    """TCP address to serve the API on too (needs ``token``)."""
    token: str | None = None
    """The bearer token TCP requests must carry."""
    metrics_addr: str = "127.0.0.1"
    """Address of the Prometheus endpoint."""
    metrics_port: int | None = None
    """Port of the Prometheus endpoint; None leaves it off."""
    urls: tuple[str, ...] = ()
    """URLs to queue at start."""
    history_limit: int = HISTORY_LIMIT
    """Finished tasks remembered."""

    @property
    def locations(self) -> Locations:
        """The daemon's files: the state directory's, and its socket."""
        return Locations(state_dir=self.state_dir, socket=self.socket_path)

    def check(self) -> None:
        """Raise DaemonError for a configuration that must not start."""
        if self.listen is not None:
            host = self.listen[0]
            if self.token is None:
                where = "a loopback address" if is_loopback(host) else f"the non-loopback address {host}"
                raise DaemonError(f"--listen on {where} requires --token-file (refusing to start)")
        if len(os.fsencode(self.socket_path)) >= SOCKET_PATH_MAX:
            raise DaemonError(f"socket path is too long for a Unix socket: {self.socket_path}")
