"""Crash-safe resume of ``fetchtop get``: ``kill -9`` mid-download, Ctrl-C, SIGTERM, then the same
command again, against the fault server (throttled so the first run is caught half-way)."""

from __future__ import annotations

import hashlib
import os
import signal
import stat
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from faultserver.content import KiB, MiB, etag_for, expected_bytes, expected_sha256
from faultserver.server import FaultServer
from faultserver.specs import RequestRecord
from tests.support.control import claimed_bytes, claimed_ranges, parse_range, read_control
from tests.support.processes import Processes, Result, assert_no_traceback
from tests.support.waiting import wait_until_sync

NAME = "resume-me.bin"
SIZE = 8 * MiB
FIRST_RATE = 1 * MiB
"""Per connection in the first run: two connections take about 4 s, and the control file first claims
data after 1-2 s (one 1 MiB write block, then a checkpoint), so the run is caught half-way."""
INTERRUPT_RATE = 512 * KiB
"""Per connection in the first run of the interrupt test: what is in flight when the signal comes
(sent by the server, not yet read) is about a reaction time of this, and a loaded machine reacts in
up to half a second; a lost second of unwritten bytes (2 x 512 KiB) would still show."""
SECOND_RATE = 3 * MiB
"""Per connection in the rerun: still throttled, so the final name can be watched while it runs."""


@dataclass
class Paths:
    """The files of the download under test."""

    dir: Path
    final: Path
    part: Path
    control: Path


def paths_in(directory: Path, name: str = NAME) -> Paths:
    """Where the download saved as ``name`` lives in ``directory``."""
    return Paths(directory, directory / name, directory / (name + ".part"), directory / (name + ".part.json"))


def watch(
    proc: subprocess.Popen[str], p: Paths, until_claimed: int | None, timeout: float
) -> dict[str, object]:
    """Poll while ``proc`` runs: the final name must never hold a partial file. Returns the control
    file once it claims at least ``until_claimed`` bytes (None: watch until the process exits)."""
    deadline = time.monotonic() + timeout
    while True:
        if p.final.exists():
            # The final name appears only by rename of the complete, verified file.
            assert until_claimed is None, "final name appeared during a run that should be interrupted"
            assert p.final.stat().st_size == SIZE, f"partial file under the final name: {p.final.stat()}"
        if until_claimed is not None:
            ctrl = read_control(p.control)
            if ctrl is not None and claimed_bytes(ctrl) >= until_claimed:
                assert p.part.exists()
                return ctrl
        if proc.poll() is not None:
            if until_claimed is not None:
                out, err = proc.communicate(timeout=10)
                raise AssertionError(
                    f"fetchtop exited ({proc.returncode}) before its control file claimed data\n{out}\n{err}"
                )
            return {}
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s (control file: {read_control(p.control)})")
        time.sleep(0.01)


def overlaps(a: int, b: int, ranges: list[tuple[int, int]]) -> bool:
    """Whether ``[a, b)`` shares a byte with any of ``ranges``."""
    return any(a < e and s < b for s, e in ranges)


def check_part_holds_claims(p: Paths, done: list[tuple[int, int]]) -> None:
    """Every byte the control file claims is on disk in the part file, and right."""
    data = p.part.read_bytes()
    want = expected_bytes(NAME, SIZE)
    for a, b in done:
        assert data[a:b] == want[a:b], f"claimed range {a}-{b} is not what the server sent"


def check_resumed_requests(records: list[RequestRecord], done: list[tuple[int, int]]) -> None:
    """The rerun asked only for the missing bytes, with If-Range, never from byte 0 of done data."""
    assert records, "the rerun made no request"
    gaps_start = 0
    for s, e in sorted(done):
        if s > gaps_start:
            break
        gaps_start = max(gaps_start, e)
    first = records[0]
    assert first.range is not None and parse_range(first.range)[0] == gaps_start, (first.range, done)
    for rec in records:
        assert rec.range is not None, "a resumed request without Range"
        start, last = parse_range(rec.range)
        end = SIZE if last is None else last + 1
        if last is not None:
            assert not overlaps(start, end, done), f"re-fetched done bytes: {rec.range} vs {done}"
        else:
            assert not overlaps(start, start + 1, done), f"re-fetched done bytes: {rec.range} vs {done}"
        assert rec.if_range == etag_for(NAME, SIZE), f"resumed without a matching If-Range: {rec.if_range}"


def check_finished(p: Paths, res: Result, others: tuple[str, ...] = ()) -> None:
    """Exit 0, the exact bytes under the final name, nothing else left behind."""
    assert res.returncode == 0, res.describe()
    assert_no_traceback(res.stdout, res.stderr)
    assert res.err_lines == [], res.describe()
    assert sorted(x.name for x in p.dir.iterdir()) == sorted([p.final.name, *others])
    digest = hashlib.sha256(p.final.read_bytes()).hexdigest()
    assert digest == expected_sha256(NAME, SIZE)


@pytest.mark.slow
@pytest.mark.parametrize(
    ("extra", "saved_as", "taken"),
    [
        ([], NAME, None),  # the name from the URL
        (["-o", "chosen.iso"], "chosen.iso", None),  # an explicit name
        ([], "resume-me.1.bin", NAME),  # the URL's name was taken: the numbered part file is found again
        (["-o", "out.bin"], "out.1.bin", "out.bin"),  # the same with -o: out.1.bin resumes, no out.2.bin
    ],
    ids=["url-name", "output", "taken-name", "taken-output"],
)
def test_kill_9_mid_download_then_same_command_resumes(
    threaded_fault_server: FaultServer, procs: Processes, extra: list[str], saved_as: str, taken: str | None
) -> None:
    srv = threaded_fault_server
    url = srv.add_file(NAME, SIZE, rate=FIRST_RATE)
    p = paths_in(procs.cwd / "dl", saved_as)
    others: tuple[str, ...] = ()
    if taken:
        p.dir.mkdir()
        (p.dir / taken).write_bytes(b"precious")
        others = (taken,)
    args = ["get", "-x", "2", "-d", "dl", *extra, url]

    first = procs.start(args)
    watch(first, p, until_claimed=1, timeout=20)
    os.kill(first.pid, signal.SIGKILL)
    first.wait(timeout=10)
    assert first.returncode == -signal.SIGKILL

    # What the crash left: part and control file, never a file under the final name.
    assert not p.final.exists()
    assert p.part.exists() and p.control.exists()
    left = {x.name for x in p.dir.iterdir()} - set(others)
    assert all(n.startswith(saved_as + ".part") for n in left), left
    ctrl = read_control(p.control)
    done = claimed_ranges(ctrl)
    claimed = claimed_bytes(ctrl)
    assert 0 < claimed < SIZE, done
    check_part_holds_claims(p, done)

    stats = srv.stats(NAME)
    wait_until_sync(lambda: stats.active == 0, "the server to notice the dead client before counting")
    before_records, before_sent = len(stats.records), stats.bytes_sent
    srv.update(NAME, rate=SECOND_RATE)

    second = procs.start(args)
    watch(second, p, until_claimed=None, timeout=30)
    res = procs.finish(second, timeout=30)

    check_finished(p, res, others)
    if taken:
        assert (p.dir / taken).read_bytes() == b"precious"
    check_resumed_requests(stats.records[before_records:], done)
    resent = stats.bytes_sent - before_sent
    # Only the missing bytes again (plus what an open-ended probe had in flight when it was cut).
    assert resent <= SIZE - claimed + 1 * MiB, (resent, SIZE - claimed)
    assert stats.bytes_sent < 2 * SIZE, stats.bytes_sent


@pytest.mark.slow
@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_interrupt_exits_130_saves_state_and_resumes(
    threaded_fault_server: FaultServer, procs: Processes, sig: signal.Signals
) -> None:
    srv = threaded_fault_server
    url = srv.add_file(NAME, SIZE, rate=INTERRUPT_RATE)
    p = paths_in(procs.cwd / "dl")
    args = ["get", "-x", "2", "-d", "dl", url]

    first = procs.start(args)
    watch(first, p, until_claimed=1, timeout=20)
    first.send_signal(sig)
    res1 = procs.finish(first, timeout=15)

    assert res1.returncode == 130, res1.describe()
    assert_no_traceback(res1.stdout, res1.stderr)
    assert len(res1.err_lines) == 1, res1.describe()
    assert "interrupted" in res1.err_lines[0], res1.describe()
    assert not p.final.exists()
    assert p.part.exists() and p.control.exists()
    ctrl = read_control(p.control)
    done = claimed_ranges(ctrl)
    claimed = claimed_bytes(ctrl)
    assert 0 < claimed < SIZE, done
    check_part_holds_claims(p, done)

    stats = srv.stats(NAME)
    wait_until_sync(lambda: stats.active == 0, "the server to end the stopped client's responses")
    # A clean stop saves everything that arrived: the control file accounts for the bytes served
    # but for what was still in the socket buffers (well under a MiB at this rate, see INTERRUPT_RATE).
    assert stats.bytes_sent - claimed < 1 * MiB, (stats.bytes_sent, claimed)
    before_records, before_sent = len(stats.records), stats.bytes_sent
    srv.update(NAME, rate=SECOND_RATE)

    second = procs.start(args)
    watch(second, p, until_claimed=None, timeout=30)
    res2 = procs.finish(second, timeout=30)

    check_finished(p, res2)
    check_resumed_requests(stats.records[before_records:], done)
    assert stats.bytes_sent - before_sent <= SIZE - claimed + 1 * MiB
    assert stats.bytes_sent < 2 * SIZE


@pytest.mark.slow
def test_get_gives_the_final_file_the_umask_mode_and_keeps_part_files_private(
    threaded_fault_server: FaultServer, procs: Processes
) -> None:
    srv = threaded_fault_server
    url = srv.add_file(NAME, SIZE, rate=FIRST_RATE)
    p = paths_in(procs.cwd / "dl")
    first = procs.start(["get", "-x", "1", "-d", "dl", url], umask=0o002)
    wait_until_sync(lambda: p.control.exists() and p.part.exists(), "the part and control files")
    # The part file holds unverified bytes and the control file the URL with its tokens: 0600.
    assert stat.S_IMODE(p.part.stat().st_mode) == 0o600
    assert stat.S_IMODE(p.control.stat().st_mode) == 0o600
    srv.update(NAME, rate=None)
    res = procs.finish(first, timeout=30)
    check_finished(p, res)
    assert stat.S_IMODE(p.final.stat().st_mode) == 0o664  # 0o666 & ~umask, as any program would make it
