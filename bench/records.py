"""The measurements of one run, as stored in the raw JSON and summarised in the table."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

MiB = 1024 * 1024
GiB = 1024 * MiB


@dataclass
class RunRecord:
    """One run of one tool in one scenario."""

    scenario: int
    """Scenario number (1..12)."""
    tool: str
    """Tool key (fetchtop, curl, wget, aria2c, axel)."""
    round: int
    """Round number, counting the warm-up rounds from 0."""
    warmup: bool
    """Warm-up runs are shown in the raw data but not in the medians."""
    run_id: str
    """Tag in the URLs, to find this run's requests in nginx's log."""
    ok: bool = False
    """Exit status 0 and every output's SHA-256 right (scenario 6: the dashboard ran the whole window)."""
    error: str = ""
    """Why the run failed, one line."""
    wall: float = 0.0
    """Wall seconds (scenario 6: the measurement window)."""
    cpu_user: float = 0.0
    """User CPU seconds of the client."""
    cpu_sys: float = 0.0
    """System CPU seconds of the client."""
    maxrss_kib: int = 0
    """Peak RSS of the client in KiB."""
    payload_bytes: int = 0
    """Bytes of the files fetched (the expected outputs)."""
    file_bytes: int = 0
    """Size of one requested file (scenario 5 compares the server's bytes to it)."""
    requests: int = 0
    """Requests in nginx's access log for this run."""
    server_bytes: int = 0
    """``$bytes_sent`` summed over this run's requests."""
    tls: str = ""
    """HTTPS scenarios: the protocol and cipher nginx logged, with request counts."""
    term_bytes_per_s: float | None = None
    """Scenario 6: bytes per second the dashboard wrote to its terminal."""
    core_share: float | None = None
    """Scenario 6: CPU seconds per wall second of the dashboard process."""

    @property
    def cpu(self) -> float:
        """User plus system CPU seconds."""
        return self.cpu_user + self.cpu_sys

    @property
    def mib_per_s(self) -> float:
        """Payload throughput in MiB/s."""
        return self.payload_bytes / MiB / self.wall if self.wall > 0 else 0.0

    @property
    def cpu_per_gib(self) -> float:
        """CPU seconds per GiB of payload."""
        return self.cpu / (self.payload_bytes / GiB) if self.payload_bytes else 0.0

    @property
    def rss_mb(self) -> float:
        """Peak RSS in MB (10^6 bytes, as in the 80 MB target)."""
        return self.maxrss_kib * 1024 / 1e6

    def to_json(self) -> dict[str, Any]:
        """Plain data, with the derived values, for the raw results file."""
        data = asdict(self)
        data.update(cpu=self.cpu, mib_per_s=self.mib_per_s, cpu_per_gib=self.cpu_per_gib, rss_mb=self.rss_mb)
        return data
