"""compact_sgr: fewer bytes, the same screen.

The property test plays both strings on a small model of a terminal (text, SGR, cursor moves, line
feeds, cursor save/restore, which also restores attributes) and compares every cell and the final
attributes, so whatever follows in the next write is drawn the same way too.
"""

from __future__ import annotations

import re

from hypothesis import given
from hypothesis import strategies as st

from tui.sgr import compact_sgr

CELL = "\x1b[38;2;224;224;224;48;2;39;39;39m"
BAR = "\x1b[38;2;78;191;113;48;2;39;39;39m"
RESET = "\x1b[0m"

_PLAY = re.compile(r"\x1b\[([0-9;]*)m|\x1b\[([0-9]+);([0-9]+)H|\x1b7|\x1b8|\n|\r|[^\x1b\n\r]")


def play(data: str) -> tuple[dict[tuple[int, int], tuple[str, tuple[str, ...]]], tuple[str, ...]]:
    """The cells a terminal would show for ``data`` (with the attributes each was drawn in) and
    the attributes in effect at the end. Attributes are the SGRs applied since the last reset."""
    cells: dict[tuple[int, int], tuple[str, tuple[str, ...]]] = {}
    attrs: tuple[str, ...] = ()
    y = x = 0
    saved = (0, 0, attrs)
    for m in _PLAY.finditer(data):
        token = m.group(0)
        if m.group(1) is not None:
            attrs = () if m.group(1) in ("", "0") else (*attrs, m.group(1))
        elif m.group(2) is not None:
            y, x = int(m.group(2)) - 1, int(m.group(3)) - 1
        elif token == "\x1b7":
            saved = (y, x, attrs)
        elif token == "\x1b8":
            y, x, attrs = saved
        elif token == "\n":
            y += 1
        elif token == "\r":
            x = 0
        else:
            cells[(y, x)] = (token, attrs)
            x += 1
    return cells, attrs


def test_a_row_of_cells_in_one_style_becomes_one_run() -> None:
    row = f"{RESET}\x1b[20;1H{CELL}   7 {RESET}{CELL} d06.bin {RESET}{BAR}▏{RESET}{CELL}  1% {RESET}\r\n"
    out = compact_sgr(row)
    assert out == f"{RESET}\x1b[20;1H{CELL}   7  d06.bin {RESET}{BAR}▏{RESET}{CELL}  1% {RESET}\r\n"
    assert play(out) == play(row)


def test_a_style_carries_over_a_cursor_move_but_not_a_line_feed() -> None:
    moved = f"{RESET}{CELL}a{RESET}\x1b[5;39H{CELL}b{RESET}"
    assert compact_sgr(moved) == f"{RESET}{CELL}a\x1b[5;39Hb{RESET}"
    fed = f"{RESET}{CELL}a{RESET}\n{CELL}b{RESET}"
    assert compact_sgr(fed) == fed


def test_unknown_state_is_left_alone() -> None:
    # Before the first reset the attributes left by an earlier write are not known.
    first = f"{CELL}a{RESET}{CELL}b{RESET}"
    assert compact_sgr(first) == first
    # A cursor restore brings back saved attributes: the style after it is not known.
    restored = f"{RESET}{BAR}\x1b7{RESET}{CELL}a\x1b8b{RESET}{CELL}c{RESET}"
    assert play(compact_sgr(restored)) == play(restored)
    # Two SGRs stacked since the reset: not a single style, so not merged.
    stacked = f"{RESET}\x1b[1m{CELL}a{RESET}{CELL}b{RESET}"
    assert compact_sgr(stacked) == stacked
    assert compact_sgr("plain text") == "plain text"


_ESCAPES = [CELL, BAR, RESET, "\x1b[m", "\x1b[1m", "\x1b[0;1m", "\x1b[3;7H", "\x1b[1;1H", "\x1b7", "\x1b8"]
_PIECES = st.sampled_from([*_ESCAPES, "\n", "\r", "a", "bc", "█", " "])


@given(st.lists(_PIECES, max_size=40))
def test_the_screen_is_unchanged_and_never_longer(pieces: list[str]) -> None:
    data = "".join(pieces)
    out = compact_sgr(data)
    assert play(out) == play(data)
    assert len(out) <= len(data)
