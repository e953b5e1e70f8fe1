"""The benchmark harness (bench/): what it computes and what it sets up, not how fast anything is.

Per-pair medians, the scenario and size options, nginx's log with the TLS fields, the HTTPS server
with the CA the benchmark makes (fetchtop trusts it through SSL_CERT_FILE, as the TLS rows rely on),
and the tmpfs target. Speed itself is measured by ``make bench``, never here."""

from __future__ import annotations

import hashlib
import os
import shutil
from pathlib import Path

import pytest

from bench.records import RunRecord
from bench.report import pair, summarise, targets
from bench.server import Nginx, parse_log_line
from bench.settings import (
    ALL_SCENARIOS,
    QUICK_SCALE,
    MiB,
    Settings,
    SettingsError,
    parse_scenarios,
    parse_size,
)
from bench.tls import make_certificates
from bench.tmpfs import Tmpfs
from tests.support.nginx import NGINX
from tests.support.processes import Processes, assert_clean_success


def run(scenario: int, tool: str, round_no: int, wall: float, cpu: float, *, ok: bool = True,
        warmup: bool = False) -> RunRecord:  # fmt: skip
    """A finished run as the harness records it."""
    return RunRecord(
        scenario, tool, round_no, warmup, f"s{scenario}-{tool}-r{round_no}", ok=ok, wall=wall,
        cpu_user=cpu, payload_bytes=64 * MiB, file_bytes=64 * MiB,
    )  # fmt: skip


def test_pairs_are_runs_of_the_same_round_and_their_ratios_medians() -> None:
    # The machine is three times slower in round 2; each pair still says fetchtop takes 1.5x and
    # 2x the CPU. Round 0 is a warm-up and round 3's reference failed: neither forms a pair.
    records = [
        run(8, "fetchtop", 0, 9.0, 9.0, warmup=True), run(8, "curl", 0, 1.0, 1.0, warmup=True),
        run(8, "fetchtop", 1, 1.5, 2.0), run(8, "curl", 1, 1.0, 1.0),
        run(8, "fetchtop", 2, 4.5, 6.0), run(8, "curl", 2, 3.0, 3.0),
        run(8, "fetchtop", 3, 1.6, 2.0), run(8, "curl", 3, 0.1, 0.1, ok=False),
        run(8, "fetchtop", 4, 1.8, 2.2), run(8, "curl", 4, 1.0, 1.0),
    ]  # fmt: skip
    found = pair(records, 8, "fetchtop", "curl")
    assert found is not None
    assert found.pairs == 3
    assert found.time_ratio == pytest.approx(1.5)
    assert found.cpu_ratio == pytest.approx(2.0)
    assert found.speed_ratio == pytest.approx(1 / 1.5)
    assert found.time_diff == pytest.approx(0.8)  # median of 0.5, 1.5, 0.8
    assert pair(records, 8, "fetchtop", "axel") is None


def test_targets_use_the_pairs_and_name_the_bound() -> None:
    records = [run(9, "fetchtop", r, 1.05 * (r + 1), 1.2 * (r + 1)) for r in range(3)]
    records += [run(9, "curl", r, 1.0 * (r + 1), 1.0 * (r + 1)) for r in range(3)]
    found = {t.label: t for t in targets(records, summarise(records), [9], {})}
    tls = found["S9 TLS, one connection: time and CPU vs curl"]
    assert tls.measured == "1.05x / 1.20x (3 pairs)"
    assert tls.needed == "<= 1.10x"
    assert tls.passed is False  # the CPU ratio is over the bound although the time is within it


def test_a_row_that_could_not_run_says_why() -> None:
    why = "n/a (no tmpfs: cannot mount a tmpfs (not root) and /dev/shm is not a tmpfs)"
    records = [RunRecord(12, tool, 0, False, "s12-none", error=why) for tool in ("fetchtop", "curl")]
    (found,) = [t for t in targets(records, summarise(records), [12], {}) if t.label.startswith("S12")]
    assert found.passed is None
    assert found.result == "n/a (no tmpfs: cannot mount a tmpfs (not root) and /dev/shm is not a tmpfs)"


def test_scenarios_are_chosen_by_number_or_name() -> None:
    assert parse_scenarios("") == ALL_SCENARIOS
    assert parse_scenarios("all") == ALL_SCENARIOS
    assert parse_scenarios("tls-x16, 9,1") == (1, 9, 11)
    with pytest.raises(SettingsError, match="no such scenario 'tls'"):
        parse_scenarios("tls")
    assert parse_scenarios("checkpoints") == (13,)
    with pytest.raises(SettingsError, match="no such scenario '14'"):
        parse_scenarios("14")


def test_sizes_and_quick_mode() -> None:
    assert parse_size("256M") == 256 * MiB
    assert parse_size("1g") == 1024 * MiB
    assert parse_size("512MiB") == 512 * MiB
    with pytest.raises(SettingsError):
        parse_size("lots")
    quick = Settings.from_args(["--quick", "--only", "tls-x1"], env={})
    assert (quick.scenarios, quick.scale, quick.runs, quick.complete) == ((9,), QUICK_SCALE, 1, False)
    sized = Settings.from_args(["--size", "256M", "--runs", "7"], env={})
    assert (sized.big_size, sized.runs, sized.complete) == (256 * MiB, 7, False)
    # The options win over the variables, which still work on their own.
    env = {"BENCH_SCENARIOS": "startup", "BENCH_RUNS": "4"}
    assert Settings.from_args([], env=env).scenarios == (12,)
    assert Settings.from_args(["--only", "8", "--runs", "2"], env=env).runs == 2
    assert Settings.from_args([], env={}).complete


def test_log_lines_carry_the_negotiated_tls() -> None:
    tls = parse_log_line(
        '1.5 206 1048837 1048576 0.004 7 "GET /f/s9-fetchtop-r1/big.bin HTTP/1.1" "bytes=0-1048575" '
        "TLSv1.3 TLS_AES_256_GCM_SHA384"
    )
    plain = parse_log_line('1.5 200 300 256 0.001 8 "GET /f/s8-curl-r1/one.bin HTTP/1.1" "-" - -')
    assert tls is not None and plain is not None
    assert (tls.run_id, tls.status, tls.tls) == ("s9-fetchtop-r1", 206, "TLSv1.3 TLS_AES_256_GCM_SHA384")
    assert (plain.run_id, plain.tls) == ("s8-curl-r1", "-")


@pytest.mark.nginx
def test_https_with_the_benchmarks_ca_is_trusted_by_fetchtop_through_ssl_cert_file(
    tmp_path: Path, procs: Processes
) -> None:
    assert Path(NGINX).exists(), f"nginx is required for this test ({NGINX})"
    openssl = shutil.which("openssl")
    assert openssl is not None, "openssl is required for this test"
    data = tmp_path / "data"
    data.mkdir()
    body = os.urandom(3 * MiB + 17)
    (data / "big.bin").write_bytes(body)
    certificates = make_certificates(openssl, tmp_path / "tls")
    server = Nginx(NGINX, tmp_path / "nginx", data, certificates)
    with server:
        url = server.url("f", "s9-fetchtop-r1", "big.bin", tls=True)
        untrusted = procs.run(["get", "-q", "-x4", "-d", "untrusted", url])
        procs.env["SSL_CERT_FILE"] = str(certificates.ca)
        trusted = procs.run(["get", "-q", "-x4", "-d", "trusted", url])
        server.settle("s9-fetchtop-r1", quiet=0.1, limit=2.0)
        traffic = server.traffic()
    assert untrusted.returncode != 0, untrusted.describe()
    assert not (procs.cwd / "untrusted" / "big.bin").exists()
    assert_clean_success(trusted)
    got = (procs.cwd / "trusted" / "big.bin").read_bytes()
    assert hashlib.sha256(got).digest() == hashlib.sha256(body).digest()
    seen = traffic["s9-fetchtop-r1"]
    assert seen.tls and all(name.startswith("TLSv1.") for name in seen.tls), seen


def test_the_tmpfs_target_is_a_tmpfs_of_the_asked_size_and_goes_away(tmp_path: Path) -> None:
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root (CI runs as root)")
    mount_point = tmp_path / "tmpfs"
    with Tmpfs(mount_point, 24 * MiB + 1) as target:
        assert target.path == mount_point and mount_point.is_mount()
        stats = os.statvfs(mount_point)
        assert stats.f_blocks * stats.f_frsize == 25 * MiB  # rounded up to whole MiB
        assert "tmpfs" in Path("/proc/mounts").read_text().split(str(mount_point), 1)[1].split()[0]
    assert not mount_point.is_mount()
