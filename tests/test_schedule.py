"""The bandwidth schedule's rules: parsing, the rule at a time and when it next changes."""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from engine.schedule import DAY, Rule, Schedule, ScheduleError, parse_schedule

K, M = 1024, 1024**2
DAYTIME = "08:00-18:00=1M,18:00-08:00=none"


def at(hour: int, minute: int = 0, second: int = 0, day: int = 3) -> datetime:
    return datetime(2026, 12, day, hour, minute, second)


def test_parse_the_issues_example() -> None:
    schedule = parse_schedule(DAYTIME)
    assert schedule.rules == (Rule(8 * 60, 18 * 60, M), Rule(18 * 60, 8 * 60, None))
    assert [r.span for r in schedule.rules] == ["08:00-18:00", "18:00-08:00"]


@pytest.mark.parametrize(
    ("spec", "rule"),
    [
        ("9:30-17:00=500K", Rule(570, 1020, 500 * K)),
        (" 00:00-24:00 = 2M ", Rule(0, DAY, 2 * M)),
        ("18:00-24:00=off", Rule(1080, DAY, None)),
        ("22:00-00:00=unlimited", Rule(1320, 0, None)),
        ("01:00-02:00=0", Rule(60, 120, None)),
        ("01:00-02:00=NONE", Rule(60, 120, None)),
    ],
)
def test_parse_one_rule(spec: str, rule: Rule) -> None:
    assert parse_schedule(spec).rules == (rule,)


@pytest.mark.parametrize(
    ("spec", "problem"),
    [
        ("", "empty"),
        ("08:00-18:00=1M,,18:00-20:00=2M", "empty rule"),
        ("08:00-18:00", "HH:MM-HH:MM=RATE"),
        ("08:00=1M", "HH:MM-HH:MM=RATE"),
        ("8-18=1M", "is not a time HH:MM"),
        ("25:00-18:00=1M", "not a time of day"),
        ("08:60-18:00=1M", "not a time of day"),
        ("24:00-08:00=1M", "not a time of day"),
        ("08:00-08:00=1M", "empty or ambiguous"),
        ("08:00-18:00=fast", "invalid rate"),
        ("08:00-18:00=", "no rate"),
        ("08:00-18:00=1M,17:00-19:00=2M", "08:00-18:00 and 17:00-19:00 overlap"),
        ("22:00-06:00=1M,05:00-07:00=2M", "22:00-06:00 and 05:00-07:00 overlap"),
        ("22:00-06:00=1M,23:00-23:30=2M", "overlap"),
        ("00:00-24:00=1M,12:00-13:00=2M", "overlap"),
        (",".join([f"{h:02d}:00-{h:02d}:01=1M" for h in range(24)] * 5), "120 rules, at most 96"),
    ],
)
def test_bad_specs_name_the_problem(spec: str, problem: str) -> None:
    with pytest.raises(ScheduleError, match=problem) as info:
        parse_schedule(spec)
    assert "\n" not in str(info.value)


def test_active_rule_and_next_change() -> None:
    schedule = parse_schedule(DAYTIME)
    day = schedule.active(at(12, 30))
    assert (day.rule, day.limit, day.next_change) == (schedule.rules[0], M, at(18))
    evening = schedule.active(at(18))  # a rule starts at its first minute
    assert (evening.rule, evening.limit, evening.next_change) == (schedule.rules[1], None, at(8, day=4))
    night = schedule.active(at(2))  # the wrapping rule covers the small hours too
    assert (night.rule, night.next_change) == (schedule.rules[1], at(8))


def test_a_gap_takes_the_default_limit() -> None:
    schedule = parse_schedule("08:00-18:00=1M")
    gap = schedule.active(at(19), default=5 * M)
    assert (gap.rule, gap.limit, gap.next_change) == (None, 5 * M, at(8, day=4))
    assert schedule.active(at(7, 59, 59)).limit is None  # no default: no limit
    assert schedule.active(at(7, 59, 59)).next_change == at(8)


def test_neighbours_with_the_same_rate_still_change() -> None:
    schedule = parse_schedule("08:00-12:00=1M,12:00-18:00=1M")
    assert schedule.active(at(9)).next_change == at(12)
    assert schedule.active(at(12)).rule == schedule.rules[1]


def test_one_rule_all_day_never_changes() -> None:
    schedule = parse_schedule("00:00-24:00=2M")
    for hour in (0, 12, 23):
        active = schedule.active(at(hour, 59, 59))
        assert (active.rule, active.limit, active.next_change) == (schedule.rules[0], 2 * M, None)


MINUTES = st.integers(min_value=0, max_value=DAY - 1)


@st.composite
def schedules(draw: st.DrawFn) -> Schedule:
    """Non-overlapping rules: cut points around the clock, each piece a rule or a gap."""
    cuts = sorted(draw(st.sets(MINUTES, min_size=2, max_size=8)))
    rotate = draw(st.booleans())  # the last piece may wrap midnight
    pieces = list(zip(cuts, [*cuts[1:], cuts[0]], strict=True))
    if not rotate:
        pieces = pieces[:-1]
    chosen = [p for p in pieces if draw(st.booleans())] or pieces[:1]
    parts = []
    for start, end in chosen:
        rate = draw(st.sampled_from(["none", "1M", "500K", "2M"]))
        parts.append(f"{start // 60:02d}:{start % 60:02d}-{end // 60:02d}:{end % 60:02d}={rate}")
    return parse_schedule(",".join(parts))


TIMES = st.datetimes(min_value=datetime(2020, 1, 1), max_value=datetime(2030, 1, 1))


@given(schedules(), TIMES)
def test_next_change_is_the_first_change_within_a_day(schedule: Schedule, now: datetime) -> None:
    active = schedule.active(now)
    assert active.next_change is not None  # generated schedules never cover a whole day with one rule
    assert now < active.next_change <= now + timedelta(days=1)
    assert active.next_change.second == active.next_change.microsecond == 0
    # Just before the change the rule is still the one at now; at the change it is another.
    before = schedule.active(active.next_change - timedelta(microseconds=1))
    assert before.rule == active.rule
    assert schedule.active(active.next_change).rule != active.rule
    # And every minute in between has that same rule.
    t = now
    while t < active.next_change - timedelta(minutes=1):
        t += timedelta(minutes=1)
        assert schedule.active(t).rule == active.rule


@given(MINUTES, MINUTES)
def test_a_wrapping_rule_covers_both_sides_of_midnight(start: int, end: int) -> None:
    assume(start != end)
    spec = f"{start // 60:02d}:{start % 60:02d}-{end // 60:02d}:{end % 60:02d}=1M"
    rule = parse_schedule(spec).rules[0]
    covered = sum(rule.covers(m) for m in range(DAY))
    assert covered == (end - start) % DAY
    if end < start:
        assert rule.covers(DAY - 1) and rule.covers(0) == (end > 0)
