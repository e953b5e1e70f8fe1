"""Choosing a safe local file name from a URL and response headers. Pure, no I/O."""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Callable
from email.message import Message
from urllib.parse import unquote, urlsplit

DEFAULT_NAME = "index.html"
MAX_NAME_BYTES = 240
"""Leaves room for ``.part`` and ``.N`` suffixes within the usual 255-byte limit."""

_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")


def sanitize(name: str) -> str:
    """A name safe to create inside a directory: no separators, no ``..``, no control characters.

    Returns an empty string when nothing usable is left.
    """
    name = unicodedata.normalize("NFC", name)
    name = name.replace("/", "_").replace("\\", "_")
    name = _CONTROL.sub("", name)
    name = name.strip().strip(".").strip()
    if name in ("", ".", ".."):
        return ""
    encoded = name.encode("utf-8")
    if len(encoded) > MAX_NAME_BYTES:
        stem, dot, ext = name.rpartition(".")
        keep_ext = dot and 0 < len(ext.encode()) <= 16
        tail = f".{ext}" if keep_ext else ""
        room = MAX_NAME_BYTES - len(tail.encode())
        head = (stem if keep_ext else name).encode("utf-8")[:room].decode("utf-8", "ignore")
        name = head + tail
    return name


def name_from_content_disposition(value: str | None) -> str | None:
    """The file name a ``Content-Disposition`` header gives; ``filename*`` (RFC 6266/5987) wins."""
    if not value:
        return None
    msg = Message()
    msg["content-disposition"] = value
    params = msg.get_params(header="content-disposition") or []
    plain: str | None = None
    for key, val in params[1:]:
        key = key.lower()
        if key == "filename*":
            decoded = _decode_ext_value(val)
            if decoded:
                return decoded
        elif key == "filename" and isinstance(val, str):
            plain = val
    if plain is None:
        # email.message is lenient but misses unquoted values with spaces; fall back to a regex.
        m = re.search(r'filename\s*=\s*"?([^";]+)"?', value, re.IGNORECASE)
        plain = m.group(1) if m else None
    return plain


def _decode_ext_value(val: object) -> str | None:
    if isinstance(val, tuple):
        charset, _lang, text = val
        try:
            return unquote(text, encoding=charset or "utf-8", errors="strict")
        except (LookupError, UnicodeDecodeError):
            return None
    if isinstance(val, str):
        charset, _, rest = val.partition("'")
        _lang, _, text = rest.partition("'")
        try:
            return unquote(text, encoding=charset or "utf-8", errors="strict")
        except (LookupError, UnicodeDecodeError):
            return None
    return None


def name_from_url(url: str) -> str | None:
    """The last path segment of a URL, percent-decoded, if there is one."""
    path = urlsplit(url).path
    segment = path.rsplit("/", 1)[-1]
    return unquote(segment) if segment else None


def choose_name(output: str | None, content_disposition: str | None, url: str) -> str:
    """``-o`` wins, then Content-Disposition, then the URL's last segment, then ``index.html``."""
    for candidate in (
        output,
        name_from_content_disposition(content_disposition),
        name_from_url(url),
    ):
        if candidate:
            safe = sanitize(candidate)
            if safe:
                return safe
    return DEFAULT_NAME


def numbered(name: str, n: int) -> str:
    """``name.N.ext`` for the Nth alternative of ``name.ext`` (``archive.tar.gz`` -> ``archive.1.tar.gz``)."""
    if n == 0:
        return name
    stem, ext = split_ext(name)
    return f"{stem}.{n}{ext}"


def split_ext(name: str) -> tuple[str, str]:
    """Split off the extension, keeping compound ones like ``.tar.gz`` whole."""
    lower = name.lower()
    for compound in (".tar.gz", ".tar.bz2", ".tar.xz", ".tar.zst"):
        if lower.endswith(compound) and len(name) > len(compound):
            return name[: -len(compound)], name[-len(compound) :]
    stem, dot, ext = name.rpartition(".")
    if not dot or not stem:
        return name, ""
    return stem, "." + ext


def unique_name(name: str, taken: Callable[[str], bool], limit: int = 10_000) -> str:
    """The first of ``name``, ``name.1.ext``, ``name.2.ext``, ... for which ``taken`` is false."""
    for n in range(limit):
        candidate = numbered(name, n)
        if not taken(candidate):
            return candidate
    raise FileExistsError(f"no free name for {name!r} after {limit} tries")
