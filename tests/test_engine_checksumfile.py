"""``--checksum-file`` in the engine: each download is checked against its line in the table, by the
name it was given before numbering; no line fails the task (unless allowed); ``--checksum`` wins."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from engine.checksumfile import parse, to_table
from engine.client import EngineError
from engine.engine import Engine
from engine.events import TaskVerifying
from engine.models import TaskOptions, TaskState
from faultserver.content import KiB, expected_bytes
from faultserver.server import FaultServer
from tests.support.downloads import (
    assert_exact,
    download,
    fast_config,
    listing,
    opts,
    wait_for_state,
    wait_until_done,
)
from tests.support.events import EventLog

SIZE = 300 * KiB + 7
OTHER = "0" * 64


def sha256(name: str, size: int = SIZE) -> str:
    """The SHA-256 of the fault server's content for a file."""
    return hashlib.sha256(expected_bytes(name, size)).hexdigest()


def with_sums(directory: Path, text: str, **changes: Any) -> TaskOptions:
    """Test options carrying the table of a checksum file's text."""
    return opts(directory, checksum_table=to_table(parse(text)), checksum_source="SHA256SUMS", **changes)


async def test_a_matching_line_verifies(fault_server: FaultServer, download_dir: Path) -> None:
    url = fault_server.add_file("good.iso", SIZE)
    text = f"{OTHER}  other.iso\n{sha256('good.iso')} *./images/good.iso\n"
    async with Engine(fast_config()) as engine, EventLog(engine) as log:
        task = await download(engine, url, with_sums(download_dir, text))
    assert task.state is TaskState.COMPLETED, task.error
    assert_exact(task.path, "good.iso", SIZE)
    assert len(log.of(TaskVerifying, task.id)) == 1
    # Snapshots do not carry the table (it would go out with every one of them).
    assert task.options.checksum_table == () and task.options.checksum_source == "SHA256SUMS"


async def test_bsd_line_with_another_algorithm(fault_server: FaultServer, download_dir: Path) -> None:
    url = fault_server.add_file("tagged.bin", SIZE)
    digest = hashlib.sha3_256(expected_bytes("tagged.bin", SIZE)).hexdigest()
    async with Engine(fast_config()) as engine, EventLog(engine) as log:
        task = await download(engine, url, with_sums(download_dir, f"SHA3-256 (tagged.bin) = {digest}\n"))
    assert task.state is TaskState.COMPLETED, task.error
    assert len(log.of(TaskVerifying, task.id)) == 1


async def test_mismatch_fails_with_both_digests(fault_server: FaultServer, download_dir: Path) -> None:
    url = fault_server.add_file("bad.iso", SIZE)
    async with Engine(fast_config()) as engine:
        task = await download(engine, url, with_sums(download_dir, f"{OTHER}  bad.iso\n"))
    assert task.state is TaskState.FAILED
    assert task.error == f"checksum mismatch: expected sha256={OTHER}, got {sha256('bad.iso')}"
    assert listing(download_dir) == []


async def test_no_line_fails_before_the_body_is_fetched(
    fault_server: FaultServer, download_dir: Path
) -> None:
    url = fault_server.add_file("unlisted.iso", 4 * 1024 * KiB)
    async with Engine(fast_config()) as engine, EventLog(engine) as log:
        task = await download(engine, url, with_sums(download_dir, f"{OTHER}  listed.iso\n"))
    assert task.state is TaskState.FAILED
    assert task.error == ("no checksum for 'unlisted.iso' in SHA256SUMS (--checksum-missing=ok allows that)")
    assert log.of(TaskVerifying, task.id) == []
    assert listing(download_dir) == []  # the name was never claimed: no part or control file
    # Only the probe's answer went out, and the probe asks for the first piece only.
    assert fault_server.stats("unlisted.iso").bytes_sent < 4 * 1024 * KiB


async def test_no_line_is_fine_when_allowed(fault_server: FaultServer, download_dir: Path) -> None:
    url = fault_server.add_file("unlisted.bin", SIZE)
    options = with_sums(download_dir, f"{OTHER}  listed.iso\n", checksum_missing_ok=True)
    async with Engine(fast_config()) as engine, EventLog(engine) as log:
        task = await download(engine, url, options)
    assert task.state is TaskState.COMPLETED, task.error
    assert_exact(task.path, "unlisted.bin", SIZE)
    assert log.of(TaskVerifying, task.id) == []


async def test_a_listed_file_is_still_checked_when_missing_ones_are_allowed(
    fault_server: FaultServer, download_dir: Path
) -> None:
    url = fault_server.add_file("listed.iso", SIZE)
    options = with_sums(download_dir, f"{OTHER}  listed.iso\n", checksum_missing_ok=True)
    async with Engine(fast_config()) as engine:
        task = await download(engine, url, options)
    assert task.state is TaskState.FAILED
    assert task.error is not None and task.error.startswith("checksum mismatch")


async def test_explicit_checksum_wins_over_the_file(fault_server: FaultServer, download_dir: Path) -> None:
    url = fault_server.add_file("both.bin", SIZE)
    options = with_sums(download_dir, f"{OTHER}  both.bin\n", checksum=f"sha256={sha256('both.bin')}")
    async with Engine(fast_config()) as engine:
        task = await download(engine, url, options)
    assert task.state is TaskState.COMPLETED, task.error


async def test_content_disposition_name_is_looked_up(fault_server: FaultServer, download_dir: Path) -> None:
    url = fault_server.add_file(
        "get", SIZE, path="/download", content_disposition='attachment; filename="release.tar.gz"'
    )
    text = f"{OTHER}  download\n{sha256('get')}  release.tar.gz\n"
    async with Engine(fast_config()) as engine:
        task = await download(engine, url, with_sums(download_dir, text))
    assert task.state is TaskState.COMPLETED, task.error
    assert task.name == "release.tar.gz"


async def test_the_name_before_numbering_and_output_are_looked_up(
    fault_server: FaultServer, download_dir: Path
) -> None:
    (download_dir / "taken.bin").write_bytes(b"keep me")
    (download_dir / "mine.bin").write_bytes(b"keep me")
    url = fault_server.add_file("taken.bin", SIZE)
    other = fault_server.add_file("remote.bin", SIZE)
    text = f"{sha256('taken.bin')}  taken.bin\n{sha256('remote.bin')}  mine.bin\n{OTHER}  remote.bin\n"
    async with Engine(fast_config()) as engine, EventLog(engine) as log:
        numbered = await download(engine, url, with_sums(download_dir, text))
        named = await download(engine, other, with_sums(download_dir, text, output="mine.bin"))
    assert numbered.state is TaskState.COMPLETED, numbered.error
    assert numbered.name == "taken.1.bin"
    assert named.state is TaskState.COMPLETED, named.error
    assert named.name == "mine.1.bin"
    assert len(log.of(TaskVerifying)) == 2


async def test_lines_that_disagree_fail_the_task(fault_server: FaultServer, download_dir: Path) -> None:
    url = fault_server.add_file("twice.bin", SIZE)
    text = f"{sha256('twice.bin')}  a/twice.bin\n{OTHER}  b/twice.bin\n"
    async with Engine(fast_config()) as engine:
        task = await download(engine, url, with_sums(download_dir, text))
    assert task.state is TaskState.FAILED
    assert task.error == "the checksum file has different sha256 digests for 'twice.bin' (SHA256SUMS)"


async def test_the_table_survives_a_restart(
    fault_server: FaultServer, download_dir: Path, tmp_path: Path
) -> None:
    session = tmp_path / "session.json"
    url = fault_server.add_file("long.bin", SIZE, rate=200 * KiB)
    options = with_sums(download_dir, f"{OTHER}  long.bin\n")
    async with Engine(fast_config(session_path=str(session))) as engine:
        tid = await engine.add(url, options)
        await wait_for_state(engine, tid, lambda t: t.done >= 50 * KiB)
    saved = json.loads(session.read_text())["tasks"][0]["options"]
    assert saved["checksum_table"] == [["long.bin", f"sha256={OTHER}"]]
    fault_server.update("long.bin", rate=None)
    async with Engine(fast_config(session_path=str(session))) as engine:
        restored = engine.snapshot().tasks[0]
        task = await wait_until_done(engine, restored.id)
    # The restored task still checks against the saved line (which is wrong here, on purpose).
    assert task.state is TaskState.FAILED
    assert task.error == f"checksum mismatch: expected sha256={OTHER}, got {sha256('long.bin')}"


async def test_unusable_tables_are_refused(download_dir: Path) -> None:
    bad: list[dict[str, Any]] = [
        {"checksum_table": (("f", "sha256=xyz"),), "checksum_source": "S"},
        {"checksum_table": (("a/f", f"sha256={OTHER}"),), "checksum_source": "S"},
        {"checksum_table": (("", f"sha256={OTHER}"),), "checksum_source": "S"},
        {"checksum_table": (("f", f"sha256={OTHER}"),)},
        {
            "checksum_table": tuple((f"f{i}", f"sha256={OTHER}") for i in range(10_001)),
            "checksum_source": "S",
        },
    ]
    async with Engine(fast_config()) as engine:
        for changes in bad:
            try:
                await engine.add("http://127.0.0.1:9/f", opts(download_dir, **changes))
            except EngineError as exc:
                assert "\n" not in str(exc)
            else:
                raise AssertionError(f"accepted {list(changes)}")
        assert engine.snapshot().tasks == ()
