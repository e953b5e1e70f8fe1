"""Pure checks behind one-line errors: the checksum spec and the detail quoted from an exception."""

from __future__ import annotations

import hashlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from engine.client import EngineError
from engine.config import parse_checksum
from engine.http import MAX_DETAIL, detail


def _digest_size(algo: str) -> int:
    try:
        return hashlib.new(algo).digest_size
    except ValueError:  # listed, but this OpenSSL will not make it (a legacy algorithm, say)
        return 0


FIXED = sorted(a for a in hashlib.algorithms_available if _digest_size(a) > 0)


@given(algo=st.sampled_from(FIXED), data=st.binary(max_size=64))
def test_every_fixed_length_digest_is_accepted_at_its_length_only(algo: str, data: bytes) -> None:
    digest = hashlib.new(algo, data).hexdigest()
    assert parse_checksum(f"{algo}={digest.upper()}") == (algo, digest)
    for wrong in (digest[:-1], digest + "0"):
        with pytest.raises(EngineError, match="hex digits"):
            parse_checksum(f"{algo}={wrong}")


@given(st.text(max_size=500))
def test_detail_is_one_short_line(text: str) -> None:
    line = detail(text)
    assert "\n" not in line and "\r" not in line and len(line) <= MAX_DETAIL
