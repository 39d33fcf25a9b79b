"""The stack on a three-node swarm made on this machine (``make swarm-up NODES=3``: engines in
node containers, docs/SWARM.md): 200 bots spread over all three nodes exchange their 20 000
messages while a worker node is cut off for 10 s and healed, with zero checker violations
(messages to and from its bots are delivered late or reported not delivered, never lost
silently); a short swarm chaos run (``make swarm-chaos``) with each of the swarm's four faults
(a bot task killed, a worker drained, a worker partitioned, the directory's task restarted),
each in faults.json and shaded on the plot, each seen to happen, with zero violations; then
nothing of it is left.

Its own suite (``make swarm-nodes-test``, CI's ``swarm-nodes`` phase; about ten minutes):
skipped unless ``CHAT_SWARM_NODES_TESTS=1``.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from chat_check.plot import read_shaded
from labkit import swarm as sw
from labkit.chaos import swarmlab
from labkit.util import wait_until

if os.environ.get("CHAT_SWARM_NODES_TESTS") != "1":
    pytest.skip("the three-node suite runs with `make swarm-nodes-test`", allow_module_level=True)

pytestmark = [pytest.mark.slow, pytest.mark.timeout(1200)]

NODES = 3
BOTS = 200
MESSAGES = 100
RATE = 1.0
"""Per bot: 100 messages at 1/s, so the 10 s partition falls well inside the sending."""
PARTITION_S = 10.0
DONE_TIMEOUT_S = 900.0


def note(text: str) -> None:
    print(f"\n[swarm-nodes] {text}", file=sys.stderr, flush=True)


@pytest.fixture(scope="module")
def stack(docker_client: object, chat_images: dict[str, str]) -> Iterator[sw.Swarm]:
    if sw.STATE_FILE.exists():
        pytest.fail(f"{sw.STATE_FILE} exists: a swarm of the lab is up (make swarm-down)")
    swarm = sw.Swarm(say=False)
    start = time.monotonic()
    try:
        swarm.up(bots=BOTS, rate=RATE, messages=MESSAGES, nodes=NODES)
        note(
            f"deploy ({NODES} node engines, images loaded, swarm, stack): "
            f"{time.monotonic() - start:.0f} s"
        )
        yield swarm
    finally:
        sw.Swarm(say=False).down()


def test_200_bots_on_three_nodes_survive_a_partitioned_worker(
    stack: sw.Swarm, tmp_path: Path
) -> None:
    placement = stack.running_tasks(sw.BOTS_SERVICE)
    nodes = {where for _, where in placement}
    note("placement: " + ", ".join(f"{t}@{n}" for t, n in sorted(placement)))
    assert nodes == {f"{sw.NODE_PREFIX}{i}" for i in range(1, NODES + 1)}, placement
    assert {n for _, n in stack.running_tasks(sw.SERVER_SERVICE)} == {f"{sw.NODE_PREFIX}1"}
    start = time.monotonic()
    victim = sw.node(NODES)  # a worker

    def sending() -> bool:  # every task's bots sending (a counter line with sent > 0)
        logs = stack.bot_logs()
        return len(logs) == stack.replicas(sw.BOTS_SERVICE) and all(
            re.search(r"online=\d+ sent=[1-9]", log) for log in logs
        )

    wait_until(sending, 300.0, "bots sending", stack.describe, interval=5.0)
    stack.partition(victim)
    fault_start = time.time()
    time.sleep(PARTITION_S)  # the fault's length
    stack.partition(victim, heal=True)
    note(f"{victim.name} partitioned {fault_start:.0f}..{time.time():.0f}")
    stack.wait_bots_done(DONE_TIMEOUT_S, interval=10.0)
    took = time.monotonic() - start
    result = stack.check(tmp_path / "hist", restart=False)
    messages = result.messages
    assert messages is not None, result.report
    note(
        f"{messages} messages in {took:.0f} s ({messages / took:.0f}/s); check "
        f"{result.seconds:.0f} s\n{result.report}"
    )
    assert result.code == 0, result.report
    assert messages >= BOTS * MESSAGES, result.report


CHAOS = swarmlab.Settings(seed=1, duration_s=90.0, bots=80, rate=1.0)
"""Four bot tasks over the three nodes; seed 1's schedule in 90 s: the directory restarted, a
task killed, a worker partitioned, the other drained (checked below, without Docker first)."""


def test_swarm_chaos_run_applies_each_fault_and_keeps_the_promise(
    stack: sw.Swarm, tmp_path: Path
) -> None:
    tasks, _ = sw.tasks_for(CHAOS.bots)
    workers = [f"{sw.NODE_PREFIX}{i}" for i in range(2, NODES + 1)]
    planned = swarmlab.plan(
        CHAOS.seed, tasks, workers, CHAOS.warmup_s, CHAOS.duration_s - CHAOS.quiet_s
    )
    assert {f.kind for f in planned} == set(swarmlab.KINDS), planned
    start = time.monotonic()
    result = swarmlab.run_on(stack, dataclasses.replace(CHAOS, out=tmp_path / "run"), log=note)
    note(f"swarm chaos run: {time.monotonic() - start:.0f} s, {result.figures}\n{result.report}")
    assert result.status == 0, result.report  # chat-check: no violation of any kind
    messages = result.figures.get("messages")
    assert isinstance(messages, int) and messages > 0, result.report

    faults = json.loads((result.run_dir / "faults.json").read_text())
    assert sorted(f["kind"] for f in faults) == sorted(f.kind for f in planned), faults
    assert not [f for f in faults if f.get("note")], faults  # each ended as planned
    # Shaded on the timeline: the PNG's own list of what it drew, one per fault.
    shaded = read_shaded(result.run_dir / "timeline.png")
    assert sorted((s["kind"], s["target"]) for s in shaded) == sorted(
        (f["kind"], f["target"]) for f in faults
    )
    assert all(s["as"] == "span" and s["x1"] > s["x0"] >= 0 for s in shaded), shaded
    # And each happened: the swarm shows it.
    for f in faults:
        seen = f["observed"]
        if f["kind"] in ("kill_task", "restart_directory"):  # a new task in its place
            assert seen["replaced_by"] and seen["replaced_by"] != seen["task"], f
        elif f["kind"] == "drain_node":  # the node's availability changed and came back
            assert seen["availability"] == ["active", "drain", "active"], f
        elif f["kind"] == "partition_node":  # the cut dropped datagrams
            assert seen["dropped"] > 0, f


def test_down_leaves_no_node() -> None:
    sw.Swarm(say=False).down()
    left = subprocess.run(
        ["docker", "ps", "-aq", "--filter", f"name=^{sw.NODE_PREFIX}"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    assert left == []
    assert sw.NODE_NETWORK not in sw.engine_networks()
    assert not sw.STATE_FILE.exists()
