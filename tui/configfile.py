"""The config file's logic: parse, validate, match hosts, layer over the command line. No I/O here.

The file is TOML (read with :mod:`tomllib`). Its keys are the long option names of ``fetchtop get``
(``connections = 4``, ``limit-rate = "2M"``, ``insecure = true``, ``header = ["X-A: 1"]``), and
``[hosts."example.com"]`` sections hold the per-download ones for downloads from that host.
Precedence, highest first: the command line, the URL's host section, the file's top level, the
built-in defaults. Every problem is one :class:`ConfigError` line naming the file and the key.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Literal
from urllib.parse import quote, urlsplit, urlunsplit

Kind = Literal["flag", "value", "list"]
"""How an option takes its value: a boolean switch, one value, or a repeatable value."""

USER_KEY = "user"
"""The host-section key for the URL's credentials, ``USER:PASSWORD``."""


class ConfigError(Exception):
    """A bad config file, in one line that names the file, the key and the problem."""


@dataclass(frozen=True)
class OptionSpec:
    """One config key: the option it stands for and how its value is read."""

    key: str
    """The key, the option's long name without dashes (``limit-rate``)."""
    dest: str
    """The argparse destination it sets (``limit_rate``)."""
    kind: Kind
    """Flag (TOML boolean), one value, or a list of values."""
    convert: Callable[[str], object] | None = None
    """The option's own converter (its argparse ``type``), applied to the value's text."""


@dataclass(frozen=True)
class HostSection:
    """A ``[hosts."NAME"]`` section: options for downloads whose URL has that host (and port)."""

    host: str
    """Host name, lower case (IPv6 without brackets)."""
    port: int | None
    """Only URLs with this port match; None matches any port."""
    values: Mapping[str, object]
    """Converted values by argparse destination (plus ``user``: a ``(user, password)`` pair)."""


@dataclass(frozen=True)
class Config:
    """A parsed, validated config file."""

    source: str
    """The file's path, for messages."""
    top: Mapping[str, object] = field(default_factory=dict)
    """The top-level values by argparse destination."""
    hosts: tuple[HostSection, ...] = ()
    """The host sections, in file order."""


def specs_from_parser(parser: argparse.ArgumentParser, exclude: Iterable[str] = ()) -> dict[str, OptionSpec]:
    """The config keys a parser's long options give, by key; ``exclude`` names keys left out."""
    excluded = set(exclude)
    specs: dict[str, OptionSpec] = {}
    for action in parser._actions:
        longs = [s for s in action.option_strings if s.startswith("--")]
        if not longs or isinstance(action, argparse._HelpAction):
            continue
        key = longs[0][2:]
        if key in excluded:
            continue
        kind: Kind
        if isinstance(action, argparse._StoreTrueAction | argparse._StoreFalseAction):
            kind = "flag"
        elif isinstance(action, argparse._AppendAction):
            kind = "list"
        else:
            kind = "value"
        convert = action.type if callable(action.type) else None
        specs[key] = OptionSpec(key=key, dest=action.dest, kind=kind, convert=convert)
    return specs


def _describe(value: object) -> str:
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "a table"
    return type(value).__name__  # dates and times


def _text(value: object, what: str) -> str:
    """A scalar's text for the option's converter: strings as they are, numbers as written."""
    if isinstance(value, str):
        return value
    if isinstance(value, int | float) and not isinstance(value, bool):
        return str(value)
    raise ValueError(f"expected {what}, got {_describe(value)}")


def _convert(spec: OptionSpec, value: object) -> object:
    """The value in the option's terms, or ValueError saying what is wrong with it."""
    if spec.kind == "flag":
        if not isinstance(value, bool):
            raise ValueError(f"expected true or false, got {_describe(value)}")
        return value
    if spec.kind == "list":
        items = value if isinstance(value, list) else None
        if items is None:
            raise ValueError(f'expected a list of strings, e.g. ["X-Name: value"], got {_describe(value)}')
        return [_one(spec, _text(item, "a string in the list")) for item in items]
    return _one(spec, _text(value, "a string or a number"))


def _one(spec: OptionSpec, text: str) -> object:
    if spec.convert is None:
        return text
    try:
        return spec.convert(text)
    except (argparse.ArgumentTypeError, ValueError, TypeError) as exc:
        raise ValueError(str(exc) or f"invalid value {text!r}") from None


def _unknown(key: str, known: Iterable[str]) -> str:
    import difflib

    close = difflib.get_close_matches(key, list(known), n=1)
    return "unknown key" + (f" (did you mean '{close[0]}'?)" if close else "")


def parse_user(value: object) -> tuple[str, str]:
    """``(user, password)`` from a host section's ``user = "USER:PASSWORD"``; ValueError otherwise."""
    if not isinstance(value, str):
        raise ValueError(f"expected a string USER:PASSWORD, got {_describe(value)}")
    text = value
    user, sep, password = text.partition(":")
    if not user:
        raise ValueError("expected USER:PASSWORD, got an empty user name")
    if not sep:
        # Asking for the password (the -u/--user feature) is not built yet; never drop the key silently.
        raise ValueError("expected USER:PASSWORD (asking for a password is not supported yet)")
    return user, password


def parse_host_name(name: str) -> tuple[str, int | None]:
    """``(host, port)`` from a section name: ``example.com``, ``example.com:8080``, ``[::1]:80``."""
    text = name.strip().lower()
    if not text or any(c in text for c in "/?#@ \t") or "://" in text:
        raise ValueError('expected a host name such as "example.com" or "example.com:8080"')
    if text.startswith("["):
        host, sep, rest = text[1:].partition("]")
        if not sep or (rest and not rest.startswith(":")):
            raise ValueError("expected [IPv6] or [IPv6]:PORT")
        port_text = rest[1:] if rest else None
    elif text.count(":") == 1:
        host, port_text = text.split(":")
    else:
        host, port_text = text, None  # a bare IPv6 address, or a name
    if not host:
        raise ValueError("expected a host name before the port")
    if port_text is None:
        return host, None
    if not port_text.isdigit() or not 0 < int(port_text) <= 65535:
        raise ValueError(f"port must be 1-65535, got {port_text!r}")
    return host, int(port_text)


def parse_config(
    text: str,
    source: str,
    specs: Mapping[str, OptionSpec],
    host_keys: Iterable[str],
    not_here: Mapping[str, str] | None = None,
) -> Config:
    """Parse and check a config file's text; raises ConfigError (one line) on the first problem.

    ``specs`` are the allowed top-level keys, ``host_keys`` those a host section may set (``user``
    among them), ``not_here`` keys refused with a reason (``output``: one download's option).
    """
    import tomllib  # here: a run without a config file never loads the TOML parser

    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{source}: invalid TOML: {exc}") from None
    refused = dict(not_here or {})
    allowed_hosts = set(host_keys)

    def value_of(spec: OptionSpec, value: object, where: str) -> object:
        try:
            return _convert(spec, value)
        except ValueError as exc:
            raise ConfigError(f"{source}: {where}: {exc}") from None

    top: dict[str, object] = {}
    hosts: list[HostSection] = []
    for key, value in data.items():
        where = f"key '{key}'"
        if key == "hosts":
            if not isinstance(value, dict):
                raise ConfigError(f'{source}: {where}: expected [hosts."NAME"] sections')
            for name, section in value.items():
                hosts.append(_host_section(source, name, section, specs, allowed_hosts, value_of))
            continue
        if key in refused:
            raise ConfigError(f"{source}: {where}: {refused[key]}")
        spec = specs.get(key)
        if spec is None:
            raise ConfigError(f"{source}: {where}: {_unknown(key, [*specs, 'hosts'])}")
        top[spec.dest] = value_of(spec, value, where)
    return Config(source=source, top=top, hosts=tuple(hosts))


def _host_section(
    source: str,
    name: str,
    section: object,
    specs: Mapping[str, OptionSpec],
    allowed: set[str],
    value_of: Callable[[OptionSpec, object, str], object],
) -> HostSection:
    label = f'[hosts."{name}"]'
    try:
        host, port = parse_host_name(name)
    except ValueError as exc:
        raise ConfigError(f"{source}: {label}: {exc}") from None
    if not isinstance(section, dict):
        raise ConfigError(f"{source}: {label}: expected a table of options, got {_describe(section)}")
    values: dict[str, object] = {}
    for key, value in section.items():
        where = f"{label} key '{key}'"
        if key == USER_KEY and key in allowed:
            try:
                values[USER_KEY] = parse_user(value)
            except ValueError as exc:
                raise ConfigError(f"{source}: {where}: {exc}") from None
            continue
        spec = specs.get(key)
        if key not in allowed or spec is None:
            if spec is not None:
                problem = f"cannot be set per host (host keys: {', '.join(sorted(allowed))})"
            else:
                problem = _unknown(key, allowed)
            raise ConfigError(f"{source}: {where}: {problem}")
        values[spec.dest] = value_of(spec, value, where)
    return HostSection(host=host, port=port, values=values)


def host_section(config: Config | None, url: str) -> HostSection | None:
    """The section for ``url``'s host: exact host name (no subdomains), a ``host:port`` one first."""
    if config is None or not config.hosts:
        return None
    try:
        parts = urlsplit(url)
        host = (parts.hostname or "").lower()
        port = parts.port
    except ValueError:
        return None  # a malformed URL fails later, with the engine's message
    if not host:
        return None
    if port is None:
        port = {"http": 80, "https": 443}.get(parts.scheme.lower())
    plain: HostSection | None = None
    for section in config.hosts:
        if section.host != host.rstrip("."):
            continue
        if section.port is not None and section.port == port:
            return section
        if section.port is None and plain is None:
            plain = section
    return plain


def merge_headers(*layers: Iterable[tuple[str, str]]) -> list[tuple[str, str]]:
    """Headers of all layers, lowest first: a later layer's header replaces earlier ones of its name."""
    merged: list[tuple[str, str]] = []
    for layer in layers:
        items = list(layer)
        names = {name.lower() for name, _ in items}
        merged = [(n, v) for n, v in merged if n.lower() not in names]
        merged.extend(items)
    return merged


def layered(
    values: Mapping[str, object],
    given: Iterable[str],
    *layers: Mapping[str, object],
    lists: Iterable[str] = (),
) -> dict[str, object]:
    """``values`` (the parsed command line) with each layer (lowest first) filling what was not given.

    Destinations in ``lists`` (headers) are merged by name across every layer, the command line's last.
    """
    given_set = set(given)
    list_dests = set(lists)
    out = dict(values)
    for dest in list_dests:
        parts = [layer.get(dest, []) for layer in layers]
        command_line = values.get(dest, []) if dest in given_set else []
        out[dest] = merge_headers(*parts, command_line)  # type: ignore[arg-type]
    for layer in layers:
        for dest, value in layer.items():
            if dest not in given_set and dest not in list_dests and dest != USER_KEY:
                out[dest] = value
    return out


def with_credentials(url: str, credentials: tuple[str, str] | None) -> str:
    """``url`` with ``user:password@`` added, unless it has credentials of its own (those win)."""
    if credentials is None:
        return url
    try:
        parts = urlsplit(url)
    except ValueError:
        return url
    if "@" in parts.netloc or not parts.netloc:
        return url
    user, password = (quote(part, safe="") for part in credentials)
    return urlunsplit(parts._replace(netloc=f"{user}:{password}@{parts.netloc}"))
