"""Scenario 6: the dashboard with 50 throttled downloads in a detached 120x40 tmux pane.

The dashboard's CPU comes from /proc/PID/stat (utime+stime over the window), the bytes it writes to
the terminal from ``tmux pipe-pane`` into a file, and its peak memory from VmHWM in /proc/PID/status."""

from __future__ import annotations

import os
import re
import shlex
import shutil
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from bench.records import RunRecord
from bench.scenarios import Context

COLUMNS = 120
"""Pane width."""
ROWS = 40
"""Pane height."""
DOWNLOADS = 50
"""Throttled downloads given to the dashboard."""
OPTIONS = ("-j", str(DOWNLOADS), "-x", "1", "--per-host", str(DOWNLOADS))
"""All fifty downloading at once, one connection each (not five at a time, queued)."""
SETTLE = 5.0
"""Seconds for the dashboard to start and the downloads to begin before the window opens."""

_CLK_TCK = os.sysconf("SC_CLK_TCK")
_ANSI = re.compile(r"\x1b(?:\[[0-?]*[ -/]*[@-~]|\][^\x07\x1b]*(?:\x07|\x1b\\)|[@-Z\\-_])")


@dataclass(frozen=True)
class DashSample:
    """The dashboard process at one instant."""

    user: float
    """utime in seconds."""
    system: float
    """stime in seconds."""
    term_bytes: int
    """Bytes written to the pane so far."""
    at: float
    """Monotonic time of the sample."""


def command_line() -> str:
    """The dashboard's command line with placeholders, for the report (it runs with
    ``COLORTERM=truecolor`` and ``TERM=tmux-256color``)."""
    return " ".join(["fetchtop", *OPTIONS, "-d", "DIR", "URL1", "...", f"URL{DOWNLOADS}"])


def run_dashboard(ctx: Context, tmux: str, runs: int, warmups: int, window: float) -> list[RunRecord]:
    """Run the dashboard ``warmups + runs`` times for ``window`` s each; stop at the first sign that
    there is no dashboard yet (the process exits before the window opens)."""
    records: list[RunRecord] = []
    for round_no in range(warmups + runs):
        record = _run_once(ctx, tmux, round_no, warmup=round_no < warmups, window=window)
        records.append(record)
        status = "ok" if record.ok else f"FAILED: {record.error}"
        print(
            f"  s6 fetchtop  {'warm-up' if record.warmup else f'run {round_no}':<7} "
            f"{(record.core_share or 0) * 100:5.1f}% of a core, "
            f"{(record.term_bytes_per_s or 0) / 1000:6.1f} KB/s to the terminal, "
            f"rss {record.rss_mb:6.1f} MB  {status}",
            flush=True,
        )
        if record.error.startswith("n/a"):
            # Shown in the table, not dropped as a warm-up.
            record.warmup = False
            break
    traffic = ctx.server.traffic()
    for record in records:
        seen = traffic.get(record.run_id)
        if seen is not None:
            record.requests = seen.requests
            record.server_bytes = seen.bytes_sent
    return records


def _run_once(ctx: Context, tmux: str, round_no: int, *, warmup: bool, window: float) -> RunRecord:
    """Start the dashboard in a fresh tmux server, measure it over ``window`` s, then stop both."""
    run_id = f"s6-fetchtop-r{round_no}"
    record = RunRecord(
        scenario=6,
        tool="fetchtop",
        round=round_no,
        warmup=warmup,
        run_id=run_id,
        file_bytes=ctx.data.size(ctx.data.mid),
    )
    scratch = ctx.work / run_id
    if scratch.exists():
        shutil.rmtree(scratch)
    out = scratch / "out"
    home = scratch / "home"
    out.mkdir(parents=True)
    home.mkdir()
    # A socket path of our own: the user's tmux server and its configuration are never touched.
    socket_path = scratch / "tmux.sock"
    tmux_conf = scratch / "tmux.conf"
    tmux_conf.write_text('set -g default-terminal "tmux-256color"\nset -g status off\n')
    term_file = scratch / "terminal.out"
    pid_file = scratch / "dashboard.pid"
    urls = [ctx.server.url("dash", run_id, rel) for rel in ctx.data.dash[:DOWNLOADS]]
    script = scratch / "dashboard.sh"
    exports = "".join(f"export {key}={shlex.quote(value)}\n" for key, value in ctx.env(home).items())
    # Wait for pipe-pane to attach before starting, so the file sees every byte; `exec` makes the
    # recorded pid the dashboard's own.
    script.write_text(
        "#!/bin/sh\n"
        f"{exports}export COLORTERM=truecolor\n"
        f"cd {shlex.quote(str(out))}\n"
        f"while [ ! -e {shlex.quote(str(scratch / 'go'))} ]; do sleep 0.05; done\n"
        f"echo $$ > {shlex.quote(str(pid_file))}\n"
        f"exec {shlex.join([ctx.fetchtop, *OPTIONS, '-d', str(out), *urls])}\n"
    )
    script.chmod(0o755)
    base = [tmux, "-S", str(socket_path), "-f", str(tmux_conf)]
    pid = 0
    try:
        subprocess.run(
            [*base, "new-session", "-d", "-s", "bench", "-x", str(COLUMNS), "-y", str(ROWS), str(script)],
            check=True,
            timeout=10,
            env=ctx.env(home),
        )
        subprocess.run([*base, "set-option", "-t", "bench", "remain-on-exit", "on"], check=True, timeout=10)
        subprocess.run(
            [*base, "pipe-pane", "-O", "-t", "bench", f"cat >> {shlex.quote(str(term_file))}"],
            check=True,
            timeout=10,
        )
        (scratch / "go").touch()
        pid = _wait_pid(pid_file, 10.0)
        time.sleep(SETTLE)
        if not _alive(pid):
            record.error = "n/a (dashboard not available: " + _why_dead(base, term_file) + ")"
            return record
        first = _sample(pid, term_file)
        time.sleep(window)
        if not _alive(pid):
            record.error = "dashboard exited during the window: " + _why_dead(base, term_file)
            return record
        last = _sample(pid, term_file)
        # What the pane showed, for a look afterwards (raw results, not committed).
        pane = subprocess.run(
            [*base, "capture-pane", "-p", "-t", "bench"],
            capture_output=True,
            text=True,
            timeout=10,
            check=False,
        )
        (ctx.logs / f"{run_id}.pane.txt").write_text(pane.stdout)
        record.maxrss_kib = _vm_hwm_kib(pid)
        elapsed = last.at - first.at
        record.wall = elapsed
        record.cpu_user = last.user - first.user
        record.cpu_sys = last.system - first.system
        record.core_share = record.cpu / elapsed
        record.term_bytes_per_s = (last.term_bytes - first.term_bytes) / elapsed
        record.ok = True
    except (subprocess.SubprocessError, OSError, TimeoutError) as exc:
        record.error = f"harness error: {exc}"
    finally:
        if pid and _alive(pid):
            _stop(pid)
        subprocess.run([*base, "kill-server"], capture_output=True, timeout=10, check=False)
        ctx.server.settle(run_id, limit=2.0)
        (ctx.logs / f"{run_id}.terminal-bytes").write_text(str(_size(term_file)))
        shutil.rmtree(scratch, ignore_errors=True)
    return record


def _wait_pid(pid_file: Path, timeout: float) -> int:
    """The pid the start script recorded just before exec'ing the dashboard."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            text = pid_file.read_text().strip()
        except FileNotFoundError:
            text = ""
        if text:
            return int(text)
        time.sleep(0.05)
    raise TimeoutError("the dashboard's start script never ran")


def _sample(pid: int, term_file: Path) -> DashSample:
    """CPU time so far and terminal bytes so far."""
    with open(f"/proc/{pid}/stat") as f:
        stat = f.read()
    # Field 2 (comm) may contain spaces; the rest follows the last ')'.
    fields = stat.rsplit(")", 1)[1].split()
    utime, stime = int(fields[11]), int(fields[12])
    return DashSample(
        user=utime / _CLK_TCK, system=stime / _CLK_TCK, term_bytes=_size(term_file), at=time.monotonic()
    )


def _vm_hwm_kib(pid: int) -> int:
    """Peak RSS (VmHWM) in KiB, 0 if unreadable."""
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def _alive(pid: int) -> bool:
    """Whether the process exists and is not a zombie."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return False


def _stop(pid: int) -> None:
    """SIGTERM the dashboard (our child's exec'd process), SIGKILL after 3 s."""
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + 3
    while time.monotonic() < deadline:
        if not _alive(pid):
            return
        time.sleep(0.05)
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def _size(path: Path) -> int:
    """File size, 0 when missing."""
    try:
        return path.stat().st_size
    except OSError:
        return 0


def _why_dead(base: list[str], term_file: Path) -> str:
    """What the dashboard printed last before it exited: the pane's text (remain-on-exit keeps it),
    else the raw terminal output with escape sequences removed."""
    pane = subprocess.run(
        [*base, "capture-pane", "-p", "-t", "bench"], capture_output=True, text=True, timeout=10, check=False
    )
    lines = [ln.strip() for ln in pane.stdout.splitlines()]
    lines = [ln for ln in lines if ln and not ln.startswith("Pane is dead")]
    if not lines:
        try:
            raw = term_file.read_text(errors="replace")
        except OSError:
            raw = ""
        lines = [ln.strip() for ln in _ANSI.sub("", raw).replace("\r", "\n").splitlines() if ln.strip()]
    return (lines[-1][:160] if lines else "exited without output").rstrip(".")
