"""The directory's name bindings on disk: ``HOME/names.sqlite3`` (0600), one row per name.

Which key owns which name must survive restarts (issue 19: names belong to keys). SQLite (the
standard library's ``sqlite3``) rather than an append-only file: a lookup is one indexed read,
not a copy of every binding in memory; ``names release`` deletes a row in a transaction while
the server runs (WAL mode: the operator's command and the server do not block each other for
long), with no log to compact; and a crash mid-write leaves the old state or the new one.

Durability: WAL with ``synchronous=NORMAL``. A commit is in the operating system's hands at
once, so a killed or crashed server loses nothing; a power failure may lose the last bindings
made (each of their users binds its name again at its next sign-in). ``FULL`` would fsync on
every first sign-in of a name, milliseconds each on a disk, on the event loop.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from chat_protocol.const import NAME_USE_RECORD_S, NAMES_DB_CACHE_KIB
from chat_protocol.errors import ChatError
from chat_protocol.server.bindings import NameStoreError

DB_FILE = "names.sqlite3"
SCHEMA_VERSION = 1

_SCHEMA = """
CREATE TABLE IF NOT EXISTS names (
    name TEXT PRIMARY KEY,      -- case-folded (chat_protocol.names.name_key)
    key BLOB NOT NULL,          -- the owner's static public key, 32 bytes
    bound_at REAL NOT NULL,     -- seconds since the epoch: its first sign-in
    used_at REAL NOT NULL       -- its latest sign-in (recorded at most once per NAME_USE_RECORD_S)
) WITHOUT ROWID
"""


class NamesDbError(ChatError):
    """The bindings file cannot be opened or is not one; ``str(err)`` says which and why."""


@dataclass(frozen=True, slots=True)
class Binding:
    name: str
    key: bytes
    bound_at: float
    used_at: float


class SqliteNames:
    """:class:`chat_protocol.server.bindings.NameBindings` in ``home/names.sqlite3``."""

    def __init__(self, home: Path, *, clock: Callable[[], float] = time.time) -> None:
        self.path = home / DB_FILE
        self._clock = clock
        try:
            home.mkdir(mode=0o700, parents=True, exist_ok=True)
            os.close(os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600))
            self._db = sqlite3.connect(self.path, isolation_level=None, timeout=5.0)
            version = self._db.execute("PRAGMA user_version").fetchone()[0]
            if version not in (0, SCHEMA_VERSION):
                raise NamesDbError(
                    f"{self.path}: schema version {version}, this chat-server knows "
                    f"{SCHEMA_VERSION}: use a newer chat-server"
                )
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")
            self._db.execute(f"PRAGMA cache_size=-{NAMES_DB_CACHE_KIB}")  # KiB, not pages
            self._db.execute(_SCHEMA)
            self._db.execute(f"PRAGMA user_version={SCHEMA_VERSION}")
        except (OSError, sqlite3.Error) as exc:
            raise NamesDbError(f"cannot use {self.path}: {exc}") from None

    def close(self) -> None:
        self._db.close()

    def lookup(self, name: str) -> bytes | None:
        try:
            row = self._db.execute("SELECT key FROM names WHERE name = ?", (name,)).fetchone()
        except sqlite3.Error as exc:
            raise NameStoreError(f"{self.path}: {exc}") from None
        return None if row is None else bytes(row[0])

    def bind(self, name: str, key: bytes) -> None:
        """Bind a free ``name`` to ``key``; for ``key``'s own name, note the use (at most once
        per NAME_USE_RECORD_S, so a busy server writes little). Never rebinds a name."""
        now = self._clock()
        try:
            self._db.execute(
                "INSERT INTO names (name, key, bound_at, used_at) VALUES (?, ?, ?, ?) "
                "ON CONFLICT (name) DO UPDATE SET used_at = excluded.used_at "
                "WHERE names.key = excluded.key AND excluded.used_at - names.used_at >= ?",
                (name, key, now, now, NAME_USE_RECORD_S),
            )
        except sqlite3.Error as exc:
            raise NameStoreError(f"{self.path}: {exc}") from None

    def release(self, name: str) -> Binding | None:
        """Free ``name`` (the operator's ``names release``): the next key to sign it in owns
        it. The binding it had, or None if it had none."""
        with self._transaction():
            found = self._get(name)
            if found is not None:
                self._db.execute("DELETE FROM names WHERE name = ?", (name,))
        return found

    def all(self) -> list[Binding]:
        rows = self._db.execute("SELECT name, key, bound_at, used_at FROM names ORDER BY name")
        return [Binding(n, bytes(k), b, u) for n, k, b, u in rows]

    def _get(self, name: str) -> Binding | None:
        row = self._db.execute(
            "SELECT name, key, bound_at, used_at FROM names WHERE name = ?", (name,)
        ).fetchone()
        return None if row is None else Binding(row[0], bytes(row[1]), row[2], row[3])

    @contextlib.contextmanager
    def _transaction(self) -> Iterator[None]:
        self._db.execute("BEGIN IMMEDIATE")
        try:
            yield
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        self._db.execute("COMMIT")
