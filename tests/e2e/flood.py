"""A flood generator, run inside the test's network namespace: ``flood.py KIND RATE SECONDS
HOST PORT``. KIND ``hello``: handshake initiations (signing in names from this one IP as fast as
RATE allows; prebuilt, each a real Noise initiation from its own key, replayed round robin once
they run out); ``garbage``: unauthenticated datagrams (TRANSPORT packets with random indexes and
PINGs), the cheapest kind for an attacker. Prints a JSON line when it starts sending (at RATE
from the first datagram), and one at the end: what it sent."""

from __future__ import annotations

import contextlib
import json
import os
import socket
import sys
import time

from chat_protocol.secure.endpoint import KeyReceived, SecureEndpoint
from chat_protocol.secure.noise import KeyPair
from chat_protocol.wire.codec import encode
from chat_protocol.wire.messages import Hello, Ping


def initiations(host: str, port: int, n: int) -> list[bytes]:
    """``n`` sign-in initiations for names flood-0..n-1 (needs the server's key: asked once)."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.settimeout(2)
    ep = SecureEndpoint(static=KeyPair.generate(os.urandom), random_bytes=os.urandom)
    sock.sendto(ep.request_key((host, port)), (host, port))
    data, _ = sock.recvfrom(2048)
    got = ep.receive(data, (host, port), 0.0)
    assert isinstance(got, KeyReceived)
    server_key = got.key
    out = []
    for i in range(n):
        e = SecureEndpoint(static=KeyPair.generate(os.urandom), random_bytes=os.urandom)
        hello = encode(Hello(req_id=i + 1, name=f"flood-{i}"))
        out.append(e.connect(server_key, hello, 0.0, timestamp=time.time_ns()))
    return out


def main() -> None:
    kind, host = sys.argv[1], sys.argv[4]
    rate, seconds, port = float(sys.argv[2]), float(sys.argv[3]), int(sys.argv[5])
    if kind == "hello":
        pool = initiations(host, port, 2000)
    else:
        pool = [bytes([0x84]) + os.urandom(4) + bytes(8) + os.urandom(40) for _ in range(1000)]
        pool += [encode(Ping(nonce=i)) for i in range(1000)]
    socks = [socket.socket(socket.AF_INET, socket.SOCK_DGRAM) for _ in range(16)]
    for s in socks:
        s.setblocking(False)
    print(json.dumps({"kind": kind, "started": True}), flush=True)  # sending at RATE from now
    sent = 0
    start = time.monotonic()
    end = start + seconds
    batch = max(1, int(rate / 1000))
    while (now := time.monotonic()) < end:
        due = int((now - start) * rate)
        while sent < due:
            for _ in range(batch):
                with contextlib.suppress(BlockingIOError, OSError):
                    socks[sent % 16].sendto(pool[sent % len(pool)], (host, port))
                sent += 1
        time.sleep(0.0005)
    print(json.dumps({"kind": kind, "sent": sent, "seconds": time.monotonic() - start}))


if __name__ == "__main__":
    main()
