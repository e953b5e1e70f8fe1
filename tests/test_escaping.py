"""Escaping what servers send before it reaches a terminal, and bounding one-line texts: pure functions."""

from __future__ import annotations

import re
import unicodedata

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from engine.errors import DownloadError, ErrorKind
from engine.escaping import ELLIPSIS, MAX_LINE, bound, escape_controls, one_line
from engine.http import status_error
from engine.retry import Retry

BIDI_AND_SEPARATORS = "\u061c\u200e\u200f\u2028\u2029\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069"

# Text weighted towards what a hostile server sends: controls, C1, DEL, undecodable bytes (as
# Python's surrogateescape gives them), bidi overrides, backslashes, and ordinary letters.
hostile_chars = st.one_of(
    st.characters(min_codepoint=0, max_codepoint=0x1F),
    st.sampled_from("\x7f\x80\x85\x9b\x9d\x9f\\[]m;0" + BIDI_AND_SEPARATORS),
    st.characters(min_codepoint=0xD800, max_codepoint=0xDFFF),
    st.characters(),
)
hostile_text = st.text(hostile_chars, max_size=400)


def unsafe(char: str) -> bool:
    """What must never reach a terminal raw, defined apart from the module under test."""
    return unicodedata.category(char) in ("Cc", "Cs") or char in BIDI_AND_SEPARATORS


def assert_safe(text: str) -> None:
    assert not any(unsafe(c) for c in text), ascii(text)
    text.encode("utf-8")  # writable by any UTF-8 stream: no lone surrogate left


_ESCAPE = re.compile(r"\\([0-7]{3})|\\u([0-9a-f]{4})")


def unescape(text: str) -> str:
    """The inverse of escape_controls for text that had no backslash and no surrogate."""
    return _ESCAPE.sub(lambda m: chr(int(m.group(1), 8) if m.group(1) else int(m.group(2), 16)), text)


@pytest.mark.parametrize(
    ("raw", "shown"),
    [
        ("\x1b]0;pwned\x07\x1b[31mNot Found", "\\033]0;pwned\\007\\033[31mNot Found"),
        ("a\tb\nc\rd", "a\\011b\\012c\\015d"),
        ("\x00\x7f", "\\000\\177"),
        ("csi \x9b and nel \x85", "csi \\233 and nel \\205"),
        ("byte \udcff", "byte \\377"),
        ("lone \ud800", "lone \\ud800"),
        ("invoice\u202etxt.exe", "invoice\\u202etxt.exe"),
        ("line\u2028break", "line\\u2028break"),
        ("café 日本 [bold]x[/] \\033", "café 日本 [bold]x[/] \\033"),
    ],
)
def test_escapes_as_wget_does(raw: str, shown: str) -> None:
    assert escape_controls(raw) == shown


@settings(max_examples=300)
@given(hostile_text)
def test_escaped_text_holds_no_control_and_escaping_again_changes_nothing(text: str) -> None:
    escaped = escape_controls(text)
    assert_safe(escaped)
    assert escape_controls(escaped) == escaped


@settings(max_examples=300)
@given(hostile_text)
def test_safe_text_is_left_alone(text: str) -> None:
    safe = "".join(c for c in text if not unsafe(c))
    assert escape_controls(safe) == safe


@settings(max_examples=300)
@given(hostile_text.map(lambda t: "".join(c for c in t if c != "\\" and unicodedata.category(c) != "Cs")))
def test_nothing_is_lost_without_backslashes(text: str) -> None:
    # Each unsafe character has an escape of its own, so (with no backslash to confuse it) the
    # original can be read back: two different hostile strings never look the same.
    assert unescape(escape_controls(text)) == text


@settings(max_examples=300)
@given(hostile_text, st.integers(min_value=1, max_value=300))
def test_one_line_is_safe_bounded_and_idempotent(text: str, limit: int) -> None:
    line = one_line(text, limit)
    assert_safe(line)
    assert len(line) <= limit
    assert one_line(line, limit) == line
    escaped = escape_controls(text)
    if len(escaped) <= limit:
        assert line == escaped
    else:
        assert line.endswith(ELLIPSIS)
        head = line[: -len(ELLIPSIS)]
        # Cut between escapes: the head is the escaped form of a prefix of the text, and as long
        # as it can be, short of at most one escape's length.
        prefixes = [escape_controls(text[:n]) for n in range(len(text) + 1)]
        assert head in prefixes
        assert len(head) > limit - len(ELLIPSIS) - len("\\u202e")


@settings(max_examples=300)
@given(hostile_text, st.integers(min_value=1, max_value=300))
def test_bound_cuts_with_an_ellipsis(text: str, limit: int) -> None:
    cut = bound(text, limit)
    if len(text) <= limit:
        assert cut == text
    else:
        assert len(cut) == limit
        assert cut.endswith(ELLIPSIS) and text.startswith(cut[: -len(ELLIPSIS)])
    assert bound(cut, limit) == cut


def test_limits_below_one_character_are_refused() -> None:
    with pytest.raises(ValueError, match="at least 1"):
        one_line("x", 0)
    with pytest.raises(ValueError, match="at least 1"):
        bound("x", 0)


@settings(max_examples=200)
@given(hostile_text.map(lambda t: t * 20))
def test_every_download_error_reason_is_one_safe_short_line(text: str) -> None:
    err = DownloadError(text, permanent=True, kind=ErrorKind.HTTP_4XX)
    assert_safe(err.reason)
    assert len(err.reason) <= MAX_LINE
    assert str(err) == err.reason


def test_a_hostile_reason_phrase_becomes_an_escaped_error() -> None:
    err = status_error(404, "\x1b]0;pwned\x07\x1b[31mNot Found")
    assert err.reason == "HTTP 404 \\033]0;pwned\\007\\033[31mNot Found"
    assert err.permanent and err.kind is ErrorKind.HTTP_4XX
    long = status_error(503, "x" * 5000)
    assert len(long.reason) == MAX_LINE and long.reason.startswith("HTTP 503 xxx")
    assert long.reason.endswith(ELLIPSIS)


def test_giving_up_keeps_its_note_when_the_reason_is_long() -> None:
    retry = Retry(total=0)
    with pytest.raises(DownloadError) as info:
        retry.increment(status_error(503, "\x1b[31m" + "y" * 1000))
    reason = info.value.reason
    assert len(reason) <= MAX_LINE
    assert reason.startswith("HTTP 503 \\033[31myyy")
    assert reason.endswith(f"{ELLIPSIS} (gave up after 0 retries)")
