"""The benchmark run: tools, data, nginx, every scenario, then the report."""

from __future__ import annotations

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
from bench.data import prepare
from bench.records import RunRecord
from bench.scenarios import SCENARIOS, Context, command_line, run_scenario
from bench.server import DASH_RATE, SLOW_RATE, Nginx, ServerError
from bench.settings import FETCHTOP, RAW, RESULTS, ROOT, WORK, Settings, SettingsError

DASH_WINDOW = 30.0
"""Seconds the dashboard is measured for (scaled down with BENCH_SCALE)."""


def main() -> int:
    """Run the benchmark; 0 when every run succeeded, 1 when some failed, 2 for bad settings."""
    try:
        settings = Settings.from_env()
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
    tools = deps.ensure_tools()
    unavailable: dict[str, str] = {}
    fetchtop_reason = _fetchtop_get_missing()
    if fetchtop_reason:
        unavailable["fetchtop"] = f"fetchtop get not available: {fetchtop_reason}"
        print(f"bench: {unavailable['fetchtop']}; running the other tools", flush=True)
    data = prepare(WORK, settings.scale)
    stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%SZ")
    raw = RAW / stamp
    logs = raw / "logs"
    logs.mkdir(parents=True)
    scratch = WORK / "runs"
    shutil.rmtree(scratch, ignore_errors=True)
    scratch.mkdir(parents=True)
    records: list[RunRecord] = []
    server = Nginx(tools["nginx"], WORK / "nginx", data.root)
    try:
        server.start()
        print(f"bench: nginx on 127.0.0.1:{server.port}, data in {data.root}", flush=True)
        ctx = Context(
            server=server,
            data=data,
            work=scratch,
            logs=logs,
            env=_client_env,
            fetchtop=str(FETCHTOP),
            unavailable=unavailable,
            time_binary=tools["time"],
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
                    ctx, tools["tmux"], settings.runs, settings.warmups, window
                )
            else:
                scenario = SCENARIOS[number]
                print(f"scenario {number}: {scenario.title}", flush=True)
                records += run_scenario(scenario, ctx, settings.runs, settings.warmups)
    finally:
        server.stop()
        shutil.rmtree(scratch, ignore_errors=True)
        if server.access_log.exists():
            shutil.copy(server.access_log, raw / "access.log")
        (raw / "records.json").write_text(json.dumps([r.to_json() for r in records], indent=1))
    text = _document(settings, records, tools, unavailable, stamp)
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
) -> str:
    """The whole Markdown report."""
    summaries = report.summarise(records)
    found = report.targets(summaries, settings.scenarios, unavailable)
    versions = {name: deps.version(path) for name, path in tools.items()}
    dash_error = next((r.error for r in records if r.scenario == 6 and r.error.startswith("n/a")), "")
    lines = [
        "# fetchtop benchmark: latest results",
        "",
        f"Written by `make bench` at {stamp} (UTC). {_machine()}",
        "",
        f"Versions: fetchtop {_git_rev()}, Python {platform.python_version()}, "
        + ", ".join(versions[name] for name in ("nginx", "curl", "wget", "aria2c", "axel", "tmux"))
        + ".",
        "",
        f"Settings: scenarios {','.join(map(str, settings.scenarios))}; {settings.warmups} warm-up "
        f"and {settings.runs} measured runs per tool (scenario 7: at least {SCENARIOS[7].min_runs}), "
        f"tools interleaved round by round; data scale {settings.scale:g}.",
        "",
        "Method: nginx 1 worker on 127.0.0.1 (sendfile on) serves random files from page cache; each client "
        "writes to a fresh directory on the same disk and every output's SHA-256 is checked. Values are "
        "medians of the measured runs; peak RSS is the largest of them. CPU is user+sys of the client "
        "process and its waited-for children (`wait4`). Requests and server bytes (`$bytes_sent`, headers "
        f"included) come from nginx's access log. Scenario 3 caps each connection at {SLOW_RATE}/s; "
        f"scenario 6 caps each at {DASH_RATE}/s and runs the dashboard with TERM=tmux-256color and "
        "COLORTERM=truecolor. `*` marks the reference of a scenario's ratio column.",
        "",
        "## Targets (issue 6)",
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
                number, scenario.title, keys, commands, scenario.reference, summaries, unavailable
            )
        )
    return "\n".join(lines).rstrip() + "\n"


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
