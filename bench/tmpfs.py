"""The tmpfs target: a small tmpfs the benchmark mounts (as root), else a directory in /dev/shm.

Downloads into memory take the disk out of the picture, so the tmpfs rows show what the code costs;
the disk rows beside them show what the disk adds. The mount is sized for one run's output (each
output is deleted after its check), so a runaway client fills the tmpfs, not the machine's memory."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path
from types import TracebackType

MiB = 1024 * 1024
_SHM = Path("/dev/shm")
_TMPFS_MAGIC = "tmpfs"


class TmpfsError(RuntimeError):
    """No tmpfs could be had: not root (or mount refused) and no tmpfs on /dev/shm."""


class Tmpfs:
    """A tmpfs directory of at least ``size`` bytes, for the ``with`` block's time."""

    def __init__(self, mount_point: Path, size: int) -> None:
        """Prepare (not yet mount) a tmpfs of ``size`` bytes at ``mount_point``."""
        self.mount_point = mount_point
        self.size = size
        self.path = mount_point
        """Where the runs write: the mount point, or a private directory in /dev/shm."""
        self.how = ""
        """One line for the report: what kind of tmpfs this is."""
        self._mounted = False

    def __enter__(self) -> Tmpfs:
        """Mount (root), or fall back to /dev/shm; raise TmpfsError when neither works."""
        size_mib = -(-self.size // MiB)
        why_not = "not root"
        if os.geteuid() == 0:
            self._unmount_stale()
            self.mount_point.mkdir(parents=True, exist_ok=True)
            result = subprocess.run(
                ["mount", "-t", "tmpfs", "-o", f"size={size_mib}m,mode=0700", "bench-tmpfs",
                 str(self.mount_point)],
                capture_output=True, text=True, timeout=30, check=False,
            )  # fmt: skip
            if result.returncode == 0:
                self._mounted = True
                self.path = self.mount_point
                self.how = f"a {size_mib} MiB tmpfs mounted at {self.mount_point}"
                return self
            why_not = (result.stderr.strip().splitlines() or [f"mount exit {result.returncode}"])[-1]
        if _fs_type(_SHM) != _TMPFS_MAGIC:
            raise TmpfsError(f"cannot mount a tmpfs ({why_not}) and /dev/shm is not a tmpfs")
        free = shutil.disk_usage(_SHM).free
        if free < self.size:
            raise TmpfsError(
                f"cannot mount a tmpfs ({why_not}) and /dev/shm has {free // MiB} MiB free, "
                f"{size_mib} MiB needed"
            )
        self.path = _SHM / f"fetchtop-bench-{os.getpid()}"
        shutil.rmtree(self.path, ignore_errors=True)
        self.path.mkdir(mode=0o700)
        self.how = f"/dev/shm ({why_not}, so no mount of its own; {free // MiB} MiB free)"
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        """Unmount, or remove the /dev/shm directory."""
        if self._mounted:
            # Lazy, so a file a killed client still holds open cannot keep the mount alive.
            subprocess.run(
                ["umount", "-l", str(self.mount_point)], capture_output=True, timeout=30, check=False
            )
            self._mounted = False
        elif self.path != self.mount_point:
            shutil.rmtree(self.path, ignore_errors=True)

    def _unmount_stale(self) -> None:
        """Undo a mount a killed earlier run left behind at the same place."""
        if _fs_type(self.mount_point) == _TMPFS_MAGIC and self.mount_point.is_mount():
            subprocess.run(
                ["umount", "-l", str(self.mount_point)], capture_output=True, timeout=30, check=False
            )


def _fs_type(path: Path) -> str:
    """The file system type of the mount that holds ``path`` exactly, from /proc/mounts ("" if none)."""
    try:
        target = str(path.resolve())
        lines = Path("/proc/mounts").read_text().splitlines()
    except OSError:
        return ""
    found = ""
    for line in lines:
        fields = line.split()
        if len(fields) >= 3 and fields[1] == target:
            found = fields[2]
    return found
