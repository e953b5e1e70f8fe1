"""The benchmark run: tools, data, nginx, every scenario, then the report."""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import os
import platform
import shutil
import signal
import subprocess
import sys
from pathlib import Path
from types import FrameType

from bench import dashboard, deps, report
from bench.data import DataSet, MiB, prepare
from bench.records import RunRecord
from bench.scenarios import SCENARIOS, Context, command_line, run_scenario, title
from bench.server import DASH_RATE, SLOW_RATE, Nginx, ServerError
from bench.settings import FETCHTOP, RAW, RESULTS, ROOT, SCENARIO_NAMES, WORK, Settings, SettingsError
from bench.tls import CertificateError, Certificates, make_certificates
from bench.tmpfs import Tmpfs, TmpfsError

DASH_WINDOW = 30.0
"""Seconds the dashboard is measured for (scaled down with BENCH_SCALE)."""


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark; 0 when every run succeeded, 1 when some failed, 2 for bad settings."""
    try:
        settings = Settings.from_args(sys.argv[1:] if argv is None else argv)
    except SettingsError as exc:
        print(f"bench: {exc}", file=sys.stderr)
        return 2
    # SIGTERM and SIGHUP unwind like Ctrl-C, so nginx, tmux and a running client are always stopped.
    signal.signal(signal.SIGTERM, _interrupt)
    signal.signal(signal.SIGHUP, _interrupt)
    try:
        return _run(settings)
    except KeyboardInterrupt:
        print("\nbench: interrupted; nginx and clients stopped", file=sys.stderr)
        return 130
    except (deps.ToolError, ServerError) as exc:
        print(f"bench: {exc}", file=sys.stderr)
        return 1


def _interrupt(signum: int, frame: FrameType | None) -> None:
    """Turn a termination signal into KeyboardInterrupt."""
    raise KeyboardInterrupt


def _run(settings: Settings) -> int:
    """Everything between the settings and the exit status."""
    load_start = _loadavg()
    tools = deps.ensure_tools()
    unavailable: dict[str, str] = {}
    fetchtop_reason = _fetchtop_get_missing()
    if fetchtop_reason:
        unavailable["fetchtop"] = f"fetchtop get not available: {fetchtop_reason}"
        print(f"bench: {unavailable['fetchtop']}; running the other tools", flush=True)
    data = prepare(WORK, settings.scale, settings.big_size)
    stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%SZ")
    raw = RAW / stamp
    logs = raw / "logs"
    logs.mkdir(parents=True)
    scratch = WORK / "runs"
    shutil.rmtree(scratch, ignore_errors=True)
    scratch.mkdir(parents=True)
    records: list[RunRecord] = []
    wanted = [SCENARIOS[n] for n in settings.scenarios if n in SCENARIOS]
    certificates = _certificates(tools, unavailable) if any(s.tls for s in wanted) else None
    server = Nginx(tools["nginx"], WORK / "nginx", data.root, certificates)
    stack = contextlib.ExitStack()
    tmpfs: Tmpfs | None = None
    try:
        tmpfs = _tmpfs(stack, data, unavailable) if any(s.target == "tmpfs" for s in wanted) else None
        server.start()
        https = f", HTTPS on {server.tls_port}" if server.tls_port else ""
        print(f"bench: nginx on 127.0.0.1:{server.port}{https}, data in {data.root}", flush=True)
        ctx = Context(
            server=server,
            data=data,
            work=scratch,
            logs=logs,
            env=_client_env,
            fetchtop=str(FETCHTOP),
            unavailable=unavailable,
            time_binary=tools["time"],
            tmpfs=tmpfs.path if tmpfs is not None else None,
            cacert=certificates.ca if certificates is not None else None,
        )
        for number in settings.scenarios:
            if number == 6:
                print("scenario 6: the dashboard under load", flush=True)
                if not FETCHTOP.exists():
                    unavailable_dash = f"n/a (dashboard not available: no {FETCHTOP})"
                    records.append(RunRecord(6, "fetchtop", 0, False, "s6-none", error=unavailable_dash))
                    continue
                window = max(5.0, DASH_WINDOW * settings.scale)
                records += dashboard.run_dashboard(
                    ctx, tools["tmux"], settings.runs or 3, settings.warmups, window
                )
            else:
                scenario = SCENARIOS[number]
                print(f"scenario {number} ({SCENARIO_NAMES[number]}): {title(scenario, data)}", flush=True)
                runs = settings.runs or scenario.runs
                records += run_scenario(scenario, ctx, runs, settings.warmups)
    finally:
        server.stop()
        stack.close()
        shutil.rmtree(scratch, ignore_errors=True)
        if server.access_log.exists():
            shutil.copy(server.access_log, raw / "access.log")
        (raw / "records.json").write_text(json.dumps([r.to_json() for r in records], indent=1))
    tmpfs_how = tmpfs.how if tmpfs is not None else unavailable.get("tmpfs", "")
    load = (load_start, _loadavg())
    text = _document(settings, records, tools, unavailable, stamp, data, tmpfs_how, load)
    (raw / "results.md").write_text(text)
    print()
    print(text)
    if settings.complete:
        RESULTS.mkdir(parents=True, exist_ok=True)
        (RESULTS / "latest.md").write_text(text)
        print(f"bench: written to {(RESULTS / 'latest.md').relative_to(ROOT)}")
    else:
        print(f"bench: partial run, so results/latest.md is left alone; table in {raw.relative_to(ROOT)}")
    failed = [r for r in records if not r.ok and not r.error.startswith("n/a")]
    return 1 if failed else 0


def _certificates(tools: dict[str, str], unavailable: dict[str, str]) -> Certificates | None:
    """A fresh CA and server certificate for nginx's HTTPS port, or None (reason in ``unavailable``)."""
    missing = deps.nginx_tls_missing(tools["nginx"])
    if missing:
        unavailable["tls"] = missing
        print(f"bench: no HTTPS rows: {missing}", flush=True)
        return None
    try:
        return make_certificates(tools["openssl"], WORK / "tls")
    except CertificateError as exc:
        unavailable["tls"] = str(exc)
        print(f"bench: no HTTPS rows: {exc}", flush=True)
        return None


def _tmpfs(stack: contextlib.ExitStack, data: DataSet, unavailable: dict[str, str]) -> Tmpfs | None:
    """Mount the tmpfs (or take a /dev/shm directory) for the tmpfs rows until ``stack`` closes; None
    with the reason in ``unavailable`` when there is none. Room for one run's biggest output plus part
    and state files."""
    size = data.size(data.big) + data.size(data.big) // 8 + 64 * MiB
    try:
        target = stack.enter_context(Tmpfs(WORK / "tmpfs", size))
    except (TmpfsError, OSError, subprocess.SubprocessError) as exc:
        unavailable["tmpfs"] = str(exc)
        print(f"bench: no tmpfs rows: {exc}", flush=True)
        return None
    print(f"bench: tmpfs target: {target.how}", flush=True)
    return target


def _fetchtop_get_missing() -> str:
    """Why ``fetchtop get`` cannot be benchmarked, or ``""`` when ``fetchtop get --help`` works."""
    if not FETCHTOP.exists():
        return f"no {FETCHTOP}"
    try:
        result = subprocess.run(
            [str(FETCHTOP), "get", "--help"], capture_output=True, text=True, timeout=60, check=False
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        return str(exc)
    if result.returncode != 0:
        lines = (result.stderr or result.stdout).strip().splitlines()
        return lines[-1][:160] if lines else f"exit status {result.returncode}"
    return ""


def _client_env(home: Path) -> dict[str, str]:
    """A clean environment for a client: a scratch HOME and XDG dirs (no ~/.curlrc, ~/.wgetrc,
    aria2.conf or fetchtop state leaks in), no proxy variables."""
    return {
        "PATH": os.environ.get("PATH", "/usr/local/bin:/usr/bin:/bin"),
        "HOME": str(home),
        "LANG": "C.UTF-8",
        "LC_ALL": "C.UTF-8",
        "XDG_CONFIG_HOME": str(home / ".config"),
        "XDG_DATA_HOME": str(home / ".local" / "share"),
        "XDG_STATE_HOME": str(home / ".local" / "state"),
        "XDG_CACHE_HOME": str(home / ".cache"),
    }


def _document(
    settings: Settings,
    records: list[RunRecord],
    tools: dict[str, str],
    unavailable: dict[str, str],
    stamp: str,
    data: DataSet,
    tmpfs_how: str,
    load: tuple[str, str],
) -> str:
    """The whole Markdown report."""
    summaries = report.summarise(records)
    found = report.targets(records, summaries, settings.scenarios, unavailable)
    versions = {name: deps.version(path) for name, path in tools.items()}
    dash_error = next((r.error for r in records if r.scenario == 6 and r.error.startswith("n/a")), "")
    runs = (
        f"{settings.runs} measured runs per tool"
        if settings.runs is not None
        else "measured runs per tool: 3 (scenarios 1-6), 5 (7-11), 9 (12)"
    )
    names = ", ".join(f"{n} {SCENARIO_NAMES[n]}" for n in settings.scenarios)
    lines = [
        "# fetchtop benchmark: latest results",
        "",
        f"Written by `make bench` at {stamp} (UTC). {_machine()} Load average (1, 5, 15 min) "
        f"{load[0]} at the start, {load[1]} at the end.",
        "",
        f"Versions: fetchtop {_git_rev()}, Python {platform.python_version()}, "
        + ", ".join(versions[name] for name in ("nginx", "openssl", "curl", "wget", "aria2c", "axel", "tmux"))
        + ".",
        "",
        f"Settings: scenarios {names}; {settings.warmups} warm-up and {runs}, tools interleaved round "
        f"by round (A B A B ...); big file {data.size(data.big) / MiB:g} MiB, data scale {settings.scale:g}.",
        "",
        "Method: nginx 1 worker on 127.0.0.1 (sendfile on for HTTP; HTTPS with a certificate from a CA "
        "the benchmark makes, TLS in nginx's user space) serves random files from page cache. Scenarios "
        "1-7 and 13 write to a fresh directory on the disk; 8-12 into "
        + (tmpfs_how or "a tmpfs")
        + ", so what remains is what the code costs. Every output's SHA-256 is checked. Values are "
        "medians of the measured runs; peak RSS is the largest of them. Ratios (and start-up "
        "differences) against the reference are medians of per-pair ratios: each run against the "
        "reference's run of the same round, which holds when the machine's speed drifts. CPU is "
        "user+sys of the client process and its waited-for children (`wait4`). Requests and server "
        f"bytes (`$bytes_sent`, headers included) come from nginx's access log. Scenario 3 caps each "
        f"connection at {SLOW_RATE}/s; scenario 6 caps each at {DASH_RATE}/s and runs the dashboard "
        "with TERM=tmux-256color and COLORTERM=truecolor. `*` marks a scenario's reference.",
        "",
        "## Targets (issues 12 and 6)",
        "",
        report.targets_table(found),
        "## Scenarios",
        "",
    ]
    for number in settings.scenarios:
        if number == 6:
            missing = dict(unavailable)
            if dash_error:
                missing["fetchtop"] = dash_error
            lines.append(
                report.scenario_table(
                    6,
                    f"The dashboard under load: {dashboard.DOWNLOADS} throttled downloads in a "
                    f"{dashboard.COLUMNS}x{dashboard.ROWS} tmux pane",
                    ["fetchtop"],
                    {"fetchtop": dashboard.command_line()},
                    "fetchtop",
                    summaries,
                    missing,
                )
            )
            continue
        scenario = SCENARIOS[number]
        keys = [tool.key for tool in scenario.tools]
        commands = {tool.key: command_line(scenario, tool) for tool in scenario.tools}
        lines.append(
            report.scenario_table(
                number,
                f"{title(scenario, data)} (`{SCENARIO_NAMES[number]}`)",
                keys,
                commands,
                scenario.reference,
                summaries,
                unavailable,
                records=records,
                compare=scenario.compare,
            )
        )
    return "\n".join(lines).rstrip() + "\n"


def _loadavg() -> str:
    """The 1, 5 and 15 minute load averages, from /proc/loadavg."""
    try:
        return " ".join(Path("/proc/loadavg").read_text().split()[:3])
    except OSError:
        return "unknown"


def _machine() -> str:
    """A one-line description of this machine."""
    model = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem_gib = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    return f"Machine: {os.cpu_count()} cores ({model}), {mem_gib:.0f} GiB RAM, Linux {platform.release()}."


def _git_rev() -> str:
    """The commit benchmarked, with ``+dirty`` when engine/ or tui/ has uncommitted changes."""
    try:
        rev = subprocess.run(
            ["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "-C", str(ROOT), "status", "--porcelain", "--", "engine", "tui"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "(unknown commit)"
    return rev + ("+dirty" if dirty else "")
