"""Making text from the network safe to show on a terminal: pure functions, no I/O.

A server chooses its reason phrases, header values and redirect targets; written raw, an
``ESC ] 0 ; ... BEL`` in one retitles the user's terminal and an ``ESC [ 31 m`` recolours it.
So every such string is escaped before it reaches a screen, a log or a metrics label, as wget
does: each C0 control (``\\n``, ``\\r`` and ``\\t`` included), DEL and each C1 control becomes a
backslash and three octal digits (ESC is ``\\033``, DEL ``\\177``, CSI ``\\233``); a byte that was
not UTF-8 (decoded by Python as a lone surrogate, U+DC80-U+DCFF) becomes its own octal value (0xFF
is ``\\377``); and the invisible characters that reorder or break a line (bidi marks, embeddings,
overrides and isolates; line and paragraph separators; any other lone surrogate, which no encoder
can write) become ``\\u`` and four hex digits (``\\u202e``).

Backslashes are left as they are, so the escaping cannot be undone exactly, but it is idempotent:
escaping twice changes nothing, and a sink may escape again whatever the engine already escaped.
"""

from __future__ import annotations

import re

MAX_LINE = 200
"""Characters a one-line text from the network (an error's reason) is cut to, ellipsis included."""
ELLIPSIS = "…"
"""What marks a cut text."""

DISPLAY_UNSAFE = r"\x00-\x1f\x7f-\x9f\u061c\u200e\u200f\u2028-\u202e\u2066-\u2069"
"""A regex character-class body: C0/C1 controls, DEL, and the invisible characters that reorder or
break text on screen (bidi marks, embeddings, overrides, isolates; line and paragraph separators).
Escaped here before text reaches a terminal; removed from file names by engine.filenames."""
_UNSAFE = re.compile(rf"[{DISPLAY_UNSAFE}\ud800-\udfff]")
_SURROGATE_ESCAPE = range(0xDC80, 0xDD00)
"""Python's ``surrogateescape`` stands for an undecodable byte B with the code point U+DC00 + B."""


def _escape_char(char: str) -> str:
    """The escape of one character :data:`_UNSAFE` matches."""
    code = ord(char)
    if code < 0xA0:
        return f"\\{code:03o}"
    if code in _SURROGATE_ESCAPE:
        return f"\\{code - 0xDC00:03o}"
    return f"\\u{code:04x}"


def _piece(char: str) -> str:
    """One character as shown: itself, or its escape."""
    return _escape_char(char) if _UNSAFE.match(char) else char


def escape_controls(text: str) -> str:
    """``text`` with every control and line-breaking or reordering character escaped (see the module)."""
    return _UNSAFE.sub(lambda m: _escape_char(m.group()), text)


def _check(limit: int) -> None:
    if limit < len(ELLIPSIS):
        raise ValueError(f"limit must be at least {len(ELLIPSIS)}, got {limit}")


def bound(text: str, limit: int = MAX_LINE) -> str:
    """``text`` itself if it has at most ``limit`` characters, else its start and :data:`ELLIPSIS`
    in exactly ``limit``."""
    _check(limit)
    return text if len(text) <= limit else text[: limit - len(ELLIPSIS)] + ELLIPSIS


def one_line(text: str, limit: int = MAX_LINE) -> str:
    """``text`` escaped and bounded to ``limit`` characters, never cutting an escape in two.

    What an error's reason goes through: safe on any terminal, one line, and short.
    """
    _check(limit)
    escaped = escape_controls(text)
    if len(escaped) <= limit:
        return escaped
    # Cut between escapes, so no "\033" is left as "\03"; each character shows as one or more,
    # so the first ``limit`` of them are all that can fit.
    room = limit - len(ELLIPSIS)
    kept: list[str] = []
    for char in text[:limit]:
        piece = _piece(char)
        if len(piece) > room:
            break
        kept.append(piece)
        room -= len(piece)
    return "".join(kept) + ELLIPSIS
