"""A chaos run on the Swarm stack (``make swarm-chaos``, docs/SWARM.md "Faults"): the bots of
the stack send for ``duration`` seconds while a seeded schedule of the swarm's own faults runs
against it, then their histories are collected from every node and judged by chat-check, with
the faults shaded on its ``--plot`` timeline.

The faults (:data:`KINDS`), one at a time, :data:`SETTLE_S` apart:

* ``kill_task`` a bot task (``chat_bots.SLOT``): SIGKILL to its container on its node; the
  swarm starts another task for the slot (``restart_policy``: 10 s later, maybe elsewhere). The
  fault lasts until the replacement runs;
* ``drain_node`` a worker: ``docker node update --availability drain``, then ``active``. Its
  bot tasks are stopped (their bots sign out) and started on the other nodes, with the same
  names and keys (chat-bots ``--key-seed``);
* ``partition_node`` a worker: every datagram in or out of its node container's eth0 dropped
  (iptables), then healed (:meth:`labkit.swarm.Swarm.partition`);
* ``restart_directory``: ``docker service update --force chat_server``, a new task of the
  directory (same volume: key and bound names); every bot loses it and signs in again. The
  fault lasts until the new task is healthy.

A single-node swarm has no worker: drain and partition are left out of its schedule (a
drained manager would leave the directory nowhere to run). The schedule is the same
:class:`labkit.chaos.schedule.Fault` list as the main lab's, and faults.json the same format
(``start``, ``end``, ``kind``, ``target``, ``detail``, ``note``), plus ``observed``: what the
swarm showed (the task replaced and its replacement, the node's availability before, during
and after, the datagrams dropped).
"""

from __future__ import annotations

import argparse
import json
import random
import re
import shutil
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

from labkit import swarm as sw
from labkit.chaos.nemesis import FaultRunner
from labkit.chaos.run import RUNS_DIR, Timings, check
from labkit.chaos.schedule import Fault
from labkit.util import LabError, poll_until, wait_until

KINDS = ("kill_task", "drain_node", "partition_node", "restart_directory")
NODE_KINDS = frozenset({"drain_node", "partition_node"})
"""Faults of a worker node: none on a single-node swarm."""
DURATIONS_S: dict[str, tuple[float, float]] = {
    # From the kill to the replacement running: restart_policy.delay (10 s), then a start.
    "kill_task": (12.0, 15.0),
    "drain_node": (6.0, 12.0),
    # Short of the directory's 5 s session timeout to well past it: the cut-off bots lose it.
    "partition_node": (5.0, 10.0),
    # From the update to a new task healthy (a start, then the first PING answered).
    "restart_directory": (8.0, 12.0),
}
WEIGHTS = {"kill_task": 3, "drain_node": 1, "partition_node": 2, "restart_directory": 1}
SETTLE_S = 4.0
"""Quiet time after each fault (its last effects: sign-ins again, tasks settling)."""
MEAN_GAP_S = 2.0
"""Mean extra time between two faults, drawn uniformly in [0, 2 x this]."""
REPLACE_WAIT_S = 45.0
"""At a fault's end, how long to wait for the replacement of a task it killed."""
SENDING_TIMEOUT_S = 180.0
PROGRESS_S = 15.0
SAMPLE_S = 2.0
"""How often a run samples the directory's socket (directory.json)."""
LAB_FAILED = 3


def plan(seed: int, slots: int, workers: list[str], start_s: float, end_s: float) -> list[Fault]:
    """The faults of a run on a stack of ``slots`` bot tasks and these ``workers``, one at a
    time, starting at or after ``start_s`` and over by ``end_s`` (seconds since the traffic
    started). Each kind the stack allows comes first, once, in an order drawn from ``seed``
    (while they fit); then draws by :data:`WEIGHTS`."""
    if slots < 1:
        raise ValueError("no bot task to break")
    rng = random.Random(seed)
    kinds = [k for k in KINDS if workers or k not in NODE_KINDS]
    required = list(kinds)
    rng.shuffle(required)
    weights = [WEIGHTS[k] for k in kinds]
    out: list[Fault] = []
    t = start_s + rng.uniform(0.0, MEAN_GAP_S)
    while True:
        kind = required.pop(0) if required else rng.choices(kinds, weights)[0]
        lo, hi = DURATIONS_S[kind]
        if t + lo > end_s:
            break
        duration = min(rng.uniform(lo, hi), end_s - t)
        if kind == "kill_task":
            target = f"{sw.BOTS_SERVICE}.{rng.randint(1, slots)}"
        elif kind in NODE_KINDS:
            target = rng.choice(workers)
        else:
            target = sw.SERVER_SERVICE
        out.append(Fault(at_s=t, duration_s=duration, kind=kind, target=target))
        t += duration + SETTLE_S + rng.uniform(0.0, 2 * MEAN_GAP_S)
    return out


class SwarmNemesis(FaultRunner):
    """The faults of :func:`plan` on a running stack."""

    INSTANT = frozenset()

    def __init__(
        self, swarm: sw.Swarm, schedule: list[Fault], *, log: Callable[[str], None] = print
    ) -> None:
        super().__init__(schedule, log=log)
        self.swarm = swarm
        self.observed: dict[Fault, dict[str, object]] = {}

    def detail(self, f: Fault) -> str:
        seen = self.observed.get(f, {})
        if f.kind in ("kill_task", "restart_directory"):
            return f"task {seen.get('task', '?')} -> {seen.get('replaced_by') or 'none'}"
        if f.kind == "drain_node":
            avail = seen.get("availability", [])
            return "availability " + " -> ".join(map(str, avail if isinstance(avail, list) else []))
        if f.kind == "partition_node":
            return f"{seen.get('dropped', 0)} datagrams dropped"
        return ""

    def _record(self, f: Fault, start: float, end: float, note: str) -> None:
        super()._record(f, start, end, note)
        self.applied[-1]["observed"] = dict(self.observed.get(f, {}))

    def _apply(self, f: Fault) -> Callable[[], str] | None:
        s = self.swarm
        seen = self.observed.setdefault(f, {})
        if f.kind in ("kill_task", "restart_directory"):
            service, _, slot = f.target.rpartition(".")
            if f.kind == "kill_task":
                task = s.running_task(service, int(slot))
                if task is None:
                    self._skip(f, "no running task in the slot")
                    return None
                s.kill_task(task)
            else:
                service = sw.SERVER_SERVICE
                task = s.restart_directory()
            seen.update(task=task.id, node=task.node)
            slot_n = task.slot

            def replaced() -> str:
                def new_task() -> bool:
                    now = s.running_task(service, slot_n)
                    if now is None or now.id == task.id:
                        return False
                    healthy = service != sw.SERVER_SERVICE or s.server_healthy()
                    if healthy:
                        seen.update(replaced_by=now.id, replaced_on=now.node)
                    return healthy

                if not poll_until(new_task, REPLACE_WAIT_S, interval=0.5):
                    return f"no new task running within {REPLACE_WAIT_S:.0f} s of the end"
                return ""

            return replaced
        if f.kind == "drain_node":
            before = s.availability(f.target)
            moved = [t.name for t in s.tasks(sw.BOTS_SERVICE) if t.node == f.target]
            s.set_availability(f.target, "drain")
            seen.update(availability=[before, s.availability(f.target)], tasks_on_it=moved)

            def undrain() -> str:
                s.set_availability(f.target, "active")
                avail = seen["availability"]
                assert isinstance(avail, list)
                avail.append(s.availability(f.target))
                seen["tasks_on_it_after"] = [
                    t.name for t in s.tasks(sw.BOTS_SERVICE) if t.node == f.target
                ]
                return ""

            return undrain
        if f.kind == "partition_node":
            victim = s.node_named(f.target)
            if victim.container is None:
                self._skip(f, "not a node container (NODES=1)")
                return None
            s.partition(victim)

            def heal() -> str:
                seen["dropped"] = s.dropped(victim)
                s.partition(victim, heal=True)
                return ""

            return heal
        raise ValueError(f"unknown fault kind {f.kind!r}")


@dataclass(frozen=True, kw_only=True)
class Settings:
    seed: int = 1
    duration_s: float = 120.0
    """Seconds of traffic (the faults run inside it)."""
    bots: int = 80
    rate: float = 1.0
    """Messages per second per bot."""
    nodes: int = 3
    """For a swarm made by the run (none up): engines in containers (1: this machine's)."""
    warmup_s: float = 8.0
    quiet_s: float = 20.0
    """After the last fault: bots back, and every message sent under it resolved (10 s)."""
    out: Path | None = None
    keep: bool = False
    """Leave a swarm the run made up (else: down at the end)."""


@dataclass
class Result:
    status: int
    """chat-check's exit status (0: no violations), or :data:`LAB_FAILED`."""
    run_dir: Path
    faults: list[dict[str, object]] = field(default_factory=list)
    report: str = ""
    figures: dict[str, object] = field(default_factory=dict)


COUNTS_RE = re.compile(r"([\d,]+) messages: ([\d,]+) delivered, ([\d,]+) not delivered")


def sample_directory(swarm: sw.Swarm, stop: threading.Event, out: list[dict[str, object]]) -> None:
    """Every ``SAMPLE_S`` until ``stop``: the directory's socket (``Swarm.directory_socket``:
    receive queue, drops) with the wall clock, appended to ``out`` (the run's directory.json),
    so a run whose lookups go unanswered tells a directory behind on its datagrams (a full
    queue, drops growing) from datagrams that never reach it (an empty queue)."""
    while not stop.wait(SAMPLE_S):
        sample: dict[str, object] = {"wall": round(time.time(), 2)}
        try:
            got = swarm.directory_socket()
            sample.update(got if got is not None else {"task": "none"})
        except (LabError, subprocess.SubprocessError) as exc:
            sample["error"] = str(exc)[:200]
        out.append(sample)


def clear_histories(swarm: sw.Swarm) -> None:
    """Remove the bots' history files of earlier runs on every node (the bots stopped)."""
    for n in swarm.nodes():
        r = swarm.docker("volume", "ls", "-q", "--filter", f"name=^{sw.BOTS_VOLUME}$", node=n)
        if not r.stdout.strip():
            continue
        swarm.docker(
            "run", "--rm", "--network", "none", "-v", f"{sw.BOTS_VOLUME}:/data",
            "--entrypoint", "sh", sw.image("client"), "-c", f"rm -f {sw.HIST_DIR}/*.jsonl",
            node=n, timeout=120,
        )  # fmt: skip


def run_on(swarm: sw.Swarm, s: Settings, log: Callable[[str], None] = print) -> Result:
    """One chaos run on the stack that is up: bots restarted fresh, traffic and faults,
    the bots stopped, histories collected and checked (run directory: report.txt,
    report.json, timeline.png, faults.json, run.json)."""
    t_start = time.monotonic()
    stamp = time.strftime("%Y%m%dT%H%M%S")
    run_dir = s.out or RUNS_DIR / f"swarm-seed{s.seed}-{stamp}"
    if run_dir.exists():
        shutil.rmtree(run_dir)
    run_dir.mkdir(parents=True)
    timings = Timings()
    tasks, _ = sw.tasks_for(s.bots)
    workers = [n.name for n in swarm.nodes()[1:]]
    schedule = plan(s.seed, tasks, workers, s.warmup_s, s.duration_s - s.quiet_s)
    kinds = sorted({f.kind for f in schedule})
    log(
        f"swarm-chaos: seed {s.seed}, {s.bots} bots at {s.rate:g}/s for {s.duration_s:g} s on "
        f"{len(swarm.nodes())} node(s); {len(schedule)} faults ({', '.join(kinds)}); "
        f"run directory {run_dir}"
    )
    missing = [k for k in KINDS if k not in kinds and (workers or k not in NODE_KINDS)]
    if missing:
        log(f"swarm-chaos: the window is too short for: {', '.join(missing)}")
    nemesis = SwarmNemesis(swarm, schedule, log=lambda m: log(f"  {m}"))
    info: dict[str, object] = {
        "settings": {k: (str(v) if isinstance(v, Path) else v) for k, v in asdict(s).items()},
        "schedule": [f.to_json() for f in schedule],
    }
    stop = threading.Event()
    samples: list[dict[str, object]] = []
    thread: threading.Thread | None = None
    status = LAB_FAILED
    report = ""
    try:
        swarm.scale(0)  # a consistent cut of any earlier run, then its histories go
        clear_histories(swarm)
        swarm.scale(s.bots, env={"BOTS_RATE": f"{s.rate:g}", "BOTS_MESSAGES": "0"})

        def sending() -> bool:
            logs = swarm.bot_logs()
            return len(logs) == tasks and all(
                re.search(r"online=\d+ sent=[1-9]", log) for log in logs
            )

        wait_until(sending, SENDING_TIMEOUT_S, "bots sending", swarm.describe, interval=2.0)
        timings.mark("setup")
        placement = sorted(swarm.running_tasks(sw.BOTS_SERVICE))
        info["placement"] = placement
        log("swarm-chaos: bots sending; placement " + ", ".join(f"{t}@{n}" for t, n in placement))
        t0 = time.monotonic()
        info["traffic_start"] = time.time()
        thread = threading.Thread(
            target=nemesis.run, args=(t0, stop), name="swarm-nemesis", daemon=True
        )
        thread.start()
        sampler = threading.Thread(
            target=sample_directory, args=(swarm, stop, samples), name="swarm-sampler", daemon=True
        )
        sampler.start()
        end = t0 + s.duration_s
        while (left := end - time.monotonic()) > 0:
            time.sleep(min(PROGRESS_S, left))  # the traffic's length: nothing to wait on
            log(
                f"swarm-chaos: {time.monotonic() - t0:5.0f} s, faults on: "
                f"{', '.join(nemesis.active()) or 'none'}"
            )
        stop.set()
        thread.join(timeout=REPLACE_WAIT_S + 60)
        timings.mark("traffic")
        swarm.scale(0)  # every bot stops sending, waits for its outcomes, signs out
        timings.mark("stop")
        files = swarm.collect(run_dir / "hist")
        timings.mark("collect")
        log(f"swarm-chaos: {files} histories collected")
    except (LabError, subprocess.SubprocessError, AssertionError) as exc:
        log(f"swarm-chaos: error: {exc}")
        info["error"] = str(exc)
    finally:
        stop.set()
        if thread is not None:
            thread.join(timeout=REPLACE_WAIT_S + 60)
        nemesis.heal()
        for f in nemesis.applied:  # nothing left drained
            if f["kind"] == "drain_node":
                try:
                    if swarm.availability(str(f["target"])) != "active":
                        swarm.set_availability(str(f["target"]), "active")
                except (LabError, subprocess.SubprocessError) as exc:
                    log(f"swarm-chaos: {f['target']} not made active again: {exc}")
        applied = sorted(nemesis.applied, key=lambda x: float(x["start"]))  # type: ignore[arg-type]
        (run_dir / "faults.json").write_text(json.dumps(applied, indent=1) + "\n")
        (run_dir / "directory.json").write_text(json.dumps(samples, indent=1) + "\n")
        try:
            (run_dir / "server.log").write_text(swarm.directory_log())
        except (LabError, subprocess.SubprocessError) as exc:
            log(f"swarm-chaos: the directory's log not saved: {exc}")
        info.update(applied=applied, skipped=nemesis.skipped)
    if "error" not in info:
        status = check(run_dir, log)
        timings.mark("check")
        report = (run_dir / "report.txt").read_text()
    figures: dict[str, object] = {}
    m = COUNTS_RE.search(report)
    traffic_s = timings.phases.get("traffic", 0.0)
    if m:
        messages, delivered, failed = (int(g.replace(",", "")) for g in m.groups())
        figures = {
            "messages": messages,
            "delivered": delivered,
            "not_delivered": failed,
            "messages_per_s": round(messages / traffic_s, 1) if traffic_s else None,
        }
    info["seconds"] = {**timings.phases, "total": round(time.monotonic() - t_start, 1)}
    info["figures"] = figures
    info["check_status"] = status
    (run_dir / "run.json").write_text(json.dumps(info, indent=1, default=str) + "\n")
    counted = Counter(str(f["kind"]) for f in nemesis.applied)
    phases = ", ".join(f"{k} {v:.1f} s" for k, v in timings.phases.items())
    log(
        f"swarm-chaos: seed {s.seed}: {len(nemesis.applied)} faults "
        f"({', '.join(f'{k} {n}' for k, n in sorted(counted.items()))}), "
        f"{len(nemesis.skipped)} skipped; {figures or 'no figures'}; "
        f"{time.monotonic() - t_start:.0f} s in all ({phases}); exit {status}"
    )
    return Result(status, run_dir, list(nemesis.applied), report, figures)


def run(s: Settings, log: Callable[[str], None] = print) -> int:
    """On the swarm that is up, else on one made for the run (``s.nodes``) and taken down
    after it (unless ``s.keep``). chat-check's exit status, or :data:`LAB_FAILED`."""
    made = not sw.STATE_FILE.exists()
    swarm = sw.Swarm()
    try:
        if made:
            swarm.up(bots=s.bots, rate=s.rate, nodes=s.nodes)
        return run_on(swarm, s, log).status
    except (LabError, subprocess.SubprocessError) as exc:
        log(f"swarm-chaos: error: {exc}")
        return LAB_FAILED
    finally:
        if made and not s.keep:
            sw.Swarm().down()


def main(argv: list[str] | None = None) -> int:
    d = Settings()
    p = argparse.ArgumentParser(prog="python -m labkit.chaos.swarmlab", description=__doc__)
    p.add_argument("--seed", type=int, default=d.seed, help="the fault schedule (%(default)s)")
    p.add_argument("--duration", type=float, default=d.duration_s, help="seconds of traffic")
    p.add_argument("--bots", type=int, default=d.bots, help="bot clients (%(default)s)")
    p.add_argument("--rate", type=float, default=d.rate, help="messages/s per bot")
    p.add_argument(
        "--nodes", type=int, default=d.nodes, help="for a swarm made by the run (%(default)s)"
    )
    p.add_argument("--out", type=Path, help="run directory (chaos-runs/swarm-seed<N>-<time>)")
    p.add_argument("--keep", action="store_true", help="leave a swarm the run made up")
    a = p.parse_args(argv)
    if a.bots < 2 or a.duration < 30:
        p.error("--bots at least 2, --duration at least 30 s")
    s = Settings(
        seed=a.seed, duration_s=a.duration, bots=a.bots, rate=a.rate, nodes=a.nodes, out=a.out,
        keep=a.keep,
    )  # fmt: skip
    return run(s)


if __name__ == "__main__":
    sys.exit(main())
