"""Paths and the knobs: ``bench/run.py`` options, with the ``BENCH_*`` environment variables as defaults."""

from __future__ import annotations

import argparse
import os
import re
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
"""The repository root."""
BENCH = ROOT / "bench"
"""This package's directory."""
WORK = BENCH / ".work"
"""Generated data, nginx's runtime files and download targets (git-ignored)."""
RESULTS = BENCH / "results"
"""Where ``latest.md`` is written (committed)."""
RAW = RESULTS / "raw"
"""Per-run JSON, tool logs and nginx's access log (git-ignored)."""
FETCHTOP = Path(os.environ.get("BENCH_FETCHTOP") or ROOT / ".venv" / "bin" / "fetchtop")
"""The fetchtop console script: the project's virtualenv's, or ``BENCH_FETCHTOP``."""

SCENARIO_NAMES: dict[int, str] = {
    1: "disk-x1",
    2: "disk-x16",
    3: "throttled",
    4: "small-files",
    5: "norange",
    6: "dashboard",
    7: "startup-disk",
    8: "plain-x1",
    9: "tls-x1",
    10: "plain-x16",
    11: "tls-x16",
    12: "startup",
    13: "checkpoints",
}
"""Every scenario by number and by the name ``--only`` also accepts: 1-7 from issue 6 (on the disk),
8-12 from issue 12 (into tmpfs), 13 the checkpoints' cost (on the disk)."""
ALL_SCENARIOS = tuple(SCENARIO_NAMES)
"""Every scenario, in order."""

MiB = 1024 * 1024
GiB = 1024 * MiB
FULL_BIG = GiB
"""The big file of scenarios 1, 2 and 8-11 at full size."""
QUICK_SCALE = 0.0625
"""``--quick``: every data size and the dashboard window at 1/16 (the big file 64 MiB)."""
_SIZE = re.compile(r"^(\d+(?:\.\d+)?)\s*([kmg]?)(?:i?b)?$", re.IGNORECASE)


class SettingsError(ValueError):
    """An option or environment variable has a value the benchmark cannot use."""


@dataclass(frozen=True)
class Settings:
    """What to run: which scenarios, how many measured runs, and how big the data is."""

    scenarios: tuple[int, ...] = ALL_SCENARIOS
    """Scenario numbers to run (``--only tls-x1,9`` or ``BENCH_SCENARIOS``)."""
    runs: int | None = None
    """Measured runs per tool; None: each scenario's own default (3, 5 for 8-11, 9 for 12)."""
    warmups: int = 1
    """Unmeasured runs per tool before the measured ones (``BENCH_WARMUPS``)."""
    scale: float = 1.0
    """Multiplies data sizes and the dashboard window; below 1 only for developing the harness."""
    big_size: int | None = None
    """Bytes of the big file (scenarios 1, 2, 8-11, 13); None: 1 GiB times ``scale``."""

    @property
    def complete(self) -> bool:
        """Whether this is a full run whose table may replace ``results/latest.md``."""
        return (
            self.scenarios == ALL_SCENARIOS
            and self.scale == 1.0
            and self.big_size in (None, FULL_BIG)
            and (self.runs is None or self.runs >= 3)
            and self.warmups >= 1
        )

    @classmethod
    def from_env(cls, env: dict[str, str] | None = None) -> Settings:
        """Read the settings from ``env`` (default: ``os.environ``); raise SettingsError on bad values."""
        return cls.from_args([], env)

    @classmethod
    def from_args(cls, argv: list[str], env: dict[str, str] | None = None) -> Settings:
        """Read the settings from ``bench/run.py``'s options over the ``BENCH_*`` variables in ``env``
        (default: ``os.environ``); raise SettingsError on bad values."""
        env = dict(os.environ if env is None else env)
        args = _parser().parse_args(argv)
        raw_only = args.only if args.only is not None else env.get("BENCH_SCENARIOS", "")
        scenarios = parse_scenarios(raw_only)
        raw_runs = args.runs if args.runs is not None else env.get("BENCH_RUNS", "")
        runs = _int("--runs/BENCH_RUNS", raw_runs, None, minimum=1)
        raw_warmups = args.warmups if args.warmups is not None else env.get("BENCH_WARMUPS", "")
        warmups = _int("--warmups/BENCH_WARMUPS", raw_warmups, 1, minimum=0) or 0
        quick = args.quick or env.get("BENCH_QUICK", "").strip().lower() in ("1", "yes", "true")
        raw_scale = env.get("BENCH_SCALE", "").strip()
        if raw_scale:
            try:
                scale = float(raw_scale)
            except ValueError as exc:
                raise SettingsError(f"BENCH_SCALE must be a number: {raw_scale!r}") from exc
            if not 0 < scale <= 1:
                raise SettingsError(f"BENCH_SCALE must be in (0, 1]: {scale}")
        else:
            scale = QUICK_SCALE if quick else 1.0
        raw_size = args.size if args.size is not None else env.get("BENCH_SIZE", "")
        big_size = parse_size(raw_size) if raw_size.strip() else None
        if quick and runs is None:
            runs = 1
        return cls(scenarios=scenarios, runs=runs, warmups=warmups, scale=scale, big_size=big_size)


def parse_scenarios(raw: str) -> tuple[int, ...]:
    """Scenario numbers from ``"9,tls-x16"``; every scenario for ``""`` or ``"all"``."""
    raw = raw.strip()
    if not raw or raw.lower() == "all":
        return ALL_SCENARIOS
    by_name = {name: number for number, name in SCENARIO_NAMES.items()}
    wanted: set[int] = set()
    for part in raw.replace(" ", ",").split(","):
        part = part.strip().lower()
        if not part:
            continue
        if part.isdigit() and int(part) in SCENARIO_NAMES:
            wanted.add(int(part))
        elif part in by_name:
            wanted.add(by_name[part])
        else:
            known = ", ".join(f"{n} {name}" for n, name in SCENARIO_NAMES.items())
            raise SettingsError(f"no such scenario {part!r} (known: {known})")
    if not wanted:
        raise SettingsError(f"no scenario in {raw!r}")
    return tuple(sorted(wanted))


def parse_size(raw: str) -> int:
    """Bytes from ``"1G"``, ``"256M"``, ``"512MiB"`` or a plain number; at least 1 MiB, whole MiB."""
    found = _SIZE.match(raw.strip())
    if found is None:
        raise SettingsError(f"--size/BENCH_SIZE must be like 256M or 1G: {raw!r}")
    unit = {"": 1, "k": 1024, "m": MiB, "g": GiB}[found.group(2).lower()]
    size = round(float(found.group(1)) * unit / MiB) * MiB
    if size < MiB:
        raise SettingsError(f"--size/BENCH_SIZE must be at least 1M: {raw!r}")
    return size


def _parser() -> argparse.ArgumentParser:
    """bench/run.py's options; every one also has a BENCH_* variable (bench/README.md)."""
    parser = argparse.ArgumentParser(
        allow_abbrev=False,
        prog="bench/run.py",
        description="fetchtop against curl, wget, aria2c and axel on a private nginx (bench/README.md).",
    )
    names = ", ".join(f"{n} {name}" for n, name in SCENARIO_NAMES.items())
    parser.add_argument("--only", metavar="LIST", help=f"scenarios to run, numbers or names: {names}")
    parser.add_argument("--runs", metavar="N", help="measured runs per tool (default: each scenario's)")
    parser.add_argument("--warmups", metavar="N", help="unmeasured runs per tool first (default 1)")
    parser.add_argument("--size", metavar="SIZE", help="size of the big file, e.g. 256M (default 1G)")
    parser.add_argument(
        "--quick",
        action="store_true",
        help=f"small data (x{QUICK_SCALE:g}: a 64 MiB big file) and one measured run, unless told otherwise",
    )
    return parser


def _int(name: str, raw: str, default: int | None, *, minimum: int) -> int | None:
    """Parse an integer setting that must be at least ``minimum``; ``default`` when empty."""
    raw = raw.strip()
    if not raw:
        return default
    try:
        value = int(raw)
    except ValueError as exc:
        raise SettingsError(f"{name} must be an integer: {raw!r}") from exc
    if value < minimum:
        raise SettingsError(f"{name} must be at least {minimum}: {value}")
    return value
