"""The config file's pure logic: keys and their checks, host sections and their matching, the layering
under the command line, header merging and URL credentials (tui.configfile, with the real key table of
tui.options). Also the argv and environment a hook is given (engine.hooks.hook_call)."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from engine.hooks import hook_call
from engine.models import TaskOptions, TaskSnapshot, TaskState
from tui.cli import build_parser
from tui.configfile import (
    Config,
    ConfigError,
    HostSection,
    host_section,
    layered,
    merge_headers,
    parse_config,
    parse_host_name,
    with_credentials,
)
from tui.options import CONFIG_NOT_HERE, HOST_KEYS, _config_specs, parse_download_args

SPECS = _config_specs()


def parse(text: str) -> Config:
    return parse_config(text, "/cfg/config.toml", SPECS, HOST_KEYS, CONFIG_NOT_HERE)


def problem(text: str) -> str:
    with pytest.raises(ConfigError) as info:
        parse(text)
    message = str(info.value)
    assert "\n" not in message
    assert message.startswith("/cfg/config.toml: ")
    return message.removeprefix("/cfg/config.toml: ")


def test_top_level_keys_are_the_long_option_names_converted_like_the_command_line() -> None:
    config = parse(
        'connections = 4\nlimit-rate = "2M"\ndir = "~/dl"\ninsecure = true\nheader = ["X-A: 1"]\n'
        'timeout = 7.5\nlowest-speed = "10K"\non-complete = "notify-send \'done now\'"\njobs = 2\n'
    )
    assert config.top == {
        "connections": 4,
        "limit_rate": 2 * 1024 * 1024,
        "dir": "~/dl",
        "insecure": True,
        "header": [("X-A", "1")],
        "timeout": 7.5,
        "lowest_speed": 10 * 1024,
        "on_complete": ("notify-send", "done now"),
        "jobs": 2,
    }
    assert config.hosts == ()


def test_every_shared_download_option_is_a_key_except_the_refused_ones() -> None:
    longs = {s[2:] for a in build_parser("get")._actions for s in a.option_strings if s.startswith("--")} - {
        "help"
    }
    assert set(SPECS) == longs - set(CONFIG_NOT_HERE)
    assert set(HOST_KEYS) - {"user"} <= set(SPECS)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("connections = 'x'", "key 'connections': expected a whole number, got 'x'"),
        ("connections = 33", "key 'connections': must be at most 32, got 33"),
        ("connections = 0", "key 'connections': must be at least 1, got 0"),
        ("connections = true", "key 'connections': expected a string or a number, got a boolean"),
        ("retries = -1", "key 'retries': must be 0 or more, got -1"),
        ("insecure = 'yes'", "key 'insecure': expected true or false, got a string"),
        ("header = 'X: 1'", "key 'header': expected a list of strings"),
        ("header = ['Authorization Bearer s3cret']", "key 'header': each header must be 'Name: value'"),
        ("limit-rate = 'fast'", "key 'limit-rate': invalid rate 'fast'"),
        ("conections = 2", "key 'conections': unknown key (did you mean 'connections'?)"),
        ("output = 'a.bin'", "key 'output': names one file"),
        ("on-error = ''", "key 'on-error': expected a command, got nothing"),
        ("hosts = 3", "key 'hosts': expected [hosts.\"NAME\"] sections"),
        ('[hosts."a.example"]\ndir = "x"', "[hosts.\"a.example\"] key 'dir': cannot be set per host"),
        ('[hosts."a.example"]\nheaders = ["X: 1"]', "unknown key (did you mean 'header'?)"),
        ('[hosts."a.example"]\nuser = "alice"', "key 'user': expected USER:PASSWORD (asking for a password"),
        ('[hosts."a.example"]\nuser = 5', "key 'user': expected a string USER:PASSWORD, got a number"),
        ('[hosts."http://a.example/"]\nconnections = 2', '[hosts."http://a.example/"]: expected a host'),
        ('[hosts."a.example:99999"]\nconnections = 2', "port must be 1-65535"),
        ("connections = ", "invalid TOML: "),
    ],
)
def test_a_bad_file_is_one_line_naming_the_key_and_the_problem(text: str, expected: str) -> None:
    assert expected in problem(text)


def test_secrets_in_a_bad_value_are_not_quoted() -> None:
    assert "s3cret" not in problem("header = ['Authorization Bearer s3cret']")
    assert "s3cret" not in problem('[hosts."a.example"]\nuser = ":s3cret"')


def test_the_readmes_example_file_is_valid() -> None:
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    example = readme.split("## Config file", 1)[1].split("```toml\n", 1)[1].split("```", 1)[0]
    config = parse(example)
    assert config.top["connections"] == 4
    assert [(h.host, h.port) for h in config.hosts] == [("files.example.com", None), ("127.0.0.1", 8080)]
    assert config.hosts[0].values["user"] == ("alice", "secret")


def test_host_sections_keep_their_host_port_and_values() -> None:
    config = parse(
        '[hosts."Files.Example.com"]\nconnections = 2\nuser = "bob:p@ss:w"\nlimit-rate = "1M"\n'
        '[hosts."127.0.0.1:8080"]\nheader = ["X-B: 2"]\n[hosts."[::1]:81"]\nretries = 0\n'
    )
    assert config.hosts == (
        HostSection(
            "files.example.com", None, {"connections": 2, "user": ("bob", "p@ss:w"), "limit_rate": 1 << 20}
        ),
        HostSection("127.0.0.1", 8080, {"header": [("X-B", "2")]}),
        HostSection("::1", 81, {"retries": 0}),
    )


def test_host_matching_is_exact_and_a_port_specific_section_wins() -> None:
    config = parse(
        '[hosts."example.com"]\nconnections = 2\n[hosts."example.com:8443"]\nconnections = 3\n'
        '[hosts."127.0.0.1"]\nretries = 1\n'
    )

    def match(url: str) -> int | None:
        section = host_section(config, url)
        return None if section is None else section.port or 0

    assert match("https://example.com/a") == 0
    assert match("https://EXAMPLE.com./a") == 0
    assert match("https://example.com:8443/a") == 8443
    assert match("https://user:pw@example.com:8443/a") == 8443
    assert match("https://www.example.com/a") is None  # no subdomains
    assert match("https://example.com.evil.net/a") is None
    assert match("http://127.0.0.1:9/x") == 0
    assert match("not a url") is None
    assert host_section(None, "https://example.com/") is None


def test_a_default_port_matches_its_explicit_section() -> None:
    config = parse('[hosts."example.com:443"]\nconnections = 2\n')
    assert host_section(config, "https://example.com/a") is not None
    assert host_section(config, "http://example.com/a") is None


@pytest.mark.parametrize(
    ("name", "expected"),
    [("a.b", ("a.b", None)), ("A.B:80", ("a.b", 80)), ("::1", ("::1", None)), ("[::1]", ("::1", None))],
)
def test_host_names(name: str, expected: tuple[str, int | None]) -> None:
    assert parse_host_name(name) == expected


def test_layers_fill_only_what_the_command_line_did_not_give() -> None:
    values = {"connections": 8, "retries": 5, "header": [("X-Cli", "c"), ("X-Same", "cli")]}
    top = {"connections": 4, "retries": 2, "header": [("X-Top", "t"), ("X-Same", "top")]}
    host = {"connections": 2, "header": [("X-Host", "h")], "user": ("u", "p")}
    out = layered(values, {"retries", "header"}, top, host, lists=["header"])
    assert out["connections"] == 2  # host over top over the default
    assert out["retries"] == 5  # the command line's
    assert out["header"] == [("X-Top", "t"), ("X-Host", "h"), ("X-Cli", "c"), ("X-Same", "cli")]
    assert "user" not in out


header_names = st.sampled_from(["A", "a", "B", "X-Token", "x-token", "C"])
header_layer = st.lists(st.tuples(header_names, st.text("xyz", max_size=3)), max_size=4)


@given(st.lists(header_layer, max_size=4))
def test_merged_headers_keep_each_name_from_its_highest_layer_only(
    layers: list[list[tuple[str, str]]],
) -> None:
    merged = merge_headers(*layers)
    for name in {n.lower() for n, _ in merged}:
        top = max(i for i, layer in enumerate(layers) if any(n.lower() == name for n, _ in layer))
        assert [h for h in merged if h[0].lower() == name] == [h for h in layers[top] if h[0].lower() == name]
    assert {n.lower() for n, _ in merged} == {n.lower() for layer in layers for n, _ in layer}


@given(st.text(min_size=1, max_size=8), st.text(max_size=8))
def test_credentials_go_into_the_url_quoted_and_come_back_out(user: str, password: str) -> None:
    from yarl import URL

    url = with_credentials("https://example.com:8443/a/b?q=1", (user, password))
    parsed = URL(url)
    assert (parsed.user, parsed.password) == (user, password)
    assert (parsed.host, parsed.port, parsed.path_qs) == ("example.com", 8443, "/a/b?q=1")


def test_a_url_keeps_its_own_credentials() -> None:
    assert with_credentials("https://me:pw@example.com/", ("u", "p")) == "https://me:pw@example.com/"
    assert with_credentials("https://example.com/", None) == "https://example.com/"


def test_no_config_refuses_a_config_file_too(tmp_path: object) -> None:
    from tui.options import UsageError

    with pytest.raises(UsageError, match="contradict"):
        parse_download_args(build_parser("get"), ["--no-config", "--config", "x.toml", "http://a/"])


def test_a_hook_gets_the_path_last_and_the_task_in_its_environment() -> None:
    task = TaskSnapshot(
        id=7,
        url="https://alice:pw@example.com/f.iso?sig=1",
        state=TaskState.FAILED,
        options=TaskOptions(),
        path="/d/f.iso",
    )
    argv, env = hook_call(("notify", "-t", "x y"), task, "failed", "HTTP 404", None, {"KEEP": "1"})
    assert argv == ["notify", "-t", "x y", "/d/f.iso"]
    assert env == {
        "KEEP": "1",
        "FETCHTOP_ID": "7",
        "FETCHTOP_URL": "https://example.com/f.iso?sig=1",
        "FETCHTOP_PATH": "/d/f.iso",
        "FETCHTOP_STATUS": "failed",
        "FETCHTOP_ERROR": "HTTP 404",
    }
    nameless = TaskSnapshot(id=1, url="https://e.com/", state=TaskState.FAILED, options=TaskOptions())
    argv, env = hook_call(("h",), nameless, "failed", "refused", None, {})
    assert argv == ["h", ""]
    assert env["FETCHTOP_PATH"] == ""
