"""The chat lab as a Swarm stack (stack.yaml, labkit/swarm.py, docs/SWARM.md) on a single-node
swarm: the stack deploys; two interactive clients on its overlay network talk; a bot task killed
by the swarm comes back and its peers see it leave and return; 200 bots exchange at least 20 000
messages with zero checker violations; ``swarm-down`` leaves nothing the lab made.

Its own suite (``make swarm-test``, CI's "swarm" step; several minutes): ``make
integration-test`` skips it unless ``CHAT_SWARM_TESTS=1``. The tests run in file order on one
stack (module fixture); the last one takes it down and checks what is left.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from labkit import swarm as sw
from labkit.procs import Reaper
from labkit.terminal import TtyClient
from labkit.util import wait_until

if os.environ.get("CHAT_SWARM_TESTS") != "1":
    pytest.skip("the Swarm suite runs with `make swarm-test`", allow_module_level=True)

pytestmark = [pytest.mark.slow, pytest.mark.timeout(1200)]

BIG_BOTS = 200
BIG_MESSAGES = 100
"""Per bot: 200 x 100 = 20 000 messages."""
BIG_RATE = 2.0
KILL_BOTS = 40
"""Two tasks: the killed one's bots have peers in the other."""
LEAVE_TIMEOUT_S = 30.0
"""The directory drops a silent client within 2 x its timeout (5 s) plus a sweep."""
BACK_TIMEOUT_S = 90.0
BIG_TIMEOUT_S = 600.0


def note(text: str) -> None:
    """A timing for the closing note (shown with -s, and in the CI log)."""
    print(f"\n[swarm] {text}", file=sys.stderr, flush=True)


def _found() -> tuple[str, bool]:
    r = subprocess.run(
        ["docker", "info", "--format", "{{.Swarm.LocalNodeState}}"],
        capture_output=True,
        text=True,
        check=True,
    )
    return r.stdout.strip(), sw.GWBRIDGE in sw.engine_networks()


@pytest.fixture(scope="module")
def found(docker_client: object, chat_images: dict[str, str]) -> tuple[str, bool]:
    """The engine's swarm state and whether docker_gwbridge existed, before the suite."""
    return _found()


@pytest.fixture(scope="module")
def stack(found: tuple[str, bool]) -> Iterator[sw.Swarm]:
    swarm = sw.Swarm(say=False)
    start = time.monotonic()
    try:
        swarm.up(bots=sw.BOTS_PER_TASK, rate=1.0)
        note(f"deploy (swarm init if none, stack, healthy): {time.monotonic() - start:.1f} s")
        yield swarm
    finally:
        swarm.down()  # idempotent: the last test already did, unless something failed before


@pytest.fixture
def reaper() -> Iterator[Reaper]:
    r = Reaper()
    yield r
    r.stop_all()


def client(swarm: sw.Swarm, reaper: Reaper, name: str, container: str) -> TtyClient:
    return TtyClient.spawn(
        reaper,
        name,
        swarm.client_argv(name, extra=["--name", container]),
        timeout=15.0,
        start_timeout=60.0,
    )


def container_ip(container: str) -> str:
    fmt = '{{(index .NetworkSettings.Networks "' + sw.NETWORK + '").IPAddress}}'
    r = subprocess.run(
        ["docker", "inspect", "--format", fmt, container],
        capture_output=True,
        text=True,
        check=True,
    )
    return r.stdout.strip()


def test_stack_deploys(stack: sw.Swarm) -> None:
    assert stack.server_healthy()
    assert len(stack.running_tasks(sw.BOTS_SERVICE)) == 1
    net = stack.docker(
        "network", "inspect", sw.NETWORK, "--format", "{{.Driver}} {{.Attachable}}"
    ).stdout.split()
    assert net == ["overlay", "true"]
    mode = stack.docker(
        "service", "inspect", sw.SERVER_SERVICE, "--format", "{{.Spec.EndpointSpec.Mode}}"
    ).stdout.strip()
    assert mode == "dnsrr"


def test_two_clients_talk_on_the_overlay(stack: sw.Swarm, reaper: Reaper) -> None:
    tag = uuid.uuid4().hex[:6]
    alice = client(stack, reaper, "alice", f"chat-swarm-alice-{tag}")
    bob = client(stack, reaper, "bob", f"chat-swarm-bob-{tag}")
    alice.wait_signed_in()
    bob.wait_signed_in()
    assert "bob" in alice.list_names()
    alice.enter("send bob hello across the overlay")
    m = bob.expect(r"alice \(([0-9.]+):\d+\)(?: \(new\))?: hello across the overlay")
    # The directory handed bob alice's own overlay address: it saw her real source address.
    assert m.group(1) == container_ip(f"chat-swarm-alice-{tag}")
    bob.enter("send alice and back")
    alice.expect(r"bob \([0-9.]+:\d+\)(?: \(new\))?: and back")
    for c in (alice, bob):
        c.enter("exit")
        assert c.wait_exit(30) == 0


def test_killed_bot_task_leaves_and_comes_back(
    stack: sw.Swarm, reaper: Reaper, tmp_path: Path
) -> None:
    stack.scale(KILL_BOTS)
    watcher = client(stack, reaper, "watcher", f"chat-swarm-watcher-{uuid.uuid4().hex[:6]}")
    watcher.wait_signed_in()
    slot2 = [f"bot2-{k:03d}" for k in range(KILL_BOTS // 2)]

    def listed() -> set[str]:
        return set(watcher.list_names())

    wait_until(lambda: set(slot2) <= listed(), BACK_TIMEOUT_S, "task 2's bots listed", interval=1.0)
    victim = stack.running_task(sw.BOTS_SERVICE, 2)
    assert victim is not None, stack.tasks(sw.BOTS_SERVICE)
    stack.kill_task(victim)  # SIGKILL: no sign-out; exit 137, so the swarm restarts it
    wait_until(
        lambda: not set(slot2) & listed(), LEAVE_TIMEOUT_S, "task 2's bots gone", interval=1.0
    )
    wait_until(lambda: set(slot2) <= listed(), BACK_TIMEOUT_S, "task 2's bots back", interval=1.0)
    watcher.enter("exit")
    assert watcher.wait_exit(30) == 0
    # The other bots sent to the killed ones: reported not delivered, or delivered to the new
    # incarnation; nothing lost silently.
    result = stack.check(tmp_path / "hist", restart=False)
    note(f"check after the kill: {result.seconds:.1f} s")
    assert result.code == 0, result.report
    incarnations = re.search(r"(\d+) incarnations", result.report)
    assert incarnations and int(incarnations.group(1)) > KILL_BOTS, result.report


def test_200_bots_exchange_20000_messages(stack: sw.Swarm, tmp_path: Path) -> None:
    stack.down()  # a fresh stack: these histories are the 200 bots' only
    stack.up(bots=BIG_BOTS, rate=BIG_RATE, messages=BIG_MESSAGES)
    start = time.monotonic()
    stack.wait_bots_done(BIG_TIMEOUT_S, interval=5.0)
    took = time.monotonic() - start
    result = stack.check(tmp_path / "hist", restart=False)
    messages = result.messages
    assert messages is not None, result.report
    note(
        f"{BIG_BOTS} bots: {messages} messages in {took:.0f} s ({messages / took:.0f}/s); "
        f"check {result.seconds:.1f} s"
    )
    assert result.code == 0, result.report
    assert messages >= BIG_BOTS * BIG_MESSAGES, result.report


def test_swarm_down_leaves_nothing(stack: sw.Swarm, found: tuple[str, bool]) -> None:
    start = time.monotonic()
    stack.down()
    note(f"swarm-down: {time.monotonic() - start:.1f} s")
    assert _found() == found
    volumes = stack.docker("volume", "ls", "--format", "{{.Name}}").stdout.split()
    assert not [v for v in volumes if v.startswith(f"{sw.STACK}_")]
    if found[0] == "active":
        assert not stack.docker(
            "service", "ls", "-q", "--filter", f"label=com.docker.stack.namespace={sw.STACK}"
        ).stdout.strip()
    assert not sw.STATE_FILE.exists()
