"""Hooks: a user's command run after each download completes (``--on-complete``) or fails (``--on-error``).

The engine calls :meth:`HookRunner.observe` with every event it publishes; completions and failures
start the matching command, without a shell: its argv from the config (already split like a shell
would) plus the file's path as the last argument, and ``FETCHTOP_*`` variables in its environment
(the URL without its user and password). A hook that fails, cannot start or outlives the timeout
(its whole process group is then killed) is reported as a :class:`HookFailed` event: never fatal.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import time
from collections.abc import Callable, Mapping

from engine.escaping import escape_controls
from engine.events import Event, HookFailed, TaskCompleted, TaskFailed
from engine.models import TaskSnapshot
from engine.redaction import redact, redact_text

ON_COMPLETE = "on-complete"
"""The name of the hook run after a completed download."""
ON_ERROR = "on-error"
"""The name of the hook run after a failed download."""
MAX_AT_ONCE = 4
"""Hooks running at the same time; more wait (a thousand small files must not fork a thousand)."""
OUTPUT_TAIL = 4096
"""Bytes of a hook's output kept, to quote its last line when it fails."""
MAX_REASON = 200
"""Characters of a hook's output quoted in a failure."""
DRAIN_TIMEOUT = 1.0
"""Seconds to wait for a finished hook's output to end (a child it left behind may hold the pipe)."""


def hook_call(
    command: tuple[str, ...],
    task: TaskSnapshot,
    status: str,
    error: str | None,
    path: str | None,
    base_env: Mapping[str, str],
) -> tuple[list[str], dict[str, str]]:
    """The argv and environment of one hook run: pure, so it is tested directly.

    The path is the last argument, absolute (empty when a download failed before its name was known); the URL
    has no user or password (it is also the only place the task's URL appears).
    """
    file_path = path or task.path or ""
    # Absolute, so a hook that changes directory (or a daemon's, started elsewhere) finds the file.
    file_path = os.path.abspath(file_path) if file_path else ""
    env = dict(base_env)
    env.update(
        FETCHTOP_ID=str(task.id),
        FETCHTOP_URL=redact(task.url),
        FETCHTOP_PATH=file_path,
        FETCHTOP_STATUS=status,
        FETCHTOP_ERROR=error or "",
    )
    return [*command, file_path], env


def _last_line(output: bytes) -> str:
    lines = [line.strip() for line in output.decode("utf-8", "replace").splitlines() if line.strip()]
    if not lines:
        return ""
    line = escape_controls(redact_text(lines[-1]))
    return line if len(line) <= MAX_REASON else line[: MAX_REASON - 1] + "…"


class HookRunner:
    """Runs the configured hooks for the engine; :meth:`close` waits for the ones started."""

    def __init__(
        self,
        on_complete: tuple[str, ...],
        on_error: tuple[str, ...],
        timeout: float,
        lookup: Callable[[int], TaskSnapshot | None],
        publish: Callable[[Event], None],
    ) -> None:
        self._commands = {ON_COMPLETE: on_complete, ON_ERROR: on_error}
        self._timeout = timeout
        self._lookup = lookup
        self._publish = publish
        self._running: set[asyncio.Task[None]] = set()
        self._slots = asyncio.Semaphore(MAX_AT_ONCE)

    @property
    def enabled(self) -> bool:
        """Whether any hook is configured."""
        return any(self._commands.values())

    def observe(self, event: Event) -> None:
        """Start the hook an event calls for (synchronously, so :meth:`idle` knows of it at once)."""
        if isinstance(event, TaskCompleted):
            self._start(ON_COMPLETE, event.task_id, "completed", None, event.path)
        elif isinstance(event, TaskFailed):
            self._start(ON_ERROR, event.task_id, "failed", event.reason, None)

    def _start(self, hook: str, task_id: int, status: str, error: str | None, path: str | None) -> None:
        command = self._commands[hook]
        task = self._lookup(task_id)
        if not command or task is None:
            return
        argv, env = hook_call(command, task, status, error, path, os.environ)
        runner = asyncio.create_task(self._run(hook, task_id, argv, env), name=f"fetchtop-hook-{task_id}")
        self._running.add(runner)
        runner.add_done_callback(self._running.discard)

    async def _run(self, hook: str, task_id: int, argv: list[str], env: dict[str, str]) -> None:
        async with self._slots:
            try:
                reason = await self._execute(argv, env)
            except Exception as exc:  # a bug here must not take the engine down either
                reason = f"{type(exc).__name__}: {exc}"
        if reason is not None:
            self._publish(HookFailed(time.time(), task_id, hook=hook, reason=escape_controls(reason)))

    async def _execute(self, argv: list[str], env: dict[str, str]) -> str | None:
        """Run one hook to its end; None if it exited 0, else why not."""
        try:
            proc = await asyncio.create_subprocess_exec(
                *argv,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.STDOUT,
                env=env,
                # Its own process group: a timeout kills what it started too (a shell script's sleep).
                start_new_session=True,
            )
        except OSError as exc:
            return f"cannot run {argv[0]!r}: {exc.strerror or exc}"
        assert proc.stdout is not None
        tail = bytearray()

        async def read() -> None:
            assert proc.stdout is not None
            while chunk := await proc.stdout.read(65536):
                tail.extend(chunk)
                del tail[:-OUTPUT_TAIL]

        reader = asyncio.create_task(read())
        killed = False
        try:
            try:
                await asyncio.wait_for(proc.wait(), self._timeout)
            except TimeoutError:
                killed = True
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(proc.pid, signal.SIGKILL)
                await proc.wait()
            # Children it left running may keep the pipe open: its output is only waited for briefly.
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.shield(reader), DRAIN_TIMEOUT)
        finally:
            reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await reader
            if proc.returncode is None:  # cancelled while it ran (the engine closing at once)
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(proc.pid, signal.SIGKILL)
                with contextlib.suppress(ProcessLookupError):
                    await proc.wait()
        said = _last_line(bytes(tail))
        if killed:
            return f"still running after {self._timeout:g}s, killed" + (f": {said}" if said else "")
        code = proc.returncode
        if code == 0:
            return None
        what = f"killed by signal {-code}" if code is not None and code < 0 else f"exit status {code}"
        return what + (f": {said}" if said else "")

    async def idle(self) -> None:
        """Return once every hook started so far has ended (each is bounded by the timeout)."""
        while self._running:
            await asyncio.gather(*list(self._running), return_exceptions=True)

    async def close(self) -> None:
        """Wait for the hooks still running (they are killed at their timeout), for the engine's close.

        Cancelled while it waits (a second Ctrl-C, a second SIGTERM), it kills them at once instead.
        """
        try:
            await self.idle()
        except asyncio.CancelledError:
            running = list(self._running)
            for runner in running:
                runner.cancel()  # each kills its process group on the way out
            await asyncio.gather(*running, return_exceptions=True)
            raise
