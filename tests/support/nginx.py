"""A real nginx on 127.0.0.1 for the tests, with a JSON access log to check what it was asked."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from tests.support.net import free_port

NGINX = shutil.which("nginx") or "/usr/sbin/nginx"
"""The nginx binary."""


@dataclass(frozen=True)
class AccessEntry:
    """One line of the test nginx's access log."""

    request: str
    """The request line."""
    status: int
    """Status sent."""
    range: str
    """The Range header as received ('' when absent)."""
    if_range: str
    """The If-Range header as received ('' when absent)."""
    sent: int
    """Body bytes sent."""
    connection: int
    """nginx's connection serial number."""


_LOG_FORMAT = (
    'log_format t escape=json \'{"request":"$request","status":$status,"range":"$http_range",'
    '"if_range":"$http_if_range","sent":$body_bytes_sent,"connection":$connection}\';'
)


class Nginx:
    """A real nginx on 127.0.0.1 serving ``root`` with a config written into ``base``.

    Runs in the foreground (``daemon off``) in its own process group, so :meth:`stop` can always
    take its worker down with it.
    """

    def __init__(self, base: Path, server_extra: str = "") -> None:
        self.base = base
        """Directory holding the config, logs, pid file and temp dirs."""
        self.root = base / "www"
        """Document root: put files here."""
        self.server_extra = server_extra
        """Directives added to the server block (``max_ranges 0;``, ``limit_rate 512k;``...)."""
        self.port = 0
        """The port listened on, once started."""
        self._proc: subprocess.Popen[bytes] | None = None
        self.root.mkdir(parents=True, exist_ok=True)

    @property
    def access_log(self) -> Path:
        """The access log, one JSON object a line."""
        return self.base / "access.log"

    def url(self, name: str) -> str:
        """The URL of a file under the root."""
        return f"http://127.0.0.1:{self.port}/{name}"

    def _write_config(self) -> Path:
        b = self.base
        # Workers of a root master run as 'nobody' by default and could not read the test's tmp dir.
        user = "user root;" if os.geteuid() == 0 else ""
        conf = f"""
daemon off;
master_process on;
worker_processes 1;
{user}
pid {b}/nginx.pid;
error_log {b}/error.log warn;
events {{ worker_connections 256; }}
http {{
    {_LOG_FORMAT}
    access_log {b}/access.log t;
    client_body_temp_path {b}/tmp_client_body;
    proxy_temp_path {b}/tmp_proxy;
    fastcgi_temp_path {b}/tmp_fastcgi;
    uwsgi_temp_path {b}/tmp_uwsgi;
    scgi_temp_path {b}/tmp_scgi;
    default_type application/octet-stream;
    sendfile on;
    keepalive_timeout 10s;
    server {{
        listen 127.0.0.1:{self.port};
        root {self.root};
        {self.server_extra}
    }}
}}
"""
        path = b / "nginx.conf"
        path.write_text(conf)
        return path

    def start(self) -> Nginx:
        """Start nginx and wait until it accepts connections (a few tries if a port was taken)."""
        last_error = ""
        for _ in range(5):
            self.port = free_port()
            conf = self._write_config()
            errlog = self.base / "error.log"
            self._proc = subprocess.Popen(
                [NGINX, "-p", str(self.base), "-c", str(conf), "-e", str(errlog)],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
                start_new_session=True,
            )
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline:
                if self._proc.poll() is not None:
                    break
                with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", self.port), 0.2):
                    return self
                time.sleep(0.02)
            stderr = self._proc.stderr.read().decode(errors="replace") if self._proc.stderr else ""
            last_error = stderr + (errlog.read_text() if errlog.exists() else "")
            self.stop()
        raise AssertionError(f"nginx did not start:\n{last_error}")

    def stop(self) -> None:
        """Stop nginx (fast shutdown, then SIGKILL of its process group); safe to call twice."""
        proc, self._proc = self._proc, None
        if proc is None:
            return
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                pass
        # The worker is in the master's process group (its own session): end any straggler.
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=5)
        if proc.stderr is not None:
            proc.stderr.close()

    def entries(self) -> list[AccessEntry]:
        """Every access-log line so far, parsed."""
        if not self.access_log.exists():
            return []
        out = []
        for line in self.access_log.read_text().splitlines():
            if line.strip():
                d = json.loads(line)
                out.append(
                    AccessEntry(
                        request=d["request"],
                        status=int(d["status"]),
                        range=d["range"],
                        if_range=d["if_range"],
                        sent=int(d["sent"]),
                        connection=int(d["connection"]),
                    )
                )
        return out

    def settled_entries(self, expect_sent: int, timeout: float = 5.0) -> list[AccessEntry]:
        """The access log once it accounts for at least ``expect_sent`` body bytes (nginx logs a
        request when its response ends, which may trail the client's exit a little)."""
        deadline = time.monotonic() + timeout
        while True:
            entries = self.entries()
            if sum(e.sent for e in entries) >= expect_sent or time.monotonic() > deadline:
                time.sleep(0.1)  # a cut-short response may be logged just after the others
                return self.entries()
            time.sleep(0.05)
