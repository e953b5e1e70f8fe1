"""Reading ``SHA256SUMS``-style checksum files: pure functions, no I/O.

Two formats, as ``sha256sum`` and its kin write them (``--checksum-file``):

- GNU: ``HASH  NAME`` (text mode), ``HASH *NAME`` (binary mode) or ``HASH NAME`` (the BSD ``-r``
  form); the algorithm follows from the hash's length (32 hex digits md5, 40 sha1, 56 sha224,
  64 sha256, 96 sha384, 128 sha512).
- BSD (``--tag``): ``SHA256 (NAME) = HASH``, the algorithm named by the tag: any hashlib algorithm
  with a fixed digest size (MD5, SHA1, SHA224 ... SHA512, SHA3-256, BLAKE2b, ...).

A line that starts with a backslash has an escaped name (GNU coreutils writes this for names
holding a backslash, a newline or a carriage return): ``\\\\`` is a backslash, ``\\n`` a newline and
``\\r`` a carriage return. Blank lines and ``#`` comments are skipped; a CRLF line end is one end.
Anything else is an error naming the line, so a file that is only half understood is never
half trusted.

A download is looked up by its file name: the last ``/`` component of the line's name (so
``./iso/x.img`` and ``x.img`` both name ``x.img``). The engine carries the result as a small table of
``(name, "algo=hex")`` pairs (see :func:`to_table`), the form ``--checksum`` takes.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass

from engine.escaping import bound, escape_controls

MAX_FILE_BYTES = 1024 * 1024
"""The largest checksum file read (a distribution's ``SHA256SUMS`` is a few KiB)."""

LENGTH_ALGORITHMS = {32: "md5", 40: "sha1", 56: "sha224", 64: "sha256", 96: "sha384", 128: "sha512"}
"""Algorithm of an untagged (GNU) line by its number of hex digits."""

ChecksumTable = tuple[tuple[str, str], ...]
"""``(file name, "algo=hex")`` pairs, sorted and without repeats: what TaskOptions carries."""

_HEX = frozenset("0123456789abcdefABCDEF")
_TAG_CHARS = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_")
_UNESCAPE = {"\\": "\\", "n": "\n", "r": "\r"}
_NEEDS_ESCAPE = ("\\", "\n", "\r")


class ChecksumFileError(ValueError):
    """A checksum file, or a lookup in one, that cannot be used; the message says why in one line."""


@dataclass(frozen=True)
class Entry:
    """One line of a checksum file."""

    name: str
    """The file name as written (unescaped, a leading ``./`` removed)."""
    algorithm: str
    """hashlib's name for the algorithm (``sha256``, ``sha3_256``, ``blake2b``)."""
    digest: str
    """The digest in lower-case hex."""

    @property
    def spec(self) -> str:
        """``algo=hex``, as ``--checksum`` takes it."""
        return f"{self.algorithm}={self.digest}"


def _shown(text: str, limit: int = 80) -> str:
    """Text from the file as an error may quote it: controls escaped, bounded."""
    return bound(escape_controls(text), limit)


def algorithm_for_tag(tag: str) -> str:
    """hashlib's name for a BSD tag (``SHA3-256`` -> ``sha3_256``), or ChecksumFileError."""
    name = tag.lower().replace("-", "_")
    try:
        size = hashlib.new(name).digest_size
    except (ValueError, TypeError):
        raise ChecksumFileError(f"unknown algorithm {_shown(tag, 40)!r}") from None
    if size == 0:
        raise ChecksumFileError(f"algorithm {_shown(tag, 40)!r} has no fixed digest length")
    return name


def _digest(text: str, algorithm: str) -> str:
    if not text or any(c not in _HEX for c in text):
        raise ChecksumFileError(f"{_shown(text, 40)!r} is not a hexadecimal digest")
    want = 2 * hashlib.new(algorithm).digest_size
    if len(text) != want:
        raise ChecksumFileError(f"a {algorithm} digest has {want} hex digits, got {len(text)}")
    return text.lower()


def _unescape(name: str) -> str:
    out: list[str] = []
    chars = iter(name)
    for c in chars:
        if c != "\\":
            out.append(c)
            continue
        nxt = next(chars, "")
        if nxt not in _UNESCAPE:
            raise ChecksumFileError(f"bad escape '\\{_shown(nxt, 4)}' in an escaped name")
        out.append(_UNESCAPE[nxt])
    return "".join(out)


def _clean_name(name: str, escaped: bool) -> str:
    if escaped:
        name = _unescape(name)
    while name.startswith("./"):
        name = name[2:]
    if not file_name(name):
        raise ChecksumFileError("no file name")
    return name


def _parse_bsd(line: str, escaped: bool) -> Entry | None:
    """The entry of a ``TAG (NAME) = HASH`` line; None if the line is not in that form."""
    tag, sep, rest = line.partition(" (")
    if not sep or not tag or any(c not in _TAG_CHARS for c in tag) or all(c in _HEX for c in tag):
        return None  # (an all-hex "tag" is the hash of a 'HASH (NAME...' line in the -r form)
    name, sep, digest = rest.rpartition(") = ")
    if not sep:
        return None
    algorithm = algorithm_for_tag(tag)
    return Entry(_clean_name(name, escaped), algorithm, _digest(digest, algorithm))


def _parse_gnu(line: str, escaped: bool) -> Entry:
    """The entry of a ``HASH  NAME`` / ``HASH *NAME`` / ``HASH NAME`` line."""
    end = 0
    while end < len(line) and line[end] in _HEX:
        end += 1
    if end == 0 or end == len(line) or line[end] != " ":
        raise ChecksumFileError("not a checksum line (expected 'HASH  NAME' or 'ALGO (NAME) = HASH')")
    algorithm = LENGTH_ALGORITHMS.get(end)
    if algorithm is None:
        raise ChecksumFileError(f"a {end}-digit hash matches no algorithm; use the 'ALGO (NAME) = HASH' form")
    name = line[end + 1 :]
    if name[:1] in (" ", "*") and len(name) > 1:
        name = name[1:]  # the mode marker: ' ' text, '*' binary (the same bytes either way here)
    return Entry(_clean_name(name, escaped), algorithm, line[:end].lower())


def parse_line(line: str) -> Entry | None:
    """The entry one line holds; None for a blank line or a comment; ChecksumFileError otherwise."""
    if line.endswith("\r"):
        line = line[:-1]
    line = line.lstrip(" \t")  # as sha256sum -c, leading blanks are not part of the line
    if not line.strip() or line.startswith("#"):
        return None
    escaped = line.startswith("\\")
    if escaped:
        line = line[1:]
    entry = _parse_bsd(line, escaped)
    return entry if entry is not None else _parse_gnu(line, escaped)


def parse(text: str) -> tuple[Entry, ...]:
    """Every entry of a checksum file's text, in order; ChecksumFileError (``line N: why``) if any
    line is malformed or the file holds none."""
    entries = []
    # Only "\n" ends a line: str.splitlines would also split on \v, \x1c, U+2028... inside names.
    for number, line in enumerate(text.split("\n"), 1):
        try:
            entry = parse_line(line)
        except ChecksumFileError as exc:
            raise ChecksumFileError(f"line {number}: {exc}") from None
        if entry is not None:
            entries.append(entry)
    if not entries:
        raise ChecksumFileError("no checksum lines")
    return tuple(entries)


def parse_bytes(data: bytes) -> tuple[Entry, ...]:
    """:func:`parse` for a file's bytes: at most :data:`MAX_FILE_BYTES`, UTF-8 (a BOM allowed)."""
    if len(data) > MAX_FILE_BYTES:
        raise ChecksumFileError(f"larger than {MAX_FILE_BYTES // 1024} KiB")
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise ChecksumFileError(f"not UTF-8 text (byte {exc.start})") from None
    return parse(text)


def _escape_name(name: str) -> tuple[str, str]:
    """``(prefix, name)``: a backslash prefix and the escaped name when the name needs it."""
    if not any(c in name for c in _NEEDS_ESCAPE):
        return "", name
    return "\\", name.replace("\\", "\\\\").replace("\n", "\\n").replace("\r", "\\r")


def format_gnu(entry: Entry, binary: bool = False) -> str:
    """The entry as ``sha256sum`` writes it (one line, no newline); only for length-named algorithms."""
    if LENGTH_ALGORITHMS.get(len(entry.digest)) != entry.algorithm:
        raise ValueError(f"{entry.algorithm} cannot be written in the untagged form")
    prefix, name = _escape_name(entry.name)
    return f"{prefix}{entry.digest} {'*' if binary else ' '}{name}"


def format_bsd(entry: Entry) -> str:
    """The entry as ``sha256sum --tag`` writes it (one line, no newline)."""
    prefix, name = _escape_name(entry.name)
    return f"{prefix}{entry.algorithm.upper().replace('_', '-')} ({name}) = {entry.digest}"


def file_name(name: str) -> str:
    """The name a download is looked up by: the last ``/`` component."""
    return name.rsplit("/", 1)[-1]


def to_table(entries: Iterable[Entry]) -> ChecksumTable:
    """The lookup table for entries: ``(file name, "algo=hex")``, sorted, repeats dropped.

    Lines that disagree about a name are all kept: :func:`lookup` refuses that name.
    """
    return tuple(sorted({(file_name(e.name), e.spec) for e in entries if file_name(e.name)}))


def select(table: ChecksumTable, names: Iterable[str]) -> ChecksumTable:
    """The rows of ``table`` for these file names only."""
    wanted = set(names)
    return tuple(row for row in table if row[0] in wanted)


def lookup(table: ChecksumTable, name: str) -> str | None:
    """``algo=hex`` for a file name; None if no row names it.

    Rows for the same name with different algorithms (an MD5 and a SHA256 line) are fine: the one
    with the longest digest is used. Two different digests of one algorithm raise ChecksumFileError.
    """
    specs = sorted({spec for row_name, spec in table if row_name == name})
    if not specs:
        return None
    by_algorithm: dict[str, str] = {}
    for spec in specs:
        algorithm, _, digest = spec.partition("=")
        if by_algorithm.setdefault(algorithm, digest) != digest:
            shown = _shown(name)
            raise ChecksumFileError(f"the checksum file has different {algorithm} digests for {shown!r}")
    algorithm = max(by_algorithm, key=lambda a: (len(by_algorithm[a]), a))
    return f"{algorithm}={by_algorithm[algorithm]}"
