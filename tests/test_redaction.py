"""Redaction, directly: which headers are secret, proxy passwords, URLs in free text, and a property
that no secret value survives :func:`redact_options` whatever the headers are."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from engine.models import TaskOptions
from engine.redaction import (
    REDACTED,
    is_secret_header,
    redact,
    redact_headers,
    redact_options,
    redact_text,
)
from engine.task import Task


@pytest.mark.parametrize(
    "name",
    [
        "Authorization",
        "authorization",
        "Proxy-Authorization",
        "Cookie",
        "COOKIE",
        "X-Auth-Token",
        "X-API-Key",
        "Api-Key",
        "X-Secret",
        "Session-Id",
        "X-Amz-Security-Token",
        "PRIVATE-TOKEN",
    ],
)
def test_secret_headers(name: str) -> None:
    assert is_secret_header(name)
    assert redact_headers(((name, "hunter2"),)) == ((name, REDACTED),)


@pytest.mark.parametrize("name", ["Accept", "Range", "Referer", "X-Request-Id", "Accept-Language"])
def test_ordinary_headers_are_kept(name: str) -> None:
    assert not is_secret_header(name)
    assert redact_headers(((name, "v"),)) == ((name, "v"),)


def test_redact_options_hides_headers_and_the_proxy_password_only() -> None:
    options = TaskOptions(
        headers=(("Authorization", "Bearer abc"), ("Accept", "*/*"), ("Cookie", "sid=1")),
        proxy="http://user:pw-123@proxy.example:3128/",
        directory="/srv/dl",
    )
    shown = redact_options(options)
    assert shown.headers == (("Authorization", REDACTED), ("Accept", "*/*"), ("Cookie", REDACTED))
    assert shown.proxy == "http://proxy.example:3128/"
    assert shown.directory == "/srv/dl"
    # Nothing to hide: the very same object, so a snapshot per tick copies nothing.
    plain = TaskOptions(headers=(("Accept", "*/*"),), proxy="http://proxy.example:3128/")
    assert redact_options(plain) is plain


def test_redact_urls_and_text() -> None:
    assert redact("https://u:p@host/x?a=1") == "https://host/x?a=1"
    assert redact("http://host/x") == "http://host/x"
    message = "407, message='Proxy Authentication Required', url='http://user:pw-SECRET@127.0.0.1:3128'"
    assert redact_text(message) == "407, message='Proxy Authentication Required', url='http://127.0.0.1:3128'"
    assert redact_text("see https://a:b@h/1 and ftp://c@h/2, mail me@example.org") == (
        "see https://h/1 and ftp://h/2, mail me@example.org"
    )


def test_the_snapshot_shows_redacted_options_while_the_task_keeps_the_real_ones() -> None:
    options = TaskOptions(headers=(("X-Api-Key", "k-999"),), proxy="http://u:pw@127.0.0.1:9")
    task = Task(1, "http://a:b@127.0.0.1/f", options)
    snap = task.snapshot()
    assert snap.options.headers == (("X-Api-Key", REDACTED),)
    assert snap.options.proxy == "http://127.0.0.1:9"
    assert snap.url == "http://127.0.0.1/f"
    assert task.options is options  # what requests are sent with, and what the session saves
    task.set_limit(1000)
    assert task.snapshot().options.headers == (("X-Api-Key", REDACTED),)
    assert task.snapshot().options.speed_limit == 1000


_WORDS = st.sampled_from(["token", "KEY", "Secret", "auth", "SESSION", "cookie", "Authorization"])
_NAME_PART = st.text(alphabet="abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ-", max_size=8)
_SECRET_NAMES = st.builds(lambda a, w, b: a + w + b, _NAME_PART, _WORDS, _NAME_PART)
_VALUES = st.text(alphabet=st.characters(min_codepoint=33, max_codepoint=126), min_size=6, max_size=40)


@given(
    secret=st.lists(st.tuples(_SECRET_NAMES, _VALUES), min_size=1, max_size=5),
    other=st.lists(st.tuples(st.sampled_from(["Accept", "Range", "X-Trace"]), st.just("plain")), max_size=3),
    password=_VALUES.filter(lambda p: not any(c in p for c in "/?#@[]%:\\")),
)
def test_no_secret_value_survives(
    secret: list[tuple[str, str]], other: list[tuple[str, str]], password: str
) -> None:
    headers = tuple(secret + other)
    options = TaskOptions(headers=headers, proxy=f"http://user:{password}@127.0.0.1:3128")
    shown = redact_options(options)
    assert [n for n, _ in shown.headers] == [n for n, _ in headers]
    for (name, value), (_, kept) in zip(headers, shown.headers, strict=True):
        assert kept == (REDACTED if is_secret_header(name) else value)
    assert all(kept == REDACTED for (name, _), (_, kept) in zip(secret, shown.headers, strict=False))
    assert shown.proxy == "http://127.0.0.1:3128"
    assert redact_options(shown) == shown


@given(user=st.text(min_size=1, max_size=20), value=st.text(min_size=1, max_size=20))
def test_redact_options_hides_the_user_password_and_cookie_values(user: str, value: str) -> None:
    from engine.cookiefile import Cookie

    name = user.partition(":")[0]
    options = TaskOptions(user=user, cookies=(Cookie("example.com", True, "/", False, 0, "sid", value),))
    shown = redact_options(options)
    assert shown.user == (f"{name}:{REDACTED}" if ":" in user else user)
    assert shown.cookies == (("example.com", True, "/", False, 0, "sid", REDACTED, False),)
    assert shown.user is not None and shown.user.partition(":")[2] in ("", REDACTED)
