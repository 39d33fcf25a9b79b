"""Pinned keys: the key each user name had the first time this client saw it (trust on first use,
as SSH's ``accept-new``), or the key the user compared and accepted with ``trust`` (verified).

The core keeps the pins in memory and tells its shell about every change (a ``KeyPinned`` event)
so the shell can persist them; it never reads or writes a file itself.

Verification is an act: ``whois NAME`` shows a key, and :class:`Pins` remembers (in memory, per
name, the last :data:`~chat_protocol.const.MAX_WHOIS_REMEMBERED` names) the key it showed;
``trust NAME`` then pins only that key, or the key whose fingerprint the user gives, and refuses
if the directory now gives another.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Collection, Mapping
from enum import Enum

from chat_protocol.const import MAX_WHOIS_REMEMBERED
from chat_protocol.events import ClientEvent, KeyPinned, KeyStatus, WhoisFailure
from chat_protocol.secure.identity import fingerprint_matches
from chat_protocol.wire.names import name_key


class PinVerdict(Enum):
    NEW = "new"
    """Nothing pinned for this name yet: the key will be pinned."""
    MATCH = "match"
    CHANGED = "changed"
    """A different key is pinned: refuse until the user says ``trust NAME``."""


class Pins:
    def __init__(
        self,
        pins: Mapping[str, bytes],
        emit: Callable[[ClientEvent], None],
        verified: Collection[str] = (),
    ) -> None:
        """``pins``: name -> key; ``verified``: the names among them pinned by ``trust``."""
        self._pins = {name_key(n): k for n, k in pins.items()}
        self._verified = {name_key(n) for n in verified if name_key(n) in self._pins}
        self._shown: OrderedDict[str, bytes] = OrderedDict()
        """Name key -> the key ``whois`` last showed for it."""
        self._emit = emit

    def get(self, name: str) -> bytes | None:
        return self._pins.get(name_key(name))

    def is_verified(self, name: str) -> bool:
        return name_key(name) in self._verified

    def verdict(self, name: str, key: bytes) -> PinVerdict:
        pinned = self._pins.get(name_key(name))
        if pinned is None:
            return PinVerdict.NEW
        return PinVerdict.MATCH if pinned == key else PinVerdict.CHANGED

    def status(self, name: str, key: bytes) -> KeyStatus:
        """What ``key``, given by the directory for ``name``, is to this client."""
        verdict = self.verdict(name, key)
        if verdict is PinVerdict.NEW:
            return KeyStatus.NEW
        if verdict is PinVerdict.CHANGED:
            return KeyStatus.CHANGED
        return KeyStatus.VERIFIED if self.is_verified(name) else KeyStatus.PINNED

    def accept(self, name: str, key: bytes) -> bool:
        """Check ``key`` for ``name``, pinning it on first use; False if another key is pinned."""
        verdict = self.verdict(name, key)
        if verdict is PinVerdict.NEW:
            self.pin(name, key, replaced=False)
        return verdict is not PinVerdict.CHANGED

    def pin(self, name: str, key: bytes, *, replaced: bool, verified: bool = False) -> None:
        nk = name_key(name)
        self._pins[nk] = key
        if verified:
            self._verified.add(nk)
        else:
            self._verified.discard(nk)
        self._emit(KeyPinned(name=name, key=key, replaced=replaced, verified=verified))

    # -- whois, then trust --

    def showed(self, name: str, key: bytes) -> None:
        """``whois`` showed ``key`` for ``name``: the key a later ``trust`` may pin."""
        nk = name_key(name)
        self._shown[nk] = key
        self._shown.move_to_end(nk)
        while len(self._shown) > MAX_WHOIS_REMEMBERED:
            self._shown.popitem(last=False)

    def shown(self, name: str) -> bytes | None:
        return self._shown.get(name_key(name))

    def trust(self, name: str, key: bytes, fingerprint: bytes | None) -> WhoisFailure | None:
        """``trust NAME [FINGERPRINT]``, the directory now giving ``key``: pin it as verified if
        it is the key the user saw (``fingerprint``'s, else the one ``whois`` showed); else why
        not (nothing is pinned)."""
        if fingerprint is not None:
            if not fingerprint_matches(key, fingerprint):  # guard: trust-fingerprint
                return WhoisFailure.KEY_DIFFERS
        else:
            seen = self.shown(name)
            if seen is None:  # guard: trust-unseen
                return WhoisFailure.NOT_SEEN
            if seen != key:  # guard: trust-seen
                return WhoisFailure.KEY_DIFFERS
        pinned = self.get(name)
        self.pin(name, key, replaced=pinned not in (None, key), verified=True)
        return None
