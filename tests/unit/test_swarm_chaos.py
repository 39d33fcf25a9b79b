"""The swarm chaos run's schedule (labkit.chaos.swarmlab.plan), without Docker: one seed gives
one schedule, with each of the swarm's faults the stack allows (in a window of 72 s, as the
three-node test's), one at a time, in the window."""

from __future__ import annotations

import itertools

import pytest

from labkit import swarm as sw
from labkit.chaos.swarmlab import DURATIONS_S, KINDS, NODE_KINDS, SETTLE_S, plan

WORKERS = ["chat-node-2", "chat-node-3"]


@pytest.mark.parametrize("seed", range(1, 8))
def test_a_seed_gives_one_schedule_with_every_swarm_fault(seed: int) -> None:
    faults = plan(seed, 4, WORKERS, 8.0, 80.0)
    assert faults == plan(seed, 4, WORKERS, 8.0, 80.0)
    assert faults != plan(seed + 100, 4, WORKERS, 8.0, 80.0)
    assert {f.kind for f in faults} == set(KINDS)
    for f in faults:
        assert f.at_s >= 8.0 and f.end_s <= 80.0
        lo, hi = DURATIONS_S[f.kind]
        assert lo <= f.duration_s <= hi
        if f.kind == "kill_task":
            assert f.target in {f"{sw.BOTS_SERVICE}.{i}" for i in range(1, 5)}
        elif f.kind in NODE_KINDS:
            assert f.target in WORKERS  # never the manager: the directory runs there
        else:
            assert f.target == sw.SERVER_SERVICE
    for a, b in itertools.pairwise(faults):  # one at a time, settled between
        assert b.at_s >= a.end_s + SETTLE_S


def test_a_single_node_swarm_gets_no_node_faults() -> None:
    faults = plan(3, 2, [], 8.0, 300.0)
    assert {f.kind for f in faults} == {"kill_task", "restart_directory"}


def test_a_short_window_holds_what_fits() -> None:
    assert plan(1, 4, WORKERS, 8.0, 10.0) == []
    with pytest.raises(ValueError):
        plan(1, 0, WORKERS, 8.0, 80.0)
