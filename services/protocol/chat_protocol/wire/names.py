"""User names: what is allowed and how two names compare."""

from __future__ import annotations

import functools
import re

from chat_protocol.const import NAME_MAX_CHARS
from chat_protocol.errors import UsageError

_NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*\Z")

NAME_RULE = (
    f"1-{NAME_MAX_CHARS} characters: ASCII letters, digits, '_', '.', '-', "
    "starting with a letter or digit"
)


@functools.lru_cache(maxsize=4096)
def is_valid_name(name: str) -> bool:
    # A small cache: the codec's name caches sit in front of it, and the server checks each
    # name once per sign-in, uncached (valid_name_once), so it holds no copy of their names.
    return valid_name_once(name)


def valid_name_once(name: str) -> bool:
    """:func:`is_valid_name` without its cache: for a check made once per name (the server's,
    at each sign-in), which would only fill the cache with every signed-in user's name."""
    return 0 < len(name) <= NAME_MAX_CHARS and _NAME_RE.match(name) is not None


def check_name(name: str) -> str:
    """Return ``name`` if valid, else raise :class:`UsageError` explaining the rule."""
    if not is_valid_name(name):  # guard: name-rule
        raise UsageError(f"invalid user name {name[:40]!r}: use {NAME_RULE}")
    return name


def name_key(name: str) -> str:
    """Names are unique without regard to case: 'Bob' and 'bob' are the same user."""
    key = name.casefold()
    return name if key == name else key  # one string, not two, for a name already folded
