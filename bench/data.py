"""Random data files served by nginx, with a manifest of their sizes and SHA-256 digests."""

from __future__ import annotations

import hashlib
import json
import os
import time
from dataclasses import dataclass
from pathlib import Path

MiB = 1024 * 1024
"""One mebibyte."""
GiB = 1024 * MiB
"""One gibibyte."""
_BLOCK = 16 * MiB
_MANIFEST_VERSION = 1


@dataclass(frozen=True)
class DataSet:
    """The files one benchmark run downloads, relative to ``root``, with expected digests."""

    root: Path
    """Directory nginx serves."""
    big: str
    """The large file (1 GiB at full scale): scenarios 1, 2 and 8-11."""
    mid: str
    """The medium file (128 MiB): scenarios 3 and 5."""
    small: tuple[str, ...]
    """Many 256 KiB files: scenario 4."""
    one: str
    """One 256 KiB file: scenarios 7 and 12."""
    dash: tuple[str, ...]
    """Fifty names for the medium file (symlinks): scenario 6."""
    sizes: dict[str, int]
    """Size in bytes of every regular file, by relative path."""
    digests: dict[str, str]
    """SHA-256 hex digest of every regular file, by relative path (symlinks resolve to their target)."""

    def size(self, rel: str) -> int:
        """The size of ``rel`` (a symlink has its target's size)."""
        return self.sizes[self._target(rel)]

    def digest(self, rel: str) -> str:
        """The SHA-256 of ``rel`` (a symlink has its target's digest)."""
        return self.digests[self._target(rel)]

    def _target(self, rel: str) -> str:
        """Map the dashboard aliases to the medium file."""
        return self.mid if rel in self.dash else rel


def prepare(work: Path, scale: float = 1.0, big_size: int | None = None) -> DataSet:
    """Create (or reuse) the random files under ``work`` for ``scale`` and return their manifest;
    ``big_size`` overrides the big file's size (1 GiB times ``scale``)."""
    # A big file of a chosen size gets a name of its own, so the default one is kept for later runs.
    big = "big.bin" if big_size is None else f"big-{big_size // MiB}m.bin"
    if big_size is None:
        big_size = max(MiB, round(GiB * scale / MiB) * MiB)
    mid_size = max(MiB, round(128 * MiB * scale / MiB) * MiB)
    small_count = max(10, round(300 * scale))
    root = work / ("data" if scale == 1.0 else f"data-x{scale:g}")
    root.mkdir(parents=True, exist_ok=True)
    wanted: dict[str, int] = {big: big_size, "mid.bin": mid_size, "one.bin": 256 * 1024}
    small = tuple(f"small/f{i:03d}.bin" for i in range(small_count))
    wanted.update(dict.fromkeys(small, 256 * 1024))
    manifest_path = root / "manifest.json"
    manifest = _load_manifest(manifest_path)
    started = time.monotonic()
    created = 0
    for rel, size in wanted.items():
        path = root / rel
        entry = manifest.get(rel)
        if entry is not None and path.is_file() and path.stat().st_size == size == entry["size"]:
            continue
        path.parent.mkdir(parents=True, exist_ok=True)
        manifest[rel] = {"size": size, "sha256": _write_random(path, size)}
        created += size
    for stale in set(manifest) - set(wanted):
        if not (root / stale).is_file():
            del manifest[stale]
    _save_manifest(manifest_path, manifest)
    dash = tuple(f"dash/d{i:02d}.bin" for i in range(50))
    (root / "dash").mkdir(exist_ok=True)
    for rel in dash:
        link = root / rel
        if not link.is_symlink():
            link.unlink(missing_ok=True)
            link.symlink_to(Path("..") / "mid.bin")
    if created:
        print(
            f"bench: generated {created / MiB:.0f} MiB of data in {time.monotonic() - started:.1f} s",
            flush=True,
        )
    return DataSet(
        root=root,
        big=big,
        mid="mid.bin",
        small=small,
        one="one.bin",
        dash=dash,
        sizes={rel: int(entry["size"]) for rel, entry in manifest.items()},
        digests={rel: str(entry["sha256"]) for rel, entry in manifest.items()},
    )


def sha256_file(path: Path) -> str:
    """The SHA-256 hex digest of a file's contents."""
    with path.open("rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def _write_random(path: Path, size: int) -> str:
    """Fill ``path`` with ``size`` random bytes (16 MiB at a time, atomically renamed); return its digest."""
    digest = hashlib.sha256()
    tmp = path.with_name(path.name + ".tmp")
    with tmp.open("wb") as f:
        remaining = size
        while remaining:
            block = os.urandom(min(_BLOCK, remaining))
            digest.update(block)
            f.write(block)
            remaining -= len(block)
    os.replace(tmp, path)
    return digest.hexdigest()


def _load_manifest(path: Path) -> dict[str, dict[str, int | str]]:
    """The stored manifest, or an empty one when missing, unreadable or from another version."""
    try:
        raw = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    if not isinstance(raw, dict) or raw.get("version") != _MANIFEST_VERSION:
        return {}
    files = raw.get("files")
    return dict(files) if isinstance(files, dict) else {}


def _save_manifest(path: Path, files: dict[str, dict[str, int | str]]) -> None:
    """Write the manifest atomically."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps({"version": _MANIFEST_VERSION, "files": files}, indent=1, sort_keys=True))
    os.replace(tmp, path)
