"""``fetchtop attach``: the dashboard driving a daemon subprocess through RemoteClient, with Textual's
pilot; and the remote event stream surviving a daemon that dies and comes back."""

from __future__ import annotations

import asyncio
import signal
from collections.abc import Iterator

import pytest

from engine.client import DaemonUnavailable
from engine.daemon.client import ConnectionLost, ConnectionRestored, RemoteClient
from engine.events import ProgressUpdated
from engine.models import TaskState
from faultserver.content import KiB, MiB, file_matches
from faultserver.server import FaultServer
from faultserver.specs import FileSpec
from tests.support.daemons import Daemons, daemon_area
from tests.support.waiting import wait_until
from tui.app import FetchtopApp


@pytest.fixture
def daemons() -> Iterator[Daemons]:
    with daemon_area() as area:
        yield area


def attach_app(daemons: Daemons) -> FetchtopApp:
    sock = str(daemons.state_dir / "daemon.sock")
    return FetchtopApp(
        client_factory=lambda: RemoteClient(socket_path=sock), quit_note="They keep running in the daemon."
    )


@pytest.mark.slow
async def test_attach_pause_with_a_key_detach_and_resume_from_the_cli(
    daemons: Daemons, threaded_fault_server: FaultServer
) -> None:
    srv = threaded_fault_server
    size = 1 * MiB
    url = srv.add(FileSpec("attach.bin", size=size, rate=64 * KiB, chunk_size=8 * KiB))
    await asyncio.to_thread(daemons.start)
    task_id = int(await asyncio.to_thread(daemons.ok, "add", "-x", "1", url))

    app = attach_app(daemons)
    async with app.run_test(size=(150, 45)) as pilot:

        def state() -> TaskState | None:
            task = app.model.task(task_id)
            return None if task is None else task.state

        await wait_until(
            lambda: state() is TaskState.DOWNLOADING,
            "the dashboard to show the download",
            limit=15,
            interval=0.05,
        )
        await pilot.pause()
        await pilot.press("p")
        await wait_until(
            lambda: state() is TaskState.PAUSED, "the daemon to report the pause", limit=10, interval=0.05
        )
        await pilot.press("q")
        await wait_until(lambda: not app.is_running, "the dashboard to quit", limit=10, interval=0.05)
    assert app.return_code == 0

    # The daemon outlives the dashboard, with the task still paused and not moving.
    paused = await asyncio.to_thread(daemons.task, task_id)
    assert paused["state"] == "paused"
    await asyncio.sleep(0.6)
    assert (await asyncio.to_thread(daemons.task, task_id))["done"] == paused["done"]
    assert daemons.started[-1].proc.poll() is None

    srv.update("attach.bin", rate=None)
    await asyncio.to_thread(daemons.ok, "resume", str(task_id))
    done = await asyncio.to_thread(daemons.wait_state, task_id, "completed")
    assert file_matches(done["path"], "attach.bin", size)


async def test_the_dashboard_shows_a_lost_daemon_and_reconnects(daemons: Daemons) -> None:
    first = await asyncio.to_thread(daemons.start)
    app = attach_app(daemons)
    async with app.run_test(size=(150, 45)) as pilot:
        await wait_until(lambda: app.model.snapshot.time > 0, "a first snapshot", limit=10, interval=0.05)
        assert app.connected
        first.proc.send_signal(signal.SIGKILL)
        await asyncio.to_thread(first.wait_exit)
        await wait_until(lambda: not app.connected, "the dashboard to notice", limit=10, interval=0.05)
        assert app.is_running, "a lost daemon must not end the dashboard"
        await asyncio.to_thread(daemons.start)
        await wait_until(lambda: app.connected, "the dashboard to reconnect", limit=15, interval=0.05)
        await pilot.press("q")
        await wait_until(lambda: not app.is_running, "the dashboard to quit", limit=10, interval=0.05)


async def test_a_reconnecting_subscription_reports_the_gap(daemons: Daemons) -> None:
    first = await asyncio.to_thread(daemons.start)
    sock = str(daemons.state_dir / "daemon.sock")
    async with RemoteClient(socket_path=sock) as client:
        plain = client.subscribe()
        events = client.subscribe(reconnect=True)
        assert isinstance(await asyncio.wait_for(anext(events), 10), ProgressUpdated)
        assert isinstance(await asyncio.wait_for(anext(plain), 10), ProgressUpdated)
        assert client.connected

        first.proc.send_signal(signal.SIGKILL)
        await asyncio.to_thread(first.wait_exit)

        async def next_not_progress() -> object:
            while True:
                event = await anext(events)
                if not isinstance(event, ProgressUpdated):
                    return event

        lost = await asyncio.wait_for(next_not_progress(), 10)
        assert isinstance(lost, ConnectionLost) and "daemon" in lost.reason
        assert not client.connected
        with pytest.raises(DaemonUnavailable):
            await asyncio.wait_for(next_plain(plain), 10)

        await asyncio.to_thread(daemons.start)
        restored = await asyncio.wait_for(anext(events), 15)
        assert isinstance(restored, ConnectionRestored)
        assert isinstance(await asyncio.wait_for(anext(events), 10), ProgressUpdated)
        assert client.connected
        # Commands work again on the same client.
        assert (await client.get_snapshot()).tasks == ()


async def next_plain(plain: object) -> None:
    """Drain a non-reconnecting subscription until it raises."""
    while True:
        await anext(plain)  # type: ignore[call-overload]
