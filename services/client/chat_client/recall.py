"""The lines a user typed at the prompt, kept across runs: Up and Down recall them.

One file per user in the home, ``typed/NAME.jsonl`` (the directory 0700, the file 0600): one JSON
string per line, oldest first. It holds at most :data:`KEEP_LINES` lines and
:data:`KEEP_BYTES` bytes: when it grows past twice either, it is rewritten (to a temporary
file, then renamed) with the newest that fit. A line that is not a JSON string (a damaged or
hand-edited file) is skipped; a file that cannot be read or written gives one warning, and the
prompt goes on without history. This is not ``--history FILE`` (the record of what was sent and
shown, docs/HISTORY.md).
"""

from __future__ import annotations

import contextlib
import json
import os
from collections import deque
from collections.abc import Callable, Iterable
from pathlib import Path

from prompt_toolkit.history import History

KEEP_LINES = 1000
"""Typed lines kept per user."""
KEEP_BYTES = 1 << 20
"""Bytes of the file kept per user (a typed line holds at most 64 Ki characters)."""
READ_BYTES = 4 * KEEP_BYTES
"""Of a larger file (written by something else), only the end is read."""


def recall_path(home: Path, user: str) -> Path:
    return home / "typed" / f"{user.lower()}.jsonl"


def _parse(raw: bytes) -> list[str]:
    lines: list[str] = []
    for row in raw.split(b"\n"):
        try:
            value = json.loads(row)
        except ValueError:
            continue
        if isinstance(value, str) and value:
            lines.append(value)
    return lines[-KEEP_LINES:]


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def _encode(line: str) -> bytes:
    return json.dumps(line).encode("ascii") + b"\n"


class TypedLines(History):
    """prompt_toolkit history backed by :func:`recall_path`. ``warn`` is told, once, why the
    file cannot be used."""

    def __init__(self, path: Path, warn: Callable[[str], None]) -> None:
        super().__init__()
        self.path = path
        self._warn = warn
        self._broken = False
        self._kept: deque[bytes] = deque()
        self._size = 0

    def _fail(self, what: str, exc: OSError) -> None:
        if not self._broken:
            self._broken = True
            self._warn(f"cannot {what} the typed-line history {self.path}: {exc.strerror or exc}")

    def load_history_strings(self) -> Iterable[str]:
        """Newest first (prompt_toolkit's order)."""
        try:
            with open(self.path, "rb") as f:
                size = os.fstat(f.fileno()).st_size
                if size > READ_BYTES:
                    f.seek(size - READ_BYTES)
                raw = f.read(READ_BYTES)
        except FileNotFoundError:
            return []
        except OSError as exc:
            self._fail("read", exc)
            return []
        lines = _parse(raw)
        self._kept = deque(_encode(line) for line in lines)
        self._size = len(raw)
        return list(reversed(lines))

    def store_string(self, string: str) -> None:
        if self._broken or not string.strip():
            return
        row = _encode(string)
        self._kept.append(row)
        self._size += len(row)
        try:
            self.path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            if len(self._kept) > 2 * KEEP_LINES or self._size > 2 * KEEP_BYTES:
                self._rewrite()
                return
            fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW, 0o600)
            try:
                os.fchmod(fd, 0o600)
                _write_all(fd, row)
            finally:
                os.close(fd)
        except OSError as exc:
            self._fail("write", exc)

    def _rewrite(self) -> None:
        """Keep the newest lines within both bounds."""
        kept: deque[bytes] = deque()
        size = 0
        for row in reversed(self._kept):
            if len(kept) == KEEP_LINES or size + len(row) > KEEP_BYTES:
                break
            kept.appendleft(row)
            size += len(row)
        tmp = self.path.with_name(self.path.name + ".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
        try:
            os.fchmod(fd, 0o600)
            _write_all(fd, b"".join(kept))
        finally:
            os.close(fd)
        try:
            os.replace(tmp, self.path)
        except OSError:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise
        self._kept, self._size = kept, size
