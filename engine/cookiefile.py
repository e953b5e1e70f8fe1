"""Netscape ``cookies.txt`` (as curl, wget and aria2 read it) and which cookies a URL gets: no I/O.

A data line is seven TAB-separated fields: domain, include-subdomains flag (``TRUE``/``FALSE``),
path, secure flag, expiry (Unix seconds, 0 for a session cookie), name, value. ``#HttpOnly_``
before the domain marks an HttpOnly cookie (curl writes it); other ``#`` lines and blank lines are
comments. The time is passed in, so matching is a pure function.
"""

from __future__ import annotations

from typing import NamedTuple

HTTPONLY_PREFIX = "#HttpOnly_"
"""What curl writes before the domain of an HttpOnly cookie."""
_FLAGS = {"TRUE": True, "FALSE": False}


class Cookie(NamedTuple):
    """One line of a cookies file; a plain tuple, so it travels in TaskOptions as JSON does."""

    domain: str
    """The domain as written (a leading dot, as browsers write it, is ignored when matching)."""
    subdomains: bool
    """Whether hosts under the domain get it too, not just the domain itself."""
    path: str
    """Path prefix the request's path must match."""
    secure: bool
    """Sent over https only."""
    expires: int
    """Unix time it expires at; 0 for a session cookie (never expires here)."""
    name: str
    """The cookie's name."""
    value: str
    """The cookie's value (a secret: never shown)."""
    http_only: bool = False
    """Marked ``#HttpOnly_`` in the file: kept so the file round-trips, no effect on sending."""


CookieRow = tuple[str, bool, str, bool, int, str, str, bool]
"""How a :class:`Cookie` is typed inside TaskOptions (the codec knows tuples, not NamedTuples)."""


class CookieFileError(ValueError):
    """A line that is not a cookie; the message names the line."""


def _bad_text(text: str) -> bool:
    """Control characters or ``;`` would break the Cookie header (or inject another one); a header
    carries Latin-1 at most."""
    return any(ord(c) < 32 or 127 <= ord(c) < 160 or ord(c) > 255 for c in text) or ";" in text


def parse_cookies(text: str) -> tuple[Cookie, ...]:
    """The cookies of a cookies file, in file order; raises CookieFileError naming a bad line."""
    cookies = []
    # Lines end at LF (CRLF too) only: str.splitlines would also split at characters a value may hold.
    for number, raw in enumerate(text.split("\n"), 1):
        line = raw.removesuffix("\r")
        http_only = line.startswith(HTTPONLY_PREFIX)
        if http_only:
            line = line[len(HTTPONLY_PREFIX) :]
        elif not line.strip() or line.lstrip().startswith("#"):
            continue
        fields = line.split("\t")
        if len(fields) == 6:
            fields.append("")  # curl writes a cookie with no value as six fields
        if len(fields) != 7:
            raise CookieFileError(f"line {number}: expected 7 TAB-separated fields, got {len(fields)}")
        domain, sub, path, secure, expires, name, value = fields
        if sub.upper() not in _FLAGS or secure.upper() not in _FLAGS:
            raise CookieFileError(f"line {number}: the flags must be TRUE or FALSE")
        try:
            when = int(expires)
        except ValueError:
            raise CookieFileError(f"line {number}: expiry must be whole Unix seconds") from None
        if (
            not domain.strip(".")
            or not name
            or "=" in name
            or any(map(_bad_text, (domain, path, name, value)))
        ):
            raise CookieFileError(f"line {number}: empty or unusable domain, name or value")
        cookies.append(
            Cookie(
                domain, _FLAGS[sub.upper()], path or "/", _FLAGS[secure.upper()], when, name, value, http_only
            )
        )
    return tuple(cookies)


def format_cookies(cookies: tuple[Cookie, ...]) -> str:
    """A cookies file holding ``cookies``, which :func:`parse_cookies` reads back equal."""
    lines = ["# Netscape HTTP Cookie File"]
    for c in cookies:
        prefix = HTTPONLY_PREFIX if c.http_only else ""
        flags = ("TRUE" if c.subdomains else "FALSE", "TRUE" if c.secure else "FALSE")
        lines.append(
            "\t".join((prefix + c.domain, flags[0], c.path, flags[1], str(c.expires), c.name, c.value))
        )
    return "\n".join(lines) + "\n"


def domain_matches(cookie: Cookie, host: str) -> bool:
    """Whether ``host`` gets the cookie: its very domain, or one under it when the flag says so."""
    host = host.lower().rstrip(".")
    domain = cookie.domain.lower().strip(".")
    return host == domain or (cookie.subdomains and host.endswith("." + domain))


def path_matches(cookie_path: str, request_path: str) -> bool:
    """RFC 6265's path-match: the same path, or a prefix of it ending at a ``/``."""
    request_path = request_path or "/"
    if request_path == cookie_path:
        return True
    if not request_path.startswith(cookie_path):
        return False
    return cookie_path.endswith("/") or request_path[len(cookie_path)] == "/"


def cookies_for(
    cookies: tuple[CookieRow, ...] | tuple[Cookie, ...], scheme: str, host: str, path: str, now: float
) -> list[Cookie]:
    """The cookies a request to ``scheme://host/path`` at Unix time ``now`` carries, longest path first
    (RFC 6265's order): domain and path matching, secure ones over https only, none expired."""
    chosen = []
    for row in cookies:
        c = Cookie(*row)
        if c.secure and scheme.lower() != "https":
            continue
        if c.expires != 0 and c.expires <= now:
            continue
        if domain_matches(c, host) and path_matches(c.path, path):
            chosen.append(c)
    chosen.sort(key=lambda c: len(c.path), reverse=True)  # stable: file order within a length
    return chosen


def cookie_header(cookies: list[Cookie]) -> str | None:
    """The Cookie header value carrying ``cookies``; None for none."""
    return "; ".join(f"{c.name}={c.value}" for c in cookies) or None
