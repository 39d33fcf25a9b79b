"""Pinned keys: the key each user name had the first time this client saw it (trust on first use,
as SSH's ``accept-new``).

The core keeps the pins in memory and tells its shell about every change (a ``KeyPinned`` event)
so the shell can persist them; it never reads or writes a file itself.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from enum import Enum

from chat_protocol.events import ClientEvent, KeyPinned
from chat_protocol.wire.names import name_key


class PinVerdict(Enum):
    NEW = "new"
    """Nothing pinned for this name yet: the key will be pinned."""
    MATCH = "match"
    CHANGED = "changed"
    """A different key is pinned: refuse until the user says ``trust NAME``."""


class Pins:
    def __init__(self, pins: Mapping[str, bytes], emit: Callable[[ClientEvent], None]) -> None:
        self._pins = {name_key(n): k for n, k in pins.items()}
        self._emit = emit

    def get(self, name: str) -> bytes | None:
        return self._pins.get(name_key(name))

    def verdict(self, name: str, key: bytes) -> PinVerdict:
        pinned = self._pins.get(name_key(name))
        if pinned is None:
            return PinVerdict.NEW
        return PinVerdict.MATCH if pinned == key else PinVerdict.CHANGED

    def accept(self, name: str, key: bytes) -> bool:
        """Check ``key`` for ``name``, pinning it on first use; False if another key is pinned."""
        verdict = self.verdict(name, key)
        if verdict is PinVerdict.NEW:
            self.pin(name, key, replaced=False)
        return verdict is not PinVerdict.CHANGED

    def pin(self, name: str, key: bytes, *, replaced: bool) -> None:
        self._pins[name_key(name)] = key
        self._emit(KeyPinned(name=name, key=key, replaced=replaced))
