"""The fault schedule of a chaos run, drawn from its seed (pure: no clock, no Docker).

:func:`plan` returns the faults of a run as offsets from the moment the traffic starts. The same
seed, names and window give the same schedule. Every kind of fault the run promises appears in
it at least once when the window has room (:data:`REQUIRED`); the rest are drawn by
:data:`WEIGHTS`.

Kinds (docs/CHAOS.md): ``loss`` and ``duplicate`` (iptables in the target's network namespace,
with ``probability``), ``partition`` (off the network), ``pause`` (``docker pause``), ``kill``
(SIGKILL; ``duration_s`` is how long the client stays down before it is started again under the
same name). Targets are client names or :data:`SERVER`.

Rules that keep the schedule something the lab can carry out and a reader can follow:

* one process fault (partition, pause, kill) at a time per target, with :data:`SETTLE_S`
  between two; a kill keeps its target busy for :data:`RESTART_ALLOWANCE_S` more (the restart
  may be refused while the server still lists the dead client);
* one partition at a time in the whole lab: Docker gives a reconnected container the lowest free
  address, which is its own only if nobody else left the network meanwhile;
* at most :data:`MAX_PROCESS_FAULTS` process faults at once, so that most clients talk;
* one loss and one duplication rule at a time per target.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass

SERVER = "server"
PROCESS_KINDS = frozenset({"partition", "pause", "kill"})
RULE_KINDS = frozenset({"loss", "duplicate"})

# (kind, "client" | "server") -> (shortest, longest) seconds.
DURATIONS_S: dict[tuple[str, str], tuple[float, float]] = {
    ("loss", "client"): (5.0, 20.0),
    ("loss", "server"): (5.0, 15.0),
    ("duplicate", "client"): (5.0, 20.0),
    ("duplicate", "server"): (5.0, 15.0),
    # Up to 8 s: past the 5 s after which client and server give each other up, so a long cut
    # ends with the client exiting (and started again), a short one with nothing noticed.
    ("partition", "client"): (1.0, 8.0),
    ("pause", "client"): (1.0, 8.0),
    # The server: under the 5 s timeouts, else every client leaves at once (that is a test of
    # its own, tests/integration/test_failures.py).
    ("partition", "server"): (1.0, 3.0),
    ("pause", "server"): (1.0, 3.0),
    ("kill", "client"): (0.5, 6.0),
}
PROBABILITY = (0.10, 0.30)
"""Loss and duplication: the share of the datagrams hit, drawn uniformly from this range."""
REQUIRED: tuple[tuple[str, str], ...] = (
    ("loss", "client"),
    ("loss", "server"),
    ("duplicate", "client"),
    ("duplicate", "server"),
    ("partition", "client"),
    ("partition", "server"),
    ("pause", "client"),
    ("pause", "server"),
    ("kill", "client"),
)
"""Each appears at least once (in a seeded order) before the weighted draws begin."""
WEIGHTS: dict[tuple[str, str], int] = {
    ("loss", "client"): 3,
    ("loss", "server"): 1,
    ("duplicate", "client"): 3,
    ("duplicate", "server"): 1,
    ("partition", "client"): 2,
    ("partition", "server"): 1,
    ("pause", "client"): 2,
    ("pause", "server"): 1,
    ("kill", "client"): 3,
}
MEAN_GAP_S = 4.0
"""Mean time between the starts of two faults (shorter when the window is short, so that every
kind in :data:`REQUIRED` fits)."""
SETTLE_S = 1.0
"""Quiet time on a target between two process faults."""
RESTART_ALLOWANCE_S = 8.0
"""A killed client's restart: refused (name taken) until the server drops the dead one, about
5 s after its last heartbeat; then a container start and a sign-in."""
MAX_PROCESS_FAULTS = 2
SHORT_WINDOW_S = 120.0
RULE_MIN_S = 2.0
RETRY_STEP_S = 0.5


@dataclass(frozen=True, kw_only=True, slots=True)
class Fault:
    at_s: float
    """Start, in seconds since the traffic started."""
    duration_s: float
    kind: str
    target: str
    probability: float = 0.0
    """loss, duplicate: the share of the datagrams dropped or sent twice."""

    @property
    def end_s(self) -> float:
        return self.at_s + self.duration_s

    @property
    def busy_until_s(self) -> float:
        """When the target is free for another process fault."""
        extra = RESTART_ALLOWANCE_S if self.kind == "kill" else 0.0
        return self.end_s + extra + SETTLE_S

    def describe(self) -> str:
        what = f"{self.kind} {self.target}"
        if self.kind in RULE_KINDS:
            what += f" {self.probability:.0%}"
        span = "down" if self.kind == "kill" else "for"
        return f"{what} {span} {self.duration_s:.1f} s"

    def to_json(self) -> dict[str, object]:
        return {
            "at_s": round(self.at_s, 3),
            "duration_s": round(self.duration_s, 3),
            "kind": self.kind,
            "target": self.target,
            "probability": round(self.probability, 3),
        }


def _overlaps(a0: float, a1: float, b0: float, b1: float) -> bool:
    return a0 < b1 and b0 < a1


def _fits(f: Fault, placed: Sequence[Fault]) -> bool:
    if f.kind in PROCESS_KINDS:
        concurrent = 0
        for g in placed:
            if g.kind not in PROCESS_KINDS:
                continue
            if g.target == f.target and _overlaps(f.at_s, f.busy_until_s, g.at_s, g.busy_until_s):
                return False
            if (
                f.kind == "partition"
                and g.kind == "partition"
                and _overlaps(f.at_s, f.end_s + SETTLE_S, g.at_s, g.end_s + SETTLE_S)
            ):
                return False
            if _overlaps(f.at_s, f.end_s, g.at_s, g.busy_until_s):
                concurrent += 1
        return concurrent < MAX_PROCESS_FAULTS
    return not any(
        g.kind == f.kind and g.target == f.target and _overlaps(f.at_s, f.end_s, g.at_s, g.end_s)
        for g in placed
    )


def plan(seed: int, names: Sequence[str], start_s: float, end_s: float) -> list[Fault]:
    """The faults of a run whose clients are ``names``, starting in [``start_s``, ``end_s``)
    and over by ``end_s`` (seconds since the traffic started), in order of start."""
    if not names:
        raise ValueError("no clients to break")
    rng = random.Random(seed)
    window = end_s - start_s
    if window <= 0:
        return []
    gap = min(MEAN_GAP_S, window / (len(REQUIRED) + 5))
    required = list(REQUIRED)
    rng.shuffle(required)
    choices = list(WEIGHTS)
    weights = [WEIGHTS[c] for c in choices]
    placed: list[Fault] = []
    t = start_s + rng.uniform(0.0, gap)
    # Loss and duplication last shorter in a short window (never under RULE_MIN_S).
    rule_scale = min(1.0, window / SHORT_WINDOW_S)
    while t < end_s:
        # The required kinds not placed yet, in their seeded order (the first that fits now
        # is taken); then one weighted draw.
        wanted = required or rng.choices(choices, weights)
        placed_one = None
        for kind, role in wanted:
            lo, hi = DURATIONS_S[(kind, role)]
            if kind in RULE_KINDS:
                lo, hi = max(RULE_MIN_S, lo * rule_scale), max(RULE_MIN_S, hi * rule_scale)
            duration = min(rng.uniform(lo, hi), end_s - t)
            if duration < lo:
                continue
            probability = rng.uniform(*PROBABILITY) if kind in RULE_KINDS else 0.0
            targets = [SERVER] if role == "server" else rng.sample(list(names), len(names))
            for target in targets:
                f = Fault(
                    at_s=t, duration_s=duration, kind=kind, target=target, probability=probability
                )
                if _fits(f, placed):
                    placed.append(f)
                    placed_one = (kind, role)
                    break
            if placed_one:
                break
        if placed_one in required:
            required.remove(placed_one)
        # While required kinds are missing, a failed slot is tried again a little later.
        t += gap * rng.uniform(0.4, 1.6) if placed_one or not required else RETRY_STEP_S
    return placed


def kinds_covered(faults: Sequence[Fault], names: Sequence[str]) -> set[tuple[str, str]]:
    """Which (kind, client|server) pairs of :data:`REQUIRED` the schedule has."""
    client_names = set(names)
    return {
        (f.kind, "client" if f.target in client_names else "server")
        for f in faults
        if f.target in client_names or f.target == SERVER
    }
