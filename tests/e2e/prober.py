"""A measuring client, run inside the test's network namespace: ``prober.py NAME HOST PORT
SECONDS [SOURCE_IP]``. Signs in (timing it), then looks itself up every 10 ms for SECONDS
(timing each answer; an unanswered one within 1 s counts as lost), signs out, and prints one
JSON line."""

from __future__ import annotations

import json
import os
import select
import socket
import sys
import time

from chat_protocol.client.core import ClientCore
from chat_protocol.events import SignInFailed, WhoisInfo
from chat_protocol.secure.noise import KeyPair

LOST_AFTER_S = 1.0


def main() -> None:
    name, host, port, seconds = sys.argv[1], sys.argv[2], int(sys.argv[3]), float(sys.argv[4])
    source = sys.argv[5] if len(sys.argv) > 5 else "127.0.0.1"  # the real user's own address
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind((source, 0))
    sock.setblocking(False)
    core = ClientCore(
        name=name,
        server=(host, port),
        identity=KeyPair.generate(os.urandom),
        clock_offset_s=time.time() - time.monotonic(),
    )
    events: list[object] = []

    def pump(wait: float) -> None:
        now = time.monotonic()
        for data, addr in core.datagrams_to_send(now):
            sock.sendto(data, addr)
        t = core.next_timer()
        timeout = max(0.0, min(wait, (t - now) if t is not None else wait))
        if select.select([sock], [], [], timeout)[0]:
            while True:
                try:
                    data, addr = sock.recvfrom(65535)
                except BlockingIOError:
                    break
                core.receive_datagram(data, (addr[0], addr[1]), time.monotonic())
        core.handle_timer(time.monotonic())
        events.extend(core.events())

    start = time.monotonic()
    core.connect(start)
    while not core.online and time.monotonic() - start < 10:
        pump(0.01)
        if any(isinstance(e, SignInFailed) for e in events):
            break
    sign_in_s = time.monotonic() - start
    latencies: list[float] = []
    asked: list[float] = []
    lost = 0
    end = time.monotonic() + seconds
    next_ask = time.monotonic()
    while core.online and time.monotonic() < end:
        now = time.monotonic()
        if now >= next_ask:
            core.whois(name, now)
            asked.append(now)
            next_ask = now + 0.01
        pump(0.002)
        answered = sum(isinstance(e, WhoisInfo) for e in events)
        latencies.extend(time.monotonic() - asked.pop(0) for _ in range(answered))
        events.clear()
        while asked and time.monotonic() - asked[0] > LOST_AFTER_S:
            asked.pop(0)
            lost += 1
    trace = os.environ.get("PROBER_TRACE")
    if trace:  # every answer's latency, in order, for a look at when slow ones happen
        with open(trace, "w") as f:
            json.dump(latencies, f)
    latencies.sort()
    p99 = latencies[int(len(latencies) * 0.99)] if latencies else None
    p50 = latencies[len(latencies) // 2] if latencies else None
    report: dict[str, object] = {"online": core.online, "sign_in_s": sign_in_s}
    report["lookups"] = len(latencies)
    report |= {"lost": lost, "p50_ms": None if p50 is None else p50 * 1000}
    report |= {"p99_ms": None if p99 is None else p99 * 1000}
    print(json.dumps(report))


if __name__ == "__main__":
    main()
