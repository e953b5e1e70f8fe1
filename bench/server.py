"""A private nginx on 127.0.0.1: generated configuration, temporary paths, and its access log parsed.

With certificates it also listens for HTTPS on a second port (the TLS rows, scenarios 9 and 11)."""

from __future__ import annotations

import os
import shlex
import shutil
import signal
import socket
import subprocess
import time
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType

from bench.tls import Certificates

SLOW_RATE = "4m"
"""nginx ``limit_rate`` for ``/slow/`` (scenario 3): 4 MiB/s per connection."""
DASH_RATE = "128k"
"""nginx ``limit_rate`` for ``/dash/`` (scenario 6): 128 KiB/s per connection, 6.25 MiB/s for 50."""

_LOG_FORMAT = (
    '$msec $status $bytes_sent $body_bytes_sent $request_time $connection "$request" "$http_range" '
    "$ssl_protocol $ssl_cipher"
)
# Plain HTTP and HTTPS serve the same locations; only the listener differs.
_LOCATIONS = """\
        # /KIND/RUN-ID/PATH: the run id only tags the access log, so each run's requests can be counted.
        location ~ ^/f/[^/]+/(.+)$ {{ alias {data}/$1; }}
        location ~ ^/slow/[^/]+/(.+)$ {{ alias {data}/$1; limit_rate {slow_rate}; }}
        location ~ ^/norange/[^/]+/(.+)$ {{ alias {data}/$1; max_ranges 0; }}
        location ~ ^/dash/[^/]+/(.+)$ {{ alias {data}/$1; limit_rate {dash_rate}; }}
        location / {{ return 404; }}
"""
# nginx's defaults otherwise (TLS 1.2 and 1.3, the client's cipher preference, no kTLS, so nginx
# encrypts in user space as most deployments do); the log records what each client negotiated.
_TLS_SERVER = """\
    server {{
        listen 127.0.0.1:{tls_port} ssl;
        ssl_certificate {cert};
        ssl_certificate_key {key};
        ssl_protocols TLSv1.2 TLSv1.3;
{locations}    }}
"""
_CONF = """\
daemon off;
master_process on;
worker_processes 1;
{user}pid {run}/nginx.pid;
error_log {run}/error.log warn;
events {{ worker_connections 4096; }}
http {{
    log_format bench '{log_format}';
    access_log {run}/access.log bench;
    client_body_temp_path {run}/tmp/body;
    proxy_temp_path {run}/tmp/proxy;
    fastcgi_temp_path {run}/tmp/fastcgi;
    uwsgi_temp_path {run}/tmp/uwsgi;
    scgi_temp_path {run}/tmp/scgi;
    sendfile on;
    tcp_nopush on;
    tcp_nodelay on;
    keepalive_timeout 65;
    keepalive_requests 100000;
    server_tokens off;
    default_type application/octet-stream;
    server {{
        listen 127.0.0.1:{port};
{locations}    }}
{tls_server}}}
"""


class ServerError(RuntimeError):
    """nginx would not start."""


@dataclass(frozen=True)
class LogEntry:
    """One line of the access log."""

    run_id: str
    """The run the request belongs to (second path segment), or ``""``."""
    status: int
    """HTTP status sent."""
    bytes_sent: int
    """``$bytes_sent``: everything written to the socket, headers included."""
    body_bytes_sent: int
    """``$body_bytes_sent``: body bytes only."""
    request: str
    """The request line."""
    range: str
    """The Range header, ``-`` when absent."""
    tls: str = "-"
    """``PROTOCOL CIPHER`` negotiated over HTTPS, ``-`` for plain HTTP."""


@dataclass
class RunTraffic:
    """What the server saw of one run."""

    requests: int = 0
    """Requests logged."""
    bytes_sent: int = 0
    """Total ``$bytes_sent``."""
    statuses: dict[int, int] = field(default_factory=dict)
    """Count of responses per status."""
    tls: dict[str, int] = field(default_factory=dict)
    """Count of requests per negotiated ``PROTOCOL CIPHER`` (HTTPS only)."""


class Nginx:
    """nginx serving ``data`` on a free loopback port, from its own prefix under ``run_dir``."""

    def __init__(
        self, binary: str, run_dir: Path, data: Path, certificates: Certificates | None = None
    ) -> None:
        """Prepare (but do not start) a server; ``run_dir`` is wiped and recreated on start. With
        ``certificates`` it serves HTTPS too, on ``tls_port``."""
        self.binary = binary
        self.run_dir = run_dir
        self.data = data
        self.certificates = certificates
        self.port = 0
        self.tls_port = 0
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def access_log(self) -> Path:
        """The access log, one line per request."""
        return self.run_dir / "access.log"

    def url(self, kind: str, run_id: str, rel: str, *, tls: bool = False) -> str:
        """The URL of data file ``rel`` under location ``kind`` (f, slow, norange, dash) tagged ``run_id``,
        over HTTPS when ``tls``."""
        if tls:
            if not self.tls_port:
                raise ServerError("HTTPS asked of an nginx started without certificates")
            return f"https://127.0.0.1:{self.tls_port}/{kind}/{run_id}/{rel}"
        return f"http://127.0.0.1:{self.port}/{kind}/{run_id}/{rel}"

    def start(self) -> None:
        """Start nginx on a free port and wait until it accepts connections."""
        if self.run_dir.exists():
            shutil.rmtree(self.run_dir)
        for sub in ("tmp/body", "tmp/proxy", "tmp/fastcgi", "tmp/uwsgi", "tmp/scgi"):
            (self.run_dir / sub).mkdir(parents=True)
        last_error = ""
        for _ in range(5):
            self.port = _free_port()
            self.tls_port = _free_port(avoid=self.port) if self.certificates else 0
            locations = _LOCATIONS.format(data=self.data.resolve(), slow_rate=SLOW_RATE, dash_rate=DASH_RATE)
            tls_server = ""
            if self.certificates is not None:
                tls_server = _TLS_SERVER.format(
                    tls_port=self.tls_port,
                    cert=self.certificates.cert.resolve(),
                    key=self.certificates.key.resolve(),
                    locations=locations,
                )
            conf = self.run_dir / "nginx.conf"
            conf.write_text(
                _CONF.format(
                    user="user root;\n" if os.geteuid() == 0 else "",
                    run=self.run_dir,
                    port=self.port,
                    log_format=_LOG_FORMAT,
                    locations=locations,
                    tls_server=tls_server,
                )
            )
            argv = [
                self.binary,
                "-p",
                str(self.run_dir),
                "-e",
                str(self.run_dir / "error.log"),
                "-c",
                str(conf),
            ]
            stderr_path = self.run_dir / "stderr.log"
            with stderr_path.open("ab") as stderr:
                # A session of its own: a Ctrl-C in the terminal reaches only the harness, which stops
                # nginx itself in order.
                self._proc = subprocess.Popen(
                    argv, stdin=subprocess.DEVNULL, stdout=stderr, stderr=stderr, start_new_session=True
                )
            if self._wait_ready(5.0):
                return
            last_error = self._tail_errors()
            self.stop()
            if "Address already in use" not in last_error:
                break
        raise ServerError(f"nginx did not start ({shlex.join(argv)}): {last_error}")

    def stop(self) -> None:
        """Stop nginx (fast shutdown, then SIGKILL after 5 s); safe to call more than once."""
        proc, self._proc = self._proc, None
        if proc is None or proc.poll() is not None:
            return
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=5)

    def __enter__(self) -> Nginx:
        """Start the server."""
        self.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        """Stop the server, whatever happened."""
        self.stop()

    def traffic(self) -> dict[str, RunTraffic]:
        """Requests and bytes sent per run id, from the whole access log so far."""
        totals: dict[str, RunTraffic] = defaultdict(RunTraffic)
        for entry in self.entries():
            traffic = totals[entry.run_id]
            traffic.requests += 1
            traffic.bytes_sent += entry.bytes_sent
            traffic.statuses[entry.status] = traffic.statuses.get(entry.status, 0) + 1
            if entry.tls != "-":
                traffic.tls[entry.tls] = traffic.tls.get(entry.tls, 0) + 1
        return dict(totals)

    def entries(self) -> list[LogEntry]:
        """Every access log line so far, parsed."""
        try:
            text = self.access_log.read_text(errors="replace")
        except FileNotFoundError:
            return []
        return [entry for line in text.splitlines() if (entry := parse_log_line(line)) is not None]

    def settle(self, run_id: str, quiet: float = 0.25, limit: float = 3.0) -> None:
        """Wait until no new log line for ``run_id`` appeared for ``quiet`` s (nginx logs aborted
        requests only when it next touches the socket), at most ``limit`` s."""
        deadline = time.monotonic() + limit
        count = self._count(run_id)
        while time.monotonic() < deadline:
            time.sleep(quiet)
            now = self._count(run_id)
            if now == count:
                return
            count = now

    def _count(self, run_id: str) -> int:
        """Log lines for ``run_id`` so far."""
        return sum(1 for entry in self.entries() if entry.run_id == run_id)

    def _wait_ready(self, timeout: float) -> bool:
        """Poll the ports until nginx accepts connections on each, or exits."""
        deadline = time.monotonic() + timeout
        waiting = [port for port in (self.port, self.tls_port) if port]
        while waiting and time.monotonic() < deadline:
            if self._proc is None or self._proc.poll() is not None:
                return False
            try:
                with socket.create_connection(("127.0.0.1", waiting[0]), timeout=0.5):
                    waiting.pop(0)
            except OSError:
                time.sleep(0.05)
        return not waiting

    def _tail_errors(self) -> str:
        """The last lines nginx wrote to its error log or stderr."""
        lines: list[str] = []
        for name in ("stderr.log", "error.log"):
            path = self.run_dir / name
            if path.exists():
                lines += path.read_text(errors="replace").splitlines()[-3:]
        return " | ".join(lines) or "no error output"


def parse_log_line(line: str) -> LogEntry | None:
    """Parse one line written with the bench log format; None for anything else."""
    try:
        head, request, _, range_header, tail = line.split('"', 4)
        _msec, status, bytes_sent, body_bytes, _time, _conn = head.split()
    except ValueError:
        return None
    tls = " ".join(word for word in tail.split() if word != "-") or "-"
    parts = request.split()
    path = parts[1] if len(parts) >= 2 else ""
    segments = path.split("/")
    run_id = segments[2] if len(segments) > 3 else ""
    return LogEntry(
        run_id=run_id,
        status=int(status),
        bytes_sent=int(bytes_sent),
        body_bytes_sent=int(body_bytes),
        request=request,
        range=range_header,
        tls=tls,
    )


def _free_port(avoid: int = 0) -> int:
    """A port the kernel reports free on 127.0.0.1, other than ``avoid`` (nginx binds it a moment
    later; start() retries)."""
    port = avoid
    for _ in range(10):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            sock.bind(("127.0.0.1", 0))
            port = int(sock.getsockname()[1])
        if port != avoid:
            break
    return port
