"""Safe local file names from hostile headers and URLs; numbered alternatives; truncation."""

from __future__ import annotations

import posixpath
import unicodedata

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from engine.filenames import (
    DEFAULT_NAME,
    MAX_NAME_BYTES,
    OWN_SUFFIXES,
    choose_name,
    is_numbered,
    name_from_content_disposition,
    name_from_url,
    numbered,
    sanitize,
    server_name,
    split_ext,
    split_output,
    unique_name,
)

BIDI_AND_SEPARATORS = "\u061c\u200e\u200f\u2028\u2029\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069"


def assert_safe(name: str) -> None:
    """What every name the engine creates must satisfy."""
    assert name
    assert "/" not in name and "\\" not in name and "\x00" not in name
    assert name not in (".", "..")
    assert not name.startswith(".") and not name.endswith(".")
    assert name == name.strip()
    assert not any(unicodedata.category(c) == "Cc" for c in name)
    assert not any(c in BIDI_AND_SEPARATORS for c in name)
    assert len(name.encode("utf-8")) <= MAX_NAME_BYTES


# ----- Content-Disposition ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        ('attachment; filename="report.pdf"', "report.pdf"),
        ("attachment; filename=report.pdf", "report.pdf"),
        ("attachment; FILENAME=UP.TXT", "UP.TXT"),
        ("attachment;filename=a.txt;filename=b.txt", "a.txt"),
        ('attachment; filename="a;b.txt"', "a;b.txt"),
        ('attachment; filename="say \\"hi\\".txt"', 'say "hi".txt'),
        ('attachment; filename="back\\\\slash.txt"', "back\\slash.txt"),
        ('attachment; filename="unterminated.txt', "unterminated.txt"),
        ("attachment; filename=my file.txt", "my file.txt"),  # unquoted with spaces, as sent
        ("filename=no-type.txt", "no-type.txt"),
        # RFC 6266 / 5987 extended values, in both charsets every client must support.
        ("attachment; filename*=UTF-8''%E2%82%AC%20rates.pdf", "€ rates.pdf"),
        ("attachment; filename*=utf-8'en'%C3%A9t%C3%A9.txt", "été.txt"),
        ("attachment; filename*=ISO-8859-1'en'%A3%20rates.txt", "£ rates.txt"),
        ("attachment; filename*=iso-8859-1''caf%E9.txt", "café.txt"),
        # Decoded once only: %25 is a literal percent sign.
        ("attachment; filename*=UTF-8''100%2541.txt", "100%41.txt"),
        # filename* wins over filename, whichever comes first.
        ("attachment; filename=\"EUR rates.pdf\"; filename*=UTF-8''%E2%82%AC%20rates.pdf", "€ rates.pdf"),
        ("attachment; filename*=UTF-8''%E2%82%AC%20rates.pdf; filename=\"EUR rates.pdf\"", "€ rates.pdf"),
        # A filename* that cannot be decoded falls back to filename.
        ("attachment; filename*=UTF-8''%FF%FE.txt; filename=fallback.txt", "fallback.txt"),
        ("attachment; filename*=no-such-charset''a.txt; filename=fallback.txt", "fallback.txt"),
        ("attachment; filename*=missing-quotes.txt; filename=fallback.txt", "fallback.txt"),
        # RFC 2047 encoded words, which some servers put in filename.
        ("attachment; filename==?UTF-8?B?w6l0w6kucGRm?=", "été.pdf"),
    ],
)
def test_content_disposition_names(header: str, expected: str) -> None:
    assert name_from_content_disposition(header) == expected


@pytest.mark.parametrize(
    "header",
    [None, "", "attachment", "inline", "inline; filename=", 'attachment; filename=""', "attachment; size=3"],
)
def test_content_disposition_without_a_name(header: str | None) -> None:
    assert name_from_content_disposition(header) is None


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        ('attachment; filename="../../etc/passwd"', "_.._etc_passwd"),
        ("attachment; filename=../../etc/passwd", "_.._etc_passwd"),
        ("attachment; filename*=UTF-8''..%2F..%2Fetc%2Fpasswd", "_.._etc_passwd"),
        ('attachment; filename="..\\\\..\\\\windows\\\\win.ini"', "_.._windows_win.ini"),
        ('attachment; filename="/etc/passwd"', "_etc_passwd"),
        ('attachment; filename=".bashrc"', "bashrc"),
        ('attachment; filename=".."', DEFAULT_NAME),
        ('attachment; filename=" . . "', DEFAULT_NAME),
        ("attachment; filename*=UTF-8''%00%0A%1B", DEFAULT_NAME),
        ('attachment; filename="evil\x01\x1b[31m.txt"', "evil[31m.txt"),
        ("attachment; filename*=UTF-8''ab%0D%0AX-Injected%3A%201.txt", "abX-Injected: 1.txt"),
        ("attachment; filename*=UTF-8''invoice%E2%80%AEtxt.exe", "invoicetxt.exe"),
        ('attachment; filename="\\"quoted\\""', '"quoted"'),
    ],
)
def test_hostile_content_disposition(header: str, expected: str) -> None:
    name = choose_name(None, header, "https://example.com/")
    assert name == expected
    assert_safe(name)


# ----- sanitize ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("report.pdf", "report.pdf"),
        ("a/b\\c", "a_b_c"),
        ("  spaced  ", "spaced"),
        ("trailing...", "trailing"),
        (". . a", "a"),
        ("a . .", "a"),
        ("..hidden", "hidden"),
        ("a..b", "a..b"),  # harmless inside a name
        ("tab\there", "tabhere"),
        ("bell\x07\x7f\x85", "bell"),
        ("e\u0301", "\u00e9"),  # NFC: one code point, as most file systems expect
        ("", ""),
        ("..", ""),
        ("...", ""),
        ("\x00", ""),
        ("\u202e\u2066", ""),
    ],
)
def test_sanitize(raw: str, expected: str) -> None:
    assert sanitize(raw) == expected


def test_long_names_are_cut_under_the_limit_keeping_the_extension() -> None:
    name = sanitize("x" * 300 + ".tar.gz")
    assert len(name.encode()) == MAX_NAME_BYTES
    assert name.endswith("x.tar.gz")
    wide = sanitize("é" * 200 + ".txt")
    assert len(wide.encode()) <= MAX_NAME_BYTES
    assert wide.endswith("é.txt")
    wide.encode().decode("utf-8")  # never a broken multi-byte character
    emoji = sanitize("🙂" * 100)
    assert len(emoji.encode()) <= MAX_NAME_BYTES and set(emoji) == {"🙂"}


def test_long_names_with_a_silly_extension_are_simply_cut() -> None:
    name = sanitize("a." + "b" * 300)
    assert name == ("a." + "b" * 300)[:MAX_NAME_BYTES]


def test_cut_never_leaves_a_trailing_dot_or_space() -> None:
    name = sanitize("a" * 238 + " ." + "x" * 50)
    assert_safe(name)


def test_exactly_at_the_limit_is_kept() -> None:
    name = "n" * (MAX_NAME_BYTES - 4) + ".bin"
    assert sanitize(name) == name


@settings(max_examples=500, deadline=None)
@given(st.text(max_size=300))
def test_sanitize_is_always_safe(raw: str) -> None:
    name = sanitize(raw)
    if name:
        assert_safe(name)
        assert sanitize(name) == name  # idempotent


@settings(max_examples=200, deadline=None)
@given(st.text(alphabet=st.sampled_from("./\\ .\x00\n\u202e\u2028ab"), max_size=40))
def test_sanitize_on_separator_soup(raw: str) -> None:
    name = sanitize(raw)
    if name:
        assert_safe(name)


# ----- choose_name -------------------------------------------------------------------------


def test_choose_name_priority() -> None:
    cd = 'attachment; filename="from-header.bin"'
    url = "https://example.com/files/from-url.bin?x=1#frag"
    assert choose_name("mine.bin", cd, url) == "mine.bin"
    assert choose_name(None, cd, url) == "from-header.bin"
    assert choose_name(None, None, url) == "from-url.bin"
    assert choose_name(None, 'attachment; filename=".."', url) == "from-url.bin"
    assert choose_name(None, None, "https://example.com/") == DEFAULT_NAME
    assert choose_name(None, None, "https://example.com") == DEFAULT_NAME
    assert choose_name("../x", None, url) == "_x"


def test_name_from_url() -> None:
    assert name_from_url("https://h/a/b/c%20d.txt?q=1") == "c d.txt"
    assert name_from_url("https://h/a/%2E%2E%2Fescape") == "../escape"
    assert name_from_url("https://h/dir/") is None
    assert choose_name(None, None, "https://h/a/%2E%2E%2Fescape") == "_escape"
    assert choose_name(None, None, "https://h/%00%0a") == DEFAULT_NAME


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=80), st.text(max_size=80))
def test_choose_name_is_always_safe(header_name: str, url_tail: str) -> None:
    quoted = header_name.replace("\\", "\\\\").replace('"', '\\"')
    name = choose_name(None, f'attachment; filename="{quoted}"', "https://example.com/" + url_tail)
    assert_safe(name)


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=60), st.sampled_from(["UTF-8", "ISO-8859-1", "utf-8"]))
def test_extended_value_round_trip(raw: bytes, charset: str) -> None:
    try:
        text = raw.decode(charset)
    except UnicodeDecodeError:
        return
    encoded = "".join(f"%{b:02X}" for b in raw)
    assert name_from_content_disposition(f"attachment; filename*={charset}''{encoded}") == (text or None)


# ----- numbered alternatives ------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "stem", "ext"),
    [
        ("file.txt", "file", ".txt"),
        ("archive.tar.gz", "archive", ".tar.gz"),
        ("Archive.TAR.XZ", "Archive", ".TAR.XZ"),
        ("a.b.c", "a.b", ".c"),
        ("noext", "noext", ""),
        (".tar.gz", ".tar", ".gz"),
    ],
)
def test_split_ext(name: str, stem: str, ext: str) -> None:
    assert split_ext(name) == (stem, ext)


def test_numbered() -> None:
    assert numbered("file.txt", 0) == "file.txt"
    assert numbered("file.txt", 1) == "file.1.txt"
    assert numbered("archive.tar.gz", 2) == "archive.2.tar.gz"
    assert numbered("README", 3) == "README.3"


def test_unique_name_counts_up() -> None:
    taken = {"file.txt", "file.1.txt", "file.2.txt"}
    assert unique_name("file.txt", taken.__contains__) == "file.3.txt"
    assert unique_name("other.txt", taken.__contains__) == "other.txt"
    taken2 = {"data.tar.gz", "data.1.tar.gz"}
    assert unique_name("data.tar.gz", taken2.__contains__) == "data.2.tar.gz"


def test_unique_name_gives_up() -> None:
    with pytest.raises(FileExistsError):
        unique_name("x.bin", lambda _: True, limit=50)


def test_numbered_long_names_still_fit_with_the_part_suffix() -> None:
    name = sanitize("y" * 400 + ".iso")
    longest = numbered(name, 9999) + ".part.json"
    assert len(longest.encode()) <= 255


# ----- names a server chose ----------------------------------------------------------------


def assert_server_safe(name: str) -> None:
    """What a server-chosen name must satisfy on top of :func:`assert_safe`."""
    assert_safe(name)
    assert not name.startswith(("-", "."))
    assert not name.lower().endswith(OWN_SUFFIXES)
    assert all(unicodedata.category(c) != "Cf" for c in name)


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("release.tar.gz.part", "release.tar.gz"),
        ("release.tar.gz.part.json", "release.tar.gz"),
        ("x.PART.Json", "x"),
        ("x.part.part.json.part", "x"),
        ("x.part. ", "x"),
        ("-rf", "rf"),
        ("--help.txt", "help.txt"),
        (".-.bashrc", "bashrc"),
        ("-.part", ""),
        ("in\u200bvoice\ufeff.pdf\u2060", "invoice.pdf"),
        ("\u00adsoft\u200d", "soft"),
        ("a-b.part2", "a-b.part2"),
        ("report.json", "report.json"),
    ],
)
def test_server_name(raw: str, expected: str) -> None:
    assert server_name(raw) == expected


def test_hostile_server_names_never_pose_as_fetchtop_files() -> None:
    url = "https://example.com/dl"
    assert choose_name(None, 'attachment; filename="release.tar.gz.part"', url) == "release.tar.gz"
    assert choose_name(None, "attachment; filename*=UTF-8''release.tar.gz.part.json", url) == "release.tar.gz"
    assert choose_name(None, None, "https://example.com/a/release.tar.gz.part") == "release.tar.gz"
    assert choose_name(None, 'attachment; filename="-.part"', url) == "dl"
    assert (
        choose_name(None, "attachment; filename*=UTF-8''%E2%80%8B", "https://example.com/\u200b.sh") == "sh"
    )


def test_output_option_may_still_end_in_part() -> None:
    # -o is the user's own choice: only the separators and controls of sanitize apply.
    assert choose_name("-keep.part", 'attachment; filename="x"', "https://h/y") == "-keep.part"


@settings(max_examples=500, deadline=None)
@given(
    st.lists(
        st.one_of(
            st.sampled_from(
                ["-", ".", " ", ".part", ".part.json", ".PART", "\u200b", "\ufeff", "\u2060", "a"]
            ),
            st.characters(whitelist_categories=("Cf", "Ll", "Pd")),
        ),
        max_size=12,
    ).map("".join),
    st.text(max_size=40),
)
def test_server_names_are_always_server_safe(header_name: str, url_tail: str) -> None:
    for raw in (header_name, url_tail):
        name = server_name(raw)
        if name:
            assert_server_safe(name)
            assert server_name(name) == name  # idempotent
            for n in (1, 7):
                assert not numbered(name, n).lower().endswith(OWN_SUFFIXES)
    quoted = header_name.replace("\\", "\\\\").replace('"', '\\"')
    assert_server_safe(
        choose_name(None, f'attachment; filename="{quoted}"', "https://example.com/" + url_tail)
    )


def test_is_numbered() -> None:
    assert is_numbered("out.bin", "out.bin")
    assert is_numbered("out.1.bin", "out.bin")
    assert is_numbered("a.12.tar.gz", "a.tar.gz")
    assert not is_numbered("out.01.bin", "out.bin")
    assert not is_numbered("out.x.bin", "out.bin")
    assert not is_numbered("outx.bin", "out.bin")
    assert not is_numbered("other.1.bin", "out.bin")


# ---------------------------------------------------------------------------------------------------
# -o as a path under -d


@pytest.mark.parametrize(
    ("directory", "output", "expected"),
    [
        ("d", "out.bin", ("d", "out.bin")),
        ("d", "sub/dir/out.bin", ("d/sub/dir", "out.bin")),
        ("/dl", "/abs/out.bin", ("/abs", "out.bin")),
        (".", "../up.bin", ("./..", "up.bin")),
    ],
)
def test_split_output(directory: str, output: str, expected: tuple[str, str]) -> None:
    assert split_output(directory, output) == expected


@pytest.mark.parametrize("output", ["sub/", "/", ".", "..", "a/..", "a/.", ""])
def test_split_output_refuses_a_directory(output: str) -> None:
    with pytest.raises(ValueError, match="directory"):
        split_output("d", output)


@given(
    st.lists(st.text(alphabet="abc.-_ ", min_size=1, max_size=5), min_size=1, max_size=4),
)
def test_split_output_joins_back_to_the_same_path(parts: list[str]) -> None:
    output = "/".join(parts)
    if parts[-1] in (".", ".."):
        with pytest.raises(ValueError):
            split_output("d", output)
        return
    directory, name = split_output("d", output)
    assert "/" not in name
    assert posixpath.join(directory, name) == posixpath.join("d", output)
    # Splitting again what was split changes nothing.
    assert split_output(directory, name) == (directory, name)
