"""Medians per tool, per-pair ratios against each scenario's reference, the targets of issues 6 and 12
as pass/fail, and the Markdown tables.

Ratios are medians of per-pair ratios: in round r fetchtop and its reference ran one after the other,
so ``fetchtop[r] / reference[r]`` compares two runs under the same load, and the median over rounds
holds when the machine's speed drifts between rounds (another process, a slower disk sync). A ratio
of medians would mix rounds run under different loads."""

from __future__ import annotations

import statistics
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from bench.records import MiB, RunRecord

RSS_LIMIT_MB = 80.0
"""Peak RSS target (MB) for fetchtop in every scenario (issue 6)."""
RSS_X16_LIMIT_MB = 60.0
"""Peak RSS target (MB) for fetchtop at -x16 (issue 12)."""
X16_SCENARIOS = (2, 3, 5, 10, 11, 13)
"""Scenarios where fetchtop runs with -x16."""
ONE_FILE_SCENARIOS = (1, 2, 3, 5, 8, 9, 10, 11, 13)
"""Scenarios that fetch one file: the served-bytes target is checked on each."""


@dataclass(frozen=True)
class Summary:
    """One tool in one scenario: medians over its successful measured runs."""

    scenario: int
    """Scenario number."""
    tool: str
    """Tool key."""
    ok_runs: int
    """Measured runs that succeeded."""
    failed_runs: int
    """Measured runs that failed."""
    error: str
    """The first failure's reason, or ``""``."""
    wall: float
    """Median wall seconds."""
    mib_per_s: float
    """Median throughput."""
    cpu: float
    """Median CPU seconds (user+sys)."""
    cpu_per_gib: float
    """Median CPU seconds per GiB."""
    rss_mb: float
    """Largest peak RSS of all its runs, in MB."""
    requests: float
    """Median requests logged by nginx."""
    server_bytes: float
    """Median bytes nginx sent."""
    file_bytes: int
    """Size of the file asked for."""
    payload_bytes: int
    """Bytes of all the files of one run."""
    core_share: float | None
    """Scenario 6: median share of one core."""
    term_bytes_per_s: float | None
    """Scenario 6: median terminal bytes per second."""
    tls: str = ""
    """HTTPS: what nginx logged as negotiated in the last measured run."""


@dataclass(frozen=True)
class Paired:
    """A tool against its scenario's reference, over the rounds where both succeeded."""

    pairs: int
    """Rounds in which both runs succeeded."""
    time_ratio: float
    """Median of wall / reference's wall."""
    cpu_ratio: float
    """Median of CPU / reference's CPU."""
    speed_ratio: float
    """Median of throughput / reference's throughput (reference's wall / wall: same bytes)."""
    time_diff: float
    """Median of wall - reference's wall, in seconds."""
    cpu_diff: float
    """Median of CPU - reference's CPU, in seconds."""


def summarise(records: Iterable[RunRecord]) -> dict[tuple[int, str], Summary]:
    """Group the measured runs by (scenario, tool) and take medians of the successful ones."""
    groups: dict[tuple[int, str], list[RunRecord]] = {}
    for record in records:
        if not record.warmup:
            groups.setdefault((record.scenario, record.tool), []).append(record)
    result: dict[tuple[int, str], Summary] = {}
    for key, runs in groups.items():
        ok = [r for r in runs if r.ok]
        failed = [r for r in runs if not r.ok]

        def med(get: Callable[[RunRecord], float], ok: list[RunRecord] = ok) -> float:
            return statistics.median(get(r) for r in ok) if ok else 0.0

        dash = [r for r in ok if r.core_share is not None]
        result[key] = Summary(
            scenario=key[0],
            tool=key[1],
            ok_runs=len(ok),
            failed_runs=len(failed),
            error=failed[0].error if failed else "",
            wall=med(lambda r: r.wall),
            mib_per_s=med(lambda r: r.mib_per_s),
            cpu=med(lambda r: r.cpu),
            cpu_per_gib=med(lambda r: r.cpu_per_gib),
            rss_mb=max((r.rss_mb for r in ok), default=0.0),
            requests=med(lambda r: r.requests),
            server_bytes=med(lambda r: r.server_bytes),
            file_bytes=runs[0].file_bytes,
            payload_bytes=runs[0].payload_bytes,
            core_share=statistics.median(r.core_share or 0.0 for r in dash) if dash else None,
            term_bytes_per_s=statistics.median(r.term_bytes_per_s or 0.0 for r in dash) if dash else None,
            tls=ok[-1].tls if ok else "",
        )
    return result


def pair(records: Iterable[RunRecord], scenario: int, tool: str, reference: str) -> Paired | None:
    """``tool`` against ``reference`` in ``scenario``, round by round; None without a complete pair."""
    mine: dict[int, RunRecord] = {}
    theirs: dict[int, RunRecord] = {}
    for record in records:
        if record.scenario != scenario or record.warmup or not record.ok or record.wall <= 0:
            continue
        if record.tool == tool:
            mine[record.round] = record
        elif record.tool == reference:
            theirs[record.round] = record
    rounds = sorted(set(mine) & set(theirs))
    if not rounds:
        return None
    a = [mine[r] for r in rounds]
    b = [theirs[r] for r in rounds]
    return Paired(
        pairs=len(rounds),
        time_ratio=statistics.median(x.wall / y.wall for x, y in zip(a, b, strict=True)),
        cpu_ratio=statistics.median(x.cpu / y.cpu if y.cpu > 0 else 0.0 for x, y in zip(a, b, strict=True)),
        speed_ratio=statistics.median(y.wall / x.wall for x, y in zip(a, b, strict=True)),
        time_diff=statistics.median(x.wall - y.wall for x, y in zip(a, b, strict=True)),
        cpu_diff=statistics.median(x.cpu - y.cpu for x, y in zip(a, b, strict=True)),
    )


@dataclass(frozen=True)
class Target:
    """One target of an issue, checked."""

    issue: int
    """The issue that set it."""
    label: str
    """What is asked."""
    measured: str
    """fetchtop's value, and what it is compared with."""
    needed: str
    """The bound."""
    passed: bool | None
    """None when it could not be measured."""
    note: str = ""
    """Why it could not be measured."""

    @property
    def result(self) -> str:
        """pass, FAIL, or n/a with the reason."""
        if self.passed is None:
            return f"n/a ({self.note})" if self.note else "n/a"
        return "pass" if self.passed else "**FAIL**"


def targets(
    records: list[RunRecord],
    summaries: dict[tuple[int, str], Summary],
    scenarios: Iterable[int],
    unavailable: dict[str, str],
) -> list[Target]:
    """Every target of issues 12 and 6 whose scenario ran; ``unavailable`` maps a tool to why it could
    not run."""
    ran = set(scenarios)
    out: list[Target] = []

    def get(scenario: int, tool: str = "fetchtop") -> Summary | None:
        found = summaries.get((scenario, tool))
        return found if found is not None and found.ok_runs else None

    def why(scenario: int, *tools: str) -> str:
        for tool in tools:
            found = summaries.get((scenario, tool))
            if found is None:
                return unavailable.get(tool) or f"{tool} did not run"
            if not found.ok_runs:
                if found.error.startswith("n/a (") and found.error.endswith(")"):
                    return found.error[len("n/a (") : -1]
                return f"{tool} failed: {found.error}"
        return "no round where both succeeded"

    def paired(
        issue: int,
        label: str,
        scenario: int,
        reference: str,
        needed: str,
        show: Callable[[Paired], str],
        ok: Callable[[Paired], bool],
    ) -> None:
        if scenario not in ran:
            return
        found = pair(records, scenario, "fetchtop", reference)
        if found is None:
            out.append(Target(issue, label, "", needed, None, why(scenario, "fetchtop", reference)))
            return
        measured = f"{show(found)} ({found.pairs} pair{'s' if found.pairs != 1 else ''})"
        out.append(Target(issue, label, measured, needed, ok(found)))

    def time_and_cpu(label: str, scenario: int, reference: str, limit: float) -> None:
        paired(
            12,
            f"S{scenario} {label}: time and CPU vs {reference}",
            scenario,
            reference,
            f"<= {limit:.2f}x",
            lambda p: f"{p.time_ratio:.2f}x / {p.cpu_ratio:.2f}x",
            lambda p: p.time_ratio <= limit and p.cpu_ratio <= limit,
        )

    def absolute(issue: int, label: str, scenario: int, value: Callable[[Summary], float | None],
                 unit: str, needed: str, ok: Callable[[float], bool]) -> None:  # fmt: skip
        if scenario not in ran:
            return
        ft = get(scenario)
        got = value(ft) if ft is not None else None
        if got is None:
            out.append(Target(issue, label, "", needed, None, why(scenario, "fetchtop")))
            return
        out.append(Target(issue, label, f"{got:.3g} {unit}", needed, ok(got)))

    def worst(issue: int, label: str, among: Iterable[int], value: Callable[[Summary], float],
              unit: str, needed: str, ok: Callable[[float], bool]) -> None:  # fmt: skip
        candidates = [n for n in among if n in ran]
        if not candidates:
            return
        measured = [(value(s), n) for n in candidates if (s := get(n)) is not None]
        if not measured:
            out.append(Target(issue, label, "", needed, None, why(candidates[0], "fetchtop")))
            return
        got, where = max(measured)
        others = len(measured) - 1
        value_text = f"{got:.3f}x" if unit == "x" else f"{got:.3g} {unit}"
        shown = f"{value_text} (S{where}" + (f", worst of {others + 1})" if others else ")")
        out.append(Target(issue, label, shown, needed, ok(got)))

    # Issue 12: into tmpfs, what the code costs.
    time_and_cpu("plain HTTP, one connection", 8, "curl", 0.90)
    time_and_cpu("TLS, one connection", 9, "curl", 1.10)
    time_and_cpu("plain HTTP, 16 connections", 10, "axel", 0.90)
    time_and_cpu("TLS, 16 connections", 11, "aria2c", 1.00)
    paired(
        12,
        "S12 start-up, one 256 KiB file, over curl",
        12,
        "curl",
        "<= +0.15 s",
        lambda p: f"{p.time_diff:+.3f} s",
        lambda p: p.time_diff <= 0.15,
    )
    # Issue 12: on the disk.
    paired(12, "S1 one connection: throughput vs curl", 1, "curl", ">= 0.95x",
           lambda p: f"{p.speed_ratio:.2f}x", lambda p: p.speed_ratio >= 0.95)  # fmt: skip
    paired(12, "S2 16 connections: throughput vs axel", 2, "axel", ">= 1.00x",
           lambda p: f"{p.speed_ratio:.2f}x", lambda p: p.speed_ratio >= 1.0)  # fmt: skip
    paired(12, "S3 throttled x16: wall vs aria2c", 3, "aria2c", "<= 1.00x",
           lambda p: f"{p.time_ratio:.2f}x", lambda p: p.time_ratio <= 1.0)  # fmt: skip
    paired(12, "S4 small files (300 at full size): wall vs aria2c", 4, "aria2c", "<= 0.75x",
           lambda p: f"{p.time_ratio:.2f}x", lambda p: p.time_ratio <= 0.75)  # fmt: skip
    worst(12, "peak RSS at -x16", X16_SCENARIOS, lambda s: s.rss_mb, "MB", f"<= {RSS_X16_LIMIT_MB:g} MB",
          lambda v: v <= RSS_X16_LIMIT_MB)  # fmt: skip
    absolute(12, "S6 dashboard, 50 downloads: CPU", 6,
             lambda s: None if s.core_share is None else s.core_share * 100, "% of a core", "<= 8%",
             lambda v: v <= 8)  # fmt: skip
    absolute(12, "S6 dashboard, 50 downloads: to the terminal", 6,
             lambda s: None if s.term_bytes_per_s is None else s.term_bytes_per_s / 1000, "KB/s",
             "<= 15 KB/s", lambda v: v <= 15)  # fmt: skip
    worst(12, "served bytes / file size", ONE_FILE_SCENARIOS,
          lambda s: s.server_bytes / s.file_bytes if s.file_bytes else 0.0, "x", "<= 1.01x",
          lambda v: v <= 1.01)  # fmt: skip
    # Issue 12 asks what checkpoints cost on the disk; the bar is this benchmark's, not the issue's.
    paired(12, "S13 checkpoints on vs off (disk, x16): wall", 13, "fetchtop-off", "<= 1.05x",
           lambda p: f"{p.time_ratio:.2f}x", lambda p: p.time_ratio <= 1.05)  # fmt: skip
    # Issue 6's, where issue 12 sets none stricter.
    paired(6, "S1 CPU vs curl", 1, "curl", "<= 1.15x",
           lambda p: f"{p.cpu_ratio:.2f}x", lambda p: p.cpu_ratio <= 1.15)  # fmt: skip
    paired(6, "S3 throttled x16: wall vs axel", 3, "axel", "<= 1.00x",
           lambda p: f"{p.time_ratio:.2f}x", lambda p: p.time_ratio <= 1.0)  # fmt: skip
    absolute(6, "S7 start-up wall", 7, lambda s: s.wall, "s", "< 0.35 s", lambda v: v < 0.35)
    worst(6, "peak RSS, every scenario", sorted(ran), lambda s: s.rss_mb, "MB", f"< {RSS_LIMIT_MB:g} MB",
          lambda v: v < RSS_LIMIT_MB)  # fmt: skip
    return out


def _num(value: float, digits: int = 2) -> str:
    """A number for the table."""
    return f"{value:,.{digits}f}"


def scenario_table(
    scenario: int, title: str, tools: list[str], commands: dict[str, str], reference: str,
    summaries: dict[tuple[int, str], Summary], unavailable: dict[str, str],
    records: list[RunRecord] | None = None, compare: str = "ratio", notes: tuple[str, ...] = (),
) -> str:  # fmt: skip
    """The Markdown section for one scenario; ``compare`` is ``ratio`` or ``difference`` (start-up)."""
    records = records or []
    lines = [f"### {scenario}. {title}", ""]
    if scenario == 6:
        lines += [
            "| tool | ok runs | window s | % of a core | terminal KB/s | peak RSS MB | requests "
            "| server MiB |",
            "|---|---:|---:|---:|---:|---:|---:|---:|",
        ]
    else:
        lines += [
            f"| tool | ok runs | wall s | MiB/s | time vs {reference} | CPU vs {reference} | CPU s "
            "| CPU s/GiB | peak RSS MB | requests | served / size |",
            "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
        ]
    for tool in tools:
        s = summaries.get((scenario, tool))
        name = f"{tool} *" if tool == reference and scenario != 6 else tool
        if s is None or not s.ok_runs:
            reason = unavailable.get(tool) or (s.error if s is not None else "did not run")
            if reason.startswith("n/a"):
                cell = reason
            else:
                cell = f"n/a ({reason})" if s is None else f"FAILED ({reason})"
            columns = 8 if scenario == 6 else 11
            lines.append(f"| {name} | {cell} |" + " |" * (columns - 2))
            continue
        runs = f"{s.ok_runs}" + (f" ({s.failed_runs} failed)" if s.failed_runs else "")
        if scenario == 6:
            lines.append(
                f"| {name} | {runs} | {_num(s.wall, 1)} | {_num((s.core_share or 0) * 100, 1)} "
                f"| {_num((s.term_bytes_per_s or 0) / 1000, 1)} | {_num(s.rss_mb, 1)} | {s.requests:.0f} "
                f"| {_num(s.server_bytes / MiB, 1)} |"
            )
            continue
        p = pair(records, scenario, tool, reference) if tool != reference else None
        if tool == reference:
            time_cell = cpu_cell = "*"
        elif p is None:
            time_cell = cpu_cell = "no pair"
        elif compare == "difference":
            time_cell, cpu_cell = f"{p.time_diff:+.3f} s", f"{p.cpu_diff:+.3f} s"
        else:
            time_cell, cpu_cell = f"{p.time_ratio:.2f}x", f"{p.cpu_ratio:.2f}x"
        served = s.server_bytes / s.payload_bytes if s.payload_bytes else 0.0
        wall = _num(s.wall, 3 if compare == "difference" else 2)
        lines.append(
            f"| {name} | {runs} | {wall} | {_num(s.mib_per_s, 1)} "
            f"| {time_cell} | {cpu_cell} | {_num(s.cpu)} | {_num(s.cpu_per_gib)} | {_num(s.rss_mb, 1)} "
            f"| {s.requests:.0f} | {served:.3f} |"
        )
    if scenario != 6:
        how = "difference" if compare == "difference" else "ratio"
        lines += [
            "",
            f"time / CPU vs {reference}: median over rounds of each run's {how} to {reference}'s run of "
            "the same round. served / size: bytes nginx sent (headers included) / bytes of the files.",
        ]
    negotiated = [f"{tool}: {s.tls}" for tool in tools if (s := summaries.get((scenario, tool))) and s.tls]
    if negotiated:
        lines += ["", "Negotiated (nginx's log): " + "; ".join(negotiated) + "."]
    lines += ["", *notes] if notes else []
    lines += ["", "Commands:", ""]
    lines += [f"- {tool}: `{commands[tool]}`" for tool in tools if tool in commands]
    lines.append("")
    return "\n".join(lines)


def targets_table(found: list[Target]) -> str:
    """The Markdown table of targets."""
    lines = [
        "| issue | target | fetchtop | needed | result |",
        "|---:|---|---|---|---|",
    ]
    for t in found:
        lines.append(f"| {t.issue} | {t.label} | {t.measured} | {t.needed} | {t.result} |")
    return "\n".join(lines) + "\n"
