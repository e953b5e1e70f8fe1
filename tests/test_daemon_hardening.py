"""What the daemon refuses to trust on a shared machine: a token file others can read or that holds a
weak token, a state directory others can enter, a TCP client's directory that leads outside ``-d``
or into a hidden one, and a ``--socket`` path holding something other than a stale socket. The real
``fetchtop daemon`` as a subprocess, files owned by ``nobody`` where another user is needed."""

from __future__ import annotations

import os
import pwd
import secrets
import socket
import stat
import subprocess
from collections.abc import Iterator
from pathlib import Path

import aiohttp
import pytest

from engine.daemon.api import RequestError, decode_options
from engine.daemon.config import DaemonError, read_token, token_bits
from engine.models import TaskOptions
from tests.support.daemons import Daemons, daemon_area
from tests.support.processes import FETCHTOP, assert_no_traceback, child_env

NOBODY = pwd.getpwnam("nobody").pw_uid


@pytest.fixture
def daemons() -> Iterator[Daemons]:
    with daemon_area() as area:
        yield area


def run_daemon(daemons: Daemons, *args: str) -> subprocess.CompletedProcess[str]:
    """``fetchtop daemon ARGS`` in the area's base directory, expected to refuse to start."""
    return subprocess.run(
        [*FETCHTOP, "daemon", "--state-dir", str(daemons.state_dir), "-d", str(daemons.downloads), *args],
        capture_output=True,
        text=True,
        timeout=60,
        env=child_env(daemons.home),
        cwd=str(daemons.base),
        stdin=subprocess.DEVNULL,
    )


def one_line_refusal(result: subprocess.CompletedProcess[str], reason: str) -> None:
    assert result.returncode != 0, result
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and reason in lines[0], result.stderr
    assert_no_traceback(result.stdout, result.stderr)


def write_token(path: Path, token: str, mode: int = 0o600) -> Path:
    path.write_text(token + "\n")
    path.chmod(mode)
    return path


# ----- the token file ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("token", "bits"),
    [
        ("a" * 64, 0),
        ("ab" * 32, 0),
        ("0123456789abcdef" * 2, 64),
        ("deadbeef" * 8, 0),
        ("0123456789abcdef0123", 80),
        ("1234567890" * 4, 33),
        ("c0ffee1234567890abcdef0123456789", 128),
        ("Zm9vYmFyYmF6cXV4cXV1eA==", 133),
    ],
)
def test_token_bits_estimates_conservatively(token: str, bits: int) -> None:
    assert round(token_bits(token)) == bits


def test_random_tokens_are_strong_enough() -> None:
    for _ in range(200):
        assert token_bits(secrets.token_hex(16)) >= 128
        assert token_bits(secrets.token_urlsafe(17)) >= 128


def test_read_token_refuses_open_foreign_and_weak_files(tmp_path: Path) -> None:
    strong = secrets.token_hex(32)
    assert read_token(str(write_token(tmp_path / "ok", strong))) == strong
    for mode in (0o640, 0o604, 0o620, 0o644):
        with pytest.raises(DaemonError, match=f"accessible by group or others \\(mode {mode:04o}\\)"):
            read_token(str(write_token(tmp_path / f"open-{mode:o}", strong, mode)))
    foreign = write_token(tmp_path / "foreign", strong)
    os.chown(foreign, NOBODY, -1)
    with pytest.raises(DaemonError, match="belongs to another user"):
        read_token(str(foreign))
    for weak in ("x" * 40, "0123456789abcdef" * 4, "s3cr3t-s3cr3t-s3cr3t-s3cr3t", "deadbeefdeadbeef1234"):
        with pytest.raises(DaemonError, match="too weak"):
            read_token(str(write_token(tmp_path / "weak", weak)))


def test_the_daemon_refuses_a_readable_or_weak_token_file(daemons: Daemons) -> None:
    strong = secrets.token_hex(32)
    readable = write_token(daemons.base / "readable", strong, 0o644)
    one_line_refusal(
        run_daemon(daemons, "--listen", "127.0.0.1:0", "--token-file", str(readable)),
        "accessible by group or others (mode 0644)",
    )
    weak = write_token(daemons.base / "weak", "a" * 32)
    one_line_refusal(run_daemon(daemons, "--listen", "127.0.0.1:0", "--token-file", str(weak)), "too weak")
    # A client reading the token file for --url refuses it the same way.
    client = daemons.cli("ls", "--url", "http://127.0.0.1:9", "--token-file", str(readable))
    one_line_refusal(client, "accessible by group or others")
    assert not (daemons.state_dir / "daemon.sock").exists()


# ----- the state directory -----------------------------------------------------------------------


def test_an_open_state_directory_of_the_user_is_tightened(daemons: Daemons) -> None:
    daemons.state_dir.mkdir(mode=0o755)
    daemons.state_dir.chmod(0o755)
    daemons.start()
    assert stat.S_IMODE(daemons.state_dir.stat().st_mode) == 0o700
    assert daemons.ok("ls")


def test_a_state_directory_of_another_user_is_refused(daemons: Daemons) -> None:
    daemons.state_dir.mkdir(mode=0o777)
    daemons.state_dir.chmod(0o777)
    os.chown(daemons.state_dir, NOBODY, -1)
    one_line_refusal(run_daemon(daemons), "belongs to another user")
    assert list(daemons.state_dir.iterdir()) == []
    assert stat.S_IMODE(daemons.state_dir.stat().st_mode) == 0o777


# ----- a TCP client's directory ------------------------------------------------------------------


def test_decode_options_resolves_symlinks_and_refuses_hidden_directories(tmp_path: Path) -> None:
    root = tmp_path / "dl"
    (root / "sub" / "inner").mkdir(parents=True)
    outside = tmp_path / "outside"
    outside.mkdir()
    (root / "link").symlink_to(outside)
    (root / "sub" / "deep").symlink_to(outside / "x")
    (root / "alias").symlink_to(root / "sub")
    (root / "sneaky").symlink_to(root / ".hidden")
    defaults = TaskOptions(directory=str(root))

    def decode(directory: str) -> str:
        return decode_options({"directory": directory}, defaults, str(root), confine=True).directory

    assert decode(".") == str(root)
    assert decode("sub/inner") == str(root / "sub" / "inner")
    assert decode("alias/new") == str(root / "sub" / "new")
    for escape in ("link", "link/deeper", "sub/deep", str(outside), "../outside"):
        with pytest.raises(RequestError, match="inside the daemon's download directory"):
            decode(escape)
    for hidden in (".ssh", "sub/.git", ".config/autostart", "sneaky"):
        with pytest.raises(RequestError, match="hidden"):
            decode(hidden)
    # The same user over the Unix socket may put a download anywhere, as before.
    assert decode_options({"directory": "link"}, defaults, str(root)).directory == str(root / "link")


async def test_over_tcp_a_symlink_inside_d_does_not_lead_outside(daemons: Daemons, tmp_path: Path) -> None:
    token = secrets.token_hex(32)
    token_file = write_token(daemons.base / "token", token)
    outside = daemons.base / "outside"
    outside.mkdir()
    (daemons.downloads / "link").symlink_to(outside)
    info = daemons.start("--listen", "127.0.0.1:0", "--token-file", str(token_file)).wait_ready()
    base = f"http://{info['listen']}"
    auth = {"Authorization": f"Bearer {token}"}
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=20)) as http:
        for directory, reason in (
            ("link", "inside the daemon's download directory"),
            ("link/sub", "inside the daemon's download directory"),
            (".ssh", "hidden"),
            ("a/.b", "hidden"),
        ):
            async with http.post(
                f"{base}/v1/add",
                headers=auth,
                json={"url": "http://127.0.0.1:9/x.bin", "options": {"directory": directory}},
            ) as resp:
                body = await resp.json()
                assert resp.status == 400, (directory, body)
                assert reason in body["error"], (directory, body)
        async with http.get(f"{base}/v1/tasks", headers=auth) as resp:
            assert (await resp.json())["tasks"] == []
    assert list(outside.iterdir()) == []


# ----- the socket path ---------------------------------------------------------------------------


def test_a_socket_path_holding_anything_but_a_stale_socket_is_left_alone(daemons: Daemons) -> None:
    precious = daemons.base / "precious.txt"
    precious.write_text("precious")
    one_line_refusal(run_daemon(daemons, "--socket", "precious.txt"), "is not a socket")
    assert precious.read_text() == "precious"

    link = daemons.base / "link.sock"
    link.symlink_to(precious)
    one_line_refusal(run_daemon(daemons, "--socket", str(link)), "is not a socket")
    assert link.is_symlink() and precious.read_text() == "precious"

    directory = daemons.base / "dir.sock"
    directory.mkdir()
    one_line_refusal(run_daemon(daemons, "--socket", str(directory)), "is not a socket")
    assert directory.is_dir()

    # A socket nobody listens on (a daemon killed with -9) is stale: it is replaced.
    stale = daemons.base / "stale.sock"
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.bind(str(stale))
    assert stat.S_ISSOCK(os.lstat(stale).st_mode)
    daemons.start("--socket", str(stale))
    assert daemons.ok("ls", "--socket", str(stale))
