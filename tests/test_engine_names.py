"""File names end to end: -o, Content-Disposition (filename*), the URL, index.html; hostile names stay in
the directory; existing files are never overwritten; checksums gate the final rename."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest

from engine.engine import Engine
from engine.events import TaskCompleted, TaskFailed, TaskVerifying
from engine.models import TaskState
from faultserver.content import KiB, expected_bytes, expected_sha256
from faultserver.server import FaultServer
from tests.support.downloads import assert_exact, download, fast_config, listing, opts
from tests.support.events import EventLog

SIZE = 200 * KiB + 11


async def fetch_name(
    server: FaultServer, directory: Path, name: str, output: str | None = None, **spec: object
) -> str:
    """Download file ``name`` (registered with ``spec``) and return the file name it got."""
    url = server.add_file(name, SIZE, **spec)
    async with Engine(fast_config()) as engine:
        task = await download(engine, url, opts(directory, output=output, connections=2))
    assert task.state is TaskState.COMPLETED, task.error
    assert task.path is not None and task.name is not None
    # -o's directory part joins the download directory.
    subdir = os.path.dirname(output) if output else ""
    assert Path(task.path).parent.resolve() == (directory / subdir).resolve()
    assert Path(task.path).name == task.name
    assert_exact(task.path, name, SIZE)
    return task.name


async def test_output_option_wins(fault_server: FaultServer, download_dir: Path) -> None:
    got = await fetch_name(
        fault_server,
        download_dir,
        "url-name.bin",
        output="chosen.dat",
        content_disposition='attachment; filename="header.bin"',
    )
    assert got == "chosen.dat"
    assert listing(download_dir) == ["chosen.dat"]


async def test_content_disposition_filename(fault_server: FaultServer, download_dir: Path) -> None:
    got = await fetch_name(
        fault_server,
        download_dir,
        "url-name.bin",
        content_disposition='attachment; filename="report 2024.pdf"',
    )
    assert got == "report 2024.pdf"


async def test_content_disposition_filename_star_wins(fault_server: FaultServer, download_dir: Path) -> None:
    got = await fetch_name(
        fault_server,
        download_dir,
        "url-name.bin",
        content_disposition="attachment; filename=\"fallback.txt\"; filename*=UTF-8''%E2%82%AC%20rates.txt",
    )
    assert got == "\u20ac rates.txt"


async def test_url_last_segment_is_percent_decoded(fault_server: FaultServer, download_dir: Path) -> None:
    # The server's URL for this name is /f/na%C3%AFve%20file%25.bin.
    got = await fetch_name(fault_server, download_dir, "na\u00efve file%.bin")
    assert got == "na\u00efve file%.bin"


@pytest.mark.parametrize("path", ["/", "/downloads/"])
async def test_index_html_when_nothing_names_the_file(
    fault_server: FaultServer, download_dir: Path, path: str
) -> None:
    got = await fetch_name(fault_server, download_dir, "nameless", path=path)
    assert got == "index.html"


@pytest.mark.parametrize(
    "disposition",
    [
        'attachment; filename="../../evil.sh"',
        'attachment; filename="/etc/cron.d/evil"',
        'attachment; filename=".."',
        'attachment; filename="..\\\\..\\\\win.ini"',
        "attachment; filename*=UTF-8''..%2F..%2Fescape.txt",
        "attachment; filename*=UTF-8''nul%00byte%0Aname.txt",
        'attachment; filename=".hidden"',
        'attachment; filename="   "',
    ],
)
async def test_hostile_names_stay_inside_the_directory(
    fault_server: FaultServer, tmp_path: Path, download_dir: Path, disposition: str
) -> None:
    got = await fetch_name(fault_server, download_dir, "safe.bin", content_disposition=disposition)
    assert got and got not in (".", "..")
    assert "/" not in got and "\\" not in got and "\x00" not in got and "\n" not in got
    assert not got.startswith(".")
    # Nothing was created anywhere but the download directory.
    assert listing(tmp_path) == ["downloads"]
    assert listing(download_dir) == [got]
    for escaped in ("evil.sh", "escape.txt", "win.ini"):
        assert not (tmp_path.parent / escaped).exists()


async def test_hostile_output_option_is_sanitised_too(fault_server: FaultServer, download_dir: Path) -> None:
    got = await fetch_name(fault_server, download_dir, "out.bin", output="sub/\x1b[31m\u202eevil.bin")
    assert "/" not in got and "\x1b" not in got and "\u202e" not in got
    assert listing(download_dir) == ["sub"]
    assert listing(download_dir / "sub") == [got]


async def test_output_option_is_a_path_relative_to_the_directory(
    fault_server: FaultServer, download_dir: Path
) -> None:
    # The user's own -o is a path (as in aria2c and curl), so "../" is theirs to give.
    got = await fetch_name(fault_server, download_dir, "out.bin", output="../beside/out.bin")
    assert got == "out.bin"
    assert listing(download_dir) == []
    assert listing(download_dir.parent / "beside") == ["out.bin"]


async def test_existing_file_is_never_overwritten(fault_server: FaultServer, download_dir: Path) -> None:
    (download_dir / "data.bin").write_bytes(b"precious")
    (download_dir / "archive.tar.gz").write_bytes(b"also precious")
    url = fault_server.add_file("data.bin", SIZE)
    url_gz = fault_server.add_file("archive.tar.gz", SIZE)
    async with Engine(fast_config()) as engine:
        first = await download(engine, url, opts(download_dir))
        second = await download(engine, url, opts(download_dir))
        gz = await download(engine, url_gz, opts(download_dir))
    assert first.name == "data.1.bin"
    assert second.name == "data.2.bin"
    assert gz.name == "archive.1.tar.gz"
    assert (download_dir / "data.bin").read_bytes() == b"precious"
    assert (download_dir / "archive.tar.gz").read_bytes() == b"also precious"
    assert_exact(first.path, "data.bin", SIZE)
    assert_exact(second.path, "data.bin", SIZE)
    assert_exact(gz.path, "archive.tar.gz", SIZE)
    assert listing(download_dir) == [
        "archive.1.tar.gz",
        "archive.tar.gz",
        "data.1.bin",
        "data.2.bin",
        "data.bin",
    ]


async def test_existing_file_with_output_option_is_not_overwritten(
    fault_server: FaultServer, download_dir: Path
) -> None:
    (download_dir / "mine.bin").write_bytes(b"keep me")
    got = await fetch_name(fault_server, download_dir, "x.bin", output="mine.bin")
    assert got == "mine.1.bin"
    assert (download_dir / "mine.bin").read_bytes() == b"keep me"


async def test_two_tasks_for_one_url_at_once_get_two_names(
    fault_server: FaultServer, download_dir: Path
) -> None:
    url = fault_server.add_file("twice.bin", SIZE, rate=400 * KiB)
    async with Engine(fast_config()) as engine:
        a = await engine.add(url, opts(download_dir, connections=2))
        b = await engine.add(url, opts(download_dir, connections=2))
        snap = await engine.wait([a, b])
    ta, tb = snap.task(a), snap.task(b)
    assert ta is not None and tb is not None
    assert {ta.name, tb.name} == {"twice.bin", "twice.1.bin"}
    assert_exact(ta.path, "twice.bin", SIZE)
    assert_exact(tb.path, "twice.bin", SIZE)


# --- checksums ------------------------------------------------------------------------------------


@pytest.mark.parametrize("algo", ["sha256", "md5", "sha512", "sha1"])
async def test_checksum_ok(fault_server: FaultServer, download_dir: Path, algo: str) -> None:
    digest = hashlib.new(algo, expected_bytes("sum.bin", SIZE)).hexdigest()
    url = fault_server.add_file("sum.bin", SIZE)
    async with Engine(fast_config()) as engine, EventLog(engine) as log:
        # Upper-case hex is accepted as well.
        task = await download(engine, url, opts(download_dir, checksum=f"{algo}={digest.upper()}"))
    assert task.state is TaskState.COMPLETED, task.error
    assert_exact(task.path, "sum.bin", SIZE)
    names = log.lifecycle(task.id)
    assert names.index("TaskVerifying") < names.index("TaskCompleted")
    assert len(log.of(TaskVerifying, task.id)) == 1
    assert listing(download_dir) == ["sum.bin"]


async def test_checksum_mismatch_fails_and_no_final_file(
    fault_server: FaultServer, download_dir: Path
) -> None:
    url = fault_server.add_file("bad.bin", SIZE)
    wrong = expected_sha256("other.bin", SIZE)
    async with Engine(fast_config()) as engine, EventLog(engine) as log:
        task = await download(engine, url, opts(download_dir, checksum=f"sha256={wrong}"))
    assert task.state is TaskState.FAILED
    actual = expected_sha256("bad.bin", SIZE)
    assert task.error == f"checksum mismatch: expected sha256={wrong}, got {actual}"
    assert [e.reason for e in log.of(TaskFailed, task.id)] == [task.error]
    assert not log.of(TaskCompleted)
    assert not (download_dir / "bad.bin").exists()
    assert "bad.bin" not in listing(download_dir)
