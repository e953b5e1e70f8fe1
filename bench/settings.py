"""Paths and the knobs read from the environment (``BENCH_SCENARIOS``, ``BENCH_RUNS``, ...)."""

from __future__ import annotations

import os
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

ALL_SCENARIOS = (1, 2, 3, 4, 5, 6, 7)
"""Every scenario of issue 6, in order."""


class SettingsError(ValueError):
    """An environment variable has a value the benchmark cannot use."""


@dataclass(frozen=True)
class Settings:
    """What to run: which scenarios, how many measured runs, and how big the data is."""

    scenarios: tuple[int, ...] = ALL_SCENARIOS
    """Scenario numbers to run (``BENCH_SCENARIOS=1,2``)."""
    runs: int = 3
    """Measured runs per tool, after one warm-up run (``BENCH_RUNS``)."""
    warmups: int = 1
    """Unmeasured runs per tool before the measured ones (``BENCH_WARMUPS``)."""
    scale: float = 1.0
    """Multiplies data sizes and the dashboard window; below 1 only for developing the harness."""

    @property
    def complete(self) -> bool:
        """Whether this is a full run whose table may replace ``results/latest.md``."""
        return self.scenarios == ALL_SCENARIOS and self.scale == 1.0 and self.runs >= 3 and self.warmups >= 1

    @classmethod
    def from_env(cls, env: dict[str, str] | None = None) -> Settings:
        """Read the settings from ``env`` (default: ``os.environ``); raise SettingsError on bad values."""
        env = dict(os.environ if env is None else env)
        scenarios: tuple[int, ...] = ALL_SCENARIOS
        raw = env.get("BENCH_SCENARIOS", "").strip()
        if raw and raw.lower() != "all":
            try:
                wanted = {int(part) for part in raw.replace(" ", ",").split(",") if part}
            except ValueError as exc:
                raise SettingsError(f"BENCH_SCENARIOS must be numbers like 1,2: {raw!r}") from exc
            unknown = wanted - set(ALL_SCENARIOS)
            if unknown or not wanted:
                raise SettingsError(f"BENCH_SCENARIOS: no such scenario {sorted(unknown) or raw!r} (1..7)")
            scenarios = tuple(sorted(wanted))
        runs = _int(env, "BENCH_RUNS", 3, minimum=1)
        warmups = _int(env, "BENCH_WARMUPS", 1, minimum=0)
        try:
            scale = float(env.get("BENCH_SCALE", "1") or "1")
        except ValueError as exc:
            raise SettingsError(f"BENCH_SCALE must be a number: {env['BENCH_SCALE']!r}") from exc
        if not 0 < scale <= 1:
            raise SettingsError(f"BENCH_SCALE must be in (0, 1]: {scale}")
        return cls(scenarios=scenarios, runs=runs, warmups=warmups, scale=scale)


def _int(env: dict[str, str], name: str, default: int, *, minimum: int) -> int:
    """Parse an integer variable that must be at least ``minimum``."""
    raw = env.get(name, "").strip()
    if not raw:
        return default
    try:
        value = int(raw)
    except ValueError as exc:
        raise SettingsError(f"{name} must be an integer: {raw!r}") from exc
    if value < minimum:
        raise SettingsError(f"{name} must be at least {minimum}: {value}")
    return value
