"""``--schedule`` from the command line, as real processes: usage errors, ``get`` and the daemon.

The rules are built around the local time now (an hour back, two ahead), so the one rule is active
for the whole test and its next change is known.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import datetime

import pytest

from faultserver.content import KiB, MiB, file_matches
from faultserver.server import FaultServer
from tests.support.daemons import Daemons, daemon_area
from tests.support.processes import Processes, assert_clean_success, assert_no_traceback


@pytest.fixture
def daemons() -> Iterator[Daemons]:
    with daemon_area() as area:
        yield area


def around_now(rate: str) -> tuple[str, str, str]:
    """A rule covering now: ``(spec, span, end)``, e.g. ``("09:12-12:12=4M", "09:12-12:12", "12:12")``."""
    now = datetime.now()
    minute = now.hour * 60 + now.minute
    start, end = (minute - 60) % 1440, (minute + 120) % 1440
    span = f"{start // 60:02d}:{start % 60:02d}-{end // 60:02d}:{end % 60:02d}"
    return f"{span}={rate}", span, span[-5:]


@pytest.mark.parametrize(
    ("command", "spec", "problem"),
    [
        (["get"], "08:00-18:00=1M,17:00-19:00=2M", "08:00-18:00 and 17:00-19:00 overlap"),
        (["get"], "8-18=1M", "'8' is not a time HH:MM"),
        ([], "08:00-18:00=fast", "invalid rate 'fast'"),  # the dashboard: fails before it starts
        (["daemon"], "25:00-01:00=1M", "'25:00' is not a time of day"),
        (["add"], "08:00-18:00=1M", "an option of 'fetchtop daemon'"),
    ],
)
def test_a_bad_schedule_is_one_line_and_exit_2(
    procs: Processes, command: list[str], spec: str, problem: str
) -> None:
    res = procs.run([*command, "--schedule", spec, "http://127.0.0.1:9/never.bin"])
    assert res.returncode == 2, res.describe()
    assert_no_traceback(res.stdout, res.stderr)
    assert len(res.err_lines) == 1 and problem in res.err_lines[0], res.describe()
    assert res.err_lines[0].startswith("fetchtop: ")
    assert list(procs.cwd.iterdir()) == []  # nothing downloaded, nothing started


def test_get_applies_the_schedule_and_says_so(threaded_fault_server: FaultServer, procs: Processes) -> None:
    url = threaded_fault_server.add_file("timed.bin", 512 * KiB)
    spec, span, end = around_now("4M")
    res = procs.run(["get", "--schedule", spec, "--limit-rate", "1M", url])
    assert_clean_success(res)
    assert file_matches(str(procs.cwd / "timed.bin"), "timed.bin", 512 * KiB)
    # The rule's limit, not --limit-rate (which would apply only outside the rule).
    assert f"limit 4.0 MiB/s (schedule {span}, next change {end})" in res.out_lines, res.describe()


def test_the_daemon_reports_its_schedule_and_a_manual_limit_over_it(daemons: Daemons) -> None:
    spec, span, end = around_now("3M")
    daemons.start("--schedule", spec)
    snapshot = daemons.snapshot()
    assert snapshot["speed_limit"] == 3 * MiB
    schedule = snapshot["schedule"]
    assert (schedule["rule"], schedule["limit"], schedule["overridden"]) == (span, 3 * MiB, False)
    assert datetime.fromtimestamp(schedule["next_change"]).strftime("%H:%M") == end
    assert f"limit 3.0 MiB/s (schedule {span}, next change {end})" in daemons.ok("ls")

    daemons.ok("limit", "500K")
    snapshot = json.loads(daemons.ok("ls", "--json"))
    assert snapshot["speed_limit"] == 500 * KiB and snapshot["schedule"]["overridden"] is True
    line = f"limit 500.0 KiB/s (set by hand over schedule {span}, next change {end})"
    assert line in daemons.ok("ls")
    daemons.ok("stop")
    assert daemons.started[-1].wait_exit() == 0
