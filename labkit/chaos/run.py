"""One chaos run, start to end: the lab, the clients, traffic and faults, a clean finish, the
checker. :func:`run` returns chat-check's exit status (3: the lab itself failed).

Phases (docs/CHAOS.md):

1. a compose project of its own (``chaos-<seed>-<random>``), the server healthy, every client
   signed in;
2. ``duration`` seconds of traffic; the faults of the seed's schedule begin ``warmup`` seconds
   in and are over ``quiet`` seconds before the traffic ends, so that every client killed is
   back and every message sent under a fault has had its 10 s to be delivered or reported;
3. the drain: no new messages, until every running client has an outcome for each of its
   messages (bounded);
4. the finish: each client's input is closed, so it signs out and exits (its ``exit`` record
   is what makes "unreported at exit" and "silently lost" mean something);
5. the project is removed, and ``chat-check`` judges the histories: report.txt, report.json,
   timeline.png (faults shaded, from faults.json).
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

from labkit.chaos.fleet import Fleet
from labkit.chaos.lab import ChaosLab, free_subnet
from labkit.chaos.natlab import NatChaosLab, NatFleet, NatNemesis
from labkit.chaos.nemesis import Nemesis, faults_json
from labkit.chaos.schedule import REQUIRED, kinds_covered, plan
from labkit.chaos.traffic import Traffic
from labkit.util import ROOT, LabError, poll_until

NAMES = ("alice", "bob", "carol", "dave", "erin", "frank", "grace", "heidi", "ivan", "judy")
RUNS_DIR = ROOT / "chaos-runs"
START_TIMEOUT_S = 90.0
DRAIN_TIMEOUT_S = 40.0
"""After the traffic: a message is resolved within 10 s of its last datagram; a message queued
in a client that was paused is sent when it thaws."""
DRAIN_POLL_S = 0.5
"""How often the histories are read again while draining."""
FINISH_TIMEOUT_S = 30.0
PROGRESS_S = 15.0
LAB_FAILED = 3


@dataclass(frozen=True, kw_only=True)
class Settings:
    seed: int = 1
    duration_s: float = 400.0
    """Seconds of traffic (the faults run inside it)."""
    clients: int = 6
    rate: float = 5.0
    """Messages per second per client."""
    broken: bool = False
    """The first client runs with chat-client's test-only fault: one message acknowledged and
    never shown. The checker must say ``lost``."""
    warmup_s: float = 5.0
    quiet_s: float = 15.0
    out: Path | None = None
    project: str | None = None
    lab: str = "main"
    """``main`` (compose.yaml) or ``nat`` (compose.nat.yaml: labkit.chaos.natlab)."""

    def names(self) -> list[str]:
        if self.clients < 2:
            raise ValueError("a chaos run needs at least 2 clients")
        extra = [f"user{i:02d}" for i in range(len(NAMES) + 1, self.clients + 1)]
        return [*NAMES, *extra][: self.clients]


@dataclass
class Timings:
    phases: dict[str, float] = field(default_factory=dict)
    _t: float = field(default_factory=time.monotonic)

    def mark(self, phase: str) -> None:
        now = time.monotonic()
        self.phases[phase] = round(now - self._t, 2)
        self._t = now


class Outcomes:
    """The histories read as they grow: for each client's newest incarnation, how many
    messages it sent and which have no outcome yet (for the drain)."""

    def __init__(self, hist_dir: Path) -> None:
        self.hist_dir = hist_dir
        self._offsets: dict[Path, int] = {}
        self._rest: dict[Path, bytes] = {}
        self._newest: dict[str, str] = {}
        self._open: dict[tuple[str, str], set[str]] = {}
        self._sent: dict[tuple[str, str], int] = {}
        self._exited: set[tuple[str, str]] = set()

    def update(self) -> None:
        for path in sorted(self.hist_dir.glob("*.jsonl")):
            with path.open("rb") as f:
                f.seek(self._offsets.get(path, 0))
                data = self._rest.pop(path, b"") + f.read()
                self._offsets[path] = f.tell()
            *lines, rest = data.split(b"\n")
            self._rest[path] = rest
            for line in lines:
                self._take(line)

    def _take(self, line: bytes) -> None:
        try:
            r = json.loads(line)
            client, inc, event = str(r["client"]).casefold(), str(r["incarnation"]), r["event"]
        except (ValueError, KeyError, TypeError):
            return  # torn or foreign: the checker judges it
        key = (client, inc)
        self._newest[client] = inc
        sent = self._open.setdefault(key, set())
        if event == "send":
            sent.add(str(r.get("id")))
            self._sent[key] = self._sent.get(key, 0) + 1
        elif event in ("delivered", "not_delivered"):
            sent.discard(str(r.get("id")))
        elif event == "exit":
            self._exited.add(key)

    def unresolved(self, queued: dict[str, int]) -> dict[str, int]:
        """For each running client (name: lines given to its current incarnation), the
        messages not resolved yet: lines it has not read yet (no ``send`` record), and sends
        without an outcome, of its newest incarnation."""
        out = {}
        for name, lines in queued.items():
            inc = self._newest.get(name.casefold())
            key = (name.casefold(), inc or "")
            if key in self._exited:
                continue
            n = max(0, lines - self._sent.get(key, 0)) + len(self._open.get(key, ()))
            if n:
                out[name] = n
        return out


def start_server(lab: ChaosLab, attempts: int = 3) -> None:
    """The server up and healthy, on a free subnet (tried again on another if somebody took
    that one meanwhile)."""
    rng = random.Random()
    for attempt in range(1, attempts + 1):
        lab.set_subnet(free_subnet(lab, rng))
        try:
            lab.up("server")
            return
        except LabError as exc:
            if attempt == attempts or "overlap" not in str(exc):
                raise
            lab.down()


def _run_dir(s: Settings) -> Path:
    if s.out is not None:
        return s.out
    stamp = time.strftime("%Y%m%dT%H%M%S")
    return RUNS_DIR / f"seed{s.seed}-{stamp}{'-broken' if s.broken else ''}"


def run(s: Settings, log: Callable[[str], None] = print) -> int:
    t_start = time.monotonic()
    names = s.names()
    run_dir = _run_dir(s)
    run_dir.mkdir(parents=True, exist_ok=True)
    prefix = "chaos-nat" if s.lab == "nat" else "chaos"
    project = s.project or f"{prefix}-{s.seed}-{uuid.uuid4().hex[:6]}"
    lab: ChaosLab | NatChaosLab
    if s.lab == "nat":
        lab = NatChaosLab(project)
    else:
        lab = ChaosLab(project, run_dir / "compose.chaos.yaml")
    broken = frozenset(names[:1]) if s.broken else frozenset()
    window = (s.warmup_s, s.duration_s - s.quiet_s)
    schedule = plan(s.seed, names, *window)
    missing = sorted(set(REQUIRED) - kinds_covered(schedule, names))
    log(
        f"chaos: seed {s.seed}, {len(names)} clients ({', '.join(names)}), {s.rate:g} msg/s "
        f"each for {s.duration_s:g} s, {len(schedule)} faults; compose project {lab.name}; "
        f"run directory {run_dir}"
    )
    if broken:
        log(f"chaos: {names[0]} is broken on purpose: it runs labkit/chaos/broken_client.py")
    if missing:
        log(f"chaos: the window is too short for every kind of fault; none of: {missing}")
    if isinstance(lab, NatChaosLab):
        routers = ", ".join(f"{v}={k.value}" for v, k in lab.kinds.items())
        log(f"chaos: on the NAT lab ({routers}); clients over lan-a, lan-b, lan-c in turn")
        fleet: Fleet = NatFleet(lab, names, run_dir, broken=broken, log=lambda m: log(f"  {m}"))
        nemesis: Nemesis = NatNemesis(lab, fleet, schedule, log=lambda m: log(f"  {m}"))
    else:
        fleet = Fleet(lab, names, run_dir, broken=broken, log=lambda m: log(f"  {m}"))
        nemesis = Nemesis(lab, fleet, schedule, log=lambda m: log(f"  {m}"))
    traffic = Traffic(fleet, names, s.rate, s.seed)
    timings = Timings()
    stops = {k: threading.Event() for k in ("supervisor", "traffic", "nemesis")}
    threads: list[threading.Thread] = []
    info: dict[str, object] = {
        "settings": {k: (str(v) if isinstance(v, Path) else v) for k, v in asdict(s).items()},
        "project": lab.name,
        "names": names,
        "broken": sorted(broken),
        "schedule": [f.to_json() for f in schedule],
    }
    pending: dict[str, int] = {}
    codes: dict[str, int | None] = {}
    t_traffic = 0.0
    try:
        if isinstance(lab, NatChaosLab):
            lab.start(names)
        else:
            start_server(lab)
        fleet.start_all(START_TIMEOUT_S)
        timings.mark("setup")
        log(f"chaos: server and {len(names)} clients up in {timings.phases['setup']:.1f} s")

        t0 = time.monotonic()
        t_traffic = time.time()
        for name, target, args in (
            ("supervisor", fleet.supervise, (stops["supervisor"],)),
            ("traffic", traffic.run, (stops["traffic"],)),
            ("nemesis", nemesis.run, (t0, stops["nemesis"])),
        ):
            t = threading.Thread(target=target, args=args, name=f"chaos-{name}", daemon=True)
            t.start()
            threads.append(t)
        end = t0 + s.duration_s
        while (left := end - time.monotonic()) > 0:
            time.sleep(min(PROGRESS_S, left))
            if fleet.fatal:
                raise LabError(fleet.fatal)
            elapsed = time.monotonic() - t0
            up = fleet.up()
            log(
                f"chaos: {elapsed:5.0f} s  {sum(traffic.queued.values())} messages queued, "
                f"{len(up)}/{len(names)} clients up, faults on: "
                f"{', '.join(nemesis.active()) or 'none'}"
            )
        stops["traffic"].set()
        stops["nemesis"].set()
        for t in threads[1:]:
            t.join(timeout=30)
        timings.mark("traffic")

        outcomes = Outcomes(fleet.hist_dir)

        def drained() -> bool:
            outcomes.update()
            return not outcomes.unresolved(fleet.queued())

        poll_until(drained, DRAIN_TIMEOUT_S, interval=DRAIN_POLL_S)
        pending = outcomes.unresolved(fleet.queued())
        timings.mark("drain")
        if pending:
            log(f"chaos: still unresolved after {DRAIN_TIMEOUT_S:.0f} s: {pending}")
        stops["supervisor"].set()
        threads[0].join(timeout=10)
        codes = fleet.finish(FINISH_TIMEOUT_S)
        timings.mark("finish")
    except (LabError, AssertionError) as exc:
        log(f"chaos: error: {exc}")
        info["error"] = str(exc)
    finally:
        for stop in stops.values():
            stop.set()
        nemesis.heal()
        fleet.stop_all()
        with contextlib.suppress(Exception):
            (run_dir / "server.log").write_text(lab.logs("server"))
        try:
            lab.close()
        except Exception as exc:
            log(f"chaos: teardown of {lab.name}: {exc}")
        faults = faults_json(nemesis.applied, fleet.events, since=t_traffic)
        (run_dir / "faults.json").write_text(json.dumps(faults, indent=1) + "\n")
        info.update(
            applied=nemesis.applied,
            skipped=nemesis.skipped,
            incarnations=fleet.events,
            queued=dict(traffic.queued),
            skipped_turns=dict(traffic.skipped),
            unresolved_at_finish=pending,
            exit_codes=codes,
        )
    timings.mark("teardown")
    if "error" in info:
        _write_info(run_dir, info, timings, t_start, None)
        return LAB_FAILED

    status = check(run_dir, log)
    timings.mark("check")
    _write_info(run_dir, info, timings, t_start, status)
    kinds = Counter(str(f["kind"]) for f in nemesis.applied)
    comebacks = sum(1 for f in faults if f["kind"] == "restart")
    starts = sum(1 for e in fleet.events if e["event"] == "started")
    phases = ", ".join(f"{k} {v:.1f} s" for k, v in timings.phases.items())
    log(
        f"chaos: seed {s.seed}: {len(nemesis.applied)} faults "
        f"({', '.join(f'{k} {n}' for k, n in sorted(kinds.items()))}), "
        f"{len(nemesis.skipped)} skipped; {comebacks} restarts after a kill or an exit "
        f"({starts} containers started); {time.monotonic() - t_start:.0f} s in all ({phases})"
    )
    log(f"chaos: run directory {run_dir}")
    return status


def _write_info(
    run_dir: Path, info: dict[str, object], t: Timings, t_start: float, status: int | None
) -> None:
    info["seconds"] = {**t.phases, "total": round(time.monotonic() - t_start, 1)}
    info["check_status"] = status
    (run_dir / "run.json").write_text(json.dumps(info, indent=1, default=str) + "\n")


def check(run_dir: Path, log: Callable[[str], None] = print) -> int:
    """chat-check on the run's histories: report.txt (printed) with timeline.png, then
    report.json. Its exit status (0 no violations, 1 violations, 2 it could not check)."""
    hist = str(run_dir / "hist")
    checker = [sys.executable, "-m", "chat_check"]
    env = {**os.environ, "MPLBACKEND": "Agg"}
    text = subprocess.run(
        [*checker, "--examples", "5", "--plot", str(run_dir / "timeline.png"),
         "--faults", str(run_dir / "faults.json"), hist],
        capture_output=True, text=True, env=env, check=False, timeout=600,
    )  # fmt: skip
    if text.returncode == 2 and "matplotlib" in text.stderr:
        log(f"chaos: no timeline ({text.stderr.strip()})")
        text = subprocess.run(
            [*checker, "--examples", "5", hist],
            capture_output=True, text=True, env=env, check=False, timeout=600,
        )  # fmt: skip
    (run_dir / "report.txt").write_text(text.stdout + text.stderr)
    as_json = subprocess.run(
        [*checker, "--json", "--examples", "20", hist],
        capture_output=True, text=True, env=env, check=False, timeout=600,
    )  # fmt: skip
    (run_dir / "report.json").write_text(as_json.stdout)
    log("chat-check " + hist)
    log((text.stdout + text.stderr).rstrip())
    return text.returncode
