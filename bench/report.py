"""Medians per tool, the issue's targets as pass/fail with ratios, and the Markdown table."""

from __future__ import annotations

import statistics
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from bench.records import MiB, RunRecord

RSS_LIMIT_MB = 80.0
"""Peak RSS target (MB) for fetchtop in every scenario."""


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
    core_share: float | None
    """Scenario 6: median share of one core."""
    term_bytes_per_s: float | None
    """Scenario 6: median terminal bytes per second."""


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
            core_share=statistics.median(r.core_share or 0.0 for r in dash) if dash else None,
            term_bytes_per_s=statistics.median(r.term_bytes_per_s or 0.0 for r in dash) if dash else None,
        )
    return result


@dataclass(frozen=True)
class Target:
    """One target of the issue, checked."""

    label: str
    """What is asked."""
    measured: str
    """fetchtop's value and what it is compared with."""
    ratio: float | None
    """The compared ratio (fetchtop / reference, or value / limit)."""
    needed: str
    """The bound on the ratio."""
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
    summaries: dict[tuple[int, str], Summary], scenarios: Iterable[int], unavailable: dict[str, str]
) -> list[Target]:
    """Every target of issue 6 whose scenario ran, computed from the medians; ``unavailable`` maps a
    tool to why it could not run."""
    ran = set(scenarios)
    out: list[Target] = []

    def get(scenario: int, tool: str) -> Summary | None:
        found = summaries.get((scenario, tool))
        return found if found is not None and found.ok_runs else None

    def why(scenario: int, *tools: str) -> str:
        for tool in tools:
            found = summaries.get((scenario, tool))
            if found is None:
                return unavailable.get(tool) or f"{tool} did not run"
            if not found.ok_runs:
                if found.error.startswith("n/a ("):
                    return found.error[len("n/a (") : -1]
                return f"{tool} failed: {found.error}"
        return ""

    def compare(
        label: str,
        scenario: int,
        ref_scenario: int,
        ref_tool: str,
        value: Callable[[Summary], float],
        unit: str,
        needed: str,
        ok: Callable[[float], bool],
    ) -> None:
        if scenario not in ran or ref_scenario not in ran:
            return
        ft, ref = get(scenario, "fetchtop"), get(ref_scenario, ref_tool)
        if ft is None or ref is None or value(ref) == 0:
            note = why(scenario, "fetchtop") or why(ref_scenario, ref_tool)
            out.append(Target(label, "", None, needed, None, note))
            return
        ratio = value(ft) / value(ref)
        measured = f"{value(ft):.3g} vs {value(ref):.3g} {unit}"
        out.append(Target(label, measured, ratio, needed, ok(ratio)))

    def absolute(
        label: str, scenario: int, value: Callable[[Summary], float | None], limit: float, unit: str
    ) -> None:
        if scenario not in ran:
            return
        ft = get(scenario, "fetchtop")
        got = value(ft) if ft is not None else None
        needed = f"< 1 (limit {limit:g} {unit})"
        if got is None:
            out.append(Target(label, "", None, needed, None, why(scenario, "fetchtop")))
            return
        out.append(Target(label, f"{got:.3g} {unit}", got / limit, needed, got < limit))

    compare(
        "S1 speed >= 0.9x curl", 1, 1, "curl", lambda s: s.mib_per_s, "MiB/s", ">= 0.90", lambda r: r >= 0.9
    )
    compare("S2 speed >= axel", 2, 2, "axel", lambda s: s.mib_per_s, "MiB/s", ">= 1.00", lambda r: r >= 1.0)
    compare(
        "S1 CPU/GiB <= 1.15x curl",
        1,
        1,
        "curl",
        lambda s: s.cpu_per_gib,
        "s/GiB",
        "<= 1.15",
        lambda r: r <= 1.15,
    )
    compare(
        "S2 CPU/GiB <= 1.15x curl (S1)",
        2,
        1,
        "curl",
        lambda s: s.cpu_per_gib,
        "s/GiB",
        "<= 1.15",
        lambda r: r <= 1.15,
    )
    compare("S3 wall <= aria2c", 3, 3, "aria2c", lambda s: s.wall, "s", "<= 1.00", lambda r: r <= 1.0)
    compare("S3 wall <= axel", 3, 3, "axel", lambda s: s.wall, "s", "<= 1.00", lambda r: r <= 1.0)
    compare("S4 wall <= 0.75x aria2c", 4, 4, "aria2c", lambda s: s.wall, "s", "<= 0.75", lambda r: r <= 0.75)
    if 5 in ran:
        ft = get(5, "fetchtop")
        needed = "<= 1.01"
        if ft is None:
            out.append(Target("S5 server bytes <= 1.01x file", "", None, needed, None, why(5, "fetchtop")))
        else:
            ratio = ft.server_bytes / ft.file_bytes
            measured = f"{ft.server_bytes / MiB:.1f} of {ft.file_bytes / MiB:.0f} MiB"
            out.append(Target("S5 server bytes <= 1.01x file", measured, ratio, needed, ratio <= 1.01))
    absolute(
        "S6 terminal < 30 KB/s",
        6,
        lambda s: None if s.term_bytes_per_s is None else s.term_bytes_per_s / 1000,
        30,
        "KB/s",
    )
    absolute(
        "S6 CPU < 15% of a core", 6, lambda s: None if s.core_share is None else s.core_share * 100, 15, "%"
    )
    absolute("S7 wall < 0.35 s", 7, lambda s: s.wall, 0.35, "s")
    for scenario in sorted(ran):
        absolute(f"S{scenario} peak RSS < 80 MB", scenario, lambda s: s.rss_mb, RSS_LIMIT_MB, "MB")
    return out


def _num(value: float, digits: int = 2) -> str:
    """A number for the table."""
    return f"{value:,.{digits}f}"


def scenario_table(
    scenario: int, title: str, tools: list[str], commands: dict[str, str], reference: str,
    summaries: dict[tuple[int, str], Summary], unavailable: dict[str, str],
) -> str:  # fmt: skip
    """The Markdown section for one scenario."""
    lines = [f"### {scenario}. {title}", ""]
    if scenario == 6:
        lines += [
            "| tool | ok runs | window s | % of a core | terminal KB/s | peak RSS MB | requests "
            "| server MiB |",
            "|---|---:|---:|---:|---:|---:|---:|---:|",
        ]
    else:
        ratio_head = {5: "served / file"}.get(scenario, f"vs {reference}")
        lines += [
            f"| tool | ok runs | wall s | MiB/s | {ratio_head} | CPU s | CPU s/GiB | peak RSS MB "
            "| requests | server MiB |",
            "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
        ]
    ref = summaries.get((scenario, reference))
    for tool in tools:
        s = summaries.get((scenario, tool))
        name = f"{tool} *" if tool == reference and scenario != 6 else tool
        if s is None or not s.ok_runs:
            reason = unavailable.get(tool) or (s.error if s is not None else "did not run")
            if reason.startswith("n/a"):
                cell = reason
            else:
                cell = f"n/a ({reason})" if s is None else f"FAILED ({reason})"
            columns = 8 if scenario == 6 else 10
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
        if scenario == 5:
            ratio = s.server_bytes / s.file_bytes if s.file_bytes else 0.0
        elif scenario in (1, 2):
            ratio = s.mib_per_s / ref.mib_per_s if ref is not None and ref.ok_runs else 0.0
        else:
            ratio = s.wall / ref.wall if ref is not None and ref.ok_runs else 0.0
        lines.append(
            f"| {name} | {runs} | {_num(s.wall, 3 if scenario == 7 else 2)} | {_num(s.mib_per_s, 1)} "
            f"| {ratio:.2f} | {_num(s.cpu)} | {_num(s.cpu_per_gib)} | {_num(s.rss_mb, 1)} "
            f"| {s.requests:.0f} | {_num(s.server_bytes / MiB, 1)} |"
        )
    if scenario in (1, 2):
        lines += ["", f"Ratio: throughput / {reference}'s."]
    elif scenario == 5:
        lines += ["", "Ratio: bytes nginx sent (headers included) / file size."]
    elif scenario != 6:
        lines += ["", f"Ratio: wall time / {reference}'s."]
    lines += ["", "Commands:", ""]
    lines += [f"- {tool}: `{commands[tool]}`" for tool in tools if tool in commands]
    lines.append("")
    return "\n".join(lines)


def targets_table(found: list[Target]) -> str:
    """The Markdown table of targets."""
    lines = [
        "| target | fetchtop (median) | ratio | needed | result |",
        "|---|---|---:|---|---|",
    ]
    for t in found:
        ratio = f"{t.ratio:.2f}" if t.ratio is not None else ""
        lines.append(f"| {t.label} | {t.measured} | {ratio} | {t.needed} | {t.result} |")
    return "\n".join(lines) + "\n"
