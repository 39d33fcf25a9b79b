"""The history checker: reads the histories of every client of a run and judges them against the
README's promise. The verdicts are defined in docs/HISTORY.md; this module is that definition in
code.

One pass over the lines builds a table of messages (keyed by sender name and message id) and, per
client incarnation, the list of its ``shown`` records in file order; a second pass over those
tables gives every verdict. Both are linear in the number of records (dict look-ups only); the
one sort is of the latencies, for the percentiles.

Use :class:`Checker` (``add_file`` / ``add_lines`` / ``add_records``, then ``report()``) or
:func:`check_paths`.
"""

from __future__ import annotations

import contextlib
import errno
import gc
import math
import os
import stat
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO, Final

from chat_history import Event, schema_error

try:  # orjson parses several times faster; json is the fallback
    import orjson

    _loads: Callable[[bytes | str], Any] = orjson.loads
except ImportError:  # pragma: no cover - depends on the environment
    import json

    _loads = json.loads

_RECORD_START: Final = (b"{", "{")
"""How every record's line begins (one JSON object): what a torn line's first byte is."""

# --- verdict names (docs/HISTORY.md) -------------------------------------------------------------

LOST: Final = "lost"
SILENTLY_LOST: Final = "silently_lost"
DUPLICATED: Final = "duplicated"
PHANTOM: Final = "phantom"
OUT_OF_ORDER: Final = "out_of_order"
UNREPORTED_AT_EXIT: Final = "unreported_at_exit"
MALFORMED: Final = "malformed"
VIOLATIONS: Final = (
    LOST,
    SILENTLY_LOST,
    DUPLICATED,
    PHANTOM,
    OUT_OF_ORDER,
    UNREPORTED_AT_EXIT,
    MALFORMED,
)

NEVER_SENT: Final = "never_sent"
ALTERED: Final = "altered"
WRONG_RECEIVER: Final = "wrong_receiver"
PHANTOM_SUBKINDS: Final = (NEVER_SENT, ALTERED, WRONG_RECEIVER)

INFO: Final = (
    "messages",
    "shown",
    "delivered",
    "not_delivered",
    "recovered",
    "crashed_unresolved",
    "torn_lines",
)

DEFAULT_EXAMPLES: Final = 3
PERCENTILES: Final = (50, 90, 99)

_DELIVERED: Final = str(Event.DELIVERED)
_NOT_DELIVERED: Final = str(Event.NOT_DELIVERED)
_EXIT: Final = str(Event.EXIT)


class _Inc:
    """One client incarnation: a run of one client process."""

    __slots__ = ("client", "exit_code", "first_wall", "incarnation", "last_event", "name", "order",
                 "records", "shown", "source")  # fmt: skip

    def __init__(self, client: str, incarnation: str, order: int, source: int, wall: float):
        self.client = client
        self.name = client.casefold()
        self.incarnation = incarnation
        self.order = order
        self.source = source
        self.first_wall = wall
        self.last_event = ""
        self.exit_code: int | None = None
        self.records = 0
        # (sender casefolded, id, digest, wall, source, line) of each shown record, in file order
        self.shown: list[tuple[str, str, str, float, int, int]] = []

    @property
    def crashed(self) -> bool:
        """Its last record is not ``exit``: the process died (or is still running)."""
        return self.last_event != _EXIT


class _Msg:
    """One ``send`` record and what became of it."""

    __slots__ = ("digest", "id", "inc", "line", "outcome", "outcome_wall", "reason", "seq",
                 "shown", "shown_wall", "source", "to", "to_cf", "wall")  # fmt: skip

    def __init__(self, inc: _Inc, mid: str, seq: int, to: str, digest: str, wall: float,
                 source: int, line: int):  # fmt: skip
        self.inc = inc
        self.id = mid
        self.seq = seq
        self.to = to
        self.to_cf = to.casefold()
        self.digest = digest
        self.wall = wall
        self.source = source
        self.line = line
        self.outcome = ""
        self.outcome_wall = 0.0
        self.reason = ""
        self.shown = 0
        """Times shown to its receiver (phantom showings elsewhere do not count)."""
        self.shown_wall = 0.0


# --- the report ---------------------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True, slots=True)
class Latency:
    """Send → first shown, in seconds of wall clock (the two records come from two processes)."""

    n: int
    p50: float
    p90: float
    p99: float
    max: float

    def to_json(self) -> dict[str, float | int]:
        return {"n": self.n, "p50": self.p50, "p90": self.p90, "p99": self.p99, "max": self.max}


@dataclass(frozen=True, kw_only=True, slots=True)
class Report:
    counts: dict[str, int]
    """Every violation kind (:data:`VIOLATIONS`) → how many; ``phantom`` is the sum of its
    subkinds."""
    phantom: dict[str, int]
    """Every phantom subkind → how many."""
    examples: dict[str, list[dict[str, object]]]
    """``kind`` or ``phantom/subkind`` → up to ``max_examples`` examples."""
    info: dict[str, int]
    latency: Latency | None
    files: int
    records: int
    clients: int
    incarnations: int
    crashed: list[str] = field(default_factory=list)
    """``client/incarnation`` of each incarnation whose last record is not ``exit``."""

    @property
    def violations(self) -> int:
        return sum(self.counts.values())

    @property
    def ok(self) -> bool:
        return self.violations == 0

    def violation_counts(self) -> dict[str, int]:
        """The non-zero verdicts, phantom split by subkind: ``{"phantom/altered": 1, ...}``."""
        out = {k: v for k, v in self.counts.items() if v and k != PHANTOM}
        out.update({f"{PHANTOM}/{k}": v for k, v in self.phantom.items() if v})
        return out

    def to_json(self) -> dict[str, object]:
        violations: dict[str, object] = {}
        for kind in VIOLATIONS:
            entry: dict[str, object] = {"count": self.counts[kind]}
            if kind == PHANTOM:
                entry["subkinds"] = dict(self.phantom)
                entry["examples"] = [
                    ex
                    for sub in PHANTOM_SUBKINDS
                    for ex in self.examples.get(f"{PHANTOM}/{sub}", [])
                ]
            else:
                entry["examples"] = self.examples.get(kind, [])
            violations[kind] = entry
        return {
            "ok": self.ok,
            "violation_count": self.violations,
            "violations": violations,
            "info": dict(self.info),
            "latency_s": self.latency.to_json() if self.latency else None,
            "inputs": {
                "files": self.files,
                "records": self.records,
                "clients": self.clients,
                "incarnations": self.incarnations,
                "crashed": list(self.crashed),
            },
        }

    def format(self) -> str:
        """The human report (what ``chat-check`` prints without ``--json``)."""
        i = self.info
        lines = [
            f"{self.files} files, {self.records:,} records, {self.clients} clients, "
            f"{self.incarnations} incarnations ({len(self.crashed)} ended without exit)",
            f"{i['messages']:,} messages: {i['delivered']:,} delivered, "
            f"{i['not_delivered']:,} not delivered, {i['shown']:,} shown",
        ]
        if self.latency is None:
            lines.append("latency send -> shown: no message shown")
        else:
            lat = self.latency
            lines.append(
                f"latency send -> shown (wall clocks): p50 {_dur(lat.p50)}, p90 {_dur(lat.p90)}, "
                f"p99 {_dur(lat.p99)}, max {_dur(lat.max)} (n={lat.n:,})"
            )
        for kind in VIOLATIONS:
            count = self.counts[kind]
            head = f"{kind + ':':<20}{count:>9,}"
            if kind == PHANTOM:
                head += (
                    "  (" + ", ".join(f"{s} {self.phantom[s]:,}" for s in PHANTOM_SUBKINDS) + ")"
                )
                keys = [f"{PHANTOM}/{s}" for s in PHANTOM_SUBKINDS]
            else:
                keys = [kind]
            lines.append(head)
            for key in keys:
                for ex in self.examples.get(key, []):
                    lines.append("    " + _describe(key, ex))
        lines.append(
            "info: "
            + ", ".join(f"{k} {i[k]:,}" for k in ("recovered", "crashed_unresolved", "torn_lines"))
        )
        n = self.violations
        lines.append("OK: no violations" if n == 0 else f"FAIL: {n:,} violation{'s' * (n != 1)}")
        return "\n".join(lines)


def _dur(seconds: float) -> str:
    a = abs(seconds)
    if a < 1e-3:
        return f"{seconds * 1e6:.0f} µs"
    if a < 1:
        return f"{seconds * 1e3:.1f} ms"
    return f"{seconds:.2f} s"


def _describe(key: str, ex: Mapping[str, object]) -> str:
    parts = [f"{key}:"]
    if "id" in ex:
        parts.append(f"{ex.get('from')}->{ex.get('to')} {ex['id']}")
    if "at" in ex:
        parts.append(f"at {ex['at']}")
    parts.append(f"({ex['detail']})")
    return " ".join(parts)


@contextlib.contextmanager
def _no_gc() -> Iterator[None]:
    """The cyclic collector off while records pile up: they hold no cycles, and collections of
    an ever larger young heap would cost about a third of the loading time."""
    was = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was:
            gc.enable()


def _percentile(sorted_values: list[float], p: float) -> float:
    """Nearest rank: the smallest value with at least p % of the values at or below it."""
    k = max(1, math.ceil(p / 100 * len(sorted_values)))
    return sorted_values[k - 1]


# --- the checker --------------------------------------------------------------------------------


class Checker:
    """Feed it every history of a run, then ask for the :class:`Report`."""

    def __init__(self, *, max_examples: int = DEFAULT_EXAMPLES) -> None:
        self.max_examples = max_examples
        self._sources: list[str] = []
        self._incs: dict[tuple[str, str], _Inc] = {}
        self._msgs: dict[tuple[str, str], _Msg] = {}
        # (incarnation, delivered?, id, to, reason, wall, source, line) of each outcome record
        self._outcomes: list[tuple[_Inc, bool, str, str, str, float, int, int]] = []
        self._records = 0
        self._counts = dict.fromkeys(VIOLATIONS, 0)
        self._phantom = dict.fromkeys(PHANTOM_SUBKINDS, 0)
        self._examples: dict[str, list[dict[str, object]]] = {}
        self._info = dict.fromkeys(INFO, 0)
        self._judged = False
        self._latencies: list[float] = []
        self._n_shown = 0
        self._last_client = ""
        self._last_incarnation = ""
        self._last_inc = _Inc("-", "-", -1, -1, 0.0)  # never matched: names are non-empty

    # --- input ------------------------------------------------------------------------------

    def add_file(self, path: str | os.PathLike[str]) -> None:
        """Read one history file (``OSError`` propagates; :class:`NotAHistory` if it is not a
        regular file: a FIFO would block the read forever, a device never end).

        Opened without blocking and checked on the open descriptor, so a file swapped for a
        FIFO between :func:`history_files` and here is refused too."""
        with open_regular(path) as f:
            self.add_lines(f, os.fspath(path))

    def add_lines(self, lines: Iterable[bytes | str], source: str) -> None:
        """One file's lines, in order, as read (with or without their newlines).

        A line that is not JSON is *torn* (a writer killed mid-line) when it begins as a record
        does (``{``) and is the file's last line or the next record starts another incarnation;
        any other is ``malformed``, including a line nested too deep for the JSON decoder (no
        record nests: it is never torn, and the decoder's ``RecursionError`` is caught)."""
        with _no_gc():
            self._add_lines(lines, self._source(source))

    def _add_lines(self, lines: Iterable[bytes | str], src: int) -> None:
        loads = _loads
        add = self._add
        pending: tuple[int, str] | None = None  # a line that did not parse, not yet judged
        prev: _Inc | None = None
        lineno = 0
        for raw in lines:
            lineno += 1
            if raw.isspace() or not raw:
                continue
            try:
                obj = loads(raw)
            except (ValueError, RecursionError) as e:
                if pending is not None:
                    self._malformed(src, pending[0], pending[1])
                    pending = None
                detail = f"not JSON: {e}"
                if raw[:1] in _RECORD_START and not isinstance(e, RecursionError):
                    pending = (lineno, detail)  # perhaps a record cut short: judged below
                else:  # no prefix of a record (none nests): never torn
                    self._malformed(src, lineno, detail)
                continue
            inc = add(obj, src, lineno)
            if pending is not None:
                if inc is not None and inc is not prev:
                    self._info["torn_lines"] += 1
                else:
                    self._malformed(src, pending[0], pending[1])
                pending = None
            if inc is not None:
                prev = inc
        if pending is not None:
            self._info["torn_lines"] += 1

    def add_records(self, records: Iterable[Mapping[str, object]], source: str) -> None:
        """Already-decoded records of one file, in order (for tests and simulations)."""
        src = self._source(source)
        with _no_gc():
            for lineno, obj in enumerate(records, 1):
                self._add(obj, src, lineno)

    def _source(self, name: str) -> int:
        if self._judged:
            raise RuntimeError("report() was already called")
        self._sources.append(name)
        return len(self._sources) - 1

    def _add(self, obj: Any, src: int, line: int) -> _Inc | None:
        """Take one decoded record; its incarnation, or None if it was malformed.

        The hot loop of the checker: the fields are checked inline (the same rules as
        :func:`chat_history.schema_error`, which names the fault once one is found), and
        the event names are literals (the values of :class:`~chat_history.Event`)."""
        self._records += 1
        try:
            if type(obj) is not dict and not isinstance(obj, Mapping):
                raise TypeError
            ev = obj["event"]
            client = obj["client"]
            incarnation = obj["incarnation"]
            wall = obj["wall"]
            tm = type(obj["mono"])
        except (KeyError, TypeError):
            return self._schema(obj, src, line)
        tw = type(wall)
        if (
            type(client) is not str
            or type(incarnation) is not str
            or not client
            or not incarnation
            or (tw is not float and tw is not int)
            or (tm is not float and tm is not int)
        ):
            return self._schema(obj, src, line)
        if incarnation == self._last_incarnation and client == self._last_client:
            inc = self._last_inc
        else:
            inc = self._incarnation(client, incarnation, src, wall)
        try:
            if ev == "shown":
                sender = obj["from"]
                mid = obj["id"]
                digest = obj["digest"]
                if type(sender) is not str or type(mid) is not str or type(digest) is not str:
                    raise TypeError
                if not sender or not mid or not digest:
                    raise TypeError
                inc.shown.append((sender.casefold(), mid, digest, wall, src, line))
                self._n_shown += 1
            elif ev == "send":
                mid = obj["id"]
                to = obj["to"]
                digest = obj["digest"]
                if type(mid) is not str or type(to) is not str or type(digest) is not str:
                    raise TypeError
                if type(obj["bytes"]) is not int or not to or not digest:
                    raise TypeError
                head, _dot, seq = mid.rpartition(".")
                if head != incarnation or not seq.isdecimal() or not seq.isascii():
                    detail = f"send id {mid!r} is not '<incarnation>.<seq>' of its incarnation"
                    return self._malformed(src, line, detail)
                mkey = (inc.name, mid)
                if mkey in self._msgs:
                    return self._malformed(src, line, f"message id {mid!r} sent twice")
                self._msgs[mkey] = _Msg(inc, mid, int(seq), to, digest, wall, src, line)
            elif ev == "delivered" or ev == "not_delivered":
                mid = obj["id"]
                to = obj["to"]
                if type(mid) is not str or type(to) is not str or not mid or not to:
                    raise TypeError
                delivered = ev == "delivered"
                if delivered:
                    reason = ""
                else:
                    reason = obj["reason"]
                    text = obj["text"]
                    if type(reason) is not str or type(text) is not str or not reason or not text:
                        raise TypeError
                self._outcomes.append((inc, delivered, mid, to, reason, wall, src, line))
            elif ev == "exit":
                code = obj["code"]
                if type(code) is not int:
                    raise TypeError
                inc.exit_code = code
            elif ev != "signed_in" and ev != "signed_out":
                raise TypeError
        except (KeyError, TypeError):
            return self._schema(obj, src, line)
        inc.last_event = ev
        inc.records += 1
        return inc

    def _incarnation(self, client: str, incarnation: str, src: int, wall: float) -> _Inc:
        key = (client.casefold(), incarnation)
        inc = self._incs.get(key)
        if inc is None:
            inc = self._incs[key] = _Inc(client, incarnation, len(self._incs), src, wall)
        self._last_client = client
        self._last_incarnation = incarnation
        self._last_inc = inc
        return inc

    # --- findings ---------------------------------------------------------------------------

    def _where(self, src: int, line: int) -> str:
        return f"{self._sources[src]}:{line}"

    def _schema(self, obj: object, src: int, line: int) -> _Inc | None:
        return self._malformed(src, line, schema_error(obj) or "not a record")

    def _malformed(self, src: int, line: int, detail: str) -> _Inc | None:
        """Count a malformed line; None (what :meth:`_add` returns for it)."""
        self._violation(MALFORMED, {"at": self._where(src, line), "detail": detail})
        return None

    def _violation(self, kind: str, example: dict[str, object], subkind: str = "") -> None:
        self._counts[kind] += 1
        key = kind
        if subkind:
            self._phantom[subkind] += 1
            key = f"{kind}/{subkind}"
        shown = self._examples.setdefault(key, [])
        if len(shown) < self.max_examples:
            shown.append(example)

    def _msg_example(self, m: _Msg, detail: str, **extra: object) -> dict[str, object]:
        ex: dict[str, object] = {
            "id": m.id,
            "from": m.inc.client,
            "to": m.to,
            "at": self._where(m.source, m.line),
            "detail": detail,
        }
        ex.update(extra)
        return ex

    # --- judgement --------------------------------------------------------------------------

    def report(self) -> Report:
        """Judge everything fed so far (once; the checker takes no more input after)."""
        if not self._judged:
            self._judged = True
            with _no_gc():
                self._resolve_outcomes()
                self._judge_shown()
                self._latencies = self._judge_messages()
        lat = self._latencies
        incs = [i for i in self._incs.values() if i.records]  # not those of malformed lines only
        latency = None
        if lat:
            latency = Latency(
                n=len(lat),
                p50=_percentile(lat, 50),
                p90=_percentile(lat, 90),
                p99=_percentile(lat, 99),
                max=lat[-1],
            )
        return Report(
            counts=dict(self._counts),
            phantom=dict(self._phantom),
            examples={k: list(v) for k, v in self._examples.items()},
            info=dict(self._info),
            latency=latency,
            files=len(self._sources),
            records=self._records,
            clients=len({inc.name for inc in incs}),
            incarnations=len(incs),
            crashed=[f"{i.client}/{i.incarnation}" for i in incs if i.crashed],
        )

    def _resolve_outcomes(self) -> None:
        msgs = self._msgs
        for inc, delivered, mid, to, reason, wall, src, line in self._outcomes:
            m = msgs.get((inc.name, mid))
            if m is None or m.inc is not inc:
                self._malformed(
                    src, line, f"outcome for {mid!r}, which this incarnation never sent"
                )
            elif m.outcome:
                self._malformed(src, line, f"a second outcome for {mid!r}")
            else:
                if to.casefold() != m.to_cf:  # malformed, but the id says which message it is
                    detail = f"outcome for {mid!r} names {to!r}, its send {m.to!r}"
                    self._malformed(src, line, detail)
                m.outcome = _DELIVERED if delivered else _NOT_DELIVERED
                m.outcome_wall = wall
                m.reason = reason
        self._outcomes.clear()

    def _judge_shown(self) -> None:
        by_name: dict[str, list[_Inc]] = {}
        for inc in self._incs.values():
            if inc.shown:
                by_name.setdefault(inc.name, []).append(inc)
        msgs = self._msgs
        for name, incs in by_name.items():
            incs.sort(key=lambda i: (i.first_wall, i.order))
            highest: dict[_Inc, _Msg] = {}  # sender incarnation -> its highest seq shown here
            for inc in incs:
                for sender, mid, digest, wall, src, line in inc.shown:
                    m = msgs.get((sender, mid))
                    if m is None:
                        self._violation(
                            PHANTOM,
                            {"id": mid, "from": sender, "to": inc.client,
                             "at": self._where(src, line), "detail": f"{sender} never sent it"},
                            NEVER_SENT,
                        )  # fmt: skip
                    elif m.to_cf != name:
                        self._violation(
                            PHANTOM,
                            self._msg_example(m, f"shown to {inc.client} at "
                                              f"{self._where(src, line)}, sent to {m.to}"),
                            WRONG_RECEIVER,
                        )  # fmt: skip
                    elif m.shown:
                        m.shown += 1
                        self._violation(
                            DUPLICATED,
                            self._msg_example(m, f"shown again at {self._where(src, line)}"),
                        )
                    else:
                        m.shown = 1
                        m.shown_wall = wall
                        if digest != m.digest:
                            self._violation(
                                PHANTOM,
                                self._msg_example(m, f"text shown at {self._where(src, line)} "
                                                  "differs from the text sent"),
                                ALTERED,
                            )  # fmt: skip
                        top = highest.get(m.inc)
                        if top is not None and m.seq < top.seq:
                            self._violation(
                                OUT_OF_ORDER,
                                self._msg_example(m, f"shown at {self._where(src, line)} "
                                                  f"after {top.id}"),
                            )  # fmt: skip
                        else:
                            highest[m.inc] = m

    def _judge_messages(self) -> list[float]:
        latencies: list[float] = []
        info = self._info
        info["messages"] = len(self._msgs)
        info["shown"] = self._n_shown
        for m in self._msgs.values():
            if m.shown:
                latencies.append(m.shown_wall - m.wall)
            if m.outcome == _DELIVERED:
                info["delivered"] += 1
                if not m.shown:
                    self._violation(LOST, self._msg_example(m, "reported delivered, never shown"))
            elif m.outcome == _NOT_DELIVERED:
                info["not_delivered"] += 1
                if m.shown:
                    info["recovered"] += 1
            elif m.inc.crashed:
                info["crashed_unresolved"] += 1
            else:
                self._violation(
                    UNREPORTED_AT_EXIT,
                    self._msg_example(m, "no outcome before its sender's exit"
                                      + ("" if m.shown else ", never shown")),
                )  # fmt: skip
                if not m.shown:
                    self._violation(
                        SILENTLY_LOST,
                        self._msg_example(m, "never shown, no outcome, sender exited"),
                    )
        latencies.sort()
        return latencies

    def timeline(self) -> Iterator[tuple[float, str, float | None, float | None]]:
        """Per message, after :meth:`report`: (send wall, outcome or "", outcome wall or None,
        latency to first shown or None). For plots."""
        for m in self._msgs.values():
            yield (
                m.wall,
                m.outcome,
                m.outcome_wall if m.outcome else None,
                m.shown_wall - m.wall if m.shown else None,
            )


# --- files --------------------------------------------------------------------------------------


class NotAHistory(Exception):
    """A path named, or a ``*.jsonl`` found under a directory named, that is not a regular file
    (a FIFO, a socket, a device, a symbolic link that loops or leads nowhere). The message is one
    line that names the path and what it is. Refused rather than skipped: a history left out
    without a word would make its messages look lost, or hide them."""


def _kind(mode: int) -> str:
    """What a non-regular file of ``st_mode`` is, in words."""
    for test, name in (
        (stat.S_ISDIR, "a directory"),
        (stat.S_ISFIFO, "a FIFO"),
        (stat.S_ISSOCK, "a socket"),
        (stat.S_ISCHR, "a character device"),
        (stat.S_ISBLK, "a block device"),
    ):
        if test(mode):
            return name
    return "not a plain file"


def _regular(p: Path) -> bool:
    """Whether ``p`` is a regular file (through links); :class:`NotAHistory` if it is something
    else that exists, a symbolic link loop, or a dangling link; False if it is a directory."""
    try:
        mode = p.stat().st_mode
    except OSError as e:
        if not p.is_symlink():
            raise
        why = "a symbolic link loop" if e.errno == errno.ELOOP else "a dangling symbolic link"
        raise NotAHistory(f"{p}: not a regular file ({why})") from None
    if stat.S_ISREG(mode):
        return True
    if stat.S_ISDIR(mode):
        return False
    raise NotAHistory(f"{p}: not a regular file ({_kind(mode)})")


def open_regular(path: str | os.PathLike[str]) -> BinaryIO:
    """``path`` opened for reading in binary, if it is a regular file; :class:`NotAHistory`
    if it is not (``OSError`` if it cannot be opened). Opened without blocking and checked on
    the open descriptor: a FIFO is refused at once, never waited on, even one put in a
    file's place after it was listed."""
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    try:
        mode = os.fstat(fd).st_mode
        if not stat.S_ISREG(mode):
            raise NotAHistory(f"{os.fspath(path)}: not a regular file ({_kind(mode)})")
        os.set_blocking(fd, True)
        return open(fd, "rb")
    except BaseException:
        os.close(fd)
        raise


def history_files(paths: Iterable[str | os.PathLike[str]]) -> list[Path]:
    """Every file named, and every ``*.jsonl`` under every directory named (sorted), once each.

    ``FileNotFoundError`` for a path that does not exist; :class:`NotAHistory` for one, named or
    found, that is not a regular file (directories named ``*.jsonl`` are searched, not read)."""
    out: list[Path] = []
    seen: set[Path] = set()
    for p in map(Path, paths):
        if not p.exists() and not p.is_symlink():
            raise FileNotFoundError(f"no such file or directory: {p}")
        found = [p] if _regular(p) else [q for q in sorted(p.rglob("*.jsonl")) if _regular(q)]
        for q in found:
            r = q.resolve()
            if r not in seen:
                seen.add(r)
                out.append(q)
    return out


def check_paths(
    paths: Iterable[str | os.PathLike[str]], *, max_examples: int = DEFAULT_EXAMPLES
) -> tuple[Report, Checker]:
    """Check the histories under ``paths`` (see :func:`history_files`)."""
    checker = Checker(max_examples=max_examples)
    for path in history_files(paths):
        checker.add_file(path)
    return checker.report(), checker
