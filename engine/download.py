"""Running one download: probe, fetch, crash-safe checkpoints, verification, final placement."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

from engine import checkpointing, checksumfile, control, partfile, writeback
from engine.client import EngineError
from engine.config import parse_checksum
from engine.control import ControlData, UntrustedFile
from engine.errors import ControlWriteError, DownloadError, ErrorKind, RemoteChanged
from engine.events import (
    CheckpointFailed,
    CheckpointRecovered,
    TaskCompleted,
    TaskProbed,
    TaskRestarted,
    TaskVerifying,
)
from engine.filenames import choose_name, is_numbered, sanitize
from engine.http import check_url
from engine.models import TaskState
from engine.partfile import PartFile
from engine.probe import probe
from engine.ranges import RangeSet
from engine.segmented import SegmentedFetch
from engine.task import Task
from engine.transfer import Context, Opened, Transfer, in_thread
from engine.wholebody import fetch_whole


class Download(Transfer):
    """One run of a task, from probe to final rename (or until paused or failed)."""

    def __init__(self, task: Task, ctx: Context) -> None:
        super().__init__(task, ctx)
        self._ctrl_lock = asyncio.Lock()
        self.checksum: str | None = task.options.checksum
        """``ALGO=HEX`` the file is verified with: ``--checksum``, or the checksum file's line for
        its name (decided at each probe, before the name is claimed)."""

    # ----- lifecycle -------------------------------------------------------------------------

    async def run(self) -> None:
        """Download the task to completion; raises DownloadError on failure."""
        task = self.task
        task.meter.start()
        try:
            await self._run()
        finally:
            task.meter.stop()
            task.connections.clear()
            await self._close_file()

    async def _run(self) -> None:
        task = self.task
        check_url(task.url)
        self._expected_digest(
            task.options.checksum
        )  # a task restored from an older session was never checked
        if not task.control_checked:
            task.control_checked = True
            await self._adopt_existing_control()
        while True:
            opened = await self._probe()
            task.set_state(TaskState.DOWNLOADING)
            checkpoints = asyncio.create_task(self._checkpoint_loop())
            fetched = False
            try:
                if task.resumable and task.size is not None:
                    await SegmentedFetch(self).run(opened)
                else:
                    await fetch_whole(self, opened)
                fetched = True
            except RemoteChanged as exc:
                # A range request saw another version of the file: start over from the probe.
                self.restart(str(exc))
                continue
            finally:
                checkpoints.cancel()
                try:
                    # asyncio.wait, not await: a pause arriving now must not be swallowed.
                    await asyncio.wait([checkpoints])
                finally:
                    if not fetched:
                        # Paused, failed or closing: record what is on disk for the next run.
                        # (A finished fetch goes straight to the final rename instead.)
                        await self._checkpoint()
            break
        await self._finish()

    async def _adopt_existing_control(self) -> None:
        """Pick up a part file and control file left by an earlier run for the same URL.

        With ``-o`` only that name or a numbered variant of it (the earlier run found the name taken)
        qualifies. Only a control file the user owns and alone may write, beside the very part file it
        was written for, is adopted (engine.control and engine.partfile check both).
        """
        task = self.task
        directory = Path(task.options.directory)
        candidates = [data for _, data in await self.ctx.controls_for(directory, task.display_url)]
        if task.options.output:
            name = choose_name(task.options.output, None, task.url)
            candidates = [data for data in candidates if is_numbered(data.name, name)]
        claimed = self.ctx.claimed_paths()
        for data in candidates:
            final = directory / data.name
            if sanitize(data.name) != data.name:
                continue  # a planted or corrupt control file must not steer us out of the directory
            if final not in claimed and await asyncio.to_thread(partfile.owns_part, final, data):
                break
        else:
            return
        task.part_id = data.part_id
        task.name = data.name
        task.path = final
        task.size = data.size
        task.resumable = data.resumable
        task.etag = data.etag
        task.last_modified = data.last_modified
        task.done = RangeSet(data.done) if data.resumable else RangeSet()

    async def _probe(self) -> Opened:
        """Probe, then claim the final name, open the part file and record it; the response streams on."""
        task = self.task
        opened = await probe(self)
        try:
            self.checksum = self._checksum_for(opened)
            if task.path is None:
                # A name claimed just now has no control file, and gets none until the first
                # checkpoint: most small files are done before it, and a part file without a control
                # file is never adopted, so an early crash costs a fresh download under a numbered
                # name, never wrong bytes.
                await self._choose_path(opened)  # claims the name and opens its new part file
            else:
                # A known name may have a control file (resumed, paused, restarted): bring it up to
                # date with this part file and these validators before more bytes come.
                await self._open_file(fresh=not task.done.covered)
                await self._checkpoint()
        except BaseException:
            opened.close()
            raise
        assert task.name is not None and task.path is not None and task.final_url is not None
        self.ctx.publish(
            TaskProbed(
                time.time(),
                task.id,
                name=task.name,
                path=str(task.path),
                size=task.size,
                resumable=bool(task.resumable),
                final_url=task.final_url,
            )
        )
        return opened

    # ----- files ---------------------------------------------------------------------------

    async def _choose_path(self, opened: Opened) -> None:
        """Claim a free final name for the response and open its new part file."""
        task = self.task
        directory = Path(task.options.directory)
        disposition = opened.resp.headers.get("Content-Disposition")
        name = choose_name(task.options.output, disposition, str(opened.url))
        claimed = self.ctx.claimed_paths()
        await self._close_file()

        def undo(got: tuple[str, PartFile]) -> None:
            got[1].close()  # claimed after a cancel: the part file stays, its descriptor must not

        claim = partfile.claim_and_open
        chosen, file = await in_thread(claim, directory, name, claimed, task.size, undo=undo)
        task.name, self.file = chosen, file
        task.part_id = file.identity
        task.path = directory / chosen
        # Guards against a name that sanitising missed: the file must stay in the directory.
        if task.path.parent != directory or task.path.name != task.name:
            raise DownloadError(f"unsafe file name {task.name!r}", permanent=True, kind=ErrorKind.NAME)

    async def _open_file(self, fresh: bool) -> None:
        task = self.task
        assert task.part_path is not None
        part = task.part_path
        await self._close_file()
        if fresh and self.stale_control and task.control_path is not None:
            # The old control file still claims ranges of the data about to be truncated.
            await asyncio.to_thread(partfile.remove_durably, task.control_path)
            self.stale_control = False
        try:
            self.file = await in_thread(
                PartFile.open, part, task.size, fresh, task.part_id, undo=PartFile.close
            )
        except FileNotFoundError:
            # Deleted while paused: what it held is gone, so start this file over. Its control file
            # goes first: the new part file may get the old one's inode number, and must not be
            # taken for it after a crash.
            task.done = RangeSet()
            task.plan = []
            if task.control_path is not None:
                await asyncio.to_thread(partfile.remove_durably, task.control_path)
            self.ctx.publish(TaskRestarted(time.time(), task.id, reason="partial file disappeared"))
            self.file = await in_thread(PartFile.open, part, task.size, True, None, undo=PartFile.close)
        except UntrustedFile as exc:
            # Something else took the part file's name (a symlink, another user's file): never write it.
            raise DownloadError(str(exc), permanent=True, kind=ErrorKind.NAME) from None
        task.part_id = self.file.identity

    async def _close_file(self) -> None:
        if self.file is not None:
            file, self.file = self.file, None
            await in_thread(file.close)

    # ----- persistence and the end -----------------------------------------------------------

    async def _checkpoint_loop(self) -> None:
        """Checkpoint while data flows, starting the writeback of new data early in between.

        The first checkpoint comes one interval after the probe, so a download done sooner never
        writes a control file. The interval stretches with the last sync's duration (a slow disk)
        and the writeback kicks keep each fsync short (engine.checkpointing).
        """
        base = self.ctx.checkpoint_interval
        interval = checkpointing.next_interval(0.0, base)
        while True:
            due = time.monotonic() + interval
            while (left := due - time.monotonic()) > 0:
                await asyncio.sleep(min(left, checkpointing.kick_period(interval)))
                file = self.file
                if (
                    due - time.monotonic() > 0
                    and file is not None
                    and file.dirty.pending >= checkpointing.KICK_MIN_BYTES
                    and writeback.available()
                ):
                    await self._kick_writeback(file)
            took = await self._checkpoint()
            interval = checkpointing.next_interval(took or 0.0, base)

    async def _kick_writeback(self, file: PartFile) -> None:
        """Start the writeback of what was written since the last kick, in the writeback thread."""
        work = asyncio.get_running_loop().run_in_executor(writeback.executor(), file.start_writeback)
        try:
            await asyncio.shield(work)
        except asyncio.CancelledError:
            # As in_thread: the descriptor must outlive the call that uses it.
            await asyncio.wait([work])
            raise

    async def _checkpoint(self) -> float | None:
        """Make written data durable, then record it in the control file; seconds the fsync took.

        A control file claiming no bytes is written without fsyncs (losing it loses nothing). A
        control file that cannot be written is published (once per run of failures) and retried at
        the next checkpoint (None is returned); only a failure to sync the data raises.
        """
        task = self.task
        if self.file is None or task.control_path is None or task.name is None:
            return None
        async with self._ctrl_lock:
            data = ControlData(
                url=task.display_url,
                name=task.name,
                size=task.size,
                resumable=bool(task.resumable),
                etag=task.etag,
                last_modified=task.last_modified,
                done=task.done.as_list() if task.resumable else [],
                part_id=self.file.identity,
            )
            file, path = self.file, task.control_path
            try:
                took = await in_thread(file.sync_and_record, path, data, bool(data.done))
            except ControlWriteError as exc:
                # Not the download's failure: the data is on disk and the old control file
                # (claiming less) still resumes it, so go on and try again next checkpoint.
                if task.checkpoint_error != exc.reason:
                    task.checkpoint_error = exc.reason
                    self.ctx.publish(CheckpointFailed(time.time(), task.id, reason=exc.reason))
                return None
            if task.checkpoint_error is not None:
                task.checkpoint_error = None
                self.ctx.publish(CheckpointRecovered(time.time(), task.id))
            return took

    async def _finish(self) -> None:
        task = self.task
        assert task.path is not None and task.part_path is not None and task.control_path is not None
        size = task.size or 0
        file = self.file
        assert file is not None
        cut: int | None = size  # cut and synced in the placing thread: one hop fewer per small file
        if self.checksum:
            await in_thread(file.truncate_and_sync, size)
            cut = None
            task.set_state(TaskState.VERIFYING)
            self.ctx.publish(TaskVerifying(time.time(), task.id))
            algo, expected = self._expected_digest(self.checksum)
            actual = await in_thread(file.hash, algo)
            if actual.lower() != expected:
                await self._close_file()
                await asyncio.to_thread(control.remove_quietly, task.part_path, task.control_path)
                task.done = RangeSet()
                task.plan = []
                raise DownloadError(
                    f"checksum mismatch: expected {algo}={expected}, got {actual}",
                    permanent=True,
                    kind=ErrorKind.CHECKSUM,
                )
        # The placement closes the file: from here on the worker thread owns the descriptor.
        self.file = None
        claimed = self.ctx.claimed_paths() - {task.path}
        placing = asyncio.ensure_future(asyncio.to_thread(self._place_final, file, claimed, cut))
        try:
            final = await asyncio.shield(placing)
        except asyncio.CancelledError:
            # A rename in flight cannot be stopped: once it is done, the task is complete,
            # whatever the pause or close that arrived meanwhile asked.
            await asyncio.wait([placing])
            if placing.cancelled() or placing.exception() is not None:
                raise
            final = placing.result()
        task.path = final
        task.name = final.name
        task.set_state(TaskState.COMPLETED)
        duration = task.meter.active_time
        self.ctx.publish(TaskCompleted(time.time(), task.id, path=str(final), size=size, duration=duration))

    def _checksum_for(self, opened: Opened) -> str | None:
        """``--checksum``, else the checksum file's ``ALGO=HEX`` for the name the file gets before
        numbering (``-o``, Content-Disposition or the URL); a permanent error if the file has no line
        for it (unless missing ones are allowed) or disagrees with itself."""
        opts = self.task.options
        if opts.checksum or opts.checksum_source is None:
            return opts.checksum
        disposition = opened.resp.headers.get("Content-Disposition")
        name = choose_name(opts.output, disposition, str(opened.url))
        try:
            spec = checksumfile.lookup(opts.checksum_table, name)
        except checksumfile.ChecksumFileError as exc:
            raise DownloadError(
                f"{exc} ({opts.checksum_source})", permanent=True, kind=ErrorKind.CHECKSUM
            ) from None
        if spec is None and not opts.checksum_missing_ok:
            raise DownloadError(
                f"no checksum for {name!r} in {opts.checksum_source} (--checksum-missing=ok allows that)",
                permanent=True,
                kind=ErrorKind.CHECKSUM,
            )
        return spec

    def _expected_digest(self, spec: str | None) -> tuple[str, str]:
        """A checksum as ``(algorithm, hex)``; a permanent error, before any request, if unusable."""
        if spec is None:
            return "", ""
        try:
            return parse_checksum(spec)
        except EngineError as exc:
            raise DownloadError(str(exc), permanent=True, kind=ErrorKind.CHECKSUM) from None

    def _place_final(self, file: PartFile, claimed: set[Path], cut: int | None) -> Path:
        """Give the part file its final name without ever replacing an existing file (blocking).

        With ``cut``, first cut the file to that size and make it durable (else that was done).
        """
        task = self.task
        assert task.path is not None and task.part_path is not None and task.name is not None
        assert task.control_path is not None
        if cut is not None:
            try:
                file.truncate_and_sync(cut)
            except BaseException:
                file.close()  # placing owns the descriptor: nobody else will close it
                raise
        try:
            final = partfile.place_final(
                file, task.part_path, task.control_path, task.path.parent, task.name, claimed
            )
        except UntrustedFile as exc:
            raise DownloadError(str(exc), permanent=True, kind=ErrorKind.NAME) from None
        if final is None:
            raise DownloadError(f"no free file name for {task.name!r}", permanent=True, kind=ErrorKind.NAME)
        return final
