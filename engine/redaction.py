"""Keeping secrets out of everything a person, a log or a peer may see: pure functions, no I/O.

The engine keeps a task's real URL and options (the session file, mode 0600, needs them to resume);
everything it shows, logs, publishes or keeps in history goes through here first: URLs lose their
user name and password, secret-looking header values are replaced, and free text (an error message
that quotes a URL) loses any ``user:password@`` it holds.
"""

from __future__ import annotations

import dataclasses
import re

from yarl import URL

from engine.models import TaskOptions

REDACTED = "<redacted>"
"""What a secret header's value is shown as."""
SECRET_HEADERS = frozenset({"authorization", "proxy-authorization", "cookie"})
"""Header names (lower case) whose values are always secret."""
SECRET_WORDS = ("token", "key", "secret", "auth", "session", "cookie", "password", "credential")
"""A header whose name contains one of these (case-insensitive) is taken to carry a secret."""

_USERINFO = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*://)[^/?#]*@")
# In free text a URL ends at whitespace or a quote; its userinfo is what lies before an "@" in it.
_USERINFO_IN_TEXT = re.compile(r"(\b[A-Za-z][A-Za-z0-9+.-]*://)[^/?#@\s'\"<>]*@")


def redact(url: str | URL) -> str:
    """The URL without user name or password, for anything a person or log may see."""
    try:
        u = url if isinstance(url, URL) else URL(url)
    except (ValueError, TypeError):
        # Unparseable (it will fail as malformed later): still never show what looks like userinfo.
        return _USERINFO.sub(r"\1", str(url))
    if u.user is None and u.password is None:
        return str(u)
    return str(u.with_user(None).with_password(None))


def redact_text(text: str) -> str:
    """``text`` with the userinfo of every URL in it removed (``http://u:pw@h`` -> ``http://h``)."""
    return _USERINFO_IN_TEXT.sub(r"\1", text)


def is_secret_header(name: str) -> bool:
    """Whether a request header's value must never be shown (credentials, cookies, API keys)."""
    lower = name.strip().lower()
    return lower in SECRET_HEADERS or any(word in lower for word in SECRET_WORDS)


def redact_headers(headers: tuple[tuple[str, str], ...]) -> tuple[tuple[str, str], ...]:
    """The headers in order, each secret one's value replaced by :data:`REDACTED`."""
    return tuple((name, REDACTED if is_secret_header(name) else value) for name, value in headers)


def redact_user(user: str | None) -> str | None:
    """``USER:PASS`` as it may be shown: the user name, the password replaced by :data:`REDACTED`."""
    if user is None:
        return None
    name, sep, _ = user.partition(":")
    return f"{name}:{REDACTED}" if sep else name


def redact_options(options: TaskOptions) -> TaskOptions:
    """The options as they may be shown: secret header values, the ``-u`` password, cookie values and
    the proxy's password removed.

    Returns ``options`` itself when there is nothing to hide, so the common case copies nothing.
    """
    headers = redact_headers(options.headers)
    proxy = None if options.proxy is None else redact(options.proxy)
    user = redact_user(options.user)
    cookies = tuple((*row[:6], REDACTED, *row[7:]) for row in options.cookies)
    if (
        headers == options.headers
        and proxy == options.proxy
        and user == options.user
        and cookies == options.cookies
    ):
        return options
    return dataclasses.replace(options, headers=headers, proxy=proxy, user=user, cookies=cookies)
