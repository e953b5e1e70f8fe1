"""Rates as users type them, and sizes, rates and durations as the dashboard shows them."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from engine.units import format_bytes, format_duration, format_rate, parse_rate

K, M, G, T = 1024, 1024**2, 1024**3, 1024**4


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("500K", 500 * K),
        ("500k", 500 * K),
        ("2M", 2 * M),
        ("1.5G", int(1.5 * G)),
        ("1T", T),
        ("1234", 1234),
        ("1", 1),
        ("500KiB", 500 * K),
        ("500KB", 500 * K),
        ("2MB/s", 2 * M),
        ("2M/s", 2 * M),
        ("500b", 500),
        ("  500 k  ", 500 * K),
        ("0.5K", 512),
        ("0", None),
        ("0K", None),
        ("0.0", None),
        ("", None),
        ("   ", None),
    ],
)
def test_parse_rate(text: str, expected: int | None) -> None:
    assert parse_rate(text) == expected


@pytest.mark.parametrize(
    "text",
    [
        "garbage",
        "fast",
        "-5K",
        "5X",
        "1e3",
        "1,5M",
        "K",
        "500ib",  # "i" without a unit letter
        "5 0K",
        ".5M",
        "0.1",  # under one byte per second
        pytest.param("1" * 400, id="400-digits"),  # would be infinity as a float
        "9999999T",
        "\u0665\u0660\u0660K",  # Arabic-Indic digits: float() takes them, a rate option should not
        "500K\n--evil",
    ],
)
def test_parse_rate_rejects(text: str) -> None:
    with pytest.raises(ValueError, match="invalid rate") as info:
        parse_rate(text)
    message = str(info.value)
    assert "\n" not in message  # one line, fit for argparse
    assert repr(text) in message


@settings(max_examples=200, deadline=None)
@given(st.integers(1, 10**6), st.sampled_from(["", "K", "M", "G", "k", "m", "g"]))
def test_parse_rate_integers(n: int, unit: str) -> None:
    factor = {"": 1, "k": K, "m": M, "g": G}[unit.lower()]
    assert parse_rate(f"{n}{unit}") == n * factor


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=20))
def test_parse_rate_never_raises_anything_but_value_error(text: str) -> None:
    try:
        result = parse_rate(text)
    except ValueError:
        return
    assert result is None or (isinstance(result, int) and result >= 1)


@pytest.mark.parametrize(
    ("n", "expected"),
    [
        (None, "?"),
        (0, "0 B"),
        (1, "1 B"),
        (1023, "1023 B"),
        (1023.6, "1023 B"),
        (1024, "1.0 KiB"),
        (1536, "1.5 KiB"),
        (1024 * 1023, "1023.0 KiB"),
        (M - 1, "1.0 MiB"),  # not "1024.0 KiB"
        (int(1.5 * M), "1.5 MiB"),
        (G - 1, "1.0 GiB"),
        (5 * G, "5.0 GiB"),
        (3 * T, "3.0 TiB"),
        (5000 * T, "5000.0 TiB"),
        (-5, "-5 B"),
        (float("nan"), "?"),
        (float("inf"), "?"),
    ],
)
def test_format_bytes(n: float | None, expected: str) -> None:
    assert format_bytes(n) == expected


def test_format_rate() -> None:
    assert format_rate(None) == "-"
    assert format_rate(0) == "0 B/s"
    assert format_rate(1536) == "1.5 KiB/s"
    assert format_rate(2.5 * M) == "2.5 MiB/s"
    assert format_rate(float("nan")) == "-"


@settings(max_examples=300, deadline=None)
@given(st.floats(0, 2**60, allow_nan=False))
def test_format_bytes_number_stays_below_1024(n: float) -> None:
    text = format_bytes(n)
    number, unit = text.split(" ")
    assert unit in ("B", "KiB", "MiB", "GiB", "TiB")
    if unit != "TiB":
        assert float(number) < 1024


@pytest.mark.parametrize(
    ("seconds", "expected"),
    [
        (None, "-"),
        (-1, "-"),
        (float("nan"), "-"),
        (0, "0s"),
        (0.4, "0s"),
        (0.5, "1s"),
        (42, "42s"),
        (59.4, "59s"),
        (59.6, "1m00s"),  # rounding carries over
        (61, "1m01s"),
        (185, "3m05s"),
        (3599.6, "1h00m"),
        (3600 + 2 * 60 + 59, "1h02m"),
        (99 * 3600, "99h00m"),
        (86400 * 100, "∞"),
        (1e20, "∞"),
        (float("inf"), "∞"),
    ],
)
def test_format_duration(seconds: float | None, expected: str) -> None:
    assert format_duration(seconds) == expected
