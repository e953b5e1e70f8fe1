"""engine.urlcheck: when a new URL's answer lets a partial download keep its bytes (pure, no I/O)."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from engine.urlcheck import Held, Remote, mismatch

validators = st.one_of(st.none(), st.sampled_from(['"a"', '"b"', 'W/"a"', "Tue, 01 Dec 2026 10:00:00 GMT"]))


def test_the_same_file_keeps_the_bytes() -> None:
    held = Held(kept=100, size=1000, etag='"x"', last_modified="Mon")
    assert mismatch(held, Remote(1000, True, '"x"', "Mon")) is None
    # A validator only one side sends proves nothing either way.
    assert mismatch(held, Remote(1000, True, None, None)) is None
    assert mismatch(Held(100, 1000), Remote(1000, True, '"x"', "Mon")) is None


def test_each_difference_has_its_reason() -> None:
    held = Held(kept=100, size=1000, etag='"x"', last_modified="Mon")
    assert mismatch(held, Remote(999, True, '"x"', "Mon")) == (
        "the new URL serves 999 bytes, the partial download is of 1000 bytes"
    )
    assert "an unknown size" in (mismatch(held, Remote(None, True)) or "")
    assert "does not serve byte ranges" in (mismatch(held, Remote(1000, False, '"x"', "Mon")) or "")
    assert "(ETag '\"y\"', was '\"x\"')" in (mismatch(held, Remote(1000, True, '"y"', "Mon")) or "")
    assert "Last-Modified 'Tue'" in (mismatch(held, Remote(1000, True, '"x"', "Tue")) or "")
    # Not checked (--no-if-range): the size still is.
    assert mismatch(held, Remote(1000, True, '"y"', "Tue"), check_validators=False) is None
    assert mismatch(held, Remote(1, True, '"x"', "Mon"), check_validators=False) is not None


def test_a_server_sent_validator_is_shown_escaped() -> None:
    reason = mismatch(Held(1, 10, etag='"x"'), Remote(10, True, '"\x1b]0;evil\x07"')) or ""
    assert "\x1b" not in reason and "\x07" not in reason


@given(
    kept=st.integers(0, 10),
    size=st.one_of(st.none(), st.integers(0, 3)),
    new_size=st.one_of(st.none(), st.integers(0, 3)),
    ranges=st.booleans(),
    old_etag=validators,
    new_etag=validators,
    old_lm=validators,
    new_lm=validators,
    check=st.booleans(),
)
def test_bytes_are_kept_exactly_when_nothing_differs(
    kept: int,
    size: int | None,
    new_size: int | None,
    ranges: bool,
    old_etag: str | None,
    new_etag: str | None,
    old_lm: str | None,
    new_lm: str | None,
    check: bool,
) -> None:
    reason = mismatch(Held(kept, size, old_etag, old_lm), Remote(new_size, ranges, new_etag, new_lm), check)

    def differ(a: str | None, b: str | None) -> bool:
        return a is not None and b is not None and a != b

    same = (
        ranges and new_size == size and not (check and (differ(old_etag, new_etag) or differ(old_lm, new_lm)))
    )
    assert (reason is None) == (kept == 0 or same)
    assert reason is None or "\n" not in reason
