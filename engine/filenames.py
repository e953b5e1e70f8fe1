"""Choosing a safe local file name from a URL and response headers. Pure, no I/O."""

from __future__ import annotations

import posixpath
import re
import unicodedata
from collections.abc import Callable
from urllib.parse import unquote, unquote_to_bytes, urlsplit

from engine.escaping import DISPLAY_UNSAFE

DEFAULT_NAME = "index.html"
MAX_NAME_BYTES = 240
"""Leaves room for ``.part`` and ``.N`` suffixes within the usual 255-byte limit."""

# C0/C1 controls, plus the invisible characters that reorder or break text on screen (bidi
# marks, embeddings, overrides and isolates; line and paragraph separators): a name like
# "invoice\u202etxt.exe" would otherwise display as "invoiceexe.txt".
_CONTROL = re.compile(f"[{DISPLAY_UNSAFE}]")
OWN_SUFFIXES = (".part.json", ".part")
"""Endings of the files fetchtop keeps beside a download (see engine.control); a server may not choose
them, or a hostile name could pose as another download's part or control file."""
_MAX_EXT_BYTES = 17
"""An extension longer than this (``.`` included) is not worth keeping when truncating."""


def _strip_edges(name: str) -> str:
    # Alternate until stable: ". . a" needs more than one pass to lose its leading dot.
    while True:
        stripped = name.strip().strip(".")
        if stripped == name:
            return name
        name = stripped


def sanitize(name: str) -> str:
    """A name safe to create inside a directory: no separators, no ``..``, no control characters.

    Leading and trailing dots and spaces go too (no hidden files), and names longer than
    :data:`MAX_NAME_BYTES` of UTF-8 are cut, keeping the extension. Returns an empty string
    when nothing usable is left.
    """
    name = unicodedata.normalize("NFC", name)
    name = name.replace("/", "_").replace("\\", "_")
    name = _CONTROL.sub("", name)
    name = _strip_edges(name)
    if name in ("", ".", ".."):
        return ""
    if len(name.encode("utf-8")) > MAX_NAME_BYTES:
        stem, ext = split_ext(name)
        if len(ext.encode("utf-8")) > _MAX_EXT_BYTES:
            stem, ext = name, ""
        room = MAX_NAME_BYTES - len(ext.encode("utf-8"))
        head = stem.encode("utf-8")[:room].decode("utf-8", "ignore")
        name = _strip_edges(head) + ext
    return name


def server_name(name: str) -> str:
    """:func:`sanitize` for a name the server chose (Content-Disposition or URL path), never ``-o``.

    On top: invisible format characters (Unicode category Cf: U+200B, U+FEFF, U+2060, ...) go, and so
    do leading ``-`` (a name that reads as an option to the next shell command) and any ending in
    :data:`OWN_SUFFIXES`, in any case (``release.tar.gz.part`` becomes ``release.tar.gz``). Empty when
    nothing usable is left.
    """
    name = "".join(c for c in name if unicodedata.category(c) != "Cf")
    while True:
        before = name
        name = sanitize(name).lstrip("-")
        for suffix in OWN_SUFFIXES:
            if name.lower().endswith(suffix):
                name = name[: -len(suffix)]
        if name == before:
            return name


def name_from_content_disposition(value: str | None) -> str | None:
    """The file name a ``Content-Disposition`` header gives; ``filename*`` (RFC 6266/5987) wins.

    The result is not yet safe to use: pass it through :func:`sanitize`.
    """
    if not value:
        return None
    plain: str | None = None
    extended: str | None = None
    for key, val in _header_params(value):
        if key == "filename*" and extended is None:
            extended = _decode_ext_value(val)
        elif key == "filename" and plain is None:
            plain = _decode_encoded_words(val)
    return extended or plain or None


def _header_params(value: str) -> list[tuple[str, str]]:
    """The ``key=value`` parameters of a header in order, keys lower-cased, quoted strings unescaped.

    Hand-written rather than email.message: that one double-decodes ``filename*``, raises
    on some malformed continuations, and drops unquoted values with spaces, which real
    servers send.
    """
    params: list[tuple[str, str]] = []
    i, n = 0, len(value)
    while i < n:
        j = i
        while j < n and value[j] not in "=;":
            j += 1
        key = value[i:j].strip().lower()
        if j >= n or value[j] == ";":
            i = j + 1  # a bare token, such as the disposition type
            continue
        j += 1
        while j < n and value[j] in " \t":
            j += 1
        if j < n and value[j] == '"':
            j += 1
            chars: list[str] = []
            while j < n and value[j] != '"':
                if value[j] == "\\" and j + 1 < n:
                    j += 1
                chars.append(value[j])
                j += 1
            val = "".join(chars)
            end = value.find(";", j)
        else:
            end = value.find(";", j)
            val = value[j : n if end < 0 else end].strip()
        params.append((key, val))
        i = n if end < 0 else end + 1
    return params


def _decode_ext_value(val: str) -> str | None:
    """Decode RFC 5987 ``charset'language'percent-encoded``; None if malformed."""
    charset, sep1, rest = val.partition("'")
    _lang, sep2, text = rest.partition("'")
    if not (sep1 and sep2):
        return None
    try:
        return unquote_to_bytes(text).decode(charset.strip() or "utf-8", errors="strict")
    except (LookupError, UnicodeDecodeError):
        return None


def _decode_encoded_words(val: str) -> str:
    """Decode an RFC 2047 ``=?UTF-8?B?...?=`` name, which some servers send in ``filename``."""
    if not (val.startswith("=?") and val.endswith("?=")):
        return val
    from email.header import decode_header  # rare, and the email package is slow to import

    try:
        parts = decode_header(val)
        return "".join(
            text.decode(charset or "ascii") if isinstance(text, bytes) else text for text, charset in parts
        )
    except (LookupError, UnicodeDecodeError, ValueError):
        return val


def name_from_url(url: str) -> str | None:
    """The last path segment of a URL, percent-decoded, if there is one."""
    path = urlsplit(url).path
    segment = path.rsplit("/", 1)[-1]
    return unquote(segment) if segment else None


def split_output(directory: str, output: str) -> tuple[str, str]:
    """``(directory, name)`` for ``-o OUTPUT`` under ``-d DIRECTORY``, as aria2c reads ``-o``.

    ``-o`` is a path relative to ``-d`` (an absolute one stands alone, as in curl): its directory
    part joins ``-d``, its last component is the file's name. Raises ValueError when the path
    cannot name a file (it ends in ``/``, or its last component is empty, ``.`` or ``..``).
    """
    head, name = posixpath.split(output)
    if name in ("", ".", ".."):
        raise ValueError(f"-o/--output {output!r} names a directory, not a file")
    return (posixpath.join(directory, head) if head else directory), name


def choose_name(output: str | None, content_disposition: str | None, url: str) -> str:
    """``-o`` wins, then Content-Disposition, then the URL's last segment, then ``index.html``.

    ``-o`` is the user's own choice and only sanitised; the server's are held to :func:`server_name`.
    """
    if output:
        safe = sanitize(output)
        if safe:
            return safe
    for candidate in (name_from_content_disposition(content_disposition), name_from_url(url)):
        if candidate:
            safe = server_name(candidate)
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


def is_numbered(candidate: str, name: str) -> bool:
    """Whether ``candidate`` is ``name`` or one of its :func:`numbered` alternatives."""
    if candidate == name:
        return True
    stem, ext = split_ext(name)
    if not (candidate.startswith(stem + ".") and candidate.endswith(ext)):
        return False
    middle = candidate[len(stem) + 1 : len(candidate) - len(ext)]
    return (
        middle.isascii()
        and middle.isdigit()
        and not middle.startswith("0")
        and numbered(name, int(middle)) == candidate
    )


def unique_name(name: str, taken: Callable[[str], bool], limit: int = 10_000) -> str:
    """The first of ``name``, ``name.1.ext``, ``name.2.ext``, ... for which ``taken`` is false."""
    for n in range(limit):
        candidate = numbered(name, n)
        if not taken(candidate):
            return candidate
    raise FileExistsError(f"no free name for {name!r} after {limit} tries")
