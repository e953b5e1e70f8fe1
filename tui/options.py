"""The options every download command shares (``fetchtop``, ``get``, ``add``), parsed into engine terms.

No Textual here, and the engine (with aiohttp under it) is imported inside functions: a Ctrl-C while
it loads must reach main()'s handler, not print a traceback from the console script's import.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

if TYPE_CHECKING:
    from engine.config import EngineConfig
    from engine.cookiefile import CookieRow
    from engine.models import TaskOptions
    from engine.schedule import Schedule
    from tui.configfile import Config

PROG = "fetchtop"
"""The command's name, in messages."""


class UsageError(Exception):
    """Bad command-line input: reported in one line with exit status 2."""


class Parser(argparse.ArgumentParser):
    """An ArgumentParser whose errors are one line, not a usage dump, and that takes no abbreviations.

    argparse would read ``--user-a alice:pw`` as ``--user-agent alice:pw`` (and send the password
    as the User-Agent): every option must be spelled out.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("allow_abbrev", False)
        super().__init__(*args, **kwargs)

    def error(self, message: str) -> NoReturn:
        raise UsageError(f"{message} (see '{self.prog} --help')")


@dataclass(frozen=True)
class DownloadRequest:
    """What the shared download options ask for: URLs, per-task options, engine settings."""

    urls: list[str]
    """URLs from the command line and the input file, in order."""
    options: TaskOptions
    """Options every task gets."""
    config: EngineConfig
    """Engine-wide settings."""
    metrics_addr: str
    """Address for the /metrics endpoint."""
    metrics_port: int | None
    """Port for the /metrics endpoint; None leaves it off."""
    quiet: bool
    """No progress output."""
    downloads: tuple[tuple[str, TaskOptions], ...] = ()
    """Each URL with its own options: the host section of the config file applied (and its ``user``
    as the URL's credentials), a large checksum table cut to that download's lines."""


def _whole_number(text: str, least: int) -> int:
    """``text`` as a whole number of at least ``least``; argparse's error for anything else."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < least:
        wanted = "at least 1" if least == 1 else f"{least} or more"
        raise argparse.ArgumentTypeError(f"must be {wanted}, got {value}")
    return value


def _positive_int(text: str) -> int:
    return _whole_number(text, 1)


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected seconds, got {text!r}") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be positive, got {text}")
    return value


def _rate(text: str) -> int | None:
    from engine.units import parse_rate

    try:
        return parse_rate(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _schedule(text: str) -> Schedule:
    from engine.schedule import ScheduleError, parse_schedule

    try:
        return parse_schedule(text)
    except ScheduleError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _lowest_speed(text: str) -> int:
    rate = _rate(text)
    return 0 if rate is None else rate  # "0" turns the check off, as curl's --speed-limit 0


def _header(text: str) -> tuple[str, str]:
    name, sep, value = text.partition(":")
    if not sep or not name.strip() or any(c in name for c in " \t\r\n"):
        raise argparse.ArgumentTypeError(f"header must be 'Name: value', got {text!r}")
    return name.strip(), value.strip()


def _port(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a port number, got {text!r}") from None
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"port must be 0-65535, got {value}")
    return value


def add_download_options(parser: argparse.ArgumentParser) -> None:
    """The options shared by ``fetchtop get``, the dashboard and ``fetchtop add``."""
    from engine.models import MAX_CONNECTIONS

    parser.add_argument("urls", nargs="*", metavar="URL", help="URLs to download")
    parser.add_argument(
        "-o", "--output", metavar="FILE", help="save as FILE, a path under -d (parents created; one URL only)"
    )
    parser.add_argument("-d", "--dir", default=".", metavar="DIR", help="directory to save into (created)")
    parser.add_argument(
        "-x",
        "--connections",
        type=_positive_int,
        default=8,
        metavar="N",
        help=f"connections per download, 1-{MAX_CONNECTIONS} (default 8)",
    )
    parser.add_argument(
        "-j", "--jobs", type=_positive_int, default=5, metavar="N", help="downloads at once (default 5)"
    )
    parser.add_argument(
        "-i", "--input-file", metavar="FILE", help="read URLs from FILE, one a line ('-' for stdin)"
    )
    parser.add_argument(
        "--limit-rate", type=_rate, metavar="RATE", help="overall speed limit, e.g. 500K, 2M (bytes/s)"
    )
    parser.add_argument(
        "--schedule",
        type=_schedule,
        metavar="RULES",
        help="overall limit by local time, e.g. 08:00-18:00=1M,18:00-08:00=none (--limit-rate between rules)",
    )
    parser.add_argument("--checksum", metavar="ALGO=HEX", help="verify e.g. sha256=... before finishing")
    add_checksum_file_options(parser)
    parser.add_argument(
        "--retries", type=int, default=5, metavar="N", help="retries without progress (default 5)"
    )
    parser.add_argument(
        "--timeout", type=_seconds, default=30.0, metavar="S", help="drop a stalled connection after S s"
    )
    parser.add_argument(
        "--lowest-speed",
        type=_lowest_speed,
        metavar="RATE",
        help="drop a connection averaging under RATE over --timeout seconds (default: under 1 KiB; 0: never)",
    )
    parser.add_argument("--connect-timeout", type=_seconds, default=15.0, metavar="S", help="connect timeout")
    parser.add_argument(
        "-H",
        "--header",
        type=_header,
        action="append",
        default=[],
        metavar="'Name: value'",
        help="extra header",
    )
    parser.add_argument("--user-agent", metavar="UA", help="User-Agent to send")
    parser.add_argument(
        "-u",
        "--user",
        metavar="USER[:PASS]",
        help="Basic auth for the URL's host only (asks for the password on a terminal if not given)",
    )
    parser.add_argument(
        "--load-cookies",
        metavar="FILE",
        help="send the matching cookies of a Netscape cookies.txt (the URL's host only)",
    )
    parser.add_argument("--proxy", metavar="URL", help="proxy (default: HTTP(S)_PROXY / NO_PROXY)")
    parser.add_argument("--insecure", action="store_true", help="do not verify TLS certificates")
    parser.add_argument(
        "--no-if-range",
        action="store_true",
        help="resume without checking the file is unchanged (signed URLs whose ETag changes)",
    )
    parser.add_argument(
        "--per-host", type=_positive_int, default=16, metavar="N", help="connections per host (default 16)"
    )
    parser.add_argument("--metrics-port", type=_port, metavar="PORT", help="serve Prometheus /metrics")
    parser.add_argument("--metrics-addr", default="127.0.0.1", metavar="ADDR", help="address for /metrics")
    parser.add_argument("-q", "--quiet", action="store_true", help="no progress output")
    add_config_options(parser)


def read_url_file(path: str) -> list[str]:
    """URLs from a file, one a line; blank lines and ``#`` comments are skipped."""
    try:
        text = sys.stdin.read() if path == "-" else Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise UsageError(f"cannot read input file {path}: {exc.strerror}") from None
    except UnicodeDecodeError:
        raise UsageError(f"input file {path} is not UTF-8 text") from None
    urls = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            urls.append(line)
    return urls


def ask_user(user: str) -> str:
    """``USER:PASS`` from ``-u``: as given, or with the password asked for on the terminal (never
    echoed) when only ``USER`` is. Raises UsageError when there is no terminal to ask on."""
    if ":" in user:
        return user
    if not _have_terminal():
        raise UsageError(
            f"-u/--user {user!r} has no password and there is no terminal to ask on (use USER:PASS)"
        )
    import getpass

    try:
        password = getpass.getpass(f"Enter host password for user '{user}': ")
    except EOFError:
        raise UsageError("-u/--user: no password given") from None
    return f"{user}:{password}"


def _have_terminal() -> bool:
    """Whether a controlling terminal is there for getpass (it asks on /dev/tty, as curl does: a
    piped stdin, ``-i -``, is no obstacle); without one getpass would read stdin with echo on."""
    import os

    try:
        fd = os.open("/dev/tty", os.O_RDWR | os.O_NOCTTY)
    except OSError:
        return False
    os.close(fd)
    return True


def read_cookie_file(path: str) -> tuple[CookieRow, ...]:
    """The cookies of a Netscape cookies file, as TaskOptions carries them; UsageError names the
    file and the bad line (never its value)."""
    from engine.cookiefile import CookieFileError, parse_cookies

    try:
        text = Path(path).expanduser().read_text(encoding="utf-8")
    except OSError as exc:
        raise UsageError(f"cannot read cookies file {path}: {exc.strerror}") from None
    except UnicodeDecodeError:
        raise UsageError(f"cookies file {path} is not UTF-8 text") from None
    try:
        return parse_cookies(text)
    except CookieFileError as exc:
        raise UsageError(f"cookies file {path}: {exc}") from None


def download_request(args: argparse.Namespace, require_urls: bool) -> DownloadRequest:
    """Turn parsed options into engine terms; raises UsageError on contradictions."""
    from engine.client import EngineError
    from engine.config import EngineConfig, resolve_output, validate_options
    from engine.models import MAX_CONNECTIONS, TaskOptions

    urls = list(args.urls)
    if args.input_file:
        urls.extend(read_url_file(args.input_file))
    if require_urls and not urls:
        raise UsageError("no URL given (see 'fetchtop get --help')")
    if args.output and len(urls) > 1:
        raise UsageError("-o/--output names one file, but several URLs were given")
    if args.connections > MAX_CONNECTIONS:
        raise UsageError(f"-x/--connections is at most {MAX_CONNECTIONS}")
    if args.retries < 0:
        raise UsageError("--retries must be 0 or more")
    options = TaskOptions(
        output=args.output,
        directory=args.dir,
        connections=args.connections,
        checksum=args.checksum,
        headers=tuple(args.header),
        user_agent=args.user_agent,
        proxy=args.proxy,
        insecure=args.insecure,
        retries=args.retries,
        timeout=args.timeout,
        lowest_speed=args.lowest_speed,
        connect_timeout=args.connect_timeout,
        check_validators=not args.no_if_range,
        # Asked last: a usage error above is reported before anyone types a password.
        user=None if args.user is None else ask_user(args.user),
        cookies=() if args.load_cookies is None else read_cookie_file(args.load_cookies),
    )
    try:
        options = resolve_output(options)
        validate_options(options)
    except EngineError as exc:
        raise UsageError(str(exc)) from None
    if args.checksum_file is not None:
        options = with_checksum_file(options, args.checksum_file, args.checksum_missing == "ok", urls)
    # Credentials are for the URLs given here: a download added later (the dashboard's dialog, an
    # API client naming no options) from the defaults must not carry them to its own host.
    defaults = dataclasses.replace(options, user=None, cookies=())
    config = EngineConfig(
        jobs=args.jobs,
        per_host=args.per_host,
        speed_limit=args.limit_rate,
        schedule=args.schedule,
        defaults=defaults,
        on_complete=args.on_complete or (),
        on_error=args.on_error or (),
    )
    return DownloadRequest(
        urls=urls,
        options=options,
        config=config,
        metrics_addr=args.metrics_addr,
        metrics_port=args.metrics_port,
        quiet=args.quiet,
        downloads=tuple(
            (each, options_for_url(own, url)) for url in urls for each, own in [_per_url(args, url, options)]
        ),
    )


# ----- checksum files (--checksum-file, --checksum-missing; issue 13) ---------------------------------

WHOLE_TABLE_CHARS = 16 * 1024
"""A checksum table up to this size goes to every task whole; a larger one is cut to the lines for
the names the URLs (or ``-o``) give, so a daemon request stays well under its 64 KiB limit."""


def add_checksum_file_options(parser: argparse.ArgumentParser) -> None:
    """``--checksum-file FILE|URL`` and ``--checksum-missing fail|ok``."""
    parser.add_argument(
        "--checksum-file",
        metavar="FILE|URL",
        help="verify each download against its line in a SHA256SUMS-style file (GNU or BSD format)",
    )
    parser.add_argument(
        "--checksum-missing",
        choices=("fail", "ok"),
        default="fail",
        help="a download with no line in --checksum-file: fail (default) or ok (kept unchecked)",
    )


def _table_chars(table: tuple[tuple[str, str], ...]) -> int:
    return sum(len(name) + len(spec) + 8 for name, spec in table)


def _url_names(options: TaskOptions, urls: list[str]) -> set[str]:
    """The names the URLs' files get unless a server's Content-Disposition says otherwise."""
    from engine.filenames import choose_name

    return {choose_name(options.output, None, url) for url in urls}


def options_for_url(options: TaskOptions, url: str) -> TaskOptions:
    """``options`` for ``url``: a checksum table over :data:`WHOLE_TABLE_CHARS` cut to its lines."""
    import dataclasses

    from engine.checksumfile import select

    if _table_chars(options.checksum_table) <= WHOLE_TABLE_CHARS:
        return options
    table = select(options.checksum_table, _url_names(options, [url]))
    return dataclasses.replace(options, checksum_table=table)


def read_checksum_file(source: str, options: TaskOptions) -> bytes:
    """The bytes of a checksum file, from a path or an http(s) URL; UsageError naming it if unreadable."""
    from engine.checksumfile import MAX_FILE_BYTES, ChecksumFileError
    from engine.escaping import escape_controls

    if source.lower().startswith(("http://", "https://")):
        import asyncio

        from engine.checksumfetch import fetch_checksum_file
        from engine.redaction import redact

        try:
            return asyncio.run(fetch_checksum_file(source, options))
        except ChecksumFileError as exc:
            raise UsageError(f"cannot fetch checksum file {redact(source)}: {exc}") from None
    try:
        with open(source, "rb") as f:
            data = f.read(MAX_FILE_BYTES + 1)
    except OSError as exc:
        raise UsageError(f"cannot read checksum file {escape_controls(source)}: {exc.strerror}") from None
    return data


def with_checksum_file(options: TaskOptions, source: str, missing_ok: bool, urls: list[str]) -> TaskOptions:
    """``options`` carrying the table of the checksum file at ``source`` (read once, here).

    The table goes whole when small (:data:`WHOLE_TABLE_CHARS`), else only the lines for the names
    the URLs give (a Content-Disposition name is then found only if one of those lines has it).
    """
    import dataclasses

    from engine.checksumfile import ChecksumFileError, parse_bytes, select, to_table
    from engine.client import EngineError
    from engine.config import validate_options
    from engine.escaping import escape_controls
    from engine.redaction import redact

    data = read_checksum_file(source, options)
    is_url = source.lower().startswith(("http://", "https://"))
    shown = redact(source) if is_url else escape_controls(source)
    try:
        table = to_table(parse_bytes(data))
    except ChecksumFileError as exc:
        raise UsageError(f"checksum file {shown}: {exc}") from None
    if _table_chars(table) > WHOLE_TABLE_CHARS:
        table = select(table, _url_names(options, urls))
    options = dataclasses.replace(
        options, checksum_table=table, checksum_source=shown, checksum_missing_ok=missing_ok
    )
    try:
        validate_options(options)
    except EngineError as exc:
        raise UsageError(f"checksum file {shown}: {exc}") from None
    return options


# ----- the config file and hooks (issue 13) -------------------------------------------------------

CONFIG_NOT_HERE = {
    "output": "names one file: give -o/--output on the command line",
    "input-file": "give -i/--input-file on the command line",
    "checksum": "is one file's checksum: give --checksum on the command line",
    "metrics-port": "give --metrics-port to the one process that serves /metrics",
    "user": 'would go to every host: put it in a [hosts."NAME"] section, or give -u',
    "config": "cannot name another config file",
    "no-config": "cannot be set in a config file",
}
"""Download options a config file refuses, with the reason (one download's, or the file's own)."""
HOST_KEYS = (
    "header",
    "connections",
    "lowest-speed",
    "limit-rate",
    "user",
    "user-agent",
    "timeout",
    "connect-timeout",
    "retries",
    "proxy",
    "insecure",
    "no-if-range",
)
"""Keys a ``[hosts."NAME"]`` section may set: options of each download from that host."""
LIST_DESTS = ("header",)
"""Options whose values add up across layers (a header replaces the lower layers' of its name)."""


def _hook_command(text: str) -> tuple[str, ...]:
    import shlex

    try:
        argv = tuple(shlex.split(text))
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"cannot split {text!r} like a shell command: {exc}") from None
    if not argv:
        raise argparse.ArgumentTypeError("expected a command, got nothing")
    return argv


def add_config_options(parser: argparse.ArgumentParser) -> None:
    """``--config``/``--no-config`` and the hooks: part of every command's download options."""
    parser.add_argument(
        "--config", metavar="FILE", help="read options from FILE (default: ~/.config/fetchtop/config.toml)"
    )
    parser.add_argument("--no-config", action="store_true", help="read no config file")
    parser.add_argument(
        "--on-complete",
        type=_hook_command,
        metavar="CMD",
        help="run CMD (no shell) with the file's path as last argument after each completed download",
    )
    parser.add_argument(
        "--on-error", type=_hook_command, metavar="CMD", help="run CMD (no shell) after each failed download"
    )


def _config_specs() -> dict[str, Any]:
    """The config keys: the long names of the shared download options, with their converters."""
    from engine.models import MAX_CONNECTIONS
    from tui.configfile import OptionSpec, specs_from_parser

    parser = Parser(add_help=False)
    add_download_options(parser)
    specs = specs_from_parser(parser, exclude=CONFIG_NOT_HERE)

    def connections(text: str) -> int:
        value = _positive_int(text)
        if value > MAX_CONNECTIONS:
            raise argparse.ArgumentTypeError(f"must be at most {MAX_CONNECTIONS}, got {value}")
        return value

    def retries(text: str) -> int:
        return _whole_number(text, 0)

    def header(text: str) -> tuple[str, str]:
        try:
            return _header(text)
        except argparse.ArgumentTypeError:
            # Without the text: a header line is where a token would be.
            raise argparse.ArgumentTypeError("each header must be 'Name: value'") from None

    # The command line checks these after parsing; a file's value is checked where it is read.
    specs["header"] = OptionSpec("header", "header", "list", header)
    specs["connections"] = OptionSpec("connections", "connections", "value", connections)
    specs["retries"] = OptionSpec("retries", "retries", "value", retries)
    return specs


def load_config(explicit: str | None, disabled: bool) -> Config | None:
    """The config file ``--config``/``--no-config`` choose, parsed; UsageError (one line) if it is bad.

    The default file may be missing (None); one named with ``--config`` must exist.
    """
    from engine.locations import config_file
    from tui.configfile import ConfigError, parse_config

    if disabled:
        if explicit:
            raise UsageError("--config and --no-config contradict each other")
        return None
    path = os.path.expanduser(explicit) if explicit else config_file()
    try:
        data = Path(path).read_bytes()
    except FileNotFoundError:
        if explicit is None:
            return None
        raise UsageError(f"config file {path}: no such file") from None
    except OSError as exc:
        raise UsageError(f"config file {path}: cannot read it: {exc.strerror or exc}") from None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise UsageError(f"config file {path}: not UTF-8 text") from None
    try:
        return parse_config(text, path, _config_specs(), HOST_KEYS, CONFIG_NOT_HERE)
    except ConfigError as exc:
        raise UsageError(f"config file {exc}") from None


def _given(parser: argparse.ArgumentParser, argv: Sequence[str]) -> set[str]:
    """The destinations the command line itself set (parsed again with every default suppressed)."""
    saved = [(action, action.default) for action in parser._actions]
    try:
        for action, _ in saved:
            action.default = argparse.SUPPRESS
        return set(vars(parser.parse_args(argv)))
    finally:
        for action, default in saved:
            action.default = default


def parse_download_args(parser: argparse.ArgumentParser, argv: Sequence[str]) -> argparse.Namespace:
    """Parse a download command's arguments with the config file's top level under them.

    The namespace also keeps the file and what the command line gave, for the host sections
    (:func:`download_request`). A bad file raises UsageError before anything starts.
    """
    args = parser.parse_args(argv)
    given = _given(parser, argv)
    config = load_config(args.config, args.no_config)
    raw = dict(vars(args))
    if config is not None:
        # Only with a file: without one, fetchtop get imports none of the config machinery.
        from tui.configfile import layered

        for dest, value in layered(raw, given, config.top, lists=LIST_DESTS).items():
            setattr(args, dest, value)
    args.config_file = config
    args.options_given = frozenset(given)
    args.options_raw = raw
    return args


def _per_url(args: argparse.Namespace, url: str, options: TaskOptions) -> tuple[str, TaskOptions]:
    """A URL with its options: those of its host section (under the command line), if it has one."""
    config: Config | None = getattr(args, "config_file", None)
    if config is None or not config.hosts:
        return url, options
    import dataclasses

    from tui.configfile import USER_KEY, host_section, layered, with_credentials

    section = host_section(config, url)
    if section is None:
        return url, options
    values = layered(args.options_raw, args.options_given, config.top, section.values, lists=LIST_DESTS)
    # The same checks and conversion as the command line's, on a namespace without a config file.
    # The checksum file was read once already: its table is carried over, not read again.
    namespace = argparse.Namespace(**{**values, "urls": [url], "input_file": None, "checksum_file": None})
    one = download_request(namespace, False)
    limit = section.values.get("limit_rate")  # in a host section: each download's own limit
    per_url = dataclasses.replace(
        one.options,
        speed_limit=limit if isinstance(limit, int) else None,
        checksum_table=options.checksum_table,
        checksum_source=options.checksum_source,
        checksum_missing_ok=options.checksum_missing_ok,
    )
    credentials = section.values.get(USER_KEY)
    return with_credentials(url, credentials if isinstance(credentials, tuple) else None), per_url


def refuse_host_sections(request: DownloadRequest, command: str) -> None:
    """UsageError if a URL given to ``command`` has a host section that changes its options: that
    command takes one set of options for all its URLs, and would silently use the wrong ones."""
    from engine.redaction import redact

    for (url, options), plain in zip(request.downloads, request.urls, strict=True):
        if (url, options) != (plain, request.options):
            raise UsageError(
                f"{redact(plain)}: its host section in the config file applies to 'fetchtop get' and "
                f"'fetchtop add', not yet to URLs given to {command}: queue it with 'fetchtop add'"
            )
