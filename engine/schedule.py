"""A bandwidth schedule: the global speed limit by local time of day (``--schedule``). Pure.

A schedule is rules ``HH:MM-HH:MM=RATE`` separated by commas; RATE is what ``--limit-rate`` reads
(``500K``, ``2M``) or ``none`` for no limit. A rule whose end is not after its start wraps midnight
(``18:00-08:00``); ``24:00`` may end a rule. Rules must not overlap. Where no rule covers the time
(a gap), the caller's default limit applies (``--limit-rate``, itself none unless given).

Nothing here reads a clock: times are naive local :class:`datetime.datetime` values passed in.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass
from datetime import datetime, timedelta

from engine.models import ScheduleStatus
from engine.units import parse_rate

DAY = 24 * 60
"""Minutes in a day."""
MAX_RULES = 96
"""The most rules a schedule may have (one per quarter hour): more is a mistake, not a plan."""
NO_LIMIT = ("none", "off", "unlimited", "0")
"""Words a rule's rate may be for no limit."""

_TIME = re.compile(r"^\s*(\d{1,2}):(\d{2})\s*$", re.ASCII)


class ScheduleError(ValueError):
    """A schedule spec that cannot be used; the message is one line naming the problem."""


@dataclass(frozen=True)
class Rule:
    """One rule: the limit from ``start`` until ``end``, in minutes after midnight."""

    start: int
    """First minute covered, 0..1439."""
    end: int
    """Minute the rule stops covering, 1..1440; at or before ``start`` when it wraps midnight."""
    limit: int | None
    """Bytes per second while the rule is active; None for no limit."""

    @property
    def wraps(self) -> bool:
        """Whether the rule runs past midnight."""
        return self.end <= self.start

    @property
    def span(self) -> str:
        """``08:00-18:00``."""
        return f"{_clock(self.start)}-{_clock(self.end)}"

    def covers(self, minute: float) -> bool:
        """Whether the rule is active ``minute`` minutes after midnight (0 <= minute < 1440)."""
        if self.wraps:
            return minute >= self.start or minute < self.end
        return self.start <= minute < self.end

    def pieces(self) -> list[tuple[int, int]]:
        """The rule as half-open minute ranges within one day (two when it wraps)."""
        if not self.wraps:
            return [(self.start, self.end)]
        return [(r0, r1) for r0, r1 in ((self.start, DAY), (0, self.end)) if r0 < r1]


@dataclass(frozen=True)
class Active:
    """What a schedule says at one moment."""

    rule: Rule | None
    """The rule covering the moment; None in a gap."""
    limit: int | None
    """The limit to apply: the rule's, or the default in a gap (None: unlimited)."""
    next_change: datetime | None
    """The first later moment another rule (or a gap) begins; None if the schedule never changes."""


@dataclass(frozen=True)
class Schedule:
    """Rules by time of day; build with :func:`parse_schedule`."""

    rules: tuple[Rule, ...]
    """The rules, in the order given."""

    def rule_at(self, minute: float) -> Rule | None:
        """The rule covering ``minute`` minutes after midnight, if any."""
        for rule in self.rules:
            if rule.covers(minute):
                return rule
        return None

    def active(self, now: datetime, default: int | None = None) -> Active:
        """The rule at local time ``now``, the limit it asks for and when that next changes."""
        minute = _minute_of_day(now)
        rule = self.rule_at(minute)
        limit = rule.limit if rule is not None else default
        midnight = now.replace(hour=0, minute=0, second=0, microsecond=0)
        # Rules only start or end at these minutes; the first one later whose rule differs is the
        # change. Over two days so one past midnight is found too.
        bounds = sorted({r.start for r in self.rules} | {r.end % DAY for r in self.rules})
        for day in (0, 1):
            for bound in bounds:
                at = day * DAY + bound
                if at > minute and self.rule_at(bound) != rule:
                    return Active(rule, limit, midnight + timedelta(minutes=at))
        return Active(rule, limit, None)  # one rule all day: nothing ever changes


def parse_schedule(spec: str) -> Schedule:
    """The schedule ``spec`` describes, or ScheduleError naming what is wrong."""
    items = spec.split(",")
    if not spec.strip():
        raise ScheduleError("schedule is empty (expected e.g. 08:00-18:00=1M,18:00-08:00=none)")
    if len(items) > MAX_RULES:
        raise ScheduleError(f"schedule has {len(items)} rules, at most {MAX_RULES} allowed")
    rules = tuple(_parse_rule(item) for item in items)
    for i, a in enumerate(rules):
        for b in rules[:i]:
            if any(s0 < e1 and s1 < e0 for s0, e0 in a.pieces() for s1, e1 in b.pieces()):
                raise ScheduleError(f"schedule rules {b.span} and {a.span} overlap")
    return Schedule(rules)


def _parse_rule(item: str) -> Rule:
    text = item.strip()
    if not text:
        raise ScheduleError("schedule has an empty rule (two commas in a row?)")
    span, sep, rate_text = text.partition("=")
    first, dash, second = span.partition("-")
    if not sep or not dash:
        raise ScheduleError(f"schedule rule {text!r} must be HH:MM-HH:MM=RATE (or =none)")
    start, end = _parse_time(first, text, allow_24=False), _parse_time(second, text, allow_24=True)
    if start == end % DAY and end != DAY:
        raise ScheduleError(f"schedule rule {text!r} is empty or ambiguous (for all day use 00:00-24:00)")
    rate = rate_text.strip()
    if rate.lower() in NO_LIMIT:
        limit = None
    else:
        try:
            limit = parse_rate(rate)
        except ValueError as exc:
            raise ScheduleError(f"schedule rule {text!r}: {exc}") from None
        if limit is None:  # an empty rate
            raise ScheduleError(f"schedule rule {text!r} has no rate (write e.g. =1M or =none)")
    return Rule(start, end, limit)


def _parse_time(text: str, rule: str, allow_24: bool) -> int:
    m = _TIME.match(text)
    if not m:
        raise ScheduleError(f"schedule rule {rule!r}: {text.strip()!r} is not a time HH:MM")
    hours, minutes = int(m.group(1)), int(m.group(2))
    if allow_24 and (hours, minutes) == (24, 0):
        return DAY
    if hours > 23 or minutes > 59:
        raise ScheduleError(f"schedule rule {rule!r}: {text.strip()!r} is not a time of day")
    return hours * 60 + minutes


def _minute_of_day(t: datetime) -> float:
    return t.hour * 60 + t.minute + (t.second + t.microsecond / 1e6) / 60


def _clock(minute: int) -> str:
    return f"{minute // 60:02d}:{minute % 60:02d}"


def status_note(status: ScheduleStatus, short: bool = False) -> str:
    """Where the schedule stands, for people: ``schedule 08:00-18:00, next change 18:00``.

    ``short`` gives at most 17 characters for the dashboard's summary: ``sched till 18:00``,
    ``manual till 18:00`` (a limit set by hand), ``gap till 08:00`` (no rule), ``sched all day``.
    """
    when = None if status.next_change is None else time.strftime("%H:%M", time.localtime(status.next_change))
    if short:
        what = "manual" if status.overridden else "gap" if status.rule is None else "sched"
        return f"{what} all day" if when is None else f"{what} till {when}"
    what = "no schedule rule" if status.rule is None else f"schedule {status.rule}"
    if status.overridden:
        what = f"set by hand over {what}"
    return f"{what}, no change" if when is None else f"{what}, next change {when}"
