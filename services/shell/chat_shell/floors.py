"""The peers' anti-replay floors on disk: the file behind
:class:`chat_protocol.secure.handshake_floor.FloorStore` (issue 19, point 4).

A client refuses a handshake initiation whose timestamp is not above the floor of its sender's
key; kept in the home, the floors survive a restart, so an initiation recorded during an earlier
run is refused too. One file per user of a home (beside ``pins/``)::

    HOME/floors/            0700
      <name>.json           0600  {"version": 1, "floors": {"<base64 key>": <timestamp ns>}}

Writes are atomic (a temporary file, flushed, renamed over the old one, as keystore does) and
serialized with an advisory lock (``<name>.json.lock``), merging what another program of the
same user wrote meanwhile (each floor only ever rises). At most ``MAX_HANDSHAKE_FLOORS`` keys are
kept: the lowest floors (the least recent handshakes) go first.
"""

from __future__ import annotations

import base64
import binascii
import json
from pathlib import Path

from chat_protocol.const import MAX_HANDSHAKE_FLOORS
from chat_protocol.secure.noise import DHLEN
from chat_protocol.wire.names import check_name, name_key
from chat_shell.keystore import (
    FILE_VERSION,
    KeyStoreError,
    _read_private_json,
    locked,
    write_private_file,
)


def floors_path(home: Path, owner: str) -> Path:
    """The floor file of user ``owner`` in ``home``."""
    return home / "floors" / f"{name_key(check_name(owner))}.json"


class FileFloors:
    """A :class:`~chat_protocol.secure.handshake_floor.FloorStore` kept in one file.

    Loaded once (a corrupt file or one others may read is refused with :class:`KeyStoreError`,
    as key files are); each raise is written at once. A write that fails (a full disk) is
    counted in :attr:`write_errors` and the floor kept in memory: the chat goes on.
    """

    __slots__ = ("_floors", "capacity", "path", "write_errors")

    def __init__(self, path: Path, *, capacity: int = MAX_HANDSHAKE_FLOORS) -> None:
        self.path = path
        self.capacity = capacity
        self.write_errors = 0
        self._floors = self._read()

    def __len__(self) -> int:
        return len(self._floors)

    def get(self, key: bytes) -> int | None:
        return self._floors.get(key)

    def raise_to(self, key: bytes, timestamp: int) -> None:
        floor = self._floors.get(key)
        if floor is not None and floor >= timestamp:
            return
        self._floors[key] = timestamp
        try:
            with locked(self.path):
                merged = self._read() if self.path.exists() else {}
                for k, ts in self._floors.items():
                    if ts > merged.get(k, -1):
                        merged[k] = ts
                self._floors = self._bounded(merged)
                self._write(self._floors)
        except (OSError, KeyStoreError):
            self.write_errors += 1
            self._floors = self._bounded(self._floors)

    def _bounded(self, floors: dict[bytes, int]) -> dict[bytes, int]:
        if len(floors) <= self.capacity:
            return floors
        kept = sorted(floors.items(), key=lambda item: item[1])[-self.capacity :]
        return dict(kept)

    def _read(self) -> dict[bytes, int]:
        if not self.path.exists():
            return {}
        data = _read_private_json(self.path)
        entries = data.get("floors")
        if not isinstance(entries, dict):
            raise KeyStoreError(f"{self.path}: 'floors' is not a table")
        floors: dict[bytes, int] = {}
        for text, ts in entries.items():
            try:
                key = base64.b64decode(text, validate=True)
            except (binascii.Error, ValueError):
                raise KeyStoreError(f"{self.path}: a key is not base64") from None
            if len(key) != DHLEN or not isinstance(ts, int) or isinstance(ts, bool) or ts < 0:
                raise KeyStoreError(f"{self.path}: not a table of keys and timestamps")
            floors[key] = ts
        return self._bounded(floors)

    def _write(self, floors: dict[bytes, int]) -> None:
        document = {
            "version": FILE_VERSION,
            "floors": {base64.b64encode(k).decode("ascii"): ts for k, ts in floors.items()},
        }
        write_private_file(self.path, json.dumps(document, sort_keys=True).encode("ascii"))
