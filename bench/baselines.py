"""Baselines for the message benchmarks, each a client here and an echo server in another process.

* ``udp``: plain blocking Python UDP ping-pong (``socket.sendto`` / ``recv``), no reliability.
* ``enet``: ENet (PyPI ``pyenet``) reliable ping-pong on one channel, and a 1 MiB reliable packet
  (ENet fragments it) answered by a short reliable reply once it arrived whole.

The client runs on one CPU and the echo server on another (``procs.NEAR`` / ``procs.FAR``), as the
chat's peers do in their benchmark. Both sides wait in the kernel between datagrams (blocking
``recv``, ``host.service(timeout)``), as the chat's peers do (``poll``), so all three round trips
pay the same wake-ups. Run ``python -m bench.baselines udp|enet [...]``; prints one JSON object.
The ``*-server`` roles are the children.
"""

from __future__ import annotations

import argparse
import json
import socket
import sys
import time
from typing import Any

from bench import procs

QUIT = b"quit"


def enet_unavailable() -> str | None:
    try:
        import enet  # noqa: F401
    except ImportError as exc:
        return f"pyenet is not importable ({exc}); pip install -e '.[bench]'"
    return None


# --- plain UDP ------------------------------------------------------------------------------------


def udp_server(host: str) -> int:
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind((host, 0))
    print(f"ready {s.getsockname()[1]}", flush=True)
    while True:
        data, addr = s.recvfrom(2048)
        if data == QUIT:
            return 0
        s.sendto(data, addr)


def udp_client(host: str, pings: int, warmup: int, size: int) -> dict[str, Any]:
    with procs.far_server("bench.baselines", "udp-server", host) as port:
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.connect((host, port))
        s.settimeout(1.0)
        payload = b"p" * size
        rtt_us: list[float] = []
        lost = 0
        clock = time.perf_counter
        try:
            for i in range(warmup + pings):
                t0 = clock()
                s.send(payload)
                try:
                    s.recv(2048)
                except TimeoutError:
                    lost += 1
                    continue
                t1 = clock()
                if i >= warmup:
                    rtt_us.append((t1 - t0) * 1e6)
            s.send(QUIT)
        finally:
            s.close()
    return {"rtt_us": rtt_us, "lost": lost, "size": size}


# --- ENet -----------------------------------------------------------------------------------------


def enet_server(host: str) -> int:
    import enet

    h = enet.Host(enet.Address(host.encode(), 0), 4, 1, 0, 0)
    print(f"ready {h.address.port}", flush=True)
    while True:
        ev = h.service(1000)
        if ev.type == enet.EVENT_TYPE_RECEIVE:
            data = ev.packet.data
            if data == QUIT:
                h.flush()
                return 0
            reply = data if len(data) <= 64 else b"done"
            ev.peer.send(0, enet.Packet(reply, enet.PACKET_FLAG_RELIABLE))
            h.flush()


def enet_client(
    host: str, pings: int, warmup: int, size: int, bulk_bytes: int, bulk_reps: int, timeout_s: float
) -> dict[str, Any]:
    import enet

    with procs.far_server("bench.baselines", "enet-server", host) as port:
        h = enet.Host(None, 1, 1, 0, 0)
        peer = h.connect(enet.Address(host.encode(), port), 1)
        deadline = time.monotonic() + 10
        while h.service(100).type != enet.EVENT_TYPE_CONNECT:
            if time.monotonic() > deadline:
                raise TimeoutError("ENet did not connect")
        clock = time.perf_counter

        def round_trip(data: bytes) -> float:
            t0 = clock()
            peer.send(0, enet.Packet(data, enet.PACKET_FLAG_RELIABLE))
            h.flush()
            end = time.monotonic() + timeout_s
            while True:
                ev = h.service(1)
                if ev.type == enet.EVENT_TYPE_RECEIVE:
                    return clock() - t0
                if ev.type == enet.EVENT_TYPE_DISCONNECT:
                    raise RuntimeError("ENet peer disconnected")
                if time.monotonic() > end:
                    raise TimeoutError("ENet round trip timed out")

        payload = b"p" * size
        for _ in range(warmup):
            round_trip(payload)
        rtt_us = [round_trip(payload) * 1e6 for _ in range(pings)]
        big = b"x" * bulk_bytes
        bulk_ms = [round_trip(big) * 1e3 for _ in range(bulk_reps)]
        peer.send(0, enet.Packet(QUIT, enet.PACKET_FLAG_RELIABLE))
        h.flush()
        for _ in range(5):
            h.service(5)
    return {"rtt_us": rtt_us, "bulk_ms": bulk_ms, "bulk_bytes": bulk_bytes, "size": size}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("role", choices=("udp", "enet", "udp-server", "enet-server"))
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--pings", type=int, default=1000)
    p.add_argument("--warmup", type=int, default=50)
    p.add_argument("--size", type=int, default=48, help="ping payload bytes")
    p.add_argument("--bulk-bytes", type=int, default=1 << 20)
    p.add_argument("--bulk-reps", type=int, default=5)
    p.add_argument("--timeout", type=float, default=60.0)
    args = p.parse_args(argv)
    if args.role == "udp-server":
        return udp_server(args.host)
    if args.role == "enet-server":
        return enet_server(args.host)
    if args.role == "udp":
        result = udp_client(args.host, args.pings, args.warmup, args.size)
    else:
        result = enet_client(
            args.host,
            args.pings,
            args.warmup,
            args.size,
            args.bulk_bytes,
            args.bulk_reps,
            args.timeout,
        )
    print(json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
