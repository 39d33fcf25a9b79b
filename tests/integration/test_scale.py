"""Twenty client containers at once, all talking: every message arrives exactly once."""

from __future__ import annotations

import time
import uuid
from collections import Counter
from pathlib import Path

import pytest

from labkit.compose import Compose
from labkit.terminal import PipedClient
from labkit.util import wait_until

pytestmark = pytest.mark.integration

CLIENTS = 20
RING_FANOUT = 3
"""Each client sends to the next three in the ring; and everyone also writes to u00."""
START_BOUND_S = 120.0
"""Twenty `docker compose run` at once on two cores (measured: about 10 s)."""
DELIVERY_BOUND_S = 60.0


def test_twenty_clients_ring_and_all_to_one(compose_project: Compose, tmp_path: Path) -> None:
    lab = compose_project
    names = [f"u{i:02d}" for i in range(CLIENTS)]
    t0 = time.monotonic()
    clients = {name: lab.piped_client(name, tmp_path) for name in names}

    def signed_in() -> bool:
        for c in clients.values():
            if c.proc.poll() is not None:
                raise AssertionError(f"{c.name} exited ({c.proc.returncode})\n{c.outputs()}")
        return all("signed in as" in c.stdout() for c in clients.values())

    wait_until(signed_in, START_BOUND_S, f"{CLIENTS} clients to sign in", lambda: _who_not(clients))
    started = time.monotonic() - t0

    token = uuid.uuid4().hex[:8]
    expected: dict[str, Counter[str]] = {name: Counter() for name in names}
    for i, sender in enumerate(names):
        targets = [names[(i + k) % CLIENTS] for k in range(1, RING_FANOUT + 1)]
        if sender != names[0] and names[0] not in targets:
            targets.append(names[0])
        lines = []
        for receiver in targets:
            text = f"from {sender} to {receiver} #{token}"
            lines.append(f"send {receiver} {text}\n")
            expected[receiver][f"{sender}: {text}"] += 1
        clients[sender].feed("".join(lines).encode())
    total = sum(sum(c.values()) for c in expected.values())
    t1 = time.monotonic()

    def received(name: str) -> Counter[str]:
        return Counter(f"{m['sender']}: {m['text']}" for m in clients[name].messages())

    def all_arrived() -> bool:
        return all(received(n) >= expected[n] for n in names)

    wait_until(
        all_arrived,
        DELIVERY_BOUND_S,
        f"all {total} messages to arrive",
        lambda: "\n".join(
            f"{n} missing: {sorted((expected[n] - received(n)).elements())}"
            for n in names
            if not received(n) >= expected[n]
        ),
    )
    delivered = time.monotonic() - t1
    # Exactly once, nothing else, each from its sender's own container address.
    ips = {name: lab.container_ip(name) for name in names}
    for name in names:
        assert received(name) == expected[name], (name, received(name) - expected[name])
        for m in clients[name].messages():
            assert m["ip"] == ips[m["sender"]] and not m["mark"], (name, m.group(0))
    print(
        f"{CLIENTS} clients signed in within {started:.1f} s; {total} messages delivered "
        f"within {delivered:.1f} s"
    )

    # End of input everywhere: everyone signs out (nothing is pending) and exits 0.
    for c in clients.values():
        c.close_input()
    codes = {name: c.wait_exit(timeout=30) for name, c in clients.items()}
    assert codes == dict.fromkeys(names, 0), codes
    for c in clients.values():
        assert "error" not in c.stderr(), c.outputs()


def _who_not(clients: dict[str, PipedClient]) -> str:
    late = [c for c in clients.values() if "signed in as" not in c.stdout()]
    return "not signed in: " + "; ".join(f"{c.name}: {c.stderr()[-200:]!r}" for c in late)
