"""``python -m faultserver [--host H] [--port P] [--rate R] NAME:SIZE ...``: serve files by hand.

Each ``NAME:SIZE`` (SIZE in bytes, or with a K, M or G suffix in binary units) becomes a plain file at
``/f/NAME``; ``fetchtop demo --serve-only`` serves the demo's set of files with faults instead.
"""

from __future__ import annotations

import argparse
import re

from faultserver.content import KiB
from faultserver.runner import serve_until_stopped
from faultserver.specs import FileSpec

DEFAULT_FILES = ["sample-64M.bin:64M"]
"""What is served when no file is named."""

_SIZE = re.compile(r"^(\d+)([KMG]?)(?:i?B)?$", re.IGNORECASE)
_UNITS = {"": 1, "K": KiB, "M": KiB**2, "G": KiB**3}


def parse_size(text: str) -> int:
    """``1000`` -> 1000, ``64K`` / ``64KiB`` -> 65536, and so on for M and G."""
    m = _SIZE.match(text.strip())
    if m is None:
        raise argparse.ArgumentTypeError(f"not a size: {text!r}")
    return int(m.group(1)) * _UNITS[m.group(2).upper()]


def parse_file(text: str) -> tuple[str, int]:
    """``NAME:SIZE`` as ``(name, size in bytes)``."""
    name, sep, size = text.rpartition(":")
    if not sep or not name:
        raise argparse.ArgumentTypeError(f"expected NAME:SIZE, got {text!r}")
    return name, parse_size(size)


def main(argv: list[str] | None = None) -> int:
    """Serve the named files (or a 64 MiB sample) until Ctrl-C; returns the exit status."""
    parser = argparse.ArgumentParser(
        prog="python -m faultserver", description="Serve files with the fault server by hand."
    )
    parser.add_argument("files", nargs="*", type=parse_file, metavar="NAME:SIZE", help="a file to serve")
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=8080, help="port (default 8080; 0 picks one)")
    parser.add_argument("--rate", type=parse_size, help="throttle each connection to RATE bytes/s")
    args = parser.parse_args(argv)
    files = args.files or [parse_file(f) for f in DEFAULT_FILES]
    rate = f", {args.rate} B/s per connection" if args.rate else ""
    specs = [FileSpec(name, size, rate=args.rate, description=f"{size} bytes{rate}") for name, size in files]
    return serve_until_stopped(args.host, args.port, specs)


if __name__ == "__main__":
    raise SystemExit(main())
