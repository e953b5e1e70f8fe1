"""The config file and hooks end to end: ``fetchtop get``, ``add`` and ``daemon`` as real processes with
a config file in a private ``XDG_CONFIG_HOME``, against fault servers on 127.0.0.1.

Values from the file are used, a host section reaches one host only, the command line wins, a bad
file is one line and exit 2 with no request made, and hooks run for get and for the daemon.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from faultserver.content import KiB, MiB, file_matches
from faultserver.runner import ThreadedFaultServer
from faultserver.server import FaultServer
from tests.support.daemons import Daemons, daemon_area
from tests.support.processes import Processes, assert_clean_success, assert_no_traceback
from tests.support.waiting import wait_until_sync

RECORDER = """\
import json, os, sys
env = {k: v for k, v in os.environ.items() if k.startswith("FETCHTOP_")}
with open(sys.argv[1], "a", encoding="utf-8") as f:
    f.write(json.dumps({"argv": sys.argv[2:], "env": env}) + "\\n")
"""


def write_config(env: dict[str, str], text: str) -> Path:
    """Write the default config file of a child with this environment."""
    path = Path(env["XDG_CONFIG_HOME"]) / "fetchtop" / "config.toml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def seen(srv: FaultServer, name: str, header: str) -> set[str | None]:
    """The values of one request header over every request the server had for a file."""
    return {rec.headers.get(header) for rec in srv.stats(name).records}


def recorder(tmp_path: Path) -> tuple[str, Path]:
    """A hook command line that appends its arguments and FETCHTOP_* variables to a file."""
    script = tmp_path / "record.py"
    script.write_text(RECORDER)
    out = tmp_path / "calls.jsonl"
    return f"{sys.executable} {script} {out}", out


def calls(out: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in out.read_text().splitlines()] if out.exists() else []


@pytest.fixture
def second_server() -> Iterator[FaultServer]:
    with ThreadedFaultServer() as srv:
        yield srv


def test_the_files_values_are_used(threaded_fault_server: FaultServer, procs: Processes) -> None:
    srv = threaded_fault_server
    url = srv.add_file("cfg.bin", 2 * MiB, rate=4 * MiB)
    write_config(
        procs.env,
        'dir = "from-config"\nconnections = 1\nheader = ["X-From-Config: yes"]\nuser-agent = "cfg-agent/1"\n',
    )
    res = procs.run(["get", url])
    assert_clean_success(res)
    assert file_matches(str(procs.cwd / "from-config" / "cfg.bin"), "cfg.bin", 2 * MiB)
    assert seen(srv, "cfg.bin", "X-From-Config") == {"yes"}
    assert seen(srv, "cfg.bin", "User-Agent") == {"cfg-agent/1"}
    assert srv.stats("cfg.bin").peak_concurrent == 1  # connections = 1, not the default 8


def test_a_host_section_applies_to_its_host_only_and_the_command_line_wins(
    threaded_fault_server: FaultServer, second_server: FaultServer, procs: Processes
) -> None:
    one, two = threaded_fault_server, second_server
    a = one.add_file("a.bin", 256 * KiB)
    b = two.add_file("b.bin", 256 * KiB)
    port = a.split("/")[2].split(":")[1]
    write_config(
        procs.env,
        'header = ["X-Level: top", "X-Top: t"]\n'
        f'[hosts."127.0.0.1:{port}"]\nheader = ["X-Level: host", "X-Host: h"]\nuser-agent = "host-agent"\n',
    )
    res = procs.run(["get", "-d", "out", a, b])
    assert_clean_success(res)
    assert seen(one, "a.bin", "X-Level") == {"host"}
    assert seen(one, "a.bin", "X-Host") == {"h"}
    assert seen(one, "a.bin", "X-Top") == {"t"}
    assert seen(one, "a.bin", "User-Agent") == {"host-agent"}
    assert seen(two, "b.bin", "X-Level") == {"top"}
    assert seen(two, "b.bin", "X-Host") == {None}
    assert seen(two, "b.bin", "User-Agent") != {"host-agent"}

    one.reset_stats()
    (procs.cwd / "out" / "a.bin").unlink()
    res = procs.run(["get", "-d", "out", "-H", "X-Level: cli", "--user-agent", "cli-agent", a])
    assert_clean_success(res)
    assert seen(one, "a.bin", "X-Level") == {"cli"}
    assert seen(one, "a.bin", "User-Agent") == {"cli-agent"}
    assert seen(one, "a.bin", "X-Host") == {"h"}  # what the command line did not name stays


def test_a_host_sections_user_is_sent_as_the_urls_credentials_and_never_shown(
    threaded_fault_server: FaultServer, procs: Processes
) -> None:
    srv = threaded_fault_server
    url = srv.add_file("private.bin", 128 * KiB, auth=("alice", "s3cr:et"))
    host = url.split("/")[2]
    write_config(procs.env, f'[hosts."{host}"]\nuser = "alice:s3cr:et"\n')
    res = procs.run(["get", "-d", "out", url])
    assert_clean_success(res)
    assert file_matches(str(procs.cwd / "out" / "private.bin"), "private.bin", 128 * KiB)
    assert "s3cr" not in res.stdout + res.stderr


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            "connections = 4\nlimit-rate = [1]\n",
            "key 'limit-rate': expected a string or a number, got a list",
        ),
        ("jobs = 2\nconections = 3\n", "key 'conections': unknown key (did you mean 'connections'?)"),
        ("[hosts.'h.example']\nuser = 'bob'\n", "key 'user': expected USER:PASSWORD"),
        # At the top a password would go to every host: only a host section may hold one.
        ("user = 'bob:pw'\n", "key 'user': would go to every host"),
        ("connections = \n", "invalid TOML: "),
    ],
)
def test_a_bad_file_is_one_line_exit_2_and_nothing_started(
    threaded_fault_server: FaultServer, procs: Processes, text: str, message: str
) -> None:
    srv = threaded_fault_server
    url = srv.add_file("never.bin", 64 * KiB)
    path = write_config(procs.env, text)
    res = procs.run(["get", "-d", "out", url])
    assert res.returncode == 2, res.describe()
    assert res.err_lines == [res.err_lines[0]] and res.err_lines[0].startswith(
        f"fetchtop: config file {path}: "
    )
    assert message in res.err_lines[0]
    assert_no_traceback(res.stdout, res.stderr)
    assert srv.stats("never.bin").records == []
    assert not (procs.cwd / "out").exists()


def test_no_config_skips_the_default_file_and_config_names_another(
    threaded_fault_server: FaultServer, procs: Processes
) -> None:
    srv = threaded_fault_server
    url = srv.add_file("n.bin", 64 * KiB)
    write_config(procs.env, "this is not toml\n")
    res = procs.run(["get", "--no-config", "-d", "out", url])
    assert_clean_success(res)
    other = procs.cwd / "other.toml"
    other.write_text('dir = "elsewhere"\n')
    res = procs.run(["get", "--config", str(other), url])
    assert_clean_success(res)
    assert file_matches(str(procs.cwd / "elsewhere" / "n.bin"), "n.bin", 64 * KiB)
    res = procs.run(["get", "--config", str(procs.cwd / "missing.toml"), url])
    assert res.returncode == 2
    assert res.err_lines == [f"fetchtop: config file {procs.cwd / 'missing.toml'}: no such file"]


def test_get_runs_hooks_and_reports_a_failing_one_without_failing(
    threaded_fault_server: FaultServer, procs: Processes, tmp_path: Path
) -> None:
    srv = threaded_fault_server
    good = srv.add_file("good.bin", 64 * KiB)
    missing = srv.status_url(404)
    hook, out = recorder(tmp_path)
    # The on-error hook from the file, the on-complete one from the command line.
    write_config(procs.env, f"on-error = {json.dumps(hook)}\n")
    res = procs.run(["get", "-q", "-d", "out", "--on-complete", hook + " done", good, missing])
    assert res.returncode == 1, res.describe()  # the 404, not the hooks
    by_status = {c["env"]["FETCHTOP_STATUS"]: c for c in calls(out)}
    assert by_status["completed"]["argv"] == ["done", str(procs.cwd / "out" / "good.bin")]
    assert "404" in by_status["failed"]["env"]["FETCHTOP_ERROR"]
    assert by_status["failed"]["env"]["FETCHTOP_URL"] == missing

    failing = f"{sys.executable} -c \"import sys; print('no room'); sys.exit(4)\""
    res = procs.run(["get", "-q", "-d", "out2", "--on-complete", failing, good])
    assert res.returncode == 0, res.describe()
    assert res.err_lines == [f"fetchtop: {good}: on-complete hook failed: exit status 4: no room"]
    assert file_matches(str(procs.cwd / "out2" / "good.bin"), "good.bin", 64 * KiB)


def test_add_refuses_hooks_they_belong_to_the_daemon(procs: Processes) -> None:
    res = procs.run(["add", "--on-complete", "true", "http://127.0.0.1:9/x"])
    assert res.returncode == 2
    assert res.err_lines == [
        "fetchtop: --on-complete is an option of 'fetchtop daemon' (hooks run in the daemon)"
    ]


@pytest.fixture
def daemons() -> Iterator[Daemons]:
    with daemon_area() as area:
        yield area


def test_the_daemon_runs_hooks_and_uses_the_file_add_applies_host_sections(
    daemons: Daemons, threaded_fault_server: FaultServer, tmp_path: Path
) -> None:
    srv = threaded_fault_server
    url = srv.add_file("daemon.bin", 256 * KiB)
    host = url.split("/")[2]
    hook, out = recorder(tmp_path)
    env = {"XDG_CONFIG_HOME": str(daemons.home / ".config")}
    write_config(
        env,
        f'on-complete = {json.dumps(hook)}\nconnections = 2\nlimit-rate = "50M"\n'
        f'[hosts."{host}"]\nheader = ["X-Via: add"]\n',
    )
    daemons.start()
    task_id = int(daemons.ok("add", url).strip())
    daemons.wait_state(task_id, "completed")
    [call] = wait_until_sync(lambda: calls(out) or None, "the daemon to run the hook")
    path = str(daemons.downloads / "daemon.bin")
    assert call["argv"] == [path]
    assert call["env"]["FETCHTOP_ID"] == str(task_id)
    assert call["env"]["FETCHTOP_STATUS"] == "completed"
    assert file_matches(path, "daemon.bin", 256 * KiB)
    assert seen(srv, "daemon.bin", "X-Via") == {"add"}
    task = daemons.task(task_id)
    assert task["options"]["connections"] == 2
    # The file's limit-rate is the daemon's overall limit; add does not make it each task's too.
    assert task["options"]["speed_limit"] is None
    assert daemons.snapshot()["speed_limit"] == 50 * MiB


@pytest.mark.parametrize("command", [[], ["daemon"]])
def test_commands_with_one_set_of_options_refuse_a_url_with_a_host_section(
    threaded_fault_server: FaultServer, procs: Processes, command: list[str]
) -> None:
    srv = threaded_fault_server
    url = srv.add_file("h.bin", 32 * KiB)
    other = srv.status_url(404).replace("127.0.0.1", "localhost")  # never requested either
    write_config(procs.env, '[hosts."127.0.0.1"]\nconnections = 2\n')
    res = procs.run([*command, "--state-dir", str(procs.cwd / "state"), other, url])
    assert res.returncode == 2, res.describe()
    assert len(res.err_lines) == 1
    assert res.err_lines[0].startswith(f"fetchtop: {url}: its host section in the config file applies to")
    assert srv.stats("h.bin").records == []
