"""chat-check on hostile input (issue 20): whatever a history file holds, the reader says ``ok``,
``malformed`` or ``torn`` for each line, or chat-check exits 2 with one line; never a traceback,
never a hang.

* a line nested too deep for the JSON decoder is one ``malformed`` line (was a RecursionError);
* a FIFO, a socket, a symbolic link loop or a dangling link, named or found under a directory,
  is refused with exit 2 and one line that says what it is (a FIFO hung; a link loop in a
  directory was skipped without a word);
* every failure goes through chat-check's one handler: one line, a documented exit status;
* property tests: files of any bytes, any nesting and any size up to a bound.
"""

from __future__ import annotations

import contextlib
import os
import re
import socket
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from budget import examples
from chat_check import cli
from chat_check.checker import Checker, NotAHistory, history_files
from chat_check.cli import MEANING, ExitCode
from chat_check.synth import simulate
from chat_history import RecordBuilder, encode_record

ROOT = Path(__file__).resolve().parents[2]
CHECK_PATH = os.pathsep.join(str(ROOT / "services" / d) for d in ("check", "history"))
DEEP = 100_000
HANG_BOUND_S = 60
"""A bound on the process (it must not hang), not a claim about its speed."""
ERROR_LINE = re.compile(r"\Achat-check: error: [^\n]+\n\Z")


def chat_check(*args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": CHECK_PATH}
    return subprocess.run(
        [sys.executable, "-m", "chat_check", *args],
        capture_output=True, text=True, env=env, timeout=HANG_BOUND_S, check=False,
    )  # fmt: skip


def valid_lines() -> list[bytes]:
    """A history that keeps the promise on its own: alice signs in, sends to bob, who was not
    there (``not_delivered``), and exits."""
    ticks = iter(range(100))
    b = RecordBuilder(client="alice", incarnation="a1", clock=lambda: float(next(ticks)))
    records = [
        b.signed_in(),
        b.send("a1.1", "bob", "hello"),
        b.not_delivered("a1.1", "bob", "no_such_user", "no such user: bob"),
        b.signed_out(),
        b.exit(0),
    ]
    return [encode_record(r) for r in records]


# --- nesting -------------------------------------------------------------------------------


@pytest.mark.parametrize("where", ["middle", "last"])
def test_a_line_nested_too_deep_is_one_malformed_line(where: str) -> None:
    lines = valid_lines()
    deep = b"[" * DEEP + b"\n"
    if where == "middle":
        lines.insert(2, deep)
    else:
        lines.append(deep)  # the last line, but no prefix of a record: not torn either
    c = Checker(max_examples=5)
    c.add_lines(lines, "deep.jsonl")
    report = c.report()
    assert report.violation_counts().get("malformed") == 1, report.format()
    assert report.info["torn_lines"] == 0
    (example,) = report.examples["malformed"]
    assert str(example["detail"]).startswith("not JSON")


def test_chat_check_says_malformed_for_a_deep_line_and_no_traceback(tmp_path: Path) -> None:
    path = tmp_path / "deep.jsonl"
    path.write_bytes(b"".join(valid_lines()) + b"[" * DEEP + b"\n" + b'{"a":' * DEEP + b"\n")
    done = chat_check(str(path))
    assert done.returncode == ExitCode.VIOLATIONS, done.stderr
    assert re.search(r"^malformed: +2$", done.stdout, re.MULTILINE), done.stdout
    assert done.stderr == ""


# --- files that are not files ---------------------------------------------------------------


def _fifo(p: Path) -> str:
    os.mkfifo(p)
    return "a FIFO"


def _socket(p: Path) -> str:
    s = socket.socket(socket.AF_UNIX)
    with contextlib.chdir(p.parent):  # a relative name: a socket's path is at most 107 bytes
        s.bind(p.name)
    s.close()
    return "a socket"


def _loop(p: Path) -> str:
    p.symlink_to(p.name)
    return "a symbolic link loop"


def _dangling(p: Path) -> str:
    p.symlink_to("nowhere.jsonl")
    return "a dangling symbolic link"


MAKERS = {"fifo": _fifo, "socket": _socket, "loop": _loop, "dangling": _dangling}


@pytest.mark.parametrize("kind", sorted(MAKERS))
@pytest.mark.parametrize("named", [True, False], ids=["named", "in-a-directory"])
def test_a_path_that_is_not_a_regular_file_is_refused_with_one_line(
    tmp_path: Path, kind: str, named: bool
) -> None:
    (tmp_path / "ok.jsonl").write_bytes(b"".join(valid_lines()))
    bad = tmp_path / "odd.jsonl"
    what = MAKERS[kind](bad)
    done = chat_check(str(bad) if named else str(tmp_path))
    assert done.returncode == ExitCode.ERROR, done.stdout + done.stderr
    assert ERROR_LINE.match(done.stderr), done.stderr
    assert f"{bad}: not a regular file ({what})" in done.stderr
    assert done.stdout == ""


def test_a_fifo_put_in_a_files_place_after_listing_is_refused_not_waited_on(
    tmp_path: Path,
) -> None:
    path = tmp_path / "h.jsonl"
    path.write_bytes(b"")
    (listed,) = history_files([tmp_path])
    path.unlink()
    os.mkfifo(path)  # no writer: an open that blocked would never return
    with pytest.raises(NotAHistory, match="not a regular file \\(a FIFO\\)"):
        Checker().add_file(listed)


def test_a_faults_file_that_is_a_fifo_is_refused(tmp_path: Path) -> None:
    (tmp_path / "h.jsonl").write_bytes(b"".join(valid_lines()))
    os.mkfifo(tmp_path / "faults.json")
    done = chat_check(
        str(tmp_path / "h.jsonl"), "--plot", str(tmp_path / "t.png"),
        "--faults", str(tmp_path / "faults.json"),
    )  # fmt: skip
    assert done.returncode == ExitCode.ERROR and ERROR_LINE.match(done.stderr), done.stderr
    assert "not a regular file (a FIFO)" in done.stderr


# --- the one handler ------------------------------------------------------------------------


def test_an_unexpected_failure_is_one_line_with_a_pointer_to_v(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "h.jsonl").write_bytes(b"".join(valid_lines()))

    def broken(self: Checker) -> None:
        raise KeyError("a bug")

    monkeypatch.setattr(Checker, "report", broken)
    assert cli.main([str(tmp_path)]) == ExitCode.INTERNAL
    err = capsys.readouterr().err
    assert ERROR_LINE.match(err) and "internal error (KeyError" in err and "-v" in err, err
    with pytest.raises(KeyError):
        cli.main(["-v", str(tmp_path)])


def test_an_unreadable_history_is_one_line_naming_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """An OSError while reading (an I/O error of the disk, here injected: it cannot be made
    for real without a broken disk) is named with its file."""
    path = tmp_path / "h.jsonl"
    path.write_bytes(b"".join(valid_lines()))

    def failing(self: Checker, lines: object, source: str) -> None:
        raise OSError(5, "Input/output error", source)

    monkeypatch.setattr(Checker, "add_lines", failing)
    assert cli.main([str(path)]) == ExitCode.ERROR
    assert capsys.readouterr().err == f"chat-check: error: cannot read {path}: Input/output error\n"


def test_the_exit_statuses_are_the_documented_ones() -> None:
    """docs/HISTORY.md's exit-status table is ExitCode, number and words."""
    text = (ROOT / "docs" / "HISTORY.md").read_text()
    table = text[text.index("**Exit status**") :].split("\n\n")[1]
    rows = re.findall(r"^\| (\d+) \| (.+) \|$", table, re.MULTILINE)
    documented = {int(code): meaning for code, meaning in rows}
    assert documented == {int(c): MEANING[c] for c in ExitCode}


# --- properties -------------------------------------------------------------------------------

RECORD_LINES = [encode_record(r) for rs in simulate(5).files.values() for r in rs][:60]


@st.composite
def hostile_lines(draw: st.DrawFn) -> list[bytes]:
    """Lines of a file: real records, records cut or with bytes flipped, any bytes, deep
    nesting of arrays and objects, blank lines; up to about 2 MB."""
    out: list[bytes] = []
    for _ in range(draw(st.integers(0, 12))):
        kind = draw(st.sampled_from(["record", "cut", "flip", "bytes", "deep", "blank"]))
        if kind == "record":
            out.append(draw(st.sampled_from(RECORD_LINES)))
        elif kind == "cut":
            line = draw(st.sampled_from(RECORD_LINES))
            out.append(line[: draw(st.integers(0, len(line)))])
        elif kind == "flip":
            flipped = bytearray(draw(st.sampled_from(RECORD_LINES)))
            i = draw(st.integers(0, len(flipped) - 1))
            flipped[i] = draw(st.integers(0, 255))
            out.append(bytes(flipped))
        elif kind == "bytes":
            out.append(draw(st.binary(max_size=300)))
        elif kind == "deep":
            depth = draw(st.integers(1, 200_000))
            opener = draw(st.sampled_from([b"[", b'{"a":', b"[{", b'{"event":[']))
            closed = draw(st.booleans())
            closer = {b"[": b"]", b'{"a":': b"}", b"[{": b"}]", b'{"event":[': b"]}"}[opener]
            inner = b"1" if opener != b"[{" else b'"k":1'
            out.append(opener * depth + (inner + closer * depth if closed else b""))
        else:
            out.append(b" " * draw(st.integers(0, 3)))
    return out


@given(lines=hostile_lines(), newline_at_end=st.booleans())
@settings(max_examples=examples(150), deadline=None, suppress_health_check=[HealthCheck.too_slow])
def test_any_file_gives_verdicts_never_an_exception(
    lines: list[bytes], newline_at_end: bool
) -> None:
    data = b"\n".join(lines) + (b"\n" if newline_at_end else b"")
    c = Checker()
    c.add_lines(data.splitlines(keepends=True), "any.jsonl")
    report = c.report()
    report.format()
    report.to_json()
    counts = report.violation_counts()
    nonblank = sum(1 for x in data.splitlines() if x.strip())
    assert counts.get("malformed", 0) + report.info["torn_lines"] <= nonblank


@given(lines=hostile_lines())
@settings(max_examples=examples(40), deadline=None, suppress_health_check=[HealthCheck.too_slow])
def test_chat_check_on_any_file_exits_0_1_or_2_with_no_traceback(lines: list[bytes]) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "any.jsonl"
        path.write_bytes(b"\n".join(lines))
        err = _stderr_of(lambda: cli.main(["--json", str(path)]))
    code, text = err
    assert code in (ExitCode.OK, ExitCode.VIOLATIONS, ExitCode.ERROR), text
    assert "Traceback" not in text
    if code == ExitCode.ERROR:
        assert ERROR_LINE.match(text), text


def _stderr_of(call: object) -> tuple[int, str]:
    """Run ``call()`` with stdout and stderr captured in files; its result and its stderr."""
    assert callable(call)
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            code = int(call())
        err.seek(0)
        return code, err.read()
