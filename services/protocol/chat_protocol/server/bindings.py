"""Names belong to keys: the directory's record of which static key owns which name.

The first key that signs a name in owns it from then on, whether its user is online or not;
a sign-in under that name with any other key is refused ``NAME_BOUND``. The record must
survive the server's restarts, so it lives outside the sans-I/O core: :class:`ServerCore`
takes a :class:`NameBindings` (``chat_server.names_db.SqliteNames`` in the real server, on
disk in its ``--home``; :class:`MemoryNames` in tests and benchmarks). A user who lost the key
gets the name back only from the server's operator (``chat-server names release NAME``).
"""

from __future__ import annotations

from typing import Protocol


class NameStoreError(Exception):
    """The store cannot answer now (its file is locked, the disk is full, ...). The core then
    answers nothing (fail closed: no name is handed out unchecked); the client asks again."""


class NameBindings(Protocol):
    """Name (case-folded, :func:`chat_protocol.wire.names.name_key`) -> the static public key that
    owns it."""

    def lookup(self, name: str) -> bytes | None:
        """The key ``name`` belongs to, or None if it belongs to nobody (yet); NameStoreError
        if the store cannot tell now."""
        ...

    def bind(self, name: str, key: bytes) -> None:
        """Record a completed sign-in of ``name`` by ``key``: binds a free name to ``key`` (a
        store may also note the use). The core calls it only when ``lookup`` found the name
        free or already ``key``'s. NameStoreError if it cannot record it now."""
        ...


class MemoryNames:
    """Bindings held in memory only (tests, benchmarks): a new core on the same object is a
    restarted server that kept its store."""

    def __init__(self) -> None:
        self.keys: dict[str, bytes] = {}

    def lookup(self, name: str) -> bytes | None:
        return self.keys.get(name)

    def bind(self, name: str, key: bytes) -> None:
        self.keys.setdefault(name, key)

    def release(self, name: str) -> bool:
        return self.keys.pop(name, None) is not None
