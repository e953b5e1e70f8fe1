"""Fewer bytes to the terminal: drop style resets that the next piece of text undoes at once.

Textual writes every segment as ``ESC[<style>m text ESC[0m``, and a DataTable gives each cell its
own segment (the cells differ only in mouse metadata, which never reaches the terminal), so a row
of nine cells in one colour carries nine copies of a 30-byte truecolour style. Over SSH those
escapes were two thirds of what the dashboard wrote. :func:`compact_sgr` rewrites
``... ESC[0m ESC[<same style>m ...`` as ``... ...``: the screen ends up exactly the same.

Pure string work, no I/O: the dashboard's driver applies it to each write.
"""

from __future__ import annotations

import re

_TOKEN = re.compile(r"\x1b\[([0-9;]*)m|\x1b\[[0-9]+;[0-9]+H")
"""An SGR (style) sequence, with its parameters, or an absolute cursor move (CUP)."""

_RESETS = frozenset(("", "0"))


def compact_sgr(data: str) -> str:
    """``data`` without the resets that are followed (after at most cursor moves) by the very
    style they ended; what a terminal shows for it is unchanged.

    Only a style opened by a single SGR right after a reset is tracked; anything else that could
    touch the terminal's attributes (another escape sequence, e.g. a cursor restore) makes the
    state unknown, and then nothing is dropped until the next reset. Line feeds count as text, so
    a scroll never fills a new line with a colour the original would not have used.
    """
    if "\x1b[0m" not in data:
        return data
    out: list[str] = []
    append = out.append
    pos = 0
    # The parameters of the one SGR in effect since the last reset; "" after a reset with none
    # since; None when unknown (start of the data, several SGRs, or another escape sequence).
    style: str | None = None
    # A reset not yet written, with the cursor moves that followed it, and the style it ended.
    held: list[str] | None = None
    held_style: str | None = None
    for match in _TOKEN.finditer(data):
        start = match.start()
        if start > pos:
            text = data[pos:start]
            if held is not None:
                out.extend(held)
                held = None
            if "\x1b" in text:
                style = None
            append(text)
        pos = match.end()
        token = match.group(0)
        params = match.group(1)
        if params is None:  # a cursor move: it changes no attribute
            if held is not None:
                held.append(token)
            else:
                append(token)
            continue
        if params in _RESETS:
            if held is not None:
                out.extend(held)
            held, held_style, style = [token], style, ""
            continue
        if held is not None:
            if held_style and params == held_style:
                # The reset and this SGR cancel out: the same style simply stays in effect.
                out.extend(held[1:])
                held = None
                style = params
                continue
            out.extend(held)
            held = None
        style = params if style == "" else None
        append(token)
    if held is not None:
        out.extend(held)
    append(data[pos:])
    return "".join(out)
