"""The history checker (chat_check): a valid simulated run passes, and every single mutation of it
-- an event deleted, duplicated, reordered, altered or forged -- is named exactly.

The valid histories come from chat_check.synth: six clients, delivered, not-delivered and
recovered messages, sends to unknown and case-variant names, a client killed and restarted into
the same file, another restarted into a second file. Each mutation test asserts the exact
verdicts, with their counts (``Report.violation_counts()``).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from chat_check.checker import (
    INFO,
    PHANTOM_SUBKINDS,
    VIOLATIONS,
    Checker,
    Report,
    check_paths,
    history_files,
)
from chat_check.synth import SimConfig, bulk_lines, simulate
from chat_history import (
    EVENT_FIELDS,
    Event,
    HistoryWriter,
    MalformedRecord,
    RawRecord,
    RecordBuilder,
    encode_record,
    incarnation_of,
    message_id,
    parse_message_id,
    parse_record,
    record_to_dict,
    schema_error,
    text_digest,
)
from labkit.util import import_or_unavailable, unavailable

Files = dict[str, list[RawRecord]]
SERVICES = Path(__file__).resolve().parents[2] / "services"
CHECK_PATH = os.pathsep.join(str(SERVICES / d) for d in ("check", "history"))
"""chat-check's import path: the checker and the history format, nothing of the product."""

seeds = st.integers(min_value=0, max_value=2**32 - 1)


def check(files: Files) -> Report:
    c = Checker()
    for name, records in files.items():
        c.add_records(records, name)
    return c.report()


def verdicts(files: Files) -> dict[str, int]:
    return check(files).violation_counts()


# --- an index of a history, to pick what to mutate ---------------------------------------------


@dataclass(frozen=True, order=True)
class Pos:
    file: str
    index: int


@dataclass
class Msg:
    id: str
    sender: str
    to: str
    send: Pos
    inc: tuple[str, str]
    outcome: Pos | None = None
    outcome_event: str = ""
    shown: list[Pos] = field(default_factory=list)


class Index:
    def __init__(self, files: Files) -> None:
        self.files = files
        self.msgs: dict[str, Msg] = {}
        self.first: dict[tuple[str, str], Pos] = {}
        self.last: dict[tuple[str, str], Pos] = {}
        self.shown_in: dict[tuple[str, str], list[Pos]] = {}
        later: list[tuple[Pos, RawRecord, tuple[str, str]]] = []
        for name, records in files.items():
            for i, r in enumerate(records):
                pos = Pos(name, i)
                inc = (str(r["client"]).casefold(), str(r["incarnation"]))
                self.first.setdefault(inc, pos)
                self.last[inc] = pos
                if r["event"] == "send":
                    self.msgs[str(r["id"])] = Msg(
                        id=str(r["id"]), sender=str(r["client"]), to=str(r["to"]), send=pos, inc=inc
                    )
                else:
                    later.append((pos, r, inc))
        for pos, r, inc in later:  # the sends of every file first
            ev = r["event"]
            if ev in ("delivered", "not_delivered"):
                m = self.msgs[str(r["id"])]
                m.outcome, m.outcome_event = pos, str(ev)
            elif ev == "shown":
                self.msgs[str(r["id"])].shown.append(pos)
                self.shown_in.setdefault(inc, []).append(pos)

    def rec(self, pos: Pos) -> RawRecord:
        return self.files[pos.file][pos.index]

    def shown(self) -> list[Pos]:
        """Where a message was shown, every place, in order."""
        return sorted(p for ps in self.shown_in.values() for p in ps)

    def exited(self, inc: tuple[str, str]) -> bool:
        return self.rec(self.last[inc])["event"] == "exit"

    def clients(self) -> list[str]:
        return sorted({name for name, _inc in self.last})

    def insert_range(self, inc: tuple[str, str], after: Pos | None = None) -> tuple[str, int, int]:
        """(file, lo, hi): an insertion index in lo..hi keeps the record inside ``inc``, after
        ``after``, and (if ``inc`` exited) before its ``exit``."""
        first, last = self.first[inc], self.last[inc]
        lo = first.index + 1 if after is None else after.index + 1
        hi = last.index if self.exited(inc) else last.index + 1
        return first.file, lo, max(lo, hi)


def indexed(seed: int) -> tuple[Files, Index]:
    """The history files of the simulated run ``seed``, and their index."""
    files = simulate(seed).files
    return files, Index(files)


def a_shown_record(seed: int, data: st.DataObject) -> tuple[Files, Index, Pos, RawRecord]:
    """The run ``seed``'s files and index, and one of its "shown" records, drawn (and where)."""
    files, idx = indexed(seed)
    pos = data.draw(st.sampled_from(idx.shown()))
    return files, idx, pos, idx.rec(pos)


def sorted_candidates(items: Iterator[Msg] | list[Msg]) -> list[Msg]:
    return sorted(items, key=lambda m: m.send)


def a_message(data: st.DataObject, idx: Index, keep: Callable[[Msg], object]) -> Msg:
    """One of the messages of ``idx`` that ``keep`` keeps, drawn."""
    return data.draw(st.sampled_from(sorted_candidates(m for m in idx.msgs.values() if keep(m))))


def delete(files: Files, *positions: Pos) -> None:
    for pos in sorted(positions, reverse=True):
        del files[pos.file][pos.index]


def digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


# --- the valid run -----------------------------------------------------------------------------


@given(seed=seeds)
def test_a_simulated_run_has_no_violations(seed: int) -> None:
    run = simulate(seed)
    report = check(run.files)
    assert report.violation_counts() == {}
    assert report.ok and report.violations == 0
    info = report.info
    assert info["messages"] == sum(r["event"] == "send" for rs in run.files.values() for r in rs)
    assert info["recovered"] >= 1  # the scripted opening has one
    assert info["crashed_unresolved"] >= 2  # the two sends just before the kill
    assert report.incarnations == len(SimConfig().clients) + 2  # a crash and a restart
    assert report.clients == len(SimConfig().clients)
    assert len(report.crashed) == 1 == len(run.crashed)
    assert (
        info["delivered"] + info["not_delivered"] + info["crashed_unresolved"] == info["messages"]
    )
    assert report.latency is not None and report.latency.n > 0


def test_the_simulation_is_deterministic_and_varied() -> None:
    assert simulate(7).files == simulate(7).files
    assert simulate(7).files != simulate(8).files
    run = simulate(7)
    assert "carol.jsonl" in run.files and "dave.2.jsonl" in run.files
    incs = {r["incarnation"] for r in run.files["carol.jsonl"]}
    assert len(incs) == 2  # killed and restarted into the same file


def test_a_simulated_run_without_faults_is_valid_too() -> None:
    run = simulate(1, SimConfig(crash=False, restart=False, p_timeout=0, p_recovered=0))
    report = check(run.files)
    assert report.ok and report.crashed == []
    assert report.info["recovered"] == 1  # only the scripted one


# --- mutations: delete --------------------------------------------------------------------------


@given(seed=seeds, data=st.data())
def test_deleting_the_shown_of_a_delivered_message_is_lost(seed: int, data: st.DataObject) -> None:
    files, idx = indexed(seed)
    m = a_message(data, idx, lambda m: m.outcome_event == "delivered" and m.shown)
    delete(files, m.shown[0])
    assert verdicts(files) == {"lost": 1}


@given(seed=seeds, data=st.data())
def test_deleting_the_outcome_and_the_shown_is_silently_lost_and_unreported(
    seed: int, data: st.DataObject
) -> None:
    files, idx = indexed(seed)
    m = a_message(data, idx, lambda m: m.outcome and m.shown and idx.exited(m.inc))
    assert m.outcome is not None
    delete(files, m.outcome, m.shown[0])
    assert verdicts(files) == {"unreported_at_exit": 1, "silently_lost": 1}


@given(seed=seeds, data=st.data())
def test_deleting_the_not_delivered_of_an_unshown_message_is_silently_lost(
    seed: int, data: st.DataObject
) -> None:
    files, idx = indexed(seed)
    m = a_message(
        data,
        idx,
        lambda m: m.outcome_event == "not_delivered" and not m.shown and idx.exited(m.inc),
    )
    assert m.outcome is not None
    delete(files, m.outcome)
    assert verdicts(files) == {"unreported_at_exit": 1, "silently_lost": 1}


@given(seed=seeds, data=st.data())
def test_deleting_the_outcome_of_a_shown_message_is_unreported_at_exit(
    seed: int, data: st.DataObject
) -> None:
    files, idx = indexed(seed)
    m = a_message(data, idx, lambda m: m.outcome and m.shown and idx.exited(m.inc))
    assert m.outcome is not None
    delete(files, m.outcome)
    assert verdicts(files) == {"unreported_at_exit": 1}


@given(seed=seeds, data=st.data())
def test_a_killed_incarnation_made_to_exit_reports_all_it_left_open(
    seed: int, data: st.DataObject
) -> None:
    """The crashed incarnation's open sends are info (crashed_unresolved); give it an ``exit``
    (and take away one of its ``delivered``, if it has one) and each becomes unreported_at_exit,
    and those never shown also silently_lost."""
    run = simulate(seed)
    files = run.files
    idx = Index(files)
    crashed = (run.crashed[0][0].casefold(), run.crashed[0][1])
    delivered = sorted_candidates(
        m for m in idx.msgs.values() if m.inc == crashed and m.outcome_event == "delivered"
    )
    victim = data.draw(st.sampled_from([None, *delivered]))
    last = idx.last[crashed]
    exit_record = RecordBuilder(
        client=run.crashed[0][0], incarnation=crashed[1], clock=lambda: 1e9, wall=lambda: 2e9
    ).exit(0)
    files[last.file].insert(last.index + 1, exit_record)
    if victim is not None:
        assert victim.outcome is not None
        delete(files, victim.outcome)
    open_ = [
        m for m in idx.msgs.values() if m.inc == crashed and (m.outcome is None or m is victim)
    ]
    unshown = [m for m in open_ if not m.shown]
    expected = {"unreported_at_exit": len(open_)}
    if unshown:
        expected["silently_lost"] = len(unshown)
    report = check(files)
    assert report.violation_counts() == expected
    assert report.crashed == []
    assert report.info["crashed_unresolved"] == 0


@given(seed=seeds, data=st.data())
def test_deleting_a_send_makes_its_shown_a_phantom_and_its_outcome_malformed(
    seed: int, data: st.DataObject
) -> None:
    files, idx = indexed(seed)
    m = data.draw(st.sampled_from(sorted_candidates(list(idx.msgs.values()))))
    delete(files, m.send)
    expected = {}
    if m.shown:
        expected["phantom/never_sent"] = len(m.shown)
    if m.outcome:
        expected["malformed"] = 1
    assert verdicts(files) == expected


@given(seed=seeds)
def test_deleting_an_exit_looks_like_a_kill_and_is_no_violation(seed: int) -> None:
    """A history that ends without ``exit`` is a crash: indistinguishable, so not a violation
    (every send of a clean incarnation was resolved, so nothing becomes crashed_unresolved)."""
    files, idx = indexed(seed)
    inc = next(i for i in sorted(idx.last) if idx.exited(i))
    delete(files, idx.last[inc])
    report = check(files)
    assert report.ok
    assert len(report.crashed) == 2


# --- mutations: duplicate, reorder ---------------------------------------------------------------


@given(seed=seeds, data=st.data())
def test_a_duplicated_shown_is_duplicated(seed: int, data: st.DataObject) -> None:
    files, idx, pos, rec = a_shown_record(seed, data)
    inc = (str(rec["client"]).casefold(), str(rec["incarnation"]))
    file, lo, hi = idx.insert_range(inc, after=pos)
    files[file].insert(data.draw(st.integers(lo, hi)), dict(rec))
    assert verdicts(files) == {"duplicated": 1}


@given(seed=seeds, data=st.data())
def test_a_duplicated_outcome_is_malformed(seed: int, data: st.DataObject) -> None:
    files, idx = indexed(seed)
    m = a_message(data, idx, lambda m: m.outcome)
    assert m.outcome is not None
    files[m.outcome.file].insert(m.outcome.index + 1, dict(idx.rec(m.outcome)))
    assert verdicts(files) == {"malformed": 1}


def pairs_of_consecutive_shown(idx: Index) -> list[tuple[Pos, Pos]]:
    """Consecutive shown records of one sender incarnation in one receiver incarnation."""
    out = []
    for positions in idx.shown_in.values():
        last_of_sender: dict[str, Pos] = {}
        for pos in positions:
            sender_inc, _seq = parse_message_id(str(idx.rec(pos)["id"])) or ("", 0)
            if sender_inc in last_of_sender:
                out.append((last_of_sender[sender_inc], pos))
            last_of_sender[sender_inc] = pos
    return sorted(out)


@given(seed=seeds, data=st.data())
def test_two_shown_of_one_pair_swapped_is_out_of_order(seed: int, data: st.DataObject) -> None:
    files, idx = indexed(seed)
    a, b = data.draw(st.sampled_from(pairs_of_consecutive_shown(idx)))
    records = files[a.file]
    records[a.index], records[b.index] = records[b.index], records[a.index]
    assert verdicts(files) == {"out_of_order": 1}


@given(seed=seeds, data=st.data())
def test_shown_of_different_pairs_may_interleave_in_any_order(
    seed: int, data: st.DataObject
) -> None:
    """Order is promised per sender: any interleaving of the senders' shown records in a
    receiver's history, each sender's kept in its order, is still a valid history. The
    interleavings are drawn directly (a merge of the per-sender sequences), not filtered."""
    files, idx = indexed(seed)
    merged = 0
    for positions in idx.shown_in.values():
        by_sender: dict[str, list[RawRecord]] = {}
        for pos in positions:
            sender_inc = (parse_message_id(str(idx.rec(pos)["id"])) or ("", 0))[0]
            by_sender.setdefault(sender_inc, []).append(idx.rec(pos))
        queues = [list(reversed(rs)) for _, rs in sorted(by_sender.items())]
        merged += len(queues) > 1
        for pos in positions:  # the same slots, refilled in a drawn order
            i = data.draw(st.sampled_from([i for i, q in enumerate(queues) if q]))
            files[pos.file][pos.index] = queues[i].pop()
    assert merged, "the simulation gave no receiver messages of two senders to interleave"
    assert verdicts(files) == {}


# --- mutations: alter, forge ---------------------------------------------------------------------


@given(seed=seeds, data=st.data())
def test_an_altered_digest_is_phantom_altered(seed: int, data: st.DataObject) -> None:
    files, idx = indexed(seed)
    pos = data.draw(st.sampled_from(idx.shown()))
    files[pos.file][pos.index] = {**idx.rec(pos), "digest": digest("not what was sent")}
    assert verdicts(files) == {"phantom/altered": 1}


@given(seed=seeds, data=st.data(), seq=st.integers(1, 10**6))
def test_a_forged_shown_with_an_unknown_id_is_phantom_never_sent(
    seed: int, data: st.DataObject, seq: int
) -> None:
    files, idx = indexed(seed)
    inc = data.draw(st.sampled_from(sorted(idx.last)))
    sender = data.draw(st.sampled_from([*idx.clients(), "mallory"]))
    file, lo, hi = idx.insert_range(inc)
    forged = RecordBuilder(client=str(idx.rec(idx.first[inc])["client"]), incarnation=inc[1]).shown(
        sender, message_id("f00d", seq), "hello"
    )
    files[file].insert(data.draw(st.integers(lo, hi)), forged)
    assert verdicts(files) == {"phantom/never_sent": 1}


@given(seed=seeds, data=st.data())
def test_a_real_id_claimed_by_another_sender_is_phantom_never_sent(
    seed: int, data: st.DataObject
) -> None:
    files, idx, pos, rec = a_shown_record(seed, data)
    other = data.draw(st.sampled_from(
        [c for c in idx.clients() if c != str(rec["from"]).casefold()]
    ))  # fmt: skip
    files[pos.file].insert(pos.index + 1, {**rec, "from": other})
    assert verdicts(files) == {"phantom/never_sent": 1}


@given(seed=seeds, data=st.data())
def test_a_message_also_shown_to_someone_else_is_phantom_wrong_receiver(
    seed: int, data: st.DataObject
) -> None:
    files, idx, _pos, rec = a_shown_record(seed, data)
    inc = data.draw(st.sampled_from(
        [i for i in sorted(idx.last) if i[0] != str(rec["client"]).casefold()]
    ))  # fmt: skip
    file, lo, hi = idx.insert_range(inc)
    client = str(idx.rec(idx.first[inc])["client"])
    files[file].insert(data.draw(st.integers(lo, hi)),
                       {**rec, "client": client, "incarnation": inc[1]})  # fmt: skip
    assert verdicts(files) == {"phantom/wrong_receiver": 1}


@given(seed=seeds, data=st.data())
def test_a_recovered_message_moved_to_another_receiver_is_phantom_wrong_receiver(
    seed: int, data: st.DataObject
) -> None:
    """Moving the only showing of a message reported not delivered (a "recovered" one) to the
    wrong user: the right user never saw it (which its sender was told), the wrong one did."""
    files, idx = indexed(seed)
    m = a_message(data, idx, lambda m: m.outcome_event == "not_delivered" and m.shown)
    before = check(simulate(seed).files).info["recovered"]
    rec = idx.rec(m.shown[0])
    inc = data.draw(st.sampled_from(
        [i for i in sorted(idx.last) if i[0] != m.to.casefold()]
    ))  # fmt: skip
    file, lo, hi = idx.insert_range(inc)
    client = str(idx.rec(idx.first[inc])["client"])
    at = data.draw(st.integers(lo, hi))
    moved = {**rec, "client": client, "incarnation": inc[1]}
    delete(files, m.shown[0])
    if file == m.shown[0].file and at > m.shown[0].index:
        at -= 1
    files[file].insert(at, moved)
    report = check(files)
    assert report.violation_counts() == {"phantom/wrong_receiver": 1}
    assert report.info["recovered"] == before - 1


@given(seed=seeds, data=st.data())
def test_an_outcome_naming_another_receiver_is_malformed(seed: int, data: st.DataObject) -> None:
    files, idx = indexed(seed)
    m = a_message(data, idx, lambda m: m.outcome)
    assert m.outcome is not None
    files[m.outcome.file][m.outcome.index] = {**idx.rec(m.outcome), "to": "somebody-else"}
    assert verdicts(files) == {"malformed": 1}


# --- small hand-written histories: the definitions, one by one ----------------------------------


class Hist:
    """A tiny run written by hand: ``h.alice.send(...)`` appends to alice's file."""

    def __init__(self) -> None:
        self.files: Files = {}
        self.t = 0.0
        self._builders: dict[str, RecordBuilder] = {}

    def client(self, name: str, incarnation: str | None = None) -> _Writer:
        inc = incarnation or f"{name.casefold()}1"
        key = f"{name}/{inc}"
        if key not in self._builders:
            self._builders[key] = RecordBuilder(
                client=name, incarnation=inc, clock=self._tick, wall=lambda: 1.7e9 + self.t
            )
        return _Writer(self._builders[key], self.files.setdefault(f"{name.casefold()}.jsonl", []))

    def _tick(self) -> float:
        self.t += 0.001
        return self.t


class _Writer:
    def __init__(self, b: RecordBuilder, out: list[RawRecord]) -> None:
        self.b, self.out = b, out

    def __getattr__(self, name: str):  # type: ignore[no-untyped-def]
        make = getattr(self.b, name)

        def write(*args: object) -> _Writer:
            self.out.append(make(*args))
            return self

        return write


def conversation(outcome: str = "delivered", shown: int = 1) -> Hist:
    h = Hist()
    alice, bob = h.client("alice"), h.client("Bob")
    alice.signed_in()
    bob.signed_in()
    alice.send("alice1.1", "bob", "hi bob")
    for _ in range(shown):
        bob.shown("alice", "alice1.1", "hi bob")
    if outcome == "delivered":
        alice.delivered("alice1.1", "bob")
    elif outcome == "not_delivered":
        alice.not_delivered("alice1.1", "bob", "timeout", "not delivered to bob")
    alice.signed_out().exit(0)
    bob.signed_out().exit(0)
    return h


def test_a_delivered_shown_message_is_fine_and_names_match_without_case() -> None:
    report = check(conversation().files)
    assert report.ok and report.info["delivered"] == 1 and report.info["shown"] == 1


def test_not_delivered_but_shown_is_recovered_not_a_violation() -> None:
    report = check(conversation("not_delivered").files)
    assert report.ok
    assert report.info["recovered"] == 1 and report.info["not_delivered"] == 1


def test_not_delivered_and_not_shown_is_fine() -> None:
    report = check(conversation("not_delivered", shown=0).files)
    assert report.ok and report.info["recovered"] == 0


def test_delivered_never_shown_is_lost() -> None:
    report = check(conversation("delivered", shown=0).files)
    assert report.violation_counts() == {"lost": 1}
    (ex,) = report.examples["lost"]
    assert ex["id"] == "alice1.1" and ex["from"] == "alice" and ex["to"] == "bob"


def test_no_outcome_at_exit() -> None:
    assert verdicts(conversation("", shown=1).files) == {"unreported_at_exit": 1}
    assert verdicts(conversation("", shown=0).files) == {
        "unreported_at_exit": 1,
        "silently_lost": 1,
    }


def test_no_outcome_when_killed_is_info() -> None:
    h = conversation("", shown=0)
    h.files["alice.jsonl"] = h.files["alice.jsonl"][:-2]  # no signed_out, no exit: killed
    report = check(h.files)
    assert report.ok and report.info["crashed_unresolved"] == 1
    assert report.crashed == ["alice/alice1"]


def test_killed_after_delivered_still_needs_the_shown() -> None:
    h = conversation("delivered", shown=0)
    h.files["alice.jsonl"] = h.files["alice.jsonl"][:-2]
    assert verdicts(h.files) == {"lost": 1}


def test_shown_twice_is_duplicated_even_across_a_restart_of_the_receiver() -> None:
    h = conversation("delivered", shown=1)
    bob2 = h.client("bob", "bob2")
    bob2.signed_in().shown("alice", "alice1.1", "hi bob").signed_out().exit(0)
    report = check(h.files)
    assert report.violation_counts() == {"duplicated": 1}


def test_order_is_by_seq_per_sender_incarnation_and_receiver() -> None:
    h = Hist()
    a, a2, b = h.client("alice"), h.client("alice", "alice2"), h.client("bob")
    a.signed_in()
    b.signed_in()
    for i in (1, 2, 3):
        a.send(f"alice1.{i}", "bob", f"m{i}")
    b.shown("alice", "alice1.1", "m1").shown("alice", "alice1.3", "m3")
    a.delivered("alice1.1", "bob").delivered("alice1.3", "bob")
    a.not_delivered("alice1.2", "bob", "timeout", "not delivered to bob")
    a.signed_out().exit(0)
    # a new incarnation starts its seq again at 1: no order against the old one
    a2.signed_in().send("alice2.1", "bob", "again")
    b.shown("alice", "alice2.1", "again")
    a2.delivered("alice2.1", "bob").signed_out().exit(0)
    assert verdicts(h.files) == {}  # a gap (alice1.2, never shown) is fine
    b.shown("alice", "alice1.2", "m2")  # ... unless it shows up after alice1.3
    b.signed_out().exit(0)
    report = check(h.files)
    assert report.violation_counts() == {"out_of_order": 1}
    assert report.info["recovered"] == 1
    assert "after alice1.3" in str(report.examples["out_of_order"][0]["detail"])


def test_receiver_incarnations_are_ordered_by_wall_clock_for_order() -> None:
    """Shown records of one receiver name in two files: the older incarnation counts first,
    whatever order the files are read in."""
    h = Hist()
    a = h.client("alice")
    a.signed_in().send("alice1.1", "bob", "one").send("alice1.2", "bob", "two")
    h.client("bob", "old").signed_in().shown("alice", "alice1.1", "one").exit(1)
    h.files["bob.jsonl"], old = [], h.files["bob.jsonl"]
    h.client("bob", "new").signed_in().shown("alice", "alice1.2", "two").signed_out().exit(0)
    a.delivered("alice1.1", "bob").delivered("alice1.2", "bob").signed_out().exit(0)
    files = {"bob-new.jsonl": h.files["bob.jsonl"], "alice.jsonl": h.files["alice.jsonl"],
             "bob-old.jsonl": old}  # fmt: skip
    assert verdicts(files) == {}


def test_every_verdict_and_info_key_is_in_the_report() -> None:
    report = check(conversation().files)
    assert set(report.counts) == set(VIOLATIONS)
    assert set(report.phantom) == set(PHANTOM_SUBKINDS)
    assert set(report.info) == set(INFO)
    j = report.to_json()
    violations = j["violations"]
    assert isinstance(violations, dict) and set(violations) == set(VIOLATIONS)
    json.dumps(j)


def test_examples_are_capped_but_counts_are_not() -> None:
    h = Hist()
    a, b = h.client("alice"), h.client("bob")
    for i in range(1, 11):
        a.send(f"alice1.{i}", "bob", "x").delivered(f"alice1.{i}", "bob")
    a.exit(0)
    b.exit(0)
    c = Checker(max_examples=2)
    for name, records in h.files.items():
        c.add_records(records, name)
    report = c.report()
    assert report.counts["lost"] == 10 and len(report.examples["lost"]) == 2


# --- malformed and torn lines --------------------------------------------------------------------


def lines_of(records: list[RawRecord]) -> list[bytes]:
    return [encode_record(r) for r in records]


def test_malformed_records_are_violations_with_their_place() -> None:
    h = conversation()
    lines = lines_of(h.files["alice.jsonl"])
    lines.insert(
        2, b'{"event":"send","client":"alice","incarnation":"alice1","mono":1,"wall":2}\n'
    )  # fields missing
    lines.insert(3, b"[1, 2]\n")
    lines.insert(4, b'{"event":"teleport","client":"alice","incarnation":"alice1",'
                    b'"mono":1,"wall":2}\n')  # fmt: skip
    lines.insert(5, b"not json at all\n")  # followed by the same incarnation: not torn
    lines.insert(6, b"\n")  # blank lines are skipped
    c = Checker()
    c.add_lines(lines, "alice.jsonl")
    for name, records in h.files.items():
        if name != "alice.jsonl":
            c.add_records(records, name)
    report = c.report()
    assert report.violation_counts() == {"malformed": 4}
    c2 = Checker(max_examples=10)
    c2.add_lines(lines, "alice.jsonl")
    details = [str(e["detail"]) for e in c2.report().examples["malformed"]]
    assert any("'id' missing" in d for d in details)
    assert any("not a JSON object" in d for d in details)
    assert any("unknown event 'teleport'" in d for d in details)
    assert any("not JSON" in d for d in details)
    ats = [str(e["at"]) for e in c2.report().examples["malformed"]]
    assert ats == ["alice.jsonl:3", "alice.jsonl:4", "alice.jsonl:5", "alice.jsonl:6"]


def test_a_send_id_must_be_its_incarnations() -> None:
    h = Hist()
    h.client("alice").send("someone-else.1", "bob", "x").send("alice1.x", "bob", "y").exit(0)
    assert verdicts(h.files) == {"malformed": 2}


def test_text_lines_work_and_an_incarnation_of_malformed_lines_only_is_not_counted() -> None:
    h = conversation()
    c = Checker()
    for name, records in h.files.items():
        c.add_lines([encode_record(r).decode() for r in records], name)
    c.add_lines(['{"event":"exit","client":"zoe","incarnation":"z1","mono":1,"wall":2}'], "z")
    report = c.report()
    assert report.violation_counts() == {"malformed": 1}  # exit without a code
    assert report.incarnations == 2 and report.clients == 2 and report.crashed == []


def test_a_torn_last_line_is_info(tmp_path: Path) -> None:
    h = conversation("", shown=1)
    alice = h.files["alice.jsonl"][:-2]  # killed ...
    path = tmp_path / "alice.jsonl"
    path.write_bytes(b"".join(lines_of(alice)) + encode_record(alice[-1])[:17])  # ... mid-line
    (tmp_path / "bob.jsonl").write_bytes(b"".join(lines_of(h.files["bob.jsonl"])))
    report, _ = check_paths([tmp_path])
    assert report.ok
    assert report.info["torn_lines"] == 1 and report.info["crashed_unresolved"] == 1


def test_the_writer_appends_one_line_per_record_and_restarts_after_a_torn_line(
    tmp_path: Path,
) -> None:
    path = tmp_path / "carol.jsonl"
    ticks = iter(range(1000))
    with HistoryWriter(path, client="carol", incarnation="c1",
                       clock=lambda: float(next(ticks)), wall=time.time) as w:  # fmt: skip
        w.signed_in()
        w.send("c1.1", "bob", "héllo\nworld")
        w.shown("bob", "b1.1", "hi")
        w.not_delivered("c1.1", "bob", "timeout", "not delivered to bob (no ack for 10 s)")
    with open(path, "ab") as f:  # another incarnation, killed while writing
        f.write(b'{"event":"send","client":"carol","incarnation":"c2","mo')
    with HistoryWriter(path, client="carol", incarnation="c3") as w:
        w.signed_in()
        w.delivered("c3.9", "bob")  # never sent: malformed, to prove the line is read
        w.exit(0)
    raw = path.read_bytes()
    lines = raw.split(b"\n")
    assert lines[-1] == b"" and len(lines) == 4 + 1 + 3 + 1
    assert lines[4].endswith(b'"mo')  # the torn line stands alone
    records = [json.loads(x) for i, x in enumerate(lines) if x and i != 4]
    assert [r["event"] for r in records] == [
        "signed_in", "send", "shown", "not_delivered", "signed_in", "delivered", "exit",
    ]  # fmt: skip
    assert records[1]["digest"] == text_digest("héllo\nworld")
    assert records[1]["bytes"] == len("héllo\nworld".encode())
    assert [r["mono"] for r in records[:4]] == [0.0, 1.0, 2.0, 3.0]
    for r in records:
        assert schema_error(r) is None
        assert record_to_dict(parse_record(r)) == r
    report, _ = check_paths([path])
    assert report.info["torn_lines"] == 1
    # the delivered of c3.9 and the shown of b1.1: neither was sent (bob wrote no history)
    assert report.violation_counts() == {"malformed": 1, "phantom/never_sent": 1}
    assert report.incarnations == 2  # c1 and c3 (c2 left only the torn line)


def test_the_writer_writes_each_record_with_one_write_call(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    w = HistoryWriter(tmp_path / "h.jsonl", client="alice", incarnation="a1")
    writes: list[bytes] = []

    class Spy:
        def __init__(self, f: Any) -> None:
            self.f = f

        def write(self, data: bytes) -> int | None:
            writes.append(bytes(data))
            return self.f.write(data)  # type: ignore[no-any-return]

        def close(self) -> None:
            self.f.close()

    monkeypatch.setattr(w, "_file", Spy(w._file))
    w.send("a1.1", "bob", "x" * 100_000)
    w.exit(0)
    w.close()
    assert len(writes) == 2 and all(x.endswith(b"\n") and x.count(b"\n") == 1 for x in writes)
    assert (tmp_path / "h.jsonl").read_bytes() == b"".join(writes)


def test_the_record_model_round_trips_and_rejects_bad_fields() -> None:
    b = RecordBuilder(client="alice", incarnation="a1", clock=lambda: 1.0, wall=lambda: 2.0)
    made = [b.send("a1.1", "bob", "x"), b.delivered("a1.1", "bob"),
            b.not_delivered("a1.2", "bob", "no_such_user", "no such user: bob"),
            b.shown("bob", "b1.1", "y"), b.signed_in(), b.signed_out(), b.exit(3)]  # fmt: skip
    assert [r["event"] for r in made] == [str(e) for e in Event]
    for r in made:
        typed = parse_record(r)
        assert record_to_dict(typed) == r
        assert set(r) == {"event", "client", "incarnation", "mono", "wall"} | {
            k for k, _ in EVENT_FIELDS[str(r["event"])]
        }
    with pytest.raises(MalformedRecord, match="'bytes'"):
        parse_record({**made[0], "bytes": "1"})
    with pytest.raises(MalformedRecord, match="'mono'"):
        parse_record({**made[0], "mono": True})
    with pytest.raises(MalformedRecord, match="'to'"):
        parse_record({**made[1], "to": ""})
    assert parse_record({**made[0], "extra": 1}) == parse_record(made[0])  # forward compatible


def test_message_ids() -> None:
    inc = incarnation_of(0xDEADBEEF)
    assert inc == "deadbeef"
    assert message_id(inc, 7) == "deadbeef.7"
    assert parse_message_id("deadbeef.7") == ("deadbeef", 7)
    for bad in ("deadbeef", "deadbeef.", ".7", "a.b", "a.-1", "a.1_0", "a.٣"):
        assert parse_message_id(bad) is None, bad


# --- files and the command -----------------------------------------------------------------------


def write_run(directory: Path, files: Files) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    for name, records in files.items():
        (directory / name).write_bytes(b"".join(lines_of(records)))


def run_cli(*args: str, prefix: tuple[str, ...] = ()) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": CHECK_PATH}
    return subprocess.run(
        [*prefix, sys.executable, "-m", "chat_check", *args],
        capture_output=True, text=True, env=env, timeout=120, check=False,
    )  # fmt: skip


def test_history_files_takes_directories_recursively_and_any_named_file(tmp_path: Path) -> None:
    (tmp_path / "a" / "b").mkdir(parents=True)
    for p in ("a/x.jsonl", "a/b/y.jsonl", "a/notes.txt", "z.log"):
        (tmp_path / p).write_text("")
    found = history_files([tmp_path / "a", tmp_path / "z.log", tmp_path / "a" / "x.jsonl"])
    assert found == [tmp_path / "a/b/y.jsonl", tmp_path / "a/x.jsonl", tmp_path / "z.log"]
    with pytest.raises(FileNotFoundError):
        history_files([tmp_path / "missing"])


def test_the_command_reports_ok_and_violations(tmp_path: Path) -> None:
    run = simulate(5)
    write_run(tmp_path / "ok", run.files)
    done = run_cli(str(tmp_path / "ok"))
    assert done.returncode == 0, done.stderr
    out = done.stdout
    messages = sum(r["event"] == "send" for rs in run.files.values() for r in rs)
    assert f"\n{messages} messages:" in out
    assert "latency send -> shown (wall clocks): p50 " in out
    assert out.rstrip().endswith("OK: no violations")
    assert done.stderr == ""

    idx = Index(run.files)
    m = next(m for m in sorted_candidates(list(idx.msgs.values()))
             if m.outcome_event == "delivered" and m.shown)  # fmt: skip
    delete(run.files, m.shown[0])
    write_run(tmp_path / "bad", run.files)
    (tmp_path / "bad" / "bob.jsonl").rename(tmp_path / "bob.history")  # any name, given by hand
    done = run_cli(str(tmp_path / "bad"), str(tmp_path / "bob.history"))
    assert done.returncode == 1
    assert "\nlost:" in done.stdout and m.id in done.stdout
    assert done.stdout.rstrip().endswith("FAIL: 1 violation")

    done = run_cli("--json", str(tmp_path / "bad"), str(tmp_path / "bob.history"))
    assert done.returncode == 1
    j = json.loads(done.stdout)
    assert j["ok"] is False and j["violation_count"] == 1
    assert j["violations"]["lost"]["count"] == 1
    assert j["violations"]["lost"]["examples"][0]["id"] == m.id
    assert j["info"]["messages"] == messages
    assert set(j["latency_s"]) == {"n", "p50", "p90", "p99", "max"}


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ((), "the following arguments are required: HISTORY"),
        (("{tmp}/missing",), "chat-check: error: no such file or directory: "),
        (("{tmp}",), "chat-check: error: no history files (*.jsonl) in "),
        (("--examples", "-1", "{tmp}"), "must be at least 0"),
        (("--faults", "f.json", "{tmp}"), "--faults needs --plot"),
        (("--plot", "{tmp}/p.png", "--faults", "{tmp}/none.json", "{tmp}"), "cannot read"),
    ],
)
def test_the_command_fails_usage_and_io_errors_with_status_2(
    tmp_path: Path, args: tuple[str, ...], message: str
) -> None:
    done = run_cli(*(a.format(tmp=tmp_path) for a in args))
    assert done.returncode == 2
    assert message in done.stderr
    assert "Traceback" not in done.stderr and done.stdout == ""


def without_file_privileges() -> tuple[str, ...]:
    """A command prefix under which root reads only what the file modes allow (root's
    capabilities to override them dropped by util-linux's setpriv); none for other users."""
    if os.geteuid() != 0:
        return ()
    setpriv = shutil.which("setpriv")
    if setpriv is None:
        unavailable("root reads any file, and setpriv (util-linux) is missing", "this test")
    caps = "-dac_override,-dac_read_search"
    return (setpriv, f"--inh-caps={caps}", f"--bounding-set={caps}")


def test_an_unreadable_history_is_status_2(tmp_path: Path) -> None:
    p = tmp_path / "h.jsonl"
    p.write_text("")
    p.chmod(0)
    done = run_cli(str(p), prefix=without_file_privileges())
    assert done.returncode == 2, done.stdout + done.stderr
    assert done.stderr == f"chat-check: error: cannot read {p}: Permission denied\n"


# --- scale ---------------------------------------------------------------------------------------


@pytest.mark.slow
def test_a_million_events(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Measured and printed, never asserted: shared machines vary too much."""
    t0 = time.perf_counter()
    files = bulk_lines(1_000_000, seed=3)
    for name, lines in files.items():
        (tmp_path / name).write_bytes(b"".join(lines))
    n = sum(map(len, files.values()))
    del files
    t1 = time.perf_counter()
    report, _ = check_paths([tmp_path])
    t2 = time.perf_counter()
    assert report.records == n and 1_000_000 <= n <= 1_000_002
    assert report.ok, report.format()
    with capsys.disabled():
        print(
            f"\nchat-check: {n:,} events in {t2 - t1:.2f} s "
            f"({(t2 - t1) / n * 1e6:.2f} µs/event; generated in {t1 - t0:.1f} s)"
        )


# --- the plot -----------------------------------------------------------------------------------


def test_the_timeline_plot_renders_a_png(tmp_path: Path) -> None:
    import_or_unavailable("matplotlib", "the timeline plot (the bench extra)")
    run = simulate(11)
    write_run(tmp_path / "h", run.files)
    walls = sorted(float(r["wall"]) for rs in run.files.values() for r in rs)  # type: ignore[arg-type]
    faults = [
        {"start": walls[10], "end": walls[60], "kind": "loss", "target": "bob"},
        {"start": walls[100], "end": walls[100], "kind": "kill", "target": "carol"},
    ]
    (tmp_path / "faults.json").write_text(json.dumps(faults))
    png = tmp_path / "timeline.png"
    done = run_cli(
        str(tmp_path / "h"), "--plot", str(png), "--faults", str(tmp_path / "faults.json")
    )
    assert done.returncode == 0, done.stderr
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 10_000
    from chat_check.plot import read_shaded

    # The PNG says what it shaded, read back from its text chunk: a span and a line.
    shaded = read_shaded(png)
    assert [(s["kind"], s["target"], s["as"]) for s in shaded] == [
        ("loss", "bob", "span"),
        ("kill", "carol", "line"),
    ]
    loss, kill = shaded
    assert 0 <= float(loss["x0"]) < float(loss["x1"])
    assert kill["x0"] == kill["x1"]

    (tmp_path / "bad.json").write_text(json.dumps([{"start": 2, "end": 1, "kind": "x"}]))
    done = run_cli(str(tmp_path / "h"), "--plot", str(png), "--faults", str(tmp_path / "bad.json"))
    assert done.returncode == 2 and "'end' is before 'start'" in done.stderr
