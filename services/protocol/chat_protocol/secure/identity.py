"""What a person compares to know a key: fingerprints and safety numbers (pure functions).

**Fingerprint** of one static public key (a server's, for ``--server-key``; or anyone's)::

    fingerprint(key) = SHA-256(key)[:20]                       (160 bits)
    shown as base32 (RFC 4648 alphabet, no padding): 32 letters and digits in 8 groups of 4,
    e.g. ``MFRG-GZDF-MZTW-Q2LK-NNWG-23TP-OBYX-E4ZT``

:func:`parse_fingerprint` takes it back case-insensitively, ignoring spaces and hyphens.

**Safety number** of a pair of users, after Signal's numeric fingerprint
(libsignal ``NumericFingerprintGenerator``, version 0, 5200 iterations). Each side's half is::

    h = 0x00 0x00 | key | id               (version 0; the 32-byte X25519 key; id = name_key(name)
    repeat 5200 times: h = SHA-512(h | key)  in UTF-8, so Bob and bob are the same user)
    half = the first 30 bytes of h as six 5-byte big-endian integers, each mod 100000,
           written as 5 decimal digits: 30 digits

The two halves are put in ascending order (as strings) and joined: 60 digits, shown as 12 groups
of 5 separated by single spaces, on one line. Both users compute the same string, so they can
read it to each other; it changes if either key (or name) changes. The iterations make it
costly to search for a different key whose half collides (30 digits: about 2**100 tries).

:func:`numeric_fingerprint` is exactly libsignal's algorithm on raw bytes (its test vector, over
33-byte Signal keys and phone numbers, passes in tests/unit/test_identity.py);
:func:`safety_number` applies it to ``name_key(name)`` and the 32-byte key, and groups it.
"""

from __future__ import annotations

import base64
import hashlib
import re

from cryptography.hazmat.primitives.constant_time import bytes_eq

from chat_protocol.const import FINGERPRINT_BYTES, SAFETY_NUMBER_ITERATIONS
from chat_protocol.errors import UsageError
from chat_protocol.wire.names import name_key

SAFETY_NUMBER_VERSION = 0
SAFETY_NUMBER_DIGITS = 60
SAFETY_NUMBER_GROUP = 5
_FINGERPRINT_CHARS = 32  # 20 bytes of base32 without padding
_SEPARATORS = re.compile(r"[\s\-:]+")


def fingerprint(public_key: bytes) -> bytes:
    """The 20-byte fingerprint of a static public key."""
    return hashlib.sha256(public_key).digest()[:FINGERPRINT_BYTES]


def format_fingerprint(public_key: bytes) -> str:
    """The fingerprint as people see it: 8 groups of 4 base32 characters joined by ``-``."""
    text = base64.b32encode(fingerprint(public_key)).decode("ascii")
    return "-".join(text[i : i + 4] for i in range(0, len(text), 4))


def parse_fingerprint(text: str) -> bytes:
    """The 20 bytes a typed fingerprint stands for; :class:`UsageError` if it is not one."""
    compact = _SEPARATORS.sub("", text).upper()
    if len(compact) != _FINGERPRINT_CHARS:
        raise UsageError(
            f"a key fingerprint is {_FINGERPRINT_CHARS} letters and digits "
            "(like MFRG-GZDF-MZTW-Q2LK-NNWG-23TP-OBYX-E4ZT)"
        )
    try:
        return base64.b32decode(compact)
    except ValueError:
        raise UsageError("a key fingerprint uses only the letters A-Z and digits 2-7") from None


def fingerprint_matches(public_key: bytes, expected: bytes | str) -> bool:
    """True if ``public_key`` has the fingerprint ``expected`` (bytes or as typed)."""
    want = parse_fingerprint(expected) if isinstance(expected, str) else expected
    return bytes_eq(fingerprint(public_key), want)


def numeric_fingerprint(
    local_id: bytes,
    local_key: bytes,
    remote_id: bytes,
    remote_key: bytes,
    *,
    iterations: int = SAFETY_NUMBER_ITERATIONS,
) -> str:
    """Signal's displayable numeric fingerprint over raw identifiers and keys: 60 digits."""
    return "".join(
        sorted((_half(local_id, local_key, iterations), _half(remote_id, remote_key, iterations)))
    )


def _half(stable_id: bytes, public_key: bytes, iterations: int) -> str:
    if iterations < 1:
        raise ValueError("at least one iteration")
    digest = SAFETY_NUMBER_VERSION.to_bytes(2, "big") + public_key + stable_id
    for _ in range(iterations):
        digest = hashlib.sha512(digest + public_key).digest()
    return "".join(
        f"{int.from_bytes(digest[i : i + 5], 'big') % 100000:05d}" for i in range(0, 30, 5)
    )


def safety_number(
    local_name: str,
    local_key: bytes,
    remote_name: str,
    remote_key: bytes,
    *,
    iterations: int = SAFETY_NUMBER_ITERATIONS,
) -> str:
    """The pair's safety number (12 groups of 5 digits), the same whichever side computes it."""
    digits = numeric_fingerprint(
        name_key(local_name).encode("utf-8"),
        local_key,
        name_key(remote_name).encode("utf-8"),
        remote_key,
        iterations=iterations,
    )
    return " ".join(
        digits[i : i + SAFETY_NUMBER_GROUP] for i in range(0, len(digits), SAFETY_NUMBER_GROUP)
    )
