"""The scenarios run by the generic runner: which tools, with which command lines, on which files.

1-5 and 7 are issue 6's, downloading to the disk; 8-12 are issue 12's, downloading into a tmpfs so
that what remains is what the code costs (plain HTTP and TLS, one and 16 connections, start-up);
13 is the cost of checkpoints on the disk (the same download with them on and off). In
every round each tool runs once, in the order listed (fetchtop first), so fetchtop's run and its
reference's run of one round form a pair measured under the same load."""

from __future__ import annotations

import shlex
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from bench.data import DataSet, GiB, MiB, sha256_file
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
    cacert: Path = Path("CA")
    """The benchmark's CA certificate, for the TLS scenarios."""

    @property
    def url(self) -> str:
        """The first (usually only) URL."""
        return self.urls[0]

    @property
    def name(self) -> str:
        """The output path for the first URL's file."""
        return str(self.out / self.url.rsplit("/", 1)[-1])


Build = Callable[[Invocation], list[str]]
Env = Callable[[Invocation], dict[str, str]]


@dataclass(frozen=True)
class Tool:
    """One contender in a scenario."""

    key: str
    """Short name, also the binary needed (fetchtop, curl, wget, aria2c, axel)."""
    build: Build
    """Its command line."""
    env: Env | None = None
    """Variables added to the clean client environment (fetchtop's CA, which has no option)."""
    needs: str = ""
    """The binary needed, when the key is not it (two fetchtop variants in one scenario)."""

    @property
    def binary(self) -> str:
        """The tool whose absence keeps this one from running."""
        return self.needs or self.key


@dataclass(frozen=True)
class Scenario:
    """One row group of the table."""

    number: int
    """1..7 as in the issue."""
    title: str
    """Heading."""
    kind: str
    """nginx location: f (unthrottled), slow (limit_rate), norange (max_ranges 0)."""
    files: Callable[[DataSet], tuple[str, ...]]
    """Data files fetched in one run."""
    tools: tuple[Tool, ...]
    """Contenders, fetchtop first."""
    reference: str
    """Tool key the ratios are computed against."""
    timeout: float
    """Seconds before a run is killed and counted as failed."""
    runs: int = 3
    """Measured runs per tool unless ``--runs``/``BENCH_RUNS`` says otherwise."""
    target: str = "disk"
    """Where the outputs go: ``disk`` (bench/.work) or ``tmpfs``."""
    tls: bool = False
    """Whether the URLs are HTTPS (nginx with the benchmark's certificate)."""
    compare: str = "ratio"
    """How fetchtop is set against the reference: ``ratio`` of times, or ``difference`` (start-up)."""


def _ft(*opts: str) -> Build:
    """fetchtop get with ``opts`` on the single URL."""
    return lambda inv: [inv.fetchtop, "get", "-q", *opts, "-d", str(inv.out), inv.url]


def _trust_ca(inv: Invocation) -> dict[str, str]:
    """fetchtop has no CA option (only --insecure): aiohttp's default SSL context loads OpenSSL's
    default verify paths, and ``SSL_CERT_FILE`` replaces the default CA file."""
    return {"SSL_CERT_FILE": str(inv.cacert)}


def _checkpoints_off(inv: Invocation) -> dict[str, str]:
    """The benchmark's switch: a checkpoint interval so long that none comes during the run (the
    final fsync and rename stay, so what differs is the checkpoints alone)."""
    return {"FETCHTOP_CHECKPOINT_INTERVAL": "off"}


def _writeback_off(inv: Invocation) -> dict[str, str]:
    """Checkpoints on, but no early writeback between them: what ``sync_file_range`` buys."""
    return {"FETCHTOP_EARLY_WRITEBACK": "off"}


def _curl(inv: Invocation) -> list[str]:
    return ["curl", "-sS", "-f", "-o", inv.name, inv.url]


def _curl_tls(inv: Invocation) -> list[str]:
    return ["curl", "-sS", "-f", "--cacert", str(inv.cacert), "-o", inv.name, inv.url]


def _wget(inv: Invocation) -> list[str]:
    return ["wget", "-q", "-P", str(inv.out), inv.url]


def _aria2c(*opts: str) -> Build:
    return lambda inv: ["aria2c", "-q", *opts, "-d", str(inv.out), inv.url]


def _aria2c_tls(*opts: str) -> Build:
    return lambda inv: ["aria2c", "-q", *opts, f"--ca-certificate={inv.cacert}", "-d", str(inv.out), inv.url]


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
        runs=5,
        compare="difference",
    ),
    8: Scenario(
        8,
        "Plain HTTP, one connection, 1 GiB into tmpfs",
        "f",
        lambda d: (d.big,),
        (Tool("fetchtop", _ft("-x1")), Tool("curl", _curl)),
        reference="curl",
        timeout=180,
        runs=5,
        target="tmpfs",
    ),
    9: Scenario(
        9,
        "TLS, one connection, 1 GiB into tmpfs",
        "f",
        lambda d: (d.big,),
        (Tool("fetchtop", _ft("-x1"), env=_trust_ca), Tool("curl", _curl_tls)),
        reference="curl",
        timeout=180,
        runs=5,
        target="tmpfs",
        tls=True,
    ),
    10: Scenario(
        10,
        "Plain HTTP, 16 connections, 1 GiB into tmpfs",
        "f",
        lambda d: (d.big,),
        (Tool("fetchtop", _ft("-x16")), Tool("axel", _axel16)),
        reference="axel",
        timeout=180,
        runs=5,
        target="tmpfs",
    ),
    11: Scenario(
        11,
        "TLS, 16 connections, 1 GiB into tmpfs",
        "f",
        lambda d: (d.big,),
        (Tool("fetchtop", _ft("-x16"), env=_trust_ca), Tool("aria2c", _aria2c_tls(*_ARIA16))),
        reference="aria2c",
        timeout=180,
        runs=5,
        target="tmpfs",
        tls=True,
    ),
    12: Scenario(
        12,
        "Start-up: one 256 KiB file into tmpfs, whole process",
        "f",
        lambda d: (d.one,),
        (Tool("fetchtop", _ft()), Tool("curl", _curl)),
        reference="curl",
        timeout=60,
        runs=9,
        target="tmpfs",
        compare="difference",
    ),
    13: Scenario(
        13,
        "Checkpoints: 1 GiB, 16 connections, to the disk: on, off, on without early writeback",
        "f",
        lambda d: (d.big,),
        (
            Tool("fetchtop", _ft("-x16")),
            Tool("fetchtop-off", _ft("-x16"), env=_checkpoints_off, needs="fetchtop"),
            Tool("fetchtop-nowb", _ft("-x16"), env=_writeback_off, needs="fetchtop"),
        ),
        reference="fetchtop-off",
        timeout=180,
    ),
}
"""Every scenario run by the generic runner (6 is the dashboard, see bench.dashboard)."""


def title(scenario: Scenario, data: DataSet) -> str:
    """The scenario's heading with the sizes of this run's data (``--size``, ``--quick``)."""
    text = scenario.title
    big, mid = data.size(data.big), data.size(data.mid)
    text = text.replace("1 GiB", _size(big)).replace("128 MiB", _size(mid))
    return text.replace("300 files", f"{len(data.small)} files")


def _size(size: int) -> str:
    """``1 GiB``, ``64 MiB``."""
    return f"{size / GiB:g} GiB" if size >= GiB and size % GiB == 0 else f"{size / MiB:g} MiB"


def command_line(scenario: Scenario, tool: Tool) -> str:
    """The tool's command line with placeholders (and the variables it adds), for the report."""
    inv = Invocation(
        urls=("URL",) * (2 if scenario.number == 4 else 1),
        out=Path("DIR"),
        list_file=Path("LIST"),
        curl_config=Path("CURLCONFIG"),
        fetchtop="fetchtop",
        cacert=Path("CA.pem"),
    )
    env = tool.env(inv) if tool.env is not None else {}
    prefix = "".join(f"{key}={shlex.quote(value)} " for key, value in env.items())
    return prefix + shlex.join(tool.build(inv)).replace("DIR/URL", "DIR/FILE")


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
    tmpfs: Path | None = None
    """Scratch directory in a tmpfs for the tmpfs scenarios (None: not available)."""
    cacert: Path | None = None
    """The CA certificate nginx's HTTPS certificate is signed by (None: no HTTPS)."""


def missing(scenario: Scenario, ctx: Context) -> str:
    """Why ``scenario`` cannot run here (``n/a (...)``), or ``""``."""
    if scenario.target == "tmpfs" and ctx.tmpfs is None:
        return "n/a (no tmpfs: " + ctx.unavailable.get("tmpfs", "not set up") + ")"
    if scenario.tls and ctx.cacert is None:
        return "n/a (no HTTPS: " + ctx.unavailable.get("tls", "not set up") + ")"
    return ""


def run_scenario(scenario: Scenario, ctx: Context, runs: int, warmups: int) -> list[RunRecord]:
    """Run every tool of ``scenario`` ``warmups + runs`` times, round-robin, and return the records."""
    records: list[RunRecord] = []
    why = missing(scenario, ctx)
    if why:
        for tool in scenario.tools:
            records.append(
                RunRecord(scenario.number, tool.key, 0, False, f"s{scenario.number}-none", error=why)
            )
        print(f"  s{scenario.number} skipped: {why}", flush=True)
        return records
    files = scenario.files(ctx.data)
    for round_no in range(warmups + runs):
        for tool in scenario.tools:
            if tool.binary in ctx.unavailable:
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
            record.tls = ", ".join(f"{name} ({count} req.)" for name, count in sorted(seen.tls.items()))
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
    # On the tmpfs the scratch HOME (fetchtop's state directory) is in memory too: no disk at all.
    base = ctx.tmpfs if scenario.target == "tmpfs" and ctx.tmpfs is not None else ctx.work
    scratch = base / run_id
    if scratch.exists():
        shutil.rmtree(scratch)
    out = scratch / "out"
    home = scratch / "home"
    out.mkdir(parents=True)
    home.mkdir()
    urls = tuple(ctx.server.url(scenario.kind, run_id, rel, tls=scenario.tls) for rel in files)
    inv = Invocation(
        urls=urls,
        out=out,
        list_file=scratch / "urls.txt",
        curl_config=scratch / "curl.conf",
        fetchtop=ctx.fetchtop,
        cacert=ctx.cacert or Path("/nonexistent-ca.pem"),
    )
    inv.list_file.write_text("".join(f"{url}\n" for url in urls))
    inv.curl_config.write_text("".join(f'url = "{url}"\n' for url in urls))
    argv = tool.build(inv)
    env = ctx.env(home)
    if tool.env is not None:
        env.update(tool.env(inv))
    log_path = ctx.logs / f"{run_id}.log"
    try:
        result = run_measured(
            argv,
            cwd=scratch,
            env=env,
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
