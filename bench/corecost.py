"""What the sans-I/O cores alone cost: no sockets, no event loop, one process, a frozen clock.

These numbers explain the socket benchmarks: the part of a round trip or of a heartbeat that is
the protocol's own Python work, as opposed to system calls and wake-ups. The cores are driven the
way the shells drive them (feed one datagram, drain datagrams and events, ask for the timer).
``python -m bench.corecost`` prints one JSON object.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from typing import Any

from chat_protocol.client import ClientCore
from chat_protocol.codec import decode, encode
from chat_protocol.events import MessageDelivered, SendFailed
from chat_protocol.messages import Addr, Heartbeat, Hello, Lookup, Welcome
from chat_protocol.server import ServerCore

SERVER: Addr = ("127.0.0.1", 5000)


def _addr(i: int) -> Addr:
    n = (1 << 24) + i
    return (f"127.{(n >> 16) & 255}.{(n >> 8) & 255}.{n & 255}", 40000)


def _per_datagram(core: ServerCore, datagrams: list[bytes], now: float) -> float:
    """Seconds per datagram to feed each (the i-th from user i's address) and drain the core."""
    t0 = time.perf_counter()
    for i, data in enumerate(datagrams):
        core.receive_datagram(data, _addr(i), now)
        core.events()
        core.datagrams_to_send(0.0)
        core.next_timer()
    return (time.perf_counter() - t0) / len(datagrams)


def server_costs(users: int) -> dict[str, float]:
    core = ServerCore()
    tokens: list[bytes] = []
    now = 0.0
    t0 = time.perf_counter()
    for i in range(users):
        core.receive_datagram(encode(Hello(req_id=i + 1, name=f"u{i}")), _addr(i), now)
        core.events()
        ((data, _),) = core.datagrams_to_send(0.0)
        welcome = decode(data)
        assert isinstance(welcome, Welcome)
        tokens.append(welcome.token)
        core.next_timer()
    sign_in = (time.perf_counter() - t0) / users
    heartbeats = [encode(Heartbeat(token=t)) for t in tokens]
    now = 1.0
    heartbeat = _per_datagram(core, heartbeats, now)
    n = min(users, 20_000)
    lookups = [
        encode(Lookup(token=tokens[i], req_id=i, name=f"u{(i + 1) % users}")) for i in range(n)
    ]
    lookup = _per_datagram(core, lookups, now)
    # Expiry bookkeeping: every user's heap entry comes due once per timeout and is pushed back
    # (the user heartbeated since). Make all of them due at once and time the sweep.
    for i in range(users):
        core.receive_datagram(heartbeats[i], _addr(i), now + 5.0)
    core.datagrams_to_send(0.0)
    due = core.next_timer()
    assert due is not None
    t0 = time.perf_counter()
    core.handle_timer(now + 5.0 + 0.999 * (core.users[next(iter(core.users))].expires - now - 5.0))
    repush = (time.perf_counter() - t0) / users
    assert len(core.users) == users
    return {
        "core_sign_in_us": sign_in * 1e6,
        "core_heartbeat_us": heartbeat * 1e6,
        "core_lookup_us": lookup * 1e6,
        "core_expiry_repush_us": repush * 1e6,
        "timeout_s": core.heartbeat_interval_s()
        * core.timings.client_timeout_s
        / core.timings.heartbeat_interval_s,
    }


class _Net:
    """Delivers every datagram at once, in order, between the three cores (one process)."""

    def __init__(self) -> None:
        self.server = ServerCore()
        self.a = ClientCore(name="a", server=SERVER)
        self.b = ClientCore(name="b", server=SERVER)
        self.clients: dict[Addr, ClientCore] = {("127.0.0.2", 1): self.a, ("127.0.0.3", 1): self.b}
        self.now = 0.0

    def _deliver(self, out: list[tuple[bytes, Addr]], src: Addr) -> None:
        for data, dst in out:
            if dst == SERVER:
                self.server.receive_datagram(data, src, self.now)
            else:
                self.clients[dst].receive_datagram(data, src, self.now)

    def settle(self) -> list[Any]:
        """Move datagrams until none is left; the clients' events, in order."""
        events: list[Any] = []
        moved = True
        while moved:
            out = self.server.datagrams_to_send(self.now)
            self.server.events()
            moved = bool(out)
            self._deliver(out, SERVER)
            for src, core in self.clients.items():
                out = core.datagrams_to_send(self.now)
                events.extend(core.events())
                moved = moved or bool(out)
                self._deliver(out, src)
        return events


def client_costs(messages: int, bulk_bytes: int, bulk_reps: int) -> dict[str, float]:
    net = _Net()
    net.a.connect(0.0)
    net.b.connect(0.0)
    net.settle()
    assert net.a.online and net.b.online

    def one(text: str) -> None:
        h = net.a.send("b", text, net.now)
        for ev in net.settle():
            if isinstance(ev, MessageDelivered) and ev.handle == h:
                return
            if isinstance(ev, SendFailed):
                raise RuntimeError(ev.reason.value)
        raise RuntimeError("not delivered in one pass")

    for i in range(20):
        one(f"warm-up {i}")
    t0 = time.perf_counter()
    for i in range(messages):
        one(f"ping {i:06d}")
    message = (time.perf_counter() - t0) / messages
    big = "x" * bulk_bytes
    times = []
    for _ in range(bulk_reps):
        t0 = time.perf_counter()
        one(big)
        times.append(time.perf_counter() - t0)
    return {"core_message_us": message * 1e6, "core_bulk_ms": sorted(times)[len(times) // 2] * 1e3}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--users", type=int, default=100_000)
    p.add_argument("--messages", type=int, default=2000)
    p.add_argument("--bulk-bytes", type=int, default=1 << 20)
    p.add_argument("--bulk-reps", type=int, default=3)
    args = p.parse_args(argv)
    result = {
        **server_costs(args.users),
        **client_costs(args.messages, args.bulk_bytes, args.bulk_reps),
        "users": args.users,
    }
    print(json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
