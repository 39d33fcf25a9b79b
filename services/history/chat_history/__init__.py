"""The history format (docs/HISTORY.md): one JSON object per line, one line per event a client
wants judged, and the writer the client appends with.

* :class:`RecordBuilder` makes the records (plain dicts, the exact keys of the format) from the
  client's name, its incarnation and two clocks; it does no I/O, so a simulated run
  (:mod:`chat_check.synth`) builds its records with the same code as the real client.
* :class:`HistoryWriter` appends them to a file: one ``write(2)`` per record, so a client killed
  with SIGKILL leaves at most its last line torn.
* :func:`parse_record` turns one decoded line back into a typed, immutable record, or raises
  :class:`MalformedRecord` naming what is wrong. The checker validates with the same schema.
"""

from __future__ import annotations

import hashlib
import json
import os
import secrets
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from enum import StrEnum
from types import TracebackType
from typing import Final

Clock = Callable[[], float]
RawRecord = dict[str, object]


class Event(StrEnum):
    """The ``"event"`` field of a record."""

    SEND = "send"
    DELIVERED = "delivered"
    NOT_DELIVERED = "not_delivered"
    SHOWN = "shown"
    SIGNED_IN = "signed_in"
    SIGNED_OUT = "signed_out"
    EXIT = "exit"


class Reason(StrEnum):
    """Suggested ``reason`` codes of ``not_delivered`` (the set is open: any short snake_case
    code is accepted; the checker treats every reason alike)."""

    NO_SUCH_USER = "no_such_user"
    TIMEOUT = "timeout"
    SIGNED_OUT = "signed_out"
    SERVER_LOST = "server_lost"
    SERVER_SHUTDOWN = "server_shutdown"
    KEY_CHANGED = "key_changed"
    TOO_LARGE = "too_large"
    REFUSED = "refused"


# --- the schema: the fields each event carries, besides the common ones --------------------------

NUMBER: Final = "number"
STRING: Final = "string"
INT: Final = "int"

COMMON_FIELDS: Final[tuple[tuple[str, str], ...]] = (
    ("client", STRING),
    ("incarnation", STRING),
    ("mono", NUMBER),
    ("wall", NUMBER),
)
EVENT_FIELDS: Final[dict[str, tuple[tuple[str, str], ...]]] = {
    Event.SEND: (("id", STRING), ("to", STRING), ("digest", STRING), ("bytes", INT)),
    Event.DELIVERED: (("id", STRING), ("to", STRING)),
    Event.NOT_DELIVERED: (("id", STRING), ("to", STRING), ("reason", STRING), ("text", STRING)),
    Event.SHOWN: (("from", STRING), ("id", STRING), ("digest", STRING)),
    Event.SIGNED_IN: (),
    Event.SIGNED_OUT: (),
    Event.EXIT: (("code", INT),),
}
"""Keys are the plain strings (``Event`` members hash and compare as their values)."""


class MalformedRecord(ValueError):
    """A decoded line is not a record of the format (the message says which field is wrong)."""


def _type_ok(value: object, kind: str) -> bool:
    t = type(value)
    if kind == STRING:
        return t is str and value != ""
    if kind == INT:
        return t is int
    return t is float or t is int


def schema_error(obj: object) -> str | None:
    """Why ``obj`` (one decoded line) is not a record of the format, or ``None`` if it is one.

    Strings must be non-empty, numbers are JSON numbers (not booleans); unknown extra keys are
    allowed (later versions may add some)."""
    if type(obj) is not dict:
        return "not a JSON object"
    event = obj.get("event")
    fields = EVENT_FIELDS.get(event) if type(event) is str else None
    if fields is None:
        return f"unknown event {event!r}"
    for key, kind in COMMON_FIELDS:
        if not _type_ok(obj.get(key), kind):
            return f"{event}: field {key!r} missing or not a {kind}"
    for key, kind in fields:
        if not _type_ok(obj.get(key), kind):
            return f"{event}: field {key!r} missing or not a {kind}"
    return None


# --- message ids and digests ----------------------------------------------------------------


def new_incarnation() -> str:
    """A fresh random incarnation (for a client that has no session id of its own)."""
    return secrets.token_hex(8)


def incarnation_of(session: int) -> str:
    """The incarnation string of a protocol session id: lower-case hex, no padding. The sender
    (its own session) and the receiver (the session a message arrived on) must both use this."""
    return format(session, "x")


def message_id(incarnation: str, seq: int) -> str:
    """``"<incarnation>.<seq>"``: unique per sender, stable across retransmissions."""
    return f"{incarnation}.{seq}"


def parse_message_id(mid: str) -> tuple[str, int] | None:
    """``(incarnation, seq)`` of a message id, or ``None`` if it is not of the form."""
    inc, dot, seq = mid.rpartition(".")
    if not dot or not inc or not seq.isdecimal() or not seq.isascii():
        return None
    return inc, int(seq)


def text_digest(text: str) -> str:
    """Hex SHA-256 of the message text as UTF-8 (lone surrogates passed through, so every ``str``
    has a digest). The sender digests what it sent, the receiver what it received, before any
    escaping for display."""
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()


def _printable(text: str) -> str:
    """``text`` made encodable as UTF-8 (lone surrogates replaced), for the free-text field."""
    return text.encode("utf-8", "replace").decode("utf-8")


# --- building and writing -------------------------------------------------------------------


class RecordBuilder:
    """Makes the records of one client incarnation. No I/O; the clocks are injected."""

    __slots__ = ("client", "clock", "incarnation", "wall")

    def __init__(
        self,
        *,
        client: str,
        incarnation: str,
        clock: Clock = time.monotonic,
        wall: Clock = time.time,
    ) -> None:
        if not client or not incarnation:
            raise ValueError("client and incarnation must be non-empty")
        self.client = client
        self.incarnation = incarnation
        self.clock = clock
        self.wall = wall

    def _base(self, event: Event) -> RawRecord:
        return {
            "event": str(event),
            "client": self.client,
            "incarnation": self.incarnation,
            "mono": self.clock(),
            "wall": self.wall(),
        }

    def send(self, mid: str, to: str, text: str) -> RawRecord:
        r = self._base(Event.SEND)
        r["id"] = mid
        r["to"] = to
        r["digest"] = text_digest(text)
        r["bytes"] = len(text.encode("utf-8", "surrogatepass"))
        return r

    def delivered(self, mid: str, to: str) -> RawRecord:
        r = self._base(Event.DELIVERED)
        r["id"] = mid
        r["to"] = to
        return r

    def not_delivered(self, mid: str, to: str, reason: str, text: str) -> RawRecord:
        r = self._base(Event.NOT_DELIVERED)
        r["id"] = mid
        r["to"] = to
        r["reason"] = str(reason)
        r["text"] = _printable(text) or str(reason)
        return r

    def shown(self, sender: str, mid: str, text: str) -> RawRecord:
        r = self._base(Event.SHOWN)
        r["from"] = sender
        r["id"] = mid
        r["digest"] = text_digest(text)
        return r

    def signed_in(self) -> RawRecord:
        return self._base(Event.SIGNED_IN)

    def signed_out(self) -> RawRecord:
        return self._base(Event.SIGNED_OUT)

    def exit(self, code: int) -> RawRecord:
        r = self._base(Event.EXIT)
        r["code"] = int(code)
        return r


def encode_record(record: Mapping[str, object]) -> bytes:
    """One line of the format: compact JSON, UTF-8, ending in a newline."""
    return (json.dumps(record, ensure_ascii=False, separators=(",", ":")) + "\n").encode("utf-8")


class HistoryWriter:
    """Appends one client incarnation's records to ``path`` (created if missing).

    The file is opened in append mode, unbuffered: every record is one ``write(2)`` of one whole
    line, so nothing sits in a user-space buffer and a SIGKILL tears at most the line being
    written. Several incarnations may append to the same file one after another; if the file does
    not end in a newline (the previous writer was killed mid-line), a newline is written first so
    that torn line stays alone. ``OSError`` from opening or writing propagates: a history with
    records silently missing would make the checker report violations that did not happen.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        client: str,
        incarnation: str,
        clock: Clock = time.monotonic,
        wall: Clock = time.time,
    ) -> None:
        self.records = RecordBuilder(client=client, incarnation=incarnation, clock=clock, wall=wall)
        self.path = os.fspath(path)
        self._file = open(self.path, "a+b", buffering=0)  # noqa: SIM115 (closed by close())
        try:
            size = self._file.seek(0, os.SEEK_END)
            if size:
                self._file.seek(size - 1)
                if self._file.read(1) != b"\n":
                    self._write(b"\n")
        except BaseException:
            self._file.close()
            raise

    def _write(self, data: bytes) -> None:
        view = memoryview(data)
        while view:
            n = self._file.write(view)
            if n is None:  # only for non-blocking files, which this is not
                raise BlockingIOError("history file would block")
            view = view[n:]

    def write(self, record: Mapping[str, object]) -> None:
        """Append one record (a dict of the format) as one line."""
        self._write(encode_record(record))

    def send(self, mid: str, to: str, text: str) -> None:
        self.write(self.records.send(mid, to, text))

    def delivered(self, mid: str, to: str) -> None:
        self.write(self.records.delivered(mid, to))

    def not_delivered(self, mid: str, to: str, reason: str, text: str) -> None:
        self.write(self.records.not_delivered(mid, to, reason, text))

    def shown(self, sender: str, mid: str, text: str) -> None:
        self.write(self.records.shown(sender, mid, text))

    def signed_in(self) -> None:
        self.write(self.records.signed_in())

    def signed_out(self) -> None:
        self.write(self.records.signed_out())

    def exit(self, code: int) -> None:
        self.write(self.records.exit(code))

    def close(self) -> None:
        self._file.close()

    @property
    def closed(self) -> bool:
        return self._file.closed

    def __enter__(self) -> HistoryWriter:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


# --- the typed model ---------------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True, slots=True)
class Record:
    client: str
    incarnation: str
    mono: float
    """Seconds on the client process's monotonic clock (comparable within one incarnation)."""
    wall: float
    """``time.time()`` when the record was written (comparable across clients, roughly)."""


@dataclass(frozen=True, kw_only=True, slots=True)
class Send(Record):
    id: str
    to: str
    digest: str
    bytes: int


@dataclass(frozen=True, kw_only=True, slots=True)
class Delivered(Record):
    id: str
    to: str


@dataclass(frozen=True, kw_only=True, slots=True)
class NotDelivered(Record):
    id: str
    to: str
    reason: str
    text: str


@dataclass(frozen=True, kw_only=True, slots=True)
class Shown(Record):
    sender: str
    """The ``"from"`` field."""
    id: str
    digest: str


@dataclass(frozen=True, kw_only=True, slots=True)
class SignedIn(Record):
    pass


@dataclass(frozen=True, kw_only=True, slots=True)
class SignedOut(Record):
    pass


@dataclass(frozen=True, kw_only=True, slots=True)
class Exit(Record):
    code: int


AnyRecord = Send | Delivered | NotDelivered | Shown | SignedIn | SignedOut | Exit


def parse_record(obj: object) -> AnyRecord:
    """The typed record of one decoded line; :class:`MalformedRecord` if it is not one."""
    err = schema_error(obj)
    if err is not None:
        raise MalformedRecord(err)
    assert isinstance(obj, dict)
    common = {
        "client": obj["client"],
        "incarnation": obj["incarnation"],
        "mono": float(obj["mono"]),
        "wall": float(obj["wall"]),
    }
    match obj["event"]:
        case Event.SEND:
            return Send(**common, id=obj["id"], to=obj["to"], digest=obj["digest"],
                        bytes=obj["bytes"])  # fmt: skip
        case Event.DELIVERED:
            return Delivered(**common, id=obj["id"], to=obj["to"])
        case Event.NOT_DELIVERED:
            return NotDelivered(**common, id=obj["id"], to=obj["to"], reason=obj["reason"],
                                text=obj["text"])  # fmt: skip
        case Event.SHOWN:
            return Shown(**common, sender=obj["from"], id=obj["id"], digest=obj["digest"])
        case Event.SIGNED_IN:
            return SignedIn(**common)
        case Event.SIGNED_OUT:
            return SignedOut(**common)
        case _:
            return Exit(**common, code=obj["code"])


def record_to_dict(record: AnyRecord) -> RawRecord:
    """The line's dict of a typed record (the inverse of :func:`parse_record`)."""
    event = {
        Send: Event.SEND,
        Delivered: Event.DELIVERED,
        NotDelivered: Event.NOT_DELIVERED,
        Shown: Event.SHOWN,
        SignedIn: Event.SIGNED_IN,
        SignedOut: Event.SIGNED_OUT,
        Exit: Event.EXIT,
    }[type(record)]
    out: RawRecord = {
        "event": str(event),
        "client": record.client,
        "incarnation": record.incarnation,
        "mono": record.mono,
        "wall": record.wall,
    }
    for key, _kind in EVENT_FIELDS[event]:
        out[key] = getattr(record, "sender" if key == "from" else key)
    return out
