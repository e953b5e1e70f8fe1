"""Scenarios 1-5 and 7 of issue 6: which tools, with which command lines, on which files."""

from __future__ import annotations

import shlex
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from bench.data import DataSet, sha256_file
from bench.measure import run_measured
from bench.records import RunRecord
from bench.server import Nginx


@dataclass(frozen=True)
class Invocation:
    """Everything a command line may refer to."""

    urls: tuple[str, ...]
    """The URLs to fetch (one, except in scenario 4)."""
    out: Path
    """The empty directory the outputs go to."""
    list_file: Path
    """A file with one URL a line (scenario 4)."""
    curl_config: Path
    """The same list as a curl config file (``url = "..."`` lines)."""
    fetchtop: str
    """Path of the fetchtop console script."""

    @property
    def url(self) -> str:
        """The first (usually only) URL."""
        return self.urls[0]

    @property
    def name(self) -> str:
        """The output path for the first URL's file."""
        return str(self.out / self.url.rsplit("/", 1)[-1])


Build = Callable[[Invocation], list[str]]


@dataclass(frozen=True)
class Tool:
    """One contender in a scenario."""

    key: str
    """Short name, also the binary needed (fetchtop, curl, wget, aria2c, axel)."""
    build: Build
    """Its command line."""


@dataclass(frozen=True)
class Scenario:
    """One row group of the table."""

    number: int
    """1..7 as in the issue."""
    title: str
    """Heading."""
    kind: str
    """nginx location: f (plain), slow (limit_rate), norange (max_ranges 0)."""
    files: Callable[[DataSet], tuple[str, ...]]
    """Data files fetched in one run."""
    tools: tuple[Tool, ...]
    """Contenders, fetchtop first."""
    reference: str
    """Tool key the ratios are computed against."""
    timeout: float
    """Seconds before a run is killed and counted as failed."""
    min_runs: int = 1
    """Measured runs at least, whatever BENCH_RUNS says (cheap, noisy scenarios)."""


def _ft(*opts: str) -> Build:
    """fetchtop get with ``opts`` on the single URL."""
    return lambda inv: [inv.fetchtop, "get", "-q", *opts, "-d", str(inv.out), inv.url]


def _curl(inv: Invocation) -> list[str]:
    return ["curl", "-sS", "-f", "-o", inv.name, inv.url]


def _wget(inv: Invocation) -> list[str]:
    return ["wget", "-q", "-P", str(inv.out), inv.url]


def _aria2c(*opts: str) -> Build:
    return lambda inv: ["aria2c", "-q", *opts, "-d", str(inv.out), inv.url]


def _axel16(inv: Invocation) -> list[str]:
    return ["axel", "-q", "-n16", "-o", inv.name, inv.url]


def _fetchtop_list(inv: Invocation) -> list[str]:
    return [inv.fetchtop, "get", "-q", "-j16", "-d", str(inv.out), "-i", str(inv.list_file)]


def _aria2c_list(inv: Invocation) -> list[str]:
    return ["aria2c", "-q", "-j16", "-d", str(inv.out), "-i", str(inv.list_file)]


def _curl_list(inv: Invocation) -> list[str]:
    # curl reads a list only as a config file; -Z with 16 at once matches the others' -j16.
    out = ["curl", "-sS", "-f", "-Z", "--parallel-max", "16", "--output-dir", str(inv.out)]
    return [*out, "--remote-name-all", "-K", str(inv.curl_config)]


def _wget_list(inv: Invocation) -> list[str]:
    return ["wget", "-q", "-P", str(inv.out), "-i", str(inv.list_file)]


_ARIA16 = ("-x16", "-s16", "-k1M")

SCENARIOS: dict[int, Scenario] = {
    1: Scenario(
        1,
        "1 GiB, unthrottled, one connection",
        "f",
        lambda d: (d.big,),
        (
            Tool("fetchtop", _ft("-x1")),
            Tool("curl", _curl),
            Tool("wget", _wget),
            Tool("aria2c", _aria2c("-x1")),
        ),
        reference="curl",
        timeout=180,
    ),
    2: Scenario(
        2,
        "1 GiB, unthrottled, 16 connections",
        "f",
        lambda d: (d.big,),
        (Tool("fetchtop", _ft("-x16")), Tool("aria2c", _aria2c(*_ARIA16)), Tool("axel", _axel16)),
        reference="axel",
        timeout=180,
    ),
    3: Scenario(
        3,
        "128 MiB, nginx limit_rate 4 MiB/s per connection",
        "slow",
        lambda d: (d.mid,),
        (
            Tool("fetchtop", _ft("-x16")),
            Tool("aria2c", _aria2c(*_ARIA16)),
            Tool("axel", _axel16),
            Tool("curl", _curl),
        ),
        reference="aria2c",
        timeout=240,
    ),
    4: Scenario(
        4,
        "300 files of 256 KiB from one list",
        "f",
        lambda d: d.small,
        (
            Tool("fetchtop", _fetchtop_list),
            Tool("aria2c", _aria2c_list),
            Tool("curl", _curl_list),
            Tool("wget", _wget_list),
        ),
        reference="aria2c",
        timeout=180,
    ),
    5: Scenario(
        5,
        "128 MiB from a server that ignores Range (max_ranges 0), 16 connections asked",
        "norange",
        lambda d: (d.mid,),
        (
            Tool("fetchtop", _ft("-x16")),
            Tool("aria2c", _aria2c(*_ARIA16)),
            Tool("axel", _axel16),
            Tool("curl", _curl),
        ),
        reference="aria2c",
        timeout=180,
    ),
    7: Scenario(
        7,
        "Start-up: one 256 KiB file, whole process",
        "f",
        lambda d: (d.one,),
        (Tool("fetchtop", _ft()), Tool("curl", _curl), Tool("aria2c", _aria2c())),
        reference="curl",
        timeout=60,
        min_runs=5,
    ),
}
"""Every scenario run by the generic runner (6 is the dashboard, see bench.dashboard)."""


def command_line(scenario: Scenario, tool: Tool) -> str:
    """The tool's command line with placeholders, for the report."""
    inv = Invocation(
        urls=("URL",) * (2 if scenario.number == 4 else 1),
        out=Path("DIR"),
        list_file=Path("LIST"),
        curl_config=Path("CURLCONFIG"),
        fetchtop="fetchtop",
    )
    return shlex.join(tool.build(inv)).replace("DIR/URL", "DIR/FILE")


@dataclass(frozen=True)
class Context:
    """What every run needs from the harness."""

    server: Nginx
    """The running nginx."""
    data: DataSet
    """The files and their digests."""
    work: Path
    """Scratch directory for outputs (wiped per run)."""
    logs: Path
    """Directory for each run's stdout/stderr."""
    env: Callable[[Path], dict[str, str]]
    """Client environment for a given scratch HOME."""
    fetchtop: str
    """Path of the fetchtop console script."""
    unavailable: dict[str, str]
    """Tool key -> why it cannot run (absent when it can)."""
    time_binary: str
    """GNU time, which measures the client's peak RSS."""


def run_scenario(scenario: Scenario, ctx: Context, runs: int, warmups: int) -> list[RunRecord]:
    """Run every tool of ``scenario`` ``warmups + runs`` times, round-robin, and return the records."""
    records: list[RunRecord] = []
    runs = max(runs, scenario.min_runs)
    files = scenario.files(ctx.data)
    for round_no in range(warmups + runs):
        for tool in scenario.tools:
            if tool.key in ctx.unavailable:
                continue
            record = _run_once(scenario, tool, ctx, files, round_no, warmup=round_no < warmups)
            records.append(record)
            _print(record)
    # Aborted requests are logged late; read the log once everything has settled.
    traffic = ctx.server.traffic()
    for record in records:
        seen = traffic.get(record.run_id)
        if seen is not None:
            record.requests = seen.requests
            record.server_bytes = seen.bytes_sent
    return records


def _run_once(
    scenario: Scenario, tool: Tool, ctx: Context, files: tuple[str, ...], round_no: int, *, warmup: bool
) -> RunRecord:
    """One measured (or warm-up) run, its outputs checked and then deleted."""
    run_id = f"s{scenario.number}-{tool.key}-r{round_no}"
    record = RunRecord(
        scenario=scenario.number,
        tool=tool.key,
        round=round_no,
        warmup=warmup,
        run_id=run_id,
        payload_bytes=sum(ctx.data.size(rel) for rel in files),
        file_bytes=ctx.data.size(files[0]),
    )
    scratch = ctx.work / run_id
    if scratch.exists():
        shutil.rmtree(scratch)
    out = scratch / "out"
    home = scratch / "home"
    out.mkdir(parents=True)
    home.mkdir()
    urls = tuple(ctx.server.url(scenario.kind, run_id, rel) for rel in files)
    inv = Invocation(
        urls=urls,
        out=out,
        list_file=scratch / "urls.txt",
        curl_config=scratch / "curl.conf",
        fetchtop=ctx.fetchtop,
    )
    inv.list_file.write_text("".join(f"{url}\n" for url in urls))
    inv.curl_config.write_text("".join(f'url = "{url}"\n' for url in urls))
    argv = tool.build(inv)
    log_path = ctx.logs / f"{run_id}.log"
    try:
        result = run_measured(
            argv,
            cwd=scratch,
            env=ctx.env(home),
            timeout=scenario.timeout,
            log_path=log_path,
            time_binary=ctx.time_binary,
        )
        record.wall = result.wall
        record.cpu_user = result.cpu_user
        record.cpu_sys = result.cpu_sys
        record.maxrss_kib = result.maxrss_kib
        if result.timed_out:
            record.error = f"timed out after {scenario.timeout:.0f} s"
        elif result.returncode != 0:
            record.error = f"exit status {result.returncode}: {_tail(log_path)}"
        else:
            record.error = _verify(ctx.data, files, out)
        record.ok = not record.error
        ctx.server.settle(run_id)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return record


def _verify(data: DataSet, files: tuple[str, ...], out: Path) -> str:
    """Check every expected output's SHA-256; return the first problem, or ``""``."""
    bad = 0
    first = ""
    for rel in files:
        name = rel.rsplit("/", 1)[-1]
        path = out / name
        if not path.is_file():
            problem = f"{name} missing"
        elif sha256_file(path) != data.digest(rel):
            problem = f"{name} sha256 mismatch ({path.stat().st_size} bytes, expected {data.size(rel)})"
        else:
            continue
        bad += 1
        first = first or problem
    if bad:
        return first + (f" (and {bad - 1} more)" if bad > 1 else "")
    return ""


def _tail(path: Path) -> str:
    """The last non-empty line a tool printed, shortened."""
    try:
        lines = [line.strip() for line in path.read_text(errors="replace").splitlines() if line.strip()]
    except OSError:
        return "no output"
    return lines[-1][:200] if lines else "no output"


def _print(record: RunRecord) -> None:
    """One progress line per run."""
    tag = "warm-up" if record.warmup else f"run {record.round}"
    status = "ok" if record.ok else f"FAILED: {record.error}"
    print(
        f"  s{record.scenario} {record.tool:<9} {tag:<7} {record.wall:7.2f} s {record.mib_per_s:8.1f} MiB/s "
        f"cpu {record.cpu:6.2f} s rss {record.rss_mb:6.1f} MB  {status}",
        flush=True,
    )
