"""chat_protocol.secure.identity: fingerprints and safety numbers."""

from __future__ import annotations

import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from budget import examples
from chat_protocol.errors import UsageError
from chat_protocol.secure.identity import (
    fingerprint,
    fingerprint_matches,
    format_fingerprint,
    numeric_fingerprint,
    parse_fingerprint,
    safety_number,
)

keys = st.binary(min_size=32, max_size=32)
names = st.from_regex(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,31}", fullmatch=True)
SAFETY_NUMBER = re.compile(r"\d{5}( \d{5}){11}")


def test_libsignal_numeric_fingerprint_vector() -> None:
    # libsignal rust/protocol/src/fingerprint.rs, fingerprint_test_v1 (and the Java
    # testVectorsVersion1): 33-byte Signal identity keys, phone numbers, 5200 iterations.
    alice = bytes.fromhex("0506863bc66d02b40d27b8d49ca7c09e9239236f9d7d25d6fcca5ce13c7064d868")
    bob = bytes.fromhex("05f781b6fb32fed9ba1cf2de978d4d5da28dc34046ae814402b5c0dbd96fda907b")
    expected = "300354477692869396892869876765458257569162576843440918079131"
    assert numeric_fingerprint(b"+14152222222", alice, b"+14153333333", bob) == expected
    assert numeric_fingerprint(b"+14153333333", bob, b"+14152222222", alice) == expected


@given(a_name=names, a_key=keys, b_name=names, b_key=keys)
@settings(max_examples=examples(25), deadline=None)
def test_safety_number_is_the_same_on_both_sides(
    a_name: str, a_key: bytes, b_name: str, b_key: bytes
) -> None:
    mine = safety_number(a_name, a_key, b_name, b_key, iterations=3)
    theirs = safety_number(b_name, b_key, a_name, a_key, iterations=3)
    assert mine == theirs
    assert SAFETY_NUMBER.fullmatch(mine)
    assert len(mine.replace(" ", "")) == 60


def test_safety_number_format_with_the_real_iteration_count() -> None:
    number = safety_number("alice", bytes(range(32)), "Bob", bytes(range(32, 64)))
    assert SAFETY_NUMBER.fullmatch(number)
    assert "\n" not in number and number.count(" ") == 11
    assert number == safety_number("bob", bytes(range(32, 64)), "ALICE", bytes(range(32)))


def test_safety_number_changes_with_either_key_or_name() -> None:
    base = safety_number("alice", bytes(32), "bob", bytes([1]) * 32, iterations=5)
    assert safety_number("alice", bytes([2]) * 32, "bob", bytes([1]) * 32, iterations=5) != base
    assert safety_number("alice", bytes(32), "bob", bytes([3]) * 32, iterations=5) != base
    assert safety_number("alice", bytes(32), "carol", bytes([1]) * 32, iterations=5) != base
    assert safety_number("Alice", bytes(32), "BOB", bytes([1]) * 32, iterations=5) == base


@given(key=keys)
def test_fingerprint_round_trip(key: bytes) -> None:
    text = format_fingerprint(key)
    assert re.fullmatch(r"[A-Z2-7]{4}(-[A-Z2-7]{4}){7}", text)
    assert parse_fingerprint(text) == fingerprint(key)
    assert parse_fingerprint(text.lower().replace("-", " ")) == fingerprint(key)
    assert parse_fingerprint(text.replace("-", "")) == fingerprint(key)
    assert fingerprint_matches(key, text)
    assert fingerprint_matches(key, fingerprint(key))
    other = bytes([key[0] ^ 1]) + key[1:]
    assert not fingerprint_matches(other, text)


def test_fingerprint_is_sha256_cut_to_160_bits() -> None:
    import hashlib

    key = bytes(range(32))
    assert fingerprint(key) == hashlib.sha256(key).digest()[:20]
    assert len(fingerprint(key)) == 20


@pytest.mark.parametrize(
    "text",
    ["", "ABCD", "A" * 31, "A" * 33, "1" * 32, "ABCD-EFGH-IJKL-MNOP-QRST-UVWX-YZ23-456!"],
)
def test_bad_fingerprints_are_usage_errors(text: str) -> None:
    with pytest.raises(UsageError):
        parse_fingerprint(text)
