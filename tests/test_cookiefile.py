"""The cookies file parser and matcher (engine.cookiefile): pure, tested directly and with hypothesis."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from engine.cookiefile import (
    Cookie,
    CookieFileError,
    cookie_header,
    cookies_for,
    domain_matches,
    format_cookies,
    parse_cookies,
    path_matches,
)

CURL_FILE = (
    "# Netscape HTTP Cookie File\n"
    "# https://curl.se/docs/http-cookies.html\n"
    "\n"
    ".example.com\tTRUE\t/\tFALSE\t0\tsid\tabc123\n"
    "#HttpOnly_files.example.com\tFALSE\t/dl\tTRUE\t2000000000\ttok\tx=y\r\n"
    "example.org\tFALSE\t/\tFALSE\t1700000000\tempty\n"
)


def test_a_curl_file_is_read() -> None:
    assert parse_cookies(CURL_FILE) == (
        Cookie(".example.com", True, "/", False, 0, "sid", "abc123"),
        Cookie("files.example.com", False, "/dl", True, 2000000000, "tok", "x=y", http_only=True),
        Cookie("example.org", False, "/", False, 1700000000, "empty", ""),
    )


@pytest.mark.parametrize(
    ("line", "why"),
    [
        ("example.com\tTRUE\t/\tFALSE\t0", "expected 7"),
        ("example.com\tYES\t/\tFALSE\t0\tn\tv", "TRUE or FALSE"),
        ("example.com\tTRUE\t/\tFALSE\tsoon\tn\tv", "whole Unix seconds"),
        ("example.com\tTRUE\t/\tFALSE\t0\t\tv", "unusable"),
        ("example.com\tTRUE\t/\tFALSE\t0\tn\tv;evil=1", "unusable"),
        ("example.com\tTRUE\t/\tFALSE\t0\tn\tv\x1b[2J", "unusable"),
        ("...\tTRUE\t/\tFALSE\t0\tn\tv", "unusable"),
    ],
)
def test_a_bad_line_is_named(line: str, why: str) -> None:
    with pytest.raises(CookieFileError, match=f"^line 2: .*{why}"):
        parse_cookies("# comment\n" + line + "\n")


def test_domains_match_exactly_or_below_when_the_flag_says() -> None:
    exact = Cookie("example.com", False, "/", False, 0, "n", "v")
    below = Cookie(".Example.COM", True, "/", False, 0, "n", "v")
    assert domain_matches(exact, "example.com") and domain_matches(exact, "EXAMPLE.com.")
    assert not domain_matches(exact, "www.example.com")
    assert domain_matches(below, "example.com") and domain_matches(below, "a.b.example.com")
    assert not domain_matches(below, "badexample.com") and not domain_matches(below, "example.com.evil")


@pytest.mark.parametrize(
    ("cookie_path", "request_path", "expected"),
    [
        ("/", "/anything", True),
        ("/dl", "/dl", True),
        ("/dl", "/dl/file.iso", True),
        ("/dl/", "/dl/file.iso", True),
        ("/dl", "/dlx/file.iso", False),
        ("/dl", "/", False),
        ("/", "", True),
    ],
)
def test_paths_match_at_a_slash(cookie_path: str, request_path: str, expected: bool) -> None:
    assert path_matches(cookie_path, request_path) is expected


def test_secure_expiry_and_order() -> None:
    cookies = (
        Cookie("h", False, "/", False, 0, "root", "1"),
        Cookie("h", False, "/a/b", False, 0, "deep", "2"),
        Cookie("h", False, "/a", True, 0, "secure", "3"),
        Cookie("h", False, "/", False, 100, "expiring", "4"),
    )
    assert (
        cookie_header(cookies_for(cookies, "http", "h", "/a/b/c", now=99.0)) == "deep=2; root=1; expiring=4"
    )
    assert (
        cookie_header(cookies_for(cookies, "https", "h", "/a/b/c", now=100.0)) == "deep=2; secure=3; root=1"
    )
    assert cookie_header(cookies_for(cookies, "https", "other", "/", now=0.0)) is None


# What a header may carry: Latin-1 without control characters (Cc: C0, DEL, C1) or ";".
_CHARS = st.characters(
    min_codepoint=32, max_codepoint=255, exclude_categories=("Cc",), exclude_characters=";"
)
_COOKIES = st.builds(
    Cookie,
    domain=st.from_regex(r"\.?[a-z0-9]([a-z0-9-]{0,8}\.){0,3}[a-z]{1,6}", fullmatch=True),
    subdomains=st.booleans(),
    path=st.from_regex(r"/[A-Za-z0-9/._-]{0,12}", fullmatch=True),
    secure=st.booleans(),
    expires=st.integers(min_value=-(2**40), max_value=2**40),
    name=st.text(_CHARS, min_size=1, max_size=12).map(lambda s: s.replace("=", "-")),
    value=st.text(_CHARS, max_size=12),
    http_only=st.booleans(),
)


@given(st.lists(_COOKIES, max_size=8).map(tuple))
def test_a_written_file_reads_back_equal(cookies: tuple[Cookie, ...]) -> None:
    assert parse_cookies(format_cookies(cookies)) == cookies


@given(st.text(max_size=300))
def test_any_text_parses_or_names_a_line(text: str) -> None:
    try:
        cookies = parse_cookies(text)
    except CookieFileError as exc:
        assert str(exc).startswith("line ")
    else:
        header = cookie_header([Cookie(*c) for c in cookies])
        assert header is None or not any(ord(ch) < 32 for ch in header)
