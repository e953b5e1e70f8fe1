"""Nothing a hostile server sends reaches a terminal raw: reason phrases, ETag, Last-Modified and Location
values, and names, through ``fetchtop get``, ``fetchtop ls``, the daemon's log, the dashboard and the
metrics; and an error's reason stays one short line.

The servers are raw asyncio ones on 127.0.0.1 (tests/support/raw_server.py), writing status lines and
headers no HTTP library would: ``ESC ] 0 ; title BEL`` retitles a terminal, ``ESC [ 31 m`` recolours it,
a C1 CSI (U+009B) does what ``ESC [`` does on many terminals, and 0xFF is not UTF-8 at all.
"""

from __future__ import annotations

import asyncio
import os
import pty
import subprocess
import unicodedata
from pathlib import Path

from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families
from textual.widgets import RadioButton, Static

from engine.engine import Engine
from engine.events import Event, TaskFailed, TaskProbed, TaskRetrying
from engine.metrics import EngineMetrics
from engine.models import EngineSnapshot, TaskOptions, TaskSnapshot, TaskState
from tests.support.daemons import daemon_area
from tests.support.downloads import download, fast_config, opts
from tests.support.limits import LIMIT, RUN_TIMEOUT
from tests.support.pilot import wait_in_app
from tests.support.processes import FETCHTOP, Processes, assert_no_traceback, child_env, read_terminal
from tests.support.raw_server import RawServer, response, threaded_raw_server
from tui.app import FetchtopApp
from tui.daemon_cli import format_tasks
from tui.formatting import describe_event, state_text, task_name
from tui.screens.detail import DetailScreen, errors_text, info_text
from tui.screens.dialogs import LimitDialog, RemoveDialog
from tui.widgets.event_log import EventLog
from tui.widgets.task_table import TaskTable, layout, task_cells

HOSTILE = b"\x1b]0;pwned\x07\x1b[31mGone\xc2\x9b [bold red]x[/x] \xff"
"""A reason phrase that retitles and recolours a terminal, with a C1 CSI, Rich markup and a bad byte."""
SHOWN = "\\033]0;pwned\\007\\033[31mGone\\233 [bold red]x[/x] \\377"
"""How it must be shown: wget-style octal escapes, markup left as literal text."""

NOT_FOUND = response(b"404 " + HOSTILE, [("Content-Length", "0")])
UNAVAILABLE = response(b"503 " + HOSTILE, [("Content-Length", "0"), ("Retry-After", "0")])


def assert_terminal_safe(data: bytes | str, allowed: str = "\n") -> str:
    """``data`` is UTF-8 with no control character but those ``allowed``; returns it as text."""
    text = data.decode("utf-8") if isinstance(data, bytes) else data  # a raw 0xFF fails here
    bad = sorted({c for c in text if unicodedata.category(c) in ("Cc", "Cs") and c not in allowed})
    assert not bad, f"raw control characters {bad!r} in:\n{text!r}"
    return text


def run_fetchtop(procs: Processes, *args: str) -> subprocess.CompletedProcess[bytes]:
    """``fetchtop ARGS`` as a child, output kept as bytes (the point is which bytes it writes)."""
    return subprocess.run(
        [*FETCHTOP, *args],
        capture_output=True,
        timeout=RUN_TIMEOUT,
        env=procs.env,
        cwd=procs.cwd,
        stdin=subprocess.DEVNULL,
    )


# ---------------------------------------------------------------------------------------------------
# fetchtop get


def test_get_escapes_a_hostile_reason_phrase_on_stdout_and_stderr(procs: Processes) -> None:
    with threaded_raw_server([UNAVAILABLE, NOT_FOUND]) as srv:
        url = srv.url("/file.bin")
        res = run_fetchtop(procs, "get", "--retries", "3", "-d", "out", url)
    out, err = res.stdout.decode(errors="replace"), res.stderr.decode(errors="replace")
    assert res.returncode == 1, f"{out}\n{err}"
    assert_no_traceback(out, err)
    out = assert_terminal_safe(res.stdout)
    err = assert_terminal_safe(res.stderr)
    # The retry goes to stdout (not a terminal: plain lines), the failure to stderr, both escaped.
    assert f"retrying in 0.0s: HTTP 503 {SHOWN}" in out, out
    assert err.splitlines() == [f"fetchtop: {url}: HTTP 404 {SHOWN}"]
    assert srv.connections == 2


def test_get_bounds_an_overlong_reason_phrase_to_one_short_line(procs: Processes) -> None:
    reason = b"\x1b[1m" + b"Not Found because " * 400  # 7 KB: aiohttp takes it whole
    with threaded_raw_server(response(b"404 " + reason, [("Content-Length", "0")])) as srv:
        url = srv.url("/long.bin")
        res = run_fetchtop(procs, "get", "-q", "-d", "out", url)
    err = assert_terminal_safe(res.stderr)
    assert res.returncode == 1, err
    [line] = err.splitlines()
    prefix = f"fetchtop: {url}: "
    assert line.startswith(prefix + "HTTP 404 \\033[1mNot Found because Not Found")
    assert line.endswith("…")
    assert len(line) - len(prefix) <= 200


def test_get_on_a_terminal_shows_names_and_reasons_as_plain_text(procs: Processes) -> None:
    # A name with Rich markup in it (server_name keeps brackets: they are fine in a file name, and only
    # the "/" of "[/x]" goes) and a failure with a hostile reason, both on the terminal of the bars.
    named = response(
        "200 OK",
        [
            ("Content-Length", "5"),
            ("Content-Disposition", 'attachment; filename="[/x][bold red]evil.bin"'),
        ],
        b"hello",
    )

    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = await srv.read_request(reader)
        writer.write(NOT_FOUND if head.startswith(b"GET /gone") else named)
        await writer.drain()

    master, slave = pty.openpty()
    env = {**procs.env, "TERM": "xterm-256color", "COLUMNS": "160", "LINES": "30"}
    try:
        with threaded_raw_server(answer) as srv:
            proc = procs.start(
                ["get", "-d", "t", srv.url("/named"), srv.url("/gone")], stdout=slave, stderr=slave, env=env
            )
            os.close(slave)
            slave = -1
            screen = read_terminal(proc, master, LIMIT)
            res = procs.finish(proc, timeout=10)
    finally:
        os.close(master)
        if slave >= 0:
            os.close(slave)

    text = screen.decode("utf-8")
    assert res.returncode == 1, f"{res.describe()}\n--- terminal ---\n{text}"
    assert_no_traceback(text)
    # Rich draws with its own escape sequences; the server's must not be among them.
    assert b"\x1b]0;" not in screen and b"\x07" not in screen and b"\xc2\x9b" not in screen, text
    assert f"HTTP 404 {SHOWN}" in text, text
    # Shown as it is named (cut to its column), not restyled by Rich: the markup stays literal text.
    assert "[_x][bold red]evil." in text, text
    assert (procs.cwd / "t" / "[_x][bold red]evil.bin").read_bytes() == b"hello"


# ---------------------------------------------------------------------------------------------------
# The daemon: ls, its history and its log


def test_ls_and_the_daemon_log_show_a_hostile_failure_escaped() -> None:
    with threaded_raw_server(NOT_FOUND) as srv, daemon_area() as area:
        daemon = area.start()
        tid = int(area.ok("add", srv.url("/gone.bin")).strip())
        area.wait_state(tid, "failed")

        def ls(*args: str) -> str:
            res = subprocess.run(
                [*FETCHTOP, "ls", *args, "--state-dir", str(area.state_dir)],
                capture_output=True,
                timeout=RUN_TIMEOUT,
                env=child_env(area.home),
                cwd=str(area.downloads),
                stdin=subprocess.DEVNULL,
            )
            out, err = assert_terminal_safe(res.stdout), assert_terminal_safe(res.stderr)
            assert res.returncode == 0, f"{out}\n{err}"
            assert_no_traceback(out, err)
            return out

        listed = ls()
        assert f"(HTTP 404 {SHOWN})" in listed, listed
        history = ls("--history")
        assert f"(HTTP 404 {SHOWN})" in history, history
        log = assert_terminal_safe(daemon.log_path.read_bytes())
        assert f"task {tid} failed: HTTP 404 {SHOWN}" in log, log


# ---------------------------------------------------------------------------------------------------
# The engine: validators and redirect targets


async def test_etag_last_modified_and_location_are_escaped_in_what_the_engine_shows(
    download_dir: Path,
) -> None:
    moved = response("302 Found", [("Location", b"/real\x1b[31m\xc2\x9b.bin"), ("Content-Length", "0")])
    file = response(
        "200 OK",
        [
            ("Content-Length", "5"),
            ("ETag", b'"v1\x1b]0;pwned\x07"'),
            ("Last-Modified", b"Mon, 01 Jan 2024 00:00:00 GMT\x1b[2J\xc2\x85"),
        ],
        b"hello",
    )
    events: list[Event] = []
    async with RawServer([moved, file]) as srv, Engine(fast_config()) as engine:
        stream = engine.subscribe(progress=False)

        async def collect() -> None:
            async for event in stream:
                events.append(event)

        collecting = asyncio.create_task(collect())
        task = await download(engine, srv.url("/start"), opts(download_dir, connections=1))
        await stream.aclose()
        await asyncio.wait_for(collecting, LIMIT)
    assert task.state is TaskState.COMPLETED, task.error
    assert task.etag == '"v1\\033]0;pwned\\007"'
    assert task.last_modified == "Mon, 01 Jan 2024 00:00:00 GMT\\033[2J\\205"
    assert task.final_url is not None and task.final_url.startswith(srv.url("/real"))
    [probed] = [e for e in events if isinstance(e, TaskProbed)]
    for shown in (task.final_url, probed.final_url, info_text(task).plain):
        assert_terminal_safe(shown)
    assert "\\033]0;pwned\\007" in info_text(task).plain


# ---------------------------------------------------------------------------------------------------
# The dashboard


async def test_dashboard_shows_a_hostile_failure_escaped(download_dir: Path) -> None:
    options = opts(download_dir, connections=2)
    async with RawServer(NOT_FOUND) as srv:
        app = FetchtopApp(
            client_factory=lambda: Engine(fast_config(defaults=options)),
            urls=[srv.url("/gone.bin")],
            options=options,
        )
        async with app.run_test(size=(160, 40)) as pilot:

            def failed() -> int | None:
                tasks = app.model.snapshot.tasks
                return tasks[0].id if tasks and tasks[0].state is TaskState.FAILED else None

            tid = await wait_in_app(pilot, failed, "the task to fail")
            table = app.screen.query_one(TaskTable)
            await wait_in_app(
                pilot, lambda: table.get_cell(str(tid), "state").plain.startswith("failed"), "the state"
            )
            cell = table.get_cell(str(tid), "state").plain
            assert_terminal_safe(cell)
            assert cell.startswith("failed: HTTP 404 \\033]0;pwned"), cell
            await pilot.press("e")  # the event log pane
            log = app.screen.query_one(EventLog)
            assert log.display

            def logged() -> str | None:
                text = "\n".join(line.text for line in log.lines)
                return text if "failed" in text else None

            logged_text = assert_terminal_safe(await wait_in_app(pilot, logged, "the failure in the log"))
            assert f"failed: HTTP 404 {SHOWN}" in logged_text, logged_text
            assert_terminal_safe(app.export_screenshot())
            await pilot.press("enter")
            assert isinstance(app.screen, DetailScreen)
            await pilot.pause()
            errors = str(app.screen.query_one("#errors").render())
            assert_terminal_safe(errors)
            assert f"HTTP 404 {SHOWN}" in errors, errors
            assert_terminal_safe(app.export_screenshot())


async def test_dialogs_show_a_name_with_markup_as_it_is(download_dir: Path) -> None:
    # Textual reads a str as markup: "[bold red]" would restyle the name, "[@click=...]" make it a button.
    name = "[bold red]evil[@click=app.quit].bin"
    head = response(
        "200 OK",
        [("Content-Length", "10"), ("Content-Disposition", f'attachment; filename="{name}"')],
        b"hello",
    )

    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await srv.read_request(reader)
        writer.write(head)
        await writer.drain()
        await asyncio.sleep(LIMIT)  # the other half never comes: the task stays partial while we look

    options = opts(download_dir, connections=1)
    async with RawServer(answer) as srv:
        app = FetchtopApp(
            client_factory=lambda: Engine(fast_config(defaults=options)),
            urls=[srv.url("/evil")],
            options=options,
        )
        async with app.run_test(size=(120, 40)) as pilot:

            def partial() -> TaskSnapshot | None:
                tasks = app.model.snapshot.tasks
                return tasks[0] if tasks and tasks[0].done == 5 and tasks[0].part_path else None

            task = await wait_in_app(pilot, partial, "half the file")
            assert task.name == name
            await pilot.press("l")
            assert isinstance(app.screen, LimitDialog)
            assert str(app.screen.query_one("#scope-task", RadioButton).label) == f"Task #{task.id} {name}"
            await pilot.press("escape")
            await pilot.press("d")
            assert isinstance(app.screen, RemoveDialog)
            texts = [str(static.render()) for static in app.screen.query(Static)]
            assert f"Remove #{task.id} {name} and stop downloading it?" in texts, texts
            assert f"Partial file: {task.part_path}" in texts, texts
            await pilot.press("n")


RAW = "\x1b]0;pwned\x07\x1b[31m\x9b\udcff\u202e"
"""What a snapshot could carry from a daemon that did not escape (an older one's history, say)."""


def raw_task(**fields: object) -> TaskSnapshot:
    base: dict[str, object] = {
        "id": 7,
        "url": f"http://h/{RAW}.bin",
        "state": TaskState.FAILED,
        "options": TaskOptions(),
        "name": f"name{RAW}.bin",
        "final_url": f"http://h/final{RAW}",
        "etag": f'"{RAW}"',
        "last_modified": RAW,
        "error": f"HTTP 404 {RAW}",
        "last_errors": (f"HTTP 503 {RAW}",),
        "part_path": f"/d/name{RAW}.bin.part",
        "path": f"/d/name{RAW}.bin",
    }
    base.update(fields)
    return TaskSnapshot(**base)  # type: ignore[arg-type]


def test_every_sink_escapes_a_raw_snapshot_again() -> None:
    task = raw_task()
    nameless = raw_task(name=None)
    shown = [
        task_name(task),
        task_name(nameless),
        state_text(task, 200).plain,
        info_text(task).plain,
        errors_text(task).plain,
        *(cell.plain for cell in task_cells(task, layout(200)).values()),
        *format_tasks([task, nameless]),
    ]
    for event in (
        TaskFailed(0.0, 7, reason=f"HTTP 404 {RAW}"),
        TaskRetrying(0.0, 7, reason=f"HTTP 503 {RAW}", kind="http_5xx", delay=1.0, attempt=1),
    ):
        line = describe_event(event, {7: f"n{RAW}"})
        assert line is not None
        shown.append(line.text)
    for text in shown:
        assert_terminal_safe(text)
    assert "HTTP 404 \\033]0;pwned\\007\\033[31m\\233\\377\\u202e" in state_text(task, 200).plain


def test_metrics_labels_carry_no_control_characters() -> None:
    metrics = EngineMetrics()
    metrics.update(
        EngineSnapshot(tasks=(raw_task(state=TaskState.DOWNLOADING, name=f"a{RAW}\nb", size=10, done=5),))
    )
    text = assert_terminal_safe(generate_latest(metrics.registry))
    names = {
        sample.labels["file_name"]
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if "file_name" in sample.labels
    }
    assert names == {"a\\033]0;pwned\\007\\033[31m\\233\\377\\u202e\\012b"}
