"""Carrying out a fault schedule (:mod:`labkit.chaos.schedule`) on a running lab, with
:mod:`labkit.faults`, and writing down what was really done, when (faults.json).

A fault whose target is not up at its time (a client being started again) is skipped, and so is
a partition that cannot have the network to itself within :data:`NETWORK_WAIT_S`; both are
listed in :attr:`Nemesis.skipped`. Every fault is undone at its end, and :meth:`Nemesis.heal`
undoes whatever is still on (the end of the run, or an error).
"""

from __future__ import annotations

import heapq
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from labkit import faults
from labkit.chaos.fleet import Fleet
from labkit.chaos.schedule import SERVER, Fault
from labkit.compose import Compose
from labkit.util import LabError

if TYPE_CHECKING:
    from docker.models.containers import Container

NETWORK_WAIT_S = 3.0
"""How long a partition may wait for a starting container to have its address."""


@dataclass
class Active:
    fault: Fault
    start_wall: float
    undo: Callable[[], str]
    """Ends the fault; returns a note (empty if all went as planned)."""


class FaultRunner:
    """The schedule's clock: each fault started (:meth:`_apply`) and ended (the undo it
    returned) at its time, and recorded (faults.json). Subclasses say how to apply a fault:
    :class:`Nemesis` on a compose lab, :class:`labkit.chaos.swarmlab.SwarmNemesis` on the
    Swarm stack."""

    INSTANT: frozenset[str] = frozenset({"kill"})
    """Kinds recorded as a moment (a line on the plot), undone at once."""

    def __init__(self, schedule: list[Fault], *, log: Callable[[str], None] = print) -> None:
        self.schedule = sorted(schedule, key=lambda f: f.at_s)
        self.log = log
        self.applied: list[dict[str, object]] = []
        """faults.json: {start, end, kind, target, detail} of each fault carried out."""
        self.skipped: list[dict[str, object]] = []
        self._active: dict[int, Active] = {}
        self._ends: list[tuple[float, int]] = []
        self._lock = threading.Lock()

    # --- the schedule ----------------------------------------------------------------------

    def run(self, t0: float, stop: threading.Event) -> None:
        """Start and end each fault at its time (``t0``: time.monotonic() of offset 0) until
        the schedule is done or ``stop`` is set; then heal what is still on."""
        pending = list(enumerate(self.schedule))
        pending.reverse()
        try:
            while not stop.is_set() and (pending or self._ends):
                next_start = t0 + pending[-1][1].at_s if pending else float("inf")
                next_end = self._ends[0][0] if self._ends else float("inf")
                due = min(next_start, next_end)
                wait = due - time.monotonic()
                if wait > 0 and stop.wait(wait):
                    break
                if next_end <= next_start:
                    _, i = heapq.heappop(self._ends)
                    self._end(i)
                else:
                    i, fault = pending.pop()
                    self._start(i, fault, t0)
        finally:
            self.heal()

    def _start(self, i: int, f: Fault, t0: float) -> None:
        try:
            undo = self._apply(f)
        except Exception as exc:  # a fault the lab could not carry out is noted, not fatal
            self._skip(f, f"could not be applied: {type(exc).__name__}: {exc}")
            return
        if undo is None:
            return
        now = time.time()
        with self._lock:
            self._active[i] = Active(f, now, undo)
        self.log(f"fault: {f.describe()}")
        if f.kind in self.INSTANT:
            self._record(f, now, now, "")
            with self._lock:
                del self._active[i]
            return
        heapq.heappush(self._ends, (t0 + f.end_s, i))

    def _end(self, i: int) -> None:
        with self._lock:
            active = self._active.pop(i, None)
        if active is None:
            return
        try:
            note = active.undo()
        except Exception as exc:
            note = f"undo failed: {type(exc).__name__}: {exc}"
        if note:
            self.log(f"fault: end of {active.fault.kind} {active.fault.target}: {note}")
        self._record(active.fault, active.start_wall, time.time(), note)

    def active(self) -> list[str]:
        """What is on now, for the progress lines."""
        with self._lock:
            return [a.fault.describe() for a in self._active.values()]

    def heal(self) -> None:
        """Undo every fault still on."""
        with self._lock:
            ids = list(self._active)
        for i in ids:
            self._end(i)
        self._ends.clear()

    def detail(self, f: Fault) -> str:
        """faults.json's ``detail`` of a fault carried out."""
        del f
        return ""

    def _record(self, f: Fault, start: float, end: float, note: str) -> None:
        entry: dict[str, object] = {
            "start": start, "end": end, "kind": f.kind, "target": f.target,
            "detail": self.detail(f),
        }  # fmt: skip
        if note:
            entry["note"] = note
        self.applied.append(entry)

    def _skip(self, f: Fault, why: str) -> None:
        self.log(f"fault skipped: {f.describe()}: {why}")
        self.skipped.append({**f.to_json(), "why": why})

    def _apply(self, f: Fault) -> Callable[[], str] | None:
        """Start ``f``; how to end it (None: skipped)."""
        raise NotImplementedError


class Nemesis(FaultRunner):
    """The faults of :mod:`labkit.chaos.schedule` on a compose lab and its fleet of clients."""

    def __init__(
        self,
        lab: Compose,
        fleet: Fleet,
        schedule: list[Fault],
        *,
        log: Callable[[str], None] = print,
    ) -> None:
        super().__init__(schedule, log=log)
        self.lab = lab
        self.fleet = fleet

    def detail(self, f: Fault) -> str:
        if f.kind == "kill":
            return f"down >= {f.duration_s:.1f} s"
        return f"{f.probability:.0%}" if f.kind in ("loss", "duplicate") else ""

    # --- one fault -------------------------------------------------------------------------

    def _target(self, f: Fault) -> Container | None:
        if f.target == SERVER:
            return self.lab.container("server")
        return self.fleet.container(f.target)

    def _apply(self, f: Fault) -> Callable[[], str] | None:
        """Start ``f``; how to end it (None: skipped)."""
        if f.kind == "partition":
            return self._partition(f)
        container = self._target(f)
        if container is None:
            self._skip(f, "target not up")
            return None
        if f.kind in ("loss", "duplicate"):
            place = self.place(f.target, container)
            add = faults.loss if f.kind == "loss" else faults.duplicate
            rule = add(place, f.probability)

            def remove_rule() -> str:
                try:
                    packets = rule.packets()
                    rule.remove()
                except (LabError, LookupError):
                    return "the container is gone (its rule with it)"
                return "" if packets else "no datagram matched"

            return remove_rule
        if f.kind == "pause":
            container.pause()

            def unpause() -> str:
                try:
                    container.unpause()
                except Exception as exc:  # the container is gone
                    return f"unpause: {exc}"
                return ""

            return unpause
        if f.kind == "kill":
            if f.target == SERVER:
                raise ValueError("the schedule kills clients only")
            self.fleet.kill(f.target, container, f.duration_s)
            return lambda: ""
        raise ValueError(f"unknown fault kind {f.kind!r}")

    def place(self, target: str, container: Container) -> faults.Place:
        """Where ``target``'s datagram faults go: its container's network namespace."""
        del target
        return self.lab.place(container.name)

    def _partition(self, f: Fault) -> Callable[[], str] | None:
        lock = self.fleet.network_lock
        if not lock.acquire(timeout=NETWORK_WAIT_S):
            self._skip(f, f"a container was being started for {NETWORK_WAIT_S:.0f} s")
            return None
        try:
            container = self._target(f)
            if container is None:
                self._skip(f, "target not up")
                lock.release()
                return None
            network = self.lab.network()
            container.reload()
            settings = container.attrs["NetworkSettings"]["Networks"][network.name]
            address = settings["IPAddress"]
            # The server's alias is its service name, which clients resolve: it must come back.
            aliases = list(settings.get("Aliases") or [])
            network.disconnect(container)
        except BaseException:
            lock.release()
            raise

        def heal() -> str:
            import docker.errors

            try:
                faults.reconnect(network, container, address, aliases)
                container.reload()
                nets = container.attrs["NetworkSettings"]["Networks"]
                now = nets.get(network.name, {}).get("IPAddress")
            except docker.errors.NotFound:
                return "its container is gone (the client gave up while cut off)"
            except Exception as exc:
                return f"not reconnected: {type(exc).__name__}: {str(exc)[:160]}"
            finally:
                lock.release()
            return "" if now == address else f"came back as {now}, not {address}"

        return heal


def faults_json(
    applied: list[dict[str, object]], incarnations: list[dict[str, object]], since: float
) -> list[dict[str, object]]:
    """faults.json: the faults carried out, and what the fleet did about them (after ``since``,
    the traffic's start): a ``restart`` per client from the first start of its next
    incarnation to that one's sign-in (refused attempts, while the server still lists the dead
    one, included), and an ``exit`` per incarnation that had signed in and ended by itself
    (not killed) while the run went on, e.g. after a long partition."""
    out = list(applied)
    began: dict[str, float] = {}
    signed_in: set[object] = set()
    for e in incarnations:
        wall = e.get("wall")
        if not isinstance(wall, float):
            continue
        client, container = str(e["client"]), e["container"]
        if e["event"] == "started":
            began.setdefault(client, wall)
        elif e["event"] == "signed_in":
            signed_in.add(container)
            if client in began:
                start = began.pop(client)
                if start >= since:
                    out.append({"start": start, "end": wall, "kind": "restart", "target": client})
        elif (
            e["event"] == "ended"
            and container in signed_in
            and not e.get("killed")
            and not e.get("final")
            and wall >= since
        ):
            out.append(
                {"start": wall, "end": wall, "kind": "exit", "target": client,
                 "detail": f"exit {e.get('code')}"}
            )  # fmt: skip
    out.sort(key=lambda x: float(x["start"]))  # type: ignore[arg-type]
    return out
