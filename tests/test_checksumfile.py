"""The checksum-file parser (engine.checksumfile): GNU and BSD lines, escapes, errors, lookups."""

from __future__ import annotations

import hashlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from engine.checksumfile import (
    LENGTH_ALGORITHMS,
    MAX_FILE_BYTES,
    ChecksumFileError,
    Entry,
    format_bsd,
    format_gnu,
    lookup,
    parse,
    parse_bytes,
    parse_line,
    select,
    to_table,
)

EMPTY_SHA256 = hashlib.sha256(b"").hexdigest()
EMPTY_MD5 = hashlib.md5(b"").hexdigest()


def test_gnu_text_and_binary_lines() -> None:
    text = f"{EMPTY_SHA256}  a.iso\n{EMPTY_MD5} *b.img\n"
    assert parse(text) == (Entry("a.iso", "sha256", EMPTY_SHA256), Entry("b.img", "md5", EMPTY_MD5))


@pytest.mark.parametrize("digits, algorithm", sorted(LENGTH_ALGORITHMS.items()))
def test_gnu_algorithm_from_length(digits: int, algorithm: str) -> None:
    digest = hashlib.new(algorithm, b"x").hexdigest()
    assert len(digest) == digits
    assert parse_line(f"{digest}  f") == Entry("f", algorithm, digest)


def test_bsd_reversed_single_space_and_upper_case_hex() -> None:
    assert parse_line(f"{EMPTY_SHA256.upper()} f.bin") == Entry("f.bin", "sha256", EMPTY_SHA256)


@pytest.mark.parametrize(
    "tag, algorithm",
    [
        ("MD5", "md5"),
        ("SHA1", "sha1"),
        ("SHA224", "sha224"),
        ("SHA256", "sha256"),
        ("SHA384", "sha384"),
        ("SHA512", "sha512"),
        ("SHA3-256", "sha3_256"),
        ("SHA3-512", "sha3_512"),
        ("BLAKE2b", "blake2b"),
        ("BLAKE2s", "blake2s"),
    ],
)
def test_bsd_tags(tag: str, algorithm: str) -> None:
    digest = hashlib.new(algorithm, b"x").hexdigest()
    assert parse_line(f"{tag} (dir/x (1).tar.gz) = {digest}") == Entry("dir/x (1).tar.gz", algorithm, digest)


def test_name_holding_the_separator_of_the_bsd_form() -> None:
    # The digest is after the last ") = ": a name may hold the separator itself.
    assert parse_line(f"SHA256 (a) = b) = {EMPTY_SHA256}") == Entry("a) = b", "sha256", EMPTY_SHA256)


def test_escaped_names_gnu_and_bsd() -> None:
    gnu = f"\\{EMPTY_SHA256}  new\\nline\\\\back\\rcr"
    bsd = f"\\SHA256 (new\\nline\\\\back\\rcr) = {EMPTY_SHA256}"
    want = Entry("new\nline\\back\rcr", "sha256", EMPTY_SHA256)
    assert parse_line(gnu) == want
    assert parse_line(bsd) == want


def test_unescaped_backslash_is_literal() -> None:
    assert parse_line(f"{EMPTY_SHA256}  a\\nb").name == "a\\nb"  # type: ignore[union-attr]


def test_comments_blank_lines_crlf_bom_and_dot_slash() -> None:
    text = f"\ufeff# made by sha256sum\r\n\r\n   \n\t# indented comment\n{EMPTY_SHA256}  ./././x.iso\r\n"
    assert parse_bytes(text.encode()) == (Entry("x.iso", "sha256", EMPTY_SHA256),)


def test_leading_blanks_before_the_hash() -> None:
    assert parse_line(f"  \t{EMPTY_SHA256}  x") == Entry("x", "sha256", EMPTY_SHA256)


@pytest.mark.parametrize(
    "line, message",
    [
        ("hello world", "not a checksum line"),
        (f"{EMPTY_SHA256}", "not a checksum line"),
        ("abc  f", "3-digit hash matches no algorithm"),
        (f"{EMPTY_SHA256[:-1]}g  f", "not a checksum line"),
        (f"NOPE (f) = {EMPTY_SHA256}", "unknown algorithm 'NOPE'"),
        (f"SHAKE128 (f) = {EMPTY_SHA256}", "no fixed digest length"),
        (f"SHA256 (f) = {EMPTY_MD5}", "a sha256 digest has 64 hex digits, got 32"),
        ("SHA256 (f) = xyz", "not a hexadecimal digest"),
        (f"SHA256 () = {EMPTY_SHA256}", "no file name"),
        (f"{EMPTY_SHA256}  ./", "no file name"),
        (f"{EMPTY_SHA256}  dir/", "no file name"),
        (f"\\{EMPTY_SHA256}  a\\tb", "bad escape '\\t'"),
        (f"\\{EMPTY_SHA256}  a\\", "bad escape"),
    ],
)
def test_malformed_lines(line: str, message: str) -> None:
    with pytest.raises(ChecksumFileError, match=message.replace("(", r"\(").replace("\\", "\\\\")):
        parse_line(line)


def test_errors_name_the_line() -> None:
    with pytest.raises(ChecksumFileError, match=r"^line 3: not a checksum line"):
        parse(f"# x\n{EMPTY_SHA256}  a\nrubbish\n")


def test_empty_file_and_only_comments() -> None:
    for text in ("", "\n\n", "# nothing\n"):
        with pytest.raises(ChecksumFileError, match="no checksum lines"):
            parse(text)


def test_not_utf8_and_too_large() -> None:
    with pytest.raises(ChecksumFileError, match=r"not UTF-8 text \(byte 66\)"):
        parse_bytes(f"{EMPTY_SHA256}  \xff".encode("latin-1"))
    big = (f"{EMPTY_SHA256}  f\n" * (MAX_FILE_BYTES // 67 + 1)).encode()
    with pytest.raises(ChecksumFileError, match="larger than 1024 KiB"):
        parse_bytes(big)


def test_control_characters_in_errors_are_escaped() -> None:
    with pytest.raises(ChecksumFileError) as info:
        parse_line(f"\x1b]0;pwned\x07 (f) = {EMPTY_SHA256}")
    assert "\x1b" not in str(info.value) and "\x07" not in str(info.value)
    with pytest.raises(ChecksumFileError) as info:
        parse_line("SHA256 (f) = \x1b[31m")
    assert "\x1b" not in str(info.value)


def test_huge_line_is_an_error_not_a_hang() -> None:
    with pytest.raises(ChecksumFileError) as info:
        parse("(" * 1_000_000 + ") = " + "a" * 100_000)
    assert len(str(info.value)) < 300


def test_table_uses_the_last_path_component_and_drops_repeats() -> None:
    entries = parse(f"{EMPTY_SHA256}  iso/x.img\n{EMPTY_SHA256} *./x.img\n{EMPTY_MD5}  y\n")
    table = to_table(entries)
    assert table == (("x.img", f"sha256={EMPTY_SHA256}"), ("y", f"md5={EMPTY_MD5}"))
    assert lookup(table, "x.img") == f"sha256={EMPTY_SHA256}"
    assert lookup(table, "iso/x.img") is None
    assert lookup(table, "z") is None
    assert select(table, ["y", "nope"]) == (("y", f"md5={EMPTY_MD5}"),)


def test_lookup_prefers_the_longest_digest_and_refuses_disagreement() -> None:
    table = to_table(parse(f"{EMPTY_MD5}  f\nSHA512 (f) = {'0' * 128}\n{EMPTY_SHA256}  f\n"))
    assert lookup(table, "f") == f"sha512={'0' * 128}"
    clash = to_table(parse(f"{EMPTY_SHA256}  a/f\n{'1' * 64}  b/f\n"))
    with pytest.raises(ChecksumFileError, match="different sha256 digests for 'f'"):
        lookup(clash, "f")


def test_format_gnu_refuses_an_algorithm_the_length_does_not_name() -> None:
    with pytest.raises(ValueError, match="sha3_256"):
        format_gnu(Entry("f", "sha3_256", EMPTY_SHA256))


# Names as tools write them: anything but an empty last component and a leading "./" (dropped on
# reading). Control characters, backslashes, newlines, "*" and spaces at either end are all fair.
_names = st.text(st.characters(codec="utf-8", exclude_characters="\ufeff"), min_size=1, max_size=40).filter(
    lambda n: not n.endswith("/") and not n.startswith("./")
)
_FIXED = ["md5", "sha1", "sha224", "sha256", "sha384", "sha512", "sha3_256", "sha3_512", "blake2b", "blake2s"]


@st.composite
def _entries(draw: st.DrawFn) -> Entry:
    algorithm = draw(st.sampled_from(_FIXED))
    size = hashlib.new(algorithm).digest_size
    digest = draw(st.binary(min_size=size, max_size=size)).hex()
    return Entry(draw(_names), algorithm, digest)


@settings(max_examples=300, deadline=None)
@given(st.lists(_entries(), min_size=1, max_size=8), st.lists(st.booleans(), min_size=8, max_size=8))
def test_round_trip(entries: list[Entry], binary: list[bool]) -> None:
    lines = []
    for entry, flag in zip(entries, binary, strict=False):
        if LENGTH_ALGORITHMS.get(len(entry.digest)) == entry.algorithm and flag:
            lines.append(format_gnu(entry, binary=len(lines) % 2 == 0))
        else:
            lines.append(format_bsd(entry))
    text = "\n".join(lines) + "\n"
    assert parse(text) == tuple(entries)
    assert parse_bytes(text.encode()) == tuple(entries)
    assert to_table(parse(text)) == to_table(entries)


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=400))
def test_any_text_parses_or_fails_cleanly(text: str) -> None:
    try:
        entries = parse(text)
    except ChecksumFileError as exc:
        assert str(exc) and "\n" not in str(exc)
    else:
        for entry in entries:
            assert entry.name and len(entry.digest) == 2 * hashlib.new(entry.algorithm).digest_size
