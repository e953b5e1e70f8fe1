"""The one atomic-write helper: whole replacement, no planted name followed, no temp file left."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from engine.atomicfile import write_atomic


def test_replaces_the_whole_file_with_mode_0600(tmp_path: Path) -> None:
    target = tmp_path / "state.json"
    target.write_bytes(b"old contents that are longer than the new ones")
    write_atomic(target, b"new")
    assert target.read_bytes() == b"new"
    assert stat.S_IMODE(target.stat().st_mode) == 0o600
    assert sorted(p.name for p in tmp_path.iterdir()) == ["state.json"]


def test_a_planted_tmp_symlink_is_never_written_through(tmp_path: Path) -> None:
    victim = tmp_path / "victim.txt"
    victim.write_bytes(b"precious")
    target = tmp_path / "state.json"
    # The name the old hand-written copies used for their temporary file.
    (tmp_path / "state.json.tmp").symlink_to(victim)
    write_atomic(target, b"payload", durable=False)
    assert victim.read_bytes() == b"precious"
    assert target.read_bytes() == b"payload"


def test_a_failed_write_leaves_no_temporary_file(tmp_path: Path) -> None:
    target = tmp_path / "sub" / "state.json"
    with pytest.raises(OSError):
        write_atomic(target, b"x")
    assert not (tmp_path / "sub").exists()
    os.mkdir(tmp_path / "sub")
    (tmp_path / "sub" / "state.json").mkdir()  # rename onto a directory fails
    with pytest.raises(OSError):
        write_atomic(target, b"x")
    assert [p.name for p in (tmp_path / "sub").iterdir()] == ["state.json"]
