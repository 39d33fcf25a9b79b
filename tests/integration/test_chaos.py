"""Chaos runs (labkit.chaos, docs/CHAOS.md), short: client containers message each other at a
steady rate under the full fault schedule of a seed, and chat-check finds nothing wrong; with
one client broken on purpose (it acknowledges a message it never shows), chat-check says
``lost``.

Each run is ``python -m labkit.chaos`` as ``make chaos`` runs it, in a subprocess, with its run
directory under the test's tmp_path. The schedule tests at the end need no Docker.
"""

from __future__ import annotations

import ast
import json
import re
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from labkit.chaos.fleet import BROKEN_CLIENT, broken_client_args
from labkit.chaos.run import Outcomes, Settings
from labkit.chaos.schedule import (
    PROCESS_KINDS,
    REQUIRED,
    SERVER,
    kinds_covered,
    plan,
)
from labkit.compose import Compose
from labkit.util import ROOT

SHORT_S = 60
"""Seconds of traffic of the clean run: the whole run takes about 80 s (≤ 2 min)."""
BROKEN_S = 35
RUN_BOUND_S = 240
CLIENTS = 6
N_MESSAGES_RE = re.compile(r"^([\d,]+) messages: ", re.MULTILINE)


@pytest.fixture
def chaos_project(chat_images: dict[str, str]) -> Iterator[str]:
    """A compose project name for one run; whatever the run leaves is removed."""
    name = f"chatit-chaos-{uuid.uuid4().hex[:8]}"
    yield name
    Compose(name).close()


def chaos(out: Path, project: str, *args: str) -> subprocess.CompletedProcess[str]:
    argv = [
        sys.executable, "-m", "labkit.chaos", "--out", str(out), "--project", project,
        "--clients", str(CLIENTS), *args,
    ]  # fmt: skip
    r = subprocess.run(
        argv, cwd=ROOT, capture_output=True, text=True, timeout=RUN_BOUND_S, check=False
    )
    print(r.stdout[-6000:], r.stderr[-3000:])
    return r


def test_short_chaos_run_keeps_the_promise(chaos_project: str, tmp_path: Path) -> None:
    out = tmp_path / "run"
    r = chaos(out, chaos_project, "--seed", "11", "--duration", str(SHORT_S))
    assert r.returncode == 0, r.stdout[-4000:] + r.stderr[-2000:]
    assert "OK: no violations" in r.stdout
    m = N_MESSAGES_RE.search(r.stdout)
    assert m, r.stdout
    assert int(m[1].replace(",", "")) >= SHORT_S * CLIENTS * Settings().rate * 0.6

    report = json.loads((out / "report.json").read_text())
    assert report["ok"] and report["violation_count"] == 0, report
    assert report["inputs"]["clients"] == CLIENTS
    # Every kind of fault was carried out, on a client and on the server.
    faults = json.loads((out / "faults.json").read_text())
    info = json.loads((out / "run.json").read_text())
    done = {(f["kind"], "server" if f["target"] == SERVER else "client") for f in faults}
    assert set(REQUIRED) <= done, (sorted(set(REQUIRED) - done), info["skipped"])
    assert any(f["kind"] == "restart" for f in faults)  # a killed client came back
    assert (out / "timeline.png").stat().st_size > 10_000
    assert (out / "report.txt").read_text().strip().endswith("OK: no violations")


def test_a_client_that_drops_an_acknowledged_message_is_caught(
    chaos_project: str, tmp_path: Path
) -> None:
    out = tmp_path / "run"
    r = chaos(out, chaos_project, "--seed", "12", "--duration", str(BROKEN_S), "--broken")
    assert r.returncode == 1, r.stdout[-4000:] + r.stderr[-2000:]
    assert re.search(r"^lost: +[1-9]", r.stdout, re.MULTILINE), r.stdout[-4000:]
    report = json.loads((out / "report.json").read_text())
    lost = report["violations"]["lost"]
    assert lost["count"] >= 1, report
    # The one broken client is the receiver of every lost message (its first, each time it
    # was started), and nothing else went wrong.
    broken = json.loads((out / "run.json").read_text())["broken"]
    assert {ex["to"] for ex in lost["examples"]} == set(broken), lost
    assert report["violation_count"] == lost["count"], report["violations"]


# --- the schedule (no Docker) -----------------------------------------------------------------

NAMES = Settings(clients=CLIENTS).names()


@pytest.mark.parametrize("seed", [1, 2, 3, 11, 12])
def test_a_seed_gives_one_schedule_with_every_kind_of_fault(seed: int) -> None:
    s = Settings(seed=seed, duration_s=SHORT_S)
    window = (s.warmup_s, s.duration_s - s.quiet_s)
    faults = plan(seed, NAMES, *window)
    assert faults == plan(seed, NAMES, *window)
    assert faults != plan(seed + 1, NAMES, *window)
    assert set(REQUIRED) <= kinds_covered(faults, NAMES)
    full = plan(seed, NAMES, s.warmup_s, Settings().duration_s - s.quiet_s)
    assert set(REQUIRED) <= kinds_covered(full, NAMES)
    for f in [*faults, *full]:
        assert window[0] <= f.at_s and f.end_s <= max(window[1], Settings().duration_s)
        if f.kind in ("loss", "duplicate"):
            assert 0.10 <= f.probability <= 0.30
        if f.target == SERVER:
            assert f.kind != "kill"


@pytest.mark.parametrize("seed", range(20))
def test_process_faults_never_overlap_on_one_target_and_partitions_come_one_at_a_time(
    seed: int,
) -> None:
    faults = [f for f in plan(seed, NAMES, 5, 385) if f.kind in PROCESS_KINDS]
    for i, f in enumerate(faults):
        for g in faults[i + 1 :]:
            if g.target == f.target:
                assert g.at_s >= f.busy_until_s, (f, g)
            if f.kind == g.kind == "partition":
                assert g.at_s >= f.end_s, (f, g)


def test_the_drain_waits_for_unread_lines_and_open_messages(tmp_path: Path) -> None:
    def record(event: str, inc: str, **extra: object) -> str:
        return json.dumps({"event": event, "client": "Bob", "incarnation": inc, **extra}) + "\n"

    hist = tmp_path / "bob.jsonl"
    hist.write_text(record("send", "a1", id="a1.1") + record("exit", "a1", code=0))
    outcomes = Outcomes(tmp_path)
    outcomes.update()
    assert outcomes.unresolved({"bob": 1}) == {}  # an exited incarnation is done
    with hist.open("a") as f:
        f.write(record("signed_in", "b2") + record("send", "b2", id="b2.1"))
        f.write(record("send", "b2", id="b2.2")[:20])  # half a line, still being written
    outcomes.update()
    assert outcomes.unresolved({"bob": 3}) == {"bob": 2 + 1}  # 2 lines unread, 1 open
    with hist.open("a") as f:
        f.write(record("send", "b2", id="b2.2")[20:] + record("send", "b2", id="b2.3"))
        f.write(record("delivered", "b2", id="b2.1") + record("not_delivered", "b2", id="b2.2"))
    outcomes.update()
    assert outcomes.unresolved({"bob": 3}) == {"bob": 1}
    with hist.open("a") as f:
        f.write(record("delivered", "b2", id="b2.3"))
    outcomes.update()
    assert outcomes.unresolved({"bob": 3}) == {}


def test_the_broken_client_is_mounted_from_labkit_and_run_by_the_images_python() -> None:
    """The fleet's options for the broken client (Docker itself is tested by the run above; its
    script on loopback by tests/e2e/test_broken_client.py)."""
    options, program = broken_client_args()
    mount = options[options.index("-v") + 1]
    host, inside, mode = mount.rsplit(":", 2)
    assert Path(host) == BROKEN_CLIENT.resolve() and Path(host).is_file()
    assert mode == "ro" and program == (inside,)
    assert options[options.index("--entrypoint") + 1] == "python3"
    # Runnable as a plain script in the image: it imports the chat packages and the standard
    # library only (labkit is not installed there).
    tree = ast.parse(Path(host).read_text())
    imported = {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
    imported |= {n.module or "" for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)}
    assert {m.split(".")[0] for m in imported} <= {
        "__future__", "sys", "unittest", "chat_client", "chat_protocol"
    }, imported
