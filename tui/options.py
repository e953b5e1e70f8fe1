"""The options every download command shares (``fetchtop``, ``get``, ``add``), parsed into engine terms.

No Textual here, and the engine (with aiohttp under it) is imported inside functions: a Ctrl-C while
it loads must reach main()'s handler, not print a traceback from the console script's import.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

if TYPE_CHECKING:
    from engine.config import EngineConfig
    from engine.cookiefile import CookieRow
    from engine.models import TaskOptions

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


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


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
    parser.add_argument("--checksum", metavar="ALGO=HEX", help="verify e.g. sha256=... before finishing")
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
    # Credentials are for the URLs given here: a download added later (the dashboard's dialog, an
    # API client naming no options) from the defaults must not carry them to its own host.
    defaults = dataclasses.replace(options, user=None, cookies=())
    config = EngineConfig(
        jobs=args.jobs, per_host=args.per_host, speed_limit=args.limit_rate, defaults=defaults
    )
    return DownloadRequest(
        urls=urls,
        options=options,
        config=config,
        metrics_addr=args.metrics_addr,
        metrics_port=args.metrics_port,
        quiet=args.quiet,
    )
